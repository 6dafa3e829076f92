/*
 * C tests of the resource API of libpso (issue 4), compiled against
 * include/pso.h with -Wall -Wextra -Werror -std=c11 -pedantic. Covers every
 * resource and lease export: success, NULL for each pointer argument,
 * invalid UTF-8 for each string argument, stale lease and orchestrator
 * handles, request JSON errors (line and column; unknown fields; wrong
 * types), typed rejections with their numbers, a waiter on another thread
 * woken by a release, wait_ms timeouts, gangs, TTL expiry, preemption
 * callbacks with user_data freed exactly once, status and plan JSON, step
 * leases in a workflow (concurrency never above the capacity), closing the
 * orchestrator under a waiter and releasing leases after it, and leases
 * released while other threads use them.
 *
 * Prints "N passed, M failed" and exits non-zero if anything failed.
 */
#define _POSIX_C_SOURCE 200809L

#include "check.h"

#include <math.h>
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

/* An orchestrator with the resource knobs set (0: default). */
static pso_orchestrator orch_with(uint32_t workers, uint64_t grace_ms, uint64_t idle_ms,
                                  uint64_t aging_ms) {
    pso_options opts = {0};
    opts.workers = workers;
    opts.preemption_grace_ms = grace_ms;
    opts.idle_lease_after_ms = idle_ms;
    opts.resource_aging_step_ms = aging_ms;
    pso_orchestrator o = {0};
    CHECK_STATUS(pso_orchestrator_new(&opts, &o), PSO_OK);
    return o;
}

/* Registers each of the NULL-terminated names. */
static void register_all(pso_orchestrator o, const char *const *names) {
    for (; *names != NULL; names++) {
        CHECK_STATUS(pso_register_system(o, *names, NULL, NULL), PSO_OK);
    }
}

/* The number after the first `"key":` at or after `from` in `json`, or -1. */
static long json_long(const char *json, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = json ? strstr(json, pat) : NULL;
    return p ? strtol(p + strlen(pat), NULL, 10) : -1;
}

/* How often `needle` occurs in `hay`. */
static int occurrences(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; p && (p = strstr(p, needle)) != NULL; p += strlen(needle)) {
        n++;
    }
    return n;
}

/* The resource status JSON (free it with pso_string_free). */
static char *status_json(pso_orchestrator o) {
    char *json = NULL;
    CHECK_STATUS(pso_resource_status(o, &json), PSO_OK);
    return json;
}

/* A field of dimension `dim` in the status ("capacity", "allocated",
 * "free"), or -1. */
static long dim_field(pso_orchestrator o, const char *dim, const char *field) {
    char *json = status_json(o);
    char pat[96];
    snprintf(pat, sizeof pat, "{\"name\":\"%s\",\"capacity\":", dim);
    const char *p = json ? strstr(json, pat) : NULL;
    long v = -1;
    if (p != NULL) {
        const char *end = strchr(p, '}');
        char key[32];
        snprintf(key, sizeof key, "\"%s\":", field);
        const char *f = strstr(p, key);
        if (f != NULL && f < end) {
            v = strtol(f + strlen(key), NULL, 10);
        }
    }
    pso_string_free(json);
    return v;
}

static long free_of(pso_orchestrator o, const char *dim) { return dim_field(o, dim, "free"); }

/* How many requests wait (each waiter has a "reason"; nothing else does). */
static int waiters(pso_orchestrator o) {
    char *json = status_json(o);
    int n = occurrences(json, "\"reason\":");
    pso_string_free(json);
    return n;
}

/* Waits (at most 10 s) until `n` requests wait; returns whether they do. */
static int wait_for_waiters(pso_orchestrator o, int n) {
    for (int i = 0; i < 5000; i++) {
        if (waiters(o) == n) {
            return 1;
        }
        sleep_ms(2);
    }
    return waiters(o) == n;
}

/* Allocates and expects success. */
static pso_lease allocate(pso_orchestrator o, const char *system, const char *request) {
    pso_lease l = {0};
    CHECK_STATUS(pso_allocate_resources(o, system, request, &l), PSO_OK);
    return l;
}

static bool held(pso_lease l) {
    bool h = false;
    CHECK_STATUS(pso_lease_held(l, &h), PSO_OK);
    return h;
}

static uint64_t lease_id(pso_lease l) {
    uint64_t id = 0;
    CHECK_STATUS(pso_lease_id(l, &id), PSO_OK);
    return id;
}

/* Releases and checks the handle is gone; returns was_held. */
static bool release(pso_lease l) {
    bool was = false;
    CHECK_STATUS(pso_lease_release(l, &was), PSO_OK);
    CHECK_STATUS(pso_lease_release(l, NULL), PSO_ERR_STALE_HANDLE);
    return was;
}

/* One blocking allocation on its own thread. */
typedef struct {
    pso_orchestrator o;
    const char *system;
    const char *request;    /* pso_allocate_resources, unless parts is set */
    const char *parts;      /* pso_allocate_gang */
    size_t n;               /* parts */
    bool release_at_once;   /* release what it got before returning */
    pso_status status;
    pso_lease leases[4];
    char error[512];
    long elapsed_ms;
    pthread_t thread;
} job;

static void *job_main(void *p) {
    job *j = p;
    long t = now_ms();
    if (j->parts != NULL) {
        j->status = pso_allocate_gang(j->o, j->parts, j->leases, j->n);
    } else {
        j->status = pso_allocate_resources(j->o, j->system, j->request, &j->leases[0]);
    }
    j->elapsed_ms = now_ms() - t;
    snprintf(j->error, sizeof j->error, "%s", pso_last_error_message());
    if (j->status == PSO_OK && j->release_at_once) {
        size_t n = j->parts != NULL ? j->n : 1;
        for (size_t i = 0; i < n; i++) {
            pso_lease_release(j->leases[i], NULL);
        }
    }
    return NULL;
}

static void job_start(job *j) { CHECK(pthread_create(&j->thread, NULL, job_main, j) == 0); }

static void job_join(job *j) { pthread_join(j->thread, NULL); }

/* ------------------------------------------------------- preemption notes */

#define NOTE_MAGIC 0x9E3Au

/* The user_data of a preemption callback (malloc'd; PSO frees it). */
typedef struct {
    unsigned magic;
    atomic_int calls;
    atomic_ulong lease;
    atomic_ulong grace_ms;
    char system[64];
    pso_lease self;       /* released from inside the callback if release_self */
    bool release_self;
    atomic_int released_ok;
    atomic_int *fired;    /* bumped by the callback, checked after the free */
    pthread_t *thread;    /* where the callback ran, if not NULL */
} note;

static note *note_new(void) {
    note *n = calloc(1, sizeof *n);
    n->magic = NOTE_MAGIC;
    atomic_init(&n->calls, 0);
    atomic_init(&n->lease, 0);
    atomic_init(&n->grace_ms, 0);
    atomic_init(&n->released_ok, 0);
    return n;
}

static void on_preempt(void *user_data, const pso_preempt_notice *notice) {
    note *n = user_data;
    CHECK(n->magic == NOTE_MAGIC); /* never called after the free */
    CHECK(notice != NULL && notice->system != NULL);
    atomic_fetch_add(&n->calls, 1);
    atomic_store(&n->lease, notice->lease);
    atomic_store(&n->grace_ms, notice->grace_ms);
    snprintf(n->system, sizeof n->system, "%s", notice->system);
    if (n->release_self) {
        bool was = false;
        if (pso_lease_release(n->self, &was) == PSO_OK && was) {
            atomic_store(&n->released_ok, 1);
        }
    }
    if (n->thread != NULL) {
        *n->thread = pthread_self();
    }
    if (n->fired != NULL) {
        atomic_fetch_add(n->fired, 1); /* last: the waiter reads `thread` after it */
    }
}

/* Counts the free in g_freed; poisons the magic so a late call is caught
 * (ASan and valgrind catch the use after free, too). */
static void free_note(void *user_data) {
    note *n = user_data;
    CHECK(n->magic == NOTE_MAGIC); /* freed once */
    n->magic = 0;
    free(n);
    atomic_fetch_add(&g_freed, 1);
}

/* ---------------------------------------------------------------- tests */

static const char *const AB[] = {"a", "b", NULL};

static void test_options_capacity_quota_weight(void) {
    pso_orchestrator o = orch_with(2, 50, 50, 200);
    register_all(o, AB);

    CHECK_STATUS(pso_set_capacity(o, "cpu", 8), PSO_OK);
    CHECK(strcmp(pso_last_error_message(), "") == 0);
    CHECK_STATUS(pso_set_capacity(o, "memory", 4096), PSO_OK);
    CHECK_STATUS(pso_set_capacity(o, NULL, 1), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_set_capacity: argument 'dimension' is NULL");
    CHECK_STATUS(pso_set_capacity(o, BAD_UTF8, 1), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("argument 'dimension' is not valid UTF-8 (invalid byte 0xff at offset 2)");
    CHECK_STATUS(pso_set_capacity(o, "", 1), PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("invalid dimension name \"\"");
    CHECK_STATUS(pso_set_capacity(o, "gpu cards", 1), PSO_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pso_set_capacity((pso_orchestrator){0}, "cpu", 1), PSO_ERR_STALE_HANDLE);
    CHECK_ERR("orchestrator handle");

    CHECK_STATUS(pso_set_group_quota(o, "batch", "memory", 256), PSO_OK);
    CHECK_STATUS(pso_set_group_quota(o, "batch", "gpu", 1), PSO_ERR_NOT_FOUND);
    CHECK_ERR("unknown resource dimension 'gpu' (declared: cpu, memory)");
    CHECK_STATUS(pso_set_group_quota(o, "", "memory", 1), PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("group name is empty");
    CHECK_STATUS(pso_set_group_quota(o, NULL, "memory", 1), PSO_ERR_NULL_POINTER);
    CHECK_ERR("argument 'group' is NULL");
    CHECK_STATUS(pso_set_group_quota(o, "batch", NULL, 1), PSO_ERR_NULL_POINTER);
    CHECK_ERR("argument 'dimension' is NULL");
    CHECK_STATUS(pso_set_group_quota(o, BAD_UTF8, "memory", 1), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_set_group_quota(o, "batch", BAD_UTF8, 1), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("argument 'dimension' is not valid UTF-8");
    CHECK_STATUS(pso_set_group_quota((pso_orchestrator){0}, "batch", "memory", 1),
                 PSO_ERR_STALE_HANDLE);
    char *json = status_json(o);
    CHECK_CONTAINS(json, "{\"name\":\"batch\",\"quota\":{\"memory\":256},\"allocated\":{}}");
    CHECK_CONTAINS(json, "{\"name\":\"cpu\",\"capacity\":8,\"allocated\":0,\"free\":8}");
    CHECK_CONTAINS(json, "\"leases\":[]");
    CHECK_CONTAINS(json, "\"waiters\":[]");
    pso_string_free(json);

    CHECK_STATUS(pso_clear_group_quota(o, "batch", "memory"), PSO_OK);
    json = status_json(o);
    CHECK_CONTAINS(json, "{\"name\":\"batch\",\"quota\":{},\"allocated\":{}}");
    pso_string_free(json);
    CHECK_STATUS(pso_clear_group_quota(o, "batch", "memory"), PSO_OK); /* idempotent */
    CHECK_STATUS(pso_clear_group_quota(o, "batch", "disk"), PSO_ERR_NOT_FOUND);
    CHECK_STATUS(pso_clear_group_quota(o, NULL, "memory"), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_clear_group_quota: argument 'group' is NULL");
    CHECK_STATUS(pso_clear_group_quota(o, "batch", NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_clear_group_quota(o, BAD_UTF8, "memory"), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_clear_group_quota(o, "batch", BAD_UTF8), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_clear_group_quota((pso_orchestrator){0}, "batch", "memory"),
                 PSO_ERR_STALE_HANDLE);

    CHECK_STATUS(pso_set_resource_weight(o, "a", 2.5), PSO_OK);
    CHECK_STATUS(pso_set_resource_weight(o, "a", 0.0), PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("weight must be positive and finite, got 0");
    CHECK_STATUS(pso_set_resource_weight(o, "a", -1.0), PSO_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pso_set_resource_weight(o, "a", NAN), PSO_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pso_set_resource_weight(o, "a", INFINITY), PSO_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pso_set_resource_weight(o, "ghost", 1.0), PSO_ERR_NOT_FOUND);
    CHECK_ERR("unknown system 'ghost'");
    CHECK_STATUS(pso_set_resource_weight(o, NULL, 1.0), PSO_ERR_NULL_POINTER);
    CHECK_ERR("argument 'system' is NULL");
    CHECK_STATUS(pso_set_resource_weight(o, BAD_UTF8, 1.0), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_set_resource_weight((pso_orchestrator){0}, "a", 1.0), PSO_ERR_STALE_HANDLE);

    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK_STATUS(pso_set_capacity(o, "cpu", 1), PSO_ERR_STALE_HANDLE);
}

static void test_lease_basics(void) {
    pso_orchestrator o = orch_with(2, 0, 0, 0);
    register_all(o, AB);
    CHECK_STATUS(pso_set_capacity(o, "cpu", 8), PSO_OK);
    CHECK_STATUS(pso_set_capacity(o, "memory", 4096), PSO_OK);

    pso_lease l = allocate(o, "a", "{\"amounts\": {\"cpu\": 3, \"memory\": 1024, \"gpu\": 0}}");
    CHECK(l.id != 0);
    CHECK(lease_id(l) == 1); /* serial numbers, never reused */
    CHECK(held(l));
    char *info = NULL;
    CHECK_STATUS(pso_lease_info(l, &info), PSO_OK);
    CHECK_CONTAINS(info, "\"id\":1");
    CHECK_CONTAINS(info, "\"system\":\"a\"");
    CHECK_CONTAINS(info, "\"amounts\":{\"cpu\":3,\"memory\":1024}");
    CHECK_CONTAINS(info, "\"held\":true");
    CHECK_CONTAINS(info, "\"expires_in_ms\":null");
    pso_string_free(info);
    CHECK(free_of(o, "cpu") == 5);
    CHECK(free_of(o, "memory") == 3072);
    CHECK_STATUS(pso_lease_touch(l), PSO_OK);
    char *json = status_json(o);
    CHECK_CONTAINS(json, "\"leases\":[{\"id\":1,\"system\":\"a\",\"group\":null,");
    CHECK_CONTAINS(json, "\"priority\":\"normal\",\"preemptible\":false");
    pso_string_free(json);

    pso_lease copy = l;
    CHECK(release(l));
    CHECK(strcmp(pso_last_error_message(), "") != 0); /* the second release failed */
    CHECK(free_of(o, "cpu") == 8);
    /* The handle and every copy are stale now. */
    uint64_t id = 99;
    bool h = true;
    info = (char *)"not reset";
    CHECK_STATUS(pso_lease_id(copy, &id), PSO_ERR_STALE_HANDLE);
    CHECK_ERR("lease handle");
    CHECK_ERR("is stale: it was released, or never returned by pso_allocate_resources or "
              "pso_allocate_gang");
    CHECK(id == 0);
    CHECK_STATUS(pso_lease_held(copy, &h), PSO_ERR_STALE_HANDLE);
    CHECK(h == false);
    CHECK_STATUS(pso_lease_info(copy, &info), PSO_ERR_STALE_HANDLE);
    CHECK(info == NULL);
    CHECK_STATUS(pso_lease_touch(copy), PSO_ERR_STALE_HANDLE);
    note *n = note_new();
    CHECK_STATUS(pso_lease_on_preempt(copy, on_preempt, n, free_note), PSO_ERR_STALE_HANDLE);
    free_note(n); /* not taken on error: still ours */
    bool was = true;
    CHECK_STATUS(pso_lease_release(copy, &was), PSO_ERR_STALE_HANDLE);
    CHECK(was == false);
    CHECK_STATUS(pso_lease_release((pso_lease){0}, NULL), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_lease_held((pso_lease){UINT64_MAX}, &h), PSO_ERR_STALE_HANDLE);

    /* A new lease gets a new id and a new handle. */
    pso_lease l2 = allocate(o, "b", "{\"amounts\": {\"cpu\": 8}}");
    CHECK(lease_id(l2) == 2);
    CHECK(l2.id != copy.id);
    CHECK_STATUS(pso_lease_held(copy, &h), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_lease_release(l2, NULL), PSO_OK);

    /* A request that asks for nothing is rejected. */
    pso_lease none = {0};
    CHECK_STATUS(pso_allocate_resources(o, "a", "{\"amounts\": {}}", &none),
                 PSO_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(pso_last_error_message(), "asks for nothing");
    CHECK(none.id == 0);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

static void test_null_and_utf8_arguments(void) {
    pso_orchestrator o = orch_with(1, 0, 0, 0);
    register_all(o, AB);
    CHECK_STATUS(pso_set_capacity(o, "cpu", 4), PSO_OK);
    const char *req = "{\"amounts\": {\"cpu\": 1}}";
    pso_lease l = {12345};

    CHECK_STATUS(pso_allocate_resources(o, "a", req, NULL), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_allocate_resources: argument 'out' is NULL");
    CHECK_STATUS(pso_allocate_resources(o, NULL, req, &l), PSO_ERR_NULL_POINTER);
    CHECK_ERR("argument 'system' is NULL");
    CHECK(l.id == 0); /* reset whatever fails */
    CHECK_STATUS(pso_allocate_resources(o, "a", NULL, &l), PSO_ERR_NULL_POINTER);
    CHECK_ERR("argument 'request_json' is NULL");
    CHECK_STATUS(pso_allocate_resources(o, BAD_UTF8, req, &l), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("argument 'system' is not valid UTF-8");
    CHECK_STATUS(pso_allocate_resources(o, "a", BAD_UTF8, &l), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("argument 'request_json' is not valid UTF-8");
    CHECK_STATUS(pso_allocate_resources((pso_orchestrator){0}, "a", req, &l),
                 PSO_ERR_STALE_HANDLE);

    pso_lease gang[2] = {{1}, {2}};
    const char *parts = "[{\"system\": \"a\", \"amounts\": {\"cpu\": 1}},"
                        " {\"system\": \"b\", \"amounts\": {\"cpu\": 1}}]";
    CHECK_STATUS(pso_allocate_gang(o, parts, NULL, 2), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_allocate_gang: argument 'out' is NULL");
    CHECK_STATUS(pso_allocate_gang(o, NULL, gang, 2), PSO_ERR_NULL_POINTER);
    CHECK_ERR("argument 'parts_json' is NULL");
    CHECK(gang[0].id == 0 && gang[1].id == 0);
    CHECK_STATUS(pso_allocate_gang(o, BAD_UTF8, gang, 2), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("argument 'parts_json' is not valid UTF-8");
    CHECK_STATUS(pso_allocate_gang((pso_orchestrator){0}, parts, gang, 2), PSO_ERR_STALE_HANDLE);

    CHECK_STATUS(pso_set_step_resources(o, NULL, req), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_set_step_resources: argument 'system' is NULL");
    CHECK_STATUS(pso_set_step_resources(o, BAD_UTF8, req), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_set_step_resources(o, "a", BAD_UTF8), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("argument 'request_json' is not valid UTF-8");
    CHECK_STATUS(pso_set_step_resources(o, "ghost", req), PSO_ERR_NOT_FOUND);
    CHECK_ERR("ghost");
    CHECK_STATUS(pso_set_step_resources((pso_orchestrator){0}, "a", req), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_set_step_resources(o, "a", NULL), PSO_OK); /* none: fine */

    CHECK_STATUS(pso_resource_status(o, NULL), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_resource_status: argument 'json' is NULL");
    char *json = (char *)"not reset";
    CHECK_STATUS(pso_resource_status((pso_orchestrator){0}, &json), PSO_ERR_STALE_HANDLE);
    CHECK(json == NULL);
    CHECK_STATUS(pso_optimize_resources(o, false, NULL), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_optimize_resources: argument 'json' is NULL");
    json = (char *)"not reset";
    CHECK_STATUS(pso_optimize_resources((pso_orchestrator){0}, true, &json), PSO_ERR_STALE_HANDLE);
    CHECK(json == NULL);

    pso_lease lease = allocate(o, "a", req);
    CHECK_STATUS(pso_lease_id(lease, NULL), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_lease_id: argument 'out' is NULL");
    CHECK_STATUS(pso_lease_info(lease, NULL), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_lease_info: argument 'json' is NULL");
    CHECK_STATUS(pso_lease_held(lease, NULL), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_lease_held: argument 'out' is NULL");
    /* A NULL callback removes it; a NULL free function is allowed. */
    CHECK_STATUS(pso_lease_on_preempt(lease, NULL, NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_lease_release(lease, NULL), PSO_OK); /* was_held is nullable */
    CHECK(free_of(o, "cpu") == 4);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

static void test_request_json_errors(void) {
    pso_orchestrator o = orch_with(1, 0, 0, 0);
    register_all(o, AB);
    CHECK_STATUS(pso_set_capacity(o, "cpu", 4), PSO_OK);
    pso_lease l = {0};

    /* Not JSON: PARSE, naming the argument, the line and the column. */
    CHECK_STATUS(pso_allocate_resources(o, "a", "{\"amounts\":\n  {\"cpu\": 1,}}", &l),
                 PSO_ERR_PARSE);
    CHECK_ERR("pso_allocate_resources: argument 'request_json' is not valid JSON: ");
    CHECK_ERR("at line 2 column 13");
    CHECK_STATUS(pso_allocate_resources(o, "a", "", &l), PSO_ERR_PARSE);
    CHECK_ERR("line 1 column 0");
    CHECK_STATUS(pso_allocate_resources(o, "a", "{\"amounts\": {}} x", &l), PSO_ERR_PARSE);
    CHECK_ERR("trailing characters at line 1 column 17");
    CHECK_STATUS(pso_allocate_gang(o, "[\n\n{]", &l, 1), PSO_ERR_PARSE);
    CHECK_ERR("argument 'parts_json' is not valid JSON");
    CHECK_ERR("line 3 column 2");
    CHECK_STATUS(pso_set_step_resources(o, "a", "{"), PSO_ERR_PARSE);
    CHECK_ERR("pso_set_step_resources: argument 'request_json' is not valid JSON");

    /* Valid JSON, wrong request: INVALID_ARGUMENT naming the field's path. */
    static const struct {
        const char *json;
        const char *error;
    } bad[] = {
        {"{\"amount\": {\"cpu\": 1}}", "request_json has an unknown field \"amount\" (the fields "
                                       "are amounts, priority, group, preemptible, ttl_ms, "
                                       "wait_ms)"},
        {"{\"amounts\": {\"cpu\": 1}, \"system\": \"a\"}", "unknown field \"system\""},
        {"[1, 2]", "request_json must be a JSON object"},
        {"{}", "request_json.amounts is missing"},
        {"{\"amounts\": 3}", "request_json.amounts must be an object of dimension -> amount, "
                             "got a number"},
        {"{\"amounts\": {\"cpu\": -2}}", "request_json.amounts.cpu must be a non-negative "
                                         "integer, got -2"},
        {"{\"amounts\": {\"cpu\": 0.5}}", "request_json.amounts.cpu must be a non-negative "
                                          "integer, got 0.5"},
        {"{\"amounts\": {\"cpu\": \"1\"}}", "got \"1\""},
        {"{\"amounts\": {}, \"priority\": \"urgent\"}",
         "request_json.priority: unknown priority 'urgent' (expected one of: critical, high, "
         "normal, low, background)"},
        {"{\"amounts\": {}, \"group\": 7}", "request_json.group must be a string, got a number"},
        {"{\"amounts\": {}, \"preemptible\": 1}", "request_json.preemptible must be true or "
                                                  "false"},
        {"{\"amounts\": {}, \"ttl_ms\": 0}", "request_json.ttl_ms must be an integer number of "
                                             "milliseconds, at least 1, got 0"},
        {"{\"amounts\": {}, \"wait_ms\": 1.5}", "request_json.wait_ms must be an integer number "
                                                "of milliseconds, at least 0, got 1.5"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        l.id = 7;
        CHECK_STATUS(pso_allocate_resources(o, "a", bad[i].json, &l), PSO_ERR_INVALID_ARGUMENT);
        CHECK_ERR(bad[i].error);
        CHECK(l.id == 0);
        CHECK_STATUS(pso_set_step_resources(o, "a", bad[i].json), PSO_ERR_INVALID_ARGUMENT);
        CHECK_ERR(bad[i].error);
    }

    /* Gangs: an array of parts, each naming its system; n must match. */
    pso_lease gang[3] = {{1}, {2}, {3}};
    CHECK_STATUS(pso_allocate_gang(o, "{\"system\": \"a\"}", gang, 1), PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("parts_json must be a JSON array of requests, each with \"system\", got an object");
    CHECK_STATUS(pso_allocate_gang(o, "[{\"amounts\": {\"cpu\": 1}}]", gang, 1),
                 PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("parts_json[0].system is missing");
    CHECK_STATUS(pso_allocate_gang(o,
                                   "[{\"system\": \"a\", \"amounts\": {}},"
                                   " {\"system\": \"b\", \"amounts\": {}, \"ttl\": 5}]",
                                   gang, 2),
                 PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("parts_json[1] has an unknown field \"ttl\" (the fields are system, amounts,");
    const char *two = "[{\"system\": \"a\", \"amounts\": {\"cpu\": 1}},"
                      " {\"system\": \"b\", \"amounts\": {\"cpu\": 1}}]";
    CHECK_STATUS(pso_allocate_gang(o, two, gang, 3), PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("n is 3 but parts_json has 2 parts");
    CHECK(gang[0].id == 0 && gang[1].id == 0 && gang[2].id == 0);
    CHECK_STATUS(pso_allocate_gang(o, two, gang, 1), PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("n is 1 but parts_json has 2 parts");
    CHECK_STATUS(pso_allocate_gang(o, "[]", gang, 0), PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("a request needs at least one part");
    /* Nothing was requested by any of these. */
    char *json = status_json(o);
    CHECK_CONTAINS(json, "\"allocated\":0");
    CHECK_CONTAINS(json, "\"leases\":[]");
    CHECK_CONTAINS(json, "\"waiters\":[]");
    pso_string_free(json);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

static void test_rejections(void) {
    pso_orchestrator o = orch_with(1, 0, 0, 0);
    register_all(o, AB);
    CHECK_STATUS(pso_set_capacity(o, "memory", 1024), PSO_OK);
    pso_lease l = {0};

    CHECK_STATUS(pso_allocate_resources(o, "a", "{\"amounts\": {\"memory\": 2048}}", &l),
                 PSO_ERR_EXCEEDS_CAPACITY);
    /* Core rejections carry pso-core's message, the same in every language. */
    CHECK(strcmp(pso_last_error_message(),
                 "a asks for 2048 memory, more than the whole capacity of 1024") == 0);
    CHECK(l.id == 0);
    CHECK_STATUS(pso_allocate_resources(o, "a", "{\"amounts\": {\"cpu\": 1}}", &l),
                 PSO_ERR_NOT_FOUND);
    CHECK_ERR("unknown resource dimension 'cpu' (declared: memory)");
    CHECK_STATUS(pso_allocate_resources(o, "ghost", "{\"amounts\": {\"memory\": 1}}", &l),
                 PSO_ERR_NOT_FOUND);
    CHECK_ERR("unknown system 'ghost'");
    CHECK_STATUS(pso_set_group_quota(o, "batch", "memory", 256), PSO_OK);
    CHECK_STATUS(pso_allocate_resources(
                     o, "a", "{\"amounts\": {\"memory\": 512}, \"group\": \"batch\"}", &l),
                 PSO_ERR_EXCEEDS_QUOTA);
    CHECK_ERR("the request for 512 memory exceeds group batch's quota of 256");
    CHECK(strcmp(pso_status_name(PSO_ERR_EXCEEDS_QUOTA), "PSO_ERR_EXCEEDS_QUOTA") == 0);

    /* Within the quota but not what the group has left: waits; wait_ms 0
     * answers at once. */
    pso_lease g1 = allocate(o, "a", "{\"amounts\": {\"memory\": 200}, \"group\": \"batch\"}");
    CHECK_STATUS(
        pso_allocate_resources(
            o, "b", "{\"amounts\": {\"memory\": 100}, \"group\": \"batch\", \"wait_ms\": 0}", &l),
        PSO_ERR_TIMEOUT);
    CHECK_ERR("b waited 0s for resources: ");
    char *json = status_json(o);
    CHECK_CONTAINS(json, "{\"name\":\"batch\",\"quota\":{\"memory\":256},\"allocated\":{\"memory\":"
                         "200}}");
    pso_string_free(json);
    CHECK(release(g1));

    /* Capacity: wait_ms 0 answers now; wait_ms 50 waits 50 ms; both say why. */
    pso_lease big = allocate(o, "a", "{\"amounts\": {\"memory\": 512}}");
    CHECK_STATUS(pso_allocate_resources(o, "b", "{\"amounts\": {\"memory\": 1000}, \"wait_ms\": 0}",
                                        &l),
                 PSO_ERR_TIMEOUT);
    CHECK_ERR("needs 1000 memory, 512 free");
    long t = now_ms();
    CHECK_STATUS(pso_allocate_resources(o, "b", "{\"amounts\": {\"memory\": 1000}, \"wait_ms\": 50}",
                                        &l),
                 PSO_ERR_TIMEOUT);
    CHECK(now_ms() - t >= 50);
    CHECK(strncmp(pso_last_error_message(), "b waited ", 9) == 0);
    CHECK_ERR("for resources: needs 1000 memory, 512 free");
    CHECK(l.id == 0);
    CHECK(waiters(o) == 0); /* a timed-out waiter is gone */
    CHECK(free_of(o, "memory") == 512); /* nothing held after an error */

    /* Lowering the capacity rejects a waiter that can never fit any more. */
    job j = {.o = o, .system = "b", .request = "{\"amounts\": {\"memory\": 900}}"};
    job_start(&j);
    CHECK(wait_for_waiters(o, 1));
    CHECK_STATUS(pso_set_capacity(o, "memory", 600), PSO_OK);
    job_join(&j);
    CHECK(j.status == PSO_ERR_EXCEEDS_CAPACITY);
    CHECK_CONTAINS(j.error, "b asks for 900 memory, more than the whole capacity of 600");
    CHECK(j.leases[0].id == 0);
    CHECK(release(big));
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

static void test_waiter_woken_by_release(void) {
    pso_orchestrator o = orch_with(1, 0, 0, 0);
    register_all(o, AB);
    CHECK_STATUS(pso_set_capacity(o, "memory", 2560), PSO_OK);
    pso_lease a = allocate(o, "a", "{\"amounts\": {\"memory\": 2048}}");

    job j = {.o = o, .system = "b", .request = "{\"amounts\": {\"memory\": 2048}}"};
    job_start(&j);
    CHECK(wait_for_waiters(o, 1));
    char *json = status_json(o);
    CHECK_CONTAINS(json, "\"waiters\":[{\"systems\":[\"b\"],\"amounts\":{\"memory\":2048},"
                         "\"priority\":\"normal\",\"effective_priority\":\"normal\",");
    CHECK_CONTAINS(json, "\"ahead\":0,\"reason\":\"needs 2048 memory, 512 free\"}]");
    pso_string_free(json);
    sleep_ms(20);
    CHECK(waiters(o) == 1); /* still waiting: nothing polls */
    long t = now_ms();
    CHECK(release(a));
    job_join(&j);
    CHECK(j.status == PSO_OK);
    CHECK(j.elapsed_ms >= 20);
    CHECK(now_ms() - t < 2000); /* woken by the release, not by a timeout */
    CHECK(held(j.leases[0]));
    CHECK(lease_id(j.leases[0]) == 2);
    CHECK(free_of(o, "memory") == 512);
    CHECK(release(j.leases[0]));
    CHECK(free_of(o, "memory") == 2560);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

static const char *const GANG_SYSTEMS[] = {"trainer", "loader", "other", NULL};

static void test_gangs(void) {
    pso_orchestrator o = orch_with(1, 0, 0, 0);
    register_all(o, GANG_SYSTEMS);
    CHECK_STATUS(pso_set_capacity(o, "gpu", 4), PSO_OK);
    CHECK_STATUS(pso_set_capacity(o, "cpu", 8), PSO_OK);
    pso_lease other = allocate(o, "other", "{\"amounts\": {\"gpu\": 2}}");

    job j = {.o = o,
             .parts = "[{\"system\": \"trainer\", \"amounts\": {\"gpu\": 2, \"cpu\": 2}},"
                      " {\"system\": \"loader\", \"amounts\": {\"gpu\": 1, \"cpu\": 4}}]",
             .n = 2};
    job_start(&j);
    CHECK(wait_for_waiters(o, 1));
    char *json = status_json(o);
    CHECK_CONTAINS(json, "{\"name\":\"cpu\",\"capacity\":8,\"allocated\":0,"); /* none held */
    CHECK_CONTAINS(json, "\"systems\":[\"trainer\",\"loader\"],\"amounts\":{\"cpu\":6,\"gpu\":3}");
    CHECK_CONTAINS(json, "\"reason\":\"needs 3 gpu, 2 free\"");
    pso_string_free(json);
    CHECK(release(other));
    job_join(&j);
    CHECK(j.status == PSO_OK);
    char *info = NULL;
    CHECK_STATUS(pso_lease_info(j.leases[0], &info), PSO_OK);
    CHECK_CONTAINS(info, "\"system\":\"trainer\"");
    CHECK_CONTAINS(info, "\"amounts\":{\"cpu\":2,\"gpu\":2}");
    pso_string_free(info);
    CHECK_STATUS(pso_lease_info(j.leases[1], &info), PSO_OK);
    CHECK_CONTAINS(info, "\"system\":\"loader\"");
    pso_string_free(info);
    CHECK(j.leases[0].id != j.leases[1].id);
    CHECK(free_of(o, "gpu") == 1);
    CHECK(free_of(o, "cpu") == 2);

    /* A gang that could never fit together is rejected at once, whole. */
    pso_lease out[2] = {{5}, {6}};
    const char *big = "[{\"system\": \"trainer\", \"amounts\": {\"gpu\": 3}},"
                      " {\"system\": \"loader\", \"amounts\": {\"gpu\": 3}}]";
    CHECK_STATUS(pso_allocate_gang(o, big, out, 2), PSO_ERR_EXCEEDS_CAPACITY);
    CHECK_ERR("more than the whole capacity of 4");
    CHECK(out[0].id == 0 && out[1].id == 0);
    /* The shortest wait among the parts applies to the gang. */
    const char *waits = "[{\"system\": \"trainer\", \"amounts\": {\"gpu\": 2}, \"wait_ms\": 5000},"
                        " {\"system\": \"loader\", \"amounts\": {\"cpu\": 1}, \"wait_ms\": 30}]";
    long t = now_ms();
    CHECK_STATUS(pso_allocate_gang(o, waits, out, 2), PSO_ERR_TIMEOUT);
    CHECK(now_ms() - t < 3000);
    CHECK_ERR("trainer waited");
    CHECK(free_of(o, "cpu") == 2); /* the loader part is not held */
    CHECK(release(j.leases[0]));
    CHECK(release(j.leases[1]));
    CHECK(free_of(o, "gpu") == 4);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

static void test_ttl_expiry(void) {
    pso_orchestrator o = orch_with(1, 0, 0, 0);
    register_all(o, AB);
    CHECK_STATUS(pso_set_capacity(o, "cpu", 1), PSO_OK);
    long t = now_ms();
    pso_lease a = allocate(o, "a", "{\"amounts\": {\"cpu\": 1}, \"ttl_ms\": 40}");
    char *info = NULL;
    CHECK_STATUS(pso_lease_info(a, &info), PSO_OK);
    long left = json_long(info, "expires_in_ms");
    CHECK(left >= 0 && left <= 40);
    pso_string_free(info);

    /* b waits until a's TTL revokes it (40 ms after it was granted). */
    pso_lease b = allocate(o, "b", "{\"amounts\": {\"cpu\": 1}}");
    CHECK(now_ms() - t >= 40);
    CHECK(!held(a));
    CHECK_STATUS(pso_lease_info(a, &info), PSO_OK);
    CHECK_CONTAINS(info, "\"amounts\":{}");
    CHECK_CONTAINS(info, "\"held\":false");
    CHECK_CONTAINS(info, "\"expires_in_ms\":null");
    pso_string_free(info);
    CHECK(lease_id(a) == 1); /* the id outlives the lease */
    CHECK_STATUS(pso_lease_touch(a), PSO_OK); /* nothing to touch: fine */
    CHECK(held(b));
    CHECK(free_of(o, "cpu") == 0); /* b's lease is not double-counted */
    CHECK(!release(a)); /* expired: was_held is false, the handle goes */
    CHECK(held(b));
    CHECK(release(b));
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

static const char *const PREEMPT_SYSTEMS[] = {"batch", "online", NULL};

static void test_preemption(void) {
    int base = atomic_load(&g_freed);
    pso_orchestrator o = orch_with(1, 50, 0, 0);
    register_all(o, PREEMPT_SYSTEMS);
    CHECK_STATUS(pso_set_capacity(o, "cpu", 4), PSO_OK);
    pso_lease batch = allocate(
        o, "batch", "{\"amounts\": {\"cpu\": 4}, \"priority\": \"background\", \"preemptible\": true}");
    uint64_t batch_id = lease_id(batch);

    /* Replacing a callback frees the replaced one's user_data at once. */
    note *first = note_new();
    CHECK_STATUS(pso_lease_on_preempt(batch, on_preempt, first, free_note), PSO_OK);
    CHECK_FREED_NOW(base);
    atomic_int fired;
    atomic_init(&fired, 0);
    note *n = note_new();
    n->fired = &fired;
    CHECK_STATUS(pso_lease_on_preempt(batch, on_preempt, n, free_note), PSO_OK);
    CHECK_FREED_NOW(base + 1);

    /* A higher class preempts it after the grace period; the callback runs
     * once, on a PSO worker thread (never inside the allocation that caused
     * it), and its user_data is freed right after it. */
    long t = now_ms();
    pso_lease online = allocate(o, "online", "{\"amounts\": {\"cpu\": 2}, \"priority\": \"high\"}");
    long waited = now_ms() - t;
    CHECK(waited >= 40);
    for (int i = 0; i < 5000 && atomic_load(&fired) == 0; i++) {
        sleep_ms(1);
    }
    CHECK(atomic_load(&fired) == 1);
    CHECK_FREED(base + 2);
    CHECK(!held(batch));
    CHECK(held(online));
    CHECK(free_of(o, "cpu") == 2);
    CHECK(!release(batch));
    CHECK(release(online));
    CHECK_FREED_NOW(base + 2);

    /* The notice: lease id, system, grace. */
    pso_lease again = allocate(
        o, "batch", "{\"amounts\": {\"cpu\": 4}, \"priority\": \"low\", \"preemptible\": true}");
    note *m = note_new();
    atomic_int fired2;
    atomic_init(&fired2, 0);
    m->fired = &fired2;
    CHECK_STATUS(pso_lease_on_preempt(again, on_preempt, m, NULL), PSO_OK); /* freed by us */
    pso_lease crit = allocate(o, "online", "{\"amounts\": {\"cpu\": 1}, \"priority\": \"critical\"}");
    for (int i = 0; i < 5000 && atomic_load(&fired2) == 0; i++) {
        sleep_ms(1);
    }
    CHECK(atomic_load(&fired2) == 1);
    CHECK(atomic_load(&m->calls) == 1);
    CHECK(atomic_load(&m->lease) == lease_id(again));
    CHECK(atomic_load(&m->lease) != batch_id);
    CHECK(atomic_load(&m->grace_ms) <= 50);
    CHECK(strcmp(m->system, "batch") == 0);
    free(m); /* no free_user_data given: the caller keeps ownership of the memory */
    CHECK(!release(again));
    CHECK(release(crit));

    /* A holder that releases at the notice hands over at once, well before a
     * long grace period ends. */
    pso_orchestrator o2 = orch_with(1, 5000, 0, 0);
    register_all(o2, PREEMPT_SYSTEMS);
    CHECK_STATUS(pso_set_capacity(o2, "gpu", 1), PSO_OK);
    pso_lease low = allocate(
        o2, "batch", "{\"amounts\": {\"gpu\": 1}, \"priority\": \"low\", \"preemptible\": true}");
    note *r = note_new();
    r->self = low;
    r->release_self = true;
    CHECK_STATUS(pso_lease_on_preempt(low, on_preempt, r, free_note), PSO_OK);
    t = now_ms();
    pso_lease high = allocate(o2, "online", "{\"amounts\": {\"gpu\": 1}, \"priority\": \"high\"}");
    CHECK(now_ms() - t < 2500);
    CHECK_FREED(base + 3); /* after the callback (on a worker) returned */
    bool h = true;
    CHECK_STATUS(pso_lease_held(low, &h), PSO_ERR_STALE_HANDLE); /* released in the callback */
    CHECK(held(high));
    CHECK(release(high));

    /* Released without firing: freed by the release. Not preemptible: never
     * fires. Expired: freed at once. A NULL callback removes it. */
    pso_lease keep = allocate(o2, "batch", "{\"amounts\": {\"gpu\": 1}}");
    CHECK_STATUS(pso_lease_on_preempt(keep, on_preempt, note_new(), free_note), PSO_OK);
    CHECK_FREED_NOW(base + 3);
    CHECK(release(keep));
    CHECK_FREED_NOW(base + 4);
    pso_lease brief = allocate(o2, "batch", "{\"amounts\": {\"gpu\": 1}, \"ttl_ms\": 1}");
    for (int i = 0; i < 5000 && held(brief); i++) {
        sleep_ms(1);
    }
    CHECK(!held(brief));
    CHECK_STATUS(pso_lease_on_preempt(brief, on_preempt, note_new(), free_note), PSO_OK);
    CHECK_FREED_NOW(base + 5);
    CHECK(!release(brief));
    pso_lease cleared = allocate(o2, "batch", "{\"amounts\": {\"gpu\": 1}}");
    CHECK_STATUS(pso_lease_on_preempt(cleared, on_preempt, note_new(), free_note), PSO_OK);
    CHECK_STATUS(pso_lease_on_preempt(cleared, NULL, note_new(), free_note), PSO_OK);
    CHECK_FREED_NOW(base + 7); /* the replaced one, and the unused new one */
    CHECK(release(cleared));
    CHECK_FREED_NOW(base + 7);

    CHECK_STATUS(pso_orchestrator_close(o2), PSO_OK);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

/* Preemption fired by the aging timer: a PSO thread. */
static void test_preemption_notice_on_another_thread(void) {
    int base = atomic_load(&g_freed);
    pso_orchestrator o = orch_with(1, 20, 0, 30);
    register_all(o, PREEMPT_SYSTEMS);
    CHECK_STATUS(pso_set_capacity(o, "cpu", 2), PSO_OK);
    /* A normal-class preemptible holder, and a background waiter: aging
     * lifts the waiter to high within a few steps, and then it preempts. */
    pso_lease holder = allocate(
        o, "batch", "{\"amounts\": {\"cpu\": 2}, \"priority\": \"normal\", \"preemptible\": true}");
    atomic_int fired;
    atomic_init(&fired, 0);
    note *n = note_new();
    n->fired = &fired;
    pthread_t where = pthread_self();
    n->thread = &where;
    CHECK_STATUS(pso_lease_on_preempt(holder, on_preempt, n, free_note), PSO_OK);
    long t = now_ms();
    pso_lease aged = allocate(o, "online", "{\"amounts\": {\"cpu\": 1}, \"priority\": "
                                           "\"background\"}");
    CHECK(now_ms() - t >= 50);
    CHECK(atomic_load(&fired) == 1);
    CHECK(!pthread_equal(where, pthread_self())); /* on PSO's timer thread */
    CHECK_FREED(base + 1);
    CHECK(!held(holder));
    CHECK(!release(holder));
    CHECK(release(aged));
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

static void test_status_and_plan(void) {
    pso_orchestrator o = orch_with(1, 0, 200, 0);
    static const char *const ABC[] = {"a", "b", "c", NULL};
    register_all(o, ABC);
    CHECK_STATUS(pso_set_capacity(o, "memory", 2560), PSO_OK);
    pso_lease held_a =
        allocate(o, "a", "{\"amounts\": {\"memory\": 2048}, \"ttl_ms\": 60000, \"group\": \"g\"}");
    job high = {.o = o,
                .system = "b",
                .request = "{\"amounts\": {\"memory\": 1024}, \"priority\": \"high\"}",
                .release_at_once = true};
    job_start(&high);
    CHECK(wait_for_waiters(o, 1));
    job normal = {.o = o,
                  .system = "c",
                  .request = "{\"amounts\": {\"memory\": 2048}}",
                  .release_at_once = true};
    job_start(&normal);
    CHECK(wait_for_waiters(o, 2));
    char *json = status_json(o);
    /* Waiters in policy order: the high one first. */
    const char *b = strstr(json, "\"systems\":[\"b\"]");
    const char *c = strstr(json, "\"systems\":[\"c\"]");
    CHECK(b != NULL && c != NULL && b < c);
    CHECK_CONTAINS(json, "\"priority\":\"high\",\"effective_priority\":\"high\"");
    CHECK_CONTAINS(json, "\"ahead\":1,\"reason\":\"needs 2048 memory, 512 free; 1 request "
                         "ahead\"");
    CHECK_CONTAINS(json, "{\"name\":\"memory\",\"capacity\":2560,\"allocated\":2048,\"free\":512}");
    CHECK_CONTAINS(json, "\"groups\":[{\"name\":\"g\",\"quota\":{},\"allocated\":{\"memory\":2048}}]");
    CHECK_CONTAINS(json, "\"system\":\"a\",\"group\":\"g\",\"amounts\":{\"memory\":2048},"
                         "\"priority\":\"normal\",\"preemptible\":false,\"age\":");
    CHECK_CONTAINS(json, "\"ttl_remaining\":59.");
    CHECK_CONTAINS(json, "\"revoking\":false");
    pso_string_free(json);
    CHECK(release(held_a));
    job_join(&high);
    job_join(&normal);
    CHECK(high.status == PSO_OK && normal.status == PSO_OK);
    CHECK(waiters(o) == 0);
    CHECK(free_of(o, "memory") == 2560);

    /* optimize: a dry run proposes reclaiming the idle lease; apply does it. */
    CHECK_STATUS(pso_set_capacity(o, "cpu", 4), PSO_OK);
    pso_lease idle = allocate(o, "a", "{\"amounts\": {\"cpu\": 2}}");
    pso_lease busy = allocate(o, "b", "{\"amounts\": {\"cpu\": 1}}");
    sleep_ms(250); /* idle_lease_after_ms is 200 */
    CHECK_STATUS(pso_lease_touch(busy), PSO_OK);
    char *plan = NULL;
    CHECK_STATUS(pso_optimize_resources(o, false, &plan), PSO_OK);
    CHECK_CONTAINS(plan, "\"applied\":false");
    CHECK_CONTAINS(plan, "{\"action\":\"reclaim_idle\",\"lease\":");
    CHECK_CONTAINS(plan, "\"system\":\"a\",\"idle_secs\":0.");
    CHECK(occurrences(plan, "\"action\":") == 1);
    char want[64];
    snprintf(want, sizeof want, "\"lease\":%lu,", (unsigned long)lease_id(idle));
    CHECK_CONTAINS(plan, want);
    pso_string_free(plan);
    CHECK(held(idle)); /* a dry run changes nothing */
    CHECK_STATUS(pso_optimize_resources(o, true, &plan), PSO_OK);
    CHECK_CONTAINS(plan, "\"applied\":true");
    CHECK_CONTAINS(plan, "\"reclaim_idle\"");
    pso_string_free(plan);
    CHECK(!held(idle));
    CHECK(held(busy));
    CHECK(free_of(o, "cpu") == 3);
    CHECK(!release(idle));
    CHECK(release(busy));
    CHECK_STATUS(pso_optimize_resources(o, false, &plan), PSO_OK);
    CHECK(strcmp(plan, "{\"actions\":[],\"applied\":false}") == 0);
    pso_string_free(plan);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

/* ------------------------------------------------- step leases (workflow) */

typedef struct {
    atomic_int running;
    atomic_int peak;
    atomic_int calls;
    pso_orchestrator o;
    atomic_int saw_held; /* gpu allocated while this step ran (1 or more) */
} train_cfg;

static int32_t train(void *user_data, const pso_step_ctx *ctx) {
    (void)ctx;
    train_cfg *c = user_data;
    atomic_fetch_add(&c->calls, 1);
    int now = atomic_fetch_add(&c->running, 1) + 1;
    int peak = atomic_load(&c->peak);
    while (now > peak && !atomic_compare_exchange_weak(&c->peak, &peak, now)) {
    }
    long allocated = dim_field(c->o, "gpu", "allocated");
    if (allocated >= 1) {
        atomic_fetch_add(&c->saw_held, 1);
    }
    sleep_ms(15);
    atomic_fetch_sub(&c->running, 1);
    return 0;
}

static void test_step_resources_in_a_workflow(void) {
    pso_orchestrator o = orch_with(4, 0, 0, 0);
    CHECK_STATUS(pso_register_system(o, "gpu-svc", NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_set_capacity(o, "gpu", 2), PSO_OK);
    static train_cfg cfg;
    atomic_init(&cfg.running, 0);
    atomic_init(&cfg.peak, 0);
    atomic_init(&cfg.calls, 0);
    atomic_init(&cfg.saw_held, 0);
    cfg.o = o;
    CHECK_STATUS(pso_set_operation(o, "gpu-svc", "train", train, &cfg, NULL), PSO_OK);
    CHECK_STATUS(pso_set_step_resources(o, "gpu-svc", "{\"amounts\": {\"gpu\": 1}}"), PSO_OK);
    CHECK_STATUS(pso_activate_system(o, "gpu-svc", NULL), PSO_OK);
    char def[1024] = "name = \"train\"\n";
    for (int i = 0; i < 6; i++) {
        char step[96];
        snprintf(step, sizeof step, "[[steps]]\nname = \"t%d\"\nsystem = \"gpu-svc\"\nop = \"train\"\n",
                 i);
        strncat(def, step, sizeof def - strlen(def) - 1);
    }
    pso_workflow wf = {0};
    CHECK_STATUS(pso_workflow_load_str(o, def, PSO_FORMAT_TOML, &wf), PSO_OK);
    pso_run run = {0};
    char *result = NULL;
    CHECK_STATUS(pso_coordinate_systems(o, wf, NULL, NULL, &run), PSO_OK);
    CHECK_STATUS(pso_run_wait(run, &result), PSO_OK);
    CHECK_STATUS(pso_run_free(run), PSO_OK);
    CHECK_CONTAINS(result, "\"state\":\"succeeded\"");
    pso_string_free(result);
    CHECK(atomic_load(&cfg.calls) == 6);
    CHECK(atomic_load(&cfg.peak) >= 1);
    CHECK(atomic_load(&cfg.peak) <= 2); /* two gpus: never more than two steps at once */
    CHECK(atomic_load(&cfg.saw_held) == 6); /* each step held its lease while it ran */
    CHECK(free_of(o, "gpu") == 2);          /* every lease returned */

    /* A request that can never fit fails the step with the reason. */
    CHECK_STATUS(pso_set_step_resources(o, "gpu-svc", "{\"amounts\": {\"gpu\": 3}}"), PSO_OK);
    CHECK_STATUS(pso_coordinate_systems(o, wf, NULL, NULL, &run), PSO_OK);
    CHECK_STATUS(pso_run_wait(run, &result), PSO_OK);
    CHECK_STATUS(pso_run_free(run), PSO_OK);
    CHECK_CONTAINS(result, "\"state\":\"failed\"");
    CHECK_CONTAINS(result, "more than the whole capacity of 2");
    pso_string_free(result);
    CHECK(atomic_load(&cfg.calls) == 6);

    /* NULL removes the step request: steps run unleased. */
    CHECK_STATUS(pso_set_step_resources(o, "gpu-svc", NULL), PSO_OK);
    atomic_store(&cfg.saw_held, 0);
    CHECK_STATUS(pso_coordinate_systems(o, wf, NULL, NULL, &run), PSO_OK);
    CHECK_STATUS(pso_run_wait(run, &result), PSO_OK);
    CHECK_STATUS(pso_run_free(run), PSO_OK);
    CHECK_CONTAINS(result, "\"state\":\"succeeded\"");
    pso_string_free(result);
    CHECK(atomic_load(&cfg.calls) == 12);
    CHECK(atomic_load(&cfg.saw_held) == 0);

    CHECK_STATUS(pso_workflow_free(wf), PSO_OK);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

/* ------------------------------------------------------------------ close */

static void test_close_under_a_waiter_and_release_after(void) {
    pso_orchestrator o = orch_with(1, 0, 0, 0);
    register_all(o, AB);
    CHECK_STATUS(pso_set_capacity(o, "cpu", 2), PSO_OK);
    CHECK_STATUS(pso_set_capacity(o, "mem", 10), PSO_OK);
    pso_lease a = allocate(o, "a", "{\"amounts\": {\"cpu\": 2}, \"ttl_ms\": 600000}");
    pso_lease gang[2] = {{0}, {0}};
    CHECK_STATUS(pso_allocate_gang(o,
                                   "[{\"system\": \"a\", \"amounts\": {\"mem\": 1}},"
                                   " {\"system\": \"b\", \"amounts\": {\"mem\": 1}}]",
                                   gang, 2),
                 PSO_OK);
    job j = {.o = o, .system = "b", .request = "{\"amounts\": {\"cpu\": 1}}"};
    job_start(&j);
    CHECK(wait_for_waiters(o, 1));
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    job_join(&j);
    CHECK(j.status == PSO_ERR_CLOSED);
    CHECK(strcmp(j.error, "the orchestrator is closed") == 0);
    CHECK(j.leases[0].id == 0);
    pso_lease l = {0};
    CHECK_STATUS(pso_allocate_resources(o, "a", "{\"amounts\": {}}", &l), PSO_ERR_STALE_HANDLE);

    /* Leases outlive their orchestrator: readable, then released. */
    CHECK(held(a));
    char *info = NULL;
    CHECK_STATUS(pso_lease_info(a, &info), PSO_OK);
    CHECK_CONTAINS(info, "\"amounts\":{\"cpu\":2}");
    pso_string_free(info);
    CHECK_STATUS(pso_lease_touch(a), PSO_OK);
    int base = atomic_load(&g_freed);
    CHECK_STATUS(pso_lease_on_preempt(a, on_preempt, note_new(), free_note), PSO_OK);
    CHECK(release(a));
    CHECK_FREED_NOW(base + 1);
    CHECK(release(gang[1]));
    CHECK(release(gang[0]));
}

/* ------------------------------------------------ handles across threads */

typedef struct {
    pso_orchestrator o;
    pso_lease *shared;
    int id;
    atomic_int *errors;
} hammer_arg;

/* Allocates and releases its own leases, and reads a shared lease another
 * thread releases meanwhile: only PSO_OK or PSO_ERR_STALE_HANDLE. */
static void *hammer(void *p) {
    hammer_arg *a = p;
    char sys[8];
    snprintf(sys, sizeof sys, "s%d", a->id % 4);
    for (int i = 0; i < 60; i++) {
        pso_lease l = {0};
        pso_status s = pso_allocate_resources(
            a->o, sys, i % 3 == 0 ? "{\"amounts\": {\"cpu\": 2}, \"wait_ms\": 1}"
                                  : "{\"amounts\": {\"cpu\": 1, \"memory\": 10}}",
            &l);
        if (s == PSO_OK) {
            char *info = NULL;
            if (pso_lease_info(l, &info) != PSO_OK) {
                atomic_fetch_add(a->errors, 1);
            }
            pso_string_free(info);
            if (pso_lease_release(l, NULL) != PSO_OK) {
                atomic_fetch_add(a->errors, 1);
            }
        } else if (s != PSO_ERR_TIMEOUT) {
            atomic_fetch_add(a->errors, 1);
            fprintf(stderr, "hammer %d: %s: %s\n", a->id, pso_status_name((uint32_t)s),
                    pso_last_error_message());
        }
        bool h = false;
        s = pso_lease_held(*a->shared, &h);
        if (s != PSO_OK && s != PSO_ERR_STALE_HANDLE) {
            atomic_fetch_add(a->errors, 1);
        }
        if (i == 30 && a->id == 0) {
            s = pso_lease_release(*a->shared, NULL);
            if (s != PSO_OK) {
                atomic_fetch_add(a->errors, 1);
            }
        }
    }
    return NULL;
}

static void test_leases_across_threads(void) {
    pso_orchestrator o = orch_with(2, 0, 0, 0);
    static const char *const S[] = {"s0", "s1", "s2", "s3", NULL};
    register_all(o, S);
    CHECK_STATUS(pso_set_capacity(o, "cpu", 3), PSO_OK);
    CHECK_STATUS(pso_set_capacity(o, "memory", 100), PSO_OK);
    pso_lease shared = allocate(o, "s0", "{\"amounts\": {\"memory\": 1}}");
    atomic_int errors;
    atomic_init(&errors, 0);
    enum { N = 4 };
    pthread_t t[N];
    hammer_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (hammer_arg){.o = o, .shared = &shared, .id = i, .errors = &errors};
        CHECK(pthread_create(&t[i], NULL, hammer, &args[i]) == 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
    }
    CHECK(atomic_load(&errors) == 0);
    CHECK_STATUS(pso_lease_release(shared, NULL), PSO_ERR_STALE_HANDLE);
    char *json = status_json(o);
    CHECK_CONTAINS(json, "\"leases\":[]");
    CHECK_CONTAINS(json, "\"waiters\":[]");
    CHECK_CONTAINS(json, "{\"name\":\"cpu\",\"capacity\":3,\"allocated\":0,\"free\":3}");
    pso_string_free(json);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"options_capacity_quota_weight", test_options_capacity_quota_weight},
        {"lease_basics", test_lease_basics},
        {"null_and_utf8_arguments", test_null_and_utf8_arguments},
        {"request_json_errors", test_request_json_errors},
        {"rejections", test_rejections},
        {"waiter_woken_by_release", test_waiter_woken_by_release},
        {"gangs", test_gangs},
        {"ttl_expiry", test_ttl_expiry},
        {"preemption", test_preemption},
        {"preemption_notice_on_another_thread", test_preemption_notice_on_another_thread},
        {"status_and_plan", test_status_and_plan},
        {"step_resources_in_a_workflow", test_step_resources_in_a_workflow},
        {"close_under_a_waiter_and_release_after", test_close_under_a_waiter_and_release_after},
        {"leases_across_threads", test_leases_across_threads},
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
