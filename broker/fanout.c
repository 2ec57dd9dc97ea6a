/* fanout.c - publish -> one shared frame -> every subscriber's queue. */
#include "fanout.h"

#include <string.h>

#include "codec.h"
#include "session.h"

/* Room for everything around `data` in a message frame: op, seq, ts, the
 * field names and the quotes (106 bytes at most). */
#define ENVELOPE_BYTES 128

lk_frame *lk_fanout_build(lk_broker *b, lk_channel *ch, const char *data,
                          size_t len, const char *from)
{
    if (len > b->scratch_cap)
        return NULL;
    size_t dlen = lk_codec_minify(data, len, b->scratch);
    size_t nlen;
    const char *name = lk_channel_name(ch, &nlen);
    size_t from_len = from ? strlen(from) : 0;
    lk_span chan = {name, nlen}, body = {b->scratch, dlen};
    uint64_t seq = lk_channel_seq(ch) + 1;
    int64_t ts = lk_now_ms();
    /* Sized first for a name and sub that need no escapes (the usual
     * case), so the frame is tight; then for the worst case. */
    size_t caps[2] = {dlen + ENVELOPE_BYTES + nlen + from_len,
                      dlen + ENVELOPE_BYTES + 6 * nlen + 6 * from_len};
    lk_frame *f = NULL;
    size_t cap = 0, n = 0;
    for (int i = 0; i < 2 && !n; i++) {
        lk_frame_unref(f);
        cap = caps[i];
        if (!(f = lk_frame_new(cap)))
            return NULL;
        n = lk_codec_message((char *)lk_frame_payload(f), cap, chan, seq, body, from, ts);
    }
    if (!n) {
        lk_frame_unref(f);
        return NULL;
    }
    /* The history charges a frame for at most LK_FRAME_SLACK_MAX unused
     * bytes; failing to shrink only leaves the frame bigger. */
    if (b->cfg->history > 0 && cap - n > LK_FRAME_SLACK_MAX) {
        lk_frame *t = realloc(f, sizeof *f + LWS_PRE + n);
        if (t)
            f = t;
    }
    f->len = (uint32_t)n;
    f->seq = lk_channel_next_seq(ch);
    lk_chanmap_record(b->channels, ch, f);
    b->metrics.messages_published++;
    return f;
}

void lk_fanout_deliver(lk_broker *b, lk_channel *ch, lk_frame *f)
{
    for (lk_sub *sub = lk_channel_subscribers(ch); sub; sub = sub->cnext)
        if (lk_session_enqueue(sub->owner, f) == 0)
            b->metrics.messages_delivered++;
    lk_frame_unref(f);
}

int lk_fanout_publish(lk_broker *b, lk_channel *ch, const char *data,
                      size_t len, const char *from, uint64_t *seq)
{
    lk_frame *f = lk_fanout_build(b, ch, data, len, from);
    if (!f)
        return len > b->scratch_cap ? LK_EINVAL : LK_ENOMEM;
    *seq = f->seq;
    lk_fanout_deliver(b, ch, f);
    return LK_OK;
}
