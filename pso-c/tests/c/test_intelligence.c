/*
 * C tests of the intelligence API of libpso (issue 6), compiled against
 * include/pso.h with -Wall -Wextra -Werror -std=c11 -pedantic:
 * learn_patterns after measured runs, coordination_insights,
 * optimization_recommendations, optimize_coordination (dry run, guardrails
 * JSON and its errors, applying a promotion), the change log and
 * revert_change (NOT_FOUND, reverting twice), evolve_coordination with a C
 * workload (kept or reverted, the evolution log, trial JSON errors),
 * snapshots that carry what was learned into another orchestrator, and
 * NULL / invalid UTF-8 / stale arguments. No assertion depends on timing:
 * which arm of an evolution trial wins is not checked, only that the
 * decision is consistent with the reported numbers.
 *
 * Prints "N passed, M failed" and exits non-zero if anything failed.
 */
#define _POSIX_C_SOURCE 200809L

#include "check.h"

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

static double json_num(const char *json, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = json ? strstr(json, pat) : NULL;
    return p ? strtod(p + strlen(pat), NULL) : -1.0;
}

static int32_t op_ok(void *ud, const pso_step_ctx *ctx) {
    (void)ud;
    return pso_step_set_output(ctx, "1") == PSO_OK ? 0 : 1;
}

static const char FLOW[] = "name = \"flow\"\n"
                           "[[steps]]\nname = \"a\"\nsystem = \"svc\"\nop = \"work\"\n"
                           "[[steps]]\nname = \"b\"\nsystem = \"svc\"\nop = \"work\"\n"
                           "after = [\"a\"]\n"
                           "[[steps]]\nname = \"c\"\nsystem = \"svc\"\nop = \"work\"\n";

/* An orchestrator with system "svc" (operation "work") and the workflow. */
static pso_orchestrator setup(pso_workflow *wf, const pso_options *opts) {
    pso_orchestrator o = {0};
    CHECK_STATUS(pso_orchestrator_new(opts, &o), PSO_OK);
    CHECK_STATUS(pso_register_system(o, "svc", NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_set_operation(o, "svc", "work", op_ok, NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_workflow_load_str(o, FLOW, PSO_FORMAT_TOML, wf), PSO_OK);
    CHECK_STATUS(pso_activate_system(o, "svc", NULL), PSO_OK);
    return o;
}

static bool run_once(pso_orchestrator o, pso_workflow wf) {
    pso_run run = {0};
    char *result = NULL;
    bool ok = pso_coordinate_systems(o, wf, NULL, NULL, &run) == PSO_OK &&
              pso_run_wait(run, &result) == PSO_OK && strstr(result, "\"succeeded\"") != NULL;
    pso_string_free(result);
    pso_run_free(run);
    return ok;
}

/* ------------------------------------------------------------------- tests */

static void test_learn_insights_recommendations(void) {
    pso_options opts = {0};
    opts.workers = 2;
    pso_workflow wf = {0};
    pso_orchestrator o = setup(&wf, &opts);
    for (int i = 0; i < 10; i++) {
        CHECK(run_once(o, wf));
    }
    char *json = NULL;
    CHECK_STATUS(pso_learn_patterns(o, &json), PSO_OK);
    CHECK_CONTAINS(json, "\"operations\":[");
    CHECK_CONTAINS(json, "\"key\":\"svc.work\"");
    CHECK_CONTAINS(json, "\"co_activation\":");
    CHECK_CONTAINS(json, "\"edges\":");
    CHECK(json_num(json, "samples") >= 30); /* 3 steps x 10 runs */
    pso_string_free(json);
    /* Saved in the state store too. */
    CHECK_STATUS(pso_state_get(o, "pso.patterns", &json), PSO_OK);
    CHECK(json != NULL && strcmp(json, "null") != 0);
    pso_string_free(json);

    CHECK_STATUS(pso_coordination_insights(o, &json), PSO_OK);
    CHECK(json_num(json, "runs") == 10);
    CHECK_CONTAINS(json, "\"critical_paths\":[{");
    CHECK_CONTAINS(json, "\"workflow\":\"flow\"");
    CHECK_CONTAINS(json, "\"contributors\":[");
    CHECK_CONTAINS(json, "\"unhealthy\":[]");
    CHECK_CONTAINS(json, "\"gave_up\":[]");
    pso_string_free(json);

    CHECK_STATUS(pso_optimization_recommendations(o, &json), PSO_OK);
    CHECK(json != NULL && json[0] == '[');
    pso_string_free(json);

    /* Dry run with default guardrails: nothing applied, nothing logged. */
    CHECK_STATUS(pso_optimize_coordination(o, false, NULL, &json), PSO_OK);
    CHECK_CONTAINS(json, "\"applied\":false");
    CHECK_CONTAINS(json, "\"changes\":[]");
    pso_string_free(json);
    CHECK_STATUS(pso_coordination_log(o, &json), PSO_OK);
    CHECK(json != NULL && strcmp(json, "[]") == 0);
    pso_string_free(json);

    /* Guardrails JSON and its errors. */
    CHECK_STATUS(pso_optimize_coordination(
                     o, false, "{\"min_samples\": 1, \"min_confidence\": 0.1, \"idle_after_ms\": 5}",
                     &json),
                 PSO_OK);
    pso_string_free(json);
    json = (char *)"x";
    CHECK_STATUS(pso_optimize_coordination(o, false, "{", &json), PSO_ERR_PARSE);
    CHECK(json == NULL);
    CHECK_ERR("guardrails_json");
    CHECK_STATUS(pso_optimize_coordination(o, false, "{\"min_sample\": 1}", &json),
                 PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("unknown field \"min_sample\"");
    CHECK_STATUS(pso_optimize_coordination(o, false, "{\"min_confidence\": 2}", &json),
                 PSO_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pso_optimize_coordination(o, false, "{\"min_samples\": -1}", &json),
                 PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("min_samples");
    CHECK_STATUS(pso_optimize_coordination(o, false, "[1]", &json), PSO_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pso_optimize_coordination(o, false, NULL, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_optimize_coordination(o, false, BAD_UTF8, &json), PSO_ERR_INVALID_UTF8);

    CHECK_STATUS(pso_workflow_free(wf), PSO_OK);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK_STATUS(pso_learn_patterns(o, &json), PSO_ERR_STALE_HANDLE);
    CHECK(json == NULL);
    CHECK_STATUS(pso_coordination_insights(o, &json), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_optimization_recommendations(o, &json), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_optimize_coordination(o, false, NULL, &json), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_coordination_log(o, &json), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_evolution_log(o, &json), PSO_ERR_STALE_HANDLE);
}

static void test_optimize_applies_a_promotion_and_reverts_it(void) {
    pso_options opts = {0};
    opts.workers = 1;
    opts.hub_promote_threshold = 1e-6; /* any traffic is hot */
    opts.hub_demote_threshold = 1e-12;
    pso_orchestrator o = {0};
    CHECK_STATUS(pso_orchestrator_new(&opts, &o), PSO_OK);
    CHECK_STATUS(pso_register_system(o, "prod", NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_register_system(o, "cons", NULL, NULL), PSO_OK);
    pso_subscribe_options so = {0};
    so.owner = "cons";
    pso_subscription s = {0};
    CHECK_STATUS(pso_subscribe_pull(o, "feed.>", &so, &s), PSO_OK);
    for (int i = 0; i < 50; i++) {
        CHECK_STATUS(pso_publish(o, "feed.tick", "1", "prod", NULL), PSO_OK);
    }
    sleep_ms(20); /* rates are sampled at most once per millisecond */
    char *json = NULL;
    CHECK_STATUS(pso_optimization_recommendations(o, &json), PSO_OK);
    CHECK_CONTAINS(json, "\"kind\":\"promote_to_direct\"");
    CHECK_CONTAINS(json, "\"target\":\"");
    CHECK_CONTAINS(json, "\"evidence\":\"");
    pso_string_free(json);

    CHECK_STATUS(pso_optimize_coordination(
                     o, true, "{\"min_samples\": 0, \"min_confidence\": 0}", &json),
                 PSO_OK);
    CHECK_CONTAINS(json, "\"applied\":true");
    CHECK_CONTAINS(json, "\"changes\":[{");
    long id = (long)json_num(json ? strstr(json, "\"changes\":") : NULL, "id");
    CHECK(id > 0);
    pso_string_free(json);
    CHECK_STATUS(pso_coordination_status(o, &json), PSO_OK);
    CHECK_CONTAINS(json, "\"origin\":\"promoted\"");
    pso_string_free(json);
    CHECK_STATUS(pso_coordination_log(o, &json), PSO_OK);
    CHECK_CONTAINS(json, "\"reverted\":false");
    pso_string_free(json);

    CHECK_STATUS(pso_revert_change(o, (uint64_t)id, &json), PSO_OK);
    CHECK_CONTAINS(json, "\"reverted\":true");
    pso_string_free(json);
    CHECK_STATUS(pso_coordination_status(o, &json), PSO_OK);
    CHECK_CONTAINS(json, "\"direct_pairs\":[]");
    pso_string_free(json);
    CHECK_STATUS(pso_revert_change(o, (uint64_t)id, NULL), PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("already reverted");
    CHECK_STATUS(pso_revert_change(o, 9999, &json), PSO_ERR_NOT_FOUND);
    CHECK(json == NULL);
    CHECK_STATUS(pso_unsubscribe(s), PSO_OK);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK_STATUS(pso_revert_change(o, 1, &json), PSO_ERR_STALE_HANDLE);
}

/* The workload of an evolution trial. */
typedef struct {
    pso_orchestrator o;
    pso_workflow wf;
    atomic_int calls;
    int fail;
    bool wrong_handle;
} workload_state;

static int32_t workload(void *ud, pso_orchestrator o) {
    workload_state *w = ud;
    atomic_fetch_add(&w->calls, 1);
    if (o.id != w->o.id) {
        w->wrong_handle = true;
    }
    if (w->fail) {
        return w->fail;
    }
    return run_once(o, w->wf) ? 0 : 1;
}

static void test_evolve_coordination(void) {
    pso_options opts = {0};
    opts.workers = 2;
    workload_state w = {0};
    pso_orchestrator o = setup(&w.wf, &opts);
    w.o = o;
    char *json = NULL;
    CHECK_STATUS(pso_evolve_coordination(
                     o, "{\"change\": \"scheduling_policy\", \"policy\": \"fifo\", \"rounds\": 2}",
                     workload, &w, &json),
                 PSO_OK);
    CHECK(atomic_load(&w.calls) == 4); /* 2 rounds per arm */
    CHECK(!w.wrong_handle);
    CHECK_CONTAINS(json, "\"baseline\":{");
    CHECK_CONTAINS(json, "\"trial\":{");
    CHECK_CONTAINS(json, "\"rounds\":2");
    CHECK_CONTAINS(json, "\"reason\":\"");
    /* Kept exactly when the improvement reached the 5% margin. */
    bool kept = json != NULL && strstr(json, "\"kept\":true") != NULL;
    CHECK(kept == (json_num(json, "improvement") >= 0.05));
    pso_string_free(json);
    CHECK_STATUS(pso_coordination_log(o, &json), PSO_OK);
    CHECK(kept == (json != NULL && strstr(json, "\"id\"") != NULL));
    pso_string_free(json);

    /* Every round failing in both arms: no improvement, reverted. */
    w.fail = 3;
    CHECK_STATUS(pso_evolve_coordination(o,
                                         "{\"change\": \"concurrency_limit\", \"system\": \"svc\", "
                                         "\"limit\": 1, \"metric\": \"error_rate\", \"rounds\": 1}",
                                         workload, &w, &json),
                 PSO_OK);
    CHECK_CONTAINS(json, "\"kept\":false");
    CHECK_CONTAINS(json, "\"error_rate\":1.0");
    pso_string_free(json);
    CHECK_STATUS(pso_evolution_log(o, &json), PSO_OK);
    int n = 0;
    for (const char *p = json; p && (p = strstr(p, "\"baseline\"")) != NULL; p++) {
        n++;
    }
    CHECK(n == 2);
    pso_string_free(json);

    /* Trial JSON errors (the workload never runs). */
    int before = atomic_load(&w.calls);
    struct {
        const char *trial;
        pso_status want;
        const char *msg;
    } bad[] = {
        {"{", PSO_ERR_PARSE, "trial_json"},
        {"{}", PSO_ERR_INVALID_ARGUMENT, "\"change\""},
        {"{\"change\": \"teleport\"}", PSO_ERR_INVALID_ARGUMENT, "unknown change 'teleport'"},
        {"{\"change\": \"scheduling_policy\"}", PSO_ERR_INVALID_ARGUMENT, "\"policy\""},
        {"{\"change\": \"scheduling_policy\", \"policy\": \"lifo\"}", PSO_ERR_INVALID_ARGUMENT,
         "lifo"},
        {"{\"change\": \"concurrency_limit\", \"system\": \"ghost\", \"limit\": 1}",
         PSO_ERR_NOT_FOUND, "ghost"},
        {"{\"change\": \"concurrency_limit\", \"system\": \"svc\", \"limit\": 0}",
         PSO_ERR_INVALID_ARGUMENT, "limit 0"},
        {"{\"change\": \"scheduling_policy\", \"policy\": \"fifo\", \"rounds\": 0}",
         PSO_ERR_INVALID_ARGUMENT, "rounds"},
        {"{\"change\": \"scheduling_policy\", \"policy\": \"fifo\", \"metric\": \"speed\"}",
         PSO_ERR_INVALID_ARGUMENT, "speed"},
        {"{\"change\": \"scheduling_policy\", \"policy\": \"fifo\", \"extra\": 1}",
         PSO_ERR_INVALID_ARGUMENT, "unknown field \"extra\""},
        {"{\"change\": 5}", PSO_ERR_INVALID_ARGUMENT, "must be a string"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json = (char *)"x";
        CHECK_STATUS(pso_evolve_coordination(o, bad[i].trial, workload, &w, &json), bad[i].want);
        CHECK_ERR(bad[i].msg);
        CHECK(json == NULL);
    }
    CHECK_STATUS(pso_evolve_coordination(o, NULL, workload, &w, &json), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_evolve_coordination(o, "{\"change\": \"scheduling_policy\", \"policy\": "
                                            "\"fifo\"}",
                                         NULL, &w, &json),
                 PSO_ERR_NULL_POINTER);
    CHECK_ERR("'workload'");
    CHECK_STATUS(pso_evolve_coordination(o, "{}", workload, &w, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_evolve_coordination(o, BAD_UTF8, workload, &w, &json), PSO_ERR_INVALID_UTF8);
    CHECK(atomic_load(&w.calls) == before);

    CHECK_STATUS(pso_workflow_free(w.wf), PSO_OK);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK_STATUS(pso_evolve_coordination(
                     o, "{\"change\": \"scheduling_policy\", \"policy\": \"fifo\"}", workload,
                     &w, &json),
                 PSO_ERR_STALE_HANDLE);
    CHECK(atomic_load(&w.calls) == before);
}

static void test_snapshot_carries_what_was_learned(void) {
    char dir[] = "/tmp/pso-intel-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128], missing[128];
    snprintf(path, sizeof path, "%s/snap.json", dir);
    snprintf(missing, sizeof missing, "%s/none/snap.json", dir);

    pso_options opts = {0};
    opts.workers = 2;
    pso_workflow wf = {0};
    pso_orchestrator o = setup(&wf, &opts);
    for (int i = 0; i < 5; i++) {
        CHECK(run_once(o, wf));
    }
    CHECK_STATUS(pso_snapshot(o, path), PSO_OK);
    CHECK_STATUS(pso_snapshot(o, missing), PSO_ERR_IO);

    /* A fresh orchestrator starts warm. */
    pso_workflow wf2 = {0};
    pso_orchestrator o2 = setup(&wf2, &opts);
    char *json = NULL;
    CHECK_STATUS(pso_estimates(o2, &json), PSO_OK);
    CHECK(json == NULL || strstr(json, "svc.work") == NULL);
    pso_string_free(json);
    CHECK_STATUS(pso_restore(o2, path), PSO_OK);
    CHECK_STATUS(pso_estimates(o2, &json), PSO_OK);
    CHECK_CONTAINS(json, "\"key\":\"svc.work\"");
    CHECK(json_num(json, "samples") >= 15);
    pso_string_free(json);
    CHECK_STATUS(pso_restore(o2, missing), PSO_ERR_IO);

    CHECK_STATUS(pso_snapshot(o, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_snapshot(o, BAD_UTF8), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_restore(o, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_restore(o, BAD_UTF8), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_learn_patterns(o, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_coordination_insights(o, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_optimization_recommendations(o, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_coordination_log(o, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_evolution_log(o, NULL), PSO_ERR_NULL_POINTER);

    CHECK_STATUS(pso_workflow_free(wf), PSO_OK);
    CHECK_STATUS(pso_workflow_free(wf2), PSO_OK);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK_STATUS(pso_orchestrator_close(o2), PSO_OK);
    CHECK_STATUS(pso_snapshot(o, path), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_restore(o, path), PSO_ERR_STALE_HANDLE);
    unlink(path);
    rmdir(dir);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"learn_insights_recommendations", test_learn_insights_recommendations},
        {"optimize_applies_a_promotion_and_reverts_it",
         test_optimize_applies_a_promotion_and_reverts_it},
        {"evolve_coordination", test_evolve_coordination},
        {"snapshot_carries_what_was_learned", test_snapshot_carries_what_was_learned},
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
