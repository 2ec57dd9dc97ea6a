#!/usr/bin/python3
"""Cross-checks liblatchkey-mint against PyJWT + cryptography.

  (a) tokens minted by lk_tokentool verify with jwt.decode(algorithms=["ES256"])
      using only the public key;
  (b) tokens PyJWT mints with the private key derived from the API key's hex
      secret verify with lk_tokentool;
  (c) expired, tampered, wrong-key and wrong-algorithm tokens are refused on
      both sides.

Usage: pyjwt_interop.py PATH/TO/lk_tokentool
Any mismatch exits 1 with a message naming the failed check.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import time
import zlib

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

TOOL = sys.argv[1] if len(sys.argv) > 1 else sys.exit("usage: pyjwt_interop.py TOOL")
KEY_ENV = "LK_INTEROP_KEY"
CAP = {"chat:*": ["realtime:subscribe", "realtime:publish"], "news": ["realtime:subscribe"]}
CAP_CANON = {"chat:*": ["realtime:publish", "realtime:subscribe"],
             "news": ["realtime:subscribe"]}
KEY_RE = re.compile(r"^lk_(live|sbx)_([0-9a-f]{16})_([0-9a-f]{64})_([0-9a-f]{8})$")

checks = 0


def check(cond, what):
    global checks
    if not cond:
        print("FAIL: " + what, file=sys.stderr)
        sys.exit(1)
    checks += 1


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def run(args, key=None, stdin=None):
    """Runs the tool; the API key travels in the environment, never argv."""
    env = dict(os.environ)
    if key is not None:
        env[KEY_ENV] = key
    p = subprocess.run([TOOL] + args, input=stdin, capture_output=True, text=True,
                       env=env, timeout=60)
    return p.returncode, p.stdout, p.stderr


def tool_ok(args, key=None, stdin=None):
    rc, out, err = run(args, key, stdin)
    check(rc == 0, "lk_tokentool %s exited %d: %s" % (args[0], rc, err.strip()))
    return out


def tool_refuses(args, key, code, stdin=None):
    rc, out, err = run(args, key, stdin)
    check(rc == 1, "lk_tokentool %s should refuse (exit 1), got %d" % (args[0], rc))
    check(code in err, "expected %s, tool said: %s" % (code, err.strip()))
    check(out == "", "refused verify must print no claims")


def pyjwt_refuses(token, pub, exc, what, **kw):
    try:
        jwt.decode(token, pub, algorithms=["ES256"], **kw)
    except exc:
        check(True, what)
        return
    except Exception as e:  # noqa: BLE001 - report the unexpected type
        check(False, "%s: PyJWT raised %r, expected %s" % (what, e, exc.__name__))
    check(False, "%s: PyJWT accepted the token" % what)


def new_key(env):
    key = tool_ok(["genkey", env]).strip()
    m = KEY_RE.match(key)
    check(m is not None, "genkey output has the lk_<env>_<kid>_<secret>_<crc> form")
    check(m.group(1) == env, "genkey env")
    body = key.rsplit("_", 1)[0]
    check("%08x" % (zlib.crc32(body.encode()) & 0xFFFFFFFF) == m.group(4),
          "key checksum equals zlib.crc32 of everything before the last '_'")
    priv = ec.derive_private_key(int(m.group(3), 16), ec.SECP256R1())
    return key, m.group(2), priv


def main():
    key, kid, priv = new_key("live")
    pub = priv.public_key()

    # The public key the library derives equals the one cryptography derives.
    pem = tool_ok(["pubpem", "env:" + KEY_ENV], key)
    lk_pub = serialization.load_pem_public_key(pem.encode())
    check(lk_pub.public_numbers() == pub.public_numbers(),
          "public key from lk_pubkey_to_pem matches ec.derive_private_key")

    # (a) lk -> PyJWT, many tokens so that short r or s values occur.
    now = int(time.time())
    toks = tool_ok(["mint", "env:" + KEY_ENV, json.dumps(CAP), "--ttl", "300",
                    "--sub", "user-\u00e9-42", "--aud", "interop", "--count", "300"],
                   key).split()
    check(len(toks) == 300, "minted 300 tokens")
    jtis, short_rs = set(), 0
    for t in toks:
        hdr = jwt.get_unverified_header(t)
        check(hdr == {"alg": "ES256", "typ": "JWT", "kid": kid},
              "header is exactly alg/typ/kid: %r" % hdr)
        claims = jwt.decode(t, lk_pub, algorithms=["ES256"], audience="interop",
                            options={"require": ["exp", "iat", "jti"]})
        check(claims["cap"] == CAP_CANON, "cap claim is the canonical capability")
        check(claims["sub"] == "user-\u00e9-42", "sub survives as UTF-8")
        check(claims["exp"] - claims["iat"] == 300, "exp - iat == ttl")
        check(abs(claims["iat"] - now) <= 60, "iat is the current time")
        check(len(claims["jti"]) == 22, "jti is 16 random bytes in base64url")
        jtis.add(claims["jti"])
        sig = base64.urlsafe_b64decode(t.rsplit(".", 1)[1] + "==")
        check(len(sig) == 64, "signature is raw r||s")
        short_rs += sig[0] == 0 or sig[32] == 0
    check(len(jtis) == len(toks), "every jti is unique")

    # (b) PyJWT -> lk.
    py_toks = []
    for i in range(100):
        now = int(time.time())
        claims = {"iat": now, "exp": now + 600, "jti": b64url(os.urandom(16)),
                  "sub": "py-%d" % i, "cap": CAP}
        if i % 2:
            claims["aud"] = ["other", "interop"]
        py_toks.append(jwt.encode(claims, priv, algorithm="ES256", headers={"kid": kid}))
    out = tool_ok(["verify", "env:" + KEY_ENV, "-", "--audience", "interop"], key,
                  stdin="\n".join(t for i, t in enumerate(py_toks) if i % 2) + "\n")
    got = [json.loads(line) for line in out.splitlines()]
    check(len(got) == 50, "lk verified 50 PyJWT tokens with an audience")
    out = tool_ok(["verify", "env:" + KEY_ENV, "-"], key, stdin="\n".join(py_toks) + "\n")
    got = [json.loads(line) for line in out.splitlines()]
    check(len(got) == 100, "lk verified all 100 PyJWT tokens")
    for i, c in enumerate(got):
        check(c["sub"] == "py-%d" % i and c["kid"] == kid, "claims read back by lk")
        check(c["cap"] == CAP_CANON, "cap parsed by lk")
        check(c["exp"] - c["iat"] == 600, "times read back by lk")
    tool_refuses(["verify", "env:" + KEY_ENV, py_toks[1], "--audience", "elsewhere"], key,
                 "ETOKEN_AUDIENCE")

    # (c) refusals, both directions.
    now = int(time.time())
    expired = jwt.encode({"iat": now - 700, "exp": now - 100, "jti": b64url(os.urandom(16)),
                          "cap": CAP}, priv, algorithm="ES256", headers={"kid": kid})
    tool_refuses(["verify", "env:" + KEY_ENV, expired], key, "ETOKEN_EXPIRED (close 4401)")
    lk_expired = tool_ok(["mint", "env:" + KEY_ENV, json.dumps(CAP), "--now", str(now - 700),
                          "--ttl", "600"], key).strip()
    pyjwt_refuses(lk_expired, lk_pub, jwt.ExpiredSignatureError, "PyJWT refuses expired lk token")
    tool_refuses(["verify", "env:" + KEY_ENV, lk_expired], key, "ETOKEN_EXPIRED")

    h, p, s = py_toks[0].split(".")
    forged_claims = jwt.decode(py_toks[0], options={"verify_signature": False})
    forged_claims["cap"] = {"*": ["realtime:publish", "realtime:subscribe"]}
    p2 = b64url(json.dumps(forged_claims, separators=(",", ":")).encode())
    tool_refuses(["verify", "env:" + KEY_ENV, ".".join([h, p2, s])], key, "ETOKEN_SIGNATURE")
    h, p, s = toks[0].split(".")
    lk_tampered = ".".join([h, p2, s])
    pyjwt_refuses(lk_tampered, lk_pub, jwt.InvalidSignatureError,
                  "PyJWT refuses a tampered lk token")
    sig = bytearray(base64.urlsafe_b64decode(s + "=="))
    sig[10] ^= 0x01
    lk_badsig = ".".join([h, p, b64url(bytes(sig))])
    pyjwt_refuses(lk_badsig, lk_pub, jwt.InvalidSignatureError,
                  "PyJWT refuses an lk token with a flipped signature bit", audience="interop")
    tool_refuses(["verify", "env:" + KEY_ENV, lk_badsig], key, "ETOKEN_SIGNATURE")

    # Another key claiming this kid; and an lk token checked with another key.
    other_key, _, other_priv = new_key("sbx")
    now = int(time.time())
    impostor = jwt.encode({"iat": now, "exp": now + 60, "jti": b64url(os.urandom(16)),
                           "cap": CAP}, other_priv, algorithm="ES256", headers={"kid": kid})
    tool_refuses(["verify", "env:" + KEY_ENV, impostor], key, "ETOKEN_SIGNATURE")
    pyjwt_refuses(toks[0], other_priv.public_key(), jwt.InvalidSignatureError,
                  "PyJWT refuses an lk token under another public key", audience="interop")
    tool_refuses(["verify", "env:" + KEY_ENV, toks[0]], other_key, "ETOKEN_KID")

    # Algorithm confusion: HS256 keyed with the public PEM, and alg none.
    hs_h = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    hs_p = b64url(json.dumps({"iat": now, "exp": now + 60, "jti": b64url(os.urandom(16)),
                              "cap": CAP}).encode())
    mac = hmac.new(pem.encode(), (hs_h + "." + hs_p).encode(), hashlib.sha256).digest()
    tool_refuses(["verify", "env:" + KEY_ENV, hs_h + "." + hs_p + "." + b64url(mac)], key,
                 "ETOKEN_ALG")
    unsigned = jwt.encode({"iat": now, "exp": now + 60, "jti": b64url(os.urandom(16)),
                           "cap": CAP}, None, algorithm="none", headers={"kid": kid})
    tool_refuses(["verify", "env:" + KEY_ENV, unsigned], key, "ETOKEN_ALG")

    # The key may also come from stdin instead of the environment.
    out = tool_ok(["verify", "-", py_toks[0]], stdin=key + "\n")
    check(json.loads(out)["sub"] == "py-0", "key read from stdin")

    print("pyjwt interop: %d checks passed (%d of %d lk signatures had a short r or s)"
          % (checks, short_rs, len(toks)))


if __name__ == "__main__":
    main()
