/*
 * Shared helpers of the C test programs (test_pso.c, test_workflow.c, ...): checks
 * that count passes and failures (thread-safe: they may be used inside
 * callbacks on PSO worker threads), and small utilities. One test program
 * includes it once.
 */
#ifndef PSO_TEST_CHECK_H
#define PSO_TEST_CHECK_H

#include "pso.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ checks */

static atomic_int g_passed;
static atomic_int g_failed;

static inline void check_at(int ok, const char *what, const char *file, int line) {
    if (ok) {
        atomic_fetch_add(&g_passed, 1);
        return;
    }
    atomic_fetch_add(&g_failed, 1);
    fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, what);
}
#define CHECK(cond) check_at((cond) != 0, #cond, __FILE__, __LINE__)

static inline void check_status_at(pso_status got, pso_status want, const char *call, const char *file,
                            int line) {
    if (got == want) {
        atomic_fetch_add(&g_passed, 1);
        return;
    }
    atomic_fetch_add(&g_failed, 1);
    fprintf(stderr, "%s:%d: FAILED: %s\n    returned %s, expected %s\n    last error: %s\n", file,
            line, call, pso_status_name((uint32_t)got), pso_status_name((uint32_t)want),
            pso_last_error_message());
}
#define CHECK_STATUS(call, want) check_status_at((call), (want), #call, __FILE__, __LINE__)

static inline void check_contains_at(const char *hay, const char *needle, const char *what,
                              const char *file, int line) {
    if (hay != NULL && strstr(hay, needle) != NULL) {
        atomic_fetch_add(&g_passed, 1);
        return;
    }
    atomic_fetch_add(&g_failed, 1);
    fprintf(stderr, "%s:%d: FAILED: %s does not contain \"%s\"\n    it is: %s\n", file, line, what,
            needle, hay ? hay : "(NULL)");
}
#define CHECK_CONTAINS(hay, needle) check_contains_at((hay), (needle), #hay, __FILE__, __LINE__)
/* The last error of this thread contains `needle`. */
#define CHECK_ERR(needle) \
    check_contains_at(pso_last_error_message(), (needle), "last error", __FILE__, __LINE__)

static inline void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* A NUL-terminated string that is not UTF-8. */
static const char BAD_UTF8[] = "ab\xff\xfe";

static inline pso_orchestrator new_orch(uint32_t workers) {
    pso_options opts = {0};
    opts.workers = workers;
    pso_orchestrator o = {0};
    CHECK_STATUS(pso_orchestrator_new(&opts, &o), PSO_OK);
    return o;
}

/* Waits (at most 5 s) until the free callback ran `want` times in all, then checks that
 * it ran exactly that often. After a handler replacement, the free can come a
 * moment after pso_set_handlers returns: a transaction that used the old
 * handlers may still be finishing on a worker thread. */
#define CHECK_FREED(want) check_freed_at((want), 1, __FILE__, __LINE__)
/* The same, without waiting: for the points where the API promises the free
 * has happened (pso_orchestrator_close returned, no other call in flight). */
#define CHECK_FREED_NOW(want) check_freed_at((want), 0, __FILE__, __LINE__)
/* How often a user_data free callback ran in all (each test program's free
 * functions increment it). */
static atomic_int g_freed;
static inline void check_freed_at(int want, int wait, const char *file, int line) {
    for (int i = 0; wait && i < 5000 && atomic_load(&g_freed) < want; i++) {
        sleep_ms(1);
    }
    int got = atomic_load(&g_freed);
    char what[96];
    snprintf(what, sizeof what, "user_data freed %d times, expected %d", got, want);
    check_at(got == want, what, file, line);
}

/* Prints the totals; the exit status of main. */
static inline int report_totals(void) {
    int passed = atomic_load(&g_passed), failed = atomic_load(&g_failed);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}

#endif /* PSO_TEST_CHECK_H */
