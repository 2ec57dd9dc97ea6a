/* mint_bench.c - single-thread throughput of token minting and verification,
 * next to the bare ES256 sign and verify they are built on, so the cost of
 * everything around the ECDSA (JSON, base64url, capability parsing, claim
 * checks) shows as the gap between the two.
 *
 *   mint_bench [SECONDS]   (per phase, default 3)
 *
 * Prints one "<phase> <ops/s> ops/s" line per phase; tests/bench/run-mint
 * pins it to one core and compares it with `openssl speed ecdsap256`.
 * Rates are per second of process CPU time, as openssl speed counts them,
 * so a busy machine slows both sides alike instead of skewing the ratio.
 * Exits 1 if any operation fails, so a run doubles as a smoke test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "latchkey/token.h"
#include "lk_internal.h"

#define CAP "{\"chat:*\":[\"realtime:subscribe\",\"realtime:publish\"],\"news\":[\"realtime:subscribe\"]}"
#define TOKENS 64 /* distinct tokens verified in rotation */
#define CLOCK_EVERY 32

typedef struct bench {
    lk_key *key;
    lk_pubkey *pub;
    char *tokens[TOKENS];
    int64_t now;
    uint8_t digest[LK__SHA256_BYTES];
    uint8_t sig[LK__SIG_BYTES];
} bench;

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int resolve(void *ud, const char *kid, lk_key_info *info)
{
    const bench *b = ud;
    if (strcmp(kid, lk_key_kid(b->key)) != 0)
        return LK_ENOTFOUND;
    info->pubkey = b->pub;
    info->revoked = 0;
    info->scopes = LK_ACT_ALL;
    info->workspace = "ws_bench";
    return LK_OK;
}

static int op_mint(bench *b, long i)
{
    lk_mint_opts o = {.capability = CAP, .ttl = 600, .client_id = "user-42", .now = b->now};
    char *tok = NULL;
    int rc = lk_token_mint(b->key, &o, &tok, NULL);
    (void)i;
    lk_free(tok);
    return rc;
}

static int op_verify(bench *b, long i)
{
    const char *tok = b->tokens[i % TOKENS];
    lk_verify_opts o = {.now = b->now + 1};
    lk_claims *c = NULL;
    int rc = lk_token_verify(tok, strlen(tok), &o, resolve, b, &c, NULL);
    lk_claims_destroy(c);
    return rc;
}

static int op_sign(bench *b, long i)
{
    b->digest[0] = (uint8_t)i;
    return lk__key_sign(b->key, b->digest, sizeof b->digest, b->sig);
}

static int op_raw_verify(bench *b, long i)
{
    (void)i;
    return lk__pubkey_verify(b->pub, b->digest, sizeof b->digest, b->sig);
}

/* Runs `op` for `secs` seconds; returns ops/s, or -1 if an op failed. */
static double run(bench *b, int (*op)(bench *, long), double secs)
{
    long n = 0;
    double start = cpu_s(), end = start;
    while (end - start < secs) {
        for (int k = 0; k < CLOCK_EVERY; k++, n++) {
            int rc = op(b, n);
            if (rc != LK_OK) {
                fprintf(stderr, "mint_bench: operation failed: %s\n", lk_err_name(rc));
                return -1;
            }
        }
        end = cpu_s();
    }
    return (double)n / (end - start);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*op)(bench *, long);
    } phases[] = {
        {"mint", op_mint},
        {"verify", op_verify},
        {"es256_sign", op_sign},
        {"es256_verify", op_raw_verify},
    };
    bench b = {0};
    uint8_t raw[LK_PUBKEY_BYTES];
    double secs = 3.0;
    int status = 0;

    if (argc > 1) {
        char *end;
        secs = strtod(argv[1], &end);
        if (*end || !(secs > 0 && secs <= 600)) {
            fprintf(stderr, "usage: mint_bench [SECONDS (0-600], default 3]\n");
            return 2;
        }
    }
    b.now = (int64_t)time(NULL);
    if (lk_key_generate(LK_ENV_LIVE, &b.key, NULL) != LK_OK)
        return 1;
    lk_key_public(b.key, raw);
    if (lk_pubkey_create(raw, &b.pub, NULL) != LK_OK)
        return 1;
    for (int i = 0; i < TOKENS; i++) {
        lk_mint_opts o = {.capability = CAP, .ttl = 600, .client_id = "user-42", .now = b.now};
        if (lk_token_mint(b.key, &o, &b.tokens[i], NULL) != LK_OK)
            return 1;
    }
    op_sign(&b, 0);

    printf("mint_bench: one thread, %.1f CPU-s per phase, token %zu bytes\n", secs,
           strlen(b.tokens[0]));
    for (size_t i = 0; i < sizeof phases / sizeof phases[0]; i++) {
        double r = run(&b, phases[i].op, secs);
        if (r < 0) {
            status = 1;
            break;
        }
        printf("%-12s %10.0f ops/s\n", phases[i].name, r);
        fflush(stdout);
    }
    for (int i = 0; i < TOKENS; i++)
        lk_free(b.tokens[i]);
    lk_pubkey_destroy(b.pub);
    lk_key_destroy(b.key);
    return status;
}
