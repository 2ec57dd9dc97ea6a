/*
 * loadgen.c - a single-threaded epoll WebSocket load generator for
 * latchkey-broker (latchkey.v1, SPEC section 4), written on raw sockets so
 * that it costs less than the server it measures.
 *
 *   loadgen sub  : N subscribers on one channel; counts `message` frames,
 *                  per-publisher sequence gaps and latency (receive time -
 *                  intended send time) in a log-bucket histogram.
 *   loadgen pub  : P publishers sending fixed-size payloads at a target rate
 *                  on a schedule (message i is due at start + i / rate), so a
 *                  publisher that falls behind still charges the delay to
 *                  latency (no coordinated omission). Fire-and-forget: no id.
 *   loadgen idle : N authenticated connections held open (RSS measurement).
 *
 * Each process prints JSON lines on stdout: {"event":"ready",...} once its
 * connections are set up, {"event":"step",...} per `report` command, and one
 * {"event":"result",...} before it exits. With --control, stdin takes
 * `report` (drain, print a step, reset the counters) and `quit`; EOF quits,
 * so a generator never outlives the script that drives it.
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

#include "lg_conn.h"
#include "lg_hist.h"

#define LG_MAX_TOKEN 8192
#define LG_PUB_TX_HIGH (1u << 20)       /* publisher stops queueing above this */
#define LG_PUB_BATCH 20000              /* publishes per loop turn, for fairness */
#define LG_PUB_GRACE_NS (10 * LG_NS)    /* a late publisher gives up after this */
#define LG_PUB_LINGER_NS (200 * LG_MS)  /* catch error frames after the last publish */
#define LG_MAX_PUBLISHERS 4096          /* publisher ids a subscriber tracks */
#define LG_MAX_PAYLOAD 60000
#define LG_FD_RESERVE 16

/* epoll data for the descriptors that are not connections. */
#define EV_TIMER UINT64_MAX
#define EV_SIGNAL (UINT64_MAX - 1)
#define EV_STDIN (UINT64_MAX - 2)

enum mode { MODE_SUB, MODE_PUB, MODE_IDLE };

typedef struct opts {
    enum mode mode;
    char *token;
    int connections;
    const char *channel;
    double rate;
    double duration;
    int pub_id;
    int payload;
    int control;
    int inflight;
    double connect_timeout;
    int quiet_ms;
    double drain_max;
} opts;

static struct lg {
    opts o;
    lg_net net;
    int tfd, sfd;
    int started;
    int ready_sent, quit, final_report, result_printed;
    int64_t t0, t_ready, last_scan;
    double cpu0;
    lg_tally errors;

    /* sub */
    uint64_t received, gaps, dups, bad_payload;
    int64_t step_start, last_msg;
    int draining;
    int64_t drain_start, drain_deadline;
    lg_hist hist;

    /* pub */
    int pub_running, pub_done;
    int64_t pub_start, pub_finish_at, timer_at;
    uint64_t pub_total, pub_next, pub_skipped;
    int64_t behind_max;
    size_t frame_len;

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

/* ---- received messages ---- */

/* Parses the digits at *s (advancing it) up to `e`. */
static int parse_digits(const char **s, const char *e, uint64_t *out)
{
    const char *q = *s;
    uint64_t v = 0;
    int digits = 0;
    while (q < e && *q >= '0' && *q <= '9' && digits < 19) {
        v = v * 10 + (uint64_t)(*q - '0');
        q++;
        digits++;
    }
    if (!digits)
        return -1;
    *s = q;
    *out = v;
    return 0;
}

/* Skips `lit` at *s if it is there. */
static int skip(const char **s, const char *e, const char *lit, size_t n)
{
    if ((size_t)(e - *s) < n || memcmp(*s, lit, n) != 0)
        return -1;
    *s += n;
    return 0;
}

static const char *skip_ws(const char *s, const char *e)
{
    while (s < e && (*s == ' ' || *s == '\t' || *s == '\r'))
        s++;
    return s;
}

/* The start of the value of member `qkey` (the key with its quotes) in
 * [p, p+len), past the colon and any whitespace; NULL if absent. A plain
 * search, not a parser: good for the flat messages read here. */
static const char *json_member(const char *p, size_t len, const char *qkey, size_t klen)
{
    const char *e = p + len, *s = p;
    while ((s = memmem(s, (size_t)(e - s), qkey, klen))) {
        const char *v = skip_ws(s + klen, e);
        if (v < e && *v == ':')
            return skip_ws(v + 1, e);
        s += klen;
    }
    return NULL;
}

/* A string member's value, without unescaping (the keys and values read
 * here never need it). */
static int json_str(const char *p, size_t len, const char *qkey, size_t klen, const char **v,
                    size_t *vlen)
{
    const char *s = json_member(p, len, qkey, klen);
    if (!s || *s != '"')
        return -1;
    s++;
    const char *e = memchr(s, '"', len - (size_t)(s - p));
    if (!e)
        return -1;
    *v = s;
    *vlen = (size_t)(e - s);
    return 0;
}

static int json_uint(const char *p, size_t len, const char *qkey, size_t klen, uint64_t *out)
{
    const char *s = json_member(p, len, qkey, klen);
    return s ? parse_digits(&s, p + len, out) : -1;
}

/* A `message` on a subscriber: count it, check its publisher's sequence
 * and record its latency. */
static void on_data(lg_conn *c, const char *p, size_t len)
{
    const char *d = json_member(p, len, "\"data\"", 6);
    uint64_t t, n, id;
    if (!d || *d != '{') {
        g.bad_payload++;
        return;
    }
    /* The publisher's payload has no nested object: it ends at the first '}'. */
    const char *e = memchr(d, '}', len - (size_t)(d - p));
    size_t dl = e ? (size_t)(e - d) : 0;
    const char *q = d;
    /* Fast path: the payload as the publisher wrote it; else search. */
    int ok = e && skip(&q, e, "{\"t\":", 5) == 0 && parse_digits(&q, e, &t) == 0 &&
             skip(&q, e, ",\"n\":", 5) == 0 && parse_digits(&q, e, &n) == 0 &&
             skip(&q, e, ",\"i\":", 5) == 0 && parse_digits(&q, e, &id) == 0;
    if (!ok)
        ok = e && json_uint(d, dl, "\"t\"", 3, &t) == 0 &&
             json_uint(d, dl, "\"n\"", 3, &n) == 0 && json_uint(d, dl, "\"i\"", 3, &id) == 0;
    if (!ok || id >= LG_MAX_PUBLISHERS || n > UINT32_MAX) {
        g.bad_payload++;
        return;
    }
    int64_t now = g.net.now_read;
    g.received++;
    g.last_msg = now;
    lg_hist_record(&g.hist, now > (int64_t)t ? (uint64_t)(now - (int64_t)t) : 0);

    if (id >= c->n_next) {
        uint32_t want = (uint32_t)id + 1;
        uint32_t *nn = realloc(c->next_n, want * sizeof *nn);
        if (!nn)
            return;
        memset(nn + c->n_next, 0, (want - c->n_next) * sizeof *nn);
        c->next_n = nn;
        c->n_next = want;
    }
    uint32_t *next = &c->next_n[id];
    if (n == *next) {
        (*next)++;
    } else if (n > *next) {
        g.gaps += n - *next;
        *next = (uint32_t)n + 1;
    } else {
        g.dups++;
    }
}

static void on_line(lg_net *net, lg_conn *c, const char *p, size_t len)
{
    static const char msg_prefix[] = "{\"op\":\"message\",";
    const char *op, *code;
    size_t oplen, codelen;
    /* Deliveries are nearly all the traffic: recognise them first. */
    if (len > sizeof msg_prefix && memcmp(p, msg_prefix, sizeof msg_prefix - 1) == 0) {
        if (c->state == LG_CS_READY && g.o.mode == MODE_SUB)
            on_data(c, p, len);
        return;
    }
    if (json_str(p, len, "\"op\"", 4, &op, &oplen) < 0) {
        lg_tally_str(&g.errors, "unparsed_frame");
        return;
    }
#define OP_IS(s) (oplen == sizeof(s) - 1 && memcmp(op, s, oplen) == 0)
    if (OP_IS("message")) {
        if (c->state == LG_CS_READY && g.o.mode == MODE_SUB)
            on_data(c, p, len);
    } else if (OP_IS("welcome")) {
        if (c->state != LG_CS_WELCOME)
            return;
        if (g.o.mode == MODE_SUB) {
            char req[300];
            int n = snprintf(req, sizeof req, "{\"op\":\"subscribe\",\"id\":1,\"channel\":\"%s\"}",
                             g.o.channel);
            c->state = LG_CS_SUBSCRIBING;
            lg_conn_send_text(net, c, req, (size_t)n);
        } else {
            lg_conn_set_ready(net, c);
        }
    } else if (OP_IS("subscribed")) {
        if (c->state == LG_CS_SUBSCRIBING)
            lg_conn_set_ready(net, c);
    } else if (OP_IS("error")) {
        if (json_str(p, len, "\"code\"", 6, &code, &codelen) < 0) {
            code = "unknown";
            codelen = 7;
        }
        lg_tally_add(&g.errors, code, codelen);
        if (c->state == LG_CS_SUBSCRIBING) {
            char why[48];
            snprintf(why, sizeof why, "subscribe_%.*s", (int)(codelen > 30 ? 30 : codelen), code);
            lg_conn_mark_dead(net, c, why);
        }
    }
#undef OP_IS
}

/* ---- publisher ---- */

/* The data JSON {"t":<intended ns>,"n":<seq>,"i":<publisher>,"p":"xx…"},
 * padded to exactly --payload bytes. */
static size_t pub_payload(char *out, int64_t t, uint32_t n, int id)
{
    char head[96];
    int h = snprintf(head, sizeof head, "{\"t\":%lld,\"n\":%u,\"i\":%d,\"p\":\"", (long long)t,
                     n, id);
    int pad = g.o.payload - h - 2;
    if (h < 0 || pad < 0)
        return 0;
    memcpy(out, head, (size_t)h);
    memset(out + h, 'x', (size_t)pad);
    memcpy(out + h + pad, "\"}", 2);
    return (size_t)g.o.payload;
}

static void timer_arm(int64_t at)
{
    if (g.timer_at == at)
        return;
    struct itimerspec its = {.it_value = {.tv_sec = at / LG_NS, .tv_nsec = at % LG_NS}};
    timerfd_settime(g.tfd, TFD_TIMER_ABSTIME, &its, NULL);
    g.timer_at = at;
}

/* Queues every publish that is due; returns nonzero if more are due now. */
static int pub_tick(int64_t now)
{
    static char msg[LG_MAX_PAYLOAD + 300];
    int P = g.o.connections, sent = 0;
    int prefix = snprintf(msg, sizeof msg, "{\"op\":\"publish\",\"channel\":\"%s\",\"data\":",
                          g.o.channel);

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
        size_t dl = pub_payload(msg + prefix, due, c->pub_n, g.o.pub_id + k);
        msg[(size_t)prefix + dl] = '}';
        size_t len = (size_t)prefix + dl + 1;
        if (lg_conn_queue_frame(&g.net, c, LG_WS_TEXT, msg, len) < 0) {
            lg_conn_release(&g.net, c);
            continue;
        }
        if (g.frame_len == 0)
            g.frame_len = len + (len < 126 ? 6 : len <= 0xffff ? 8 : 14);
        c->pub_n++;
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
    static const char *names[] = {"sub", "pub", "idle"};
    printf("{\"event\":\"%s\",\"mode\":\"%s\",\"pid\":%d,\"connections\":%d,\"ready\":%d,"
           "\"open\":%d,\"failed\":%d,\"connect_s\":%.3f,\"cpu_s\":%.3f",
           event, names[g.o.mode], (int)getpid(), g.o.connections, g.net.ever_ready,
           g.net.open, g.net.failed,
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
    printf(",\"received\":%llu,\"gaps\":%llu,\"dups\":%llu,\"bad_payload\":%llu,"
           "\"elapsed_s\":%.3f,\"lat_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
           "\"p999\":%.1f,\"max\":%.1f},\"hist\":[",
           (unsigned long long)g.received, (unsigned long long)g.gaps,
           (unsigned long long)g.dups, (unsigned long long)g.bad_payload,
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
    uint64_t queued = 0, unflushed = 0;
    for (int k = 0; k < g.o.connections; k++) {
        lg_conn *c = &g.net.conns[k];
        queued += c->pub_n;
        if (c->state != LG_CS_DEAD && g.frame_len)
            unflushed += (lg_conn_pending(c) + g.frame_len - 1) / g.frame_len;
    }
    print_common("result", now);
    printf(",\"rate\":%.1f,\"duration_s\":%.3f,\"scheduled\":%llu,\"sent\":%llu,"
           "\"skipped\":%llu,\"unflushed\":%llu,\"behind_max_ms\":%.3f,\"elapsed_s\":%.3f}\n",
           g.o.rate, g.o.duration, (unsigned long long)g.pub_total,
           (unsigned long long)(queued - unflushed),
           (unsigned long long)(g.pub_skipped + (g.pub_total - g.pub_next)),
           (unsigned long long)unflushed, (double)g.behind_max / 1e6,
           g.pub_start ? (double)(now - g.pub_start) / 1e9 : 0.0);
    fflush(stdout);
}

static void sub_reset(int64_t now)
{
    g.received = g.gaps = g.dups = g.bad_payload = 0;
    lg_hist_reset(&g.hist);
    memset(&g.errors, 0, sizeof g.errors);
    g.step_start = now;
    g.cpu0 = cpu_seconds();
    /* The next step's publisher starts its sequence from zero again. */
    for (int i = 0; i < g.started; i++) {
        free(g.net.conns[i].next_n);
        g.net.conns[i].next_n = NULL;
        g.net.conns[i].n_next = 0;
    }
}

/* ---- control ---- */

/* Subscribers wait until the broker has delivered what it still holds
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
    fputs("usage: loadgen sub|pub|idle --port PORT --token-file FILE [options]\n"
          "  --host ADDR           broker address, 127.0.0.0/8 only (127.0.0.1)\n"
          "  --port PORT           broker port\n"
          "  --path PATH           upgrade path (/v1/realtime)\n"
          "  --token-file FILE     client token (offered as bearer.<token>)\n"
          "  -n, --connections N   sub/idle connections, or publisher connections (1)\n"
          "  --channel NAME        channel (bench)\n"
          "  --src A[,B...]        127.0.0.x source addresses, used round-robin\n"
          "  --rate R              pub: total messages/s (100)\n"
          "  --duration S          pub: publishing time; sub/idle: lifetime after ready (10)\n"
          "  --pub-id ID           pub: id of the first publisher connection (0)\n"
          "  --payload BYTES       pub: size of the data JSON (64)\n"
          "  --control             read report/quit commands on stdin\n"
          "  --inflight N          handshakes in progress at once (128)\n"
          "  --connect-timeout S   whole connection phase (60)\n"
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
    static const struct option lo[] = {
        {"host", 1, 0, 'H'},        {"port", 1, 0, 'p'},          {"path", 1, 0, 'P'},
        {"token-file", 1, 0, 't'},  {"connections", 1, 0, 'n'},   {"channel", 1, 0, 'c'},
        {"src", 1, 0, 's'},         {"rate", 1, 0, 'r'},          {"duration", 1, 0, 'd'},
        {"pub-id", 1, 0, 'i'},      {"payload", 1, 0, 'b'},       {"control", 0, 0, 'C'},
        {"inflight", 1, 0, 'f'},    {"connect-timeout", 1, 0, 'T'},
        {"handshake-timeout", 1, 0, 'h'}, {"quiet-ms", 1, 0, 'q'}, {"drain-max", 1, 0, 'D'},
        {"help", 0, 0, '?'},        {0, 0, 0, 0}};
    opts *o = &g.o;
    lg_net *net = &g.net;
    const char *token_file = NULL;

    if (argc < 2) {
        usage(stderr);
        exit(2);
    }
    if (strcmp(argv[1], "sub") == 0) {
        o->mode = MODE_SUB;
    } else if (strcmp(argv[1], "pub") == 0) {
        o->mode = MODE_PUB;
    } else if (strcmp(argv[1], "idle") == 0) {
        o->mode = MODE_IDLE;
    } else if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        exit(0);
    } else {
        usage(stderr);
        exit(2);
    }

    snprintf(net->host, sizeof net->host, "127.0.0.1");
    net->path = "/v1/realtime";
    net->handshake_ns = 10 * LG_NS;
    o->connections = 1;
    o->channel = "bench";
    o->rate = 100;
    o->duration = 10;
    o->payload = 64;
    o->inflight = 128;
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
            if (!*optarg || strlen(optarg) > 200 ||
                strspn(optarg, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                               "0123456789_@.:=-") != strlen(optarg))
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
        default: usage(stderr); exit(2);
        }
    }
    if (optind != argc)
        die("unexpected argument");
    if (!net->port || !token_file)
        die("--port and --token-file are required");
    if (parse_loopback(net->host, &net->dst) < 0)
        die("--host must be an address in 127.0.0.0/8");
    if (o->mode == MODE_PUB && o->pub_id + o->connections > LG_MAX_PUBLISHERS)
        die("publisher ids must stay below %d", LG_MAX_PUBLISHERS);
    o->token = read_token(token_file);
    net->token = o->token;
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
    g.net.on_line = on_line;
    if (lg_net_init(&g.net, g.o.connections) < 0)
        die("out of memory or descriptors");
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
    g.t0 = lg_now_ns();
    g.cpu0 = cpu_seconds();
}

static void teardown(void)
{
    lg_net_free(&g.net);
    OPENSSL_cleanse(g.o.token, strlen(g.o.token));
    free(g.o.token);
    close(g.sfd);
    close(g.tfd);
}

/* ---- main loop ---- */

static void housekeeping(int64_t now)
{
    int connecting = g.started < g.o.connections || g.net.inflight > 0;
    int64_t phase_end = g.t0 + (int64_t)(g.o.connect_timeout * (double)LG_NS);
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
    int64_t hard_end = g.t0 + 2 * LG_PUB_GRACE_NS +
                       (int64_t)((g.o.connect_timeout + g.o.duration + g.o.drain_max) *
                                 (double)LG_NS);
    while (!g.quit) {
        while (g.started < g.o.connections && g.net.inflight < g.o.inflight)
            lg_conn_start(&g.net, &g.net.conns[g.started++]);

        int more = 0;
        if (g.pub_running && !g.pub_done)
            more = pub_tick(lg_now_ns());

        int busy = g.draining || g.net.inflight || g.started < g.o.connections;
        int n = epoll_wait(g.net.ep, evs, (int)(sizeof evs / sizeof evs[0]),
                           more ? 0 : busy ? 10 : 100);
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
    } else if (g.o.mode == MODE_IDLE) {
        print_common("result", lg_now_ns());
        printf("}\n");
        fflush(stdout);
    }
    teardown();
    return 0;
}
