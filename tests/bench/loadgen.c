/*
 * loadgen.c - a single-threaded epoll WebSocket load generator for
 * latchkey-broker (latchkey.v1, SPEC section 4), nats-server, mosquitto
 * (MQTT 3.1.1) and the `limit` broadcaster, written on raw sockets so that
 * it costs less than the server it measures.
 *
 *   loadgen sub     : N subscribers; counts deliveries, per-publisher
 *                     sequence gaps and latency (receive time - intended
 *                     send time) in a log-bucket histogram.
 *   loadgen pub     : P publishers sending fixed-size payloads at a target
 *                     rate on a schedule (message i is due at start + i /
 *                     rate), so a publisher that falls behind still charges
 *                     the delay to latency (no coordinated omission).
 *                     Fire-and-forget: no id, no ack.
 *   loadgen idle    : N connections held open once ready (RSS measurement).
 *   loadgen connect : N connections opened as fast as possible, per round;
 *                     every round after the first drops them all at once and
 *                     reconnects them (a reconnect storm).
 *
 * --proto picks latchkey, nats, mqtt or raw (lg_client.h). The payload is
 * the same for all: {"t":<intended ns>,"n":<seq>,"i":<publisher>,"p":"xx.."}.
 *
 * Channels: by default every connection uses --channel. With
 * --channel-pattern P (one %d), sub connection i subscribes to P(offset+i),
 * its own channel, and with --shared to --channel too; a publisher sends
 * round-robin over P(offset) .. P(offset+count-1), and with --shared-every M
 * every M-th message to --channel instead. Sequences are then kept per
 * publisher and channel, so gap detection still holds per channel, and
 * results add sent_own/sent_shared (pub: messages queued on the pattern's
 * channels / on --channel; exact when `unflushed` is 0) and
 * received_own/received_shared (sub), for loss = 1 - received / expected.
 *
 * Each process prints JSON lines on stdout: {"event":"ready",...} once its
 * connections are set up, {"event":"step",...} per `report` command, one
 * {"event":"round",...} per connect round, and one {"event":"result",...}
 * before it exits. With --control, stdin takes `report` (drain, print a
 * step, reset the counters) and `quit`; EOF quits, so a generator never
 * outlives the script that drives it.
 *
 * Latency works across processes because CLOCK_MONOTONIC is one system-wide
 * clock: the publisher writes intended send times, subscribers subtract.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "lg_client.h"
#include "lg_conn.h"
#include "lg_hist.h"
#include "lg_proto.h"

#define LG_MAX_TOKEN 8192
#define LG_PUB_TX_HIGH (1u << 20)       /* publisher stops queueing above this */
#define LG_PUB_BATCH 20000              /* publishes per loop turn, for fairness */
#define LG_PUB_GRACE_NS (10 * LG_NS)    /* a late publisher gives up after this */
#define LG_PUB_LINGER_NS (200 * LG_MS)  /* catch error frames after the last publish */
#define LG_MAX_PUBLISHERS 4096          /* publisher ids a subscriber tracks */
#define LG_MAX_PAYLOAD 60000
#define LG_MAX_PATTERN_CHANNELS 1000000
#define LG_FD_RESERVE 16
#define LG_KEEPALIVE_NS ((int64_t)LG_MQTT_KEEPALIVE_S / 2 * LG_NS)

/* epoll data for the descriptors that are not connections. */
#define EV_TIMER UINT64_MAX
#define EV_SIGNAL (UINT64_MAX - 1)
#define EV_STDIN (UINT64_MAX - 2)

enum mode { MODE_SUB, MODE_PUB, MODE_IDLE, MODE_CONNECT };
static const char *const mode_names[] = {"sub", "pub", "idle", "connect"};

typedef struct opts {
    enum mode mode;
    int proto;
    char *token;
    int connections;
    const char *channel;
    const char *pattern;
    int offset, count, shared, shared_every;
    double rate;
    double duration;
    int pub_id;
    int payload;
    int control;
    int inflight;
    int rounds;
    double connect_timeout;
    int quiet_ms;
    double drain_max;
} opts;

static struct lg {
    opts o;
    lg_net net;
    lg_client client;
    int tfd, sfd;
    int started;
    int ready_sent, quit, final_report, result_printed;
    int64_t t0, phase_start, t_ready, last_scan, last_keepalive;
    double cpu0;
    lg_tally errors;

    /* sub */
    uint64_t received, received_kind[2], gaps, dups, bad_payload;
    int64_t step_start, last_msg;
    int draining;
    int64_t drain_start, drain_deadline;
    lg_hist hist;

    /* pub */
    int pub_running, pub_done;
    int64_t pub_start, pub_finish_at, timer_at;
    uint64_t pub_total, pub_next, pub_skipped, pub_queued, pub_own_next;
    uint64_t sent_kind[2];
    uint32_t *pub_seq; /* pattern mode: next n per (connection, channel) */
    int64_t behind_max;
    size_t frame_len;

    /* connect */
    int round;

    char stdin_buf[256];
    size_t stdin_len;
} g;

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* ---- deliveries ---- */

/* A delivery on a subscriber: count it, check its publisher's sequence on
 * that channel and record its latency. Allocates only when a publisher id
 * is first seen on a connection. */
static void on_deliver(lg_net *net, lg_conn *c, int kind, const char *p, size_t len)
{
    lg_payload pl;
    if (lg_payload_parse(p, len, &pl) < 0 || pl.id >= LG_MAX_PUBLISHERS || pl.n > UINT32_MAX) {
        g.bad_payload++;
        return;
    }
    int64_t now = net->now_read;
    g.received++;
    g.received_kind[kind]++;
    g.last_msg = now;
    lg_hist_record(&g.hist, now > (int64_t)pl.t ? (uint64_t)(now - (int64_t)pl.t) : 0);

    if (pl.id >= c->n_next) {
        uint32_t want = (uint32_t)pl.id + 1;
        uint32_t *nn = realloc(c->next_n, 2 * want * sizeof *nn);
        if (!nn)
            return;
        memset(nn + 2 * c->n_next, 0, 2 * (want - c->n_next) * sizeof *nn);
        c->next_n = nn;
        c->n_next = want;
    }
    uint32_t *next = &c->next_n[2 * pl.id + (uint64_t)kind];
    if (pl.n == *next) {
        (*next)++;
    } else if (pl.n > *next) {
        g.gaps += pl.n - *next;
        *next = (uint32_t)pl.n + 1;
    } else {
        g.dups++;
    }
}

/* ---- publisher ---- */

static void timer_arm(int64_t at)
{
    if (g.timer_at == at)
        return;
    struct itimerspec its = {.it_value = {.tv_sec = at / LG_NS, .tv_nsec = at % LG_NS}};
    timerfd_settime(g.tfd, TFD_TIMER_ABSTIME, &its, NULL);
    g.timer_at = at;
}

/* The channel of the next publish, its kind, and the sequence counter to
 * use on connection k. */
static uint32_t *pub_target(int k, lg_conn *c, char *name, size_t cap, int *kind)
{
    if (!g.o.pattern) {
        snprintf(name, cap, "%s", g.o.channel);
        *kind = LG_KIND_OWN;
        return &c->pub_n;
    }
    int C = g.o.count;
    uint64_t q = g.pub_queued;
    size_t slot;
    if (g.o.shared_every && q % (uint64_t)g.o.shared_every == (uint64_t)g.o.shared_every - 1) {
        snprintf(name, cap, "%s", g.o.channel);
        *kind = LG_KIND_SHARED;
        slot = (size_t)C;
    } else {
        slot = (size_t)(g.pub_own_next % (uint64_t)C);
        lg_client_pattern_name(g.o.pattern, (long)g.o.offset + (long)slot, name, cap);
        *kind = LG_KIND_OWN;
    }
    return &g.pub_seq[(size_t)k * (size_t)(C + 1) + slot];
}

/* Queues every publish that is due; returns nonzero if more are due now. */
static int pub_tick(int64_t now)
{
    static uint8_t msg[LG_MAX_PAYLOAD + 2 * LG_MAX_CHANNEL + 300];
    char payload[LG_MAX_PAYLOAD], name[LG_MAX_CHANNEL + 1];
    int P = g.o.connections, sent = 0;

    while (g.pub_next < g.pub_total && sent < LG_PUB_BATCH) {
        int64_t due = g.pub_start + (int64_t)((double)g.pub_next * 1e9 / g.o.rate);
        if (due > now) {
            timer_arm(due);
            break;
        }
        int k = (int)(g.pub_next % (uint64_t)P);
        lg_conn *c = &g.net.conns[k];
        if (c->state != LG_CS_READY) {
            g.pub_skipped++;
            g.pub_next++;
            continue;
        }
        if (lg_conn_pending(c) > LG_PUB_TX_HIGH)
            break; /* behind: EPOLLOUT resumes us, latency still counts from `due` */
        int kind, opcode;
        uint32_t *seq = pub_target(k, c, name, sizeof name, &kind);
        size_t pl = lg_payload_make(payload, (size_t)g.o.payload, due, *seq, g.o.pub_id + k);
        size_t len = lg_client_publish(&g.client, name, payload, pl, msg, sizeof msg, &opcode);
        if (len == 0)
            die("a publish does not fit its buffer");
        if (lg_conn_queue_frame(&g.net, c, opcode, msg, len) < 0) {
            lg_conn_release(&g.net, c);
            continue;
        }
        if (g.frame_len == 0)
            g.frame_len = len + (len < 126 ? 6 : len <= 0xffff ? 8 : 14);
        (*seq)++;
        g.pub_queued++;
        g.sent_kind[kind]++;
        if (kind == LG_KIND_OWN)
            g.pub_own_next++;
        if (now - due > g.behind_max)
            g.behind_max = now - due;
        g.pub_next++;
        sent++;
    }
    for (int k = 0; k < P; k++) {
        lg_conn *c = &g.net.conns[k];
        if (c->state != LG_CS_DEAD && lg_conn_pending(c) && lg_conn_flush(&g.net, c) < 0)
            lg_conn_release(&g.net, c);
    }
    return sent == LG_PUB_BATCH;
}

static int pub_pending(void)
{
    for (int k = 0; k < g.o.connections; k++)
        if (g.net.conns[k].state != LG_CS_DEAD && lg_conn_pending(&g.net.conns[k]))
            return 1;
    return 0;
}

/* ---- output ---- */

static void print_common(const char *event, int64_t now)
{
    printf("{\"event\":\"%s\",\"mode\":\"%s\",\"proto\":\"%s\",\"pid\":%d,\"connections\":%d,"
           "\"ready\":%d,\"open\":%d,\"failed\":%d,\"connect_s\":%.3f,\"cpu_s\":%.3f",
           event, mode_names[g.o.mode], lg_proto_name(g.o.proto), (int)getpid(),
           g.o.connections, g.net.ever_ready, g.net.open, g.net.failed,
           (double)((g.t_ready ? g.t_ready : now) - g.t0) / 1e9, cpu_seconds() - g.cpu0);
    lg_tally_print("failures", &g.net.failures);
    lg_tally_print("closes", &g.net.closes);
    lg_tally_print("errors", &g.errors);
}

static void print_sub(const char *event, int64_t now)
{
    if (strcmp(event, "result") == 0)
        g.result_printed = 1;
    print_common(event, now);
    printf(",\"received\":%llu,\"gaps\":%llu,\"dups\":%llu,\"bad_payload\":%llu,",
           (unsigned long long)g.received, (unsigned long long)g.gaps,
           (unsigned long long)g.dups, (unsigned long long)g.bad_payload);
    if (g.o.pattern)
        printf("\"received_own\":%llu,\"received_shared\":%llu,",
               (unsigned long long)g.received_kind[LG_KIND_OWN],
               (unsigned long long)g.received_kind[LG_KIND_SHARED]);
    printf("\"elapsed_s\":%.3f,\"lat_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
           "\"p999\":%.1f,\"max\":%.1f},\"hist\":[",
           (double)(now - g.step_start) / 1e9, (double)lg_hist_percentile(&g.hist, 50) / 1e3,
           (double)lg_hist_percentile(&g.hist, 90) / 1e3,
           (double)lg_hist_percentile(&g.hist, 99) / 1e3,
           (double)lg_hist_percentile(&g.hist, 99.9) / 1e3, (double)g.hist.max / 1e3);
    int first = 1;
    for (unsigned i = 0; i < LG_HIST_BUCKETS; i++) {
        if (!g.hist.counts[i])
            continue;
        printf("%s[%llu,%llu]", first ? "" : ",", (unsigned long long)lg_hist_bucket_high(i),
               (unsigned long long)g.hist.counts[i]);
        first = 0;
    }
    printf("]}\n");
    fflush(stdout);
}

static void print_pub(int64_t now)
{
    uint64_t unflushed = 0;
    for (int k = 0; k < g.o.connections; k++) {
        lg_conn *c = &g.net.conns[k];
        if (c->state != LG_CS_DEAD && g.frame_len)
            unflushed += (lg_conn_pending(c) + g.frame_len - 1) / g.frame_len;
    }
    print_common("result", now);
    printf(",\"rate\":%.1f,\"duration_s\":%.3f,\"scheduled\":%llu,\"sent\":%llu,",
           g.o.rate, g.o.duration, (unsigned long long)g.pub_total,
           (unsigned long long)(g.pub_queued - unflushed));
    if (g.o.pattern)
        printf("\"sent_own\":%llu,\"sent_shared\":%llu,",
               (unsigned long long)g.sent_kind[LG_KIND_OWN],
               (unsigned long long)g.sent_kind[LG_KIND_SHARED]);
    printf("\"skipped\":%llu,\"unflushed\":%llu,\"behind_max_ms\":%.3f,\"elapsed_s\":%.3f}\n",
           (unsigned long long)(g.pub_skipped + (g.pub_total - g.pub_next)),
           (unsigned long long)unflushed, (double)g.behind_max / 1e6,
           g.pub_start ? (double)(now - g.pub_start) / 1e9 : 0.0);
    fflush(stdout);
}

static void print_round(int64_t now)
{
    int ok = g.net.ever_ready;
    int64_t last = ok ? g.net.last_ready : now;
    double secs = (double)(last - g.phase_start) / 1e9;
    printf("{\"event\":\"round\",\"mode\":\"connect\",\"proto\":\"%s\",\"pid\":%d,\"round\":%d,"
           "\"connections\":%d,\"ok\":%d,\"failed\":%d",
           lg_proto_name(g.o.proto), (int)getpid(), g.round, g.o.connections, ok,
           g.net.failed);
    lg_tally_print("failures", &g.net.failures);
    lg_tally_print("closes", &g.net.closes);
    printf(",\"seconds\":%.4f,\"rate\":%.1f,\"hs_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
           "\"max\":%.3f},\"cpu_s\":%.3f}\n",
           secs, secs > 0 ? ok / secs : 0.0, (double)lg_hist_percentile(&g.hist, 50) / 1e6,
           (double)lg_hist_percentile(&g.hist, 90) / 1e6,
           (double)lg_hist_percentile(&g.hist, 99) / 1e6, (double)g.hist.max / 1e6,
           cpu_seconds() - g.cpu0);
    fflush(stdout);
}

static void sub_reset(int64_t now)
{
    g.received = g.gaps = g.dups = g.bad_payload = 0;
    g.received_kind[0] = g.received_kind[1] = 0;
    lg_hist_reset(&g.hist);
    memset(&g.errors, 0, sizeof g.errors);
    g.step_start = now;
    g.cpu0 = cpu_seconds();
    /* The next step's publisher starts its sequences from zero again. */
    for (int i = 0; i < g.started; i++) {
        free(g.net.conns[i].next_n);
        g.net.conns[i].next_n = NULL;
        g.net.conns[i].n_next = 0;
    }
}

/* ---- control ---- */

/* Subscribers wait until the server has delivered what it still holds
 * (no message for --quiet-ms, at most --drain-max) before reporting. */
static void begin_drain(int64_t now, int final)
{
    if (g.o.mode != MODE_SUB) {
        g.quit = 1;
        return;
    }
    if (!g.draining) {
        g.draining = 1;
        g.drain_start = now;
        g.drain_deadline = now + (int64_t)(g.o.drain_max * (double)LG_NS);
    }
    if (final)
        g.final_report = 1;
}

static void on_stdin(int64_t now)
{
    ssize_t n = read(0, g.stdin_buf + g.stdin_len, sizeof g.stdin_buf - 1 - g.stdin_len);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        epoll_ctl(g.net.ep, EPOLL_CTL_DEL, 0, NULL);
        begin_drain(now, 1);
        return;
    }
    if (n < 0)
        return;
    g.stdin_len += (size_t)n;
    g.stdin_buf[g.stdin_len] = '\0';
    char *nl;
    while ((nl = strchr(g.stdin_buf, '\n'))) {
        *nl = '\0';
        if (strcmp(g.stdin_buf, "report") == 0)
            begin_drain(now, 0);
        else if (strcmp(g.stdin_buf, "quit") == 0)
            begin_drain(now, 1);
        size_t rest = g.stdin_len - (size_t)(nl + 1 - g.stdin_buf);
        memmove(g.stdin_buf, nl + 1, rest + 1);
        g.stdin_len = rest;
    }
    if (g.stdin_len == sizeof g.stdin_buf - 1)
        g.stdin_len = 0; /* an overlong line is not a command */
}

/* ---- setup ---- */

static void usage(FILE *f)
{
    fputs("usage: loadgen sub|pub|idle|connect --port PORT [--proto P] [options]\n"
          "  --proto P             latchkey (default), nats, mqtt or raw (the limit server)\n"
          "  --host ADDR           server address, 127.0.0.0/8 only (127.0.0.1)\n"
          "  --port PORT           server WebSocket port\n"
          "  --path PATH           upgrade path (latchkey /v1/realtime, nats /, mqtt /mqtt,\n"
          "                        raw: /sub/<channels> for sub, else /)\n"
          "  --token-file FILE     latchkey: client token (offered as bearer.<token>)\n"
          "  -n, --connections N   sub/idle/connect connections, or publisher connections (1)\n"
          "  --channel NAME        channel (bench); NATS subject / MQTT topic with ':' as . or /\n"
          "  --channel-pattern P   per-connection channels, one %d (e.g. bench:c%d)\n"
          "  --channel-offset K    sub: connection i uses P(K+i); pub: first channel P(K) (0)\n"
          "  --channel-count C     pub: round-robin over P(K) .. P(K+C-1) (1)\n"
          "  --shared              sub: also subscribe to --channel\n"
          "  --shared-every M      pub: every M-th message goes to --channel (0: never)\n"
          "  --src A[,B...]        127.0.0.x source addresses, used round-robin\n"
          "  --rate R              pub: total messages/s (100)\n"
          "  --duration S          pub: publishing time; sub/idle: lifetime after ready (10)\n"
          "  --pub-id ID           pub: id of the first publisher connection (0)\n"
          "  --payload BYTES       pub: size of the payload JSON (64)\n"
          "  --rounds R            connect: rounds; 2 and up are reconnect storms (1)\n"
          "  --control             read report/quit commands on stdin\n"
          "  --inflight N          handshakes in progress at once (128)\n"
          "  --connect-timeout S   whole connection phase, per round for connect (60)\n"
          "  --handshake-timeout S per connection (10)\n"
          "  --quiet-ms MS         sub: a drain ends after this much silence (300)\n"
          "  --drain-max S         sub: longest drain (5)\n",
          f);
}

static int parse_loopback(const char *s, struct in_addr *a)
{
    return inet_pton(AF_INET, s, a) == 1 && (ntohl(a->s_addr) >> 24) == 127 ? 0 : -1;
}

static char *read_token(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die("cannot open the token file");
    char *t = calloc(1, LG_MAX_TOKEN + 2);
    if (!t)
        die("out of memory");
    size_t n = fread(t, 1, LG_MAX_TOKEN + 1, f);
    fclose(f);
    while (n && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' '))
        t[--n] = '\0';
    if (n == 0 || n > LG_MAX_TOKEN)
        die("the token file must hold one token of 1..%d bytes", LG_MAX_TOKEN);
    /* It goes into a comma-separated header: no separators, no controls. */
    for (size_t i = 0; i < n; i++)
        if (t[i] <= ' ' || t[i] == ',' || t[i] > '~')
            die("the token file holds characters a token never has");
    return t;
}

static double parse_num(const char *s, double lo, double hi, const char *what)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi))
        die("%s must be a number in [%g, %g]", what, lo, hi);
    return v;
}

static void parse_args(int argc, char **argv)
{
    enum { O_PROTO = 256, O_PATTERN, O_OFFSET, O_COUNT, O_SHARED, O_EVERY, O_ROUNDS };
    static const struct option lo[] = {
        {"host", 1, 0, 'H'},        {"port", 1, 0, 'p'},          {"path", 1, 0, 'P'},
        {"token-file", 1, 0, 't'},  {"connections", 1, 0, 'n'},   {"channel", 1, 0, 'c'},
        {"src", 1, 0, 's'},         {"rate", 1, 0, 'r'},          {"duration", 1, 0, 'd'},
        {"pub-id", 1, 0, 'i'},      {"payload", 1, 0, 'b'},       {"control", 0, 0, 'C'},
        {"inflight", 1, 0, 'f'},    {"connect-timeout", 1, 0, 'T'},
        {"handshake-timeout", 1, 0, 'h'}, {"quiet-ms", 1, 0, 'q'}, {"drain-max", 1, 0, 'D'},
        {"proto", 1, 0, O_PROTO},   {"channel-pattern", 1, 0, O_PATTERN},
        {"channel-offset", 1, 0, O_OFFSET}, {"channel-count", 1, 0, O_COUNT},
        {"shared", 0, 0, O_SHARED}, {"shared-every", 1, 0, O_EVERY},
        {"rounds", 1, 0, O_ROUNDS}, {"help", 0, 0, '?'},        {0, 0, 0, 0}};
    opts *o = &g.o;
    lg_net *net = &g.net;
    const char *token_file = NULL;
    int have_count = 0;

    if (argc < 2) {
        usage(stderr);
        exit(2);
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        exit(0);
    }
    int m;
    for (m = 0; m <= MODE_CONNECT; m++)
        if (strcmp(argv[1], mode_names[m]) == 0)
            break;
    if (m > MODE_CONNECT) {
        usage(stderr);
        exit(2);
    }
    o->mode = (enum mode)m;

    snprintf(net->host, sizeof net->host, "127.0.0.1");
    net->handshake_ns = 10 * LG_NS;
    o->proto = LG_PROTO_LATCHKEY;
    o->connections = 1;
    o->channel = "bench";
    o->count = 1;
    o->rate = 100;
    o->duration = 10;
    o->payload = 64;
    o->inflight = 128;
    o->rounds = 1;
    o->connect_timeout = 60;
    o->quiet_ms = 300;
    o->drain_max = 5;

    optind = 2;
    int ch;
    while ((ch = getopt_long(argc, argv, "n:", lo, NULL)) != -1) {
        switch (ch) {
        case 'H':
            if (strlen(optarg) >= sizeof net->host)
                die("bad --host");
            snprintf(net->host, sizeof net->host, "%s", optarg);
            break;
        case 'p': net->port = (int)parse_num(optarg, 1, 65535, "--port"); break;
        case 'P':
            if (optarg[0] != '/' || strlen(optarg) > 1024 || strpbrk(optarg, " \r\n"))
                die("--path must be an absolute path without spaces");
            net->path = optarg;
            break;
        case 't': token_file = optarg; break;
        case 'n': o->connections = (int)parse_num(optarg, 1, 1000000, "--connections"); break;
        case 'c':
            if (!lg_client_valid_channel(optarg))
                die("--channel must be a valid channel name");
            o->channel = optarg;
            break;
        case 's': {
            char *list = strdup(optarg), *save = NULL;
            if (!list)
                die("out of memory");
            for (char *a = strtok_r(list, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
                if (net->nsrc == LG_MAX_SRC || parse_loopback(a, &net->src[net->nsrc]) < 0)
                    die("--src takes up to %d addresses in 127.0.0.0/8", LG_MAX_SRC);
                net->nsrc++;
            }
            free(list);
            break;
        }
        case 'r': o->rate = parse_num(optarg, 0.001, 10e6, "--rate"); break;
        case 'd': o->duration = parse_num(optarg, 0.001, 86400, "--duration"); break;
        case 'i': o->pub_id = (int)parse_num(optarg, 0, LG_MAX_PUBLISHERS - 1, "--pub-id"); break;
        case 'b': o->payload = (int)parse_num(optarg, 64, LG_MAX_PAYLOAD, "--payload"); break;
        case 'C': o->control = 1; break;
        case 'f': o->inflight = (int)parse_num(optarg, 1, 100000, "--inflight"); break;
        case 'T': o->connect_timeout = parse_num(optarg, 0.1, 3600, "--connect-timeout"); break;
        case 'h':
            net->handshake_ns = (int64_t)(parse_num(optarg, 0.1, 600, "--handshake-timeout") *
                                          (double)LG_NS);
            break;
        case 'q': o->quiet_ms = (int)parse_num(optarg, 1, 60000, "--quiet-ms"); break;
        case 'D': o->drain_max = parse_num(optarg, 0.01, 600, "--drain-max"); break;
        case O_PROTO:
            o->proto = lg_proto_parse(optarg);
            if (o->proto < 0)
                die("--proto is one of latchkey, nats, mqtt, raw");
            break;
        case O_PATTERN:
            if (lg_client_check_pattern(optarg) < 0)
                die("--channel-pattern needs one %%d and must make valid channel names");
            o->pattern = optarg;
            break;
        case O_OFFSET:
            o->offset = (int)parse_num(optarg, 0, 1e9, "--channel-offset");
            break;
        case O_COUNT:
            o->count = (int)parse_num(optarg, 1, LG_MAX_PATTERN_CHANNELS, "--channel-count");
            have_count = 1;
            break;
        case O_SHARED: o->shared = 1; break;
        case O_EVERY: o->shared_every = (int)parse_num(optarg, 0, 1e9, "--shared-every"); break;
        case O_ROUNDS: o->rounds = (int)parse_num(optarg, 1, 1000, "--rounds"); break;
        default: usage(stderr); exit(2);
        }
    }
    if (optind != argc)
        die("unexpected argument");
    if (!net->port)
        die("--port is required");
    if (o->proto == LG_PROTO_LATCHKEY && !token_file)
        die("--token-file is required with --proto latchkey");
    if (parse_loopback(net->host, &net->dst) < 0)
        die("--host must be an address in 127.0.0.0/8");
    if (o->mode == MODE_PUB && o->pub_id + o->connections > LG_MAX_PUBLISHERS)
        die("publisher ids must stay below %d", LG_MAX_PUBLISHERS);
    if (!o->pattern && (o->shared || o->shared_every || o->offset || have_count))
        die("--shared, --shared-every, --channel-offset and --channel-count need "
            "--channel-pattern");
    if (o->mode == MODE_PUB && o->pattern &&
        (size_t)o->connections * (size_t)(o->count + 1) > 64u * 1000 * 1000)
        die("too many publisher connections x channels");
    if (o->proto == LG_PROTO_LATCHKEY) {
        o->token = read_token(token_file);
        net->token = o->token;
    }
}

static void raise_fd_limit(int need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("getrlimit failed");
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if ((rlim_t)need > rl.rlim_cur)
        die("%d connections need %d descriptors but a process may hold %llu: spread them "
            "over several processes", need - LG_FD_RESERVE, need,
            (unsigned long long)rl.rlim_cur);
}

static void setup(void)
{
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGINT);
    sigaddset(&ss, SIGTERM);
    sigaddset(&ss, SIGHUP);
    sigprocmask(SIG_BLOCK, &ss, NULL);
    signal(SIGPIPE, SIG_IGN);

    raise_fd_limit(g.o.connections + LG_FD_RESERVE);
    g.client = (lg_client){.proto = g.o.proto,
                           .subscribe = g.o.mode == MODE_SUB,
                           .channel = g.o.channel,
                           .pattern = g.o.pattern,
                           .offset = g.o.offset,
                           .shared = g.o.shared,
                           .deliver = on_deliver,
                           .errors = &g.errors};
    lg_client_attach(&g.client, &g.net, g.o.token);
    if (g.o.mode == MODE_CONNECT)
        g.net.ready_hist = &g.hist;
    if (lg_net_init(&g.net, g.o.connections) < 0)
        die("out of memory or descriptors");
    if (g.o.mode == MODE_PUB && g.o.pattern) {
        g.pub_seq = calloc((size_t)g.o.connections * (size_t)(g.o.count + 1), sizeof *g.pub_seq);
        if (!g.pub_seq)
            die("out of memory");
    }
    g.sfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
    g.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (g.sfd < 0 || g.tfd < 0)
        die("signalfd/timerfd setup failed");
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EV_SIGNAL};
    epoll_ctl(g.net.ep, EPOLL_CTL_ADD, g.sfd, &ev);
    ev.data.u64 = EV_TIMER;
    epoll_ctl(g.net.ep, EPOLL_CTL_ADD, g.tfd, &ev);
    if (g.o.control) {
        ev.data.u64 = EV_STDIN;
        if (epoll_ctl(g.net.ep, EPOLL_CTL_ADD, 0, &ev) < 0)
            die("--control needs stdin to be a pipe");
    }
    g.t0 = g.phase_start = g.last_keepalive = lg_now_ns();
    g.cpu0 = cpu_seconds();
    g.round = 1;
}

static void teardown(void)
{
    lg_net_free(&g.net);
    if (g.o.token) {
        OPENSSL_cleanse(g.o.token, strlen(g.o.token));
        free(g.o.token);
    }
    free(g.pub_seq);
    close(g.sfd);
    close(g.tfd);
}

/* ---- main loop ---- */

/* Ends a connect round: prints it, then either quits or drops every
 * connection at once (close(2), no close frame) and starts the next. */
static void end_round(int64_t now)
{
    print_round(now);
    if (g.round >= g.o.rounds) {
        g.quit = 1;
        return;
    }
    for (int i = 0; i < g.started; i++)
        lg_conn_drop(&g.net, &g.net.conns[i]);
    g.round++;
    g.started = 0;
    g.net.ever_ready = g.net.failed = 0;
    memset(&g.net.failures, 0, sizeof g.net.failures);
    memset(&g.net.closes, 0, sizeof g.net.closes);
    lg_hist_reset(&g.hist);
    g.phase_start = lg_now_ns();
    g.cpu0 = cpu_seconds();
}

static void housekeeping(int64_t now)
{
    int connecting = g.started < g.o.connections || g.net.inflight > 0;
    int64_t phase_end = g.phase_start + (int64_t)(g.o.connect_timeout * (double)LG_NS);
    if (connecting && (now - g.last_scan >= 100 * LG_MS || now >= phase_end)) {
        g.last_scan = now;
        for (int i = 0; i < g.started; i++) {
            lg_conn *c = &g.net.conns[i];
            if (lg_conn_in_handshake(c) && (now >= c->deadline || now >= phase_end))
                lg_conn_kill(&g.net, c, "timeout");
        }
        if (now >= phase_end) {
            while (g.started < g.o.connections) {
                g.net.failed++;
                lg_tally_str(&g.net.failures, "not_started");
                g.started++;
            }
        }
        connecting = g.started < g.o.connections || g.net.inflight > 0;
    }
    if (g.o.mode == MODE_CONNECT) {
        if (!connecting)
            end_round(now);
        return;
    }
    if (!connecting && !g.ready_sent) {
        g.ready_sent = 1;
        g.t_ready = now;
        print_common("ready", now);
        printf("}\n");
        fflush(stdout);
        sub_reset(now);
        if (g.o.mode == MODE_PUB) {
            g.pub_start = now + LG_MS;
            g.pub_total = (uint64_t)(g.o.rate * g.o.duration + 0.5);
            g.pub_running = g.net.ever_ready > 0;
            if (!g.pub_running)
                g.quit = 1;
        }
    }
    if (!g.ready_sent)
        return;

    if (g.o.proto == LG_PROTO_MQTT && now - g.last_keepalive >= LG_KEEPALIVE_NS) {
        g.last_keepalive = now;
        for (int i = 0; i < g.started; i++)
            lg_client_keepalive(&g.client, &g.net, &g.net.conns[i]);
    }
    if (g.o.mode == MODE_PUB) {
        if (g.pub_running && !g.pub_done && g.pub_next >= g.pub_total && !pub_pending()) {
            g.pub_done = 1;
            g.pub_finish_at = now + LG_PUB_LINGER_NS;
        }
        if ((g.pub_done && now >= g.pub_finish_at) ||
            now >= g.pub_start + (int64_t)(g.o.duration * (double)LG_NS) + LG_PUB_GRACE_NS)
            g.quit = 1;
    } else if (now >= g.t_ready + (int64_t)(g.o.duration * (double)LG_NS)) {
        begin_drain(now, 1);
    }
    if (g.draining) {
        int64_t quiet_since = g.last_msg > g.drain_start ? g.last_msg : g.drain_start;
        if (now - quiet_since >= (int64_t)g.o.quiet_ms * LG_MS || now >= g.drain_deadline) {
            print_sub(g.final_report ? "result" : "step", now);
            g.draining = 0;
            if (g.final_report)
                g.quit = 1;
            else
                sub_reset(now);
        }
    }
}

int main(int argc, char **argv)
{
    struct epoll_event evs[512];
    int64_t last_house = 0;

    parse_args(argc, argv);
    setup();

    /* Hard bound on the process lifetime whatever the peer does. */
    double phases = g.o.mode == MODE_CONNECT
                        ? g.o.rounds * (g.o.connect_timeout + 1)
                        : g.o.connect_timeout + g.o.duration + g.o.drain_max;
    int64_t hard_end = g.t0 + 2 * LG_PUB_GRACE_NS + (int64_t)(phases * (double)LG_NS);
    while (!g.quit) {
        while (g.started < g.o.connections && g.net.inflight < g.o.inflight)
            lg_conn_start(&g.net, &g.net.conns[g.started++]);

        int more = 0;
        if (g.pub_running && !g.pub_done)
            more = pub_tick(lg_now_ns());

        int busy = g.draining || g.net.inflight || g.started < g.o.connections;
        /* The connection phase just ended: report it (or end the round) now. */
        int phase_over = !busy && (g.o.mode == MODE_CONNECT || !g.ready_sent);
        int n = epoll_wait(g.net.ep, evs, (int)(sizeof evs / sizeof evs[0]),
                           more || phase_over ? 0 : busy ? 10 : 100);
        if (n < 0 && errno != EINTR)
            die("epoll_wait failed");
        for (int i = 0; i < n; i++) {
            uint64_t d = evs[i].data.u64;
            if (d == EV_TIMER) {
                uint64_t expirations;
                /* Only wakes the loop: the schedule is re-read from the clock. */
                if (read(g.tfd, &expirations, sizeof expirations) < 0)
                    expirations = 0;
                g.timer_at = 0;
            } else if (d == EV_SIGNAL) {
                struct signalfd_siginfo si;
                if (read(g.sfd, &si, sizeof si) > 0)
                    begin_drain(lg_now_ns(), 1);
            } else if (d == EV_STDIN) {
                on_stdin(lg_now_ns());
            } else if (d < (uint64_t)g.o.connections) {
                lg_conn_on_event(&g.net, &g.net.conns[d], evs[i].events);
            }
        }
        int64_t now = lg_now_ns();
        if (now - last_house >= 5 * LG_MS || !busy) {
            housekeeping(now);
            last_house = now;
        }
        if (now >= hard_end) {
            if (g.o.mode == MODE_SUB && !g.result_printed)
                print_sub("result", now);
            break;
        }
    }
    if (g.o.mode == MODE_PUB) {
        print_pub(lg_now_ns());
    } else if (g.o.mode == MODE_IDLE || g.o.mode == MODE_CONNECT) {
        print_common("result", lg_now_ns());
        if (g.o.mode == MODE_CONNECT)
            printf(",\"rounds\":%d", g.round);
        printf("}\n");
        fflush(stdout);
    }
    teardown();
    return 0;
}
