/* fanout.c - publish -> one frame per thread -> every subscriber's queue. */
#include "fanout.h"

#include <string.h>

#include "codec.h"
#include "hub.h"
#include "session.h"

/* Room for everything around `data` in a message frame: op, seq, ts, the
 * field names and the quotes (106 bytes at most). */
#define ENVELOPE_BYTES 128

/* Serializes the message with seq `seq`; NULL on ENOMEM. With `trim`,
 * the frame keeps at most LK_FRAME_SLACK_MAX unused bytes, what the
 * history charges for a frame it shares. */
static lk_frame *build(lk_span chan, const char *data, size_t dlen, const char *from,
                       uint64_t seq, int64_t ts, int trim)
{
    size_t from_len = from ? strlen(from) : 0;
    lk_span body = {data, dlen};
    /* Sized first for a name and sub that need no escapes (the usual
     * case), then for the worst case. */
    size_t caps[2] = {dlen + ENVELOPE_BYTES + chan.len + from_len,
                      dlen + ENVELOPE_BYTES + 6 * chan.len + 6 * from_len};
    for (int i = 0; i < 2; i++) {
        lk_frame *f = lk_frame_new(caps[i]);
        if (!f)
            return NULL;
        size_t n = lk_codec_message((char *)lk_frame_payload(f), caps[i], chan, seq, body,
                                    from, ts);
        if (n) {
            f->len = (uint32_t)n;
            f->seq = seq;
            if (trim && caps[i] - n > LK_FRAME_SLACK_MAX) {
                lk_frame *t = realloc(f, sizeof *f + LWS_PRE + n);
                if (t) /* else it only stays bigger */
                    f = t;
            }
            return f;
        }
        lk_frame_unref(f);
    }
    return NULL;
}

static void deliver(lk_broker *b, lk_sub *sub, lk_frame *f)
{
    uint64_t n = 0;
    int64_t now = sub ? lk_mono_us() : 0;
    for (; sub; sub = sub->cnext)
        if (f->seq > sub->from_seq && lk_session_enqueue(sub->owner, f, now) == 0)
            n++;
    LK_COUNT_ADD(b->metrics.messages_delivered, n);
}

int lk_fanout_publish(lk_broker *b, const char *ws, size_t ws_len, const char *name,
                      size_t name_len, const char *data, size_t len, const char *from,
                      lk_fanout_local *out)
{
    memset(out, 0, sizeof *out);
    if (len > b->scratch_cap)
        return LK_EINVAL;
    size_t dlen = lk_codec_minify(data, len, b->scratch);
    int64_t ts = lk_now_ms();
    size_t nthreads = lk_hub_threads(b->hub);
    int wake[LK_THREADS_MAX] = {0};
    uint64_t dropped = 0;

    lk_hub_lock(b->hub);
    lk_chanmap *map = lk_hub_channels(b->hub);
    lk_channel *ch = lk_chanmap_get(map, ws, ws_len, name, name_len);
    size_t nlen = 0;
    const char *cname = ch ? lk_channel_name(ch, &nlen) : NULL;
    lk_frame *f = ch ? build((lk_span){cname, nlen}, b->scratch, dlen, from,
                             lk_channel_seq(ch) + 1, ts, nthreads == 1 && b->cfg->history > 0)
                     : NULL;
    if (!f) {
        lk_hub_unlock(b->hub);
        return LK_ENOMEM;
    }
    lk_channel_next_seq(ch);
    if (b->cfg->history > 0 && nthreads == 1) {
        /* One thread: the history shares `f` (build() trimmed it). */
        lk_chanmap_record(map, ch, f);
    } else if (b->cfg->history > 0) {
        /* The history's own copy, exactly sized: it outlives this
         * thread's use of `f` and is freed under the lock by whichever
         * thread evicts it. */
        lk_frame *h = lk_frame_clone(f);
        if (h) {
            lk_chanmap_record(map, ch, h);
            lk_frame_unref(h);
        }
    }
    for (size_t t = 0; t < nthreads; t++) {
        if (t == b->thread || !lk_channel_subscribers(ch, t))
            continue;
        lk_frame *g = lk_frame_clone(f);
        int rc = g ? lk_hub_post(b->hub, t, ch, g) : -1;
        if (rc < 0)
            dropped++;
        else
            wake[t] = rc;
    }
    out->subs = lk_channel_subscribers(ch, b->thread);
    out->older = lk_hub_pending(b->hub, b->thread);
    lk_hub_unlock(b->hub);

    for (size_t t = 0; t < nthreads; t++)
        if (wake[t])
            lk_hub_wake(b->hub, t);
    out->f = f;
    out->seq = f->seq;
    LK_COUNT(b->metrics.messages_published);
    LK_COUNT_ADD(b->metrics.inbox_drops, dropped);
    return LK_OK;
}

/* Delivers taken entries. With `budget`, stops after about a third of a
 * send queue's worth and wakes this thread again for the rest: a batch
 * that piled up while the thread was busy then reaches each subscriber in
 * slices with writes in between, instead of all at once into queues sized
 * for what a connection may fall behind by. Returns 1 if entries remain. */
static int deliver_taken(lk_broker *b, size_t end, int budget)
{
    size_t max_msgs = (size_t)b->cfg->send_queue_messages / 3;
    size_t max_bytes = (size_t)b->cfg->send_queue_bytes / 3;
    size_t start = b->inbox_i, bytes = 0;
    lk_hub_entry *e = b->inbox;
    while (b->inbox_i < end) {
        lk_hub_entry *x = &e[b->inbox_i];
        if (budget && b->inbox_i > start &&
            (b->inbox_i - start >= max_msgs || bytes + x->f->len > max_bytes))
            break;
        bytes += x->f->len;
        deliver(b, lk_channel_subscribers(x->ch, b->thread), x->f);
        lk_frame_unref(x->f);
        b->inbox_i++;
    }
    lk_hub_done(b->hub, e + start, b->inbox_i - start);
    return b->inbox_i < b->inbox_n;
}

static void drain(lk_broker *b, int budget)
{
    if (b->inbox_i == b->inbox_n) {
        b->inbox_i = 0;
        b->inbox_n = lk_hub_take(b->hub, b->thread, &b->inbox);
    }
    if (deliver_taken(b, b->inbox_n, budget))
        lws_cancel_service(b->ctx);
}

void lk_fanout_drain(lk_broker *b)
{
    drain(b, 1);
}

void lk_fanout_finish(lk_broker *b, lk_fanout_local *l)
{
    /* Older messages first: the rest of the batch taken before this
     * publish, then the entries that were posted before it took the lock.
     * Later ones (higher seqs) wait. */
    deliver_taken(b, b->inbox_n, 0);
    if (l->older) {
        b->inbox_i = 0;
        b->inbox_n = lk_hub_take(b->hub, b->thread, &b->inbox);
        if (deliver_taken(b, l->older < b->inbox_n ? l->older : b->inbox_n, 0) ||
            b->inbox_i < b->inbox_n)
            lws_cancel_service(b->ctx);
    }
    /* Subscribers of this thread keep the channel alive, and only this
     * thread changes its list, so it is walked without the lock. */
    deliver(b, l->subs, l->f);
    lk_frame_unref(l->f);
    l->f = NULL;
}
