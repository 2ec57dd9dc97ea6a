/* fuzz_key.c - fuzzes API key parsing (lk_key_parse).
 *
 * Each input is parsed twice: as given, and with its checksum recomputed
 * (everything after the last '_' replaced by the right CRC-32), so that
 * mutations also reach the checks behind the checksum: hex decoding and the
 * scalar range.
 *
 * Checks, beyond "no crash, no leak, no overrun":
 *  - a refused key is a negative code equal to err.code, no handle, and a
 *    printable message that echoes no run of the input's hex (the secret);
 *  - an accepted key formats back to exactly the input (the format is
 *    strict, so there is one spelling per key), its kid is the input's, and
 *    its public point is accepted by lk_pubkey_create.
 */
#define _GNU_SOURCE /* memmem, memrchr */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "fuzz.h"
#include "latchkey/key.h"

/* Long enough to hold any key, short enough to keep inputs relevant. */
#define FIXED_MAX 256
/* The secret is a 64-char hex run; the 16-char kid is public. */
#define SECRET_RUN_MIN 32
#define ECHO_WINDOW 16

static int is_hexish(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The message must not contain any ECHO_WINDOW-byte window of a long hex
 * run of the input: that is where the secret lives. */
static void check_no_echo(const char *in, size_t size, const char *msg)
{
    size_t mlen = strlen(msg);
    for (size_t i = 0; i < size;) {
        size_t j = i;
        while (j < size && is_hexish(in[j]))
            j++;
        for (size_t w = i; j - i >= SECRET_RUN_MIN && w + ECHO_WINDOW <= j; w++)
            CHECK(!memmem(msg, mlen, in + w, ECHO_WINDOW));
        i = j + 1;
    }
}

static void parse_one(const char *in, size_t size)
{
    lk_key *key = (lk_key *)(uintptr_t)1;
    lk_error err;
    memset(&err, 0xa5, sizeof err);
    int rc = lk_key_parse(in, size, &key, &err);
    if (rc != LK_OK) {
        CHECK(rc < 0 && err.code == rc);
        CHECK(key == NULL);
        CHECK(fuzz_message_ok(err.message, sizeof err.message));
        check_no_echo(in, size, err.message);
        return;
    }
    CHECK(key != NULL);
    char s[LK_KEY_STR_BYTES];
    lk_key_format(key, s);
    CHECK(strlen(s) == size && memcmp(s, in, size) == 0);
    lk_env env = lk_key_env(key);
    CHECK(env == LK_ENV_LIVE || env == LK_ENV_SBX);
    size_t kid_at = env == LK_ENV_LIVE ? 8 : 7; /* "lk_live_" / "lk_sbx_" */
    CHECK(memcmp(lk_key_kid(key), in + kid_at, LK_KID_HEX) == 0);
    CHECK(strlen(lk_key_kid(key)) == LK_KID_HEX);
    uint8_t pub[LK_PUBKEY_BYTES];
    lk_key_public(key, pub);
    lk_pubkey *pk = NULL;
    CHECK(lk_pubkey_create(pub, &pk, NULL) == LK_OK);
    lk_pubkey_destroy(pk);
    OPENSSL_cleanse(s, sizeof s);
    lk_key_destroy(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    parse_one(in, size);

    const char *us = size ? memrchr(in, '_', size) : NULL;
    if (us && size <= FIXED_MAX) {
        char fixed[FIXED_MAX + 9];
        size_t head = (size_t)(us - in);
        memcpy(fixed, in, head + 1);
        snprintf(fixed + head + 1, 9, "%08x", (unsigned)lk_crc32(in, head));
        parse_one(fixed, head + 9);
        OPENSSL_cleanse(fixed, sizeof fixed);
    }
    return 0;
}
