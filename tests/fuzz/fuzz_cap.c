/* fuzz_cap.c - fuzzes capability parsing (lk_cap_parse) and, on the same
 * bytes, the scope-list, channel-name and pattern parsers of cap.c.
 *
 * Checks, beyond "no crash, no leak, no overrun":
 *  - a refused capability is LK_ECAP with a bounded, printable message and
 *    no handle;
 *  - an accepted one round-trips: to_json parses back to the same JSON and
 *    the same required actions;
 *  - the compiled lookup, lk_cap_actions, agrees with the plain definition
 *    (OR over every pattern that lk_pattern_match()es) on channels built
 *    from the patterns and the input, and never grants a reserved action;
 *  - lk_cap_check_scopes accepts exactly the scope masks that cover
 *    lk_cap_required;
 *  - an accepted scope list's canonical form parses to itself;
 *  - lk_channel_valid and lk_pattern_valid agree with a direct reading of
 *    SPEC section 1.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz.h"
#include "latchkey/cap.h"

#define GRANTING (LK_ACT_PUBLISH | LK_ACT_SUBSCRIBE)
#define MAX_PATTERNS 256

static const char name_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_@.:=-";

static int ref_channel_valid(const char *s, size_t n)
{
    if (n < 1 || n > LK_CHANNEL_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\0' || !strchr(name_chars, s[i]))
            return 0;
    return 1;
}

static int ref_pattern_valid(const char *s, size_t n)
{
    if (n == 1 && s[0] == '*')
        return 1;
    if (n >= 2 && n <= LK_CHANNEL_MAX && s[n - 1] == '*')
        return ref_channel_valid(s, n - 1);
    return ref_channel_valid(s, n);
}

typedef struct ref_entry {
    const char *pat;
    size_t len;
    uint32_t mask;
} ref_entry;

typedef struct ref_cap {
    ref_entry e[MAX_PATTERNS];
    size_t n;
} ref_cap;

/* Reads the canonical JSON back with cJSON, independently of cap.c. */
static void ref_load(cJSON *root, ref_cap *ref)
{
    ref->n = 0;
    CHECK(cJSON_IsObject(root));
    for (cJSON *el = root->child; el; el = el->next) {
        CHECK(ref->n < MAX_PATTERNS);
        CHECK(el->string && cJSON_IsArray(el) && cJSON_GetArraySize(el) > 0);
        uint32_t mask = 0;
        for (cJSON *a = el->child; a; a = a->next) {
            CHECK(cJSON_IsString(a));
            uint32_t bit = lk_action_from_name(a->valuestring, strlen(a->valuestring));
            CHECK(bit && !(mask & bit)); /* canonical: known, no repeats */
            mask |= bit;
        }
        ref_entry *e = &ref->e[ref->n++];
        e->pat = el->string;
        e->len = strlen(el->string);
        e->mask = mask;
        CHECK(ref_pattern_valid(e->pat, e->len));
    }
    CHECK(ref->n > 0);
}

static void check_channel(const lk_cap *cap, const lk_cap *again, const ref_cap *ref,
                          const char *ch, size_t n)
{
    if (!ref_channel_valid(ch, n))
        return;
    uint32_t want = 0;
    for (size_t i = 0; i < ref->n; i++)
        if (lk_pattern_match(ref->e[i].pat, ref->e[i].len, ch, n))
            want |= ref->e[i].mask & GRANTING;
    uint32_t got = lk_cap_actions(cap, ch, n);
    CHECK(got == want);
    CHECK(lk_cap_actions(again, ch, n) == want);
    CHECK(lk_cap_allows(cap, LK_ACT_PUBLISH, ch, n) == !!(want & LK_ACT_PUBLISH));
}

/* Probes each pattern's own name, one byte longer and one shorter, and
 * every run of name bytes in the raw input. */
static void check_lookups(const lk_cap *cap, const lk_cap *again, const ref_cap *ref,
                          const char *in, size_t size)
{
    char ch[LK_CHANNEL_MAX + 2];
    for (size_t i = 0; i < ref->n; i++) {
        size_t n = ref->e[i].len;
        memcpy(ch, ref->e[i].pat, n);
        if (ch[n - 1] == '*')
            n--;
        check_channel(cap, again, ref, ch, n);
        if (n > 1)
            check_channel(cap, again, ref, ch, n - 1);
        ch[n] = 'x';
        check_channel(cap, again, ref, ch, n + 1);
        ch[n] = ':';
        check_channel(cap, again, ref, ch, n + 1);
    }
    for (size_t i = 0; i < size;) {
        size_t j = i;
        while (j < size && in[j] && strchr(name_chars, in[j]))
            j++;
        if (j > i)
            check_channel(cap, again, ref, in + i, j - i > LK_CHANNEL_MAX ? LK_CHANNEL_MAX : j - i);
        i = j + 1;
    }
}

static void fuzz_cap(const char *in, size_t size)
{
    lk_cap *cap = (lk_cap *)(uintptr_t)1, *again = NULL;
    lk_error err;
    memset(&err, 0xa5, sizeof err);
    int rc = lk_cap_parse(in, size, &cap, &err);
    if (rc != LK_OK) {
        CHECK(rc == LK_ECAP && err.code == LK_ECAP);
        CHECK(cap == NULL);
        CHECK(fuzz_message_ok(err.message, sizeof err.message));
        return;
    }
    CHECK(cap != NULL);

    char *json = lk_cap_to_json(cap);
    CHECK(json);
    CHECK(lk_cap_parse(json, strlen(json), &again, &err) == LK_OK);
    char *json2 = lk_cap_to_json(again);
    CHECK(json2 && strcmp(json, json2) == 0);
    CHECK(lk_cap_required(cap) == lk_cap_required(again));

    cJSON *root = cJSON_Parse(json);
    static ref_cap ref;
    ref_load(root, &ref);
    uint32_t required = 0;
    for (size_t i = 0; i < ref.n; i++)
        required |= ref.e[i].mask;
    CHECK(lk_cap_required(cap) == required);
    check_lookups(cap, again, &ref, in, size);

    for (uint32_t scopes = 0; scopes <= LK_ACT_ALL; scopes++) {
        int src = lk_cap_check_scopes(cap, scopes, &err);
        if (required & ~scopes) {
            CHECK(src == LK_ESCOPE_MISSING && err.code == LK_ESCOPE_MISSING);
            CHECK(fuzz_message_ok(err.message, sizeof err.message));
        } else {
            CHECK(src == LK_OK);
        }
    }

    cJSON_Delete(root);
    lk_free(json);
    lk_free(json2);
    lk_cap_destroy(again);
    lk_cap_destroy(cap);
}

static void fuzz_scopes(const char *in, size_t size)
{
    char *list = malloc(size + 1);
    CHECK(list);
    memcpy(list, in, size);
    list[size] = '\0'; /* the list ends at the first NUL, as a C string does */
    uint32_t mask = 0xdead;
    char canon[LK_SCOPES_MAX + 1];
    lk_error err;
    int rc = lk_scopes_parse(list, &mask, canon, &err);
    if (rc == LK_OK) {
        CHECK(!(mask & ~LK_ACT_ALL));
        CHECK(strlen(canon) <= LK_SCOPES_MAX && canon[0]);
        uint32_t mask2 = 0;
        char canon2[LK_SCOPES_MAX + 1];
        CHECK(lk_scopes_parse(canon, &mask2, canon2, &err) == LK_OK);
        CHECK(mask2 == mask && strcmp(canon, canon2) == 0);
    } else {
        CHECK(rc == LK_ESCOPE && err.code == LK_ESCOPE);
        CHECK(mask == 0 && canon[0] == '\0');
        CHECK(fuzz_message_ok(err.message, sizeof err.message));
    }
    free(list);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    fuzz_cap(in, size);
    fuzz_scopes(in, size);
    CHECK(lk_channel_valid(in, size) == ref_channel_valid(in, size));
    CHECK(lk_pattern_valid(in, size) == ref_pattern_valid(in, size));
    return 0;
}
