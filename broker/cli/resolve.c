/* resolve.c - where the registry, the broker URL and the API key come from
 * (SPEC section 6: flag, then environment, then stored defaults). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include "cli.h"

#define DEFAULT_URL "http://127.0.0.1:8080"
#define DEFAULT_DB "latchkey.db"

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

const char *cli_db_path(const cli *c)
{
    if (c->db)
        return c->db;
    const char *v = env_nonempty("LATCHKEY_DB");
    return v ? v : DEFAULT_DB;
}

int cli_url(const cli *c, char out[CLI_URL_MAX])
{
    const char *u = c->url ? c->url : env_nonempty("LATCHKEY_URL");
    if (!u)
        u = DEFAULT_URL;
    size_t n = strlen(u);
    size_t scheme = strncasecmp(u, "http://", 7) == 0    ? 7
                    : strncasecmp(u, "https://", 8) == 0 ? 8
                                                         : 0;
    int ok = scheme && n > scheme && n < CLI_URL_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = isgraph((unsigned char)u[i]) != 0;
    if (!ok) {
        cli_error("the broker URL must be an http:// or https:// URL without "
                  "spaces, at most %d bytes", CLI_URL_MAX - 1);
        return CLI_ERR;
    }
    memcpy(out, u, n + 1);
    while (n > scheme + 1 && out[n - 1] == '/')
        out[--n] = '\0';
    return CLI_OK;
}

int cli_registry_exists(const cli *c)
{
    struct stat st;
    return stat(cli_db_path(c), &st) == 0;
}

int cli_open_registry(const cli *c, int create, lk_registry **out)
{
    const char *path = cli_db_path(c);
    struct stat st;
    *out = NULL;
    if (!create && stat(path, &st) != 0) {
        if (errno == ENOENT)
            cli_error("no key registry at %s (pass --db, set LATCHKEY_DB, or "
                      "create a key with `latchkey keys create`)", path);
        else
            cli_error("cannot read the key registry %s: %s", path, strerror(errno));
        return CLI_ERR;
    }
    lk_error err;
    if (lk_registry_open(path, out, &err) != LK_OK)
        return cli_lk_error("cannot open the key registry", &err);
    return CLI_OK;
}

static int parse_key(const char *text, const char *source, lk_key **key)
{
    lk_error err;
    if (lk_key_parse(text, strlen(text), key, &err) != LK_OK) {
        cli_error("invalid API key (from %s): %s", source, err.message);
        return CLI_ERR;
    }
    return CLI_OK;
}

int cli_resolve_key(const cli *c, lk_key **key)
{
    *key = NULL;
    if (c->key)
        return parse_key(c->key, "--key", key);
    const char *env = env_nonempty("LATCHKEY_API_KEY");
    if (env)
        return parse_key(env, "LATCHKEY_API_KEY", key);

    char url[CLI_URL_MAX];
    if (cli_url(c, url) != CLI_OK)
        return CLI_ERR;
    cli_creds *cr;
    int rc = cli_creds_load(&cr);
    if (rc != CLI_OK)
        return rc;
    int ambiguous = 0;
    const char *ws = cli_creds_workspace(cr, url, c->workspace, &ambiguous);
    const char *stored = ws ? cli_creds_key(cr, url, ws) : NULL;
    if (stored) {
        rc = parse_key(stored, cli_creds_path(cr), key);
    } else if (ambiguous) {
        cli_error("keys for several workspaces are stored for %s; choose one "
                  "with --workspace or `latchkey workspace use WS`", url);
        rc = CLI_ERR;
    } else if (ws) {
        cli_error("no API key stored for workspace %s at %s; run `latchkey "
                  "login --key KEY --url %s`, or pass --key", ws, url, url);
        rc = CLI_ERR;
    } else {
        cli_error("no API key: pass --key, set LATCHKEY_API_KEY, or run "
                  "`latchkey login --key KEY --url %s`", url);
        rc = CLI_ERR;
    }
    cli_creds_destroy(cr);
    return rc;
}

int cli_check_registered(lk_registry *reg, const lk_key *key, lk_key_record *rec)
{
    lk_error err;
    const char *kid = lk_key_kid(key);
    int rc = lk_registry_get(reg, kid, rec, &err);
    if (rc == LK_ENOTFOUND)
        return rc;
    if (rc != LK_OK) {
        cli_lk_error("key registry", &err);
        return rc;
    }
    uint8_t pub[LK_PUBKEY_BYTES];
    lk_key_public(key, pub);
    if (CRYPTO_memcmp(pub, rec->pubkey, LK_PUBKEY_BYTES) != 0 ||
        rec->env != lk_key_env(key)) {
        cli_error("the API key does not match the registered key %s", kid);
        return LK_EINVAL;
    }
    if (rec->status == LK_KEY_REVOKED) {
        cli_error("API key %s is revoked", kid);
        return LK_EKEY_REVOKED;
    }
    return LK_OK;
}

int cli_parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}
