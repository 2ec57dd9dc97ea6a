"""latchkey login/logout/workspace use: the credentials file (mode, atomic
replacement, URL and workspace keys) and how token mint picks from it."""
import json
import os
import stat

import jwt

import clitest
from clitest import CliTest

CAP = '{"chat:*":["realtime:subscribe"]}'
URL = "http://127.0.0.1:8080"


class LoginTest(CliTest):
    def setUp(self):
        super().setUp()
        self.creds_dir = os.path.join(self.home, ".config", "latchkey")
        self.creds = os.path.join(self.creds_dir, "credentials.json")

    def load(self):
        with open(self.creds) as f:
            return json.load(f)

    def minted_kid(self, *args, env=None):
        res = self.run_cli("token", "mint", "--capability", CAP, *args, env=env)
        return jwt.get_unverified_header(res.out.strip())["kid"]

    def test_login_with_registry(self):
        a = self.create_key(workspace="ws_a")
        res = self.run_cli("--db", self.db, "login", "--key", a["key"])
        self.assertIn("ws_a", res.out)
        self.assertIn(a["kid"], res.out)
        self.assert_mode(self.creds, 0o600)
        self.assert_mode(self.creds_dir, 0o700)
        self.assert_mode(os.path.dirname(self.creds_dir), 0o700)
        doc = self.load()
        entry = doc["servers"][URL]["credentials"]["ws_a"]
        self.assertEqual(entry["api_key"], a["key"])
        self.assertEqual(entry["kid"], a["kid"])
        self.assertEqual(entry["env"], "live")
        # The stored key is used with no --key and no registry at hand.
        self.assertEqual(self.minted_kid(), a["kid"])

    def test_login_json_and_registry_from_cwd(self):
        res = self.run_cli("keys", "create", "--workspace", "ws_local", "--name", "n",
                           "--scopes", "realtime:subscribe", prints_key=True)
        key = self.remember(res.out.strip())
        doc = self.run_cli("--json", "login", "--key", key).json()
        self.assertEqual(doc["workspace"], "ws_local")
        self.assertEqual(doc["checked_with"], "registry")
        self.assertEqual(doc["url"], URL)
        self.assertEqual(doc["credentials"], self.creds)

    def test_login_refusals(self):
        a = self.create_key(workspace="ws_a")
        res = self.run_cli("--db", self.db, "login", "--key", a["key"], "--workspace",
                           "ws_b", expect=1)
        self.assertIn("ws_a", res.err)
        self.run_cli("--db", self.db, "keys", "revoke", a["kid"])
        res = self.run_cli("--db", self.db, "login", "--key", a["key"], expect=1)
        self.assertIn("revoked", res.err)
        other = os.path.join(self.tmp, "other.db")
        self.create_key(db=other)
        b = self.create_key(workspace="ws_b")
        res = self.run_cli("--db", other, "login", "--key", b["key"], expect=1)
        self.assertIn("not in the key registry", res.err)
        res = self.run_cli("login", "--key", "lk_live_garbage", expect=1)
        self.assertIn("invalid API key", res.err)
        self.run_cli("login", expect=2)
        self.assertFalse(os.path.exists(self.creds))

    def test_login_unreachable_broker(self):
        a = self.create_key(workspace="ws_a")
        # No registry holds the key here, so login asks the broker, which is
        # not there: a clean failure, nothing stored.
        res = self.run_cli("login", "--key", a["key"], "--url", "http://127.0.0.1:1",
                           expect=1)
        self.assertIn("cannot reach", res.err)
        self.assertIn("127.0.0.1:1", res.err)
        self.assertFalse(os.path.exists(self.creds))
        res = self.run_cli("login", "--key", a["key"], "--url", "ftp://example", expect=1)
        self.assertIn("http", res.err)

    def test_atomic_replacement_and_mode(self):
        a = self.create_key(workspace="ws_a")
        b = self.create_key(workspace="ws_b")
        os.makedirs(self.creds_dir, mode=0o700)
        with open(self.creds, "w") as f:
            f.write("{}")
        os.chmod(self.creds, 0o644)
        before = os.stat(self.creds).st_ino
        res = self.run_cli("--db", self.db, "login", "--key", a["key"])
        self.assertIn("readable by other users", res.err)
        st = os.stat(self.creds)
        self.assertNotEqual(st.st_ino, before)  # replaced by rename, not rewritten
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.run_cli("--db", self.db, "login", "--key", b["key"])
        self.assertNotEqual(os.stat(self.creds).st_ino, st.st_ino)
        self.assert_mode(self.creds, 0o600)
        self.assertEqual(os.listdir(self.creds_dir), ["credentials.json"])
        self.assertEqual(set(self.load()["servers"][URL]["credentials"]), {"ws_a", "ws_b"})

    def test_corrupt_file(self):
        os.makedirs(self.creds_dir, mode=0o700)
        with open(self.creds, "w") as f:
            f.write('{"servers": [')
        os.chmod(self.creds, 0o600)
        a = self.create_key()
        res = self.run_cli("--db", self.db, "login", "--key", a["key"], expect=1)
        self.assertIn("credentials", res.err)
        res = self.run_cli("token", "mint", "--capability", CAP, expect=1)
        self.assertIn("credentials", res.err)

    def test_workspaces(self):
        a = self.create_key(workspace="ws_a")
        b = self.create_key(workspace="ws_b")
        self.run_cli("--db", self.db, "login", "--key", a["key"])
        self.run_cli("--db", self.db, "login", "--key", b["key"])
        res = self.run_cli("token", "mint", "--capability", CAP, expect=1)
        self.assertIn("several workspaces", res.err)
        self.assertEqual(self.minted_kid("--workspace", "ws_b"), b["kid"])
        self.assertEqual(self.minted_kid(env={"LATCHKEY_WORKSPACE": "ws_a"}), a["kid"])
        # --workspace beats LATCHKEY_WORKSPACE.
        self.assertEqual(self.minted_kid("--workspace", "ws_b",
                                         env={"LATCHKEY_WORKSPACE": "ws_a"}), b["kid"])
        res = self.run_cli("workspace", "use", "ws_b")
        self.assertIn("ws_b", res.out)
        self.assertEqual(self.load()["servers"][URL]["default_workspace"], "ws_b")
        self.assertEqual(self.minted_kid(), b["kid"])
        self.assertEqual(self.minted_kid(env={"LATCHKEY_WORKSPACE": "ws_a"}), a["kid"])
        res = self.run_cli("token", "mint", "--capability", CAP, "--workspace", "ws_c",
                           expect=1)
        self.assertIn("ws_c", res.err)
        self.assert_mode(self.creds, 0o600)

        res = self.run_cli("workspace", "use", "ws_new")
        self.assertIn("no API key is stored", res.err)
        self.run_cli("workspace", "use", "Bad", expect=1)

        # logout removes the resolved workspace's key only.
        self.run_cli("workspace", "use", "ws_b")
        res = self.run_cli("logout")
        self.assertIn("ws_b", res.out)
        creds = self.load()["servers"][URL]
        self.assertEqual(set(creds["credentials"]), {"ws_a"})
        self.assertNotIn("default_workspace", creds)
        self.assertEqual(self.minted_kid(), a["kid"])
        self.run_cli("logout", "--workspace", "ws_b", expect=1)
        self.run_cli("logout", "--workspace", "ws_a")
        self.assertEqual(self.load()["servers"], {})
        res = self.run_cli("logout", expect=1)
        self.assertIn("not logged in", res.err)
        self.assert_mode(self.creds, 0o600)
        for key in (a["key"], b["key"]):
            with open(self.creds) as f:
                self.assertNotIn(key, f.read())

    def test_keyed_by_url(self):
        a = self.create_key(workspace="ws_a")
        self.run_cli("--db", self.db, "login", "--key", a["key"], "--url",
                     "http://127.0.0.1:9/")
        self.assertIn("http://127.0.0.1:9", self.load()["servers"])
        self.assertEqual(self.minted_kid("--url", "http://127.0.0.1:9"), a["kid"])
        self.assertEqual(self.minted_kid(env={"LATCHKEY_URL": "http://127.0.0.1:9//"}),
                         a["kid"])
        res = self.run_cli("token", "mint", "--capability", CAP, expect=1)
        self.assertIn("no API key", res.err)

    def test_xdg_config_home(self):
        xdg = os.path.join(self.tmp, "xdg", "conf")
        a = self.create_key()
        self.run_cli("--db", self.db, "login", "--key", a["key"],
                     env={"XDG_CONFIG_HOME": xdg})
        path = os.path.join(xdg, "latchkey", "credentials.json")
        self.assert_mode(path, 0o600)
        self.assert_mode(os.path.dirname(path), 0o700)
        self.assertFalse(os.path.exists(self.creds))
        self.assertEqual(self.minted_kid(env={"XDG_CONFIG_HOME": xdg}), a["kid"])
        self.run_cli("token", "mint", "--capability", CAP, expect=1)


if __name__ == "__main__":
    clitest.main()
