/*
 * latchkey/cap.h - channel names, channel patterns, scopes and capabilities
 * (SPEC section 1).
 *
 * A capability is parsed once into an immutable lk_cap that answers
 * "which actions may this token take on channel C?" without allocating:
 * the broker asks it on every publish.
 *
 * Ownership: lk_cap_parse returns a capability the caller destroys with
 * lk_cap_destroy; lk_cap_to_json returns a string the caller frees with
 * lk_free. destroy(NULL) is a no-op.
 *
 * Thread safety: an lk_cap is immutable after parsing, so one may be shared
 * by any number of threads. lk_cap_parse overwrites cJSON's global
 * parse-error pointer, which nothing reads: parsing on one thread (such as
 * a broker service loop) is unaffected, while parsing on several threads at
 * once races benignly on it and a TSan build may report that.
 */
#ifndef LATCHKEY_CAP_H
#define LATCHKEY_CAP_H

#include <stddef.h>
#include <stdint.h>

#include "latchkey/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LK_CHANNEL_MAX 200   /* bytes in a channel name or pattern */
#define LK_SCOPES_MAX 512    /* bytes in a canonical comma-separated scope list */

/* Token actions as a bit mask. Reserved actions are valid but grant nothing. */
#define LK_ACT_PUBLISH 0x1u
#define LK_ACT_SUBSCRIBE 0x2u
#define LK_ACT_PRESENCE 0x4u  /* reserved */
#define LK_ACT_HISTORY 0x8u   /* reserved */
#define LK_ACT_ALL 0xfu

typedef struct lk_cap lk_cap;

/* 1 if `name` (len bytes) is a valid channel name: 1-200 of [A-Za-z0-9_@.:=-]. */
int lk_channel_valid(const char *name, size_t len);
/* 1 if `pat` is a valid pattern: a channel name, a name followed by '*',
 * or "*" alone; at most 200 bytes. */
int lk_pattern_valid(const char *pat, size_t len);
/* 1 if `pat` matches channel `name`. Both assumed valid. */
int lk_pattern_match(const char *pat, size_t plen, const char *name, size_t nlen);

/* Action name ("realtime:publish") to its bit; 0 if not an action. */
uint32_t lk_action_from_name(const char *name, size_t len);
/* Bit to name; NULL for anything but a single known bit. Static string. */
const char *lk_action_name(uint32_t act);

/* Parses a key scope list: comma-separated, spaces around items ignored,
 * each `service:action`, `service:*`, `*:action` or `*`. Sets *mask to the
 * LK_ACT_* bits the scopes cover. If `canon` is non-NULL it receives the
 * normalised list (deduplicated, comma-separated, NUL-terminated).
 * LK_ESCOPE with a message naming the bad item. */
int lk_scopes_parse(const char *list, uint32_t *mask,
                    char canon[LK_SCOPES_MAX + 1], lk_error *err);

/* Parses and validates capability JSON of `len` bytes: a non-empty object
 * of valid patterns to non-empty arrays of known action names. LK_ECAP with
 * a message naming the offending pattern or action. On failure *out NULL. */
int lk_cap_parse(const char *json, size_t len, lk_cap **out, lk_error *err);

/* The actions granted on `channel` (OR over every matching pattern).
 * Allocation-free; the channel is assumed valid. */
uint32_t lk_cap_actions(const lk_cap *cap, const char *channel, size_t len);

/* 1 if `act` (one LK_ACT_* bit) is granted on `channel`. */
static inline int lk_cap_allows(const lk_cap *cap, uint32_t act,
                                const char *channel, size_t len)
{
    return (lk_cap_actions(cap, channel, len) & act) == act;
}

/* Every action the capability names anywhere (reserved ones included). */
uint32_t lk_cap_required(const lk_cap *cap);

/* LK_OK if every action the capability names is covered by `scope_mask`;
 * else LK_ESCOPE_MISSING with a message naming the first missing scope. */
int lk_cap_check_scopes(const lk_cap *cap, uint32_t scope_mask, lk_error *err);

/* Canonical compact JSON. Caller frees with lk_free. NULL on ENOMEM. */
char *lk_cap_to_json(const lk_cap *cap);

void lk_cap_destroy(lk_cap *cap);

#ifdef __cplusplus
}
#endif
#endif
