/* registry.c - the embedded key registry: one SQLite file in WAL mode,
 * schema versioned with PRAGMA user_version. Only public keys are stored;
 * a raw key exists in memory just long enough to be formatted once. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "latchkey/registry.h"
#include "lk_internal.h"

/* "LKey": marks the file as ours so a foreign SQLite database is refused
 * instead of being migrated. */
#define REG_APPLICATION_ID 0x4c4b6579
#define REG_SCHEMA_VERSION 1
#define REG_BUSY_TIMEOUT_MS 5000
/* A fresh kid colliding with a stored one is a 2^-64 event; retrying a few
 * times turns a broken RNG into an error instead of a loop. */
#define REG_KID_ATTEMPTS 4

/* migrations[v] upgrades schema v to v + 1. Append only: a released step
 * is never edited. */
static const char *const migrations[REG_SCHEMA_VERSION] = {
    "CREATE TABLE workspaces ("
    "  workspace TEXT PRIMARY KEY NOT NULL,"
    "  env TEXT NOT NULL CHECK (env IN ('live', 'sbx')),"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE keys ("
    "  kid TEXT PRIMARY KEY NOT NULL CHECK (length(kid) = 16),"
    "  workspace TEXT NOT NULL REFERENCES workspaces (workspace),"
    "  env TEXT NOT NULL CHECK (env IN ('live', 'sbx')),"
    "  name TEXT NOT NULL,"
    "  scopes TEXT NOT NULL,"
    "  pubkey BLOB NOT NULL CHECK (length(pubkey) = 65),"
    "  status TEXT NOT NULL DEFAULT 'active'"
    "    CHECK (status IN ('active', 'revoked')),"
    "  created_at INTEGER NOT NULL,"
    "  revoked_at INTEGER,"
    "  last_used_at INTEGER);"
    "CREATE INDEX keys_by_workspace ON keys (workspace);",
};

#define REG_KEY_COLUMNS                                                     \
    "kid, workspace, env, name, scopes, pubkey, status, created_at, "      \
    "revoked_at, last_used_at"

enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_DATA_VERSION,
    ST_GET,
    ST_LIST_ALL,
    ST_LIST_WS,
    ST_WS_ENV,
    ST_WS_INSERT,
    ST_KEY_INSERT,
    ST_REVOKE,
    ST_TOUCH,
    ST_COUNT
};

static const char *const statement_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_DATA_VERSION] = "PRAGMA data_version",
    [ST_GET] = "SELECT " REG_KEY_COLUMNS " FROM keys WHERE kid = ?1",
    [ST_LIST_ALL] = "SELECT " REG_KEY_COLUMNS
                    " FROM keys ORDER BY created_at, rowid",
    [ST_LIST_WS] = "SELECT " REG_KEY_COLUMNS
                   " FROM keys WHERE workspace = ?1 ORDER BY created_at, rowid",
    [ST_WS_ENV] = "SELECT env FROM workspaces WHERE workspace = ?1",
    [ST_WS_INSERT] = "INSERT INTO workspaces (workspace, env, created_at) "
                     "VALUES (?1, ?2, ?3)",
    [ST_KEY_INSERT] = "INSERT INTO keys (kid, workspace, env, name, scopes, "
                      "pubkey, status, created_at) "
                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'active', ?7)",
    [ST_REVOKE] = "UPDATE keys SET status = 'revoked', revoked_at = ?2 "
                  "WHERE kid = ?1 AND status = 'active'",
    [ST_TOUCH] = "UPDATE keys SET last_used_at = "
                 "max(coalesce(last_used_at, 0), ?2) WHERE kid = ?1",
};

struct lk_registry {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    /* Bumped on every committed change this handle makes and every time
     * data_version shows another connection committed one. */
    uint64_t version;
    int64_t data_version;
};

static int db_fail(lk_registry *reg, lk_error *err, const char *what)
{
    return lk__fail(err, LK_EDB, "key registry: %s: %s", what,
                    sqlite3_errmsg(reg->db));
}

/* Steps a cached statement that yields no row we need, then resets it. */
static int exec_stmt(lk_registry *reg, int id)
{
    sqlite3_stmt *st = reg->st[id];
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static void finish(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

static int begin(lk_registry *reg, lk_error *err)
{
    if (exec_stmt(reg, ST_BEGIN) != SQLITE_OK)
        return db_fail(reg, err, "cannot start a transaction");
    return LK_OK;
}

static void rollback(lk_registry *reg)
{
    if (!sqlite3_get_autocommit(reg->db))
        exec_stmt(reg, ST_ROLLBACK);
}

static int commit(lk_registry *reg, lk_error *err)
{
    if (exec_stmt(reg, ST_COMMIT) != SQLITE_OK) {
        int rc = db_fail(reg, err, "cannot commit");
        rollback(reg);
        return rc;
    }
    reg->version++;
    return LK_OK;
}

int lk_workspace_valid(const char *ws)
{
    if (!ws || strncmp(ws, "ws_", 3) != 0)
        return 0;
    size_t n = 0;
    for (const char *p = ws + 3; *p; p++, n++) {
        unsigned char c = (unsigned char)*p;
        if (n >= 64 || !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                         c == '_' || c == '-'))
            return 0;
    }
    return n >= 1;
}

static int kid_valid(const char *kid)
{
    if (!kid)
        return 0;
    size_t n = 0;
    for (; kid[n]; n++) {
        unsigned char c = (unsigned char)kid[n];
        if (n >= LK_KID_HEX || !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return n == LK_KID_HEX;
}

/* Never echoes the argument: a pasted API key is a plausible mistake. */
static int bad_kid(lk_error *err)
{
    return lk__fail(err, LK_EINVAL,
                    "invalid key id (expected %d lowercase hex characters)",
                    LK_KID_HEX);
}

/* Names show up in terminals and logs: 1-128 bytes of UTF-8 without
 * control characters (C0, DEL or C1). */
static int name_valid(const char *name)
{
    if (!name)
        return 0;
    size_t len = strlen(name);
    if (len == 0 || len > LK_KEY_NAME_MAX)
        return 0;
    return lk__utf8_valid(name, len, 1);
}

static int copy_text(sqlite3_stmt *st, int col, char *dst, size_t cap)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    int n = sqlite3_column_bytes(st, col);
    if (!s || n < 0 || (size_t)n >= cap)
        return -1;
    memcpy(dst, s, (size_t)n);
    dst[n] = '\0';
    return 0;
}

/* Fills a record from the current row of a REG_KEY_COLUMNS select. The
 * scope mask is derived from the stored list, so it always follows this
 * build's idea of what each scope covers. */
static int read_record(sqlite3_stmt *st, lk_key_record *rec, lk_error *err)
{
    char env[8], status[16];
    memset(rec, 0, sizeof *rec);
    if (copy_text(st, 0, rec->kid, sizeof rec->kid) ||
        copy_text(st, 1, rec->workspace, sizeof rec->workspace) ||
        copy_text(st, 2, env, sizeof env) ||
        copy_text(st, 3, rec->name, sizeof rec->name) ||
        copy_text(st, 4, rec->scopes, sizeof rec->scopes) ||
        copy_text(st, 6, status, sizeof status) ||
        sqlite3_column_bytes(st, 5) != LK_PUBKEY_BYTES ||
        lk_env_parse(env, &rec->env) != LK_OK)
        return lk__fail(err, LK_EDB, "key registry: malformed key record");
    memcpy(rec->pubkey, sqlite3_column_blob(st, 5), LK_PUBKEY_BYTES);
    if (strcmp(status, "active") == 0)
        rec->status = LK_KEY_ACTIVE;
    else if (strcmp(status, "revoked") == 0)
        rec->status = LK_KEY_REVOKED;
    else
        return lk__fail(err, LK_EDB, "key registry: key %s has unknown status",
                        rec->kid);
    rec->created_at = sqlite3_column_int64(st, 7);
    rec->revoked_at = sqlite3_column_int64(st, 8);
    rec->last_used_at = sqlite3_column_int64(st, 9);
    lk_error perr;
    if (lk_scopes_parse(rec->scopes, &rec->scope_mask, NULL, &perr) != LK_OK)
        return lk__fail(err, LK_EDB, "key registry: key %s has invalid scopes: %s",
                        rec->kid, perr.message);
    return LK_OK;
}

static int get_record(lk_registry *reg, const char *kid, lk_key_record *out,
                      lk_error *err)
{
    sqlite3_stmt *st = reg->st[ST_GET];
    sqlite3_bind_text(st, 1, kid, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int ret;
    if (rc == SQLITE_ROW)
        ret = read_record(st, out, err);
    else if (rc == SQLITE_DONE)
        ret = lk__fail(err, LK_ENOTFOUND, "no key with id %s", kid);
    else
        ret = db_fail(reg, err, "cannot read key");
    finish(st);
    return ret;
}

/* Where the registry is: the name the caller gave, kept for messages, and
 * the same file reached through the directory's real path, used for every
 * check and every open. */
typedef struct reg_path {
    const char *given;
    char dir[PATH_MAX];              /* realpath() of the directory */
    char file[PATH_MAX];             /* dir + "/" + the given basename */
    char shown[LK_ERROR_MSG_BYTES];  /* the file, for messages */
    char dir_lead[LK_ERROR_MSG_BYTES];
} reg_path;

/* Messages are short (LK_ERROR_MSG_BYTES), so a long name is cut; "..."
 * shows it was. */
static void mark_cut(char *buf, size_t cap, int n)
{
    if ((n < 0 || (size_t)n >= cap) && cap >= 4)
        memcpy(buf + cap - 4, "...", 4);
}

/* lk__fail for messages holding paths: those are the ones long enough to
 * be cut, and a cut one should say so. */
__attribute__((format(printf, 3, 4)))
static int path_fail(lk_error *err, int code, const char *fmt, ...)
{
    char msg[LK_ERROR_MSG_BYTES];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mark_cut(msg, sizeof msg, n);
    return lk__fail(err, code, "%s", msg);
}

/* "given" alone, or "given (resolved to real)" when they differ: users
 * know the name they typed, the checks only ever see the other. */
static void describe(char *buf, size_t cap, const char *given, const char *real,
                     const char *suffix)
{
    int n;
    if (strcmp(given, real) == 0)
        n = snprintf(buf, cap, "%s%s", given, suffix);
    else
        n = snprintf(buf, cap, "%s%s (resolved to %s%s)", given, suffix, real, suffix);
    mark_cut(buf, cap, n);
}

/* Resolves symbolic links in the directory part only, so a symlinked home,
 * data directory or systemd StateDirectory works; the file itself is
 * judged by check_file and must not be a link. */
static int resolve_path(reg_path *rp, const char *given, lk_error *err)
{
    rp->given = given;
    const char *slash = strrchr(given, '/');
    const char *base = slash ? slash + 1 : given;
    if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        return path_fail(err, LK_EIO, "key registry path %s names a directory, "
                         "not a file", given);
    char dir[PATH_MAX];
    size_t dir_len = slash ? (size_t)(slash - given) : 0;
    if (dir_len >= sizeof dir)
        return lk__fail(err, LK_EIO, "key registry path is too long");
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (dir_len == 0)
        snprintf(dir, sizeof dir, "/");
    else {
        memcpy(dir, given, dir_len);
        dir[dir_len] = '\0';
    }
    if (!realpath(dir, rp->dir))
        return path_fail(err, LK_EIO,
                         "cannot resolve the directory of key registry %s: %s",
                         given, strerror(errno));
    int n = snprintf(rp->file, sizeof rp->file, "%s/%s",
                     strcmp(rp->dir, "/") == 0 ? "" : rp->dir, base);
    if (n < 0 || (size_t)n >= sizeof rp->file)
        return lk__fail(err, LK_EIO, "key registry path is too long");
    describe(rp->shown, sizeof rp->shown, given, rp->file, "");
    if (strcmp(given, rp->file) == 0)
        snprintf(rp->dir_lead, sizeof rp->dir_lead, "key registry directory");
    else
        mark_cut(rp->dir_lead, sizeof rp->dir_lead,
                 snprintf(rp->dir_lead, sizeof rp->dir_lead,
                          "key registry %s resolves to %s; directory", given,
                          rp->file));
    return LK_OK;
}

/* Every file of the registry (the database, and the -wal, -shm and
 * -journal files SQLite creates next to it, now and in later processes)
 * is opened by name. An fd check of the main file cannot cover those, so
 * safety rests on nobody else being able to change the names: each
 * directory on the (resolved) way must be owned by root or by us and not
 * writable by group or others. A sticky directory such as /tmp is accepted
 * above the last one, since others cannot rename what we own in it; the
 * registry's own directory must not be writable by others at all, or
 * someone could plant a -wal file there for SQLite to replay. */
static int check_dir(const reg_path *rp, const char *dir, int is_last,
                     lk_error *err)
{
    struct stat st;
    if (lstat(dir, &st) != 0)
        return path_fail(err, LK_EIO, "cannot use %s %s: %s", rp->dir_lead, dir,
                         strerror(errno));
    /* realpath() just returned a path without links: one now means someone
     * changed the path while we looked. */
    if (S_ISLNK(st.st_mode))
        return path_fail(err, LK_EIO,
                         "%s %s became a symbolic link while being checked",
                         rp->dir_lead, dir);
    if (!S_ISDIR(st.st_mode))
        return path_fail(err, LK_EIO, "cannot use %s %s: %s", rp->dir_lead, dir,
                         strerror(ENOTDIR));
    uid_t me = geteuid();
    if (st.st_uid != 0 && st.st_uid != me)
        return path_fail(err, LK_EIO,
                         "%s %s is owned by uid %u, who could replace the "
                         "registry; it must belong to root or uid %u",
                         rp->dir_lead, dir, (unsigned)st.st_uid, (unsigned)me);
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) && (is_last || !(st.st_mode & S_ISVTX)))
        return path_fail(err, LK_EIO,
                         "%s %s is writable by group or others, who could "
                         "replace the registry or its -wal file; chmod go-w it "
                         "or move the registry", rp->dir_lead, dir);
    return LK_OK;
}

/* Checks "/", then each longer prefix of the resolved directory: the
 * kernel walks the same directories, in the same order. */
static int check_dirs(const reg_path *rp, lk_error *err)
{
    char prefix[PATH_MAX];
    size_t len = strlen(rp->dir);
    memcpy(prefix, rp->dir, len + 1);
    int rc = check_dir(rp, "/", len == 1, err);
    for (size_t i = 1; rc == LK_OK && len > 1 && i <= len; i++) {
        if (i < len && prefix[i] != '/')
            continue;
        char saved = prefix[i];
        prefix[i] = '\0';
        rc = check_dir(rp, prefix, i == len, err);
        prefix[i] = saved;
    }
    return rc;
}

/* Refuses anything but a regular file of ours that only we can write:
 * anyone else able to write it could add a key and mint tokens the broker
 * accepts. A file with looser permissions is refused, not fixed, because
 * someone may already have written to it: its keys need checking first.
 * Safe to do by name because check_dirs made sure nobody else can change
 * the name. A missing file is fine when `must_exist` is 0. `shown` names
 * it in messages. */
static int check_file(const char *file, const char *shown, int must_exist,
                      lk_error *err)
{
    struct stat st;
    if (lstat(file, &st) != 0) {
        if (errno == ENOENT && !must_exist)
            return LK_OK;
        return path_fail(err, LK_EIO, "cannot open key registry %s: %s", shown,
                         strerror(errno));
    }
    if (S_ISLNK(st.st_mode))
        return path_fail(err, LK_EIO,
                         "key registry %s is a symbolic link, which could be "
                         "redirected; give the real file's path", shown);
    if (!S_ISREG(st.st_mode))
        return path_fail(err, LK_EIO, "key registry %s is not a regular file (it is a %s)",
                         shown, S_ISDIR(st.st_mode) ? "directory" :
                                S_ISFIFO(st.st_mode) ? "fifo" :
                                S_ISSOCK(st.st_mode) ? "socket" : "device");
    uid_t me = geteuid();
    if (st.st_uid != me)
        return path_fail(err, LK_EIO,
                         "key registry %s is owned by uid %u, not by this "
                         "process's uid %u; run as its owner or chown it",
                         shown, (unsigned)st.st_uid, (unsigned)me);
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return path_fail(err, LK_EIO,
                         "key registry %s is writable by group or others; "
                         "chmod 600 it, then review its keys, as others could "
                         "have added some", shown);
    return LK_OK;
}

/* Creates the file 0600 ourselves: SQLite would use the umask, and its
 * -wal and -shm files copy the main file's mode. An existing file is left
 * for check_files to judge. */
static int create_file(const reg_path *rp, lk_error *err)
{
    int fd = open(rp->file, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
        /* A umask such as 0277 would leave the new file unwritable. */
        int rc = fchmod(fd, 0600) == 0 ? LK_OK
                 : path_fail(err, LK_EIO, "cannot set the mode of key registry %s: %s",
                             rp->shown, strerror(errno));
        close(fd);
        return rc;
    }
    if (errno == EEXIST)
        return LK_OK;
    return path_fail(err, LK_EIO, "cannot create key registry %s: %s", rp->shown,
                     strerror(errno));
}

/* Judges the registry and whatever -wal, -shm or -journal file a previous
 * run left: SQLite replays a -wal or -journal as soon as it reads. */
static int check_files(const reg_path *rp, lk_error *err)
{
    static const char *const sidecars[] = {"-wal", "-shm", "-journal"};
    int rc = check_file(rp->file, rp->shown, 1, err);
    for (size_t i = 0; rc == LK_OK && i < sizeof sidecars / sizeof *sidecars; i++) {
        char side[PATH_MAX + 16], shown[LK_ERROR_MSG_BYTES];
        snprintf(side, sizeof side, "%s%s", rp->file, sidecars[i]);
        describe(shown, sizeof shown, rp->given, rp->file, sidecars[i]);
        rc = check_file(side, shown, 0, err);
    }
    return rc;
}

static int pragma_int(lk_registry *reg, const char *sql, int64_t *out)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(reg->db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

/* Switching a new file to WAL takes an exclusive lock, and SQLite refuses
 * it at once (the busy handler is not consulted) while another process is
 * doing the same, so retry for as long as the busy timeout. */
static int set_wal(lk_registry *reg, const char *path, lk_error *err)
{
    const struct timespec pause = {0, 10 * 1000 * 1000};
    int rc = SQLITE_OK;
    for (int attempt = 0; attempt < REG_BUSY_TIMEOUT_MS / 10; attempt++) {
        sqlite3_stmt *st;
        rc = sqlite3_prepare_v2(reg->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
        if (rc == SQLITE_OK) {
            int wal = 0;
            rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                const unsigned char *mode = sqlite3_column_text(st, 0);
                wal = mode && strcmp((const char *)mode, "wal") == 0;
            }
            sqlite3_finalize(st);
            if (wal)
                return LK_OK;
        }
        if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED)
            break;
        nanosleep(&pause, NULL);
    }
    if (rc == SQLITE_NOTADB)
        return lk__fail(err, LK_EDB, "%s is not a latchkey key registry", path);
    if (rc == SQLITE_ROW)
        return lk__fail(err, LK_EDB,
                        "cannot open key registry %s in WAL mode (its file "
                        "system may not support shared memory)", path);
    return lk__fail(err, LK_EDB, "cannot open key registry %s in WAL mode: %s",
                    path, sqlite3_errstr(rc));
}

/* Brings the schema up to REG_SCHEMA_VERSION inside one write transaction,
 * re-reading the version under the lock so two processes opening a new
 * file at once migrate it once. */
static int migrate(lk_registry *reg, const char *path, lk_error *err)
{
    int64_t version, app_id, tables;
    if (pragma_int(reg, "PRAGMA user_version", &version) ||
        pragma_int(reg, "PRAGMA application_id", &app_id))
        return db_fail(reg, err, "cannot read the schema version");
    if (version > REG_SCHEMA_VERSION && app_id == REG_APPLICATION_ID)
        return lk__fail(err, LK_EDB,
                        "key registry %s has schema version %lld, newer than "
                        "this build supports (%d); upgrade latchkey",
                        path, (long long)version, REG_SCHEMA_VERSION);
    if (version == REG_SCHEMA_VERSION && app_id == REG_APPLICATION_ID)
        return LK_OK;

    if (sqlite3_exec(reg->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(reg, err, "cannot lock the key registry for migration");
    int ret = LK_OK;
    if (pragma_int(reg, "PRAGMA user_version", &version) ||
        pragma_int(reg, "PRAGMA application_id", &app_id) ||
        pragma_int(reg, "SELECT count(*) FROM sqlite_schema", &tables)) {
        ret = db_fail(reg, err, "cannot read the schema version");
        goto out;
    }
    if (app_id != REG_APPLICATION_ID && (app_id != 0 || version != 0 || tables != 0)) {
        ret = lk__fail(err, LK_EDB, "%s is not a latchkey key registry", path);
        goto out;
    }
    if (version > REG_SCHEMA_VERSION) {
        ret = lk__fail(err, LK_EDB,
                       "key registry %s has schema version %lld, newer than "
                       "this build supports (%d); upgrade latchkey",
                       path, (long long)version, REG_SCHEMA_VERSION);
        goto out;
    }
    for (int64_t v = version; v < REG_SCHEMA_VERSION; v++) {
        if (sqlite3_exec(reg->db, migrations[v], NULL, NULL, NULL) != SQLITE_OK) {
            ret = lk__fail(err, LK_EDB,
                           "key registry %s: migration to schema %lld failed: %s",
                           path, (long long)v + 1, sqlite3_errmsg(reg->db));
            goto out;
        }
    }
    char sql[96];
    snprintf(sql, sizeof sql, "PRAGMA application_id = %d; PRAGMA user_version = %d",
             REG_APPLICATION_ID, REG_SCHEMA_VERSION);
    if (sqlite3_exec(reg->db, sql, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(reg->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        ret = db_fail(reg, err, "cannot record the schema version");
out:
    if (!sqlite3_get_autocommit(reg->db))
        sqlite3_exec(reg->db, "ROLLBACK", NULL, NULL, NULL);
    return ret;
}

int lk_registry_open(const char *path, lk_registry **out, lk_error *err)
{
    if (!out)
        return lk__fail(err, LK_EINVAL, "lk_registry_open: out is NULL");
    *out = NULL;
    if (!path || !*path)
        return lk__fail(err, LK_EINVAL, "key registry path is empty");
    reg_path rp;
    int rc = resolve_path(&rp, path, err);
    if (rc == LK_OK)
        rc = check_dirs(&rp, err);
    if (rc == LK_OK)
        rc = create_file(&rp, err);
    if (rc == LK_OK)
        rc = check_files(&rp, err);
    if (rc != LK_OK)
        return rc;

    lk_registry *reg = calloc(1, sizeof *reg);
    if (!reg)
        return lk__fail(err, LK_ENOMEM, "out of memory");
    /* SQLite gets the resolved path, which had no symbolic link when
     * realpath() returned and whose every directory check_dirs found
     * changeable only by root or us. NOFOLLOW makes SQLite refuse a link
     * anywhere in it, so even a link that appeared since cannot redirect
     * this open or the -wal/-shm names SQLite derives from the path. The
     * given path is not reused: a link in it is controlled by whoever owns
     * the directory holding the link, which nothing here checked. */
    if (sqlite3_open_v2(rp.file, &reg->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW,
                        NULL) != SQLITE_OK) {
        if (reg->db && sqlite3_extended_errcode(reg->db) == SQLITE_CANTOPEN_SYMLINK)
            rc = path_fail(err, LK_EIO,
                           "key registry %s: a symbolic link appeared in its path "
                           "while it was being opened", rp.shown);
        else
            rc = path_fail(err, LK_EDB, "cannot open key registry %s: %s", rp.shown,
                           reg->db ? sqlite3_errmsg(reg->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(reg->db, REG_BUSY_TIMEOUT_MS);
    if ((rc = set_wal(reg, rp.shown, err)) != LK_OK)
        goto fail;
    if (sqlite3_exec(reg->db, "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL",
                     NULL, NULL, NULL) != SQLITE_OK) {
        rc = db_fail(reg, err, rp.shown);
        goto fail;
    }
    if ((rc = migrate(reg, rp.shown, err)) != LK_OK)
        goto fail;
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(reg->db, statement_sql[i], -1,
                               SQLITE_PREPARE_PERSISTENT, &reg->st[i],
                               NULL) != SQLITE_OK) {
            rc = db_fail(reg, err, "cannot prepare a statement");
            goto fail;
        }
    }
    reg->version = 1;
    if (pragma_int(reg, "PRAGMA data_version", &reg->data_version)) {
        rc = db_fail(reg, err, "cannot read the data version");
        goto fail;
    }
    *out = reg;
    return LK_OK;
fail:
    lk_registry_close(reg);
    return rc;
}

void lk_registry_close(lk_registry *reg)
{
    if (!reg)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(reg->st[i]);
    sqlite3_close(reg->db);
    free(reg);
}

/* Checks the workspace's env (recording it on first use) inside the
 * caller's transaction. */
static int claim_workspace(lk_registry *reg, const char *workspace, lk_env env,
                           int64_t now, lk_error *err)
{
    sqlite3_stmt *st = reg->st[ST_WS_ENV];
    sqlite3_bind_text(st, 1, workspace, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *stored = sqlite3_column_text(st, 0);
        lk_env have;
        int ok = stored && lk_env_parse((const char *)stored, &have) == LK_OK;
        finish(st);
        if (!ok)
            return lk__fail(err, LK_EDB, "key registry: workspace %s has a bad env",
                            workspace);
        if (have != env)
            return lk__fail(err, LK_EWORKSPACE,
                            "workspace %s is a %s workspace; cannot create a %s "
                            "key in it",
                            workspace, have == LK_ENV_LIVE ? "live" : "sandbox",
                            env == LK_ENV_LIVE ? "live" : "sandbox");
        return LK_OK;
    }
    finish(st);
    if (rc != SQLITE_DONE)
        return db_fail(reg, err, "cannot read workspace");
    st = reg->st[ST_WS_INSERT];
    sqlite3_bind_text(st, 1, workspace, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, lk_env_name(env), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    if (exec_stmt(reg, ST_WS_INSERT) != SQLITE_OK)
        return db_fail(reg, err, "cannot record workspace");
    return LK_OK;
}

/* Generates and stores a key inside the caller's transaction. On success
 * *key_out holds the new key (caller destroys it after committing). */
static int insert_new_key(lk_registry *reg, const char *workspace, lk_env env,
                          const char *name, const char *scopes, int64_t now,
                          lk_key **key_out, lk_error *err)
{
    *key_out = NULL;
    for (int attempt = 0; attempt < REG_KID_ATTEMPTS; attempt++) {
        lk_key *key;
        int rc = lk_key_generate(env, &key, err);
        if (rc != LK_OK)
            return rc;
        uint8_t pub[LK_PUBKEY_BYTES];
        lk_key_public(key, pub);
        sqlite3_stmt *st = reg->st[ST_KEY_INSERT];
        sqlite3_bind_text(st, 1, lk_key_kid(key), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, workspace, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, lk_env_name(env), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, scopes, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 6, pub, LK_PUBKEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, now);
        rc = exec_stmt(reg, ST_KEY_INSERT);
        if (rc == SQLITE_OK) {
            *key_out = key;
            return LK_OK;
        }
        lk_key_destroy(key);
        if ((rc & 0xff) != SQLITE_CONSTRAINT)
            return db_fail(reg, err, "cannot store key");
    }
    return lk__fail(err, LK_EEXIST, "key registry: could not allocate a unique key id");
}

static void fill_record(lk_key_record *rec, const lk_key *key,
                        const char *workspace, lk_env env, const char *name,
                        const char *scopes, uint32_t mask, int64_t now)
{
    memset(rec, 0, sizeof *rec);
    snprintf(rec->kid, sizeof rec->kid, "%s", lk_key_kid(key));
    snprintf(rec->workspace, sizeof rec->workspace, "%s", workspace);
    rec->env = env;
    snprintf(rec->name, sizeof rec->name, "%s", name);
    snprintf(rec->scopes, sizeof rec->scopes, "%s", scopes);
    rec->scope_mask = mask;
    lk_key_public(key, rec->pubkey);
    rec->status = LK_KEY_ACTIVE;
    rec->created_at = now;
}

/* Shared tail of create and rotate: runs inside an open transaction, which
 * it commits or rolls back. */
static int create_in_txn(lk_registry *reg, const char *workspace, lk_env env,
                         const char *name, const char *scopes, uint32_t mask,
                         char raw_out[LK_KEY_STR_BYTES], lk_key_record *rec,
                         lk_error *err)
{
    int64_t now = (int64_t)time(NULL);
    lk_key *key = NULL;
    int rc = claim_workspace(reg, workspace, env, now, err);
    if (rc == LK_OK)
        rc = insert_new_key(reg, workspace, env, name, scopes, now, &key, err);
    if (rc == LK_OK)
        rc = commit(reg, err);
    else
        rollback(reg);
    if (rc == LK_OK) {
        lk_key_format(key, raw_out);
        if (rec)
            fill_record(rec, key, workspace, env, name, scopes, mask, now);
    }
    lk_key_destroy(key);
    return rc;
}

int lk_registry_create_key(lk_registry *reg, const char *workspace,
                           const char *name, const char *scopes, lk_env env,
                           char raw_out[LK_KEY_STR_BYTES], lk_key_record *rec,
                           lk_error *err)
{
    if (raw_out)
        raw_out[0] = '\0';
    if (!reg || !raw_out)
        return lk__fail(err, LK_EINVAL, "lk_registry_create_key: NULL argument");
    if (env != LK_ENV_LIVE && env != LK_ENV_SBX)
        return lk__fail(err, LK_EINVAL, "invalid env");
    if (!lk_workspace_valid(workspace))
        return lk__fail(err, LK_EWORKSPACE,
                        "invalid workspace: expected \"ws_\" followed by 1-64 "
                        "of [a-z0-9_-]");
    if (!name_valid(name))
        return lk__fail(err, LK_EINVAL,
                        "invalid key name: expected 1-%d bytes of printable text",
                        LK_KEY_NAME_MAX);
    if (!scopes)
        return lk__fail(err, LK_ESCOPE, "no scopes given");
    char canon[LK_SCOPES_MAX + 1];
    uint32_t mask;
    int rc = lk_scopes_parse(scopes, &mask, canon, err);
    if (rc != LK_OK)
        return rc;
    if (!canon[0])
        return lk__fail(err, LK_ESCOPE, "no scopes given");
    if ((rc = begin(reg, err)) != LK_OK)
        return rc;
    return create_in_txn(reg, workspace, env, name, canon, mask, raw_out, rec, err);
}

int lk_registry_get(lk_registry *reg, const char *kid, lk_key_record *out,
                    lk_error *err)
{
    if (!reg || !out)
        return lk__fail(err, LK_EINVAL, "lk_registry_get: NULL argument");
    if (!kid_valid(kid))
        return bad_kid(err);
    return get_record(reg, kid, out, err);
}

int lk_registry_list(lk_registry *reg, const char *workspace,
                     lk_key_record **out, size_t *n, lk_error *err)
{
    if (out)
        *out = NULL;
    if (n)
        *n = 0;
    if (!reg || !out || !n)
        return lk__fail(err, LK_EINVAL, "lk_registry_list: NULL argument");
    if (workspace && !lk_workspace_valid(workspace))
        return lk__fail(err, LK_EWORKSPACE,
                        "invalid workspace: expected \"ws_\" followed by 1-64 "
                        "of [a-z0-9_-]");
    sqlite3_stmt *st = reg->st[workspace ? ST_LIST_WS : ST_LIST_ALL];
    if (workspace)
        sqlite3_bind_text(st, 1, workspace, -1, SQLITE_STATIC);
    lk_key_record *recs = NULL;
    size_t count = 0, cap = 0;
    int rc, ret = LK_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            lk_key_record *grown = realloc(recs, ncap * sizeof *recs);
            if (!grown) {
                ret = lk__fail(err, LK_ENOMEM, "out of memory");
                break;
            }
            recs = grown;
            cap = ncap;
        }
        if ((ret = read_record(st, &recs[count], err)) != LK_OK)
            break;
        count++;
    }
    if (ret == LK_OK && rc != SQLITE_DONE)
        ret = db_fail(reg, err, "cannot list keys");
    finish(st);
    if (ret != LK_OK || count == 0) {
        free(recs);
        return ret;
    }
    *out = recs;
    *n = count;
    return LK_OK;
}

int lk_registry_revoke(lk_registry *reg, const char *kid, lk_error *err)
{
    if (!reg)
        return lk__fail(err, LK_EINVAL, "lk_registry_revoke: NULL argument");
    if (!kid_valid(kid))
        return bad_kid(err);
    sqlite3_stmt *st = reg->st[ST_REVOKE];
    sqlite3_bind_text(st, 1, kid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)time(NULL));
    if (exec_stmt(reg, ST_REVOKE) != SQLITE_OK)
        return db_fail(reg, err, "cannot revoke key");
    if (sqlite3_changes(reg->db) > 0) {
        reg->version++;
        return LK_OK;
    }
    /* Nothing changed: either already revoked (fine) or unknown. */
    lk_key_record rec;
    return get_record(reg, kid, &rec, err);
}

int lk_registry_rotate(lk_registry *reg, const char *kid,
                       char raw_out[LK_KEY_STR_BYTES], lk_key_record *rec,
                       lk_error *err)
{
    if (raw_out)
        raw_out[0] = '\0';
    if (!reg || !raw_out)
        return lk__fail(err, LK_EINVAL, "lk_registry_rotate: NULL argument");
    if (!kid_valid(kid))
        return bad_kid(err);
    int rc = begin(reg, err);
    if (rc != LK_OK)
        return rc;
    lk_key_record old;
    if ((rc = get_record(reg, kid, &old, err)) != LK_OK) {
        rollback(reg);
        return rc;
    }
    if (old.status == LK_KEY_REVOKED) {
        rollback(reg);
        return lk__fail(err, LK_EKEY_REVOKED, "key %s is revoked; create a new key instead",
                        kid);
    }
    return create_in_txn(reg, old.workspace, old.env, old.name, old.scopes,
                         old.scope_mask, raw_out, rec, err);
}

int lk_registry_touch(lk_registry *reg, const char *kid, int64_t when,
                      lk_error *err)
{
    if (!reg)
        return lk__fail(err, LK_EINVAL, "lk_registry_touch: NULL argument");
    if (!kid_valid(kid))
        return bad_kid(err);
    sqlite3_stmt *st = reg->st[ST_TOUCH];
    sqlite3_bind_text(st, 1, kid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, when);
    if (exec_stmt(reg, ST_TOUCH) != SQLITE_OK)
        return db_fail(reg, err, "cannot record key use");
    if (sqlite3_changes(reg->db) == 0)
        return lk__fail(err, LK_ENOTFOUND, "no key with id %s", kid);
    /* Bookkeeping only: it changes no key's validity, so it does not bump
     * this handle's version (a broker touching keys would otherwise make
     * itself reload them on every poll). */
    return LK_OK;
}

int lk_registry_version(lk_registry *reg, uint64_t *out, lk_error *err)
{
    if (!reg || !out)
        return lk__fail(err, LK_EINVAL, "lk_registry_version: NULL argument");
    sqlite3_stmt *st = reg->st[ST_DATA_VERSION];
    int rc = sqlite3_step(st);
    int64_t dv = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    finish(st);
    if (rc != SQLITE_ROW)
        return db_fail(reg, err, "cannot read the data version");
    if (dv != reg->data_version) {
        reg->data_version = dv;
        reg->version++;
    }
    *out = reg->version;
    return LK_OK;
}
