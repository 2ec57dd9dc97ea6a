/* Unit tests for the broker's option parsing (broker/config.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "test.h"

static char err[LK_CONFIG_ERR_BYTES];

static lk_config *load(int argc, char **argv, lk_config_rc want)
{
    lk_config *cfg = NULL;
    lk_config_rc rc = lk_config_load(argc, argv, &cfg, err);
    if (rc != want) {
        fprintf(stderr, "lk_config_load: rc %d (want %d): %s\n", rc, want, err);
        lk_config_destroy(cfg);
        return NULL;
    }
    return cfg;
}

static char *write_file(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/lk-config-test-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        close(fd);
        return NULL;
    }
    close(fd);
    return path;
}

static void test_defaults(void)
{
    unsetenv("LATCHKEY_DB");
    char *argv[] = {"b", NULL};
    lk_config *c = load(1, argv, LK_CONFIG_OK);
    ASSERT_NOT_NULL(c);
    ASSERT_STREQ(c->listen_host, "127.0.0.1");
    ASSERT_EQ(c->listen_port, 8080);
    ASSERT_STREQ(c->db_path, "./latchkey.db");
    ASSERT_NULL(c->audience);
    ASSERT_EQ(c->max_token_ttl, 3600);
    ASSERT_EQ(c->max_frame, 65536);
    ASSERT_EQ(c->max_subscriptions, 100);
    ASSERT_EQ(c->max_connections, 0);
    ASSERT_EQ(c->publish_rate, 1000);
    ASSERT_EQ(c->publish_burst, 2000);
    ASSERT_EQ(c->rate_limit_close, 1000);
    ASSERT_EQ(c->send_queue_messages, 1024);
    ASSERT_EQ(c->send_queue_bytes, 4194304);
    ASSERT_EQ(c->history, 100);
    ASSERT_EQ(c->ping_interval, 25);
    ASSERT_EQ(c->n_origins, 0);
    ASSERT_EQ(c->log_level, LK_LOG_INFO);
    ASSERT_NULL(c->log_file);
    lk_config_destroy(c);
}

static void test_flags(void)
{
    char *argv[] = {"b", "--listen", "[::1]:0", "--db=/x.db", "--max-frame", "1024",
                    "--allowed-origins", "https://a.example, https://b.example",
                    "--log-level", "debug", "--audience", "aud1", NULL};
    lk_config *c = load(12, argv, LK_CONFIG_OK);
    ASSERT_NOT_NULL(c);
    ASSERT_STREQ(c->listen_host, "::1");
    ASSERT_EQ(c->listen_port, 0);
    ASSERT_STREQ(c->db_path, "/x.db");
    ASSERT_EQ(c->max_frame, 1024);
    ASSERT_EQ(c->n_origins, 2);
    ASSERT_STREQ(c->origins[1], "https://b.example");
    ASSERT_TRUE(lk_config_origin_allowed(c, "https://a.example", 17));
    ASSERT_FALSE(lk_config_origin_allowed(c, "https://a.exampl", 16));
    ASSERT_EQ(c->log_level, LK_LOG_DEBUG);
    ASSERT_STREQ(c->audience, "aud1");
    lk_config_destroy(c);
}

static void test_bad_flags(void)
{
    char *a1[] = {"b", "--bogus", "1", NULL};
    ASSERT_NULL(load(3, a1, LK_CONFIG_ERROR));
    ASSERT_TRUE(strstr(err, "--bogus") != NULL);
    char *a2[] = {"b", "--max-frame", "12", NULL};
    ASSERT_NULL(load(3, a2, LK_CONFIG_ERROR));
    ASSERT_TRUE(strstr(err, "max-frame") && strstr(err, "out of range"));
    char *a3[] = {"b", "--publish-rate", "1x", NULL};
    ASSERT_NULL(load(3, a3, LK_CONFIG_ERROR));
    ASSERT_TRUE(strstr(err, "publish-rate") != NULL);
    char *a4[] = {"b", "--listen", "host", NULL};
    ASSERT_NULL(load(3, a4, LK_CONFIG_ERROR));
    char *a5[] = {"b", "--listen", "h:70000", NULL};
    ASSERT_NULL(load(3, a5, LK_CONFIG_ERROR));
    char *a6[] = {"b", "--history", NULL};
    ASSERT_NULL(load(2, a6, LK_CONFIG_ERROR));
    ASSERT_TRUE(strstr(err, "missing value") != NULL);
    char *a7[] = {"b", "--log-level", "loud", NULL};
    ASSERT_NULL(load(3, a7, LK_CONFIG_ERROR));
    char *a8[] = {"b", "stray", NULL};
    ASSERT_NULL(load(2, a8, LK_CONFIG_ERROR));
    char *a9[] = {"b", "--allowed-origins", "a,,b", NULL};
    ASSERT_NULL(load(3, a9, LK_CONFIG_ERROR));
}

static void test_file_then_flags(void)
{
    char *path = write_file("# comment\nlisten 0.0.0.0:9000\n\nhistory 5 # five\n"
                            "db /from-file.db\nmax-subscriptions 7\n");
    ASSERT_NOT_NULL(path);
    char *argv[] = {"b", "--config", path, "--max-subscriptions", "9", NULL};
    setenv("LATCHKEY_DB", "/from-env.db", 1);
    lk_config *c = load(5, argv, LK_CONFIG_OK);
    unsetenv("LATCHKEY_DB");
    unlink(path);
    ASSERT_NOT_NULL(c);
    ASSERT_STREQ(c->listen_host, "0.0.0.0");
    ASSERT_EQ(c->listen_port, 9000);
    ASSERT_EQ(c->history, 5);
    ASSERT_EQ(c->max_subscriptions, 9);
    /* An explicit config file beats the ambient LATCHKEY_DB. */
    ASSERT_STREQ(c->db_path, "/from-file.db");
    lk_config_destroy(c);
}

static void test_env_db(void)
{
    setenv("LATCHKEY_DB", "/env.db", 1);
    char *argv[] = {"b", NULL};
    lk_config *c = load(1, argv, LK_CONFIG_OK);
    ASSERT_NOT_NULL(c);
    ASSERT_STREQ(c->db_path, "/env.db");
    lk_config_destroy(c);
    char *argv2[] = {"b", "--db", "/flag.db", NULL};
    c = load(3, argv2, LK_CONFIG_OK);
    unsetenv("LATCHKEY_DB");
    ASSERT_NOT_NULL(c);
    ASSERT_STREQ(c->db_path, "/flag.db");
    lk_config_destroy(c);
}

static void test_file_errors_name_the_line(void)
{
    char *path = write_file("history 5\nmax-frame 99\n");
    char *argv[] = {"b", "--config", path, NULL};
    ASSERT_NULL(load(3, argv, LK_CONFIG_ERROR));
    unlink(path);
    ASSERT_TRUE(strstr(err, ":2: max-frame") != NULL);

    path = write_file("history 5\nwhatever 1\n");
    char *argv2[] = {"b", "--config", path, NULL};
    ASSERT_NULL(load(3, argv2, LK_CONFIG_ERROR));
    unlink(path);
    ASSERT_TRUE(strstr(err, ":2: unknown setting \"whatever\"") != NULL);

    path = write_file("history 5\nhistory 6\n");
    char *argv3[] = {"b", "--config", path, NULL};
    ASSERT_NULL(load(3, argv3, LK_CONFIG_ERROR));
    unlink(path);
    ASSERT_TRUE(strstr(err, ":2: history: set twice") != NULL);

    char *argv4[] = {"b", "--config", "/nonexistent/lk.conf", NULL};
    ASSERT_NULL(load(3, argv4, LK_CONFIG_ERROR));
    ASSERT_TRUE(strstr(err, "/nonexistent/lk.conf") != NULL);
}

static void test_help_and_version(void)
{
    char *argv[] = {"b", "--max-frame", "1", "--version", NULL};
    ASSERT_NULL(load(4, argv, LK_CONFIG_EXIT));
}

static void test_apply_live(void)
{
    char *a1[] = {"b", "--listen", "127.0.0.1:1", "--history", "3", "--publish-rate", "5", NULL};
    char *a2[] = {"b", "--listen", "127.0.0.1:2", "--history", "4", "--publish-rate", "6", NULL};
    lk_config *run = load(7, a1, LK_CONFIG_OK);
    lk_config *fresh = load(7, a2, LK_CONFIG_OK);
    ASSERT_TRUE(run && fresh);
    char kept[128];
    lk_config *c = lk_config_apply_live(run, fresh, kept, sizeof kept);
    ASSERT_TRUE(c == fresh);
    ASSERT_EQ(c->listen_port, 1);
    ASSERT_EQ(c->history, 3);
    ASSERT_EQ(c->publish_rate, 6);
    ASSERT_STREQ(kept, "listen,history");
    lk_config_destroy(run);
    lk_config_destroy(c);
}

LK_TEST_MAIN("config",
             LK_TEST(test_defaults),
             LK_TEST(test_flags),
             LK_TEST(test_bad_flags),
             LK_TEST(test_file_then_flags),
             LK_TEST(test_env_db),
             LK_TEST(test_file_errors_name_the_line),
             LK_TEST(test_help_and_version),
             LK_TEST(test_apply_live))
