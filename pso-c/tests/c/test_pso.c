/*
 * C test suite for libpso, compiled against include/pso.h with
 * -Wall -Wextra -Werror -std=c11. Covers every exported function: success,
 * NULL for each pointer argument, invalid UTF-8 for each string argument, a
 * closed handle, dependency order, failing handlers, parse errors, user_data
 * ownership, and closing a handle while other threads use it.
 *
 * Prints "N passed, M failed" and exits non-zero if anything failed.
 */
#define _POSIX_C_SOURCE 200809L

#include "check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------- handlers and user_data */

#define MAGIC 0x5053u
#define MAX_EVENTS 256

/* Records handler calls in order, across worker threads. */
typedef struct {
    pthread_mutex_t mu;
    char events[MAX_EVENTS][48];
    int n;
} recorder;

static void recorder_init(recorder *r) {
    pthread_mutex_init(&r->mu, NULL);
    r->n = 0;
}

static void record(recorder *r, char sign, const char *system) {
    pthread_mutex_lock(&r->mu);
    if (r->n < MAX_EVENTS) {
        snprintf(r->events[r->n], sizeof r->events[0], "%c%s", sign, system);
        r->n++;
    }
    pthread_mutex_unlock(&r->mu);
}

/* Index of `event` ("+name" or "-name") in the record, or -1. */
static int event_index(recorder *r, const char *event) {
    int found = -1;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n; i++) {
        if (strcmp(r->events[i], event) == 0) {
            found = i;
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return found;
}


/* The user_data of one pso_set_handlers call (malloc'd; PSO frees it). */
typedef struct {
    unsigned magic;
    recorder *rec;
    int32_t fail_activate;   /* non-zero: on_activate returns it */
    int32_t fail_deactivate; /* non-zero: on_deactivate returns it */
    const char *message;     /* written into error_buf on failure, if not NULL */
    int fill_buffer;         /* on failure, fill the whole buffer, no NUL */
    long sleep_ms;           /* on_activate sleeps this long first */
    pso_orchestrator self;   /* for calls made from inside a handler */
    int call_back_in;        /* 1: from on_activate, query status and try a lifecycle call */
    int close_in;            /* 1: from on_activate, close `self` */
    int query_on_free;       /* 1: free_cfg calls pso_system_status(self) */
    atomic_int entered;      /* on_activate has started */
    atomic_int inner_status_of;
    atomic_int inner_activate;
} handler_cfg;

/* What pso_orchestrator_close returned inside a handler (a global: the cfg
 * itself is freed when that orchestrator goes away). */
static atomic_int g_inner_close = -1;

static handler_cfg *cfg_new(recorder *rec) {
    handler_cfg *c = calloc(1, sizeof *c);
    if (c == NULL) {
        abort();
    }
    c->magic = MAGIC;
    c->rec = rec;
    atomic_init(&c->entered, 0);
    atomic_init(&c->inner_status_of, -1);
    atomic_init(&c->inner_activate, -1);
    return c;
}

/* What pso_system_status returned inside free_cfg (for query_on_free). */
static atomic_int g_status_in_free = -1;

static void free_cfg(void *p) {
    handler_cfg *c = p;
    CHECK(c != NULL && c->magic == MAGIC);
    if (c->query_on_free) {
        char *json = NULL;
        atomic_store(&g_status_in_free, (int)pso_system_status(c->self, &json));
        pso_string_free(json);
    }
    c->magic = 0;
    free(c);
    atomic_fetch_add(&g_freed, 1);
}

static int32_t fail_with(const handler_cfg *c, int32_t code, char *buf, size_t len) {
    if (c->fill_buffer) {
        memset(buf, 'x', len); /* no terminating NUL at all */
    } else if (c->message != NULL) {
        snprintf(buf, len, "%s", c->message);
    }
    return code;
}

static int32_t on_activate(void *ud, const char *system, char *buf, size_t len) {
    handler_cfg *c = ud;
    if (c->magic != MAGIC) {
        return 99;
    }
    atomic_store(&c->entered, 1);
    if (c->sleep_ms > 0) {
        sleep_ms(c->sleep_ms);
    }
    if (c->call_back_in) {
        char *json = NULL;
        atomic_store(&c->inner_status_of, (int)pso_status_of(c->self, system, &json));
        pso_string_free(json);
        atomic_store(&c->inner_activate, (int)pso_activate_system(c->self, system, NULL));
    }
    if (c->close_in) {
        atomic_store(&g_inner_close, (int)pso_orchestrator_close(c->self));
    }
    if (c->rec != NULL) {
        record(c->rec, '+', system);
    }
    return c->fail_activate ? fail_with(c, c->fail_activate, buf, len) : 0;
}

static int32_t on_deactivate(void *ud, const char *system, char *buf, size_t len) {
    handler_cfg *c = ud;
    if (c->magic != MAGIC) {
        return 99;
    }
    if (c->rec != NULL) {
        record(c->rec, '-', system);
    }
    return c->fail_deactivate ? fail_with(c, c->fail_deactivate, buf, len) : 0;
}

/* Sets recording handlers on `name`; returns the cfg (owned by PSO now). */
static handler_cfg *handle(pso_orchestrator o, const char *name, recorder *rec) {
    handler_cfg *c = cfg_new(rec);
    c->self = o;
    CHECK_STATUS(pso_set_handlers(o, name, on_activate, on_deactivate, c, free_cfg), PSO_OK);
    return c;
}

/* -------------------------------------------------------------- the tests */

static void test_version_and_status_names(void) {
    CHECK(pso_version() != NULL);
    CHECK(strcmp(pso_version(), "0.1.0") == 0);

    /* The values of docs/API.md, and their names. */
    static const struct {
        pso_status status;
        uint32_t value;
        const char *name;
    } table[] = {
        {PSO_OK, 0, "PSO_OK"},
        {PSO_ERR_NULL_POINTER, 1, "PSO_ERR_NULL_POINTER"},
        {PSO_ERR_INVALID_UTF8, 2, "PSO_ERR_INVALID_UTF8"},
        {PSO_ERR_STALE_HANDLE, 3, "PSO_ERR_STALE_HANDLE"},
        {PSO_ERR_INTERNAL, 4, "PSO_ERR_INTERNAL"},
        {PSO_ERR_NOT_FOUND, 10, "PSO_ERR_NOT_FOUND"},
        {PSO_ERR_ALREADY_EXISTS, 11, "PSO_ERR_ALREADY_EXISTS"},
        {PSO_ERR_CYCLE, 12, "PSO_ERR_CYCLE"},
        {PSO_ERR_INVALID_ARGUMENT, 13, "PSO_ERR_INVALID_ARGUMENT"},
        {PSO_ERR_PARSE, 14, "PSO_ERR_PARSE"},
        {PSO_ERR_CONFLICT, 15, "PSO_ERR_CONFLICT"},
        {PSO_ERR_HANDLER_FAILED, 16, "PSO_ERR_HANDLER_FAILED"},
        {PSO_ERR_TIMEOUT, 17, "PSO_ERR_TIMEOUT"},
        {PSO_ERR_BUSY, 18, "PSO_ERR_BUSY"},
        {PSO_ERR_CLOSED, 19, "PSO_ERR_CLOSED"},
        {PSO_ERR_IO, 20, "PSO_ERR_IO"},
        {PSO_ERR_NOT_ACTIVE, 21, "PSO_ERR_NOT_ACTIVE"},
        {PSO_ERR_NO_RESPONDERS, 22, "PSO_ERR_NO_RESPONDERS"},
        {PSO_ERR_OVERFLOW, 23, "PSO_ERR_OVERFLOW"},
        {PSO_ERR_CAS_CONFLICT, 24, "PSO_ERR_CAS_CONFLICT"},
        {PSO_ERR_COMPACTED, 25, "PSO_ERR_COMPACTED"},
        {PSO_ERR_EXCEEDS_CAPACITY, 30, "PSO_ERR_EXCEEDS_CAPACITY"},
        {PSO_ERR_EXCEEDS_QUOTA, 31, "PSO_ERR_EXCEEDS_QUOTA"},
        {PSO_ERR_CANCELLED, 32, "PSO_ERR_CANCELLED"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        CHECK((uint32_t)table[i].status == table[i].value);
        CHECK(strcmp(pso_status_name(table[i].value), table[i].name) == 0);
    }
    CHECK(strcmp(pso_status_name(5), "unknown status") == 0);
    CHECK(strcmp(pso_status_name(26), "unknown status") == 0);
    CHECK(strcmp(pso_status_name(33), "unknown status") == 0);
    CHECK(strcmp(pso_status_name(UINT32_MAX), "unknown status") == 0);
    CHECK(PSO_FORMAT_TOML != PSO_FORMAT_JSON);
    CHECK(PSO_HANDLER_ERROR_BUF_LEN == 1024);
}

static void test_new_close_workers(void) {
    pso_orchestrator o = {0};
    CHECK_STATUS(pso_orchestrator_new(NULL, &o), PSO_OK);
    CHECK(o.id != 0);
    CHECK(strcmp(pso_last_error_message(), "") == 0);
    uint32_t workers = 0;
    CHECK_STATUS(pso_orchestrator_workers(o, &workers), PSO_OK);
    CHECK(workers >= 1);
    CHECK_STATUS(pso_orchestrator_workers(o, NULL), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_orchestrator_workers: argument 'out' is NULL");
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);

    /* Double close, use after close, the zero handle. */
    CHECK_STATUS(pso_orchestrator_close(o), PSO_ERR_STALE_HANDLE);
    CHECK_ERR("pso_orchestrator_close: orchestrator handle");
    CHECK_ERR("is stale");
    workers = 77;
    CHECK_STATUS(pso_orchestrator_workers(o, &workers), PSO_ERR_STALE_HANDLE);
    CHECK(workers == 0); /* out-parameters are reset whatever fails */
    pso_orchestrator zero = {0};
    CHECK_STATUS(pso_orchestrator_workers(zero, &workers), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_orchestrator_close(zero), PSO_ERR_STALE_HANDLE);

    /* A new orchestrator may reuse the slot; the old handle stays stale. */
    pso_options opts = {0};
    opts.workers = 3;
    pso_orchestrator o2 = {0};
    CHECK_STATUS(pso_orchestrator_new(&opts, &o2), PSO_OK);
    CHECK(o2.id != o.id);
    CHECK_STATUS(pso_orchestrator_workers(o2, &workers), PSO_OK);
    CHECK(workers == 3);
    CHECK_STATUS(pso_orchestrator_workers(o, &workers), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_orchestrator_close(o2), PSO_OK);

    CHECK_STATUS(pso_orchestrator_new(&opts, NULL), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_orchestrator_new: argument 'out' is NULL");
}

static void test_register_and_connect(void) {
    pso_orchestrator o = new_orch(2);
    CHECK_STATUS(pso_register_system(o, "db", "foundation", "critical"), PSO_OK);
    CHECK_STATUS(pso_register_system(o, "api", NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_register_system(o, "web", "edge", "low"), PSO_OK);
    CHECK(strcmp(pso_last_error_message(), "") == 0);

    CHECK_STATUS(pso_register_system(o, NULL, NULL, NULL), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_register_system: argument 'name' is NULL");
    CHECK_STATUS(pso_register_system(o, BAD_UTF8, NULL, NULL), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("argument 'name' is not valid UTF-8 (invalid byte 0xff at offset 2)");
    CHECK_STATUS(pso_register_system(o, "x", BAD_UTF8, NULL), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("argument 'tier' is not valid UTF-8");
    CHECK_STATUS(pso_register_system(o, "x", NULL, BAD_UTF8), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("argument 'priority' is not valid UTF-8");
    CHECK_STATUS(pso_register_system(o, "x", NULL, "urgent"), PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("unknown priority 'urgent'");
    CHECK_STATUS(pso_register_system(o, "a b", NULL, NULL), PSO_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pso_register_system(o, "", NULL, NULL), PSO_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pso_register_system(o, "db", NULL, NULL), PSO_ERR_ALREADY_EXISTS);
    CHECK_ERR("system 'db' is already registered");

    CHECK_STATUS(pso_connect(o, "api", "requires", "db"), PSO_OK);
    CHECK_STATUS(pso_connect(o, "web", "requires", "api"), PSO_OK);
    CHECK_STATUS(pso_connect(o, "web", "requires", "api"), PSO_OK); /* existing: no-op */
    CHECK_STATUS(pso_connect(o, NULL, "requires", "db"), PSO_ERR_NULL_POINTER);
    CHECK_ERR("argument 'from' is NULL");
    CHECK_STATUS(pso_connect(o, "api", NULL, "db"), PSO_ERR_NULL_POINTER);
    CHECK_ERR("argument 'kind' is NULL");
    CHECK_STATUS(pso_connect(o, "api", "requires", NULL), PSO_ERR_NULL_POINTER);
    CHECK_ERR("argument 'to' is NULL");
    CHECK_STATUS(pso_connect(o, BAD_UTF8, "requires", "db"), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("argument 'from' is not valid UTF-8");
    CHECK_STATUS(pso_connect(o, "api", BAD_UTF8, "db"), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("argument 'kind' is not valid UTF-8");
    CHECK_STATUS(pso_connect(o, "api", "requires", BAD_UTF8), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("argument 'to' is not valid UTF-8");
    CHECK_STATUS(pso_connect(o, "api", "require", "db"), PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("unknown edge kind 'require'");
    CHECK_STATUS(pso_connect(o, "api", "requires", "nope"), PSO_ERR_NOT_FOUND);
    CHECK_ERR("unknown system 'nope'");
    CHECK_STATUS(pso_connect(o, "db", "after", "web"), PSO_ERR_CYCLE);
    CHECK_ERR("db -> web -> api -> db");

    /* Nothing changed by the failed calls: still three systems. */
    char *json = NULL;
    CHECK_STATUS(pso_system_status(o, &json), PSO_OK);
    CHECK_CONTAINS(json, "\"name\":\"web\"");
    CHECK_CONTAINS(json, "\"tier\":\"edge\"");
    CHECK_CONTAINS(json, "\"priority\":\"critical\"");
    CHECK(strstr(json, "\"name\":\"x\"") == NULL);
    pso_string_free(json);

    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK_STATUS(pso_register_system(o, "late", NULL, NULL), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_connect(o, "api", "requires", "db"), PSO_ERR_STALE_HANDLE);
}

static void test_dependency_order_and_queries(void) {
    recorder rec;
    recorder_init(&rec);
    pso_orchestrator o = new_orch(2);
    const char *names[] = {"db", "cache", "api", "metrics", "web"};
    for (int i = 0; i < 5; i++) {
        CHECK_STATUS(pso_register_system(o, names[i], NULL, NULL), PSO_OK);
        handle(o, names[i], &rec);
    }
    CHECK_STATUS(pso_connect(o, "cache", "requires", "db"), PSO_OK);
    CHECK_STATUS(pso_connect(o, "api", "requires", "cache"), PSO_OK);
    CHECK_STATUS(pso_connect(o, "api", "requires", "db"), PSO_OK);
    CHECK_STATUS(pso_connect(o, "web", "requires", "api"), PSO_OK);
    CHECK_STATUS(pso_connect(o, "web", "wants", "metrics"), PSO_OK);

    char *plan = NULL;
    CHECK_STATUS(pso_plan(o, "web", &plan), PSO_OK);
    CHECK_CONTAINS(plan, "\"target\":\"web\"");
    CHECK_CONTAINS(plan, "\"levels\":[[");
    CHECK_CONTAINS(plan, "[\"web\"]]");
    pso_string_free(plan);

    char *report = NULL;
    CHECK_STATUS(pso_activate_system(o, "web", &report), PSO_OK);
    CHECK_CONTAINS(report, "\"target\":\"web\"");
    CHECK_CONTAINS(report, "\"action\":\"activate\"");
    CHECK_CONTAINS(report, "{\"system\":\"db\",\"outcome\":\"activated\"");
    CHECK_CONTAINS(report, "\"elapsed\":");
    pso_string_free(report);
    CHECK(rec.n == 5);
    CHECK(event_index(&rec, "+db") < event_index(&rec, "+cache"));
    CHECK(event_index(&rec, "+cache") < event_index(&rec, "+api"));
    CHECK(event_index(&rec, "+api") < event_index(&rec, "+web"));
    CHECK(event_index(&rec, "+metrics") >= 0);
    CHECK(event_index(&rec, "+metrics") < event_index(&rec, "+web"));

    /* Idempotent; the report out-parameter is optional. */
    CHECK_STATUS(pso_activate_system(o, "web", &report), PSO_OK);
    CHECK_CONTAINS(report, "\"outcome\":\"already_active\"");
    pso_string_free(report);
    CHECK_STATUS(pso_activate_system(o, "web", NULL), PSO_OK);

    char *json = NULL;
    CHECK_STATUS(pso_status_of(o, "api", &json), PSO_OK);
    CHECK_CONTAINS(json, "\"state\":\"Active\"");
    CHECK_CONTAINS(json, "\"requires\":[\"cache\",\"db\"]");
    CHECK_CONTAINS(json, "\"required_by\":[\"web\"]");
    CHECK_CONTAINS(json, "\"has_activate_handler\":true");
    pso_string_free(json);

    char *text = NULL;
    CHECK_STATUS(pso_why_inactive(o, "api", &text), PSO_OK);
    CHECK_CONTAINS(text, "api");
    CHECK_CONTAINS(text, "Active");
    pso_string_free(text);

    /* Deactivating db stops its dependents first. */
    CHECK_STATUS(pso_deactivate_system(o, "db", &report), PSO_OK);
    CHECK_CONTAINS(report, "\"action\":\"deactivate\"");
    CHECK_CONTAINS(report, "\"outcome\":\"deactivated\"");
    pso_string_free(report);
    CHECK(event_index(&rec, "-web") >= 0);
    CHECK(event_index(&rec, "-web") < event_index(&rec, "-api"));
    CHECK(event_index(&rec, "-api") < event_index(&rec, "-cache"));
    CHECK(event_index(&rec, "-cache") < event_index(&rec, "-db"));
    CHECK(event_index(&rec, "-metrics") < 0); /* nothing requires it to stop */

    CHECK_STATUS(pso_deactivate_system(o, "db", &report), PSO_OK);
    CHECK_CONTAINS(report, "\"outcome\":\"not_active\"");
    pso_string_free(report);
    CHECK_STATUS(pso_deactivate_system(o, "db", NULL), PSO_OK);

    CHECK_STATUS(pso_why_inactive(o, "web", &text), PSO_OK);
    CHECK_CONTAINS(text, "web is Inactive");
    pso_string_free(text);

    /* The _all variants. */
    CHECK_STATUS(pso_activate_all(o, &report), PSO_OK);
    CHECK_CONTAINS(report, "\"target\":\"*\"");
    CHECK_CONTAINS(report, "\"system\":\"web\",\"outcome\":\"activated\"");
    pso_string_free(report);
    CHECK_STATUS(pso_activate_all(o, NULL), PSO_OK);
    CHECK_STATUS(pso_deactivate_all(o, &report), PSO_OK);
    CHECK_CONTAINS(report, "\"target\":\"*\"");
    CHECK_CONTAINS(report, "\"system\":\"metrics\",\"outcome\":\"deactivated\"");
    pso_string_free(report);
    CHECK_STATUS(pso_deactivate_all(o, NULL), PSO_OK);

    /* Unknown names. */
    CHECK_STATUS(pso_activate_system(o, "nope", &report), PSO_ERR_NOT_FOUND);
    CHECK(report == NULL);
    CHECK_ERR("unknown system 'nope'");
    CHECK_STATUS(pso_deactivate_system(o, "nope", &report), PSO_ERR_NOT_FOUND);
    CHECK(report == NULL);
    char sentinel = 0;
    json = &sentinel;
    CHECK_STATUS(pso_status_of(o, "nope", &json), PSO_ERR_NOT_FOUND);
    CHECK(json == NULL); /* reset, not left dangling */
    CHECK_STATUS(pso_why_inactive(o, "nope", &text), PSO_ERR_NOT_FOUND);
    CHECK_STATUS(pso_plan(o, "nope", &plan), PSO_ERR_NOT_FOUND);

    /* Conflicts. */
    CHECK_STATUS(pso_register_system(o, "blue", NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_register_system(o, "green", NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_connect(o, "blue", "conflicts", "green"), PSO_OK);
    CHECK_STATUS(pso_activate_system(o, "blue", NULL), PSO_OK);
    CHECK_STATUS(pso_activate_system(o, "green", &report), PSO_ERR_CONFLICT);
    CHECK(report == NULL);
    CHECK_ERR("conflicts with blue");
    CHECK_STATUS(pso_plan(o, "green", &plan), PSO_ERR_CONFLICT);

    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK(atomic_load(&g_freed) > 0);
}

static void test_failing_handlers(void) {
    recorder rec;
    recorder_init(&rec);
    pso_orchestrator o = new_orch(2);
    CHECK_STATUS(pso_load_topology_str(o,
                                       "[[systems]]\nname = \"disk\"\n"
                                       "[[systems]]\nname = \"store\"\nrequires = [\"disk\"]\n"
                                       "[[systems]]\nname = \"app\"\nrequires = [\"store\"]\n"
                                       "[[systems]]\nname = \"quiet\"\n"
                                       "[[systems]]\nname = \"chatty\"\n"
                                       "[[systems]]\nname = \"stubborn\"\n",
                                       PSO_FORMAT_TOML, NULL),
                 PSO_OK);
    handler_cfg *disk = handle(o, "disk", &rec);
    disk->fail_activate = 7;
    disk->message = "disk on fire";

    char *report = NULL;
    CHECK_STATUS(pso_activate_system(o, "app", &report), PSO_ERR_HANDLER_FAILED);
    CHECK(report != NULL); /* the report comes back with the error */
    CHECK_CONTAINS(report, "{\"system\":\"disk\",\"outcome\":\"failed\",\"error\":\"status 7: disk on fire\"");
    CHECK_CONTAINS(report, "{\"system\":\"app\",\"outcome\":\"blocked\"");
    pso_string_free(report);
    CHECK_ERR("cannot activate app: app requires store, store requires disk, which failed: "
              "status 7: disk on fire");

    char *json = NULL;
    CHECK_STATUS(pso_status_of(o, "disk", &json), PSO_OK);
    CHECK_CONTAINS(json, "\"state\":\"Failed\"");
    CHECK_CONTAINS(json, "status 7: disk on fire");
    pso_string_free(json);
    char *text = NULL;
    CHECK_STATUS(pso_why_inactive(o, "app", &text), PSO_OK);
    CHECK_CONTAINS(text, "disk");
    pso_string_free(text);

    /* No message written: "status N". */
    handler_cfg *quiet = handle(o, "quiet", &rec);
    quiet->fail_activate = 5;
    CHECK_STATUS(pso_activate_system(o, "quiet", NULL), PSO_ERR_HANDLER_FAILED);
    CHECK_ERR("cannot activate quiet: status 5: status 5");

    /* A message that fills the buffer with no NUL is cut at len - 1 bytes. */
    handler_cfg *chatty = handle(o, "chatty", &rec);
    chatty->fail_activate = -1;
    chatty->fill_buffer = 1;
    CHECK_STATUS(pso_activate_system(o, "chatty", NULL), PSO_ERR_HANDLER_FAILED);
    static char xs[PSO_HANDLER_ERROR_BUF_LEN + 8];
    memset(xs, 'x', PSO_HANDLER_ERROR_BUF_LEN - 1);
    xs[PSO_HANDLER_ERROR_BUF_LEN - 1] = '\0';
    CHECK_ERR(xs);
    CHECK_ERR("status -1: xxx");
    xs[PSO_HANDLER_ERROR_BUF_LEN - 1] = 'x';
    xs[PSO_HANDLER_ERROR_BUF_LEN] = '\0';
    CHECK(strstr(pso_last_error_message(), xs) == NULL); /* not one byte more */

    /* activate_all fails if anything failed, and still reports everything. */
    CHECK_STATUS(pso_activate_all(o, &report), PSO_ERR_HANDLER_FAILED);
    CHECK_CONTAINS(report, "\"target\":\"*\"");
    CHECK_CONTAINS(report, "\"system\":\"stubborn\",\"outcome\":\"activated\"");
    pso_string_free(report);

    /* A failing deactivate handler. */
    handler_cfg *stubborn = handle(o, "stubborn", &rec);
    stubborn->fail_deactivate = 3;
    stubborn->message = "cannot stop";
    CHECK_STATUS(pso_deactivate_system(o, "stubborn", &report), PSO_ERR_HANDLER_FAILED);
    CHECK_CONTAINS(report, "\"outcome\":\"failed\"");
    pso_string_free(report);
    CHECK_ERR("deactivating stubborn failed: status 3: cannot stop");
    CHECK(event_index(&rec, "-stubborn") >= 0);

    /* Deactivate-all failure: the report is still returned. */
    stubborn->fail_deactivate = 0;
    CHECK_STATUS(pso_activate_system(o, "stubborn", NULL), PSO_OK);
    stubborn->fail_deactivate = 4;
    CHECK_STATUS(pso_deactivate_all(o, &report), PSO_ERR_HANDLER_FAILED);
    CHECK(report != NULL);
    CHECK_CONTAINS(report, "\"system\":\"stubborn\",\"outcome\":\"failed\"");
    pso_string_free(report);
    CHECK_ERR("status 4: cannot stop");

    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

/* Writes `text` to a new file under $TMPDIR (or /tmp); returns its path. */
static void write_file(char *path, size_t len, const char *ext, const char *text) {
    const char *dir = getenv("TMPDIR");
    snprintf(path, len, "%s/pso-c-test-%ld%s", dir && *dir ? dir : "/tmp", (long)getpid(), ext);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_topology_and_export(void) {
    pso_orchestrator o = new_orch(1);
    size_t added = 99;
    CHECK_STATUS(pso_load_topology_str(o,
                                       "[[systems]]\nname = \"PDT\"\ntier = \"foundation\"\n"
                                       "[[systems]]\nname = \"PSec\"\npriority = \"high\"\n"
                                       "requires = [\"PDT\"]\n",
                                       PSO_FORMAT_TOML, &added),
                 PSO_OK);
    CHECK(added == 2);
    CHECK_STATUS(pso_load_topology_str(
                     o, "{\"systems\": [{\"name\": \"PBOS\", \"requires\": [\"PSec\"]}]}",
                     PSO_FORMAT_JSON, &added),
                 PSO_OK);
    CHECK(added == 1);

    /* Parse errors carry line and column. */
    added = 99;
    CHECK_STATUS(pso_load_topology_str(o, "[[systems]]\nname = \"a\"\nrequries = [\"b\"]\n",
                                       PSO_FORMAT_TOML, &added),
                 PSO_ERR_PARSE);
    CHECK(added == 0);
    CHECK_ERR("<string>:3:1: ");
    CHECK_ERR("requries");
    CHECK_STATUS(pso_load_topology_str(o, "{\n  \"systems\": [\n    {\"name\": \"a\",}\n  ]\n}",
                                       PSO_FORMAT_JSON, NULL),
                 PSO_ERR_PARSE);
    CHECK_ERR("<string>:3:");
    /* A semantic error points at the offending name. */
    CHECK_STATUS(pso_load_topology_str(o, "[[systems]]\nname = \"q\"\nrequires = [\"ghost\"]\n",
                                       PSO_FORMAT_TOML, NULL),
                 PSO_ERR_NOT_FOUND);
    CHECK_ERR("<string>:3:");
    CHECK_ERR("ghost");
    CHECK_STATUS(pso_load_topology_str(o, "[[systems]]\nname = \"PDT\"\n", PSO_FORMAT_TOML, NULL),
                 PSO_ERR_ALREADY_EXISTS);
    CHECK_STATUS(pso_load_topology_str(o, "", 0, NULL), PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("unknown topology format 0");
    CHECK_STATUS(pso_load_topology_str(o, "", 3, NULL), PSO_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pso_load_topology_str(o, NULL, PSO_FORMAT_TOML, &added), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_load_topology_str: argument 'text' is NULL");
    CHECK_STATUS(pso_load_topology_str(o, BAD_UTF8, PSO_FORMAT_TOML, NULL), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("argument 'text' is not valid UTF-8");

    /* From files. */
    char path[512];
    write_file(path, sizeof path, ".toml", "[[systems]]\nname = \"PTT\"\nwants = [\"PDT\"]\n");
    CHECK_STATUS(pso_load_topology(o, path, &added), PSO_OK);
    CHECK(added == 1);
    remove(path);
    write_file(path, sizeof path, ".toml", "[[systems]]\nname = \"z\"\nbogus = 1\n");
    CHECK_STATUS(pso_load_topology(o, path, NULL), PSO_ERR_PARSE);
    CHECK_ERR(path);
    CHECK_ERR(":3:1: ");
    remove(path);
    CHECK_STATUS(pso_load_topology(o, "/nonexistent/pso/topology.toml", &added), PSO_ERR_IO);
    CHECK_ERR("/nonexistent/pso/topology.toml");
    CHECK_STATUS(pso_load_topology(o, "topology.yaml", NULL), PSO_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pso_load_topology(o, NULL, &added), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_load_topology: argument 'path' is NULL");
    CHECK_STATUS(pso_load_topology(o, BAD_UTF8, NULL), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("argument 'path' is not valid UTF-8");

    /* Export in every format; TOML and JSON load back. */
    char *text = NULL;
    CHECK_STATUS(pso_export(o, PSO_EXPORT_DOT, &text), PSO_OK);
    CHECK_CONTAINS(text, "digraph");
    CHECK_CONTAINS(text, "PSec");
    pso_string_free(text);
    CHECK_STATUS(pso_export(o, PSO_EXPORT_MERMAID, &text), PSO_OK);
    CHECK_CONTAINS(text, "PBOS");
    pso_string_free(text);
    uint32_t formats[2] = {PSO_EXPORT_TOML, PSO_EXPORT_JSON};
    uint32_t load_as[2] = {PSO_FORMAT_TOML, PSO_FORMAT_JSON};
    for (int i = 0; i < 2; i++) {
        CHECK_STATUS(pso_export(o, formats[i], &text), PSO_OK);
        CHECK_CONTAINS(text, "PSec");
        pso_orchestrator copy = new_orch(1);
        CHECK_STATUS(pso_load_topology_str(copy, text, load_as[i], &added), PSO_OK);
        CHECK(added == 4);
        char *again = NULL;
        CHECK_STATUS(pso_export(copy, formats[i], &again), PSO_OK);
        CHECK(again != NULL && strcmp(again, text) == 0);
        pso_string_free(again);
        pso_string_free(text);
        CHECK_STATUS(pso_orchestrator_close(copy), PSO_OK);
    }
    text = (char *)"sentinel";
    CHECK_STATUS(pso_export(o, 0, &text), PSO_ERR_INVALID_ARGUMENT);
    CHECK(text == NULL);
    CHECK_ERR("unknown export format 0");
    CHECK_STATUS(pso_export(o, 5, &text), PSO_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pso_export(o, PSO_EXPORT_JSON, NULL), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_export: argument 'text' is NULL");

    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK_STATUS(pso_load_topology(o, "x.toml", NULL), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_load_topology_str(o, "", PSO_FORMAT_TOML, NULL), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_export(o, PSO_EXPORT_JSON, &text), PSO_ERR_STALE_HANDLE);
}

static int g_stack_user_data;

static void test_user_data_ownership(void) {
    recorder rec;
    recorder_init(&rec);
    int base = atomic_load(&g_freed);
    pso_orchestrator o = new_orch(2);
    CHECK_STATUS(pso_register_system(o, "svc", NULL, NULL), PSO_OK);

    handler_cfg *first = handle(o, "svc", &rec);
    (void)first;
    CHECK_FREED(base);
    handler_cfg *second = handle(o, "svc", &rec); /* replaces: frees `first` */
    CHECK_FREED(base + 1);
    second->call_back_in = 1;
    CHECK_STATUS(pso_activate_system(o, "svc", NULL), PSO_OK);
    CHECK(event_index(&rec, "+svc") >= 0);
    /* From inside a handler: reads work, lifecycle calls are refused. */
    CHECK(atomic_load(&second->inner_status_of) == PSO_OK);
    CHECK(atomic_load(&second->inner_activate) == PSO_ERR_BUSY);
    CHECK_FREED(base + 1);

    /* Both callbacks NULL: nothing keeps user_data, freed before returning. */
    handler_cfg *third = cfg_new(NULL);
    CHECK_STATUS(pso_set_handlers(o, "svc", NULL, NULL, third, free_cfg), PSO_OK);
    CHECK_FREED(base + 3); /* `second` and `third` */
    char *json = NULL;
    CHECK_STATUS(pso_status_of(o, "svc", &json), PSO_OK);
    CHECK_CONTAINS(json, "\"has_activate_handler\":false");
    pso_string_free(json);

    /* On failure PSO does not take user_data. */
    handler_cfg *mine = cfg_new(NULL);
    CHECK_STATUS(pso_set_handlers(o, "ghost", on_activate, NULL, mine, free_cfg),
                 PSO_ERR_NOT_FOUND);
    CHECK_ERR("unknown system 'ghost'");
    CHECK_STATUS(pso_set_handlers(o, NULL, on_activate, NULL, mine, free_cfg),
                 PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_set_handlers: argument 'name' is NULL");
    CHECK_STATUS(pso_set_handlers(o, BAD_UTF8, on_activate, NULL, mine, free_cfg),
                 PSO_ERR_INVALID_UTF8);
    CHECK_ERR("argument 'name' is not valid UTF-8");
    pso_orchestrator zero = {0};
    CHECK_STATUS(pso_set_handlers(zero, "svc", on_activate, NULL, mine, free_cfg),
                 PSO_ERR_STALE_HANDLE);
    CHECK_FREED(base + 3);
    free_cfg(mine); /* still ours */
    base += 1;

    /* No free function: user_data is just borrowed. */
    CHECK_STATUS(pso_set_handlers(o, "svc", NULL, NULL, &g_stack_user_data, NULL), PSO_OK);

    /* free_user_data may call back into PSO, on replacement and on close. */
    handler_cfg *calls_back = handle(o, "svc", &rec);
    calls_back->query_on_free = 1;
    handler_cfg *last = handle(o, "svc", &rec);
    CHECK_FREED_NOW(base + 4); /* synchronous: no transaction used it */
    CHECK(atomic_load(&g_status_in_free) == PSO_OK);
    last->query_on_free = 1;
    atomic_store(&g_status_in_free, -1);
    base += 1;

    /* Closing frees the live user_data exactly once. */
    CHECK_STATUS(pso_register_system(o, "svc2", NULL, NULL), PSO_OK);
    handle(o, "svc2", &rec);
    CHECK_STATUS(pso_activate_system(o, "svc2", NULL), PSO_OK);
    CHECK_FREED(base + 3);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK_FREED_NOW(base + 5);
    /* `last` was freed during the close: its handle was already retired. */
    CHECK(atomic_load(&g_status_in_free) == PSO_ERR_STALE_HANDLE);
}

static void test_timeouts(void) {
    int base = atomic_load(&g_freed);
    /* A system's own timeout_ms. */
    pso_orchestrator o = new_orch(2);
    CHECK_STATUS(pso_load_topology_str(o,
                                       "[[systems]]\nname = \"slow\"\ntimeout_ms = 50\n"
                                       "[[systems]]\nname = \"top\"\nrequires = [\"slow\"]\n",
                                       PSO_FORMAT_TOML, NULL),
                 PSO_OK);
    handler_cfg *slow = handle(o, "slow", NULL);
    slow->sleep_ms = 400;
    char *report = NULL;
    CHECK_STATUS(pso_activate_system(o, "top", &report), PSO_ERR_HANDLER_FAILED);
    CHECK_CONTAINS(report, "{\"system\":\"slow\",\"outcome\":\"timed_out\"");
    pso_string_free(report);
    CHECK_ERR("timed out after 50ms");
    /* The abandoned handler is still running; close waits for it, and only
     * then frees its user_data. */
    CHECK(atomic_load(&slow->entered) == 1);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK_FREED_NOW(base + 1);

    /* The orchestrator-wide default from pso_options. */
    pso_options opts = {0};
    opts.workers = 1;
    opts.transition_timeout_ms = 60;
    CHECK_STATUS(pso_orchestrator_new(&opts, &o), PSO_OK);
    CHECK_STATUS(pso_register_system(o, "lazy", NULL, NULL), PSO_OK);
    handler_cfg *lazy = handle(o, "lazy", NULL);
    lazy->sleep_ms = 300;
    CHECK_STATUS(pso_activate_system(o, "lazy", NULL), PSO_ERR_HANDLER_FAILED);
    CHECK_ERR("timed out after 60ms");
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK_FREED_NOW(base + 2);
}

/* ------------------------------------------- closing while others use it */

typedef struct {
    pso_orchestrator o;
    int id;
    int saw_stale;
    int unexpected; /* statuses other than OK, CLOSED, STALE_HANDLE */
    int ok;
} hammer_arg;

static int expected_during_close(pso_status s) {
    return s == PSO_OK || s == PSO_ERR_CLOSED || s == PSO_ERR_STALE_HANDLE;
}

static void *hammer(void *p) {
    hammer_arg *a = p;
    for (int i = 0; i < 1000000 && !a->saw_stale; i++) {
        pso_status s;
        char *out = NULL;
        char name[32];
        uint32_t workers = 0;
        switch ((i + a->id) % 8) {
        case 0:
            s = pso_activate_all(a->o, &out);
            break;
        case 1:
            s = pso_deactivate_all(a->o, &out);
            break;
        case 2:
            s = pso_status_of(a->o, "s0", &out);
            break;
        case 3:
            s = pso_system_status(a->o, &out);
            break;
        case 4:
            snprintf(name, sizeof name, "t%d_%d", a->id, i);
            s = pso_register_system(a->o, name, NULL, NULL);
            break;
        case 5:
            s = pso_plan(a->o, "s5", &out);
            break;
        case 6:
            s = pso_activate_system(a->o, "s7", &out);
            break;
        default:
            s = pso_orchestrator_workers(a->o, &workers);
            break;
        }
        pso_string_free(out);
        if (s == PSO_OK) {
            a->ok++;
        }
        if (s == PSO_ERR_STALE_HANDLE) {
            a->saw_stale = 1;
        }
        if (!expected_during_close(s)) {
            a->unexpected++;
            fprintf(stderr, "hammer %d: unexpected %s: %s\n", a->id, pso_status_name((uint32_t)s),
                    pso_last_error_message());
        }
    }
    return NULL;
}

typedef struct {
    pso_orchestrator o;
    const char *system;
    pso_status status;
} call_arg;

static void *activate_in_thread(void *p) {
    call_arg *a = p;
    a->status = pso_activate_system(a->o, a->system, NULL);
    return NULL;
}

static void test_close_while_in_use(void) {
    int base = atomic_load(&g_freed);

    /* 1. Deterministic: close while an activation is inside its handler. */
    pso_orchestrator o = new_orch(2);
    CHECK_STATUS(pso_register_system(o, "gate", NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_register_system(o, "other", NULL, NULL), PSO_OK);
    handler_cfg *gate = handle(o, "gate", NULL);
    gate->sleep_ms = 150;
    call_arg first = {o, "gate", PSO_ERR_INTERNAL};
    call_arg second = {o, "other", PSO_ERR_INTERNAL};
    pthread_t t1, t2;
    CHECK(pthread_create(&t1, NULL, activate_in_thread, &first) == 0);
    for (int i = 0; i < 5000 && !atomic_load(&gate->entered); i++) {
        sleep_ms(1);
    }
    CHECK(atomic_load(&gate->entered) == 1);
    CHECK(pthread_create(&t2, NULL, activate_in_thread, &second) == 0);
    sleep_ms(20); /* let `second` queue behind the running transaction */
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK); /* waits for `first` */
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK_STATUS(first.status, PSO_OK); /* it was already running: it completes */
    /* Queued behind it: CLOSED; or, if it took the registry between the end
     * of `first` and the close (under valgrind and load), it completed; or,
     * if its thread only called after the close, the handle was stale. */
    if (second.status != PSO_ERR_CLOSED && second.status != PSO_ERR_STALE_HANDLE &&
        second.status != PSO_OK) {
        fprintf(stderr, "second: %s\n", pso_status_name((uint32_t)second.status));
    }
    CHECK(second.status == PSO_ERR_CLOSED || second.status == PSO_ERR_STALE_HANDLE ||
          second.status == PSO_OK);
    CHECK_FREED_NOW(base + 1);
    CHECK_STATUS(pso_activate_system(o, "gate", NULL), PSO_ERR_STALE_HANDLE);

    /* 2. Racy: four threads call everything while the main thread closes. */
    o = new_orch(2);
    for (int i = 0; i < 8; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", i);
        CHECK_STATUS(pso_register_system(o, name, NULL, NULL), PSO_OK);
        handler_cfg *c = handle(o, name, NULL);
        c->sleep_ms = 1;
        if (i > 0) {
            char prev[16];
            snprintf(prev, sizeof prev, "s%d", i - 1);
            CHECK_STATUS(pso_connect(o, name, "requires", prev), PSO_OK);
        }
    }
    hammer_arg args[4];
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (hammer_arg){o, i, 0, 0, 0};
        CHECK(pthread_create(&threads[i], NULL, hammer, &args[i]) == 0);
    }
    sleep_ms(60);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    int total_ok = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        CHECK(args[i].saw_stale == 1);
        CHECK(args[i].unexpected == 0);
        total_ok += args[i].ok;
    }
    CHECK(total_ok > 0); /* the calls really overlapped the close */
    CHECK_FREED_NOW(base + 9);

    /* 3. A handler closes its own orchestrator. */
    o = new_orch(2);
    CHECK_STATUS(pso_register_system(o, "a", NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_register_system(o, "b", NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_connect(o, "b", "requires", "a"), PSO_OK);
    handler_cfg *a = handle(o, "a", NULL);
    a->close_in = 1;
    handle(o, "b", NULL);
    pso_status s = pso_activate_system(o, "b", NULL);
    CHECK(s == PSO_OK || s == PSO_ERR_HANDLER_FAILED || s == PSO_ERR_CLOSED);
    CHECK(atomic_load(&g_inner_close) == PSO_OK);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_ERR_STALE_HANDLE);
    CHECK_FREED_NOW(base + 11);
}

/* --------------------------------------------- NULL / stale for the rest */

static void test_null_outputs_and_stale_handles(void) {
    pso_orchestrator o = new_orch(1);
    CHECK_STATUS(pso_register_system(o, "n", NULL, NULL), PSO_OK);
    char *out = NULL;

    CHECK_STATUS(pso_system_status(o, NULL), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_system_status: argument 'json' is NULL");
    CHECK_STATUS(pso_status_of(o, "n", NULL), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_status_of: argument 'json' is NULL");
    CHECK_STATUS(pso_status_of(o, NULL, &out), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_status_of: argument 'name' is NULL");
    CHECK_STATUS(pso_status_of(o, BAD_UTF8, &out), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("pso_status_of: argument 'name' is not valid UTF-8");
    CHECK_STATUS(pso_why_inactive(o, "n", NULL), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_why_inactive: argument 'text' is NULL");
    CHECK_STATUS(pso_why_inactive(o, NULL, &out), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_why_inactive: argument 'name' is NULL");
    CHECK_STATUS(pso_why_inactive(o, BAD_UTF8, &out), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_plan(o, "n", NULL), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_plan: argument 'json' is NULL");
    CHECK_STATUS(pso_plan(o, NULL, &out), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_plan: argument 'name' is NULL");
    CHECK_STATUS(pso_plan(o, BAD_UTF8, &out), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_activate_system(o, NULL, &out), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_activate_system: argument 'name' is NULL");
    CHECK_STATUS(pso_activate_system(o, BAD_UTF8, &out), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("pso_activate_system: argument 'name' is not valid UTF-8");
    CHECK_STATUS(pso_deactivate_system(o, NULL, &out), PSO_ERR_NULL_POINTER);
    CHECK_ERR("pso_deactivate_system: argument 'name' is NULL");
    CHECK_STATUS(pso_deactivate_system(o, BAD_UTF8, &out), PSO_ERR_INVALID_UTF8);
    CHECK(out == NULL);

    /* Success clears the last error; freeing NULL is fine. */
    CHECK_STATUS(pso_status_of(o, "n", &out), PSO_OK);
    CHECK(strcmp(pso_last_error_message(), "") == 0);
    pso_string_free(out);
    pso_string_free(NULL);

    /* The last error is per thread. */
    CHECK_STATUS(pso_plan(o, NULL, &out), PSO_ERR_NULL_POINTER);
    CHECK_ERR("'name' is NULL");

    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    uint32_t w;
    CHECK_STATUS(pso_orchestrator_workers(o, &w), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_set_handlers(o, "n", NULL, NULL, NULL, NULL), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_activate_system(o, "n", &out), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_activate_all(o, &out), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_deactivate_system(o, "n", &out), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_deactivate_all(o, &out), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_system_status(o, &out), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_status_of(o, "n", &out), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_why_inactive(o, "n", &out), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_plan(o, "n", &out), PSO_ERR_STALE_HANDLE);
    CHECK(out == NULL);
}

static void *last_error_in_thread(void *p) {
    (void)p;
    /* A fresh thread starts with an empty last error. */
    return (void *)(uintptr_t)(strcmp(pso_last_error_message(), "") == 0);
}

static void test_last_error_is_per_thread(void) {
    CHECK_STATUS(pso_orchestrator_close((pso_orchestrator){0}), PSO_ERR_STALE_HANDLE);
    pthread_t t;
    void *ret = NULL;
    CHECK(pthread_create(&t, NULL, last_error_in_thread, NULL) == 0);
    pthread_join(t, &ret);
    CHECK(ret == (void *)1);
    CHECK_ERR("is stale"); /* ours is untouched */
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"version_and_status_names", test_version_and_status_names},
        {"new_close_workers", test_new_close_workers},
        {"register_and_connect", test_register_and_connect},
        {"dependency_order_and_queries", test_dependency_order_and_queries},
        {"failing_handlers", test_failing_handlers},
        {"topology_and_export", test_topology_and_export},
        {"user_data_ownership", test_user_data_ownership},
        {"timeouts", test_timeouts},
        {"close_while_in_use", test_close_while_in_use},
        {"null_outputs_and_stale_handles", test_null_outputs_and_stale_handles},
        {"last_error_is_per_thread", test_last_error_is_per_thread},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        int before = atomic_load(&g_failed);
        tests[i].fn();
        printf("%s %s\n", atomic_load(&g_failed) == before ? "ok  " : "FAIL", tests[i].name);
    }
    return report_totals();
}
