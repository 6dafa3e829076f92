/*
 * C tests of the hub and coordination API of libpso (issue 5), compiled
 * against include/pso.h with -Wall -Wextra -Werror -std=c11 -pedantic:
 * publish/subscribe with callbacks and user_data (freed exactly once),
 * messages stale after their callback, per-topic order, pull subscriptions
 * with recv timeouts and a recv woken by an unsubscribe on another thread,
 * wildcards, bad patterns and topics (status and a message naming the
 * token), queue groups, each overflow policy with its drop count and the
 * drop alert, request/reply, NO_RESPONDERS versus TIMEOUT, request_many,
 * direct channels (overflow, close, drain, an end freed under a blocked
 * receive), meshes, promotion by rate, coordination status JSON,
 * run_minimal with pinning and idle deactivation, NULL pointers and
 * invalid UTF-8 giving statuses, and stale handles after free or close.
 * The state store is in test_state.c.
 *
 * No assertion depends on how fast anything runs: waits poll for up to
 * 10 s, and timeouts are only checked to have happened, never to be short.
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

/* Polls (up to 10 s) until *v >= want; returns whether it got there. */
static bool wait_at_least(atomic_int *v, int want) {
    for (int i = 0; i < 10000 && atomic_load(v) < want; i++) {
        sleep_ms(1);
    }
    return atomic_load(v) >= want;
}

/* The number after `"key":` at or after the first occurrence of `after`
 * (NULL: the start) in `json`, or -1. */
static long json_long_after(const char *json, const char *after, const char *key) {
    const char *p = json;
    if (p != NULL && after != NULL) {
        p = strstr(p, after);
    }
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    p = p ? strstr(p, pat) : NULL;
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

/* The `dropped` count of the subscription with this pattern. */
static long dropped_of(pso_orchestrator o, const char *pattern) {
    char *json = NULL;
    CHECK_STATUS(pso_hub_subscriptions(o, &json), PSO_OK);
    char needle[96];
    snprintf(needle, sizeof needle, "\"pattern\":\"%s\"", pattern);
    long n = strstr(json, needle) ? json_long_after(json, needle, "dropped") : -1;
    pso_string_free(json);
    return n;
}

static pso_orchestrator orch_opts(const pso_options *opts) {
    pso_orchestrator o = {0};
    CHECK_STATUS(pso_orchestrator_new(opts, &o), PSO_OK);
    return o;
}

/* -------------------------------------------------------------- the sink */

#define SINK_MAX 256
#define TEXT_MAX 96

/* What a callback subscription saw. Callbacks of one subscription run one
 * at a time, but main reads while they run, hence the mutex. */
typedef struct {
    pthread_mutex_t mu;
    atomic_int count;
    atomic_int freed;
    atomic_int requests;
    int ret;     /* what the callback returns */
    bool reply;  /* answer requests with `tag` */
    char tag[32];
    char topic[SINK_MAX][TEXT_MAX];
    char sender[SINK_MAX][TEXT_MAX];
    char payload[SINK_MAX][TEXT_MAX];
} sink;

static void sink_init(sink *s) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
}

static void sink_destroy(sink *s) { pthread_mutex_destroy(&s->mu); }

static void copy_text(char *dst, const char *src) {
    snprintf(dst, TEXT_MAX, "%s", src ? src : "(null)");
}

/* The last message pointer a callback got, to check it is stale later. */
static const pso_message *_Atomic g_saved_msg;

static int32_t on_msg(const pso_message *m, void *ud) {
    sink *s = ud;
    atomic_store(&g_saved_msg, m);
    char *payload = NULL;
    CHECK_STATUS(pso_message_payload(m, &payload), PSO_OK);
    pthread_mutex_lock(&s->mu);
    int i = atomic_load(&s->count);
    if (i < SINK_MAX) {
        copy_text(s->topic[i], pso_message_topic(m));
        copy_text(s->sender[i], pso_message_sender(m));
        copy_text(s->payload[i], payload);
    }
    pthread_mutex_unlock(&s->mu);
    pso_string_free(payload);
    if (pso_message_is_request(m)) {
        atomic_fetch_add(&s->requests, 1);
        if (s->reply) {
            char reply[64];
            snprintf(reply, sizeof reply, "\"%s\"", s->tag);
            CHECK_STATUS(pso_message_reply(m, reply), PSO_OK);
        }
    } else {
        /* Replying to a plain message is refused; a bad reply is a parse error. */
        CHECK_STATUS(pso_message_reply(m, "1"), PSO_ERR_INVALID_ARGUMENT);
    }
    atomic_fetch_add(&s->count, 1);
    return s->ret;
}

static void sink_free(void *ud) {
    sink *s = ud;
    atomic_fetch_add(&s->freed, 1);
    atomic_fetch_add(&g_freed, 1);
}

static pso_subscription sub_cb(pso_orchestrator o, const char *pattern,
                               const pso_subscribe_options *opts, sink *s) {
    pso_subscription sub = {0};
    CHECK_STATUS(pso_subscribe(o, pattern, opts, on_msg, s, sink_free, &sub), PSO_OK);
    return sub;
}

static pso_subscription sub_pull(pso_orchestrator o, const char *pattern,
                                 const pso_subscribe_options *opts) {
    pso_subscription sub = {0};
    CHECK_STATUS(pso_subscribe_pull(o, pattern, opts, &sub), PSO_OK);
    return sub;
}

static void publish(pso_orchestrator o, const char *topic, const char *json, size_t want) {
    size_t delivered = 99;
    CHECK_STATUS(pso_publish(o, topic, json, NULL, &delivered), PSO_OK);
    if (delivered != want) {
        fprintf(stderr, "publish %s: delivered %zu, expected %zu\n", topic, delivered, want);
    }
    CHECK(delivered == want);
}

/* Receives one message (waiting up to 10 s) and checks it contains `needle`. */
static void recv_expect(pso_subscription s, const char *needle) {
    char *json = NULL;
    CHECK_STATUS(pso_subscription_recv(s, 10000, &json), PSO_OK);
    CHECK_CONTAINS(json, needle);
    pso_string_free(json);
}

/* How many messages a pull subscription has queued (drains them). */
static int drain(pso_subscription s) {
    int n = 0;
    char *json = NULL;
    while (pso_subscription_recv(s, 0, &json) == PSO_OK) {
        pso_string_free(json);
        n++;
    }
    return n;
}

/* ------------------------------------------------------------------- tests */

static void test_publish_subscribe_callbacks(void) {
    int base = atomic_load(&g_freed);
    pso_orchestrator o = new_orch(2);
    sink s;
    sink_init(&s);
    pso_subscription sub = sub_cb(o, "engine.build.done", NULL, &s);

    size_t delivered = 99;
    CHECK_STATUS(pso_publish(o, "engine.build.done", "{\"ok\": true}", "builder", &delivered),
                 PSO_OK);
    CHECK(delivered == 1);
    publish(o, "engine.build.started", "1", 0); /* nobody listens: not an error */
    CHECK(wait_at_least(&s.count, 1));
    pthread_mutex_lock(&s.mu);
    CHECK(strcmp(s.topic[0], "engine.build.done") == 0);
    CHECK(strcmp(s.sender[0], "builder") == 0);
    CHECK(strcmp(s.payload[0], "{\"ok\":true}") == 0);
    pthread_mutex_unlock(&s.mu);

    /* The message pointer is a key valid only during its callback. */
    sleep_ms(20);
    const pso_message *old = atomic_load(&g_saved_msg);
    CHECK(pso_message_topic(old) == NULL);
    CHECK_ERR("stale");
    char *payload = (char *)"x";
    CHECK_STATUS(pso_message_payload(old, &payload), PSO_ERR_STALE_HANDLE);
    CHECK(payload == NULL);
    CHECK(pso_message_is_request(old) == 0);
    CHECK_STATUS(pso_message_reply(old, "1"), PSO_ERR_STALE_HANDLE);
    CHECK(pso_message_sender(NULL) == NULL);
    CHECK_STATUS(pso_message_payload(NULL, &payload), PSO_ERR_NULL_POINTER);

    /* Per-topic order is kept; no sender gives NULL. */
    for (int i = 0; i < 100; i++) {
        char json[16];
        snprintf(json, sizeof json, "%d", i);
        CHECK_STATUS(pso_publish(o, "engine.build.done", json, NULL, NULL), PSO_OK);
    }
    CHECK(wait_at_least(&s.count, 101));
    pthread_mutex_lock(&s.mu);
    int in_order = 1;
    for (int i = 0; i < 100; i++) {
        char want[16];
        snprintf(want, sizeof want, "%d", i);
        in_order &= strcmp(s.payload[i + 1], want) == 0;
    }
    CHECK(in_order);
    CHECK(strcmp(s.sender[1], "(null)") == 0);
    pthread_mutex_unlock(&s.mu);

    /* A non-zero return is counted as an error; delivery goes on. */
    s.ret = 7;
    publish(o, "engine.build.done", "\"x\"", 1);
    publish(o, "engine.build.done", "\"y\"", 1);
    CHECK(wait_at_least(&s.count, 103));
    sleep_ms(20);
    char *status = NULL;
    CHECK_STATUS(pso_hub_subscriptions(o, &status), PSO_OK);
    CHECK(json_long_after(status, "engine.build.done", "errors") == 2);
    /* `delivered` counts the callbacks that succeeded. */
    CHECK(json_long_after(status, "engine.build.done", "delivered") == 101);
    CHECK_CONTAINS(status, "\"kind\":\"callback\"");
    pso_string_free(status);

    /* user_data is freed exactly once, by the unsubscribe. */
    CHECK(atomic_load(&s.freed) == 0);
    CHECK_STATUS(pso_unsubscribe(sub), PSO_OK);
    CHECK(wait_at_least(&s.freed, 1));
    CHECK_FREED(base + 1);
    CHECK_STATUS(pso_unsubscribe(sub), PSO_ERR_STALE_HANDLE);
    publish(o, "engine.build.done", "1", 0);

    /* A callback subscription still live at close is freed by the close. */
    sink s2;
    sink_init(&s2);
    pso_subscription sub2 = sub_cb(o, "a.>", NULL, &s2);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK_FREED_NOW(base + 2);
    CHECK(atomic_load(&s2.freed) == 1);
    /* The handle stays valid (the subscription has ended); unsubscribing
     * does not free again. */
    char *json = NULL;
    CHECK_STATUS(pso_subscription_recv(sub2, 0, &json), PSO_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pso_unsubscribe(sub2), PSO_OK);
    CHECK_STATUS(pso_unsubscribe(sub2), PSO_ERR_STALE_HANDLE);
    CHECK(atomic_load(&s2.freed) == 1);
    CHECK_STATUS(pso_publish(o, "a.b", "1", NULL, NULL), PSO_ERR_STALE_HANDLE);
    sink_destroy(&s);
    sink_destroy(&s2);
}

/* Unsubscribes from inside its own callback after the first message. */
typedef struct {
    pso_subscription sub;
    atomic_int calls;
    atomic_int freed;
} self_unsub;

static int32_t on_self_unsub(const pso_message *m, void *ud) {
    (void)m;
    self_unsub *u = ud;
    if (atomic_fetch_add(&u->calls, 1) == 0) {
        CHECK_STATUS(pso_unsubscribe(u->sub), PSO_OK);
        CHECK(atomic_load(&u->freed) == 0); /* not while the callback runs */
    }
    return 0;
}

static void self_unsub_free(void *ud) {
    atomic_fetch_add(&((self_unsub *)ud)->freed, 1);
}

static void test_unsubscribe_from_own_callback(void) {
    pso_orchestrator o = new_orch(2);
    self_unsub u = {0};
    pso_subscribe_options opts = {0};
    opts.capacity = 16;
    /* The handle is written before any message can arrive: nothing is
     * published until pso_subscribe returned. */
    CHECK_STATUS(pso_subscribe(o, "self.x", &opts, on_self_unsub, &u, self_unsub_free, &u.sub),
                 PSO_OK);
    publish(o, "self.x", "1", 1);
    CHECK(wait_at_least(&u.freed, 1));
    CHECK(atomic_load(&u.calls) == 1);
    publish(o, "self.x", "2", 0);
    CHECK_STATUS(pso_unsubscribe(u.sub), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK(atomic_load(&u.freed) == 1);
    CHECK(atomic_load(&u.calls) == 1);
}

static void test_wildcards_and_bad_patterns(void) {
    pso_orchestrator o = new_orch(1);
    pso_subscription star = sub_pull(o, "a.*", NULL);
    pso_subscription tail = sub_pull(o, "a.>", NULL);
    pso_subscription mid = sub_pull(o, "*.b.*", NULL);

    publish(o, "a.b", "1", 2);        /* a.*, a.> */
    publish(o, "a.b.c", "2", 2);      /* a.>, *.b.* */
    publish(o, "a", "3", 0);          /* > needs at least one token */
    publish(o, "x.b.y", "4", 1);      /* *.b.* */
    publish(o, "a.b.c.d", "5", 1);    /* a.> */
    CHECK(drain(star) == 1);
    CHECK(drain(tail) == 3);
    CHECK(drain(mid) == 2);

    /* Bad patterns: INVALID_ARGUMENT, and the message names the token. */
    struct {
        const char *pattern, *token;
    } bad[] = {
        {"a.>.b", "'>'"}, {"a..b", "token 1: ''"}, {"a.b*", "'b*'"},
        {"", "empty"},    {"a b.c", "'a b'"},    {"x.>>", "'>>'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pso_subscription s = {0};
        CHECK_STATUS(pso_subscribe_pull(o, bad[i].pattern, NULL, &s), PSO_ERR_INVALID_ARGUMENT);
        CHECK_ERR(bad[i].token);
        CHECK_ERR("invalid pattern");
        CHECK(s.id == 0);
        sink k;
        sink_init(&k);
        CHECK_STATUS(pso_subscribe(o, bad[i].pattern, NULL, on_msg, &k, sink_free, &s),
                     PSO_ERR_INVALID_ARGUMENT);
        sink_destroy(&k);
    }

    /* Bad topics: wildcards or empty tokens cannot be published to. */
    CHECK_STATUS(pso_publish(o, "a.*", "1", NULL, NULL), PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("invalid topic");
    CHECK_ERR("'*'");
    CHECK_STATUS(pso_publish(o, "a.>", "1", NULL, NULL), PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("'>'");
    CHECK_STATUS(pso_publish(o, "a..b", "1", NULL, NULL), PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("empty token");
    CHECK_STATUS(pso_publish(o, "a.b", "{nope", NULL, NULL), PSO_ERR_PARSE);
    CHECK_ERR("line 1");
    char *reply = NULL;
    CHECK_STATUS(pso_request(o, "a.*", "1", 100, &reply), PSO_ERR_INVALID_ARGUMENT);
    CHECK(reply == NULL);

    CHECK_STATUS(pso_unsubscribe(star), PSO_OK);
    CHECK_STATUS(pso_unsubscribe(tail), PSO_OK);
    CHECK_STATUS(pso_unsubscribe(mid), PSO_OK);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

typedef struct {
    pso_subscription sub;
    pso_status got;
    long waited_ms;
} recv_arg;

static void *recv_forever(void *p) {
    recv_arg *a = p;
    char *json = NULL;
    a->got = pso_subscription_recv(a->sub, PSO_WAIT_FOREVER, &json);
    pso_string_free(json);
    return NULL;
}

static void test_pull_subscriptions(void) {
    pso_orchestrator o = new_orch(1);
    pso_subscription s = sub_pull(o, "pull.x", NULL);
    char *json = (char *)"x";
    CHECK_STATUS(pso_subscription_recv(s, 0, &json), PSO_ERR_TIMEOUT);
    CHECK(json == NULL);
    CHECK_ERR("nothing queued");
    long t0 = now_ms();
    CHECK_STATUS(pso_subscription_recv(s, 30, &json), PSO_ERR_TIMEOUT);
    CHECK(now_ms() - t0 >= 25); /* it waited (a lower bound only) */

    CHECK_STATUS(pso_publish(o, "pull.x", "[1, \"two\", null]", "me", NULL), PSO_OK);
    CHECK_STATUS(pso_subscription_recv(s, 10000, &json), PSO_OK);
    CHECK_CONTAINS(json, "\"topic\":\"pull.x\"");
    CHECK_CONTAINS(json, "\"payload\":[1,\"two\",null]");
    CHECK_CONTAINS(json, "\"sender\":\"me\"");
    CHECK_CONTAINS(json, "\"is_request\":false");
    pso_string_free(json);
    char *status = NULL;
    CHECK_STATUS(pso_hub_subscriptions(o, &status), PSO_OK);
    CHECK_CONTAINS(status, "\"kind\":\"pull\"");
    pso_string_free(status);

    /* An unsubscribe on another thread wakes a receive waiting forever. */
    recv_arg a = {.sub = s, .got = PSO_OK};
    pthread_t th;
    pthread_create(&th, NULL, recv_forever, &a);
    sleep_ms(50);
    CHECK_STATUS(pso_unsubscribe(s), PSO_OK);
    pthread_join(th, NULL);
    /* CLOSED if it was waiting; STALE if it only started after the unsubscribe. */
    CHECK(a.got == PSO_ERR_CLOSED || a.got == PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_subscription_recv(s, 0, &json), PSO_ERR_STALE_HANDLE);

    /* Queued messages stay receivable after the orchestrator closed? No:
     * close ends the subscription; recv drains nothing and says CLOSED. */
    pso_subscription s2 = sub_pull(o, "pull.y", NULL);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK_STATUS(pso_subscription_recv(s2, 1000, &json), PSO_ERR_CLOSED);
    CHECK_STATUS(pso_unsubscribe(s2), PSO_OK);
}

static void test_queue_groups(void) {
    pso_orchestrator o = new_orch(1);
    pso_subscribe_options g = {0};
    g.group = "workers";
    pso_subscription m1 = sub_pull(o, "jobs.>", &g);
    pso_subscription m2 = sub_pull(o, "jobs.*", &g); /* another pattern, same group */
    pso_subscription m3 = sub_pull(o, "jobs.>", &g);
    pso_subscription all = sub_pull(o, "jobs.>", NULL);
    for (int i = 0; i < 30; i++) {
        publish(o, "jobs.run", "1", 2); /* one group member + the plain one */
    }
    int n1 = drain(m1), n2 = drain(m2), n3 = drain(m3);
    CHECK(n1 + n2 + n3 == 30);
    CHECK(drain(all) == 30);
    char *status = NULL;
    CHECK_STATUS(pso_hub_subscriptions(o, &status), PSO_OK);
    CHECK_CONTAINS(status, "\"group\":\"workers\"");
    pso_string_free(status);

    pso_subscribe_options empty = {0};
    empty.group = "";
    pso_subscription bad = {0};
    CHECK_STATUS(pso_subscribe_pull(o, "jobs.>", &empty, &bad), PSO_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK_STATUS(pso_unsubscribe(m1), PSO_OK);
    CHECK_STATUS(pso_unsubscribe(m2), PSO_OK);
    CHECK_STATUS(pso_unsubscribe(m3), PSO_OK);
    CHECK_STATUS(pso_unsubscribe(all), PSO_OK);
}

static void test_overflow_policies(void) {
    pso_orchestrator o = new_orch(1);
    pso_subscription alerts = sub_pull(o, "pso.alert.>", NULL);
    pso_subscribe_options opts = {0};
    opts.capacity = 2;

    /* drop oldest: the newest two stay. */
    opts.overflow = PSO_OVERFLOW_DROP_OLDEST;
    opts.owner = "oldie";
    pso_subscription oldest = sub_pull(o, "ov.oldest", &opts);
    for (int i = 0; i < 5; i++) {
        char json[16];
        snprintf(json, sizeof json, "%d", i);
        publish(o, "ov.oldest", json, 1);
    }
    recv_expect(oldest, "\"payload\":3");
    recv_expect(oldest, "\"payload\":4");
    CHECK(dropped_of(o, "ov.oldest") == 3);

    /* drop newest: the first two stay. */
    opts.overflow = PSO_OVERFLOW_DROP_NEWEST;
    opts.owner = "newbie";
    pso_subscription newest = sub_pull(o, "ov.newest", &opts);
    for (int i = 0; i < 5; i++) {
        char json[16];
        snprintf(json, sizeof json, "%d", i);
        CHECK_STATUS(pso_publish(o, "ov.newest", json, NULL, NULL), PSO_OK);
    }
    recv_expect(newest, "\"payload\":0");
    recv_expect(newest, "\"payload\":1");
    CHECK(drain(newest) == 0);
    CHECK(dropped_of(o, "ov.newest") == 3);

    /* error: the publisher is told; others still get it. */
    opts.overflow = PSO_OVERFLOW_ERROR;
    opts.owner = NULL;
    pso_subscription err = sub_pull(o, "ov.err", &opts);
    pso_subscription other = sub_pull(o, "ov.*", NULL);
    publish(o, "ov.err", "1", 2);
    publish(o, "ov.err", "2", 2);
    size_t delivered = 99;
    CHECK_STATUS(pso_publish(o, "ov.err", "3", NULL, &delivered), PSO_ERR_OVERFLOW);
    CHECK(delivered == 1);
    CHECK(dropped_of(o, "ov.err") == 1);
    CHECK(drain(err) == 2);
    CHECK(drain(other) == 3);

    /* block: waits up to its timeout, then refuses. */
    opts.overflow = PSO_OVERFLOW_BLOCK;
    opts.block_timeout_ms = 20;
    pso_subscription block = sub_pull(o, "ov.block", &opts);
    publish(o, "ov.block", "1", 2); /* `other` (ov.*) gets it too */
    publish(o, "ov.block", "2", 2);
    long t0 = now_ms();
    CHECK_STATUS(pso_publish(o, "ov.block", "3", NULL, NULL), PSO_ERR_OVERFLOW);
    CHECK(now_ms() - t0 >= 15);
    CHECK(dropped_of(o, "ov.block") == 1);
    char *status = NULL;
    CHECK_STATUS(pso_hub_subscriptions(o, &status), PSO_OK);
    CHECK_CONTAINS(status, "\"policy\":\"drop_oldest\"");
    CHECK_CONTAINS(status, "\"policy\":\"drop_newest\"");
    CHECK_CONTAINS(status, "\"policy\":\"error\"");
    CHECK_CONTAINS(status, "block(");
    pso_string_free(status);

    /* Drops raise alerts on pso.alert.<owner>.dropped. */
    int oldie = 0, newbie = 0;
    char *json = NULL;
    while (pso_subscription_recv(alerts, 500, &json) == PSO_OK) {
        oldie += strstr(json, "pso.alert.oldie.dropped") != NULL;
        newbie += strstr(json, "pso.alert.newbie.dropped") != NULL;
        pso_string_free(json);
    }
    CHECK(oldie >= 1);
    CHECK(newbie >= 1);

    /* Bad options. */
    pso_subscription bad = {0};
    pso_subscribe_options wrong = {0};
    wrong.overflow = 99;
    CHECK_STATUS(pso_subscribe_pull(o, "x", &wrong, &bad), PSO_ERR_INVALID_ARGUMENT);
    CHECK_ERR("99");
    wrong.overflow = PSO_OVERFLOW_DROP_NEWEST;
    wrong.block_timeout_ms = 5;
    CHECK_STATUS(pso_subscribe_pull(o, "x", &wrong, &bad), PSO_ERR_INVALID_ARGUMENT);
    pso_options bad_opts = {0};
    bad_opts.hub_overflow = 42;
    pso_orchestrator none = {0};
    CHECK_STATUS(pso_orchestrator_new(&bad_opts, &none), PSO_ERR_INVALID_ARGUMENT);
    CHECK(none.id == 0);
    bad_opts.hub_overflow = PSO_OVERFLOW_ERROR;
    bad_opts.hub_block_timeout_ms = 10;
    CHECK_STATUS(pso_orchestrator_new(&bad_opts, &none), PSO_ERR_INVALID_ARGUMENT);

    /* The orchestrator's default policy and capacity apply. */
    pso_options def = {0};
    def.workers = 1;
    def.hub_queue_capacity = 3;
    def.hub_overflow = PSO_OVERFLOW_DROP_NEWEST;
    pso_orchestrator o2 = orch_opts(&def);
    pso_subscription d = sub_pull(o2, "d", NULL);
    for (int i = 0; i < 5; i++) {
        publish(o2, "d", "1", i < 3 ? 1 : 0); /* a dropped newest was not queued */
    }
    CHECK(dropped_of(o2, "d") == 2);
    CHECK(drain(d) == 3);
    CHECK_STATUS(pso_orchestrator_close(o2), PSO_OK);

    pso_subscription subs[] = {alerts, oldest, newest, err, other, block, d};
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        CHECK_STATUS(pso_unsubscribe(subs[i]), PSO_OK);
    }
}

typedef struct {
    pso_orchestrator o;
    pso_status got;
    char *reply;
} request_arg;

static void *request_thread(void *p) {
    request_arg *a = p;
    a->got = pso_request(a->o, "pull.req", "\"q\"", 20000, &a->reply);
    return NULL;
}

static void test_request_reply(void) {
    int base = atomic_load(&g_freed);
    pso_orchestrator o = new_orch(2);
    char *reply = (char *)"x";

    /* Nobody listens: NO_RESPONDERS at once, distinct from a timeout. */
    CHECK_STATUS(pso_request(o, "svc.echo", "1", PSO_WAIT_FOREVER, &reply), PSO_ERR_NO_RESPONDERS);
    CHECK(reply == NULL);
    CHECK_ERR("svc.echo");
    CHECK_STATUS(pso_request_many(o, "svc.echo", "1", 1000, 0, 0, &reply), PSO_ERR_NO_RESPONDERS);

    sink a, b, c, mute;
    sink_init(&a);
    sink_init(&b);
    sink_init(&c);
    sink_init(&mute);
    a.reply = b.reply = c.reply = true;
    strcpy(a.tag, "A");
    strcpy(b.tag, "B");
    strcpy(c.tag, "C");
    pso_subscription sa = sub_cb(o, "svc.echo", NULL, &a);
    CHECK_STATUS(pso_request(o, "svc.echo", "{\"n\": 1}", 10000, &reply), PSO_OK);
    CHECK_CONTAINS(reply, "\"payload\":\"A\"");
    CHECK_CONTAINS(reply, "\"is_request\":false");
    pso_string_free(reply);
    pthread_mutex_lock(&a.mu);
    CHECK(strcmp(a.payload[0], "{\"n\":1}") == 0);
    pthread_mutex_unlock(&a.mu);
    CHECK(atomic_load(&a.requests) == 1);

    /* request_many gathers every reply up to max. */
    pso_subscription sb = sub_cb(o, "svc.*", NULL, &b);
    pso_subscription sc = sub_cb(o, "svc.>", NULL, &c);
    CHECK_STATUS(pso_request_many(o, "svc.echo", "2", 20000, 3, 0, &reply), PSO_OK);
    CHECK_CONTAINS(reply, "\"payload\":\"A\"");
    CHECK_CONTAINS(reply, "\"payload\":\"B\"");
    CHECK_CONTAINS(reply, "\"payload\":\"C\"");
    CHECK(reply != NULL && reply[0] == '[');
    pso_string_free(reply);
    /* max 1 stops at the first. */
    CHECK_STATUS(pso_request_many(o, "svc.echo", "3", 20000, 1, 0, &reply), PSO_OK);
    CHECK(occurrences(reply, "\"payload\"") == 1);
    pso_string_free(reply);
    CHECK_STATUS(pso_unsubscribe(sa), PSO_OK);
    CHECK_STATUS(pso_unsubscribe(sb), PSO_OK);
    CHECK_STATUS(pso_unsubscribe(sc), PSO_OK);

    /* A callback that returns without replying drops the request: the
     * requester gets NO_RESPONDERS as soon as it did, not a timeout. */
    pso_subscription sm = sub_cb(o, "svc.mute", NULL, &mute);
    CHECK_STATUS(pso_request(o, "svc.mute", "1", 20000, &reply), PSO_ERR_NO_RESPONDERS);
    CHECK_ERR("without a reply");
    CHECK(reply == NULL);
    CHECK(atomic_load(&mute.requests) == 1);
    CHECK_STATUS(pso_unsubscribe(sm), PSO_OK);

    /* A receiver that holds the request without answering (a pull
     * subscription nobody reads): TIMEOUT, not NO_RESPONDERS. */
    pso_subscription held = sub_pull(o, "svc.held", NULL);
    CHECK_STATUS(pso_request(o, "svc.held", "1", 50, &reply), PSO_ERR_TIMEOUT);
    CHECK(reply == NULL);
    /* request_many reaching its timeout is not an error: an empty array. */
    CHECK_STATUS(pso_request_many(o, "svc.held", "1", 50, 0, 0, &reply), PSO_OK);
    CHECK(reply != NULL && strcmp(reply, "[]") == 0);
    pso_string_free(reply);
    CHECK_STATUS(pso_unsubscribe(held), PSO_OK);

    /* A request taken by a pull receiver and dropped unanswered gives
     * NO_RESPONDERS to the requester. */
    pso_subscription pull = sub_pull(o, "pull.req", NULL);
    request_arg ra = {.o = o, .got = PSO_OK, .reply = NULL};
    pthread_t th;
    pthread_create(&th, NULL, request_thread, &ra);
    char *json = NULL;
    CHECK_STATUS(pso_subscription_recv(pull, 20000, &json), PSO_OK);
    CHECK_CONTAINS(json, "\"is_request\":true");
    pso_string_free(json);
    pthread_join(th, NULL);
    CHECK(ra.got == PSO_ERR_NO_RESPONDERS);
    CHECK(ra.reply == NULL);
    CHECK_STATUS(pso_unsubscribe(pull), PSO_OK);

    CHECK_STATUS(pso_request(o, "svc.echo", "{bad", 100, &reply), PSO_ERR_PARSE);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK_FREED_NOW(base + 4);
    CHECK_STATUS(pso_request(o, "svc.echo", "1", 100, &reply), PSO_ERR_STALE_HANDLE);
    sink_destroy(&a);
    sink_destroy(&b);
    sink_destroy(&c);
    sink_destroy(&mute);
}

/* ----------------------------------------------------- direct and meshes */

typedef struct {
    pso_direct_end end;
    pso_status got;
} direct_arg;

static void *direct_recv_forever(void *p) {
    direct_arg *a = p;
    char *json = NULL;
    a->got = pso_direct_recv(a->end, PSO_WAIT_FOREVER, &json);
    pso_string_free(json);
    return NULL;
}

static void test_direct_channels(void) {
    pso_options opts = {0};
    opts.workers = 1;
    opts.hub_direct_capacity = 2;
    pso_orchestrator o = orch_opts(&opts);
    CHECK_STATUS(pso_direct_open(o, "paes", "ppo", "hot pair"), PSO_OK);
    CHECK_STATUS(pso_direct_open(o, "ppo", "paes", NULL), PSO_ERR_ALREADY_EXISTS);
    CHECK_STATUS(pso_direct_open(o, "x", "x", NULL), PSO_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pso_direct_open(o, "", "x", NULL), PSO_ERR_INVALID_ARGUMENT);

    pso_direct_end a = {0}, b = {0}, again = {0};
    CHECK_STATUS(pso_direct_endpoint(o, "paes", "ppo", &a), PSO_OK);
    CHECK_STATUS(pso_direct_endpoint(o, "ppo", "paes", &b), PSO_OK);
    CHECK_STATUS(pso_direct_endpoint(o, "paes", "ppo", &again), PSO_ERR_ALREADY_EXISTS);
    CHECK(again.id == 0);
    CHECK_STATUS(pso_direct_endpoint(o, "paes", "nobody", &again), PSO_ERR_NOT_FOUND);

    char *json = (char *)"x";
    CHECK_STATUS(pso_direct_recv(b, 0, &json), PSO_ERR_TIMEOUT);
    CHECK(json == NULL);
    CHECK_STATUS(pso_direct_send(a, "{\"x\": [1, 2]}", 0), PSO_OK);
    CHECK_STATUS(pso_direct_send(a, "2", 0), PSO_OK);
    CHECK_STATUS(pso_direct_send(a, "3", 0), PSO_ERR_OVERFLOW);    /* full, no wait */
    CHECK_STATUS(pso_direct_send(a, "3", 20), PSO_ERR_TIMEOUT);    /* full, waited */
    CHECK_STATUS(pso_direct_send(a, "{bad", 0), PSO_ERR_PARSE);
    CHECK_STATUS(pso_direct_recv(b, 10000, &json), PSO_OK);
    CHECK(json != NULL && strcmp(json, "{\"x\":[1,2]}") == 0);
    pso_string_free(json);
    /* Both directions. */
    CHECK_STATUS(pso_direct_send(b, "\"back\"", 1000), PSO_OK);
    CHECK_STATUS(pso_direct_recv(a, 10000, &json), PSO_OK);
    CHECK(json != NULL && strcmp(json, "\"back\"") == 0);
    pso_string_free(json);

    char *status = NULL;
    CHECK_STATUS(pso_coordination_status(o, &status), PSO_OK);
    CHECK_CONTAINS(status, "\"mode\":\"direct\"");
    CHECK_CONTAINS(status, "\"reason\":\"hot pair\"");
    CHECK_CONTAINS(status, "\"origin\":\"declared\"");
    pso_string_free(status);

    /* Close: sends refused, receives drain then say CLOSED. */
    CHECK_STATUS(pso_direct_close(o, "ppo", "paes", "done"), PSO_OK);
    CHECK_STATUS(pso_direct_close(o, "ppo", "paes", "done"), PSO_ERR_NOT_FOUND);
    CHECK_STATUS(pso_direct_send(a, "4", 0), PSO_ERR_CLOSED);
    CHECK_STATUS(pso_direct_recv(b, 1000, &json), PSO_OK); /* "2" was still queued */
    CHECK(json != NULL && strcmp(json, "2") == 0);
    pso_string_free(json);
    CHECK_STATUS(pso_direct_recv(b, 1000, &json), PSO_ERR_CLOSED);
    CHECK_STATUS(pso_direct_end_free(a), PSO_OK);
    CHECK_STATUS(pso_direct_end_free(a), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_direct_send(a, "1", 0), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_direct_end_free(b), PSO_OK);

    /* Freeing one end closes the channel; an end freed under a receive
     * blocked on another thread wakes it with STALE_HANDLE. */
    CHECK_STATUS(pso_direct_open(o, "p", "q", NULL), PSO_OK);
    pso_direct_end p = {0}, q = {0};
    CHECK_STATUS(pso_direct_endpoint(o, "p", "q", &p), PSO_OK);
    CHECK_STATUS(pso_direct_endpoint(o, "q", "p", &q), PSO_OK);
    direct_arg da = {.end = q, .got = PSO_OK};
    pthread_t th;
    pthread_create(&th, NULL, direct_recv_forever, &da);
    sleep_ms(50);
    CHECK_STATUS(pso_direct_end_free(q), PSO_OK);
    pthread_join(th, NULL);
    CHECK(da.got == PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_direct_send(p, "1", 1000), PSO_ERR_CLOSED);

    /* A closed orchestrator: the end stays valid, the channel is closed. */
    CHECK_STATUS(pso_direct_open(o, "r", "s", NULL), PSO_OK);
    pso_direct_end r = {0};
    CHECK_STATUS(pso_direct_endpoint(o, "r", "s", &r), PSO_OK);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK_STATUS(pso_direct_send(r, "1", 0), PSO_ERR_CLOSED);
    CHECK_STATUS(pso_direct_end_free(r), PSO_OK);
    CHECK_STATUS(pso_direct_end_free(p), PSO_OK);
    CHECK_STATUS(pso_direct_open(o, "r", "s", NULL), PSO_ERR_STALE_HANDLE);
}

static void test_meshes(void) {
    pso_orchestrator o = new_orch(1);
    pso_mesh m = {0};
    CHECK_STATUS(pso_mesh_begin(o, "[\"x\", \"y\", \"z\"]", &m), PSO_OK);
    pso_direct_end xz = {0}, zx = {0};
    CHECK_STATUS(pso_direct_endpoint(o, "x", "z", &xz), PSO_OK);
    CHECK_STATUS(pso_direct_endpoint(o, "z", "x", &zx), PSO_OK);
    CHECK_STATUS(pso_direct_send(xz, "\"hi\"", 1000), PSO_OK);
    char *json = NULL;
    CHECK_STATUS(pso_direct_recv(zx, 10000, &json), PSO_OK);
    CHECK(json != NULL && strcmp(json, "\"hi\"") == 0);
    pso_string_free(json);
    char *status = NULL;
    CHECK_STATUS(pso_coordination_status(o, &status), PSO_OK);
    CHECK_CONTAINS(status, "\"mode\":\"mesh\"");
    CHECK_CONTAINS(status, "\"origin\":\"mesh\"");
    CHECK_CONTAINS(status, "\"systems\":[\"x\",\"y\",\"z\"]");
    pso_string_free(status);

    CHECK_STATUS(pso_mesh_end(m), PSO_OK);
    CHECK_STATUS(pso_mesh_end(m), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_direct_send(xz, "1", 0), PSO_ERR_CLOSED);
    CHECK_STATUS(pso_direct_recv(zx, 100, &json), PSO_ERR_CLOSED);
    CHECK_STATUS(pso_coordination_status(o, &status), PSO_OK);
    CHECK_CONTAINS(status, "\"mode\":\"hierarchical\"");
    CHECK_CONTAINS(status, "\"meshes\":[]");
    pso_string_free(status);
    CHECK_STATUS(pso_direct_end_free(xz), PSO_OK);
    CHECK_STATUS(pso_direct_end_free(zx), PSO_OK);

    pso_mesh bad = {0};
    CHECK_STATUS(pso_mesh_begin(o, "[\"x\"", &bad), PSO_ERR_PARSE);
    CHECK_ERR("line 1");
    CHECK_STATUS(pso_mesh_begin(o, "[\"x\"]", &bad), PSO_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pso_mesh_begin(o, "[\"x\", \"x\"]", &bad), PSO_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pso_mesh_begin(o, "[1, 2]", &bad), PSO_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pso_mesh_begin(o, "{\"a\": 1}", &bad), PSO_ERR_INVALID_ARGUMENT);
    CHECK(bad.id == 0);

    /* A mesh still open at close: ending it afterwards is fine. */
    pso_mesh m2 = {0};
    CHECK_STATUS(pso_mesh_begin(o, "[\"a\", \"b\"]", &m2), PSO_OK);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK_STATUS(pso_mesh_end(m2), PSO_OK);
    CHECK_STATUS(pso_mesh_begin(o, "[\"a\", \"b\"]", &m2), PSO_ERR_STALE_HANDLE);
}

static void test_promotion_by_rate(void) {
    pso_options opts = {0};
    opts.workers = 1;
    opts.hub_promote_threshold = 1e-6; /* any traffic is hot */
    opts.hub_demote_threshold = 1e-12;
    pso_orchestrator o = orch_opts(&opts);
    CHECK_STATUS(pso_register_system(o, "prod", NULL, NULL), PSO_OK);
    CHECK_STATUS(pso_register_system(o, "cons", NULL, NULL), PSO_OK);
    size_t changed = 99;
    CHECK_STATUS(pso_promote_pairs(o, &changed), PSO_OK);
    CHECK(changed == 0);
    pso_subscribe_options so = {0};
    so.owner = "cons";
    pso_subscription s = sub_pull(o, "feed.>", &so);
    for (int i = 0; i < 50; i++) {
        CHECK_STATUS(pso_publish(o, "feed.tick", "1", "prod", NULL), PSO_OK);
    }
    CHECK(drain(s) == 50);
    sleep_ms(20); /* rates are sampled at most once per millisecond */
    char *status = NULL;
    CHECK_STATUS(pso_coordination_status(o, &status), PSO_OK);
    CHECK_CONTAINS(status, "\"from\":\"prod\"");
    CHECK_CONTAINS(status, "\"to\":\"cons\"");
    pso_string_free(status);
    CHECK_STATUS(pso_promote_pairs(o, &changed), PSO_OK);
    CHECK(changed == 1);
    CHECK_STATUS(pso_promote_pairs(o, NULL), PSO_OK);
    CHECK_STATUS(pso_coordination_status(o, &status), PSO_OK);
    CHECK_CONTAINS(status, "\"origin\":\"promoted\"");
    CHECK_CONTAINS(status, "\"changes\":[{");
    pso_string_free(status);
    pso_direct_end e = {0};
    CHECK_STATUS(pso_direct_endpoint(o, "prod", "cons", &e), PSO_OK);
    CHECK_STATUS(pso_direct_end_free(e), PSO_OK);
    CHECK_STATUS(pso_set_auto_promote(o, 50), PSO_OK);
    CHECK_STATUS(pso_coordination_status(o, &status), PSO_OK);
    CHECK(strstr(status, "\"auto_promote_every\":null") == NULL);
    pso_string_free(status);
    CHECK_STATUS(pso_set_auto_promote(o, 0), PSO_OK);
    CHECK_STATUS(pso_unsubscribe(s), PSO_OK);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK_STATUS(pso_promote_pairs(o, &changed), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_set_auto_promote(o, 1), PSO_ERR_STALE_HANDLE);
}

/* ---------------------------------------------------- minimalist and pins */

static int32_t op_ok(void *ud, const pso_step_ctx *ctx) {
    (void)ud;
    return pso_step_set_output(ctx, "\"done\"") == PSO_OK ? 0 : 1;
}

static bool is_state(pso_orchestrator o, const char *name, const char *state) {
    char *json = NULL;
    if (pso_status_of(o, name, &json) != PSO_OK) {
        return false;
    }
    char needle[64];
    snprintf(needle, sizeof needle, "\"state\":\"%s\"", state);
    bool yes = strstr(json, needle) != NULL;
    pso_string_free(json);
    return yes;
}

static void test_run_minimal_and_pinning(void) {
    pso_orchestrator o = new_orch(2);
    const char *names[] = {"db", "cache", "api", "unused", "pinned"};
    for (size_t i = 0; i < 5; i++) {
        CHECK_STATUS(pso_register_system(o, names[i], NULL, NULL), PSO_OK);
    }
    CHECK_STATUS(pso_connect(o, "api", "requires", "db"), PSO_OK);
    CHECK_STATUS(pso_connect(o, "api", "wants", "cache"), PSO_OK);
    CHECK_STATUS(pso_set_operation(o, "api", "serve", op_ok, NULL, NULL), PSO_OK);
    pso_workflow wf = {0};
    CHECK_STATUS(pso_workflow_load_str(o, "name = \"task\"\n[[steps]]\nname = \"s\"\nsystem = \"api\"\n"
                                          "op = \"serve\"\n",
                                       PSO_FORMAT_TOML, &wf),
                 PSO_OK);
    pso_run run = {0};
    CHECK_STATUS(pso_run_minimal(o, wf, NULL, NULL, &run), PSO_OK);
    char *result = NULL;
    CHECK_STATUS(pso_run_wait(run, &result), PSO_OK);
    CHECK_CONTAINS(result, "\"state\":\"succeeded\"");
    pso_string_free(result);
    CHECK_STATUS(pso_run_free(run), PSO_OK);
    CHECK(is_state(o, "api", "Active"));
    CHECK(is_state(o, "db", "Active"));
    CHECK(is_state(o, "cache", "Active"));
    CHECK(!is_state(o, "unused", "Active"));

    /* Pinned systems survive idle deactivation. */
    CHECK_STATUS(pso_activate_system(o, "pinned", NULL), PSO_OK);
    CHECK_STATUS(pso_pin_system(o, "pinned", true), PSO_OK);
    CHECK_STATUS(pso_pin_system(o, "ghost", true), PSO_ERR_NOT_FOUND);
    char *json = (char *)"x";
    CHECK_STATUS(pso_deactivate_idle(o, &json), PSO_OK); /* off: nothing */
    CHECK(json != NULL && strcmp(json, "[]") == 0);
    pso_string_free(json);
    CHECK_STATUS(pso_set_idle_timeout(o, 30), PSO_OK);
    char *status = NULL;
    CHECK_STATUS(pso_coordination_status(o, &status), PSO_OK);
    CHECK_CONTAINS(status, "\"mode\":\"minimalist\"");
    pso_string_free(status);
    bool gone = false;
    for (int i = 0; i < 1000 && !gone; i++) {
        gone = is_state(o, "api", "Inactive") && is_state(o, "db", "Inactive") &&
               is_state(o, "cache", "Inactive");
        if (!gone) {
            sleep_ms(10);
        }
    }
    CHECK(gone);
    CHECK_STATUS(pso_deactivate_idle(o, &json), PSO_OK);
    pso_string_free(json);
    CHECK(is_state(o, "pinned", "Active"));
    CHECK_STATUS(pso_coordination_status(o, &status), PSO_OK);
    CHECK_CONTAINS(status, "\"deactivated\":[{");
    CHECK_CONTAINS(status, "\"system\":\"api\"");
    pso_string_free(status);

    /* Unpinned, it goes too. */
    CHECK_STATUS(pso_pin_system(o, "pinned", false), PSO_OK);
    bool pinned_gone = false;
    for (int i = 0; i < 1000 && !pinned_gone; i++) {
        pinned_gone = is_state(o, "pinned", "Inactive");
        if (!pinned_gone) {
            sleep_ms(10);
        }
    }
    CHECK(pinned_gone);
    CHECK_STATUS(pso_set_idle_timeout(o, 0), PSO_OK);
    CHECK_STATUS(pso_coordination_status(o, &status), PSO_OK);
    CHECK(strstr(status, "\"mode\":\"minimalist\"") == NULL);
    pso_string_free(status);

    /* A freed workflow cannot be run. */
    CHECK_STATUS(pso_workflow_free(wf), PSO_OK);
    CHECK_STATUS(pso_run_minimal(o, wf, NULL, NULL, &run), PSO_ERR_STALE_HANDLE);
    CHECK(run.id == 0);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK_STATUS(pso_set_idle_timeout(o, 1), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_pin_system(o, "db", true), PSO_ERR_STALE_HANDLE);
}

/* -------------------------------------------- NULL and invalid UTF-8 args */

static void test_null_and_utf8_arguments(void) {
    pso_orchestrator o = new_orch(1);
    sink k;
    sink_init(&k);
    pso_subscription s = {0};
    size_t n = 0;
    char *json = NULL;

    CHECK_STATUS(pso_publish(o, NULL, "1", NULL, &n), PSO_ERR_NULL_POINTER);
    CHECK_ERR("'topic'");
    CHECK_STATUS(pso_publish(o, "a", NULL, NULL, &n), PSO_ERR_NULL_POINTER);
    CHECK_ERR("'json'");
    CHECK_STATUS(pso_publish(o, BAD_UTF8, "1", NULL, &n), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("topic");
    CHECK_STATUS(pso_publish(o, "a", BAD_UTF8, NULL, &n), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_publish(o, "a", "1", BAD_UTF8, &n), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("sender");

    CHECK_STATUS(pso_subscribe(o, NULL, NULL, on_msg, &k, sink_free, &s), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_subscribe(o, "a", NULL, NULL, &k, sink_free, &s), PSO_ERR_NULL_POINTER);
    CHECK_ERR("'func'");
    CHECK_STATUS(pso_subscribe(o, "a", NULL, on_msg, &k, sink_free, NULL), PSO_ERR_NULL_POINTER);
    CHECK_ERR("'out'");
    CHECK_STATUS(pso_subscribe(o, BAD_UTF8, NULL, on_msg, &k, sink_free, &s), PSO_ERR_INVALID_UTF8);
    pso_subscribe_options bad = {0};
    bad.group = BAD_UTF8;
    CHECK_STATUS(pso_subscribe(o, "a", &bad, on_msg, &k, sink_free, &s), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("group");
    bad.group = NULL;
    bad.owner = BAD_UTF8;
    CHECK_STATUS(pso_subscribe_pull(o, "a", &bad, &s), PSO_ERR_INVALID_UTF8);
    CHECK_ERR("owner");
    CHECK_STATUS(pso_subscribe_pull(o, NULL, NULL, &s), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_subscribe_pull(o, "a", NULL, NULL), PSO_ERR_NULL_POINTER);
    CHECK(atomic_load(&k.freed) == 0); /* refused user_data is never freed */

    pso_subscription p = sub_pull(o, "a", NULL);
    CHECK_STATUS(pso_subscription_recv(p, 0, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_request(o, NULL, "1", 10, &json), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_request(o, "a", NULL, 10, &json), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_request(o, "a", "1", 10, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_request(o, BAD_UTF8, "1", 10, &json), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_request(o, "a", BAD_UTF8, 10, &json), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_request_many(o, NULL, "1", 10, 0, 0, &json), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_request_many(o, "a", "1", 10, 0, 0, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_request_many(o, "a", BAD_UTF8, 10, 0, 0, &json), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_hub_subscriptions(o, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_coordination_status(o, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_deactivate_idle(o, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_pin_system(o, NULL, true), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_pin_system(o, BAD_UTF8, true), PSO_ERR_INVALID_UTF8);
    CHECK(pso_message_topic(NULL) == NULL);
    CHECK_ERR("'m'");
    CHECK(pso_message_is_request(NULL) == 0);
    CHECK_STATUS(pso_message_reply(NULL, "1"), PSO_ERR_NULL_POINTER);

    CHECK_STATUS(pso_direct_open(o, NULL, "b", NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_direct_open(o, "a", NULL, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_direct_open(o, BAD_UTF8, "b", NULL), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_direct_open(o, "a", "b", BAD_UTF8), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_direct_close(o, NULL, "b", NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_direct_close(o, "a", BAD_UTF8, NULL), PSO_ERR_INVALID_UTF8);
    pso_direct_end e = {0};
    CHECK_STATUS(pso_direct_endpoint(o, NULL, "b", &e), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_direct_endpoint(o, "a", NULL, &e), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_direct_endpoint(o, "a", "b", NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_direct_endpoint(o, BAD_UTF8, "b", &e), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_direct_open(o, "a", "b", NULL), PSO_OK);
    CHECK_STATUS(pso_direct_endpoint(o, "a", "b", &e), PSO_OK);
    CHECK_STATUS(pso_direct_send(e, NULL, 0), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_direct_send(e, BAD_UTF8, 0), PSO_ERR_INVALID_UTF8);
    CHECK_STATUS(pso_direct_recv(e, 0, NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_direct_end_free(e), PSO_OK);
    pso_mesh m = {0};
    CHECK_STATUS(pso_mesh_begin(o, NULL, &m), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_mesh_begin(o, "[\"a\",\"b\"]", NULL), PSO_ERR_NULL_POINTER);
    CHECK_STATUS(pso_mesh_begin(o, BAD_UTF8, &m), PSO_ERR_INVALID_UTF8);

    /* Never-issued handles are stale, not undefined behaviour. */
    pso_subscription forged = {0x7777777777ull};
    CHECK_STATUS(pso_unsubscribe(forged), PSO_ERR_STALE_HANDLE);
    CHECK_STATUS(pso_subscription_recv(forged, 0, &json), PSO_ERR_STALE_HANDLE);
    pso_direct_end forged_end = {0x7777777777ull};
    CHECK_STATUS(pso_direct_end_free(forged_end), PSO_ERR_STALE_HANDLE);
    pso_mesh forged_mesh = {0};
    CHECK_STATUS(pso_mesh_end(forged_mesh), PSO_ERR_STALE_HANDLE);

    CHECK_STATUS(pso_unsubscribe(p), PSO_OK);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
    CHECK(atomic_load(&k.freed) == 0);
    sink_destroy(&k);
}

/* --------------------------------------------------- callbacks in parallel */

typedef struct {
    pso_orchestrator o;
    int id;
} pub_arg;

static void *publisher(void *p) {
    pub_arg *a = p;
    char topic[32];
    snprintf(topic, sizeof topic, "par.t%d", a->id);
    for (int i = 0; i < 200; i++) {
        char json[16];
        snprintf(json, sizeof json, "%d", i);
        CHECK_STATUS(pso_publish(a->o, topic, json, NULL, NULL), PSO_OK);
    }
    return NULL;
}

/* Counts and checks per-topic order of par.t<k> payloads. */
typedef struct {
    atomic_int count;
    int next[4];
    atomic_int out_of_order;
} order_sink;

static int32_t on_ordered(const pso_message *m, void *ud) {
    order_sink *s = ud;
    const char *topic = pso_message_topic(m);
    char *payload = NULL;
    if (topic == NULL || pso_message_payload(m, &payload) != PSO_OK) {
        atomic_fetch_add(&s->out_of_order, 1);
        return 1;
    }
    int k = topic[strlen(topic) - 1] - '0';
    int v = atoi(payload);
    pso_string_free(payload);
    if (k < 0 || k > 3 || s->next[k] != v) {
        atomic_fetch_add(&s->out_of_order, 1);
    } else {
        s->next[k]++; /* one callback at a time per subscription */
    }
    atomic_fetch_add(&s->count, 1);
    return 0;
}

static void test_publishers_on_threads_keep_per_topic_order(void) {
    pso_orchestrator o = new_orch(2);
    order_sink s = {0};
    pso_subscribe_options opts = {0};
    opts.capacity = 64; /* block policy: publishers wait, nothing is lost */
    pso_subscription sub = {0};
    CHECK_STATUS(pso_subscribe(o, "par.*", &opts, on_ordered, &s, NULL, &sub), PSO_OK);
    pthread_t th[4];
    pub_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (pub_arg){.o = o, .id = i};
        pthread_create(&th[i], NULL, publisher, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
    }
    CHECK(wait_at_least(&s.count, 800));
    CHECK(atomic_load(&s.out_of_order) == 0);
    CHECK(dropped_of(o, "par.*") == 0);
    CHECK_STATUS(pso_unsubscribe(sub), PSO_OK);
    CHECK_STATUS(pso_orchestrator_close(o), PSO_OK);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"publish_subscribe_callbacks", test_publish_subscribe_callbacks},
        {"unsubscribe_from_own_callback", test_unsubscribe_from_own_callback},
        {"wildcards_and_bad_patterns", test_wildcards_and_bad_patterns},
        {"pull_subscriptions", test_pull_subscriptions},
        {"queue_groups", test_queue_groups},
        {"overflow_policies", test_overflow_policies},
        {"request_reply", test_request_reply},
        {"direct_channels", test_direct_channels},
        {"meshes", test_meshes},
        {"promotion_by_rate", test_promotion_by_rate},
        {"run_minimal_and_pinning", test_run_minimal_and_pinning},
        {"null_and_utf8_arguments", test_null_and_utf8_arguments},
        {"publishers_on_threads_keep_per_topic_order",
         test_publishers_on_threads_keep_per_topic_order},
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
