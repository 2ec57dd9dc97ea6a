/* creds.c - the stored credentials file,
 * $XDG_CONFIG_HOME/latchkey/credentials.json (default ~/.config/...):
 *
 *   {"servers": {"<url>": {"default_workspace": "ws_a",
 *                          "credentials": {"ws_a": {"api_key": "lk_...",
 *                                                   "kid": "...",
 *                                                   "env": "live"}}}}}
 *
 * The file holds API keys, so it is created 0600 in a 0700 directory and
 * replaced atomically (temp file, fsync, rename, fsync of the directory):
 * a crash leaves the old file or the new one, never half of either. */
#define _GNU_SOURCE /* mkostemp */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "cli.h"

/* Far above any real file; keeps a corrupt or hostile file from costing
 * unbounded memory. */
#define CREDS_MAX_BYTES (1024 * 1024)

struct cli_creds {
    cJSON *root;
    char base[PATH_MAX];  /* $XDG_CONFIG_HOME or ~/.config */
    char dir[PATH_MAX];   /* base/latchkey */
    char path[PATH_MAX];  /* dir/credentials.json */
};

static int locate(cli_creds *cr)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    int n;
    if (xdg && xdg[0] == '/') {
        n = snprintf(cr->base, sizeof cr->base, "%s", xdg);
    } else {
        if (!home || !*home) {
            struct passwd *pw = getpwuid(getuid());
            home = pw ? pw->pw_dir : NULL;
        }
        if (!home || !*home) {
            cli_error("cannot find the config directory: HOME is not set");
            return CLI_ERR;
        }
        n = snprintf(cr->base, sizeof cr->base, "%s/.config", home);
    }
    if (n < 0 || (size_t)n >= sizeof cr->base ||
        (size_t)snprintf(cr->dir, sizeof cr->dir, "%s/latchkey", cr->base) >= sizeof cr->dir ||
        (size_t)snprintf(cr->path, sizeof cr->path, "%s/credentials.json", cr->dir) >=
            sizeof cr->path) {
        cli_error("the config directory path is too long");
        return CLI_ERR;
    }
    return CLI_OK;
}

static int read_file(cli_creds *cr, char **text, size_t *len)
{
    *text = NULL;
    int fd = open(cr->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return CLI_OK;
        cli_error("cannot read %s: %s", cr->path, strerror(errno));
        return CLI_ERR;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > CREDS_MAX_BYTES) {
        cli_error("%s is not a regular file of at most %d bytes", cr->path,
                  CREDS_MAX_BYTES);
        close(fd);
        return CLI_ERR;
    }
    if (st.st_mode & 077)
        fprintf(stderr, "latchkey: warning: %s is readable by other users; "
                        "run chmod 600 on it\n", cr->path);
    char *buf = malloc((size_t)st.st_size + 1);
    size_t n = 0;
    if (!buf) {
        close(fd);
        cli_error("out of memory");
        return CLI_ERR;
    }
    for (;;) {
        ssize_t got = read(fd, buf + n, (size_t)st.st_size - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0 || (size_t)(n += (size_t)got) == (size_t)st.st_size)
            break;
    }
    close(fd);
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return CLI_OK;
}

int cli_creds_load(cli_creds **out)
{
    *out = NULL;
    cli_creds *cr = calloc(1, sizeof *cr);
    if (!cr) {
        cli_error("out of memory");
        return CLI_ERR;
    }
    char *text = NULL;
    size_t len = 0;
    if (locate(cr) != CLI_OK || read_file(cr, &text, &len) != CLI_OK) {
        free(cr);
        return CLI_ERR;
    }
    if (text) {
        const char *end = NULL;
        cr->root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
        OPENSSL_cleanse(text, len);
        free(text);
        cJSON *servers = cJSON_GetObjectItemCaseSensitive(cr->root, "servers");
        if (!cJSON_IsObject(cr->root) || (servers && !cJSON_IsObject(servers))) {
            cli_error("%s is not a latchkey credentials file; fix or remove it",
                      cr->path);
            cli_creds_destroy(cr);
            return CLI_ERR;
        }
    } else {
        cr->root = cJSON_CreateObject();
    }
    if (!cr->root) {
        cli_error("out of memory");
        free(cr);
        return CLI_ERR;
    }
    *out = cr;
    return CLI_OK;
}

void cli_creds_destroy(cli_creds *cr)
{
    if (!cr)
        return;
    cli_json_wipe(cr->root);
    cJSON_Delete(cr->root);
    free(cr);
}

const char *cli_creds_path(const cli_creds *cr)
{
    return cr->path;
}

static cJSON *child_object(cJSON *parent, const char *name, int create)
{
    if (!parent)
        return NULL;
    cJSON *o = cJSON_GetObjectItemCaseSensitive(parent, name);
    if (cJSON_IsObject(o))
        return o;
    if (!create)
        return NULL;
    if (o)
        cJSON_DeleteItemFromObjectCaseSensitive(parent, name);
    o = cJSON_CreateObject();
    if (o && !cJSON_AddItemToObject(parent, name, o)) {
        cJSON_Delete(o);
        o = NULL;
    }
    return o;
}

static cJSON *server(cli_creds *cr, const char *url, int create)
{
    return child_object(child_object(cr->root, "servers", create), url, create);
}

const char *cli_creds_workspace(cli_creds *cr, const char *url,
                                const char *explicit_ws, int *ambiguous)
{
    *ambiguous = 0;
    if (explicit_ws)
        return explicit_ws;
    const char *env = getenv("LATCHKEY_WORKSPACE");
    if (env && *env)
        return env;
    cJSON *srv = server(cr, url, 0);
    const char *dflt = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(srv, "default_workspace"));
    if (dflt)
        return dflt;
    cJSON *creds = child_object(srv, "credentials", 0);
    int n = cJSON_GetArraySize(creds);
    if (n == 1)
        return creds->child->string;
    *ambiguous = n > 1;
    return NULL;
}

const char *cli_creds_key(cli_creds *cr, const char *url, const char *ws)
{
    cJSON *entry = child_object(child_object(server(cr, url, 0), "credentials", 0),
                                ws, 0);
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(entry, "api_key"));
}

int cli_creds_put(cli_creds *cr, const char *url, const char *ws,
                  const char *api_key, const char *kid, lk_env env)
{
    cJSON *creds = child_object(server(cr, url, 1), "credentials", 1);
    cJSON *entry = cJSON_CreateObject();
    if (!creds || !entry || !cJSON_AddStringToObject(entry, "api_key", api_key) ||
        !cJSON_AddStringToObject(entry, "kid", kid) ||
        !cJSON_AddStringToObject(entry, "env", lk_env_name(env))) {
        cli_json_wipe(entry);
        cJSON_Delete(entry);
        cli_error("out of memory");
        return CLI_ERR;
    }
    cJSON *old = cJSON_DetachItemFromObjectCaseSensitive(creds, ws);
    cli_json_wipe(old);
    cJSON_Delete(old);
    cJSON_AddItemToObject(creds, ws, entry);
    return CLI_OK;
}

int cli_creds_remove(cli_creds *cr, const char *url, const char *ws)
{
    cJSON *srv = server(cr, url, 0);
    cJSON *creds = child_object(srv, "credentials", 0);
    cJSON *old = creds ? cJSON_DetachItemFromObjectCaseSensitive(creds, ws) : NULL;
    if (!old)
        return 0;
    cli_json_wipe(old);
    cJSON_Delete(old);
    const char *dflt = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(srv, "default_workspace"));
    if (dflt && strcmp(dflt, ws) == 0)
        cJSON_DeleteItemFromObjectCaseSensitive(srv, "default_workspace");
    if (cJSON_GetArraySize(creds) == 0 && !srv->child->next)
        cJSON_DeleteItemFromObjectCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(cr->root, "servers"), url);
    return 1;
}

int cli_creds_set_default(cli_creds *cr, const char *url, const char *ws)
{
    cJSON *srv = server(cr, url, 1);
    cJSON *value = cJSON_CreateString(ws);
    if (!srv || !value) {
        cJSON_Delete(value);
        cli_error("out of memory");
        return CLI_ERR;
    }
    if (cJSON_GetObjectItemCaseSensitive(srv, "default_workspace"))
        cJSON_ReplaceItemInObjectCaseSensitive(srv, "default_workspace", value);
    else
        cJSON_AddItemToObject(srv, "default_workspace", value);
    return CLI_OK;
}

/* mkdir -p for the config directory; directories we create are 0700. */
static int make_dirs(char *path)
{
    struct stat st;
    if (stat(path, &st) == 0)
        return S_ISDIR(st.st_mode) ? 0 : -1;
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(path, 0700);
        *p = '/';
        if (rc != 0 && errno != EEXIST)
            return -1;
    }
    return mkdir(path, 0700) == 0 || errno == EEXIST ? 0 : -1;
}

static int write_all(int fd, const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

int cli_creds_save(cli_creds *cr)
{
    char dir[PATH_MAX];
    memcpy(dir, cr->dir, sizeof dir);
    if (make_dirs(dir) != 0) {
        cli_error("cannot create %s: %s", cr->dir, strerror(errno));
        return CLI_ERR;
    }
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s/.credentials.json.XXXXXX", cr->dir) >=
        sizeof tmp) {
        cli_error("the config directory path is too long");
        return CLI_ERR;
    }
    char *text = cJSON_Print(cr->root);
    if (!text) {
        cli_error("out of memory");
        return CLI_ERR;
    }
    size_t len = strlen(text);
    int ok = 0;
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd >= 0) {
        ok = fchmod(fd, 0600) == 0 && write_all(fd, text, len) == 0 &&
             write_all(fd, "\n", 1) == 0 && fsync(fd) == 0;
        ok = close(fd) == 0 && ok;
        ok = ok && rename(tmp, cr->path) == 0;
        if (!ok) {
            int saved = errno;
            unlink(tmp);
            errno = saved;
        }
    }
    if (!ok)
        cli_error("cannot write %s: %s", cr->path, strerror(errno));
    OPENSSL_cleanse(text, len);
    cJSON_free(text);
    if (!ok)
        return CLI_ERR;
    /* Make the rename itself durable. */
    int dfd = open(cr->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return CLI_OK;
}
