/* fanout.c - publish -> one shared frame -> every subscriber's queue. */
#include "fanout.h"

#include <string.h>

#include "codec.h"
#include "session.h"

/* Room for everything around `data` in a message frame: op, seq, ts and
 * the field names, plus the channel and a worst-case escaped `from`. */
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
    size_t cap = dlen + ENVELOPE_BYTES + 6 * nlen + 6 * from_len;
    lk_frame *f = lk_frame_new(cap);
    if (!f)
        return NULL;
    lk_span chan = {name, nlen}, body = {b->scratch, dlen};
    uint64_t seq = lk_channel_seq(ch) + 1;
    size_t n = lk_codec_message((char *)lk_frame_payload(f), cap, chan, seq, body,
                                from, lk_now_ms());
    if (!n) {
        lk_frame_unref(f);
        return NULL;
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
