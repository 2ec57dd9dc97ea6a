/* main.c - `latchkey` entry point: parses argv (global options anywhere,
 * command options after the command), prints help and runs the command. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "cli.h"

#define MAX_WORDS (2 + CLI_MAX_ARGS)

typedef struct option_spec {
    const char *name;
    unsigned bit;      /* 0 for a global option */
    int takes_value;
    size_t offset;     /* of a `const char *` (value) or `int` (flag) in cli */
} option_spec;

static const option_spec options[] = {
    {"db", 0, 1, offsetof(cli, db)},
    {"url", 0, 1, offsetof(cli, url)},
    {"key", 0, 1, offsetof(cli, key)},
    {"workspace", 0, 1, offsetof(cli, workspace)},
    {"json", 0, 0, offsetof(cli, json)},
    {"name", CLI_O_NAME, 1, offsetof(cli, name)},
    {"scopes", CLI_O_SCOPES, 1, offsetof(cli, scopes)},
    {"sandbox", CLI_O_SANDBOX, 0, offsetof(cli, sandbox)},
    {"capability", CLI_O_CAPABILITY, 1, offsetof(cli, capability)},
    {"ttl", CLI_O_TTL, 1, offsetof(cli, ttl)},
    {"client-id", CLI_O_CLIENT_ID, 1, offsetof(cli, client_id)},
    {"audience", CLI_O_AUDIENCE, 1, offsetof(cli, audience)},
    {"remote", CLI_O_REMOTE, 0, offsetof(cli, remote)},
    {"max-ttl", CLI_O_MAX_TTL, 1, offsetof(cli, max_ttl)},
    {"channel", CLI_O_CHANNEL, 1, offsetof(cli, channel)},
    {"data", CLI_O_DATA, 1, offsetof(cli, data)},
};

/* What a usage message may echo of a user's word: never something that
 * looks like an API key (a pasted key in the wrong place is a plausible
 * mistake), and never more than a short prefix. */
static const char *shown(const char *word, char buf[48])
{
    if (strstr(word, "lk_live_") || strstr(word, "lk_sbx_"))
        return "(an API key)";
    cli_sanitize(word, strlen(word), buf, 40);
    return buf;
}

static const option_spec *find_option(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
        if (strlen(options[i].name) == len && memcmp(options[i].name, name, len) == 0)
            return &options[i];
    return NULL;
}

/* 1 if a command path is "w0" (w1 NULL) or "w0 w1". */
static int path_is(const char *path, const char *w0, const char *w1)
{
    size_t n0 = strlen(w0);
    if (strncmp(path, w0, n0) != 0)
        return 0;
    if (!w1)
        return path[n0] == '\0';
    return path[n0] == ' ' && strcmp(path + n0 + 1, w1) == 0;
}

static const cli_command *find_command(const char *w0, const char *w1)
{
    for (const cli_command *cmd = cli_commands; cmd->path; cmd++)
        if (path_is(cmd->path, w0, w1))
            return cmd;
    return NULL;
}

typedef struct parsed {
    const char *words[MAX_WORDS];
    int nwords;
    int help, version;
    unsigned seen;               /* command option bits given */
    const char *first_seen[32];  /* option name per bit, for messages */
} parsed;

/* Keeps a private copy of --key and blanks the argv copy, so the key is
 * not left readable in /proc/<pid>/cmdline while the command runs. */
static void take_key(cli *c, char *value)
{
    size_t n = strlen(value);
    size_t keep = n < sizeof c->key_buf - 1 ? n : sizeof c->key_buf - 1;
    memcpy(c->key_buf, value, keep);
    c->key_buf[keep] = '\0';
    OPENSSL_cleanse(value, n);
    c->key = c->key_buf;
}

static int parse_args(cli *c, int argc, char **argv, parsed *p)
{
    char buf[48];
    int only_words = 0;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (only_words || a[0] != '-' || a[1] == '\0') {
            if (p->nwords == MAX_WORDS) {
                cli_error("too many arguments (see latchkey --help)");
                return CLI_USAGE;
            }
            p->words[p->nwords++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_words = 1;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            p->help = 1;
            continue;
        }
        if (strcmp(a, "--version") == 0) {
            p->version = 1;
            continue;
        }
        if (a[1] != '-') {
            cli_error("unknown option '%s' (see latchkey --help)", shown(a, buf));
            return CLI_USAGE;
        }
        char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const option_spec *o = find_option(name, len);
        if (!o) {
            if (eq)
                *eq = '\0';
            cli_error("unknown option '--%s' (see latchkey --help)", shown(name, buf));
            return CLI_USAGE;
        }
        char *value = NULL;
        if (o->takes_value) {
            if (eq) {
                value = eq + 1;
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                cli_error("option --%s needs a value", o->name);
                return CLI_USAGE;
            }
        } else if (eq) {
            cli_error("option --%s takes no value", o->name);
            return CLI_USAGE;
        }
        if (o->bit) {
            p->seen |= o->bit;
            p->first_seen[__builtin_ctz(o->bit)] = o->name;
        }
        if (o->offset == offsetof(cli, key))
            take_key(c, value);
        else if (o->takes_value)
            *(const char **)(void *)((char *)c + o->offset) = value;
        else
            *(int *)(void *)((char *)c + o->offset) = 1;
    }
    return CLI_OK;
}

/* Finds the command named by the leading words; *used says how many. */
static const cli_command *lookup(const parsed *p, int *used, const char **group)
{
    *group = NULL;
    *used = 0;
    if (p->nwords == 0)
        return NULL;
    if (cli_group_help(p->words[0])) {
        *group = p->words[0];
        if (p->nwords < 2)
            return NULL;
        *used = 2;
        return find_command(p->words[0], p->words[1]);
    }
    *used = 1;
    return find_command(p->words[0], NULL);
}

static int help_for(const parsed *p, int first)
{
    parsed sub = *p;
    memmove(sub.words, p->words + first, (size_t)(p->nwords - first) * sizeof p->words[0]);
    sub.nwords = p->nwords - first;
    int used;
    const char *group;
    const cli_command *cmd = lookup(&sub, &used, &group);
    char buf[48];
    if (cmd)
        fputs(cmd->help, stdout);
    else if (group && sub.nwords == 1)
        fputs(cli_group_help(group), stdout);
    else if (sub.nwords == 0)
        fputs(cli_main_help, stdout);
    else {
        cli_error("unknown command '%s' (see latchkey --help)",
                  shown(sub.words[sub.nwords > 1 && group ? 1 : 0], buf));
        return CLI_USAGE;
    }
    return CLI_OK;
}

static int run(cli *c, int argc, char **argv)
{
    parsed p;
    memset(&p, 0, sizeof p);
    int rc = parse_args(c, argc, argv, &p);
    if (rc != CLI_OK)
        return rc;
    if (p.nwords > 0 && strcmp(p.words[0], "help") == 0)
        return help_for(&p, 1);
    if (p.help)
        return help_for(&p, 0);
    if (p.version) {
        printf("latchkey %s\n", LK_VERSION_STRING);
        return CLI_OK;
    }
    if (p.nwords == 0) {
        fputs(cli_main_help, stderr);
        return CLI_USAGE;
    }

    int used;
    const char *group;
    const cli_command *cmd = lookup(&p, &used, &group);
    char buf[48];
    if (!cmd) {
        if (group && p.nwords == 1) {
            cli_error("'%s' needs a subcommand", group);
            fputs(cli_group_help(group), stderr);
        } else if (group) {
            cli_error("unknown command '%s %s' (see latchkey %s --help)", group,
                      shown(p.words[1], buf), group);
        } else {
            cli_error("unknown command '%s' (see latchkey --help)",
                      shown(p.words[0], buf));
        }
        return CLI_USAGE;
    }
    c->cmd = cmd;
    unsigned extra = p.seen & ~cmd->options;
    if (extra)
        return cli_usage_error(c, "option --%s is not valid here",
                               p.first_seen[__builtin_ctz(extra)]);
    c->nargs = p.nwords - used;
    if (c->nargs < cmd->min_args)
        return cli_usage_error(c, "missing argument");
    if (c->nargs > cmd->max_args)
        return cli_usage_error(c, "too many arguments");
    for (int i = 0; i < c->nargs; i++)
        c->args[i] = p.words[used + i];
    return cmd->run(c);
}

int main(int argc, char **argv)
{
    cli c;
    memset(&c, 0, sizeof c);
    int rc = run(&c, argc, argv);
    OPENSSL_cleanse(c.key_buf, sizeof c.key_buf);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        cli_error("cannot write the output");
        return CLI_ERR;
    }
    return rc;
}
