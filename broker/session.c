/* session.c - per-connection state and the latchkey.v1 ops. */
#include "session.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/rand.h>

#include "auth.h"
#include "codec.h"
#include "fanout.h"
#include "gate.h"
#include "hub.h"
#include "listener.h"

enum { S_NEW = 0, S_OPEN, S_CLOSING };
enum { T_NONE = 0, T_WARN, T_EXPIRE, T_CLOSE_ACK };

#define REPLY_BYTES 4096          /* any reply but `message` fits */
#define QUEUE_INITIAL 8
#define RATE_WINDOW_MS 10000
/* In-band `auth` costs an ES256 verification each; a renewal is needed about
 * once per token lifetime, so 5 per 10 s with a burst of 10 leaves honest
 * clients (and retries after a refusal) untouched while capping what one
 * connection can make the loop spend on signatures. */
#define AUTH_RATE_PER_S 0.5
#define AUTH_BURST 10.0
#define CLOSE_GRACE_SECS 5        /* then a peer that stopped reading is cut */
/* After our Close frame, how long the peer has to answer with its own;
 * shorter at shutdown, which must end within 2 s. */
#define CLOSE_ACK_US (1500 * LWS_US_PER_MS)
#define SHUTDOWN_CLOSE_ACK_US (500 * LWS_US_PER_MS)
#define VALIDITY_CONFIRM_US (1000 * LWS_US_PER_MS)
/* Extra reads per pass for a busy client: with LK_RX_CHUNK + LWS_PRE =
 * 244 bytes each, 16 make ~4 KiB. */
#define LK_READ_MORE_PASSES 16
_Static_assert(LK_HOT_MAX < 256, "lk_session.hot holds a slot in a byte");

/* Every open connection carries one of these in lws's per-connection
 * data: the small fields are packed together so the whole stays small. */
struct lk_session {
    int kind;                     /* LK_CONN_WS; first, see broker.h */
    uint32_t qcap, qhead, qlen;
    int16_t close_code;
    uint8_t state;
    uint8_t timer;
    uint8_t cleaned : 1;
    uint8_t counted_open : 1;
    uint8_t close_sent : 1;       /* lws owns the close handshake now */
    uint8_t hot;                  /* 1 + its slot in b->hot; 0: none */
    char conn_id[17];
    struct lws *wsi;
    lk_broker *b;
    lk_session *prev, *next;
    lk_claims *claims;

    lk_frame **q;                 /* ring of queued frames */
    int64_t *qt;                  /* their enqueue times (lk_mono_us; 0 = not a message) */
    size_t qbytes;

    char *rx;                     /* only while a fragmented message arrives */
    size_t rxlen, rxcap;

    lk_sublist subs;

    double tokens;                /* publish token bucket */
    int64_t bucket_us;
    double auth_tokens;           /* `auth` token bucket */
    int64_t auth_bucket_us;
    int64_t refused_since_ms;     /* start of the current 10 s window */
    uint64_t refused;

    lk_timer tm;
    int64_t confirmed_us;         /* last lws_validity_confirmed */
    const char *close_reason;     /* a string literal */
};

size_t lk_session_size(void)
{
    return sizeof(lk_session);
}

/* ------------------------------------------------------------ queue */

static void queue_clear(lk_session *s)
{
    for (uint32_t i = 0; i < s->qlen; i++)
        lk_frame_unref(s->q[(s->qhead + i) % s->qcap]);
    free(s->q);
    free(s->qt);
    s->q = NULL;
    s->qt = NULL;
    s->qcap = s->qhead = s->qlen = 0;
    s->qbytes = 0;
}

static int queue_grow(lk_session *s)
{
    uint32_t ncap = s->qcap ? s->qcap * 2 : QUEUE_INITIAL;
    lk_frame **nq = malloc(ncap * sizeof *nq);
    int64_t *nqt = nq ? malloc(ncap * sizeof *nqt) : NULL;
    if (!nqt) {
        free(nq);
        return -1;
    }
    for (uint32_t i = 0; i < s->qlen; i++) {
        nq[i] = s->q[(s->qhead + i) % s->qcap];
        nqt[i] = s->qt[(s->qhead + i) % s->qcap];
    }
    free(s->q);
    free(s->qt);
    s->q = nq;
    s->qt = nqt;
    s->qcap = ncap;
    s->qhead = 0;
    return 0;
}

/* Called once the first n frames are written: each message frame's time
 * in the queue goes into the delivery latency histogram. */
static void queue_pop(lk_session *s, uint32_t n)
{
    int64_t now = lk_mono_us();
    for (uint32_t i = 0; i < n; i++) {
        lk_frame *f = s->q[s->qhead];
        if (s->qt[s->qhead])
            lk_metrics_observe_delivery(&s->b->metrics, now - s->qt[s->qhead]);
        s->qbytes -= f->len;
        lk_frame_unref(f);
        s->qhead = (s->qhead + 1) % s->qcap;
        s->qlen--;
    }
    if (!s->qlen && (s->qcap > QUEUE_INITIAL || !s->subs.count)) {
        /* Give back a queue that grew during a burst, and the queue of a
         * session that subscribes to nothing: it only ever carries a few
         * replies, and idle connections should cost as little as
         * possible. A subscriber keeps its ring, so deliveries allocate
         * nothing. */
        free(s->q);
        free(s->qt);
        s->q = NULL;
        s->qt = NULL;
        s->qcap = s->qhead = 0;
    }
}

static void begin_close(lk_session *s, int code, const char *reason);

static void slow_consumer(lk_session *s)
{
    lk_broker *b = s->b;
    LK_COUNT(b->metrics.slow_consumer_drops);
    lk_logline l;
    if (lk_log_begin(&l, b->log, LK_LOG_WARN, "slow consumer dropped")) {
        lk_log_str(&l, "conn_id", s->conn_id);
        lk_log_int(&l, "queued_messages", s->qlen);
        lk_log_int(&l, "queued_bytes", (int64_t)s->qbytes);
        lk_log_end(&l);
    }
    queue_clear(s);
    begin_close(s, 4408, "slow consumer");
}

/* `final` frames (the error before a close) bypass the limits and the
 * closing state. `now` (lk_mono_us) stamps message frames for the latency
 * histogram; a fan-out reads the clock once for all its subscribers. */
static int queue_push_at(lk_session *s, lk_frame *f, int final, int64_t now)
{
    if (s->state == S_CLOSING && !final)
        return -1;
    const lk_config *cfg = s->b->cfg;
    if (!final && s->qlen &&
        ((int64_t)s->qlen >= cfg->send_queue_messages ||
         (int64_t)(s->qbytes + f->len) > cfg->send_queue_bytes)) {
        slow_consumer(s);
        return -1;
    }
    if (s->qlen == s->qcap && queue_grow(s)) {
        if (!final)
            slow_consumer(s);
        return -1;
    }
    s->q[(s->qhead + s->qlen) % s->qcap] = lk_frame_ref(f);
    s->qt[(s->qhead + s->qlen) % s->qcap] = f->seq ? now : 0;
    s->qbytes += f->len;
    /* WRITEABLE asks again while anything is left, so only a queue that
     * was empty needs to ask. */
    if (s->qlen++ == 0)
        lws_callback_on_writable(s->wsi);
    return 0;
}

static int queue_push(lk_session *s, lk_frame *f, int final)
{
    return queue_push_at(s, f, final, f->seq ? lk_mono_us() : 0);
}

int lk_session_enqueue(lk_session *s, lk_frame *f, int64_t now)
{
    return queue_push_at(s, f, 0, now);
}

/* Copies a reply into its own frame and queues it. */
static int send_text(lk_session *s, const char *text, size_t n, int final)
{
    if (!n)
        return -1;
    lk_frame *f = lk_frame_new(n);
    if (!f)
        return -1;
    memcpy(lk_frame_payload(f), text, n);
    f->len = (uint32_t)n;
    int rc = queue_push(s, f, final);
    lk_frame_unref(f);
    return rc;
}

static void send_error(lk_session *s, int has_id, int64_t id, const char *code,
                       const char *msg)
{
    char out[REPLY_BYTES];
    send_text(s, out, lk_codec_error(out, sizeof out, has_id, id, code, msg), 0);
}

/* ------------------------------------------------------------ closing */

/* `reason` must be a string literal: the session keeps the pointer. */
static void begin_close(lk_session *s, int code, const char *reason)
{
    if (s->state == S_CLOSING)
        return;
    s->state = S_CLOSING;
    s->close_code = (int16_t)code;
    s->close_reason = reason;
    lk_timers_cancel(&s->b->timers, &s->tm);
    s->timer = T_NONE;
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_GRACE_SECS);
    lws_callback_on_writable(s->wsi);
}

/* Sends one `error` frame, then closes with `code`. */
static void close_with_error(lk_session *s, int code, const char *reason,
                             int has_id, int64_t id, const char *err_code,
                             const char *msg)
{
    if (s->state == S_CLOSING)
        return;
    char out[REPLY_BYTES];
    send_text(s, out, lk_codec_error(out, sizeof out, has_id, id, err_code, msg), 1);
    begin_close(s, code, reason);
}

static void protocol_error(lk_session *s, int code, const char *msg)
{
    LK_COUNT(s->b->metrics.protocol_errors);
    lk_logline l;
    if (lk_log_begin(&l, s->b->log, LK_LOG_DEBUG, "protocol error")) {
        lk_log_str(&l, "conn_id", s->conn_id);
        lk_log_int(&l, "close", code);
        lk_log_str(&l, "error", msg);
        lk_log_end(&l);
    }
    close_with_error(s, code, code == 4413 ? "frame too large" : "protocol error",
                     0, 0, code == 4413 ? "too_large" : "bad_request", msg);
}

/* ------------------------------------------------------------ timers */

static void on_timer(lk_timer *t);

/* `at_us` is wall-clock time (token times are); the heap runs on the
 * monotonic clock. Without memory for the heap the session is closed: a
 * token must not outlive its exp for want of a timer. */
static void schedule_timer(lk_session *s, int64_t at_us)
{
    if (lk_timers_arm(&s->b->timers, &s->tm, lk_mono_us() + (at_us - lk_now_us()),
                      on_timer) != 0)
        close_with_error(s, 1011, "out of memory", 0, 0, "internal", "out of memory");
}

static void send_expiring(lk_session *s)
{
    int64_t left = lk_claims_exp(s->claims) - lk_now_us() / 1000000;
    char out[128];
    send_text(s, out, lk_codec_token_expiring(out, sizeof out, left < 0 ? 0 : left), 0);
}

/* token_expiring 30 s before exp (half the lifetime for tokens under a
 * minute), then the close at exp. A warning already due is sent now. */
static void arm_expiry(lk_session *s)
{
    int64_t exp = lk_claims_exp(s->claims);
    int64_t ttl = exp - lk_claims_iat(s->claims);
    int64_t exp_us = exp * 1000000;
    int64_t warn_us = ttl < 60 ? exp_us - ttl * 500000 : exp_us - 30 * 1000000LL;
    lk_timers_cancel(&s->b->timers, &s->tm);
    if (lk_now_us() < warn_us) {
        s->timer = T_WARN;
        schedule_timer(s, warn_us);
        return;
    }
    send_expiring(s);
    s->timer = T_EXPIRE;
    schedule_timer(s, exp_us);
}

static void on_timer(lk_timer *t)
{
    lk_session *s = lws_container_of(t, lk_session, tm);
    if (s->timer == T_CLOSE_ACK) {
        /* The peer never answered our Close: drop the connection. */
        s->timer = T_NONE;
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_ACK, LWS_TO_KILL_ASYNC);
        return;
    }
    if (s->state != S_OPEN)
        return;
    if (s->timer == T_WARN) {
        send_expiring(s);
        s->timer = T_EXPIRE;
        schedule_timer(s, lk_claims_exp(s->claims) * 1000000);
        return;
    }
    s->timer = T_NONE;
    LK_COUNT(s->b->metrics.expiry_closes);
    lk_logline l;
    if (lk_log_begin(&l, s->b->log, LK_LOG_INFO, "token expired")) {
        lk_log_str(&l, "conn_id", s->conn_id);
        lk_log_str(&l, "kid", lk_claims_kid(s->claims));
        lk_log_end(&l);
    }
    close_with_error(s, 4401, "token expired", 0, 0, "token_expired",
                     "token expired");
}

/* ------------------------------------------------------------ connect */

static void log_peer(lk_logline *l, struct lws *wsi)
{
    char ip[64];
    const char *p = lk_gate_peer(wsi, ip, sizeof ip);
    lk_log_str(l, "ip", p ? p : "");
}

static void refuse(lk_session *s, lk_refusal why, const char *code,
                   const char *msg, int close_code)
{
    lk_broker *b = s->b;
    LK_COUNT(b->metrics.refused[why]);
    lk_logline l;
    if (lk_log_begin(&l, b->log, LK_LOG_INFO, "connect refused")) {
        lk_log_str(&l, "conn_id", s->conn_id);
        lk_log_str(&l, "reason", lk_refusal_name(why));
        lk_log_str(&l, "error", msg);
        lk_log_int(&l, "close", close_code);
        log_peer(&l, s->wsi);
        lk_log_end(&l);
    }
    close_with_error(s, close_code, code, 0, 0, code, msg);
}

static void on_established(lk_broker *b, lk_session *s, struct lws *wsi)
{
    s->kind = LK_CONN_WS;
    s->wsi = wsi;
    s->b = b;
    s->next = b->sessions;
    if (b->sessions)
        b->sessions->prev = s;
    b->sessions = s;
    b->nsessions++;

    unsigned char rnd[8];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        memset(rnd, 0, sizeof rnd);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++) {
        s->conn_id[2 * i] = hex[rnd[i] >> 4];
        s->conn_id[2 * i + 1] = hex[rnd[i] & 15];
    }
    s->conn_id[16] = '\0';

    if (b->stopping) {
        begin_close(s, 1001, "broker shutting down");
        return;
    }
    if (!lk_auth_origin_ok(b, wsi)) {
        refuse(s, LK_REFUSED_ORIGIN, "forbidden", "origin not allowed", 4403);
        return;
    }
    const char *tok;
    size_t tok_len;
    if (!lk_auth_find_token(wsi, b->scratch, b->scratch_cap, &tok, &tok_len)) {
        refuse(s, LK_REFUSED_UNAUTHORIZED, "unauthorized", "missing token", 4401);
        return;
    }
    lk_error err = {0};
    lk_claims *claims = NULL;
    int rc = lk_auth_verify(b, tok, tok_len, &claims, &err);
    if (rc != LK_OK) {
        lk_refusal why = rc == LK_ETOKEN_EXPIRED ? LK_REFUSED_TOKEN_EXPIRED
                         : lk_auth_close_code(rc) == 4403 ? LK_REFUSED_FORBIDDEN
                                                          : LK_REFUSED_UNAUTHORIZED;
        refuse(s, why, lk_auth_error_code(rc),
               err.message[0] ? err.message : lk_strerror(rc),
               lk_auth_close_code(rc));
        return;
    }

    s->claims = claims;
    s->state = S_OPEN;
    lk_keystore_mark_used(b->keys, lk_claims_kid(claims));
    s->counted_open = 1;
    LK_COUNT(b->open_sessions);
    LK_COUNT(b->metrics.connections_total);
    s->tokens = (double)b->cfg->publish_burst;
    s->bucket_us = lk_mono_us();
    s->auth_tokens = AUTH_BURST;
    s->auth_bucket_us = s->bucket_us;

    char out[REPLY_BYTES];
    send_text(s, out,
              lk_codec_welcome(out, sizeof out, s->conn_id, lk_claims_sub(claims),
                               lk_claims_workspace(claims), lk_claims_exp(claims),
                               lk_now_ms(), (size_t)b->cfg->max_frame), 0);
    arm_expiry(s);

    lk_logline l;
    if (lk_log_begin(&l, b->log, LK_LOG_INFO, "connect accepted")) {
        lk_log_str(&l, "conn_id", s->conn_id);
        lk_log_str(&l, "kid", lk_claims_kid(claims));
        lk_log_str(&l, "workspace", lk_claims_workspace(claims));
        lk_log_str(&l, "sub", lk_claims_sub(claims));
        lk_log_int(&l, "expires_at", lk_claims_exp(claims));
        log_peer(&l, wsi);
        lk_log_end(&l);
    }
}

/* ------------------------------------------------------------ ops */

static const char *workspace_of(const lk_session *s, size_t *len)
{
    const char *ws = lk_claims_workspace(s->claims);
    if (!ws)
        ws = "";
    *len = strlen(ws);
    return ws;
}

/* Replays held messages into the queue: the newest ones after `since`
 * that fit in half of the free send queue, so a history deeper than the
 * queue limits never closes the subscriber with 4408 (older ones are
 * skipped; the client sees the gap in seq). Lock held: the frames are
 * copied, since the history's own belong to the hub. */
static size_t copy_replay(lk_session *s, lk_channel *ch, uint64_t since, lk_frame ***out)
{
    const lk_config *cfg = s->b->cfg;
    int64_t room_msgs = (cfg->send_queue_messages - (int64_t)s->qlen) / 2;
    int64_t room_bytes = (cfg->send_queue_bytes - (int64_t)s->qbytes) / 2;
    size_t n = lk_channel_history_len(ch), first = n;
    int64_t msgs = 0, bytes = 0;
    *out = NULL;
    while (first > 0) {
        lk_frame *f = lk_channel_history_at(ch, first - 1);
        if (f->seq <= since || msgs + 1 > room_msgs || bytes + (int64_t)f->len > room_bytes)
            break;
        msgs++;
        bytes += (int64_t)f->len;
        first--;
    }
    if (first == n || !(*out = malloc((n - first) * sizeof **out)))
        return 0;
    size_t k = 0;
    for (size_t i = first; i < n; i++) {
        lk_frame *c = lk_frame_clone(lk_channel_history_at(ch, i));
        if (!c)
            break; /* the client sees the rest as a gap */
        (*out)[k++] = c;
    }
    return k;
}

static void op_subscribe(lk_session *s, const lk_request *req)
{
    lk_broker *b = s->b;
    char msg[320];
    if (!lk_cap_allows(lk_claims_cap(s->claims), LK_ACT_SUBSCRIBE, req->channel.p,
                       req->channel.len)) {
        snprintf(msg, sizeof msg, "capability does not allow realtime:subscribe on %.*s",
                 (int)req->channel.len, req->channel.p);
        send_error(s, req->has_id, req->id, "forbidden", msg);
        return;
    }
    size_t ws_len;
    const char *ws = workspace_of(s, &ws_len);
    const char *err = NULL;
    uint64_t seq = 0;
    lk_frame **replay = NULL;
    size_t nreplay = 0;
    lk_hub_lock(b->hub);
    lk_chanmap *map = lk_hub_channels(b->hub);
    lk_channel *ch = lk_chanmap_find(map, ws, ws_len, req->channel.p, req->channel.len);
    if (!ch || !lk_sublist_find(&s->subs, ch)) {
        if ((int64_t)s->subs.count >= b->cfg->max_subscriptions)
            err = "limit";
        else if (!ch)
            ch = lk_chanmap_get(map, ws, ws_len, req->channel.p, req->channel.len);
        if (!err && (!ch || !lk_chanmap_subscribe(map, ch, b->thread, s, &s->subs)))
            err = "out of memory";
    }
    if (!err) {
        seq = lk_channel_seq(ch);
        if (req->has_since)
            nreplay = copy_replay(s, ch, req->since, &replay);
    }
    lk_hub_unlock(b->hub);
    if (err) {
        if (strcmp(err, "limit") == 0) {
            snprintf(msg, sizeof msg, "subscription limit reached (%" PRId64 ")",
                     b->cfg->max_subscriptions);
            send_error(s, req->has_id, req->id, "bad_request", msg);
        } else {
            send_error(s, req->has_id, req->id, "internal", err);
        }
        return;
    }
    char out[REPLY_BYTES];
    send_text(s, out, lk_codec_subscribed(out, sizeof out, req->has_id, req->id,
                                          req->channel, seq), 0);
    int ok = 1;
    for (size_t i = 0; i < nreplay; i++) {
        if (ok && queue_push(s, replay[i], 0))
            ok = 0;
        lk_frame_unref(replay[i]);
    }
    free(replay);
}

static void op_unsubscribe(lk_session *s, const lk_request *req)
{
    lk_broker *b = s->b;
    size_t ws_len;
    const char *ws = workspace_of(s, &ws_len);
    lk_hub_lock(b->hub);
    lk_chanmap *map = lk_hub_channels(b->hub);
    lk_channel *ch = lk_chanmap_find(map, ws, ws_len, req->channel.p, req->channel.len);
    lk_sub *sub = ch ? lk_sublist_find(&s->subs, ch) : NULL;
    if (sub)
        lk_chanmap_unsubscribe(map, &s->subs, sub);
    lk_hub_unlock(b->hub);
    if (!sub) {
        char msg[320];
        snprintf(msg, sizeof msg, "not subscribed to %.*s", (int)req->channel.len,
                 req->channel.p);
        send_error(s, req->has_id, req->id, "not_subscribed", msg);
        return;
    }
    char out[REPLY_BYTES];
    send_text(s, out, lk_codec_unsubscribed(out, sizeof out, req->has_id, req->id,
                                            req->channel, NULL), 0);
}

/* Token bucket: `publish_rate` per second, up to `publish_burst`. */
static int rate_ok(lk_session *s)
{
    const lk_config *cfg = s->b->cfg;
    if (!cfg->publish_rate)
        return 1;
    int64_t now = lk_mono_us();
    s->tokens += (double)(now - s->bucket_us) * (double)cfg->publish_rate / 1e6;
    s->bucket_us = now;
    if (s->tokens > (double)cfg->publish_burst)
        s->tokens = (double)cfg->publish_burst;
    if (s->tokens >= 1.0) {
        s->tokens -= 1.0;
        return 1;
    }
    return 0;
}

static int auth_rate_ok(lk_session *s)
{
    int64_t now = lk_mono_us();
    s->auth_tokens += (double)(now - s->auth_bucket_us) * AUTH_RATE_PER_S / 1e6;
    s->auth_bucket_us = now;
    if (s->auth_tokens > AUTH_BURST)
        s->auth_tokens = AUTH_BURST;
    if (s->auth_tokens >= 1.0) {
        s->auth_tokens -= 1.0;
        return 1;
    }
    return 0;
}

/* Refusals of publish and auth count toward the same 4429 rule. */
static void rate_limited(lk_session *s, const lk_request *req, const char *msg)
{
    lk_broker *b = s->b;
    int64_t now = lk_mono_us() / 1000;
    if (!s->refused || now - s->refused_since_ms >= RATE_WINDOW_MS) {
        s->refused_since_ms = now;
        s->refused = 0;
    }
    s->refused++;
    int64_t limit = b->cfg->rate_limit_close;
    if (limit && s->refused >= (uint64_t)limit) {
        LK_COUNT(b->metrics.rate_limit_closes);
        lk_logline l;
        if (lk_log_begin(&l, b->log, LK_LOG_WARN, "rate limit close")) {
            lk_log_str(&l, "conn_id", s->conn_id);
            lk_log_int(&l, "refused", (int64_t)s->refused);
            lk_log_end(&l);
        }
        close_with_error(s, 4429, "rate limited", req->has_id, req->id,
                         "rate_limited", msg);
        return;
    }
    send_error(s, req->has_id, req->id, "rate_limited", msg);
}

static void op_publish(lk_session *s, const lk_request *req)
{
    lk_broker *b = s->b;
    if (!lk_cap_allows(lk_claims_cap(s->claims), LK_ACT_PUBLISH, req->channel.p,
                       req->channel.len)) {
        char msg[320];
        snprintf(msg, sizeof msg, "capability does not allow realtime:publish on %.*s",
                 (int)req->channel.len, req->channel.p);
        send_error(s, req->has_id, req->id, "forbidden", msg);
        return;
    }
    if (!rate_ok(s)) {
        LK_COUNT(b->metrics.rate_limited);
        rate_limited(s, req, "publish rate exceeded");
        return;
    }
    size_t ws_len;
    const char *ws = workspace_of(s, &ws_len);
    lk_fanout_local loc;
    if (lk_fanout_publish(b, ws, ws_len, req->channel.p, req->channel.len, req->data.p,
                          req->data.len, lk_claims_sub(s->claims), &loc) != LK_OK) {
        send_error(s, req->has_id, req->id, "internal", "publish failed");
        return;
    }
    /* The ack goes ahead of the publisher's own copy of the message. */
    if (req->has_id) {
        char out[REPLY_BYTES];
        send_text(s, out, lk_codec_ack(out, sizeof out, 1, req->id, req->channel, loc.seq),
                  0);
    }
    lk_fanout_finish(b, &loc);
}

static int same_str(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static void op_auth(lk_session *s, const lk_request *req)
{
    lk_broker *b = s->b;
    lk_error err = {0};
    lk_claims *nc = NULL;
    if (!auth_rate_ok(s)) {
        rate_limited(s, req, "auth rate exceeded");
        return;
    }
    int rc = lk_auth_verify(b, req->token.p, req->token.len, &nc, &err);
    if (rc != LK_OK) {
        send_error(s, req->has_id, req->id, lk_auth_error_code(rc),
                   err.message[0] ? err.message : lk_strerror(rc));
        return;
    }
    if (!same_str(lk_claims_workspace(nc), lk_claims_workspace(s->claims))) {
        lk_claims_destroy(nc);
        send_error(s, req->has_id, req->id, "forbidden",
                   "token belongs to another workspace");
        return;
    }
    if (!same_str(lk_claims_sub(nc), lk_claims_sub(s->claims))) {
        lk_claims_destroy(nc);
        send_error(s, req->has_id, req->id, "forbidden",
                   "token sub differs from the connection's");
        return;
    }
    const lk_cap *cap = lk_claims_cap(nc);
    char out[REPLY_BYTES];
    lk_sub *sub = s->subs.head;
    while (sub) {
        lk_sub *next = sub->snext;
        size_t nlen;
        const char *name = lk_channel_name(sub->ch, &nlen);
        if (!lk_cap_allows(cap, LK_ACT_SUBSCRIBE, name, nlen)) {
            lk_span chan = {name, nlen};
            send_text(s, out, lk_codec_unsubscribed(out, sizeof out, 0, 0, chan,
                                                    "capability_revoked"), 0);
            lk_hub_lock(b->hub);
            lk_chanmap_unsubscribe(lk_hub_channels(b->hub), &s->subs, sub);
            lk_hub_unlock(b->hub);
        }
        sub = next;
    }
    lk_claims *old = s->claims;
    s->claims = nc;
    lk_keystore_mark_used(b->keys, lk_claims_kid(nc));
    lk_claims_destroy(old);
    send_text(s, out, lk_codec_authed(out, sizeof out, req->has_id, req->id,
                                      lk_claims_exp(nc)), 0);
    arm_expiry(s);
    lk_logline l;
    if (lk_log_begin(&l, b->log, LK_LOG_DEBUG, "token renewed")) {
        lk_log_str(&l, "conn_id", s->conn_id);
        lk_log_str(&l, "kid", lk_claims_kid(nc));
        lk_log_int(&l, "expires_at", lk_claims_exp(nc));
        lk_log_end(&l);
    }
}

static void handle_message(lk_session *s, const char *buf, size_t len)
{
    lk_request req;
    char why[160];
    why[0] = '\0';
    memset(&req, 0, sizeof req);
    lk_parse_rc rc = lk_codec_parse(buf, len, &req, why, sizeof why);
    if (rc == LK_PARSE_PROTOCOL) {
        protocol_error(s, 4400, why[0] ? why : "protocol error");
        return;
    }
    if (rc != LK_PARSE_OK) {
        send_error(s, req.has_id, req.id, "bad_request", why[0] ? why : "bad request");
        return;
    }
    switch (req.op) {
    case LK_OP_SUBSCRIBE:
        op_subscribe(s, &req);
        break;
    case LK_OP_UNSUBSCRIBE:
        op_unsubscribe(s, &req);
        break;
    case LK_OP_PUBLISH:
        op_publish(s, &req);
        break;
    case LK_OP_AUTH:
        op_auth(s, &req);
        break;
    case LK_OP_PING: {
        char out[128];
        send_text(s, out, lk_codec_pong(out, sizeof out, req.has_id, req.id), 0);
        break;
    }
    default:
        protocol_error(s, 4400, "unknown op");
        break;
    }
}

/* Messages arrive in pieces when they span several frames or exceed the
 * rx buffer; single-piece messages are handled in place, the rest are
 * reassembled in a buffer that exists only while they arrive. */
static void on_receive(lk_session *s, struct lws *wsi, const char *in, size_t len)
{
    if (s->state != S_OPEN)
        return;
    lk_broker *b = s->b;
    if (!s->hot && b->nhot < LK_HOT_MAX) {
        b->hot[b->nhot] = (struct lk_hot){s, 0};
        s->hot = (uint8_t)++b->nhot;
    }
    if (s->hot)
        b->hot[s->hot - 1].bytes += len;
    /* Data proves the peer alive, so lws need not ping it; but lws
     * re-files the connection's ping timer in a sorted list on each call,
     * a walk over every connection, so say it once a second at most. */
    int64_t now = lk_mono_us();
    if (now - s->confirmed_us >= VALIDITY_CONFIRM_US) {
        s->confirmed_us = now;
        lws_validity_confirmed(wsi);
    }
    if (lws_frame_is_binary(wsi)) {
        protocol_error(s, 4400, "binary frames are not supported");
        return;
    }
    size_t max = (size_t)s->b->cfg->max_frame;
    int first = lws_is_first_fragment(wsi);
    int final = lws_is_final_fragment(wsi);
    size_t remaining = lws_remaining_packet_payload(wsi);
    if (first) {
        s->rxlen = 0;
        if (final) {
            if (len > max) {
                protocol_error(s, 4413, "frame larger than max_frame");
                return;
            }
            handle_message(s, in, len);
            return;
        }
    }
    if (s->rxlen + len + remaining > max) {
        free(s->rx);
        s->rx = NULL;
        s->rxlen = s->rxcap = 0;
        protocol_error(s, 4413, "frame larger than max_frame");
        return;
    }
    size_t need = s->rxlen + len + remaining;
    if (need > s->rxcap) {
        size_t ncap = s->rxcap ? s->rxcap * 2 : 4096;
        while (ncap < need)
            ncap *= 2;
        if (ncap > max)
            ncap = max;
        char *nrx = realloc(s->rx, ncap);
        if (!nrx) {
            close_with_error(s, 1011, "out of memory", 0, 0, "internal", "out of memory");
            return;
        }
        s->rx = nrx;
        s->rxcap = ncap;
    }
    memcpy(s->rx + s->rxlen, in, len);
    s->rxlen += len;
    if (!final)
        return;
    handle_message(s, s->rx, s->rxlen);
    free(s->rx);
    s->rx = NULL;
    s->rxlen = s->rxcap = 0;
}

/* ------------------------------------------------------------ writing */

/* Hands the close to lws, which then sends our Close frame and keeps
 * reading (dropping data frames) until the peer's Close arrives, as RFC
 * 6455 7.1.1 wants: dropping TCP at once would reset a peer that is still
 * sending, and a reset loses the close code we just sent. lws 4.1.6 goes
 * on asking for WRITEABLE while it waits (POLLOUT stays armed after the
 * Close is written); a second -1 then would make it drop the connection
 * at once, so from here on WRITEABLE does nothing. lws waits 5 s for the
 * peer's Close; a timer cuts that short. */
static int start_close_handshake(lk_session *s, struct lws *wsi)
{
    lws_close_reason(wsi, (enum lws_close_status)s->close_code,
                     (unsigned char *)s->close_reason, strlen(s->close_reason));
    s->close_sent = 1;
    s->timer = T_CLOSE_ACK;
    /* Without memory for it, lws's own 5 s wait still ends the close. */
    (void)lk_timers_arm(&s->b->timers, &s->tm,
                        lk_mono_us() + (s->b->stopping ? SHUTDOWN_CLOSE_ACK_US : CLOSE_ACK_US),
                        on_timer);
    return -1;
}

static int on_writeable(lk_session *s, struct lws *wsi)
{
    lk_broker *b = s->b;
    if (s->close_sent)
        return 0;
    if (lws_partial_buffered(wsi)) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    if (!s->qlen) {
        if (s->state != S_CLOSING)
            return 0;
        return start_close_handshake(s, wsi);
    }
    lk_frame *f = s->q[s->qhead];
    unsigned char *p = lk_frame_payload(f);
    size_t n = f->len;
    uint32_t count = 1;
    if (s->qlen > 1 && f->len < LK_PACK_BYTES) {
        /* Several messages waiting: pack them into one text frame,
         * newline-separated, as the SPEC allows. */
        unsigned char *out = b->pack + LWS_PRE;
        memcpy(out, p, f->len);
        n = f->len;
        while (count < s->qlen) {
            lk_frame *g = s->q[(s->qhead + count) % s->qcap];
            if (n + 1 + g->len > LK_PACK_BYTES)
                break;
            out[n++] = '\n';
            memcpy(out + n, lk_frame_payload(g), g->len);
            n += g->len;
            count++;
        }
        if (count > 1)
            p = out;
        else
            n = f->len;
    }
    int w = lws_write(wsi, p, n, LWS_WRITE_TEXT);
    if (w < 0)
        return -1;
    LK_COUNT_ADD(b->metrics.bytes_out, n);
    queue_pop(s, count);
    if (s->qlen || s->state == S_CLOSING)
        lws_callback_on_writable(wsi);
    return 0;
}

/* ------------------------------------------------------------ lifecycle */

void lk_session_cleanup(lk_broker *b, void *user)
{
    lk_session *s = user;
    if (!s || s->kind != LK_CONN_WS || s->cleaned)
        return;
    s->cleaned = 1;
    if (s->hot)
        b->hot[s->hot - 1].s = NULL;
    lk_timers_cancel(&b->timers, &s->tm);
    if (s->subs.head) {
        lk_hub_lock(b->hub);
        lk_chanmap_unsubscribe_all(lk_hub_channels(b->hub), &s->subs);
        lk_hub_unlock(b->hub);
    }
    queue_clear(s);
    free(s->rx);
    s->rx = NULL;
    if (s->prev)
        s->prev->next = s->next;
    else
        b->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    b->nsessions--;
    if (s->counted_open)
        LK_COUNT_ADD(b->open_sessions, -1);
    lk_logline l;
    if (lk_log_begin(&l, b->log, LK_LOG_DEBUG, "disconnected")) {
        lk_log_str(&l, "conn_id", s->conn_id);
        if (s->close_code)
            lk_log_int(&l, "close", s->close_code);
        lk_log_end(&l);
    }
    lk_claims_destroy(s->claims);
    s->claims = NULL;
}

int lk_session_callback(lk_broker *b, struct lws *wsi,
                        enum lws_callback_reasons reason, void *user,
                        void *in, size_t len)
{
    lk_session *s = user;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        on_established(b, s, wsi);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        on_receive(s, wsi, in, len);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return on_writeable(s, wsi);
    case LWS_CALLBACK_CLOSED:
        lk_session_cleanup(b, s);
        return 0;
    default:
        return 0;
    }
}

/* lws reads at most LK_RX_CHUNK + LWS_PRE bytes from a connection per
 * service pass, and a pass polls every descriptor. A client that sent
 * more than a small message's worth in the pass, a busy publisher or a
 * large message, is read on here, up to about the 4 KiB a pass would read
 * with lws's default buffer, so it is not throttled to a few messages per
 * poll over all connections, and its subscribers still get batches.
 * Clients sending now and then cost no extra read. */
void lk_sessions_read_more(lk_broker *b)
{
    for (int pass = 0; pass < LK_READ_MORE_PASSES && b->nhot; pass++) {
        size_t n = b->nhot;
        for (size_t i = 0; i < n; i++) {
            lk_session *s = b->hot[i].s;
            if (!s)
                continue;
            b->hot[i].s = NULL;
            s->hot = 0;
            int fd = lws_get_socket_fd(s->wsi);
            if (b->hot[i].bytes < LK_RX_CHUNK / 2 || s->state != S_OPEN || fd < 0)
                continue;
            /* As if poll() said readable. lws reads (nothing if nothing is
             * waiting), which may close this session (then it is gone) or
             * put it back in b->hot, past n, if messages came in. */
            struct lws_pollfd pfd = {.fd = fd, .events = POLLIN, .revents = POLLIN};
            lws_service_fd(b->ctx, &pfd);
        }
        size_t k = 0;
        for (size_t i = n; i < b->nhot; i++) {
            if (!b->hot[i].s)
                continue;
            b->hot[k++] = b->hot[i];
            b->hot[i].s->hot = (uint8_t)k;
        }
        b->nhot = k;
    }
    for (size_t i = 0; i < b->nhot; i++)
        if (b->hot[i].s)
            b->hot[i].s->hot = 0;
    b->nhot = 0;
}

void lk_sessions_recheck_keys(lk_broker *b)
{
    for (lk_session *s = b->sessions; s; s = s->next) {
        if (s->state != S_OPEN || lk_keystore_active(b->keys, lk_claims_kid(s->claims)))
            continue;
        LK_COUNT(b->metrics.revocation_kicks);
        lk_logline l;
        if (lk_log_begin(&l, b->log, LK_LOG_WARN, "revocation kick")) {
            lk_log_str(&l, "conn_id", s->conn_id);
            lk_log_str(&l, "kid", lk_claims_kid(s->claims));
            lk_log_str(&l, "workspace", lk_claims_workspace(s->claims));
            lk_log_end(&l);
        }
        close_with_error(s, 4403, "key revoked", 0, 0, "forbidden", "API key revoked");
    }
}

void lk_sessions_shutdown(lk_broker *b)
{
    for (lk_session *s = b->sessions; s; s = s->next)
        begin_close(s, 1001, "broker shutting down");
}
