/* output.c - messages, JSON output and small text helpers shared by the
 * commands. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "cli.h"

void cli_error(const char *fmt, ...)
{
    va_list ap;
    fputs("latchkey: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_usage_error(const cli *c, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "latchkey %s: ", c->cmd->path);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see latchkey %s --help)\n", c->cmd->path);
    return CLI_USAGE;
}

int cli_lk_error(const char *what, const lk_error *err)
{
    cli_error("%s: %s", what, err->message);
    return CLI_ERR;
}

void cli_json_wipe(cJSON *item)
{
    for (; item; item = item->next) {
        if (item->valuestring)
            OPENSSL_cleanse(item->valuestring, strlen(item->valuestring));
        if (item->child)
            cli_json_wipe(item->child);
    }
}

int cli_print_json(cJSON *doc)
{
    char *text = doc ? cJSON_Print(doc) : NULL;
    if (doc) {
        cli_json_wipe(doc);
        cJSON_Delete(doc);
    }
    if (!text) {
        cli_error("out of memory");
        return CLI_ERR;
    }
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, stdout) == n && fputc('\n', stdout) != EOF;
    OPENSSL_cleanse(text, n);
    cJSON_free(text);
    return ok ? CLI_OK : CLI_ERR;
}

void cli_format_time(int64_t t, char out[32])
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (t == 0 || !gmtime_r(&tt, &tm) ||
        strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "-");
}

cJSON *cli_scopes_json(const char *scopes)
{
    cJSON *arr = cJSON_CreateArray();
    const char *p = scopes;
    while (arr && *p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char item[LK_SCOPES_MAX + 1];
        if (n > LK_SCOPES_MAX)
            n = LK_SCOPES_MAX;
        memcpy(item, p, n);
        item[n] = '\0';
        if (n > 0)
            cJSON_AddItemToArray(arr, cJSON_CreateString(item));
        p += n;
        if (*p == ',')
            p++;
    }
    return arr;
}

static void add_time(cJSON *obj, const char *name, int64_t t)
{
    if (t)
        cJSON_AddNumberToObject(obj, name, (double)t);
    else
        cJSON_AddNullToObject(obj, name);
}

cJSON *cli_record_json(const lk_key_record *rec)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "kid", rec->kid);
    cJSON_AddStringToObject(o, "workspace", rec->workspace);
    cJSON_AddStringToObject(o, "env", lk_env_name(rec->env));
    cJSON_AddStringToObject(o, "name", rec->name);
    cJSON_AddItemToObject(o, "scopes", cli_scopes_json(rec->scopes));
    cJSON_AddStringToObject(o, "status",
                            rec->status == LK_KEY_REVOKED ? "revoked" : "active");
    add_time(o, "created_at", rec->created_at);
    add_time(o, "revoked_at", rec->revoked_at);
    add_time(o, "last_used_at", rec->last_used_at);
    return o;
}

void cli_sanitize(const char *in, size_t len, char *out, size_t max)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o < max; i++) {
        unsigned char ch = (unsigned char)in[i];
        out[o++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    if (o == max && len > max && max >= 3)
        memcpy(out + max - 3, "...", 3);
    out[o] = '\0';
}

char *cli_read_stdin(size_t max, size_t *len)
{
    char *buf = malloc(max + 1);
    size_t n = 0;
    if (!buf) {
        cli_error("out of memory");
        return NULL;
    }
    for (;;) {
        ssize_t got = read(STDIN_FILENO, buf + n, max + 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            cli_error("cannot read stdin");
            break;
        }
        if (got == 0) {
            buf[n] = '\0';
            *len = n;
            return buf;
        }
        n += (size_t)got;
        if (n > max) {
            cli_error("stdin holds more than %zu bytes", max);
            break;
        }
    }
    OPENSSL_cleanse(buf, n);
    free(buf);
    return NULL;
}
