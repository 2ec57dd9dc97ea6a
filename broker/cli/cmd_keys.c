/* cmd_keys.c - `latchkey keys create|list|revoke|rotate`: the key registry
 * from the command line. A raw key is printed only by create and rotate,
 * once, and wiped right after. */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "cli.h"

/* Prints a freshly created key: the key alone on stdout (so it can be
 * captured) and the context on stderr, or one JSON document. */
static int print_new_key(const cli *c, const char *raw, const lk_key_record *rec,
                         const char *replaces)
{
    if (c->json) {
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddStringToObject(o, "key", raw);
            cJSON_AddStringToObject(o, "kid", rec->kid);
            cJSON_AddStringToObject(o, "workspace", rec->workspace);
            cJSON_AddStringToObject(o, "env", lk_env_name(rec->env));
            cJSON_AddStringToObject(o, "name", rec->name);
            cJSON_AddItemToObject(o, "scopes", cli_scopes_json(rec->scopes));
            if (replaces)
                cJSON_AddStringToObject(o, "replaces", replaces);
        }
        return cli_print_json(o);
    }
    if (printf("%s\n", raw) < 0)
        return CLI_ERR;
    fprintf(stderr, "Created %s key %s \"%s\" in workspace %s with scopes %s.\n",
            lk_env_name(rec->env), rec->kid, rec->name, rec->workspace, rec->scopes);
    if (replaces)
        fprintf(stderr, "Key %s stays active until you run `latchkey keys revoke %s`.\n",
                replaces, replaces);
    fprintf(stderr, "This is the only time the key is shown: store it now.\n");
    return CLI_OK;
}

int cli_cmd_keys_create(cli *c)
{
    if (!c->workspace)
        return cli_usage_error(c, "--workspace is required");
    if (!c->name)
        return cli_usage_error(c, "--name is required");
    if (!c->scopes)
        return cli_usage_error(c, "--scopes is required");
    lk_registry *reg;
    int rc = cli_open_registry(c, 1, &reg);
    if (rc != CLI_OK)
        return rc;
    char raw[LK_KEY_STR_BYTES];
    lk_key_record rec;
    lk_error err;
    if (lk_registry_create_key(reg, c->workspace, c->name, c->scopes,
                               c->sandbox ? LK_ENV_SBX : LK_ENV_LIVE, raw, &rec,
                               &err) != LK_OK)
        rc = cli_lk_error("cannot create the key", &err);
    else
        rc = print_new_key(c, raw, &rec, NULL);
    OPENSSL_cleanse(raw, sizeof raw);
    lk_registry_close(reg);
    return rc;
}

static void print_table(const lk_key_record *recs, size_t n)
{
    int ws_w = (int)strlen("WORKSPACE"), name_w = (int)strlen("NAME");
    for (size_t i = 0; i < n; i++) {
        int w = (int)strlen(recs[i].workspace), nw = (int)strlen(recs[i].name);
        ws_w = w > ws_w ? w : ws_w;
        name_w = nw > name_w ? nw : name_w;
    }
    printf("%-16s  %-*s  %-4s  %-7s  %-20s  %-20s  %-*s  %s\n", "KID", ws_w,
           "WORKSPACE", "ENV", "STATUS", "CREATED", "LAST USED", name_w, "NAME",
           "SCOPES");
    for (size_t i = 0; i < n; i++) {
        char created[32], used[32];
        cli_format_time(recs[i].created_at, created);
        cli_format_time(recs[i].last_used_at, used);
        printf("%-16s  %-*s  %-4s  %-7s  %-20s  %-20s  %-*s  %s\n", recs[i].kid,
               ws_w, recs[i].workspace, lk_env_name(recs[i].env),
               recs[i].status == LK_KEY_REVOKED ? "revoked" : "active", created,
               used, name_w, recs[i].name, recs[i].scopes);
    }
}

int cli_cmd_keys_list(cli *c)
{
    lk_registry *reg;
    int rc = cli_open_registry(c, 0, &reg);
    if (rc != CLI_OK)
        return rc;
    lk_key_record *recs = NULL;
    size_t n = 0;
    lk_error err;
    if (lk_registry_list(reg, c->workspace, &recs, &n, &err) != LK_OK) {
        rc = cli_lk_error("cannot list keys", &err);
    } else if (c->json) {
        cJSON *arr = cJSON_CreateArray();
        for (size_t i = 0; arr && i < n; i++)
            cJSON_AddItemToArray(arr, cli_record_json(&recs[i]));
        rc = cli_print_json(arr);
    } else if (n == 0 && c->workspace) {
        fprintf(stderr, "No keys in workspace %s.\n", c->workspace);
    } else if (n == 0) {
        fprintf(stderr, "No keys.\n");
    } else {
        print_table(recs, n);
    }
    lk_free(recs);
    lk_registry_close(reg);
    return rc;
}

int cli_cmd_keys_revoke(cli *c)
{
    lk_registry *reg;
    int rc = cli_open_registry(c, 0, &reg);
    if (rc != CLI_OK)
        return rc;
    const char *kid = c->args[0];
    lk_key_record rec;
    lk_error err;
    int was_revoked = 0;
    if (lk_registry_get(reg, kid, &rec, &err) != LK_OK) {
        rc = cli_lk_error("cannot revoke the key", &err);
        goto out;
    }
    was_revoked = rec.status == LK_KEY_REVOKED;
    if (lk_registry_revoke(reg, kid, &err) != LK_OK ||
        lk_registry_get(reg, kid, &rec, &err) != LK_OK) {
        rc = cli_lk_error("cannot revoke the key", &err);
        goto out;
    }
    if (c->json)
        rc = cli_print_json(cli_record_json(&rec));
    else if (was_revoked)
        printf("Key %s was already revoked.\n", kid);
    else
        printf("Revoked key %s (workspace %s, \"%s\").\n", kid, rec.workspace,
               rec.name);
out:
    lk_registry_close(reg);
    return rc;
}

int cli_cmd_keys_rotate(cli *c)
{
    lk_registry *reg;
    int rc = cli_open_registry(c, 0, &reg);
    if (rc != CLI_OK)
        return rc;
    char raw[LK_KEY_STR_BYTES];
    lk_key_record rec;
    lk_error err;
    if (lk_registry_rotate(reg, c->args[0], raw, &rec, &err) != LK_OK)
        rc = cli_lk_error("cannot rotate the key", &err);
    else
        rc = print_new_key(c, raw, &rec, c->args[0]);
    OPENSSL_cleanse(raw, sizeof raw);
    lk_registry_close(reg);
    return rc;
}
