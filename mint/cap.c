/* cap.c - channel names, channel patterns, key scopes and capabilities
 * (SPEC section 1).
 *
 * A capability is validated once and compiled into a single immutable
 * allocation that answers lk_cap_actions() without allocating:
 *   - the grant of a "*" pattern is one mask;
 *   - every other pattern that grants something sits in one open-addressing
 *     hash table (at most half full), exact names keyed by the name and
 *     "name*" patterns by the part before the '*';
 *   - the distinct prefix lengths are kept sorted, and the name hash is
 *     computed word by word with the length folded in last, so a single pass
 *     over the channel probes each prefix length and then the whole name.
 * A lookup costs O(channel length / 8 + distinct prefix lengths), whatever
 * the number of patterns, and stops as soon as it holds every grant the
 * capability can give. Reserved actions are kept (lk_cap_required,
 * lk_cap_to_json) but are never part of a grant.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "latchkey/cap.h"
#include "lk_internal.h"

#define CAP_MAX_PATTERNS 256
/* Four distinct actions exist; a longer list is a mistake or an attack. */
#define CAP_MAX_ACTIONS 16
/* A token caps its capability far lower; this only stops silly inputs. */
#define CAP_JSON_MAX (128 * 1024)
/* Room for one quoted fragment in an error message (see quote()). */
#define QUOTE_BYTES 64

#define GRANTING (LK_ACT_PUBLISH | LK_ACT_SUBSCRIBE)
#define NUM_ACTIONS 4

static const char *const action_names[NUM_ACTIONS] = {
    "realtime:publish", "realtime:subscribe", "realtime:presence",
    "realtime:history"};
#define REALTIME_PREFIX_LEN 9 /* "realtime:" */

static const uint8_t channel_byte[256] = {
    ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1, ['0' ... '9'] = 1,
    ['_'] = 1, ['@'] = 1, ['.'] = 1, [':'] = 1, ['='] = 1, ['-'] = 1,
};

/* Copies `s` into `out` for an error message: printable ASCII as is, other
 * bytes (and quotes, backslashes) as \xNN, cut with "..." so a message stays
 * bounded and never carries control bytes into a log. Returns `out`. */
static const char *quote(char out[QUOTE_BYTES], const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
        size_t need = plain ? 1 : 4;
        if (o + need > QUOTE_BYTES - 4) {
            memcpy(out + o, "...", 4);
            return out;
        }
        if (plain) {
            out[o++] = (char)c;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return out;
}

/* ---- channel names and patterns ---------------------------------------- */

static int name_bytes_valid(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!channel_byte[(unsigned char)s[i]])
            return 0;
    return 1;
}

int lk_channel_valid(const char *name, size_t len)
{
    if (!name || len == 0 || len > LK_CHANNEL_MAX)
        return 0;
    return name_bytes_valid(name, len);
}

int lk_pattern_valid(const char *pat, size_t len)
{
    if (!pat || len == 0 || len > LK_CHANNEL_MAX)
        return 0;
    if (pat[len - 1] == '*')
        len--;
    return name_bytes_valid(pat, len);
}

int lk_pattern_match(const char *pat, size_t plen, const char *name, size_t nlen)
{
    if (!pat || plen == 0)
        return 0;
    if (pat[plen - 1] == '*') {
        plen--;
        return nlen >= plen && (plen == 0 || memcmp(pat, name, plen) == 0);
    }
    return plen == nlen && memcmp(pat, name, plen) == 0;
}

/* ---- actions ------------------------------------------------------------ */

uint32_t lk_action_from_name(const char *name, size_t len)
{
    if (!name)
        return 0;
    for (int i = 0; i < NUM_ACTIONS; i++)
        if (strlen(action_names[i]) == len && memcmp(action_names[i], name, len) == 0)
            return 1u << i;
    return 0;
}

const char *lk_action_name(uint32_t act)
{
    switch (act) {
    case LK_ACT_PUBLISH: return action_names[0];
    case LK_ACT_SUBSCRIBE: return action_names[1];
    case LK_ACT_PRESENCE: return action_names[2];
    case LK_ACT_HISTORY: return action_names[3];
    default: return NULL;
    }
}

/* ---- key scopes --------------------------------------------------------- */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* A scope's service or action: "*" or [a-z0-9_-]+. */
static int scope_word_valid(const char *s, size_t n)
{
    if (n == 1 && s[0] == '*')
        return 1;
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* The realtime actions one trimmed scope item covers. */
static int scope_item(const char *s, size_t n, uint32_t *mask, lk_error *err)
{
    char q[QUOTE_BYTES];
    if (n == 1 && s[0] == '*') {
        *mask = LK_ACT_ALL;
        return LK_OK;
    }
    const char *colon = memchr(s, ':', n);
    if (!colon)
        return lk__fail(err, LK_ESCOPE, "invalid scope \"%s\": expected service:action",
                        quote(q, s, n));
    size_t sn = (size_t)(colon - s);
    const char *a = colon + 1;
    size_t an = n - sn - 1;
    if (!scope_word_valid(s, sn) || !scope_word_valid(a, an))
        return lk__fail(err, LK_ESCOPE,
                        "invalid scope \"%s\": service and action are * or "
                        "lowercase [a-z0-9_-]",
                        quote(q, s, n));
    int any_service = sn == 1 && s[0] == '*';
    int realtime = sn == 8 && memcmp(s, "realtime", 8) == 0;
    if (!any_service && !realtime) {
        *mask = 0; /* another service's scope: valid, grants nothing here */
        return LK_OK;
    }
    if (an == 1 && a[0] == '*') {
        *mask = LK_ACT_ALL;
        return LK_OK;
    }
    uint32_t bit = 0;
    for (int i = 0; i < NUM_ACTIONS; i++) {
        const char *short_name = action_names[i] + REALTIME_PREFIX_LEN;
        if (strlen(short_name) == an && memcmp(short_name, a, an) == 0)
            bit = 1u << i;
    }
    /* `*:foo` may name another service's action; `realtime:foo` is a typo
     * that would silently grant nothing, so refuse it. */
    if (!bit && realtime)
        return lk__fail(err, LK_ESCOPE,
                        "invalid scope \"%s\": realtime actions are publish, "
                        "subscribe, presence and history",
                        quote(q, s, n));
    *mask = bit;
    return LK_OK;
}

int lk_scopes_parse(const char *list, uint32_t *mask,
                    char canon[LK_SCOPES_MAX + 1], lk_error *err)
{
    /* Distinct items are at least 1 byte plus a comma in the canonical form. */
    struct { const char *p; size_t n; } items[LK_SCOPES_MAX / 2 + 1];
    size_t nitems = 0, canon_len = 0, index = 0;
    uint32_t m = 0;

    if (mask)
        *mask = 0;
    if (canon)
        canon[0] = '\0';
    if (!list)
        return lk__fail(err, LK_EINVAL, "no scope list given");

    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *s = p, *e = end;
        while (s < e && is_space(*s))
            s++;
        while (e > s && is_space(e[-1]))
            e--;
        index++;
        if (s == e) {
            if (index == 1 && *end == '\0')
                return lk__fail(err, LK_ESCOPE, "empty scope list");
            return lk__fail(err, LK_ESCOPE, "empty scope at position %zu of the list",
                            index);
        }
        size_t n = (size_t)(e - s);
        uint32_t im = 0;
        int rc = scope_item(s, n, &im, err);
        if (rc != LK_OK)
            return rc;
        m |= im;
        int dup = 0;
        for (size_t j = 0; j < nitems && !dup; j++)
            dup = items[j].n == n && memcmp(items[j].p, s, n) == 0;
        if (!dup) {
            size_t add = n + (nitems ? 1 : 0);
            if (canon_len + add > LK_SCOPES_MAX)
                return lk__fail(err, LK_ESCOPE, "scope list longer than %d bytes",
                                LK_SCOPES_MAX);
            items[nitems].p = s;
            items[nitems].n = n;
            nitems++;
            canon_len += add;
        }
        if (*end == '\0')
            break;
        p = end + 1;
    }

    if (canon) {
        size_t o = 0;
        for (size_t j = 0; j < nitems; j++) {
            if (j)
                canon[o++] = ',';
            memcpy(canon + o, items[j].p, items[j].n);
            o += items[j].n;
        }
        canon[o] = '\0';
    }
    if (mask)
        *mask = m;
    return LK_OK;
}

/* ---- compiled capability ------------------------------------------------ */

typedef struct cap_entry {  /* one pattern, in canonical (byte) order */
    const char *pat;
    uint32_t len;
    uint32_t mask;          /* every action named, reserved ones included */
} cap_entry;

#define SLOT_PREFIX 0x80u   /* cap_slot.flags: a "name*" pattern */

typedef struct cap_slot {   /* open-addressing slot for a pattern that grants */
    uint32_t hash;          /* hash_name() of the name, or of the part before '*' */
    uint16_t entry;         /* index + 1 into entries; 0 = empty */
    uint8_t len;            /* bytes hashed */
    uint8_t flags;          /* grant bits | SLOT_PREFIX */
} cap_slot;

struct lk_cap {
    uint32_t star;          /* grant of the "*" pattern */
    uint32_t grant_all;     /* every grant any pattern gives: lookups stop there */
    uint32_t required;      /* every action named anywhere */
    uint32_t nentries;
    uint32_t nslots;        /* 0 or a power of two, at most half full */
    uint32_t nlens;
    const cap_entry *entries;
    const cap_slot *slots;
    const uint8_t *prefix_lens; /* distinct prefix lengths, ascending */
};

_Static_assert(LK_CHANNEL_MAX <= UINT8_MAX, "cap_slot.len holds a name length");
_Static_assert(CAP_MAX_PATTERNS < UINT16_MAX, "cap_slot.entry holds an index");
_Static_assert((GRANTING & SLOT_PREFIX) == 0, "flags share a byte with grants");

/* The name hash works on 8-byte words and folds the length in only at the
 * end, so one pass over a channel yields the hash of each of its prefixes:
 * a lookup costs O(len / 8 + distinct prefix lengths), not O(patterns). */
#define HASH_SEED 0x9e3779b97f4a7c15ull

static inline uint64_t hash_mix(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
    return h ^ h >> 29;
}

static inline uint32_t hash_final(uint64_t h, size_t len)
{
    h = (h ^ len) * 0x94d049bb133111ebull;
    return (uint32_t)(h ^ h >> 32);
}

static inline uint64_t load_word(const char *s)
{
    uint64_t w;
    memcpy(&w, s, 8);
    return w;
}

/* The first n (< 8) bytes of s as a zero-padded word, reading only those. */
static inline uint64_t load_partial(const char *s, size_t n)
{
    uint64_t w = 0;
    memcpy(&w, s, n);
    return w;
}

/* A word with the first n (1..7) bytes in memory order kept. */
static inline uint64_t keep_bytes(uint64_t w, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return w & ~(~0ull >> (8 * n));
#else
    return w & ((1ull << (8 * n)) - 1);
#endif
}

static uint32_t hash_name(const char *s, size_t n)
{
    uint64_t h = HASH_SEED;
    size_t k = 0;
    for (; k + 8 <= n; k += 8)
        h = hash_mix(h, load_word(s + k));
    if (k < n)
        h = hash_mix(h, load_partial(s + k, n - k));
    return hash_final(h, n);
}

/* The grant of the pattern stored under (hash, len, kind), 0 if none. */
static inline uint32_t probe(const lk_cap *cap, uint32_t h, const char *name, size_t len,
                             uint32_t kind)
{
    uint32_t m = cap->nslots - 1;
    for (uint32_t i = h & m;; i = (i + 1) & m) {
        const cap_slot *s = &cap->slots[i];
        if (!s->entry)
            return 0;
        if (s->hash == h && s->len == len && (s->flags & SLOT_PREFIX) == kind &&
            memcmp(cap->entries[s->entry - 1].pat, name, len) == 0)
            return s->flags & GRANTING;
    }
}

uint32_t lk_cap_actions(const lk_cap *cap, const char *channel, size_t len)
{
    if (!cap)
        return 0;
    uint32_t got = cap->star;
    if (got == cap->grant_all || !cap->nslots || !channel)
        return got;

    uint64_t h = HASH_SEED; /* state after the first k bytes */
    size_t k = 0;
    for (uint32_t i = 0; i < cap->nlens; i++) {
        size_t plen = cap->prefix_lens[i];
        if (plen > len)
            break;
        for (; k + 8 <= plen; k += 8)
            h = hash_mix(h, load_word(channel + k));
        uint64_t t = h;
        if (k < plen) /* a whole word is readable when 8 more bytes exist */
            t = hash_mix(h, k + 8 <= len ? keep_bytes(load_word(channel + k), plen - k)
                                         : load_partial(channel + k, plen - k));
        got |= probe(cap, hash_final(t, plen), channel, plen, SLOT_PREFIX);
        if (got == cap->grant_all)
            return got;
    }
    for (; k + 8 <= len; k += 8)
        h = hash_mix(h, load_word(channel + k));
    if (k < len)
        h = hash_mix(h, load_partial(channel + k, len - k));
    return got | probe(cap, hash_final(h, len), channel, len, 0);
}

uint32_t lk_cap_required(const lk_cap *cap)
{
    return cap ? cap->required : 0;
}

int lk_cap_check_scopes(const lk_cap *cap, uint32_t scope_mask, lk_error *err)
{
    char q[QUOTE_BYTES];
    if (!cap)
        return lk__fail(err, LK_EINVAL, "no capability given");
    if (!(cap->required & ~scope_mask))
        return LK_OK;
    for (uint32_t i = 0; i < cap->nentries; i++) {
        const cap_entry *e = &cap->entries[i];
        for (int b = 0; b < NUM_ACTIONS; b++) {
            uint32_t bit = 1u << b;
            if (e->mask & bit & ~scope_mask)
                return lk__fail(err, LK_ESCOPE_MISSING,
                                "capability needs %s (pattern %s), which the "
                                "key's scopes do not grant",
                                action_names[b], quote(q, e->pat, e->len));
        }
    }
    return LK_OK; /* unreachable: required is the OR of the entries' masks */
}

/* Writes the canonical JSON into `out` when non-NULL; returns its length. */
static size_t cap_emit(const lk_cap *cap, char *out)
{
    size_t o = 0;
#define EMIT(s, n)                         \
    do {                                   \
        if (out)                           \
            memcpy(out + o, (s), (n));     \
        o += (n);                          \
    } while (0)
    EMIT("{", 1);
    for (uint32_t i = 0; i < cap->nentries; i++) {
        const cap_entry *e = &cap->entries[i];
        if (i)
            EMIT(",", 1);
        /* Patterns and action names never need JSON escaping. */
        EMIT("\"", 1);
        EMIT(e->pat, e->len);
        EMIT("\":[", 3);
        int first = 1;
        for (int b = 0; b < NUM_ACTIONS; b++) {
            if (!(e->mask & (1u << b)))
                continue;
            if (!first)
                EMIT(",", 1);
            first = 0;
            EMIT("\"", 1);
            EMIT(action_names[b], strlen(action_names[b]));
            EMIT("\"", 1);
        }
        EMIT("]", 1);
    }
    EMIT("}", 1);
#undef EMIT
    return o;
}

char *lk_cap_to_json(const lk_cap *cap)
{
    if (!cap)
        return NULL;
    size_t n = cap_emit(cap, NULL);
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    cap_emit(cap, s);
    s[n] = '\0';
    return s;
}

void lk_cap_destroy(lk_cap *cap)
{
    free(cap);
}

/* ---- parsing and compiling ---------------------------------------------- */

typedef struct cap_item {   /* a validated pattern, pointing into the cJSON tree */
    const char *pat;
    size_t len;
    uint32_t mask;
} cap_item;

static int item_cmp(const void *a, const void *b)
{
    const cap_item *x = a, *y = b;
    int c = memcmp(x->pat, y->pat, x->len < y->len ? x->len : y->len);
    if (c)
        return c;
    return (x->len > y->len) - (x->len < y->len);
}

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* Lays the capability out in one block: header, entries, slots, prefix
 * lengths, then the pattern strings. `items` are sorted and distinct. */
static int cap_build(const cap_item *items, size_t n, lk_cap **out, lk_error *err)
{
    size_t nkeyed = 0, strbytes = 0;
    uint32_t required = 0, star = 0;
    uint8_t has_len[LK_CHANNEL_MAX + 1] = {0};
    for (size_t i = 0; i < n; i++) {
        const cap_item *it = &items[i];
        required |= it->mask;
        strbytes += it->len + 1;
        if (!(it->mask & GRANTING))
            continue; /* reserved actions only: nothing to look up */
        if (it->len == 1 && it->pat[0] == '*') {
            star = it->mask & GRANTING;
            continue;
        }
        nkeyed++;
        if (it->pat[it->len - 1] == '*')
            has_len[it->len - 1] = 1;
    }
    size_t nslots = 0, nlens = 0;
    if (nkeyed) {
        nslots = 4;
        while (nslots < 2 * nkeyed)
            nslots <<= 1;
    }
    for (size_t l = 0; l <= LK_CHANNEL_MAX; l++)
        nlens += has_len[l];

    size_t off_entries = align8(sizeof(lk_cap));
    size_t off_slots = off_entries + align8(n * sizeof(cap_entry));
    size_t off_lens = off_slots + nslots * sizeof(cap_slot);
    size_t off_strings = off_lens + nlens;
    char *block = calloc(1, off_strings + strbytes);
    if (!block)
        return lk__fail(err, LK_ENOMEM, "out of memory");

    lk_cap *cap = (lk_cap *)(void *)block;
    cap_entry *entries = (cap_entry *)(void *)(block + off_entries);
    cap_slot *slots = (cap_slot *)(void *)(block + off_slots);
    uint8_t *lens = (uint8_t *)(block + off_lens);
    char *str = block + off_strings;

    for (size_t l = 0, j = 0; l <= LK_CHANNEL_MAX; l++)
        if (has_len[l])
            lens[j++] = (uint8_t)l;
    for (size_t i = 0; i < n; i++) {
        const cap_item *it = &items[i];
        uint32_t grant = it->mask & GRANTING;
        memcpy(str, it->pat, it->len);
        str[it->len] = '\0';
        entries[i] = (cap_entry){str, (uint32_t)it->len, it->mask};
        if (grant && !(it->len == 1 && str[0] == '*')) {
            int prefix = str[it->len - 1] == '*';
            size_t klen = it->len - (prefix ? 1 : 0);
            uint32_t h = hash_name(str, klen), m = (uint32_t)nslots - 1, j;
            for (j = h & m; slots[j].entry; j = (j + 1) & m)
                ;
            slots[j] = (cap_slot){h, (uint16_t)(i + 1), (uint8_t)klen,
                                  (uint8_t)(grant | (prefix ? SLOT_PREFIX : 0))};
        }
        str += it->len + 1;
    }

    cap->star = star;
    cap->grant_all = required & GRANTING;
    cap->required = required;
    cap->nentries = (uint32_t)n;
    cap->nslots = (uint32_t)nslots;
    cap->nlens = (uint32_t)nlens;
    cap->entries = entries;
    cap->slots = slots;
    cap->prefix_lens = lens;
    *out = cap;
    return LK_OK;
}

static int parse_actions(const cJSON *arr, const char *pat, size_t plen,
                         uint32_t *mask, lk_error *err)
{
    char qp[QUOTE_BYTES], qa[QUOTE_BYTES];
    if (!cJSON_IsArray(arr))
        return lk__fail(err, LK_ECAP,
                        "capability pattern \"%s\": value must be an array of "
                        "action names",
                        quote(qp, pat, plen));
    uint32_t m = 0;
    int n = 0;
    for (const cJSON *el = arr->child; el; el = el->next) {
        if (++n > CAP_MAX_ACTIONS)
            return lk__fail(err, LK_ECAP,
                            "capability pattern \"%s\": more than %d actions",
                            quote(qp, pat, plen), CAP_MAX_ACTIONS);
        if (!cJSON_IsString(el) || !el->valuestring)
            return lk__fail(err, LK_ECAP,
                            "capability pattern \"%s\": actions must be strings",
                            quote(qp, pat, plen));
        size_t alen = strlen(el->valuestring);
        uint32_t bit = lk_action_from_name(el->valuestring, alen);
        if (!bit) {
            if (memchr(el->valuestring, '*', alen))
                return lk__fail(err, LK_ECAP,
                                "capability pattern \"%s\": wildcard action "
                                "\"%s\" not allowed, name each action",
                                quote(qp, pat, plen), quote(qa, el->valuestring, alen));
            return lk__fail(err, LK_ECAP,
                            "capability pattern \"%s\": unknown action \"%s\"",
                            quote(qp, pat, plen), quote(qa, el->valuestring, alen));
        }
        m |= bit;
    }
    if (!m)
        return lk__fail(err, LK_ECAP, "capability pattern \"%s\": empty action list",
                        quote(qp, pat, plen));
    *mask = m;
    return LK_OK;
}

int lk__cap_from_cjson(const cJSON *obj, lk_cap **out, lk_error *err)
{
    char q[QUOTE_BYTES];
    cap_item items[CAP_MAX_PATTERNS];
    size_t n = 0;

    if (!out)
        return lk__fail(err, LK_EINVAL, "no output given");
    *out = NULL;
    if (!obj || !cJSON_IsObject(obj))
        return lk__fail(err, LK_ECAP, "capability must be a JSON object");

    for (const cJSON *el = obj->child; el; el = el->next) {
        if (n == CAP_MAX_PATTERNS)
            return lk__fail(err, LK_ECAP, "capability has more than %d patterns",
                            CAP_MAX_PATTERNS);
        if (!el->string)
            return lk__fail(err, LK_ECAP, "capability must be a JSON object");
        size_t plen = strlen(el->string);
        if (!lk_pattern_valid(el->string, plen))
            return lk__fail(err, LK_ECAP,
                            "invalid channel pattern \"%s\": 1-200 bytes of "
                            "[A-Za-z0-9_@.:=-], optionally ending in *",
                            quote(q, el->string, plen));
        int rc = parse_actions(el, el->string, plen, &items[n].mask, err);
        if (rc != LK_OK)
            return rc;
        items[n].pat = el->string;
        items[n].len = plen;
        n++;
    }
    if (n == 0)
        return lk__fail(err, LK_ECAP, "capability is empty: grant at least one pattern");

    qsort(items, n, sizeof *items, item_cmp);
    for (size_t i = 1; i < n; i++)
        if (item_cmp(&items[i - 1], &items[i]) == 0)
            return lk__fail(err, LK_ECAP,
                            "duplicate pattern \"%s\" in capability (ambiguous)",
                            quote(q, items[i].pat, items[i].len));
    return cap_build(items, n, out, err);
}

int lk_cap_parse(const char *json, size_t len, lk_cap **out, lk_error *err)
{
    if (!out)
        return lk__fail(err, LK_EINVAL, "no output given");
    *out = NULL;
    if (!json || len == 0)
        return lk__fail(err, LK_ECAP, "capability is empty: grant at least one pattern");
    if (len > CAP_JSON_MAX)
        return lk__fail(err, LK_ECAP, "capability larger than %d bytes", CAP_JSON_MAX);
    if (lk__json_has_nul(json, len))
        return lk__fail(err, LK_ECAP, "capability contains a NUL character");

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        if (end && end >= json && end <= json + len)
            return lk__fail(err, LK_ECAP, "capability is not valid JSON (at byte %zu)",
                            (size_t)(end - json));
        return lk__fail(err, LK_ECAP, "capability is not valid JSON");
    }
    /* cJSON stops after the value; only whitespace may follow it. */
    while (end < json + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
        end++;
    int rc;
    if (end != json + len)
        rc = lk__fail(err, LK_ECAP, "unexpected data after the capability's JSON object");
    else
        rc = lk__cap_from_cjson(root, out, err);
    cJSON_Delete(root);
    return rc;
}
