/* cap_bench.c - nanoseconds per lk_cap_actions() call, the check the broker
 * runs on every publish and subscribe. Goal: well under 100 ns for
 * realistic capabilities (a handful to dozens of patterns).
 *
 * Usage: cap_bench [calls-per-case]   (default 2000000)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "latchkey/cap.h"

#define GOAL_NS 100.0
#define CHANNELS 4

typedef struct bench_case {
    const char *kind;
    const char *channels[CHANNELS];
} bench_case;

static volatile uint32_t sink;

/* Thread CPU time, so that other processes on a busy machine do not count. */
static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Runs `calls` lookups rotating over the case's channels; returns ns/call. */
static double run(const lk_cap *cap, const bench_case *bc, long calls)
{
    size_t lens[CHANNELS];
    for (int i = 0; i < CHANNELS; i++)
        lens[i] = strlen(bc->channels[i]);
    uint32_t acc = 0;
    for (long i = 0; i < calls / 10; i++) /* warm up */
        acc += lk_cap_actions(cap, bc->channels[i & 3], lens[i & 3]);
    double t0 = now_ns();
    for (long i = 0; i < calls; i++)
        acc += lk_cap_actions(cap, bc->channels[i & 3], lens[i & 3]);
    double t1 = now_ns();
    sink = acc;
    return (t1 - t0) / (double)calls;
}

/* A 32-pattern capability: 16 exact rooms and 16 team prefixes (or 32
 * prefixes), all sharing their first 9 bytes so the word filter cannot
 * help. Each grants a single action, so lookups cannot stop early. */
static char *cap32_json(int prefixes_only)
{
    size_t cap = 8192, o = 0;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    o += (size_t)snprintf(s + o, cap - o, "{");
    for (int i = 0; i < 32; i++) {
        const char *act = i % 2 ? "realtime:publish" : "realtime:subscribe";
        if (prefixes_only || i >= 16)
            o += (size_t)snprintf(s + o, cap - o, "%s\"org:acme:team-%02d:*\":[\"%s\"]",
                                  i ? "," : "", i, act);
        else
            o += (size_t)snprintf(s + o, cap - o, "%s\"org:acme:room-%02d\":[\"%s\"]",
                                  i ? "," : "", i, act);
    }
    snprintf(s + o, cap - o, "}");
    return s;
}

int main(int argc, char **argv)
{
    long calls = argc > 1 ? strtol(argv[1], NULL, 10) : 2000000;
    if (calls < 10)
        calls = 10;

    static const char cap3[] =
        "{\"chat:*\":[\"realtime:subscribe\",\"realtime:publish\"],"
        "\"news\":[\"realtime:subscribe\"],"
        "\"user:42:inbox\":[\"realtime:subscribe\"]}";
    static const bench_case cases3[] = {
        {"exact", {"news", "user:42:inbox", "news", "user:42:inbox"}},
        {"prefix", {"chat:lobby", "chat:room:1234", "chat:", "chat:support-desk"}},
        {"miss", {"chats", "user:43:inbox", "alerts:eu-west-1", "n"}},
    };
    static const bench_case cases32[] = {
        {"exact", {"org:acme:room-00", "org:acme:room-07", "org:acme:room-12",
                   "org:acme:room-15"}},
        {"prefix", {"org:acme:team-16:general", "org:acme:team-23:x",
                    "org:acme:team-31:random:thread-998", "org:acme:team-20:"}},
        {"miss", {"org:acme:room-99", "org:other:team-16:x", "chat:lobby",
                  "org:acme:team-7:general"}},
    };
    static const bench_case cases32p[] = {
        {"prefix", {"org:acme:team-00:general", "org:acme:team-15:x",
                    "org:acme:team-31:random:thread-998", "org:acme:team-20:"}},
        {"miss", {"org:acme:room-99", "org:other:team-16:x", "chat:lobby",
                  "org:acme:team-7:general"}},
    };

    struct { const char *name; char *json; const bench_case *cases; size_t n; } caps[] = {
        {"3 patterns", NULL, cases3, 3},
        {"32 patterns (16 exact, 16 prefix)", cap32_json(0), cases32, 3},
        {"32 prefix patterns", cap32_json(1), cases32p, 2},
    };
    double worst = 0;
    int rc = 0;
    printf("lk_cap_actions, %ld calls per case\n", calls);
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        const char *json = caps[c].json ? caps[c].json : cap3;
        lk_cap *cap = NULL;
        lk_error err;
        if (lk_cap_parse(json, strlen(json), &cap, &err) != LK_OK) {
            fprintf(stderr, "cap_bench: %s: %s\n", caps[c].name, err.message);
            rc = 1;
            free(caps[c].json);
            continue;
        }
        for (size_t k = 0; k < caps[c].n; k++) {
            double ns = run(cap, &caps[c].cases[k], calls);
            if (ns > worst)
                worst = ns;
            printf("  %-36s %-7s %7.1f ns/call\n", caps[c].name, caps[c].cases[k].kind, ns);
        }
        lk_cap_destroy(cap);
        free(caps[c].json);
    }
    printf("worst %.1f ns/call (goal < %.0f ns)\n", worst, GOAL_NS);
    return rc;
}
