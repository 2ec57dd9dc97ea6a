/* commands.c - the command table and every help text, kept together so the
 * help stays in step with what each command accepts. */
#include <string.h>

#include "cli.h"

#define GLOBAL_HELP                                                          \
    "Global options (before or after the command):\n"                       \
    "  --db PATH        key registry ($LATCHKEY_DB, else ./latchkey.db)\n"  \
    "  --url URL        broker URL ($LATCHKEY_URL, else "                    \
    "http://127.0.0.1:8080)\n"                                               \
    "  --key KEY        API key ($LATCHKEY_API_KEY, else the stored "       \
    "credential)\n"                                                          \
    "  --workspace WS   workspace ($LATCHKEY_WORKSPACE, else the one set "  \
    "with\n"                                                                 \
    "                   `latchkey workspace use`, else the only one "       \
    "stored)\n"                                                              \
    "  --json           print one JSON document on stdout\n"                \
    "  -h, --help       show help\n"

const char cli_main_help[] =
    "Usage: latchkey [global options] <command> [options]\n"
    "\n"
    "Manage Latchkey API keys and mint capability-scoped client tokens.\n"
    "\n"
    "Commands:\n"
    "  keys create      create an API key (shown once)\n"
    "  keys list        list API keys (never secrets)\n"
    "  keys revoke      revoke an API key\n"
    "  keys rotate      create a replacement key with the same scopes\n"
    "  token mint       mint a client token\n"
    "  token inspect    decode a token without verifying it\n"
    "  token verify     verify a token against the key registry\n"
    "  login            check an API key and store it for a broker URL\n"
    "  logout           remove a stored API key\n"
    "  workspace use    choose the default workspace for a broker URL\n"
    "  publish          publish a message through the broker's HTTP API\n"
    "  help [COMMAND]   show help for a command\n"
    "\n" GLOBAL_HELP
    "  --version        print the version\n"
    "\n"
    "Run `latchkey COMMAND --help` for a command's options.\n";

static const char keys_help[] =
    "Usage: latchkey keys <create|list|revoke|rotate> [options]\n"
    "\n"
    "Manage the API keys in the key registry (--db).\n"
    "\n"
    "Commands:\n"
    "  keys create --workspace WS --name NAME --scopes LIST [--sandbox]\n"
    "  keys list [--workspace WS]\n"
    "  keys revoke KID\n"
    "  keys rotate KID\n"
    "\n" GLOBAL_HELP;

static const char token_help[] =
    "Usage: latchkey token <mint|inspect|verify> [options]\n"
    "\n"
    "Commands:\n"
    "  token mint --capability JSON [--ttl S] [--client-id ID] [--audience A]"
    " [--remote]\n"
    "  token inspect TOKEN|-\n"
    "  token verify TOKEN|- [--audience A] [--max-ttl S]\n"
    "\n" GLOBAL_HELP;

static const char workspace_help[] =
    "Usage: latchkey workspace use WS [--url URL]\n"
    "\n"
    "Records WS as the default workspace for the broker URL, used to pick a\n"
    "stored credential when several are stored.\n"
    "\n" GLOBAL_HELP;

static const char keys_create_help[] =
    "Usage: latchkey keys create --workspace WS --name NAME --scopes LIST"
    " [--sandbox]\n"
    "\n"
    "Creates an API key in the registry and prints it. The key is shown this\n"
    "once: only its public half is stored.\n"
    "\n"
    "  --workspace WS   \"ws_\" and 1-64 of [a-z0-9_-]; a new workspace "
    "takes the\n"
    "                   env of its first key (live, or sandbox with "
    "--sandbox)\n"
    "  --name NAME      a label, 1-128 bytes of printable text\n"
    "  --scopes LIST    comma-separated scopes, e.g.\n"
    "                   realtime:publish,realtime:subscribe or realtime:*\n"
    "  --sandbox        create an lk_sbx_ key in a sandbox workspace\n"
    "\n"
    "With --json: {\"key\",\"kid\",\"workspace\",\"env\",\"name\",\"scopes\"}.\n"
    "\n" GLOBAL_HELP;

static const char keys_list_help[] =
    "Usage: latchkey keys list [--workspace WS]\n"
    "\n"
    "Lists the keys in the registry, oldest first: id, workspace, env,\n"
    "status, times, name and scopes. Secrets are never stored or shown.\n"
    "\n" GLOBAL_HELP;

static const char keys_revoke_help[] =
    "Usage: latchkey keys revoke KID\n"
    "\n"
    "Revokes a key. A running broker refuses its tokens and closes its\n"
    "connections within a second. Revoking a revoked key does nothing.\n"
    "\n" GLOBAL_HELP;

static const char keys_rotate_help[] =
    "Usage: latchkey keys rotate KID\n"
    "\n"
    "Creates and prints a new key with KID's workspace, name and scopes. KID\n"
    "stays active until you revoke it, so deploy the new key first.\n"
    "\n" GLOBAL_HELP;

static const char token_mint_help[] =
    "Usage: latchkey token mint --capability JSON [--ttl S] [--client-id ID]\n"
    "                           [--audience A] [--remote]\n"
    "\n"
    "Mints a client token signed with the API key (--key, $LATCHKEY_API_KEY\n"
    "or the stored credential) and prints it. When the registry holds the\n"
    "key, revoked keys and capabilities beyond the key's scopes are refused.\n"
    "\n"
    "  --capability JSON  e.g. '{\"chat:*\":[\"realtime:subscribe\"]}'\n"
    "  --ttl S            lifetime in seconds, 1-86400 (default 600)\n"
    "  --client-id ID     the token's sub, at most 128 bytes\n"
    "  --audience A       the token's aud\n"
    "  --remote           ask the broker (POST /v1/tokens on --url) instead\n"
    "                     of signing locally\n"
    "\n"
    "With --json: {\"token\",\"expires_at\",\"kid\"}.\n"
    "\n" GLOBAL_HELP;

static const char token_inspect_help[] =
    "Usage: latchkey token inspect TOKEN|-\n"
    "\n"
    "Decodes a token (\"-\" reads it from stdin) and prints its header and\n"
    "claims. Nothing is verified: use `latchkey token verify` for that.\n"
    "\n"
    "With --json: {\"header\":{...},\"claims\":{...},\"verified\":false}.\n"
    "\n" GLOBAL_HELP;

static const char token_verify_help[] =
    "Usage: latchkey token verify TOKEN|- [--audience A] [--max-ttl S]\n"
    "\n"
    "Verifies a token as the broker would, against the key registry (--db):\n"
    "signature, times, capability, key status and scopes. Prints the reason\n"
    "and exits 1 when the token would be refused.\n"
    "\n"
    "  --audience A   require this aud\n"
    "  --max-ttl S    longest accepted exp - iat (default 3600)\n"
    "\n" GLOBAL_HELP;

static const char login_help[] =
    "Usage: latchkey login --key KEY [--url URL] [--workspace WS]\n"
    "\n"
    "Checks an API key (in the registry when --db is given or the registry\n"
    "holds it, else with GET /v1/key on the broker) and stores it in\n"
    "$XDG_CONFIG_HOME/latchkey/credentials.json (default ~/.config), mode\n"
    "0600, under the broker URL and the key's workspace. The key may also\n"
    "come from $LATCHKEY_API_KEY.\n"
    "\n" GLOBAL_HELP;

static const char logout_help[] =
    "Usage: latchkey logout [--url URL] [--workspace WS]\n"
    "\n"
    "Removes the stored API key for the broker URL and workspace.\n"
    "\n" GLOBAL_HELP;

static const char workspace_use_help[] =
    "Usage: latchkey workspace use WS [--url URL]\n"
    "\n"
    "Records WS as the default workspace for the broker URL.\n"
    "\n" GLOBAL_HELP;

static const char publish_help[] =
    "Usage: latchkey publish --channel CHANNEL --data JSON\n"
    "\n"
    "Publishes a message with POST /v1/channels/CHANNEL/messages (the key\n"
    "needs realtime:publish) and prints its seq. --data - reads stdin. The\n"
    "JSON is sent exactly as given.\n"
    "\n" GLOBAL_HELP;

const cli_command cli_commands[] = {
    {"keys create", "create an API key", keys_create_help,
     CLI_O_NAME | CLI_O_SCOPES | CLI_O_SANDBOX, 0, 0, cli_cmd_keys_create},
    {"keys list", "list API keys", keys_list_help, 0, 0, 0, cli_cmd_keys_list},
    {"keys revoke", "revoke an API key", keys_revoke_help, 0, 1, 1,
     cli_cmd_keys_revoke},
    {"keys rotate", "rotate an API key", keys_rotate_help, 0, 1, 1,
     cli_cmd_keys_rotate},
    {"token mint", "mint a client token", token_mint_help,
     CLI_O_CAPABILITY | CLI_O_TTL | CLI_O_CLIENT_ID | CLI_O_AUDIENCE | CLI_O_REMOTE,
     0, 0, cli_cmd_token_mint},
    {"token inspect", "decode a token", token_inspect_help, 0, 1, 1,
     cli_cmd_token_inspect},
    {"token verify", "verify a token", token_verify_help,
     CLI_O_AUDIENCE | CLI_O_MAX_TTL, 1, 1, cli_cmd_token_verify},
    {"login", "store an API key", login_help, 0, 0, 0, cli_cmd_login},
    {"logout", "remove a stored API key", logout_help, 0, 0, 0, cli_cmd_logout},
    {"workspace use", "choose the default workspace", workspace_use_help, 0, 1, 1,
     cli_cmd_workspace_use},
    {"publish", "publish a message", publish_help, CLI_O_CHANNEL | CLI_O_DATA, 0,
     0, cli_cmd_publish},
    {NULL, NULL, NULL, 0, 0, 0, NULL},
};

const char *cli_group_help(const char *group)
{
    if (strcmp(group, "keys") == 0)
        return keys_help;
    if (strcmp(group, "token") == 0)
        return token_help;
    if (strcmp(group, "workspace") == 0)
        return workspace_help;
    return NULL;
}
