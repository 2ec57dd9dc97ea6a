"""latchkey token mint/inspect/verify: key resolution, registry checks, and
interop with Debian's python3-jwt (PyJWT) as an independent verifier."""
import base64
import json
import os
import time

import jwt

import clitest
from clitest import CliTest

CAP_SUB = '{"chat:*":["realtime:subscribe"]}'
CAP_PUB = '{"chat:*":["realtime:subscribe","realtime:publish"]}'


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def norm(cap):
    """Capabilities compare as sets of actions: minting canonicalises order."""
    if isinstance(cap, str):
        cap = json.loads(cap)
    return {pattern: sorted(actions) for pattern, actions in cap.items()}


def header_of(token):
    return jwt.get_unverified_header(token)


class TokenTest(CliTest):
    def setUp(self):
        super().setUp()
        self.key = self.create_key(scopes="realtime:subscribe,realtime:publish")["key"]
        self.sub_only = self.create_key(name="subscriber",
                                        scopes="realtime:subscribe")["key"]

    def mint(self, key, cap=CAP_SUB, *extra, expect=0, env=None):
        return self.run_cli("--db", self.db, "token", "mint", "--key", key,
                            "--capability", cap, *extra, expect=expect, env=env)

    def test_mint_interop_with_pyjwt(self):
        before = int(time.time())
        res = self.mint(self.key, CAP_PUB, "--ttl", "120", "--client-id", "user-42",
                        "--audience", "wss://rt.example")
        token = res.out.strip()
        self.assertEqual(res.out.count("\n"), 1)
        hdr = header_of(token)
        self.assertEqual(hdr, {"alg": "ES256", "typ": "JWT",
                               "kid": clitest.kid_of(self.key)})
        claims = jwt.decode(token, clitest.public_pem(self.key), algorithms=["ES256"],
                            audience="wss://rt.example")
        self.assertEqual(norm(claims["cap"]), norm(CAP_PUB))
        self.assertEqual(claims["sub"], "user-42")
        self.assertEqual(claims["exp"] - claims["iat"], 120)
        self.assertTrue(before <= claims["iat"] <= before + 5)
        self.assertGreaterEqual(len(claims["jti"]), 16)
        # Signed by this key and no other.
        with self.assertRaises(jwt.InvalidSignatureError):
            jwt.decode(token, clitest.public_pem(self.sub_only), algorithms=["ES256"],
                       audience="wss://rt.example")

    def test_mint_defaults_and_json(self):
        doc = self.run_cli("--db", self.db, "--json", "token", "mint", "--key", self.key,
                           "--capability", CAP_SUB).json()
        self.assertEqual(set(doc), {"token", "expires_at", "kid"})
        self.assertEqual(doc["kid"], clitest.kid_of(self.key))
        claims = jwt.decode(doc["token"], clitest.public_pem(self.key),
                            algorithms=["ES256"])
        self.assertEqual(claims["exp"], doc["expires_at"])
        self.assertEqual(claims["exp"] - claims["iat"], 600)
        self.assertNotIn("sub", claims)
        self.assertNotIn("aud", claims)

    def test_key_resolution_order(self):
        stored = self.create_key(name="stored")["key"]
        env_key = self.create_key(name="env")["key"]
        self.run_cli("--db", self.db, "login", "--key", stored)

        def kid_used(*args, env=None):
            res = self.run_cli("--db", self.db, "token", "mint", "--capability", CAP_SUB,
                               *args, env=env)
            return header_of(res.out.strip())["kid"]

        env = {"LATCHKEY_API_KEY": env_key}
        self.assertEqual(kid_used("--key", self.key, env=env), clitest.kid_of(self.key))
        self.assertEqual(kid_used(env=env), clitest.kid_of(env_key))
        self.assertEqual(kid_used(), clitest.kid_of(stored))
        # --key after the command, and in --key=VALUE form.
        self.assertEqual(kid_used("--key=" + self.key), clitest.kid_of(self.key))

        self.run_cli("logout")
        res = self.run_cli("--db", self.db, "token", "mint", "--capability", CAP_SUB,
                           expect=1)
        self.assertIn("no API key", res.err)

    def test_capability_beyond_scopes(self):
        res = self.mint(self.sub_only, CAP_PUB, expect=1)
        self.assertIn("realtime:publish", res.err)
        self.assertIn(clitest.kid_of(self.sub_only), res.err)
        self.assertEqual(res.out, "")
        self.mint(self.sub_only, CAP_SUB)

    def test_revoked_key_refused(self):
        self.run_cli("--db", self.db, "keys", "revoke", clitest.kid_of(self.key))
        res = self.mint(self.key, expect=1)
        self.assertIn("revoked", res.err)
        self.assertEqual(res.out, "")

    def test_registry_optional(self):
        # No registry at all (no --db, no LATCHKEY_DB, no ./latchkey.db):
        # the key alone mints, as a backend would.
        res = self.run_cli("token", "mint", "--key", self.sub_only,
                           "--capability", CAP_PUB)
        claims = jwt.decode(res.out.strip(), clitest.public_pem(self.sub_only),
                            algorithms=["ES256"])
        self.assertEqual(norm(claims["cap"]), norm(CAP_PUB))
        # A registry that does not hold the key does not block it either.
        other = os.path.join(self.tmp, "other.db")
        self.create_key(db=other)
        self.run_cli("--db", other, "token", "mint", "--key", self.sub_only,
                     "--capability", CAP_PUB)
        # An explicit --db that does not exist is an error, not a skipped check.
        res = self.run_cli("--db", os.path.join(self.tmp, "missing.db"), "token", "mint",
                           "--key", self.sub_only, "--capability", CAP_SUB, expect=1)
        self.assertIn("no key registry", res.err)

    def test_bad_mint_input(self):
        for ttl in ["0", "-5", "86401", "abc", "10s", ""]:
            res = self.mint(self.key, CAP_SUB, "--ttl", ttl, expect=1)
            self.assertIn("--ttl", res.err)
        self.mint(self.key, CAP_SUB, "--ttl", "86400")
        self.mint(self.key, CAP_SUB, "--ttl", "1")
        for cap in ['{}', '[]', 'nope', '{"chat":[]}', '{"chat":["realtime:fly"]}',
                    '{"bad channel":["realtime:subscribe"]}']:
            res = self.mint(self.key, cap, expect=1)
            self.assertIn("capabilit", res.err)
        res = self.mint(self.key, CAP_SUB, "--client-id", "x" * 129, expect=1)
        res = self.run_cli("--db", self.db, "token", "mint", "--key", self.key, expect=2)
        self.assertIn("--capability", res.err)
        # A malformed key is refused without echoing it.
        broken = self.key[:-1] + ("0" if self.key[-1] != "0" else "1")
        self.secrets.append(broken)
        res = self.mint(broken, expect=1)
        self.assertIn("checksum", res.err)
        res = self.mint("lk_live_nonsense", expect=1)
        self.assertIn("invalid API key", res.err)

    def test_inspect(self):
        token = self.mint(self.key, CAP_SUB, "--client-id", "u1").out.strip()
        res = self.run_cli("token", "inspect", token)
        self.assertIn("Header:", res.out)
        self.assertIn("Claims:", res.out)
        self.assertIn('"ES256"', res.out)
        self.assertIn('"u1"', res.out)
        self.assertIn("Expires:", res.out)
        self.assertIn("not verified", res.err)
        self.assertNotIn(token, res.out + res.err)

        doc = self.run_cli("--json", "token", "inspect", "-", stdin=token + "\n").json()
        self.assertEqual(doc["header"]["kid"], clitest.kid_of(self.key))
        self.assertEqual(doc["claims"]["sub"], "u1")
        self.assertEqual(norm(doc["claims"]["cap"]), norm(CAP_SUB))
        self.assertIs(doc["verified"], False)

        # Decoding works for tokens the broker would refuse (e.g. HS256).
        hs = jwt.encode({"cap": {}, "exp": 1}, "secret", algorithm="HS256")
        doc = self.run_cli("--json", "token", "inspect", hs).json()
        self.assertEqual(doc["header"]["alg"], "HS256")

        for bad in ["abc", "a.b", "a.b.c.d", "!!!.e30.x", b64url(b"[1]") + ".e30.x",
                    b64url(b'{"a":1}') + "." + b64url(b"not json") + ".x"]:
            res = self.run_cli("token", "inspect", bad, expect=1)
            self.assertIn("malformed token", res.err)
        res = self.run_cli("token", "inspect", "-", stdin="x" * 70000, expect=1)
        self.assertIn("bytes", res.err)

    def test_verify(self):
        token = self.mint(self.key, CAP_PUB, "--client-id", "u7").out.strip()
        res = self.run_cli("--db", self.db, "token", "verify", token)
        self.assertIn("valid", res.out)
        self.assertIn("ws_test", res.out)
        doc = self.run_cli("--db", self.db, "--json", "token", "verify", token).json()
        self.assertIs(doc["valid"], True)
        self.assertEqual(doc["kid"], clitest.kid_of(self.key))
        self.assertEqual(doc["workspace"], "ws_test")
        self.assertEqual(doc["sub"], "u7")
        self.assertEqual(norm(doc["cap"]), norm(CAP_PUB))
        self.run_cli("--db", self.db, "token", "verify", "-", stdin=token)

        # Audience: checked only when asked for.
        aud = self.mint(self.key, CAP_SUB, "--audience", "rt").out.strip()
        self.run_cli("--db", self.db, "token", "verify", aud, "--audience", "rt")
        self.run_cli("--db", self.db, "token", "verify", aud)
        res = self.run_cli("--db", self.db, "token", "verify", aud, "--audience", "x",
                           expect=1)
        self.assertIn("aud", res.err)

        # Longer than the broker's default max_token_ttl unless told otherwise.
        long = self.mint(self.key, CAP_SUB, "--ttl", "7200").out.strip()
        res = self.run_cli("--db", self.db, "token", "verify", long, expect=1)
        self.assertIn("ETOKEN_TTL", res.err)
        self.run_cli("--db", self.db, "token", "verify", long, "--max-ttl", "7200")

        # Tampered signature.
        h, p, s = token.split(".")
        sig = bytearray(base64.urlsafe_b64decode(s + "=="))
        sig[10] ^= 1
        res = self.run_cli("--db", self.db, "token", "verify",
                           ".".join([h, p, b64url(bytes(sig))]), expect=1)
        self.assertIn("signature", res.err)

        # Expired: signed correctly (by PyJWT with the key's secret) but past exp.
        now = int(time.time())
        expired = jwt.encode({"iat": now - 700, "exp": now - 100, "jti": "x" * 22,
                              "cap": json.loads(CAP_SUB)},
                             clitest.private_pem(self.key), algorithm="ES256",
                             headers={"kid": clitest.kid_of(self.key)})
        doc = self.run_cli("--db", self.db, "--json", "token", "verify", expired,
                           expect=1).json()
        self.assertIs(doc["valid"], False)
        self.assertEqual(doc["code"], "ETOKEN_EXPIRED")
        self.assertEqual(doc["close_code"], 4401)
        self.assertIn("expired", self.run_cli("--db", self.db, "token", "verify", expired,
                                              expect=1).err)
        # The same construction, unexpired, is accepted: the refusal above is
        # about time, not about PyJWT's encoding.
        fresh = jwt.encode({"iat": now, "exp": now + 60, "jti": "y" * 22,
                            "cap": json.loads(CAP_SUB)},
                           clitest.private_pem(self.key), algorithm="ES256",
                           headers={"kid": clitest.kid_of(self.key)})
        self.run_cli("--db", self.db, "token", "verify", fresh)

        # Beyond the key's scopes (minted without the registry): 4403.
        over = self.run_cli("token", "mint", "--key", self.sub_only, "--capability",
                            CAP_PUB).out.strip()
        doc = self.run_cli("--db", self.db, "--json", "token", "verify", over,
                           expect=1).json()
        self.assertEqual(doc["close_code"], 4403)

        # Revoked key: refused with 4403.
        self.run_cli("--db", self.db, "keys", "revoke", clitest.kid_of(self.key))
        doc = self.run_cli("--db", self.db, "--json", "token", "verify", token,
                           expect=1).json()
        self.assertEqual(doc["code"], "EKEY_REVOKED")
        self.assertEqual(doc["close_code"], 4403)

        # Unknown key.
        other = os.path.join(self.tmp, "other.db")
        self.create_key(db=other)
        res = self.run_cli("--db", other, "token", "verify", fresh, expect=1)
        self.assertIn("unknown key", res.err)
        self.run_cli("token", "verify", fresh, expect=1)


if __name__ == "__main__":
    clitest.main()
