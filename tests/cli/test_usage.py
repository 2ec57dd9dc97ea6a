"""latchkey's command line surface: help everywhere, version, exit codes for
usage errors, and no echo of a key pasted in the wrong place."""
import clitest
from clitest import CliTest

COMMANDS = [
    ["keys", "create"], ["keys", "list"], ["keys", "revoke"], ["keys", "rotate"],
    ["token", "mint"], ["token", "inspect"], ["token", "verify"],
    ["login"], ["logout"], ["workspace", "use"], ["publish"],
]
GROUPS = [["keys"], ["token"], ["workspace"]]


class UsageTest(CliTest):
    def test_help_everywhere(self):
        for flag in ["--help", "-h"]:
            res = self.run_cli(flag)
            self.assertIn("Usage: latchkey", res.out)
            for cmd in COMMANDS:
                self.assertIn(" ".join(cmd), res.out)
            for cmd in COMMANDS + GROUPS:
                res = self.run_cli(*cmd, flag)
                self.assertIn("Usage: latchkey " + " ".join(cmd), res.out, cmd)
                self.assertEqual(res.err, "")
        # Help wins over everything else on the line, before or after.
        res = self.run_cli("--help", "keys", "create", "--name", "x")
        self.assertIn("Usage: latchkey keys create", res.out)
        res = self.run_cli("token", "mint", "--ttl", "nope", "-h")
        self.assertIn("--capability", res.out)
        res = self.run_cli("help", "token", "verify")
        self.assertIn("Usage: latchkey token verify", res.out)
        self.assertIn("Usage: latchkey", self.run_cli("help").out)

    def test_version(self):
        res = self.run_cli("--version")
        self.assertRegex(res.out, r"^latchkey \d+\.\d+\.\d+\n$")

    def test_usage_errors_exit_2(self):
        cases = [
            [],
            ["frobnicate"],
            ["keys"],
            ["keys", "explode"],
            ["token"],
            ["--bogus", "keys", "list"],
            ["keys", "list", "--bogus"],
            ["keys", "list", "-x"],
            ["keys", "list", "--ttl", "5"],
            ["keys", "list", "extra"],
            ["keys", "revoke"],
            ["keys", "revoke", "a", "b"],
            ["token", "inspect"],
            ["token", "mint", "--capability"],
            ["--db"],
            ["--json=yes", "keys", "list"],
            ["workspace", "use"],
            ["help", "nothing"],
        ]
        for args in cases:
            res = self.run_cli(*args, expect=2)
            self.assertNotEqual(res.err, "", args)
            self.assertEqual(res.out, "", args)

    def test_pasted_key_not_echoed(self):
        key = self.create_key()["key"]
        for args in ([key], ["keys", key], ["--" + key], ["keys", "list", key],
                     ["--kye=" + key, "keys", "list"]):
            res = self.run_cli(*args, expect=2)
            self.assertNotEqual(res.err, "")

    def test_errors_are_one_line(self):
        res = self.run_cli("--db", self.db, "keys", "revoke", "0123456789abcdef",
                           expect=1)
        self.assertEqual(res.err.count("\n"), 1)
        self.assertTrue(res.err.startswith("latchkey: "))
        self.assertEqual(res.out, "")


if __name__ == "__main__":
    clitest.main()
