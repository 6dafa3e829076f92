/*
 * C tests of the metrics API of libpso (issue 6), compiled against
 * include/pso.h with -Wall -Wextra -Werror -std=c11 -pedantic:
 * the JSON and Prometheus snapshots after workflow runs, lifecycle
 * transitions and hub traffic (counts exact, latency summaries present),
 * recording turned off and on, reset, the pso_options metrics fields
 * (metrics_disabled, latency_sample_every, max_topics, utilization
 * intervals), and NULL / stale arguments. Only counts are checked, never
 * how long anything took.
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

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
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

static void run_flow(pso_orchestrator o, pso_workflow wf) {
    pso_run run = {0};
    char *result = NULL;
    CHECK_STATUS(pso_coordinate_systems(o, wf, NULL, NULL, &run), PSO_OK);
    CHECK_STATUS(pso_run_wait(run, &result), PSO_OK);
    CHECK_CONTAINS(result, "\"state\":\"succeeded\"");
    pso_string_free(result);
    CHECK_STATUS(pso_run_free(run), PSO_OK);
}

static char *metrics_json(pso_orchestrator o) {
    char *json = NULL;
    CHECK_STATUS(pso_performance_metrics_json(o, &json), PSO_OK);
    return json;
}

static char *metrics_prom(pso_orchestrator o) {
    char *text = NULL;
    CHECK_STATUS(pso_performance_metrics_prometheus(o, &text), PSO_OK);
    return text;
}

/* The number after `key":` following the first `after` in `text`. */
static double num_after(const char *text, const char *after, const char *key) {
    const char *p = text ? strstr(text, after) : NULL;
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    p = p ? strstr(p, pat) : NULL;
    return p ? strtod(p + strlen(pat), NULL) : -1.0;
}

/* The value of the Prometheus sample line starting with `series ` (-1 if
 * absent). */
static double prom_value(const char *text, const char *series) {
    size_t n = strlen(series);
    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ') {
            return strtod(line + n + 1, NULL);
        }
    }
    return -1.0;
}

static pso_orchestrator setup(const pso_options *opts, pso_workflow *wf) {
    pso_orchestrator o = {0};
    CHECK_STATUS(pso_orchestrator_new(opts, &o), PSO_OK);
    CHECK_STATUS(pso_register_system(o, "svc", NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_set_operation(o, "svc", "work", op_ok, NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_workflow_load_str(o, FLOW, PSO_FORMAT_TOML, wf), PSO_OK);
    CHECK_STATUS(pso_activate_system(o, "svc", NULL), PSO_OK);
    return o;
}

/* ------------------------------------------------------------------- tests */

static void test_snapshot_json_and_prometheus(void) {
    pso_options opts = {0};
    opts.workers = 2;
    pso_workflow wf = {0};
    pso_orchestrator o = setup(&opts, &wf);
    bool on = false;
    CHECK_STATUS(pso_metrics_enabled(o, &on), PSO_OK);
    CHECK(on);
    for (int i = 0; i < 4; i++) {
        run_flow(o, wf);
    }
    pso_subscription s = {0};
    CHECK_STATUS(pso_subscribe_pull(o, "m.>", NULL, &s), PSO_OK);
    for (int i = 0; i < 5; i++) {
        CHECK_STATUS(pso_publish(o, "m.tick", "1", NULL, NULL), PSO_OK);
    }

    char *json = metrics_json(o);
    CHECK_CONTAINS(json, "\"enabled\":true");
    CHECK_CONTAINS(json, "\"svc.work\"");
    CHECK(num_after(json, "\"svc.work\"", "succeeded") == 12); /* 3 steps x 4 runs */
    CHECK_CONTAINS(json, "\"run_time\":{");
    CHECK_CONTAINS(json, "\"queue_wait\":{");
    CHECK_CONTAINS(json, "\"p99\":");
    CHECK_CONTAINS(json, "\"systems\":");
    CHECK_CONTAINS(json, "\"m.tick\"");
    CHECK(num_after(json, "\"m.tick\"", "published") == 5);
    CHECK_CONTAINS(json, "\"latency_sample_every\":256");
    pso_string_free(json);

    char *text = metrics_prom(o);
    CHECK_CONTAINS(text, "# TYPE pso_operation_steps_total counter");
    CHECK(prom_value(text, "pso_operation_steps_total{operation=\"svc.work\",state=\"succeeded\"}") ==
          12);
    CHECK_CONTAINS(text, "# TYPE pso_operation_run_seconds summary");
    CHECK(prom_value(text, "pso_topic_published_total{topic=\"m.tick\"}") == 5);
    CHECK(prom_value(text, "pso_metrics_enabled") == 1);
    pso_string_free(text);

    /* Off: nothing more is recorded, what was recorded stays. */
    CHECK_STATUS(pso_set_metrics_enabled(o, false), PSO_OK);
    CHECK_STATUS(pso_metrics_enabled(o, &on), PSO_OK);
    CHECK(!on);
    run_flow(o, wf);
    json = metrics_json(o);
    CHECK_CONTAINS(json, "\"enabled\":false");
    CHECK(num_after(json, "\"svc.work\"", "succeeded") == 12);
    pso_string_free(json);
    CHECK_STATUS(pso_set_metrics_enabled(o, true), PSO_OK);
    run_flow(o, wf);
    json = metrics_json(o);
    CHECK(num_after(json, "\"svc.work\"", "succeeded") == 15);
    pso_string_free(json);

    /* Reset: counters start over. */
    CHECK_STATUS(pso_reset_metrics(o), PSO_OK);
    json = metrics_json(o);
    CHECK(json != NULL && (strstr(json, "\"svc.work\"") == NULL ||
                           num_after(json, "\"svc.work\"", "succeeded") == 0));
    pso_string_free(json);
    run_flow(o, wf);
    json = metrics_json(o);
    CHECK(num_after(json, "\"svc.work\"", "succeeded") == 3);
    pso_string_free(json);

    CHECK_STATUS(pso_unsubscribe(s), PSO_OK);
    CHECK_STATUS(pso_workflow_free(wf), PSO_OK);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    json = (char *)"x";
    CHECK_STATUS(pso_performance_metrics_json(o, &json), PSO_ERR_STALE_HANDLE);
    CHECK(json == NULL);
    CHECK_STATUS(pso_performance_metrics_prometheus(o, &json), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_set_metrics_enabled(o, true), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_metrics_enabled(o, &on), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_reset_metrics(o), PSO_ERR_STALE_HANDLE);
}

static void test_options(void) {
    pso_options opts = {0};
    opts.workers = 1;
    opts.metrics_disabled = true;
    opts.latency_sample_every = 16;
    opts.max_topics = 2;
    opts.utilization_interval_ms = 50;
    opts.utilization_intervals = 10;
    pso_workflow wf = {0};
    pso_orchestrator o = setup(&opts, &wf);
    bool on = true;
    CHECK_STATUS(pso_metrics_enabled(o, &on), PSO_OK);
    CHECK(!on);
    run_flow(o, wf);
    char *json = metrics_json(o);
    CHECK_CONTAINS(json, "\"enabled\":false");
    CHECK(strstr(json ? json : "", "\"svc.work\"") == NULL);
    CHECK_CONTAINS(json, "\"latency_sample_every\":16");
    CHECK_CONTAINS(json, "\"max_topics\":2");
    pso_string_free(json);

    CHECK_STATUS(pso_set_metrics_enabled(o, true), PSO_OK);
    const char *topics[] = {"t.one", "t.two", "t.three", "t.four"};
    for (size_t i = 0; i < 4; i++) {
        CHECK_STATUS(pso_publish(o, topics[i], "1", NULL, NULL), PSO_OK);
    }
    json = metrics_json(o);
    CHECK_CONTAINS(json, "\"topics_tracked\":2");
    CHECK_CONTAINS(json, "<other>");
    pso_string_free(json);
    CHECK_STATUS(pso_workflow_free(wf), PSO_OK);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

static void test_null_arguments(void) {
    pso_orchestrator o = new_orch(1);
    CHECK_STATUS(pso_performance_metrics_json(o, NULL), PSO_ERR_NULL_POINTER);
    CHECK_ERR("'out'");
    CHECK_STATUS(pso_performance_metrics_prometheus(o, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_metrics_enabled(o, NULL), PSO_ERR_NULL_POINTER);
    pso_orchestrator forged = {0x7777777777ull};
    char *json = NULL;
    CHECK_STATUS(pso_performance_metrics_json(forged, &json), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"snapshot_json_and_prometheus", test_snapshot_json_and_prometheus},
        {"options", test_options},
        {"null_arguments", test_null_arguments},
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
