/* lk_tokentool.c - a thin command-line face of liblatchkey-mint, so that
 * scripts using other JWT libraries can check tokens in both directions.
 *
 *   lk_tokentool genkey live|sbx
 *   lk_tokentool mint KEY CAPJSON [--ttl S] [--sub ID] [--aud A] [--now T]
 *                     [--nbf T] [--count N]
 *   lk_tokentool verify KEY TOKEN [--audience A] [--now T] [--max-ttl S]
 *   lk_tokentool pubpem KEY
 *
 * KEY is "env:NAME" (read from that environment variable) or "-" (the first
 * line of stdin), so keys stay out of process listings; a literal key is
 * accepted too. TOKEN "-" verifies every remaining stdin line and fails if
 * any is refused. verify prints one JSON object of claims per token.
 *
 * Exit status: 0 success, 1 refused or failed, 2 usage. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "latchkey/key.h"
#include "latchkey/token.h"

#define LINE_MAX_BYTES (LK_TOKEN_MAX_BYTES * 2 + 2)

static int usage(void)
{
    fputs("usage: lk_tokentool genkey live|sbx\n"
          "       lk_tokentool mint KEY CAPJSON [--ttl S] [--sub ID] [--aud A] [--now T]"
          " [--nbf T] [--count N]\n"
          "       lk_tokentool verify KEY TOKEN [--audience A] [--now T] [--max-ttl S]\n"
          "       lk_tokentool pubpem KEY\n"
          "KEY is env:NAME, - (first stdin line) or the key itself.\n",
          stderr);
    return 2;
}

static int parse_int(const char *s, long long *out)
{
    char *end;
    errno = 0;
    *out = strtoll(s, &end, 10);
    return errno == 0 && end != s && *end == '\0';
}

/* Reads one line from stdin without its newline; 0 at EOF. */
static int read_line(char *buf, size_t size)
{
    if (!fgets(buf, (int)size, stdin))
        return 0;
    buf[strcspn(buf, "\r\n")] = '\0';
    return 1;
}

static int load_key(const char *src, lk_key **key)
{
    char buf[LK_KEY_STR_BYTES + 2];
    const char *s = src;
    lk_error err = {0};
    int rc;

    if (strncmp(src, "env:", 4) == 0) {
        s = getenv(src + 4);
        if (!s) {
            fprintf(stderr, "lk_tokentool: environment variable %s is not set\n", src + 4);
            return 1;
        }
    } else if (strcmp(src, "-") == 0) {
        if (!read_line(buf, sizeof buf)) {
            fprintf(stderr, "lk_tokentool: no key on stdin\n");
            return 1;
        }
        s = buf;
    }
    rc = lk_key_parse(s, strlen(s), key, &err);
    OPENSSL_cleanse(buf, sizeof buf);
    if (rc) {
        fprintf(stderr, "lk_tokentool: %s: %s\n", lk_err_name(rc), err.message);
        return 1;
    }
    return 0;
}

static int cmd_genkey(int argc, char **argv)
{
    lk_env env;
    lk_key *key = NULL;
    char s[LK_KEY_STR_BYTES];
    lk_error err = {0};

    if (argc != 3 || lk_env_parse(argv[2], &env))
        return usage();
    if (lk_key_generate(env, &key, &err)) {
        fprintf(stderr, "lk_tokentool: %s\n", err.message);
        return 1;
    }
    lk_key_format(key, s);
    puts(s);
    OPENSSL_cleanse(s, sizeof s);
    lk_key_destroy(key);
    return 0;
}

static int cmd_mint(int argc, char **argv)
{
    lk_mint_opts o = {0};
    long long v, count = 1;
    lk_key *key = NULL;
    int rc = 0;

    if (argc < 4)
        return usage();
    o.capability = argv[3];
    for (int i = 4; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val)
            return usage();
        i++;
        if (!strcmp(opt, "--sub"))
            o.client_id = val;
        else if (!strcmp(opt, "--aud"))
            o.audience = val;
        else if (!strcmp(opt, "--ttl") && parse_int(val, &v))
            o.ttl = v;
        else if (!strcmp(opt, "--now") && parse_int(val, &v))
            o.now = v;
        else if (!strcmp(opt, "--nbf") && parse_int(val, &v))
            o.nbf = v;
        else if (!strcmp(opt, "--count") && parse_int(val, &count) && count > 0 &&
                 count <= 100000)
            ;
        else
            return usage();
    }
    if (load_key(argv[2], &key))
        return 1;
    for (long long i = 0; i < count && rc == 0; i++) {
        char *tok = NULL;
        lk_error err = {0};
        rc = lk_token_mint(key, &o, &tok, &err);
        if (rc)
            fprintf(stderr, "lk_tokentool: mint: %s: %s\n", lk_err_name(rc), err.message);
        else
            puts(tok);
        lk_free(tok);
    }
    lk_key_destroy(key);
    return rc ? 1 : 0;
}

typedef struct resolver {
    const char *kid;
    lk_pubkey *pub;
} resolver;

static int resolve(void *ud, const char *kid, lk_key_info *info)
{
    const resolver *r = ud;
    if (strcmp(kid, r->kid) != 0)
        return LK_ENOTFOUND;
    info->pubkey = r->pub;
    info->revoked = 0;
    info->scopes = LK_ACT_ALL;
    info->workspace = NULL;
    return LK_OK;
}

static void print_claims(const lk_claims *c)
{
    cJSON *o = cJSON_CreateObject();
    char *cap = lk_cap_to_json(lk_claims_cap(c));
    cJSON_AddStringToObject(o, "kid", lk_claims_kid(c));
    cJSON_AddStringToObject(o, "jti", lk_claims_jti(c));
    if (lk_claims_sub(c))
        cJSON_AddStringToObject(o, "sub", lk_claims_sub(c));
    else
        cJSON_AddNullToObject(o, "sub");
    cJSON_AddNumberToObject(o, "iat", (double)lk_claims_iat(c));
    cJSON_AddNumberToObject(o, "exp", (double)lk_claims_exp(c));
    if (lk_claims_nbf(c))
        cJSON_AddNumberToObject(o, "nbf", (double)lk_claims_nbf(c));
    cJSON_AddRawToObject(o, "cap", cap ? cap : "null");
    char *s = cJSON_PrintUnformatted(o);
    if (s)
        puts(s);
    free(s);
    lk_free(cap);
    cJSON_Delete(o);
}

static int verify_one(const char *tok, const lk_verify_opts *o, resolver *r)
{
    lk_claims *c = NULL;
    lk_error err = {0};
    int rc = lk_token_verify(tok, strlen(tok), o, resolve, r, &c, &err);
    if (rc) {
        fprintf(stderr, "lk_tokentool: verify: %s (close %d): %s\n", lk_err_name(rc),
                lk_token_close_code(rc), err.message);
        return 1;
    }
    print_claims(c);
    lk_claims_destroy(c);
    return 0;
}

static int cmd_verify(int argc, char **argv)
{
    lk_verify_opts o = {0};
    long long v;
    lk_key *key = NULL;
    resolver r = {0};
    uint8_t raw[LK_PUBKEY_BYTES];
    int failed = 0;

    if (argc < 4)
        return usage();
    for (int i = 4; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val)
            return usage();
        i++;
        if (!strcmp(opt, "--audience"))
            o.audience = val;
        else if (!strcmp(opt, "--now") && parse_int(val, &v))
            o.now = v;
        else if (!strcmp(opt, "--max-ttl") && parse_int(val, &v))
            o.max_ttl = v;
        else
            return usage();
    }
    if (load_key(argv[2], &key))
        return 1;
    lk_key_public(key, raw);
    r.kid = lk_key_kid(key);
    if (lk_pubkey_create(raw, &r.pub, NULL)) {
        lk_key_destroy(key);
        return 1;
    }
    if (strcmp(argv[3], "-") == 0) {
        static char line[LINE_MAX_BYTES];
        int n = 0;
        while (read_line(line, sizeof line)) {
            if (!line[0])
                continue;
            n++;
            failed |= verify_one(line, &o, &r);
        }
        if (n == 0) {
            fprintf(stderr, "lk_tokentool: no token on stdin\n");
            failed = 1;
        }
    } else {
        failed = verify_one(argv[3], &o, &r);
    }
    lk_pubkey_destroy(r.pub);
    lk_key_destroy(key);
    return failed;
}

static int cmd_pubpem(int argc, char **argv)
{
    lk_key *key = NULL;
    lk_pubkey *pub = NULL;
    uint8_t raw[LK_PUBKEY_BYTES];
    char *pem = NULL;
    int rc;

    if (argc != 3)
        return usage();
    if (load_key(argv[2], &key))
        return 1;
    lk_key_public(key, raw);
    rc = lk_pubkey_create(raw, &pub, NULL) || lk_pubkey_to_pem(pub, &pem, NULL);
    if (!rc)
        fputs(pem, stdout);
    lk_free(pem);
    lk_pubkey_destroy(pub);
    lk_key_destroy(key);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    if (!strcmp(argv[1], "genkey"))
        return cmd_genkey(argc, argv);
    if (!strcmp(argv[1], "mint"))
        return cmd_mint(argc, argv);
    if (!strcmp(argv[1], "verify"))
        return cmd_verify(argc, argv);
    if (!strcmp(argv[1], "pubpem"))
        return cmd_pubpem(argc, argv);
    return usage();
}
