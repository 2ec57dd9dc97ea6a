/* fanout.c - publish -> one shared frame -> every subscriber's queue. */
#include "fanout.h"

#include <string.h>

#include "codec.h"
#include "session.h"

/* Room for everything around `data` in a message frame: op, seq, ts and
 * the field names, plus the channel and a worst-case escaped `from`. */
#define ENVELOPE_BYTES 128

int lk_fanout_publish(lk_broker *b, lk_channel *ch, const char *data,
                      size_t len, const char *from, uint64_t *seq)
{
    if (len > b->scratch_cap)
        return LK_EINVAL;
    size_t dlen = lk_codec_minify(data, len, b->scratch);
    size_t nlen;
    const char *name = lk_channel_name(ch, &nlen);
    size_t from_len = from ? strlen(from) : 0;
    size_t cap = dlen + ENVELOPE_BYTES + 6 * nlen + 6 * from_len;
    lk_frame *f = lk_frame_new(cap);
    if (!f)
        return LK_ENOMEM;
    uint64_t s = lk_channel_next_seq(ch);
    lk_span chan = {name, nlen}, body = {b->scratch, dlen};
    size_t n = lk_codec_message((char *)lk_frame_payload(f), cap, chan, s, body,
                                from, lk_now_ms());
    if (!n) {
        lk_frame_unref(f);
        return LK_EINVAL;
    }
    f->len = (uint32_t)n;
    f->seq = s;
    lk_chanmap_record(b->channels, ch, f);
    for (lk_sub *sub = lk_channel_subscribers(ch); sub; sub = sub->cnext)
        if (lk_session_enqueue(sub->owner, f) == 0)
            b->metrics.messages_delivered++;
    b->metrics.messages_published++;
    lk_frame_unref(f);
    *seq = s;
    return LK_OK;
}
