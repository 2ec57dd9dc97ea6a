"""Shared helpers for the `latchkey` CLI tests.

Each test gets a private temporary directory with its own HOME and working
directory, and an environment without any LATCHKEY_* variables, so the
tests never touch a real user's registry or credentials. Every run of the
binary is checked for leaked secrets: no API key (or its secret half) may
appear on stderr, nor on stdout unless the test says the command prints
a key.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

BINARY = None
KEY_RE = re.compile(r"^lk_(live|sbx)_([0-9a-f]{16})_([0-9a-f]{64})_([0-9a-f]{8})$")


def main():
    global BINARY
    if len(sys.argv) < 2:
        sys.exit("usage: %s PATH_TO_LATCHKEY [unittest args]" % sys.argv[0])
    BINARY = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)


class Result:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return "rc=%d\nstdout=%s\nstderr=%s" % (self.rc, self.out, self.err)


class CliTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="lk-cli-test-")
        self.home = os.path.join(self.tmp, "home")
        self.cwd = os.path.join(self.tmp, "work")
        os.mkdir(self.home, 0o700)
        os.mkdir(self.cwd)
        self.db = os.path.join(self.tmp, "registry.db")
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("LATCHKEY_") and k != "XDG_CONFIG_HOME"}
        self.env["HOME"] = self.home
        self.secrets = []

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_cli(self, *args, expect=0, env=None, stdin=None, prints_key=False,
                cwd=None):
        """Runs latchkey; checks the exit code and that no secret leaked."""
        full_env = dict(self.env)
        for k, v in (env or {}).items():
            if v is None:
                full_env.pop(k, None)
            else:
                full_env[k] = v
        proc = subprocess.run([BINARY] + list(args), cwd=cwd or self.cwd,
                              env=full_env, input=stdin, capture_output=True,
                              text=True, timeout=60)
        res = Result(proc)
        if expect is not None:
            self.assertEqual(res.rc, expect, "latchkey %s\n%r" % (" ".join(args), res))
        for s in self.secrets:
            self.assertNotIn(s, res.err, "secret on stderr of %s" % (args,))
            if not prints_key:
                self.assertNotIn(s, res.out, "secret on stdout of %s" % (args,))
        return res

    def remember(self, key):
        """Registers a key so that every later run checks it never leaks."""
        m = KEY_RE.match(key)
        self.assertIsNotNone(m, "not an API key: %r" % key)
        self.secrets += [key, m.group(3)]
        return key

    def create_key(self, workspace="ws_test", name="test key",
                   scopes="realtime:publish,realtime:subscribe", sandbox=False,
                   db=None):
        args = ["--db", db or self.db, "--json", "keys", "create",
                "--workspace", workspace, "--name", name, "--scopes", scopes]
        if sandbox:
            args.append("--sandbox")
        doc = self.run_cli(*args, prints_key=True).json()
        self.remember(doc["key"])
        return doc

    def assert_mode(self, path, mode):
        self.assertEqual(os.stat(path).st_mode & 0o777, mode, path)


def secret_of(key):
    return KEY_RE.match(key).group(3)


def kid_of(key):
    return KEY_RE.match(key).group(2)


def public_pem(key):
    """The key's public half as PEM, derived independently of latchkey."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    priv = ec.derive_private_key(int(secret_of(key), 16), ec.SECP256R1())
    return priv.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo)


def private_pem(key):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    priv = ec.derive_private_key(int(secret_of(key), 16), ec.SECP256R1())
    return priv.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
