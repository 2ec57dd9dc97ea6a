"""latchkey keys create/list/revoke/rotate against a temporary registry."""
import os
import sqlite3

import clitest
from clitest import CliTest, KEY_RE


class KeysTest(CliTest):
    def test_create_human(self):
        res = self.run_cli("--db", self.db, "keys", "create", "--workspace", "ws_acme",
                           "--name", "backend", "--scopes",
                           "realtime:publish, realtime:subscribe", prints_key=True)
        lines = res.out.splitlines()
        self.assertEqual(len(lines), 1, res)
        key = self.remember(lines[0])
        self.assertTrue(key.startswith("lk_live_"))
        kid = clitest.kid_of(key)
        self.assertIn(kid, res.err)
        self.assertIn("only time", res.err)
        self.assertIn("ws_acme", res.err)
        self.assert_mode(self.db, 0o600)

    def test_create_json(self):
        doc = self.create_key(workspace="ws_play", name="dev", scopes="realtime:*",
                              sandbox=True)
        m = KEY_RE.match(doc["key"])
        self.assertEqual(m.group(1), "sbx")
        self.assertEqual(doc["kid"], m.group(2))
        self.assertEqual(doc["workspace"], "ws_play")
        self.assertEqual(doc["env"], "sbx")
        self.assertEqual(doc["name"], "dev")
        self.assertEqual(doc["scopes"], ["realtime:*"])
        self.assertEqual(set(doc), {"key", "kid", "workspace", "env", "name", "scopes"})

    def test_list_never_shows_secrets(self):
        a = self.create_key(workspace="ws_a", name="first")
        b = self.create_key(workspace="ws_b", name="second", scopes="realtime:subscribe")
        res = self.run_cli("--db", self.db, "keys", "list")
        self.assertIn(a["kid"], res.out)
        self.assertIn(b["kid"], res.out)
        self.assertIn("second", res.out)
        self.assertNotIn("lk_live_", res.out)

        rows = self.run_cli("--db", self.db, "--json", "keys", "list").json()
        self.assertEqual([r["kid"] for r in rows], [a["kid"], b["kid"]])
        for r in rows:
            self.assertNotIn("key", r)
            self.assertEqual(r["status"], "active")
            self.assertIsNone(r["revoked_at"])
            self.assertIsNone(r["last_used_at"])
            self.assertIsInstance(r["created_at"], int)
        self.assertEqual(rows[1]["scopes"], ["realtime:subscribe"])

        rows = self.run_cli("--db", self.db, "--json", "keys", "list",
                            "--workspace", "ws_b").json()
        self.assertEqual([r["kid"] for r in rows], [b["kid"]])
        self.assertEqual(self.run_cli("--db", self.db, "--json", "keys", "list",
                                      "--workspace", "ws_none").json(), [])

    def test_list_without_registry(self):
        res = self.run_cli("keys", "list", expect=1)
        self.assertIn("no key registry", res.err)
        self.assertFalse(os.path.exists(os.path.join(self.cwd, "latchkey.db")))

    def test_revoke(self):
        a = self.create_key()
        res = self.run_cli("--db", self.db, "keys", "revoke", a["kid"])
        self.assertIn("Revoked", res.out)
        res = self.run_cli("--db", self.db, "keys", "revoke", a["kid"])
        self.assertIn("already revoked", res.out)
        rows = self.run_cli("--db", self.db, "--json", "keys", "list").json()
        self.assertEqual(rows[0]["status"], "revoked")
        self.assertIsInstance(rows[0]["revoked_at"], int)
        doc = self.run_cli("--db", self.db, "--json", "keys", "revoke", a["kid"]).json()
        self.assertEqual(doc["status"], "revoked")

        res = self.run_cli("--db", self.db, "keys", "revoke", "0123456789abcdef", expect=1)
        self.assertIn("no key with id 0123456789abcdef", res.err)
        # A key pasted where the kid belongs is refused without echoing it.
        res = self.run_cli("--db", self.db, "keys", "revoke", a["key"], expect=1)
        self.assertIn("invalid key id", res.err)

    def test_rotate(self):
        a = self.create_key(workspace="ws_r", name="rotating", scopes="realtime:subscribe")
        res = self.run_cli("--db", self.db, "keys", "rotate", a["kid"], prints_key=True)
        new = self.remember(res.out.strip())
        self.assertNotEqual(new, a["key"])
        self.assertIn(a["kid"], res.err)
        self.assertIn("only time", res.err)
        rows = self.run_cli("--db", self.db, "--json", "keys", "list").json()
        self.assertEqual(len(rows), 2)
        self.assertEqual([r["status"] for r in rows], ["active", "active"])
        self.assertEqual(rows[1]["kid"], clitest.kid_of(new))
        self.assertEqual(rows[1]["name"], "rotating")
        self.assertEqual(rows[1]["workspace"], "ws_r")
        self.assertEqual(rows[1]["scopes"], ["realtime:subscribe"])

        doc = self.run_cli("--db", self.db, "--json", "keys", "rotate", a["kid"],
                           prints_key=True).json()
        self.remember(doc["key"])
        self.assertEqual(doc["replaces"], a["kid"])
        self.assertEqual(doc["env"], "live")

        self.run_cli("--db", self.db, "keys", "revoke", a["kid"])
        res = self.run_cli("--db", self.db, "keys", "rotate", a["kid"], expect=1)
        self.assertIn("revoked", res.err)
        self.assertEqual(res.out, "")

    def test_env_mismatch(self):
        self.create_key(workspace="ws_prod")
        res = self.run_cli("--db", self.db, "keys", "create", "--workspace", "ws_prod",
                           "--name", "x", "--scopes", "realtime:publish", "--sandbox",
                           expect=1)
        self.assertIn("ws_prod", res.err)
        self.assertIn("live", res.err)
        self.assertEqual(res.out, "")
        self.create_key(workspace="ws_sand", sandbox=True)
        res = self.run_cli("--db", self.db, "keys", "create", "--workspace", "ws_sand",
                           "--name", "x", "--scopes", "realtime:publish", expect=1)
        self.assertIn("sandbox", res.err)

    def test_bad_input(self):
        base = ["--db", self.db, "keys", "create"]
        for ws in ["acme", "ws_", "ws_Acme", "ws_a b", "ws_" + "a" * 65]:
            res = self.run_cli(*base, "--workspace", ws, "--name", "n",
                               "--scopes", "realtime:publish", expect=1)
            self.assertIn("invalid workspace", res.err)
        res = self.run_cli(*base, "--workspace", "ws_a", "--name", "n",
                           "--scopes", "realtime:teleport", expect=1)
        self.assertIn("realtime:teleport", res.err)
        res = self.run_cli(*base, "--workspace", "ws_a", "--name", "n",
                           "--scopes", "", expect=1)
        self.assertIn("scope", res.err)
        res = self.run_cli(*base, "--workspace", "ws_a", "--name", "a\tb",
                           "--scopes", "realtime:publish", expect=1)
        self.assertIn("name", res.err)
        res = self.run_cli(*base, "--workspace", "ws_a", "--name", "n" * 129,
                           "--scopes", "realtime:publish", expect=1)
        self.assertIn("name", res.err)
        # Missing required options are usage errors.
        res = self.run_cli(*base, "--workspace", "ws_a", "--name", "n", expect=2)
        self.assertIn("--scopes", res.err)
        self.run_cli(*base, "--name", "n", "--scopes", "realtime:publish", expect=2)
        self.assertEqual(self.run_cli("--db", self.db, "--json", "keys", "list").json(), [])

    def test_global_options_anywhere(self):
        a = self.create_key()
        forms = [
            ["--db", self.db, "--json", "keys", "list"],
            ["keys", "list", "--db", self.db, "--json"],
            ["--json", "keys", "--db", self.db, "list"],
            ["keys", "list", "--db=" + self.db, "--json"],
        ]
        for args in forms:
            rows = self.run_cli(*args).json()
            self.assertEqual([r["kid"] for r in rows], [a["kid"]], args)
        # LATCHKEY_DB, then ./latchkey.db.
        rows = self.run_cli("--json", "keys", "list", env={"LATCHKEY_DB": self.db}).json()
        self.assertEqual(len(rows), 1)
        res = self.run_cli("keys", "create", "--workspace", "ws_cwd", "--name", "n",
                           "--scopes", "realtime:publish", prints_key=True)
        self.remember(res.out.strip())
        local = os.path.join(self.cwd, "latchkey.db")
        self.assert_mode(local, 0o600)
        rows = self.run_cli("--json", "keys", "list").json()
        self.assertEqual([r["workspace"] for r in rows], ["ws_cwd"])

    def test_registry_holds_no_secret(self):
        a = self.create_key()
        secret = clitest.secret_of(a["key"])
        for suffix in ["", "-wal"]:
            path = self.db + suffix
            if os.path.exists(path):
                with open(path, "rb") as f:
                    data = f.read()
                self.assertNotIn(secret.encode(), data)
                self.assertNotIn(bytes.fromhex(secret), data)
        con = sqlite3.connect(self.db)
        (pub,) = con.execute("SELECT pubkey FROM keys WHERE kid = ?", (a["kid"],)).fetchone()
        con.close()
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        priv = ec.derive_private_key(int(secret, 16), ec.SECP256R1())
        self.assertEqual(pub, priv.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))

    def test_newer_schema_refused(self):
        self.create_key()
        con = sqlite3.connect(self.db)
        con.execute("PRAGMA user_version = 42")
        con.commit()
        con.close()
        res = self.run_cli("--db", self.db, "keys", "list", expect=1)
        self.assertIn("newer", res.err)


if __name__ == "__main__":
    clitest.main()
