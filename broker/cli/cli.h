/*
 * cli.h - shared state of the `latchkey` command line tool (SPEC section 6).
 *
 * main.c parses argv into one `cli` and runs the command's handler. Each
 * cmd_*.c file implements one command group; resolve.c, creds.c, http.c
 * and output.c are the helpers they share.
 *
 * Ownership: strings in `cli` point into argv or the environment except
 * key_buf, which holds a copy of --key and is wiped at exit. Functions that
 * return memory say how to free it.
 *
 * Thread safety: the tool is single-threaded.
 */
#ifndef LK_CLI_H
#define LK_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "latchkey/latchkey.h"

/* Exit codes: 0 success, 1 an error the user can act on, 2 a usage error. */
enum { CLI_OK = 0, CLI_ERR = 1, CLI_USAGE = 2 };

#define CLI_MAX_ARGS 4
#define CLI_URL_MAX 2048
/* A buffer for an API key as given, with room to notice one that is too
 * long to be valid. */
#define CLI_KEY_BUF_BYTES (LK_KEY_STR_BYTES + 2)
/* Largest token `token inspect` / `token verify` read. */
#define CLI_TOKEN_MAX 65536
/* Request bodies are limited to 64 KiB by the broker (SPEC section 5). */
#define CLI_BODY_MAX 65536

typedef struct cli_command cli_command;

typedef struct cli {
    /* global options */
    const char *db;
    const char *url;
    const char *key;        /* points at key_buf when --key was given */
    const char *workspace;
    int json;
    /* command options */
    const char *name;
    const char *scopes;
    int sandbox;
    const char *capability;
    const char *ttl;
    const char *client_id;
    const char *audience;
    int remote;
    const char *max_ttl;
    const char *channel;
    const char *data;

    const cli_command *cmd;
    const char *args[CLI_MAX_ARGS];
    int nargs;
    char key_buf[CLI_KEY_BUF_BYTES];
} cli;

/* Command option bits for cli_command.options; the global options (--db,
 * --url, --key, --workspace, --json) are accepted by every command. */
enum {
    CLI_O_NAME = 1u << 0,
    CLI_O_SCOPES = 1u << 1,
    CLI_O_SANDBOX = 1u << 2,
    CLI_O_CAPABILITY = 1u << 3,
    CLI_O_TTL = 1u << 4,
    CLI_O_CLIENT_ID = 1u << 5,
    CLI_O_AUDIENCE = 1u << 6,
    CLI_O_REMOTE = 1u << 7,
    CLI_O_MAX_TTL = 1u << 8,
    CLI_O_CHANNEL = 1u << 9,
    CLI_O_DATA = 1u << 10,
};

struct cli_command {
    const char *path;     /* "keys create" */
    const char *summary;  /* one line for the command list */
    const char *help;     /* full help text */
    unsigned options;     /* CLI_O_* bits the command accepts */
    int min_args, max_args;
    int (*run)(cli *c);
};

/* commands.c: the command table (terminated by a NULL path) and help. */
extern const cli_command cli_commands[];
extern const char cli_main_help[];
/* The help of a command group ("keys"), or NULL if not a group. */
const char *cli_group_help(const char *group);

/* Command handlers (cmd_*.c). Each returns an exit code. */
int cli_cmd_keys_create(cli *c);
int cli_cmd_keys_list(cli *c);
int cli_cmd_keys_revoke(cli *c);
int cli_cmd_keys_rotate(cli *c);
int cli_cmd_token_mint(cli *c);
int cli_cmd_token_inspect(cli *c);
int cli_cmd_token_verify(cli *c);
int cli_cmd_login(cli *c);
int cli_cmd_logout(cli *c);
int cli_cmd_workspace_use(cli *c);
int cli_cmd_publish(cli *c);

/* output.c */

/* Prints "latchkey: <message>" on stderr. Never pass a secret. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints a usage error and a hint to the command's --help on stderr;
 * returns CLI_USAGE. */
int cli_usage_error(const cli *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prints "<what>: <error message>" on stderr; returns CLI_ERR. */
int cli_lk_error(const char *what, const lk_error *err);
struct cJSON;
/* Prints `doc` pretty-printed on stdout and deletes it; wipes the printed
 * text, which may hold a key or token. Returns CLI_OK or CLI_ERR. */
int cli_print_json(struct cJSON *doc);
/* Wipes every string in a cJSON tree (before cJSON_Delete of a tree that
 * held a secret). */
void cli_json_wipe(struct cJSON *item);
/* "2024-05-01T12:00:00Z", or "-" for 0. */
void cli_format_time(int64_t t, char out[32]);
/* A canonical comma-separated scope list as a JSON array. */
struct cJSON *cli_scopes_json(const char *scopes);
/* The public details of a key record as a JSON object. */
struct cJSON *cli_record_json(const lk_key_record *rec);
/* Copies at most `max` bytes of untrusted text (a server message) into
 * out, replacing control characters, so it is safe on a terminal. */
void cli_sanitize(const char *in, size_t len, char *out, size_t max);
/* Reads stdin up to `max` bytes. Caller wipes and frees with free().
 * Returns NULL with a message printed when it is larger or unreadable. */
char *cli_read_stdin(size_t max, size_t *len);

/* resolve.c */

/* --db, then $LATCHKEY_DB, then ./latchkey.db. */
const char *cli_db_path(const cli *c);
/* --url, then $LATCHKEY_URL, then http://127.0.0.1:8080; trailing slashes
 * removed. CLI_ERR with a message when not an http(s) URL. */
int cli_url(const cli *c, char out[CLI_URL_MAX]);
/* Opens the registry. Unless `create` is set, a missing file is an error.
 * Returns an exit code; *out is NULL on failure. */
int cli_open_registry(const cli *c, int create, lk_registry **out);
/* 1 if the registry file exists (it is then worth consulting). */
int cli_registry_exists(const cli *c);
/* The API key: --key, then $LATCHKEY_API_KEY, then the stored credential
 * for the resolved URL and workspace. Parses it into *key (caller destroys
 * with lk_key_destroy). Returns an exit code. */
int cli_resolve_key(const cli *c, lk_key **key);
/* Looks the key up in `reg` and checks it is the registered, active key.
 * Returns LK_OK with *rec filled, LK_ENOTFOUND when the registry does not
 * know the kid, or another code after printing an error. */
int cli_check_registered(lk_registry *reg, const lk_key *key, lk_key_record *rec);
/* Parses a whole decimal integer in [min, max]. */
int cli_parse_int(const char *s, int64_t min, int64_t max, int64_t *out);

/* creds.c: ~/.config/latchkey/credentials.json */
typedef struct cli_creds cli_creds;
/* Loads the file (an absent file is empty). Returns an exit code; destroy
 * *out with cli_creds_destroy, which wipes the keys it held. */
int cli_creds_load(cli_creds **out);
void cli_creds_destroy(cli_creds *cr);
/* Writes the file atomically, mode 0600 in a 0700 directory. */
int cli_creds_save(cli_creds *cr);
/* The workspace to use for `url`: `explicit_ws`, then $LATCHKEY_WORKSPACE,
 * then the default chosen with `workspace use`, then the only one stored.
 * NULL when none applies; *ambiguous is set when several are stored and
 * none is chosen. Valid until the creds change. */
const char *cli_creds_workspace(cli_creds *cr, const char *url,
                                const char *explicit_ws, int *ambiguous);
/* The stored key for url/workspace, or NULL. Valid until the creds change. */
const char *cli_creds_key(cli_creds *cr, const char *url, const char *ws);
int cli_creds_put(cli_creds *cr, const char *url, const char *ws,
                  const char *api_key, const char *kid, lk_env env);
/* 1 if removed, 0 if there was nothing to remove, -1 on error. */
int cli_creds_remove(cli_creds *cr, const char *url, const char *ws);
int cli_creds_set_default(cli_creds *cr, const char *url, const char *ws);
/* The file's path, for messages. */
const char *cli_creds_path(const cli_creds *cr);

/* http.c: the broker's HTTP API (SPEC section 5) over libcurl. */
typedef struct cli_http_resp {
    long status;
    char *body;     /* NUL-terminated; wipe-and-free with cli_http_resp_free */
    size_t len;
} cli_http_resp;
/* Sends `method` to base_url + path with the key as a Bearer token and an
 * optional JSON body. Returns CLI_OK once any HTTP response arrived (check
 * resp->status), else CLI_ERR after printing why. */
int cli_http(const char *method, const char *base_url, const char *path,
             const char *api_key, const char *body, cli_http_resp *resp);
void cli_http_resp_free(cli_http_resp *resp);
/* Prints "<what>: <server error> (HTTP n)" for a non-success response and
 * returns CLI_ERR. */
int cli_http_fail(const char *what, const cli_http_resp *resp);
/* Percent-encodes one path segment. Caller frees with free(). */
char *cli_http_escape(const char *s);

#endif
