/*
 * frame.h - a refcounted outbound WebSocket payload with LWS_PRE bytes of
 * headroom, so lws can write the frame header in place.
 *
 * A published message is serialized once into one frame; every subscriber
 * queue and the channel history hold a reference to that same frame.
 *
 * Ownership: lk_frame_new and lk_frame_clone return a frame with one
 * reference; each holder drops its reference with lk_frame_unref, which
 * frees on the last one.
 * Thread safety: a frame belongs to one thread at a time (the count is not
 * atomic, and lws writes into the headroom); other service threads get
 * their own copy (fanout.c).
 */
#ifndef LK_BROKER_FRAME_H
#define LK_BROKER_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

typedef struct lk_frame {
    uint32_t refs;
    uint32_t len;        /* payload bytes */
    uint64_t seq;        /* channel seq for message frames, else 0 */
    unsigned char buf[]; /* LWS_PRE headroom, then the payload */
} lk_frame;

static inline unsigned char *lk_frame_payload(lk_frame *f)
{
    return f->buf + LWS_PRE;
}

/* A frame able to hold `cap` payload bytes; len starts at 0. NULL on ENOMEM. */
static inline lk_frame *lk_frame_new(size_t cap)
{
    if (cap > UINT32_MAX)
        return NULL;
    lk_frame *f = malloc(sizeof *f + LWS_PRE + cap);
    if (f) {
        f->refs = 1;
        f->len = 0;
        f->seq = 0;
    }
    return f;
}

/* An exactly sized copy with its own count. NULL on ENOMEM. */
static inline lk_frame *lk_frame_clone(const lk_frame *f)
{
    lk_frame *c = malloc(sizeof *c + LWS_PRE + f->len);
    if (c) {
        c->refs = 1;
        c->len = f->len;
        c->seq = f->seq;
        memcpy(c->buf + LWS_PRE, f->buf + LWS_PRE, f->len);
    }
    return c;
}

static inline lk_frame *lk_frame_ref(lk_frame *f)
{
    f->refs++;
    return f;
}

static inline void lk_frame_unref(lk_frame *f)
{
    if (f && --f->refs == 0)
        free(f);
}

#endif
