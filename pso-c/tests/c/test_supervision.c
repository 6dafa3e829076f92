/*
 * C tests of the health and supervision API of libpso (issue 6), compiled
 * against include/pso.h with -Wall -Wextra -Werror -std=c11 -pedantic:
 * probes with details (healthy, degraded, unhealthy, bad return values,
 * contexts stale after the probe), an unhealthy system restarted after its
 * backoff, growing backoff and giving up (GaveUp, alerts), a crash stopping
 * its dependents and their return, watchdog check-ins and a missed
 * deadline, supervision options and their errors, probe user_data freed
 * exactly once (replaced, removed, at close, never on error), probes on
 * worker threads in real time (and probe timeouts), and NULL / invalid
 * UTF-8 / stale arguments. Everything but the real-time test runs on a
 * virtual clock (pso_options.virtual_clock + pso_clock_advance), so no
 * assertion depends on the machine's speed.
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

/* ----------------------------------------------------------------- helpers */

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* An orchestrator on a virtual clock, publishing every alert. */
static pso_orchestrator virtual_orch(void) {
    pso_options opts = {0};
    opts.workers = 2;
    opts.virtual_clock = true;
    opts.alert_interval_ms = UINT64_MAX;
    pso_orchestrator o = {0};
    CHECK_STATUS(pso_orchestrator_new(&opts, &o), PSO_OK);
    return o;
}

static void advance(pso_orchestrator o, uint64_t ms) {
    CHECK_STATUS(pso_clock_advance(o, ms), PSO_OK);
}

/* The status JSON of `name` (free it). */
static char *status_of(pso_orchestrator o, const char *name) {
    char *json = NULL;
    CHECK_STATUS(pso_status_of(o, name, &json), PSO_OK);
    return json;
}

/* Whether the status of `name` contains `needle`. */
static bool status_has(pso_orchestrator o, const char *name, const char *needle) {
    char *json = status_of(o, name);
    bool yes = json != NULL && strstr(json, needle) != NULL;
    if (!yes) {
        fprintf(stderr, "  (status of %s lacks %s: %s)\n", name, needle, json ? json : "NULL");
    }
    pso_string_free(json);
    return yes;
}

/* The number after `"key":` inside the `"section":{` object of the status. */
static double status_num(pso_orchestrator o, const char *name, const char *section,
                         const char *key) {
    char *json = status_of(o, name);
    char sec[64], pat[64];
    snprintf(sec, sizeof sec, "\"%s\":{", section);
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = json ? strstr(json, sec) : NULL;
    p = p ? strstr(p, pat) : NULL;
    double v = p ? strtod(p + strlen(pat), NULL) : -1.0;
    pso_string_free(json);
    return v;
}

/* Collects the alert topics received so far on a pull subscription, joined
 * by spaces, into buf. */
static void alerts(pso_subscription s, char *buf, size_t len) {
    buf[0] = '\0';
    char *json = NULL;
    while (pso_subscription_recv(s, 0, &json) == PSO_OK) {
        const char *t = strstr(json, "\"topic\":\"pso.alert.");
        if (t != NULL) {
            t += strlen("\"topic\":\"pso.alert.");
            size_t n = strcspn(t, "\"");
            size_t used = strlen(buf);
            if (used + n + 2 < len) {
                memcpy(buf + used, t, n);
                buf[used + n] = ' ';
                buf[used + n + 1] = '\0';
            }
        }
        pso_string_free(json);
    }
}

/* Activation counter as lifecycle handler user_data. */
static int32_t count_start(void *ud, const char *system, char *buf, size_t len) {
    (void)system;
    (void)buf;
    (void)len;
    atomic_fetch_add((atomic_int *)ud, 1);
    return 0;
}

static void counted(pso_orchestrator o, const char *name, atomic_int *starts) {
    CHECK_STATUS(pso_register_system(o, name, NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_set_handlers(o, name, count_start, NULL, starts, NULL), PSO_OK);
}

/* Supervision as in pso-core's tests: on failure, 1 s doubling to 8 s
 * without jitter, give up after 3 restarts within 60 s. */
static pso_supervision sup(void) {
    pso_supervision s = {0};
    s.policy = PSO_RESTART_ON_FAILURE;
    s.backoff_ms = 1000;
    s.max_backoff_ms = 8000;
    s.no_jitter = true;
    s.max_restarts = 3;
    s.within_ms = 60000;
    s.reset_after_ms = 30000;
    return s;
}

/* ------------------------------------------------------------------ probes */

/* A probe's user_data: what to answer, and what it saw. */
typedef struct {
    atomic_int answer; /* returned as is */
    const char *detail;
    atomic_int calls;
    atomic_int freed;
    _Atomic(const pso_probe_ctx *) last_ctx;
    _Atomic(pthread_t) thread;
    int sleep_ms;
    pso_orchestrator nested; /* if set: a nested pso_clock_advance is refused */
} probe_state;

static int32_t probe(void *ud, const char *system, const pso_probe_ctx *ctx) {
    probe_state *p = ud;
    CHECK(system != NULL && system[0] != '\0');
    atomic_store(&p->last_ctx, ctx);
    atomic_store(&p->thread, pthread_self());
    if (p->detail != NULL) {
        CHECK_STATUS(pso_probe_set_detail(ctx, p->detail), PSO_OK);
    }
    CHECK_STATUS(pso_probe_set_detail(ctx, BAD_UTF8), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_probe_set_detail(ctx, NULL), PSO_ERR_NULL_POINTER);
    if (p->sleep_ms > 0) {
        sleep_ms(p->sleep_ms);
    }
    if (p->nested.id != 0) {
        CHECK_STATUS(pso_clock_advance(p->nested, 1), PSO_ERR_BUSY);
    }
    atomic_fetch_add(&p->calls, 1);
    return atomic_load(&p->answer);
}

static void probe_free(void *ud) {
    atomic_fetch_add(&((probe_state *)ud)->freed, 1);
    atomic_fetch_add(&g_freed, 1);
}

static pso_health_check check_of(probe_state *p, uint64_t interval_ms, uint32_t failures) {
    pso_health_check c = {0};
    c.probe = probe;
    c.user_data = p;
    c.free_user_data = probe_free;
    c.interval_ms = interval_ms;
    c.failures_before_unhealthy = failures;
    return c;
}

/* ------------------------------------------------------------------- tests */

static void test_unhealthy_system_is_restarted_after_its_backoff(void) {
    pso_orchestrator o = virtual_orch();
    atomic_int starts = 0;
    counted(o, "db", &starts);
    probe_state p = {0};
    p.answer = PSO_HEALTH_HEALTHY;
    pso_health_check c = check_of(&p, 1000, 2);
    CHECK_STATUS(pso_set_health_check(o, "db", &c), PSO_OK);
    pso_supervision s = sup();
    CHECK_STATUS(pso_set_supervision(o, "db", &s), PSO_OK);
    pso_subscription al = {0};
    CHECK_STATUS(pso_subscribe_pull(o, "pso.alert.>", NULL, &al), PSO_OK);
    CHECK_STATUS(pso_activate_system(o, "db", NULL), PSO_OK);

    advance(o, 3000);
    CHECK(atomic_load(&p.calls) == 3);
    CHECK(status_num(o, "db", "health", "probes") == 3);
    CHECK(status_has(o, "db", "\"policy\":\"on_failure\""));
    CHECK(status_has(o, "db", "\"strategy\":\"one_for_one\""));

    p.detail = "connection refused";
    atomic_store(&p.answer, PSO_HEALTH_UNHEALTHY);
    advance(o, 1000); /* one failure: not yet unhealthy */
    CHECK(status_has(o, "db", "\"status\":\"healthy\""));
    advance(o, 1000); /* two: unhealthy, restart in 1 s */
    CHECK(status_has(o, "db", "\"status\":\"unhealthy\""));
    CHECK(status_has(o, "db", "\"detail\":\"connection refused\""));
    CHECK(status_num(o, "db", "supervision", "next_attempt_in") == 1.0);
    char got[512];
    alerts(al, got, sizeof got);
    CHECK_CONTAINS(got, "db.unhealthy");
    CHECK_CONTAINS(got, "db.restarting");

    advance(o, 1000);
    p.detail = NULL;
    atomic_store(&p.answer, PSO_HEALTH_HEALTHY);
    CHECK(atomic_load(&starts) == 2);
    CHECK(status_has(o, "db", "\"state\":\"Active\""));
    CHECK(status_num(o, "db", "supervision", "restarts") == 1);
    CHECK(status_has(o, "db", "\"next_attempt_in\":null"));
    alerts(al, got, sizeof got);
    CHECK_CONTAINS(got, "db.restarted");

    /* The context is a key valid only inside the probe. */
    const pso_probe_ctx *old = atomic_load(&p.last_ctx);
    CHECK_STATUS(pso_probe_set_detail(old, "late"), PSO_ERR_STALE_HANDLE);
    CHECK_ERR("stale");
    CHECK_STATUS(pso_probe_set_detail(NULL, "x"), PSO_ERR_NULL_POINTER);

    CHECK_STATUS(pso_unsubscribe(al), PSO_OK);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK(atomic_load(&p.freed) == 1);
}

static void test_probe_answers_and_details(void) {
    pso_orchestrator o = virtual_orch();
    CHECK_STATUS(pso_register_system(o, "svc", NULL, NULL), PSO_OK);
    probe_state p = {0};
    p.answer = PSO_HEALTH_DEGRADED;
    p.detail = "queue depth 1200";
    p.nested = o;
    pso_health_check c = check_of(&p, 500, 1);
    CHECK_STATUS(pso_set_health_check(o, "svc", &c), PSO_OK);
    CHECK_STATUS(pso_activate_system(o, "svc", NULL), PSO_OK);
    advance(o, 500);
    CHECK(atomic_load(&p.calls) == 1);
    CHECK(status_has(o, "svc", "\"status\":\"degraded\""));
    CHECK(status_has(o, "svc", "\"detail\":\"queue depth 1200\""));
    CHECK(status_has(o, "svc", "\"state\":\"Active\"")); /* degraded is no failure */

    /* Any other return value is a failed probe, with the detail. */
    atomic_store(&p.answer, 7);
    advance(o, 500);
    CHECK(status_has(o, "svc", "\"status\":\"unhealthy\""));
    CHECK(status_has(o, "svc", "probe returned 7: queue depth 1200"));
    p.detail = NULL;
    atomic_store(&p.answer, -1);
    advance(o, 500);
    CHECK(status_has(o, "svc", "\"detail\":\"probe returned -1\""));
    CHECK(status_num(o, "svc", "health", "consecutive_failures") == 2);
    /* Unsupervised: unhealthy but up. */
    CHECK(status_has(o, "svc", "\"state\":\"Active\""));

    atomic_store(&p.answer, PSO_HEALTH_HEALTHY);
    advance(o, 500);
    CHECK(status_has(o, "svc", "\"status\":\"healthy\""));
    CHECK(status_has(o, "svc", "\"detail\":\"\""));
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK(atomic_load(&p.freed) == 1);
}

static void test_growing_backoff_then_giving_up(void) {
    pso_orchestrator o = virtual_orch();
    atomic_int starts = 0;
    counted(o, "flaky", &starts);
    pso_supervision s = sup();
    CHECK_STATUS(pso_set_supervision(o, "flaky", &s), PSO_OK);
    pso_subscription al = {0};
    CHECK_STATUS(pso_subscribe_pull(o, "pso.alert.>", NULL, &al), PSO_OK);
    CHECK_STATUS(pso_activate_system(o, "flaky", NULL), PSO_OK);
    double delays[3];
    for (int i = 0; i < 3; i++) {
        CHECK_STATUS(pso_report_failure(o, "flaky", "segfault"), PSO_OK);
        CHECK(status_has(o, "flaky", "\"state\":\"Failed\""));
        delays[i] = status_num(o, "flaky", "supervision", "next_attempt_in");
        advance(o, (uint64_t)(delays[i] * 1000.0 + 0.5));
        CHECK(status_has(o, "flaky", "\"state\":\"Active\""));
    }
    CHECK(delays[0] == 1.0 && delays[1] == 2.0 && delays[2] == 4.0);
    CHECK_STATUS(pso_report_failure(o, "flaky", NULL), PSO_OK);
    advance(o, 0);
    CHECK(status_has(o, "flaky", "\"state\":\"GaveUp\""));
    CHECK(status_has(o, "flaky", "\"gave_up\":true"));
    CHECK(atomic_load(&starts) == 4);
    char got[1024];
    alerts(al, got, sizeof got);
    CHECK_CONTAINS(got, "flaky.failed");
    CHECK_CONTAINS(got, "flaky.gave_up");

    /* It stays down; activating by hand starts over. */
    advance(o, 100000);
    CHECK(status_has(o, "flaky", "\"state\":\"GaveUp\""));
    char *why = NULL;
    CHECK_STATUS(pso_why_inactive(o, "flaky", &why), PSO_OK);
    CHECK_CONTAINS(why, "supervisor stopped restarting it");
    pso_string_free(why);
    CHECK_STATUS(pso_activate_system(o, "flaky", NULL), PSO_OK);
    CHECK(status_has(o, "flaky", "\"state\":\"Active\""));

    /* Only an Active system can fail; unknown systems are NOT_FOUND. */
    CHECK_STATUS(pso_register_system(o, "idle", NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_report_failure(o, "idle", "x"), PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("not Active");
    CHECK_STATUS(pso_report_failure(o, "ghost", "x"), PSO_ERR_NOT_FOUND);
    CHECK_STATUS(pso_unsubscribe(al), PSO_OK);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

static void test_crash_stops_dependents_and_recovery_restarts_them(void) {
    pso_orchestrator o = virtual_orch();
    atomic_int db = 0, api = 0;
    counted(o, "db", &db);
    counted(o, "api", &api);
    CHECK_STATUS(pso_register_system(o, "web", NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_connect(o, "api", "requires", "db"), PSO_OK);
    CHECK_STATUS(pso_connect(o, "web", "requires", "api"), PSO_OK);
    pso_supervision s = sup();
    CHECK_STATUS(pso_set_supervision(o, "db", &s), PSO_OK);
    CHECK_STATUS(pso_activate_system(o, "web", NULL), PSO_OK);
    CHECK_STATUS(pso_report_failure(o, "db", "out of memory"), PSO_OK);
    advance(o, 0); /* the supervisor stops what requires it */
    CHECK(status_has(o, "db", "\"state\":\"Failed\""));
    CHECK(status_has(o, "api", "\"state\":\"Inactive\""));
    CHECK(status_has(o, "web", "\"state\":\"Inactive\""));
    advance(o, 1000); /* restart */
    advance(o, 0);    /* and bring the dependents back */
    CHECK(status_has(o, "db", "\"state\":\"Active\""));
    CHECK(status_has(o, "api", "\"state\":\"Active\""));
    CHECK(status_has(o, "web", "\"state\":\"Active\""));
    CHECK(atomic_load(&db) == 2 && atomic_load(&api) == 2);

    /* rest_for_one and always are accepted too. */
    s.strategy = PSO_STRATEGY_REST_FOR_ONE;
    s.policy = PSO_RESTART_ALWAYS;
    CHECK_STATUS(pso_set_supervision(o, "db", &s), PSO_OK);
    CHECK(status_has(o, "db", "\"strategy\":\"rest_for_one\""));
    CHECK(status_has(o, "db", "\"policy\":\"always\""));
    s.strategy = PSO_STRATEGY_ONE_FOR_ALL;
    s.policy = PSO_RESTART_NEVER;
    CHECK_STATUS(pso_set_supervision(o, "db", &s), PSO_OK);
    CHECK(status_has(o, "db", "\"strategy\":\"one_for_all\""));
    /* NULL removes supervision. */
    CHECK_STATUS(pso_set_supervision(o, "db", NULL), PSO_OK);
    CHECK(status_has(o, "db", "\"supervision\":null"));
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

static void test_watchdog(void) {
    pso_orchestrator o = virtual_orch();
    atomic_int starts = 0;
    counted(o, "worker", &starts);
    /* A watchdog only: user_data is not used, and freed at once. */
    probe_state unused = {0};
    pso_health_check c = {0};
    c.watchdog_ms = 5000;
    c.user_data = &unused;
    c.free_user_data = probe_free;
    CHECK_STATUS(pso_set_health_check(o, "worker", &c), PSO_OK);
    CHECK(atomic_load(&unused.freed) == 1);
    pso_supervision s = sup();
    CHECK_STATUS(pso_set_supervision(o, "worker", &s), PSO_OK);
    CHECK_STATUS(pso_activate_system(o, "worker", NULL), PSO_OK);
    for (int i = 0; i < 5; i++) {
        advance(o, 4000);
        CHECK_STATUS(pso_check_in(o, "worker"), PSO_OK);
    }
    CHECK(atomic_load(&starts) == 1);
    CHECK(status_num(o, "worker", "health", "since_check_in") == 0.0);
    advance(o, 5000); /* missed */
    CHECK(status_has(o, "worker", "\"status\":\"unhealthy\""));
    CHECK(status_has(o, "worker", "missed its watchdog deadline"));
    advance(o, 1000);
    CHECK(atomic_load(&starts) == 2);
    CHECK_STATUS(pso_check_in(o, "ghost"), PSO_ERR_NOT_FOUND);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK(atomic_load(&unused.freed) == 1);
}

/* Alternates unhealthy and healthy answers, starting unhealthy. */
static int32_t flipping_probe(void *ud, const char *system, const pso_probe_ctx *ctx) {
    (void)system;
    (void)ctx;
    return atomic_fetch_add((atomic_int *)ud, 1) % 2 == 0 ? PSO_HEALTH_UNHEALTHY
                                                           : PSO_HEALTH_HEALTHY;
}

static void test_flapping_suppresses_alerts_until_a_quiet_window(void) {
    pso_options opts = {0};
    opts.workers = 2;
    opts.virtual_clock = true;
    opts.alert_interval_ms = UINT64_MAX;
    opts.flap_threshold = 4;
    opts.flap_window_ms = 20000;
    pso_orchestrator o = {0};
    CHECK_STATUS(pso_orchestrator_new(&opts, &o), PSO_OK);
    CHECK_STATUS(pso_register_system(o, "link", NULL, NULL), PSO_OK);
    atomic_int flips = 0;
    pso_health_check c = {0};
    c.probe = flipping_probe;
    c.user_data = &flips;
    c.interval_ms = 1000;
    c.failures_before_unhealthy = 1;
    CHECK_STATUS(pso_set_health_check(o, "link", &c), PSO_OK);
    pso_subscription al = {0};
    CHECK_STATUS(pso_subscribe_pull(o, "pso.alert.>", NULL, &al), PSO_OK);
    CHECK_STATUS(pso_activate_system(o, "link", NULL), PSO_OK);
    advance(o, 10000);
    char got[1024];
    alerts(al, got, sizeof got);
    CHECK(strcmp(got, "link.unhealthy link.recovered link.unhealthy link.flapping ") == 0);
    CHECK(status_has(o, "link", "\"flapping\":true"));

    /* Steady from now on: flapping ends after a quiet window. */
    probe_state steady = {0};
    steady.answer = PSO_HEALTH_HEALTHY;
    c = check_of(&steady, 1000, 1);
    CHECK_STATUS(pso_set_health_check(o, "link", &c), PSO_OK);
    advance(o, 40000);
    alerts(al, got, sizeof got);
    CHECK_CONTAINS(got, "link.flapping_ended");
    CHECK(status_has(o, "link", "\"flapping\":false"));
    CHECK_STATUS(pso_unsubscribe(al), PSO_OK);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK(atomic_load(&steady.freed) == 1);
}

static void test_user_data_and_errors(void) {
    int base = atomic_load(&g_freed);
    pso_orchestrator o = virtual_orch();
    CHECK_STATUS(pso_register_system(o, "a", NULL, NULL), PSO_OK);
    probe_state p1 = {0}, p2 = {0}, bad = {0};

    /* Refused checks never take user_data. */
    pso_health_check none = {0};
    none.user_data = &bad;
    none.free_user_data = probe_free;
    CHECK_STATUS(pso_set_health_check(o, "a", &none), PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("a probe or a watchdog");
    pso_health_check c = check_of(&bad, 1000, 1);
    CHECK_STATUS(pso_set_health_check(o, "ghost", &c), PSO_ERR_NOT_FOUND);
    CHECK_STATUS(pso_set_health_check(o, NULL, &c), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_set_health_check(o, BAD_UTF8, &c), PSO_ERR_INVALID_UTF8);
    CHECK(atomic_load(&bad.freed) == 0);

    /* Replaced: the old one is freed; removed: the new one too. */
    c = check_of(&p1, 1000, 1);
    CHECK_STATUS(pso_set_health_check(o, "a", &c), PSO_OK);
    c = check_of(&p2, 1000, 1);
    CHECK_STATUS(pso_set_health_check(o, "a", &c), PSO_OK);
    CHECK(atomic_load(&p1.freed) == 1);
    CHECK(atomic_load(&p2.freed) == 0);
    CHECK_STATUS(pso_set_health_check(o, "a", NULL), PSO_OK);
    CHECK(atomic_load(&p2.freed) == 1);
    CHECK(status_has(o, "a", "\"health\":null"));

    /* Still installed at close: freed by the close. */
    probe_state p3 = {0};
    c = check_of(&p3, 1000, 1);
    CHECK_STATUS(pso_set_health_check(o, "a", &c), PSO_OK);
    CHECK_STATUS(pso_activate_system(o, "a", NULL), PSO_OK);
    advance(o, 1000);
    CHECK(atomic_load(&p3.calls) == 1);

    /* Supervision errors. */
    pso_supervision s = {0};
    s.policy = 9;
    CHECK_STATUS(pso_set_supervision(o, "a", &s), PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("restart policy 9");
    s.policy = 0;
    s.strategy = 4;
    CHECK_STATUS(pso_set_supervision(o, "a", &s), PSO_ERR_INVALID_ARGUMENT);
    s.strategy = 0;
    s.backoff_ms = 5000;
    s.max_backoff_ms = 10;
    CHECK_STATUS(pso_set_supervision(o, "a", &s), PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("backoff");
    s = (pso_supervision){0}; /* all defaults */
    CHECK_STATUS(pso_set_supervision(o, "a", &s), PSO_OK);
    CHECK(status_has(o, "a", "\"policy\":\"on_failure\""));
    /* max_restarts 5: the 6th failure within the window gives up. */
    CHECK(status_num(o, "a", "supervision", "failures_left") == 6);
    CHECK_STATUS(pso_set_supervision(o, "ghost", &s), PSO_ERR_NOT_FOUND);
    CHECK_STATUS(pso_set_supervision(o, NULL, &s), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_set_supervision(o, BAD_UTF8, &s), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_check_in(o, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_check_in(o, BAD_UTF8), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_report_failure(o, NULL, "x"), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_report_failure(o, "a", BAD_UTF8), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("message");

    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK_FREED(base + 3);
    CHECK(atomic_load(&p3.freed) == 1);
    CHECK(atomic_load(&bad.freed) == 0);

    /* Stale handle. */
    CHECK_STATUS(pso_set_health_check(o, "a", &c), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_set_supervision(o, "a", &s), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_check_in(o, "a"), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_report_failure(o, "a", "x"), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_clock_advance(o, 1), PSO_ERR_STALE_HANDLE);
    CHECK(atomic_load(&p3.freed) == 1);
}

static void test_real_time_probes_run_on_workers_and_time_out(void) {
    int base = atomic_load(&g_freed);
    pso_orchestrator o = new_orch(2);
    CHECK_STATUS(pso_clock_advance(o, 1), PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("real time");
    CHECK_STATUS(pso_register_system(o, "fast", NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_register_system(o, "slow", NULL, NULL), PSO_OK);
    probe_state fast = {0}, slow = {0};
    fast.answer = PSO_HEALTH_HEALTHY;
    slow.answer = PSO_HEALTH_HEALTHY;
    slow.sleep_ms = 300;
    pso_health_check c = check_of(&fast, 20, 1);
    CHECK_STATUS(pso_set_health_check(o, "fast", &c), PSO_OK);
    c = check_of(&slow, 50, 1);
    c.timeout_ms = 10;
    CHECK_STATUS(pso_set_health_check(o, "slow", &c), PSO_OK);
    CHECK_STATUS(pso_activate_all(o, NULL), PSO_OK);

    for (int i = 0; i < 10000 && atomic_load(&fast.calls) < 2; i++) {
        sleep_ms(1);
    }
    CHECK(atomic_load(&fast.calls) >= 2);
    CHECK(!pthread_equal(atomic_load(&fast.thread), pthread_self()));

    /* A probe that answers after its timeout counts as failed. */
    bool timed_out = false;
    for (int i = 0; i < 1000 && !timed_out; i++) {
        char *json = status_of(o, "slow");
        timed_out = json != NULL && strstr(json, "no answer within") != NULL;
        pso_string_free(json);
        if (!timed_out) {
            sleep_ms(10);
        }
    }
    CHECK(timed_out);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    /* A probe still sleeping at close is freed once it returns. */
    CHECK_FREED(base + 2);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"unhealthy_system_is_restarted_after_its_backoff",
         test_unhealthy_system_is_restarted_after_its_backoff},
        {"probe_answers_and_details", test_probe_answers_and_details},
        {"growing_backoff_then_giving_up", test_growing_backoff_then_giving_up},
        {"crash_stops_dependents_and_recovery_restarts_them",
         test_crash_stops_dependents_and_recovery_restarts_them},
        {"watchdog", test_watchdog},
        {"flapping_suppresses_alerts_until_a_quiet_window",
         test_flapping_suppresses_alerts_until_a_quiet_window},
        {"user_data_and_errors", test_user_data_and_errors},
        {"real_time_probes_run_on_workers_and_time_out",
         test_real_time_probes_run_on_workers_and_time_out},
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
