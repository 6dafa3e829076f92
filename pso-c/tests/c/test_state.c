/*
 * C tests of the state store API of libpso (issue 5), compiled against
 * include/pso.h with -Wall -Wextra -Werror -std=c11 -pedantic:
 * get/list/put/delete with revisions and writers, compare-and-set
 * (conflicts carry the current revision and entry), no lost update with
 * CAS retry loops on several threads, watches (each change exactly once, in
 * order, from a revision, by prefix, closed from their own callback,
 * COMPACTED, ended by a restore), snapshot/restore (I/O and parse errors),
 * NULL pointers and invalid UTF-8 giving statuses, and stale handles after
 * close.
 *
 * Prints "N passed, M failed" and exits non-zero if anything failed.
 */
#define _POSIX_C_SOURCE 200809L

#include "check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static bool wait_at_least(atomic_int *v, int want) {
    for (int i = 0; i < 10000 && atomic_load(v) < want; i++) {
        sleep_ms(1);
    }
    return atomic_load(v) >= want;
}

/* The number after the first `"key":` in `json`, or -1. */
static long json_long(const char *json, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = json ? strstr(json, pat) : NULL;
    return p ? strtol(p + strlen(pat), NULL, 10) : -1;
}

static uint64_t put(pso_orchestrator o, const char *key, const char *json) {
    uint64_t rev = 0;
    CHECK_STATUS(pso_state_put(o, key, json, NULL, &rev), PSO_OK);
    return rev;
}

/* ------------------------------------------------------------------- tests */

static void test_get_put_delete_list(void) {
    pso_orchestrator o = new_orch(1);
    uint64_t rev = 99;
    CHECK_STATUS(pso_state_revision(o, &rev), PSO_OK);
    CHECK(rev == 0);
    char *json = (char *)"x";
    CHECK_STATUS(pso_state_get(o, "cfg.mode", &json), PSO_OK);
    CHECK(json != NULL && strcmp(json, "null") == 0);
    pso_string_free(json);

    uint64_t r1 = 0, r2 = 0;
    CHECK_STATUS(pso_state_put(o, "cfg.mode", "{\"fast\": true}", "planner", &r1), PSO_OK);
    CHECK(r1 == 1);
    CHECK_STATUS(pso_state_put(o, "cfg.level", "3", NULL, &r2), PSO_OK);
    CHECK(r2 == 2);
    CHECK_STATUS(pso_state_put(o, "other", "\"x\"", NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_state_get(o, "cfg.mode", &json), PSO_OK);
    CHECK_CONTAINS(json, "\"key\":\"cfg.mode\"");
    CHECK_CONTAINS(json, "\"value\":{\"fast\":true}");
    CHECK_CONTAINS(json, "\"revision\":1");
    CHECK_CONTAINS(json, "\"writer\":\"planner\"");
    CHECK_CONTAINS(json, "\"timestamp\":\"");
    pso_string_free(json);
    CHECK_STATUS(pso_state_get(o, "cfg.level", &json), PSO_OK);
    CHECK_CONTAINS(json, "\"writer\":null");
    pso_string_free(json);

    /* list: by prefix, sorted by key; NULL prefix lists all. */
    CHECK_STATUS(pso_state_list(o, "cfg.", &json), PSO_OK);
    CHECK(json != NULL && strstr(json, "cfg.level") < strstr(json, "cfg.mode"));
    CHECK(strstr(json, "other") == NULL);
    pso_string_free(json);
    CHECK_STATUS(pso_state_list(o, NULL, &json), PSO_OK);
    CHECK_CONTAINS(json, "other");
    pso_string_free(json);
    CHECK_STATUS(pso_state_list(o, "zzz", &json), PSO_OK);
    CHECK(json != NULL && strcmp(json, "[]") == 0);
    pso_string_free(json);

    /* delete: a revision; absent: 0 and still OK. */
    CHECK_STATUS(pso_state_delete(o, "cfg.level", &rev), PSO_OK);
    CHECK(rev == 4);
    CHECK_STATUS(pso_state_delete(o, "cfg.level", &rev), PSO_OK);
    CHECK(rev == 0);
    CHECK_STATUS(pso_state_delete(o, "never", NULL), PSO_OK);
    CHECK_STATUS(pso_state_get(o, "cfg.level", &json), PSO_OK);
    CHECK(json != NULL && strcmp(json, "null") == 0);
    pso_string_free(json);
    CHECK_STATUS(pso_state_revision(o, &rev), PSO_OK);
    CHECK(rev == 4);

    /* Errors. */
    CHECK_STATUS(pso_state_put(o, "", "1", NULL, &rev), PSO_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pso_state_put(o, "k", "{nope", NULL, &rev), PSO_ERR_PARSE);
    CHECK_ERR("line 1");
    CHECK_STATUS(pso_state_get(o, "", &json), PSO_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pso_state_delete(o, "", &rev), PSO_ERR_INVALID_ARGUMENT);

    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK_STATUS(pso_state_get(o, "cfg.mode", &json), PSO_ERR_STALE_HANDLE);
    CHECK(json == NULL);
    CHECK_STATUS(pso_state_put(o, "k", "1", NULL, &rev), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_state_revision(o, &rev), PSO_ERR_STALE_HANDLE);
}

static void test_compare_and_set(void) {
    pso_orchestrator o = new_orch(1);
    uint64_t rev = 0;
    char *current = (char *)"x";
    /* 0: only if absent. */
    CHECK_STATUS(pso_state_cas(o, "lock", 0, "\"me\"", &rev, &current), PSO_OK);
    CHECK(rev == 1);
    CHECK(current == NULL);
    CHECK_STATUS(pso_state_cas(o, "lock", 0, "\"you\"", &rev, &current), PSO_ERR_CAS_CONFLICT);
    CHECK(rev == 1); /* the current revision */
    CHECK_CONTAINS(current, "\"value\":\"me\"");
    CHECK_CONTAINS(current, "\"revision\":1");
    pso_string_free(current);
    CHECK_ERR("expected revision 0, found 1");
    CHECK_ERR("'lock'");

    CHECK_STATUS(pso_state_cas(o, "lock", 1, "\"me2\"", &rev, NULL), PSO_OK);
    CHECK(rev == 2);
    CHECK_STATUS(pso_state_cas(o, "lock", 1, "\"late\"", &rev, NULL), PSO_ERR_CAS_CONFLICT);
    CHECK(rev == 2);
    /* On an absent key with a non-zero expectation: current is `null`. */
    CHECK_STATUS(pso_state_cas(o, "nothing", 5, "1", &rev, &current), PSO_ERR_CAS_CONFLICT);
    CHECK(rev == 0);
    CHECK(current != NULL && strcmp(current, "null") == 0);
    pso_string_free(current);
    /* A bad value is a parse error; current stays NULL. */
    current = (char *)"x";
    CHECK_STATUS(pso_state_cas(o, "lock", 2, "{bad", &rev, &current), PSO_ERR_PARSE);
    CHECK(current == NULL);
    CHECK_STATUS(pso_state_cas(o, "", 0, "1", &rev, NULL), PSO_ERR_INVALID_ARGUMENT);
    char *json = NULL;
    CHECK_STATUS(pso_state_get(o, "lock", &json), PSO_OK);
    CHECK_CONTAINS(json, "\"value\":\"me2\"");
    pso_string_free(json);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

/* Each thread adds 1 to "counter" `INCREMENTS` times with a CAS retry loop. */
#define CAS_THREADS 4
#define INCREMENTS 100

typedef struct {
    pso_orchestrator o;
    atomic_int *conflicts;
} cas_arg;

static void *cas_incrementer(void *p) {
    cas_arg *a = p;
    for (int i = 0; i < INCREMENTS; i++) {
        char *entry = NULL;
        CHECK_STATUS(pso_state_get(a->o, "counter", &entry), PSO_OK);
        long value = json_long(entry, "value");
        uint64_t seen = (uint64_t)json_long(entry, "revision");
        pso_string_free(entry);
        for (;;) {
            char next[32];
            snprintf(next, sizeof next, "%ld", value + 1);
            uint64_t rev = 0;
            char *current = NULL;
            pso_status st = pso_state_cas(a->o, "counter", seen, next, &rev, &current);
            if (st == PSO_OK) {
                break;
            }
            CHECK(st == PSO_ERR_CAS_CONFLICT);
            /* Retry from the entry the conflict handed back (no extra read). */
            atomic_fetch_add(a->conflicts, 1);
            value = json_long(current, "value");
            seen = rev;
            CHECK(seen == (uint64_t)json_long(current, "revision"));
            pso_string_free(current);
        }
    }
    return NULL;
}

static void test_no_lost_update_across_threads(void) {
    pso_orchestrator o = new_orch(1);
    put(o, "counter", "0");
    atomic_int conflicts = 0;
    pthread_t th[CAS_THREADS];
    cas_arg args[CAS_THREADS];
    for (int i = 0; i < CAS_THREADS; i++) {
        args[i] = (cas_arg){.o = o, .conflicts = &conflicts};
        pthread_create(&th[i], NULL, cas_incrementer, &args[i]);
    }
    for (int i = 0; i < CAS_THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    char *json = NULL;
    CHECK_STATUS(pso_state_get(o, "counter", &json), PSO_OK);
    CHECK(json_long(json, "value") == CAS_THREADS * INCREMENTS);
    /* one put, then exactly one successful CAS per increment */
    CHECK(json_long(json, "revision") == 1 + CAS_THREADS * INCREMENTS);
    pso_string_free(json);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

/* --------------------------------------------------------------- watches */

#define EVENTS_MAX 512

typedef struct {
    pthread_mutex_t mu;
    atomic_int count;
    atomic_int freed;
    atomic_int errors;
    long revs[EVENTS_MAX];
    char last[256];
    pso_watch self;      /* closed from the callback after `close_after` events */
    int close_after;
} watcher;

static void watcher_init(watcher *w) {
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
}

static void on_event(const char *event_json, void *ud) {
    watcher *w = ud;
    pthread_mutex_lock(&w->mu);
    snprintf(w->last, sizeof w->last, "%s", event_json);
    pthread_mutex_unlock(&w->mu);
    if (strstr(event_json, "\"error\"") != NULL) {
        atomic_fetch_add(&w->errors, 1);
        return;
    }
    int i = atomic_load(&w->count);
    if (i < EVENTS_MAX) {
        w->revs[i] = json_long(event_json, "revision");
    }
    int n = atomic_fetch_add(&w->count, 1) + 1;
    if (w->close_after > 0 && n == w->close_after) {
        CHECK_STATUS(pso_watch_close(w->self), PSO_OK);
    }
}

static void on_watch_free(void *ud) {
    watcher *w = ud;
    atomic_fetch_add(&w->freed, 1);
    atomic_fetch_add(&g_freed, 1);
}

static pso_watch watch(pso_orchestrator o, const char *key, bool prefix, uint64_t from,
                       watcher *w) {
    pso_watch h = {0};
    CHECK_STATUS(pso_state_watch(o, key, prefix, from, on_event, w, on_watch_free, &h), PSO_OK);
    return h;
}

/* Revisions strictly increasing, each > from. */
static bool in_order(watcher *w, long from) {
    int n = atomic_load(&w->count);
    for (int i = 0; i < n && i < EVENTS_MAX; i++) {
        if (w->revs[i] <= from) {
            return false;
        }
        from = w->revs[i];
    }
    return true;
}

static void test_watches(void) {
    int base = atomic_load(&g_freed);
    pso_orchestrator o = new_orch(1);
    put(o, "job.a", "1");  /* rev 1 */
    put(o, "job.b", "2");  /* rev 2 */
    put(o, "misc", "3");   /* rev 3 */

    /* From revision 1: the history after it, then live changes. */
    watcher all, one, from_now;
    watcher_init(&all);
    watcher_init(&one);
    watcher_init(&from_now);
    pso_watch wa = watch(o, "job.", true, 1, &all);
    pso_watch wo = watch(o, "job.a", false, 0, &one);
    uint64_t now = 0;
    CHECK_STATUS(pso_state_revision(o, &now), PSO_OK);
    pso_watch wn = watch(o, "", true, now, &from_now);
    CHECK(wait_at_least(&all.count, 1)); /* job.b at rev 2 */
    CHECK(wait_at_least(&one.count, 1)); /* job.a at rev 1 */

    for (int i = 0; i < 50; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        put(o, i % 2 ? "job.a" : "job.b", v);
    }
    CHECK_STATUS(pso_state_delete(o, "job.a", NULL), PSO_OK);
    put(o, "misc", "4");
    /* all: rev 2 + 50 puts + the delete = 52; one: rev 1 + 25 + delete = 27;
     * from_now: 50 + delete + misc = 52. */
    CHECK(wait_at_least(&all.count, 52));
    CHECK(wait_at_least(&one.count, 27));
    CHECK(wait_at_least(&from_now.count, 52));
    sleep_ms(50); /* nothing more may come */
    CHECK(atomic_load(&all.count) == 52);
    CHECK(atomic_load(&one.count) == 27);
    CHECK(atomic_load(&from_now.count) == 52);
    CHECK(in_order(&all, 1));
    CHECK(in_order(&one, 0));
    CHECK(in_order(&from_now, (long)now));
    pthread_mutex_lock(&one.mu);
    CHECK_CONTAINS(one.last, "\"value\":null"); /* the delete */
    CHECK_CONTAINS(one.last, "\"key\":\"job.a\"");
    pthread_mutex_unlock(&one.mu);

    /* Close: freed exactly once, before it returns; no events after. */
    CHECK_STATUS(pso_watch_close(wa), PSO_OK);
    CHECK(atomic_load(&all.freed) == 1);
    CHECK_STATUS(pso_watch_close(wa), PSO_ERR_STALE_HANDLE);
    put(o, "job.c", "5");
    CHECK(wait_at_least(&from_now.count, 53));
    CHECK(atomic_load(&all.count) == 52);

    /* Closed from inside its own callback. */
    watcher self;
    watcher_init(&self);
    self.close_after = 2;
    /* Nothing is written until the handle is stored, so the callback sees it. */
    CHECK_STATUS(pso_state_watch(o, "self", false, 0, on_event, &self, on_watch_free, &self.self),
                 PSO_OK);
    put(o, "self", "1");
    put(o, "self", "2");
    put(o, "self", "3");
    CHECK(wait_at_least(&self.freed, 1));
    CHECK(atomic_load(&self.count) == 2);
    CHECK_STATUS(pso_watch_close(self.self), PSO_ERR_STALE_HANDLE);

    /* COMPACTED: more changes than the history keeps (64 per key). */
    for (int i = 0; i < 100; i++) {
        put(o, "busy", "0");
    }
    pso_watch c = {0};
    watcher unused;
    watcher_init(&unused);
    CHECK_STATUS(pso_state_watch(o, "busy", false, 1, on_event, &unused, on_watch_free, &c),
                 PSO_ERR_COMPACTED);
    CHECK(c.id == 0);
    CHECK(atomic_load(&unused.freed) == 0); /* refused: never freed */
    CHECK_STATUS(pso_state_watch(o, "", false, 0, on_event, &unused, on_watch_free, &c),
                 PSO_ERR_INVALID_ARGUMENT);

    /* Closing the orchestrator ends the rest and frees their user_data. */
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK_FREED_NOW(base + 4);
    CHECK(atomic_load(&one.freed) == 1);
    CHECK(atomic_load(&from_now.freed) == 1);
    CHECK_STATUS(pso_watch_close(wo), PSO_OK);
    CHECK_STATUS(pso_watch_close(wn), PSO_OK);
    CHECK_STATUS(pso_watch_close(wn), PSO_ERR_STALE_HANDLE);
    CHECK_FREED_NOW(base + 4);
    pthread_mutex_destroy(&all.mu);
    pthread_mutex_destroy(&one.mu);
    pthread_mutex_destroy(&from_now.mu);
    pthread_mutex_destroy(&self.mu);
    pthread_mutex_destroy(&unused.mu);
}

/* ---------------------------------------------------- snapshot / restore */

static void test_snapshot_restore(void) {
    char dir[] = "/tmp/pso-state-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128], garbage[128], missing[128];
    snprintf(path, sizeof path, "%s/snap.json", dir);
    snprintf(garbage, sizeof garbage, "%s/garbage", dir);
    snprintf(missing, sizeof missing, "%s/none/snap.json", dir);

    pso_orchestrator o = new_orch(1);
    put(o, "a", "{\"n\": 1}");
    put(o, "b", "[true, null]");
    uint64_t before = 0;
    CHECK_STATUS(pso_state_revision(o, &before), PSO_OK);
    CHECK_STATUS(pso_state_snapshot(o, path), PSO_OK);
    CHECK_STATUS(pso_state_snapshot(o, missing), PSO_ERR_IO);

    watcher w;
    watcher_init(&w);
    pso_watch wh = watch(o, "", true, before, &w);
    put(o, "a", "2");
    CHECK_STATUS(pso_state_delete(o, "b", NULL), PSO_OK);
    put(o, "c", "3");
    CHECK(wait_at_least(&w.count, 3));

    CHECK_STATUS(pso_state_restore(o, path), PSO_OK);
    char *json = NULL;
    CHECK_STATUS(pso_state_get(o, "a", &json), PSO_OK);
    CHECK_CONTAINS(json, "\"value\":{\"n\":1}");
    CHECK_CONTAINS(json, "\"revision\":1"); /* entries keep their revisions */
    pso_string_free(json);
    CHECK_STATUS(pso_state_get(o, "b", &json), PSO_OK);
    CHECK_CONTAINS(json, "\"value\":[true,null]");
    pso_string_free(json);
    CHECK_STATUS(pso_state_get(o, "c", &json), PSO_OK);
    CHECK(json != NULL && strcmp(json, "null") == 0);
    pso_string_free(json);
    /* The counter goes on from the larger revision. */
    uint64_t after = 0;
    CHECK(put(o, "d", "1") > 5);
    CHECK_STATUS(pso_state_revision(o, &after), PSO_OK);
    CHECK(after > 5);

    /* The live watch ended with a last error event (CLOSED). */
    CHECK(wait_at_least(&w.errors, 1));
    pthread_mutex_lock(&w.mu);
    char status[32];
    snprintf(status, sizeof status, "\"status\":%d", (int)PSO_ERR_CLOSED);
    CHECK_CONTAINS(w.last, status);
    pthread_mutex_unlock(&w.mu);
    CHECK_STATUS(pso_watch_close(wh), PSO_OK);
    CHECK(atomic_load(&w.freed) == 1);
    /* A new watch from before the restore is COMPACTED. */
    pso_watch again = {0};
    CHECK_STATUS(pso_state_watch(o, "", true, 1, on_event, &w, NULL, &again), PSO_ERR_COMPACTED);

    /* Errors: missing file, not a snapshot. */
    CHECK_STATUS(pso_state_restore(o, missing), PSO_ERR_IO);
    FILE *f = fopen(garbage, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs("not a snapshot", f);
        fclose(f);
    }
    CHECK_STATUS(pso_state_restore(o, garbage), PSO_ERR_PARSE);
    f = fopen(garbage, "w");
    if (f != NULL) {
        fputs("{\"version\": 999}", f);
        fclose(f);
    }
    CHECK_STATUS(pso_state_restore(o, garbage), PSO_ERR_PARSE);
    /* A failed restore changed nothing. */
    CHECK_STATUS(pso_state_get(o, "d", &json), PSO_OK);
    CHECK_CONTAINS(json, "\"value\":1");
    pso_string_free(json);

    /* The snapshot loads into another orchestrator too. */
    pso_orchestrator o2 = new_orch(1);
    CHECK_STATUS(pso_state_restore(o2, path), PSO_OK);
    CHECK_STATUS(pso_state_list(o2, NULL, &json), PSO_OK);
    CHECK_CONTAINS(json, "\"key\":\"a\"");
    CHECK_CONTAINS(json, "\"key\":\"b\"");
    pso_string_free(json);
    CHECK_STATUS(pso_orchestrator_close(o2), PSO_OK);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK_STATUS(pso_state_snapshot(o, path), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_state_restore(o, path), PSO_ERR_STALE_HANDLE);
    unlink(path);
    unlink(garbage);
    rmdir(dir);
    pthread_mutex_destroy(&w.mu);
}

static void test_null_and_utf8_arguments(void) {
    pso_orchestrator o = new_orch(1);
    uint64_t rev = 0;
    char *json = NULL;
    watcher w;
    watcher_init(&w);
    pso_watch h = {0};

    CHECK_STATUS(pso_state_revision(o, NULL), PSO_ERR_NULL_POINTER);
    CHECK_ERR("'rev'");
    CHECK_STATUS(pso_state_get(o, NULL, &json), PSO_ERR_NULL_POINTER);
    CHECK_ERR("'key'");
    CHECK_STATUS(pso_state_get(o, "k", NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_state_get(o, BAD_UTF8, &json), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("key");
    CHECK(json == NULL);
    CHECK_STATUS(pso_state_list(o, NULL, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_state_list(o, BAD_UTF8, &json), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_state_put(o, NULL, "1", NULL, &rev), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_state_put(o, "k", NULL, NULL, &rev), PSO_ERR_NULL_POINTER);
    CHECK_ERR("'json'");
    CHECK_STATUS(pso_state_put(o, BAD_UTF8, "1", NULL, &rev), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_state_put(o, "k", BAD_UTF8, NULL, &rev), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_state_put(o, "k", "1", BAD_UTF8, &rev), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("writer");
    CHECK_STATUS(pso_state_delete(o, NULL, &rev), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_state_delete(o, BAD_UTF8, &rev), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_state_cas(o, NULL, 0, "1", &rev, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_state_cas(o, "k", 0, NULL, &rev, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_state_cas(o, BAD_UTF8, 0, "1", &rev, NULL), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_state_cas(o, "k", 0, BAD_UTF8, &rev, NULL), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_state_watch(o, NULL, false, 0, on_event, &w, on_watch_free, &h),
                 PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_state_watch(o, "k", false, 0, NULL, &w, on_watch_free, &h),
                 PSO_ERR_NULL_POINTER);
    CHECK_ERR("'func'");
    CHECK_STATUS(pso_state_watch(o, "k", false, 0, on_event, &w, on_watch_free, NULL),
                 PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_state_watch(o, BAD_UTF8, false, 0, on_event, &w, on_watch_free, &h),
                 PSO_ERR_INVALID_UTF8);
    CHECK(atomic_load(&w.freed) == 0);
    CHECK_STATUS(pso_state_snapshot(o, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_state_snapshot(o, BAD_UTF8), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_state_restore(o, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_state_restore(o, BAD_UTF8), PSO_ERR_INVALID_UTF8);
    pso_watch forged = {0x7777777777ull};
    CHECK_STATUS(pso_watch_close(forged), PSO_ERR_STALE_HANDLE);
    pso_watch zero = {0};
    CHECK_STATUS(pso_watch_close(zero), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    pthread_mutex_destroy(&w.mu);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"get_put_delete_list", test_get_put_delete_list},
        {"compare_and_set", test_compare_and_set},
        {"no_lost_update_across_threads", test_no_lost_update_across_threads},
        {"watches", test_watches},
        {"snapshot_restore", test_snapshot_restore},
        {"null_and_utf8_arguments", test_null_and_utf8_arguments},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        int before = atomic_load(&g_failed);
        long t = now_ms();
        tests[i].fn();
        printf("%s %s (%ld ms)\n", atomic_load(&g_failed) == before ? "ok  " : "FAIL",
               tests[i].name, now_ms() - t);
    }
    return report_totals();
}
