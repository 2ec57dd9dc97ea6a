/* cmd_publish.c - `latchkey publish`: a server-side publish through
 * POST /v1/channels/<channel>/messages. The data is sent as the exact JSON
 * text given (checked, never re-encoded), so large integers survive. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "cli.h"

/* 1 if `text` is exactly one JSON value, surrounding whitespace allowed. */
static int json_value_valid(const char *text, size_t len)
{
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!doc)
        return 0;
    cJSON_Delete(doc);
    for (const char *p = end; p < text + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return 0;
    return 1;
}

static int send_publish(const cli *c, const char *body)
{
    char url[CLI_URL_MAX];
    if (cli_url(c, url) != CLI_OK)
        return CLI_ERR;
    lk_key *key;
    int rc = cli_resolve_key(c, &key);
    if (rc != CLI_OK)
        return rc;
    char *chan = cli_http_escape(c->channel);
    size_t plen = chan ? strlen(chan) + 32 : 0;
    char *path = chan ? malloc(plen) : NULL;
    if (!path) {
        free(chan);
        lk_key_destroy(key);
        cli_error("out of memory");
        return CLI_ERR;
    }
    snprintf(path, plen, "/v1/channels/%s/messages", chan);
    free(chan);

    char raw[LK_KEY_STR_BYTES];
    cli_http_resp resp;
    lk_key_format(key, raw);
    lk_key_destroy(key);
    rc = cli_http("POST", url, path, raw, body, &resp);
    OPENSSL_cleanse(raw, sizeof raw);
    free(path);
    if (rc != CLI_OK)
        return rc;
    if (resp.status != 202 && resp.status != 200) {
        rc = cli_http_fail("publish refused", &resp);
        cli_http_resp_free(&resp);
        return rc;
    }
    cJSON *doc = cJSON_ParseWithLength(resp.body, resp.len);
    cli_http_resp_free(&resp);
    cJSON *seq = cJSON_GetObjectItemCaseSensitive(doc, "seq");
    if (!cJSON_IsNumber(seq) || seq->valuedouble < 0) {
        cJSON_Delete(doc);
        cli_error("the broker's publish response is malformed");
        return CLI_ERR;
    }
    unsigned long long n = (unsigned long long)seq->valuedouble;
    cJSON_Delete(doc);
    if (!c->json)
        return printf("%llu\n", n) < 0 ? CLI_ERR : CLI_OK;
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "channel", c->channel);
        cJSON_AddNumberToObject(o, "seq", (double)n);
    }
    return cli_print_json(o);
}

int cli_cmd_publish(cli *c)
{
    if (!c->channel)
        return cli_usage_error(c, "--channel is required");
    if (!c->data)
        return cli_usage_error(c, "--data is required");
    if (!lk_channel_valid(c->channel, strlen(c->channel))) {
        cli_error("invalid channel name: expected 1-%d of [A-Za-z0-9_@.:=-]",
                  LK_CHANNEL_MAX);
        return CLI_ERR;
    }
    static const char prefix[] = "{\"data\":", suffix[] = "}";
    char *stdin_data = NULL;
    const char *data = c->data;
    size_t len;
    if (strcmp(data, "-") == 0) {
        if (!(stdin_data = cli_read_stdin(CLI_BODY_MAX, &len)))
            return CLI_ERR;
        data = stdin_data;
    } else {
        len = strlen(data);
    }
    int rc = CLI_ERR;
    char *body = NULL;
    if (len + sizeof prefix + sizeof suffix > CLI_BODY_MAX) {
        cli_error("the message is too large: requests are limited to %d bytes",
                  CLI_BODY_MAX);
    } else if (!json_value_valid(data, len)) {
        cli_error("--data is not valid JSON");
    } else if (!(body = malloc(len + sizeof prefix + sizeof suffix))) {
        cli_error("out of memory");
    } else {
        memcpy(body, prefix, sizeof prefix - 1);
        memcpy(body + sizeof prefix - 1, data, len);
        memcpy(body + sizeof prefix - 1 + len, suffix, sizeof suffix);
        rc = send_publish(c, body);
    }
    free(body);
    free(stdin_data);
    return rc;
}
