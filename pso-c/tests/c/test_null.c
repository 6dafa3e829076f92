/*
 * test_null.c - the NULL and invalid-UTF-8 calls that the other C tests do
 * not make, so that every pso_ function of pso.h is called with NULL for each
 * pointer parameter and with a non-UTF-8 string for each string parameter.
 * The rule, and the check that enforces it, are in
 * pso-c/tests/null_coverage.rs (`cargo test -p pso-c --test null_coverage`
 * lists any call still missing).
 *
 * A NULL for a required pointer must give PSO_ERR_NULL_POINTER and a
 * non-UTF-8 string PSO_ERR_INVALID_UTF8, each naming the argument; a NULL for
 * an optional pointer (user_data, a nullable out-parameter) must work.
 * Calls that take a message are made inside a subscription callback, where
 * the message is valid.
 */
#define _POSIX_C_SOURCE 200809L

#include "check.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits (at most 5 s) until *counter reaches want. */
static int wait_for(atomic_int *counter, int want) {
    for (int i = 0; i < 5000 && atomic_load(counter) < want; i++) {
        sleep_ms(1);
    }
    return atomic_load(counter) >= want;
}

static void test_direct_channels(void) {
    pso_orchestrator o = new_orch(1);
    CHECK_STATUS(pso_register_system(o, "a", NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_register_system(o, "b", NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_direct_open(o, "a", BAD_UTF8, "r"), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("'b'");
    pso_direct_end end = {7};
    CHECK_STATUS(pso_direct_endpoint(o, "a", BAD_UTF8, &end), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("'peer'");
    CHECK(end.id == 0);
    CHECK_STATUS(pso_direct_close(o, BAD_UTF8, "b", "r"), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("'a'");
    CHECK_STATUS(pso_direct_close(o, "a", NULL, "r"), PSO_ERR_NULL_POINTER);
    CHECK_ERR("'b'");
    CHECK_STATUS(pso_direct_close(o, "a", "b", BAD_UTF8), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("'reason'");
    /* The arguments are fine once they are valid: nothing is open yet. */
    CHECK_STATUS(pso_direct_close(o, "a", "b", NULL), PSO_ERR_NOT_FOUND);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

static atomic_int g_requests;

/* Answers a request, first trying the payload and reply calls with NULL and
 * non-UTF-8 arguments (user_data is NULL: the subscription was made so). */
static int32_t on_request(const pso_message *m, void *user_data) {
    CHECK(user_data == NULL);
    CHECK_STATUS(pso_message_payload(m, NULL), PSO_ERR_NULL_POINTER);
    CHECK_ERR("'json'");
    CHECK_STATUS(pso_message_reply(m, NULL), PSO_ERR_NULL_POINTER);
    CHECK_ERR("'json'");
    CHECK_STATUS(pso_message_reply(m, BAD_UTF8), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("'json'");
    CHECK_STATUS(pso_message_reply(m, "\"answered\""), PSO_OK);
    atomic_fetch_add(&g_requests, 1);
    return 0;
}

static void test_hub(void) {
    pso_orchestrator o = new_orch(1);
    pso_subscription sub = {7};
    CHECK_STATUS(pso_subscribe_pull(o, BAD_UTF8, NULL, &sub), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("'pattern'");
    CHECK(sub.id == 0);
    char *json = (char *)"unset";
    CHECK_STATUS(pso_request_many(o, BAD_UTF8, "1", 10, 0, 0, &json), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("'topic'");
    CHECK(json == NULL);
    CHECK_STATUS(pso_request_many(o, "null.req", NULL, 10, 0, 0, &json), PSO_ERR_NULL_POINTER);
    CHECK_ERR("'json'");

    /* user_data and free_user_data may be NULL. */
    CHECK_STATUS(pso_subscribe(o, "null.req", NULL, on_request, NULL, NULL, &sub), PSO_OK);
    char *reply = NULL;
    CHECK_STATUS(pso_request(o, "null.req", "1", 5000, &reply), PSO_OK);
    CHECK_CONTAINS(reply, "answered");
    pso_string_free(reply);
    CHECK(atomic_load(&g_requests) == 1);
    CHECK_STATUS(pso_unsubscribe(sub), PSO_OK);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

static atomic_int g_events;

static void on_event(const char *event_json, void *user_data) {
    CHECK(user_data == NULL);
    CHECK(event_json != NULL);
    atomic_fetch_add(&g_events, 1);
}

static void test_state(void) {
    pso_orchestrator o = new_orch(1);
    /* `rev` and `current_json` are both nullable. */
    CHECK_STATUS(pso_state_cas(o, "cas", 0, "1", NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_state_cas(o, "cas", 0, "2", NULL, NULL), PSO_ERR_CAS_CONFLICT);
    /* user_data and free_user_data may be NULL. */
    pso_watch w = {0};
    CHECK_STATUS(pso_state_watch(o, "watched", false, 0, on_event, NULL, NULL, &w), PSO_OK);
    CHECK_STATUS(pso_state_put(o, "watched", "true", NULL, NULL), PSO_OK);
    CHECK(wait_for(&g_events, 1));
    CHECK_STATUS(pso_watch_close(w), PSO_OK);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

static atomic_int g_workloads;

static int32_t workload(void *user_data, pso_orchestrator o) {
    (void)o;
    CHECK(user_data == NULL);
    atomic_fetch_add(&g_workloads, 1);
    return 0;
}

static void test_workflows_and_intelligence(void) {
    pso_orchestrator o = new_orch(1);
    pso_workflow wf = {0};
    CHECK_STATUS(pso_workflow_load_str(o, "{\"name\": \"empty\"}", PSO_FORMAT_JSON, &wf), PSO_OK);
    pso_run run = {7};
    CHECK_STATUS(pso_run_minimal(o, wf, BAD_UTF8, NULL, &run), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("'input_json'");
    CHECK(run.id == 0);
    CHECK_STATUS(pso_run_minimal(o, wf, "null", NULL, NULL), PSO_ERR_NULL_POINTER);
    CHECK_ERR("'out'");
    /* The same call with valid arguments runs (an empty workflow). */
    CHECK_STATUS(pso_run_minimal(o, wf, "null", NULL, &run), PSO_OK);
    char *result = NULL;
    CHECK_STATUS(pso_run_wait(run, &result), PSO_OK);
    pso_string_free(result);
    CHECK_STATUS(pso_run_free(run), PSO_OK);
    CHECK_STATUS(pso_workflow_free(wf), PSO_OK);

    CHECK_STATUS(pso_register_system(o, "svc", NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_report_failure(o, BAD_UTF8, "down"), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("'system'");

    /* user_data may be NULL (PSO only passes it on). */
    char *json = NULL;
    CHECK_STATUS(pso_evolve_coordination(
                     o, "{\"change\": \"scheduling_policy\", \"policy\": \"fifo\", \"rounds\": 1}",
                     workload, NULL, &json),
                 PSO_OK);
    CHECK_CONTAINS(json, "\"kept\":");
    pso_string_free(json);
    CHECK(atomic_load(&g_workloads) == 2); /* one round per arm */
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"direct_channels", test_direct_channels},
        {"hub", test_hub},
        {"state", test_state},
        {"workflows_and_intelligence", test_workflows_and_intelligence},
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
