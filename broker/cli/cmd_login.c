/* cmd_login.c - `latchkey login`, `logout` and `workspace use`: the stored
 * credentials, keyed by broker URL and workspace. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "cli.h"

/* What login learned about a key, from the registry or the broker. */
typedef struct key_details {
    char workspace[LK_WORKSPACE_MAX + 1];
    lk_env env;
    char name[LK_KEY_NAME_MAX + 1];
    const char *checked_with;
} key_details;

/* Returns CLI_OK with *found set when the registry holds the key. Given
 * --db, the registry must hold it. */
static int check_in_registry(const cli *c, const lk_key *key, key_details *d,
                             int *found)
{
    *found = 0;
    if (!c->db && !cli_registry_exists(c))
        return CLI_OK;
    lk_registry *reg;
    int rc = cli_open_registry(c, 0, &reg);
    if (rc != CLI_OK)
        return rc;
    lk_key_record rec;
    int r = cli_check_registered(reg, key, &rec);
    lk_registry_close(reg);
    if (r == LK_ENOTFOUND && c->db) {
        cli_error("key %s is not in the key registry %s", lk_key_kid(key), c->db);
        return CLI_ERR;
    }
    if (r == LK_ENOTFOUND)
        return CLI_OK;
    if (r != LK_OK)
        return CLI_ERR;
    snprintf(d->workspace, sizeof d->workspace, "%s", rec.workspace);
    snprintf(d->name, sizeof d->name, "%s", rec.name);
    d->env = rec.env;
    d->checked_with = "registry";
    *found = 1;
    return CLI_OK;
}

static int check_with_broker(const char *url, const lk_key *key, key_details *d)
{
    char raw[LK_KEY_STR_BYTES];
    cli_http_resp resp;
    lk_key_format(key, raw);
    int rc = cli_http("GET", url, "/v1/key", raw, NULL, &resp);
    OPENSSL_cleanse(raw, sizeof raw);
    if (rc != CLI_OK)
        return rc;
    if (resp.status != 200) {
        rc = cli_http_fail("the broker refused the key", &resp);
        cli_http_resp_free(&resp);
        return rc;
    }
    cJSON *doc = cJSON_ParseWithLength(resp.body, resp.len);
    cli_http_resp_free(&resp);
    const char *kid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "kid"));
    const char *ws = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "workspace"));
    const char *env = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "env"));
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "name"));
    rc = CLI_ERR;
    if (!kid || !ws || !env || !lk_workspace_valid(ws) ||
        lk_env_parse(env, &d->env) != LK_OK)
        cli_error("the broker's reply to GET /v1/key is malformed");
    else if (strcmp(kid, lk_key_kid(key)) != 0 || d->env != lk_key_env(key))
        cli_error("the broker described a different key than the one given");
    else
        rc = CLI_OK;
    if (rc == CLI_OK) {
        snprintf(d->workspace, sizeof d->workspace, "%s", ws);
        cli_sanitize(name ? name : "", name ? strlen(name) : 0, d->name,
                     LK_KEY_NAME_MAX);
        d->checked_with = "broker";
    }
    cJSON_Delete(doc);
    return rc;
}

int cli_cmd_login(cli *c)
{
    if (!c->key && !getenv("LATCHKEY_API_KEY"))
        return cli_usage_error(c, "--key is required");
    char url[CLI_URL_MAX];
    lk_key *key = NULL;
    cli_creds *cr = NULL;
    key_details d = {0};
    int found = 0;
    int rc = cli_url(c, url);
    if (rc == CLI_OK)
        rc = cli_resolve_key(c, &key);
    if (rc == CLI_OK)
        rc = check_in_registry(c, key, &d, &found);
    if (rc == CLI_OK && !found)
        rc = check_with_broker(url, key, &d);
    if (rc != CLI_OK)
        goto out;
    if (c->workspace && strcmp(c->workspace, d.workspace) != 0) {
        cli_error("key %s belongs to workspace %s, not %s", lk_key_kid(key),
                  d.workspace, c->workspace);
        rc = CLI_ERR;
        goto out;
    }
    char raw[LK_KEY_STR_BYTES];
    lk_key_format(key, raw);
    rc = cli_creds_load(&cr);
    if (rc == CLI_OK)
        rc = cli_creds_put(cr, url, d.workspace, raw, lk_key_kid(key), d.env);
    OPENSSL_cleanse(raw, sizeof raw);
    if (rc == CLI_OK)
        rc = cli_creds_save(cr);
    if (rc != CLI_OK)
        goto out;
    if (c->json) {
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddStringToObject(o, "url", url);
            cJSON_AddStringToObject(o, "workspace", d.workspace);
            cJSON_AddStringToObject(o, "kid", lk_key_kid(key));
            cJSON_AddStringToObject(o, "env", lk_env_name(d.env));
            cJSON_AddStringToObject(o, "name", d.name);
            cJSON_AddStringToObject(o, "checked_with", d.checked_with);
            cJSON_AddStringToObject(o, "credentials", cli_creds_path(cr));
        }
        rc = cli_print_json(o);
    } else {
        printf("Logged in to %s with key %s (workspace %s, %s; checked with the %s).\n",
               url, lk_key_kid(key), d.workspace, lk_env_name(d.env),
               strcmp(d.checked_with, "registry") == 0 ? "key registry" : "broker");
    }
out:
    cli_creds_destroy(cr);
    lk_key_destroy(key);
    return rc;
}

/* {"url":..,"workspace":..}, the --json answer of logout and workspace use. */
static int print_url_workspace(const char *url, const char *ws)
{
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "url", url);
        cJSON_AddStringToObject(o, "workspace", ws);
    }
    return cli_print_json(o);
}

int cli_cmd_logout(cli *c)
{
    char url[CLI_URL_MAX];
    cli_creds *cr = NULL;
    int rc = cli_url(c, url);
    if (rc == CLI_OK)
        rc = cli_creds_load(&cr);
    if (rc != CLI_OK)
        return rc;
    int ambiguous;
    const char *ws_found = cli_creds_workspace(cr, url, c->workspace, &ambiguous);
    char ws[LK_WORKSPACE_MAX + 1];
    snprintf(ws, sizeof ws, "%s", ws_found ? ws_found : "");
    rc = CLI_ERR;
    if (!ws_found && ambiguous)
        cli_error("keys for several workspaces are stored for %s; choose one with "
                  "--workspace", url);
    else if (!ws_found)
        cli_error("not logged in to %s", url);
    else if (cli_creds_remove(cr, url, ws) != 1)
        cli_error("no API key stored for workspace %s at %s", ws, url);
    else
        rc = cli_creds_save(cr);
    if (rc == CLI_OK) {
        if (c->json) {
            rc = print_url_workspace(url, ws);
        } else {
            printf("Logged out of %s (workspace %s).\n", url, ws);
        }
    }
    cli_creds_destroy(cr);
    return rc;
}

int cli_cmd_workspace_use(cli *c)
{
    const char *ws = c->args[0];
    if (!lk_workspace_valid(ws)) {
        cli_error("invalid workspace: expected \"ws_\" followed by 1-64 of [a-z0-9_-]");
        return CLI_ERR;
    }
    char url[CLI_URL_MAX];
    cli_creds *cr = NULL;
    int rc = cli_url(c, url);
    if (rc == CLI_OK)
        rc = cli_creds_load(&cr);
    if (rc == CLI_OK)
        rc = cli_creds_set_default(cr, url, ws);
    if (rc == CLI_OK)
        rc = cli_creds_save(cr);
    if (rc == CLI_OK) {
        if (!cli_creds_key(cr, url, ws))
            fprintf(stderr, "Note: no API key is stored for %s at %s yet; run "
                            "`latchkey login --key KEY --url %s`.\n", ws, url, url);
        if (c->json) {
            rc = print_url_workspace(url, ws);
        } else {
            printf("Default workspace for %s is now %s.\n", url, ws);
        }
    }
    cli_creds_destroy(cr);
    return rc;
}
