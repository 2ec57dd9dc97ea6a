#!/usr/bin/python3
"""Writes the seeds of tests/fuzz/corpus: capabilities and scope lists for
fuzz_cap, API keys for fuzz_key, and tokens signed with fuzz_token's fixed
key (see fuzz_token.c), built with python3-cryptography, independently of
the C library.

Run it again after changing fuzz_token.c's key, kids or clock:
    /usr/bin/python3 tests/fuzz/make_corpus.py
ECDSA signatures are randomised, so token files change on every run.
"""
import base64
import json
import os
import zlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

HERE = os.path.dirname(os.path.abspath(__file__))
# Must match fuzz_token.c.
NOW = 1700000000
KID_FULL, KID_SUB, KID_REVOKED = "f00dfeedc0ffee01", "f00dfeedc0ffee02", "f00dfeedc0ffee03"
SECRET_HEX = "2f1e3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f001"
AUDIENCE = "latchkey-fuzz"
# P-256 group order.
N_HEX = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"


def key_string(env, kid, secret_hex):
    body = f"lk_{env}_{kid}_{secret_hex}"
    return f"{body}_{zlib.crc32(body.encode()):08x}"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(obj):
    return json.dumps(obj, separators=(",", ":"))


PRIVATE = ec.derive_private_key(int(SECRET_HEX, 16), ec.SECP256R1())


def sign(header, claims):
    head = b64(header.encode()) + "." + b64(claims.encode())
    r, s = decode_dss_signature(PRIVATE.sign(head.encode(), ec.ECDSA(hashes.SHA256())))
    return head + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def header(kid=KID_FULL, alg="ES256"):
    return compact({"alg": alg, "typ": "JWT", "kid": kid})


def claims(cap, aud=None, jti_len=22, **extra):
    c = {"iat": NOW - 5, "exp": NOW + 600, "jti": "j" * jti_len}
    if aud:
        c["aud"] = aud
    c.update(extra)
    c["cap"] = cap
    return compact(c)


def token_with_parity(cap, aud=None, kid=KID_FULL, **extra):
    """A valid token whose length is odd when it carries the audience (the
    harness then verifies with one) and even otherwise."""
    want_odd = aud is not None
    for jti_len in range(22, 30):
        tok = sign(header(kid), claims(cap, aud, jti_len, **extra))
        if (len(tok) % 2 == 1) == want_odd:
            return tok
    raise RuntimeError("no jti length gives the wanted parity")


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def caps():
    seeds = {
        "typical": '{"chat:*":["realtime:subscribe","realtime:publish"],'
                   '"news":["realtime:subscribe"]}',
        "star": '{"*":["realtime:subscribe"]}',
        "overlap": '{"chat:*":["realtime:subscribe"],"chat:lobby":["realtime:publish"],'
                   '"c*":["realtime:presence"],"chat:vip:lounge:*":["realtime:publish"]}',
        "reserved": '{"x":["realtime:presence","realtime:history"]}',
        "all_actions": '{"a":["realtime:history","realtime:presence",'
                       '"realtime:subscribe","realtime:publish"]}',
        "pretty": '{\n  "user:42:inbox" : [ "realtime:subscribe" ] ,\n'
                  '  "user:42:*" : ["realtime:publish"]\n}\n',
        "name_bytes": '{"AZaz09_@.:=-":["realtime:publish"],"AZaz09_@.:=-*":'
                      '["realtime:subscribe"]}',
        "long_names": compact({"p" * 199 + "*": ["realtime:publish"],
                               "p" * 200: ["realtime:subscribe"]}),
        "many": compact({f"room:{i}{'*' if i % 3 == 0 else ''}":
                         ["realtime:subscribe"] if i % 2 else ["realtime:publish"]
                         for i in range(256)}),
        "escaped_key": '{"\\u0063hat":["realtime:publish"]}',
        "empty": "{}",
        "empty_actions": '{"c":[]}',
        "not_array": '{"c":"realtime:publish"}',
        "number_action": '{"c":[1]}',
        "wildcard_action": '{"c":["realtime:*"]}',
        "bad_pattern": '{"ch*at":["realtime:publish"],"bad name":["realtime:publish"]}',
        "duplicate": '{"c":["realtime:publish"],"c":["realtime:subscribe"]}',
        "nested": '{"c":[["realtime:publish",{"a":[1,2,{"b":null}]}]]}',
        "array": '[{"c":["realtime:publish"]}]',
        "trailing": '{"c":["realtime:publish"]} x',
        "scopes": "realtime:publish, realtime:subscribe,realtime:publish",
        "scopes_wild": "*:subscribe,other:*,realtime:*,*",
        "scopes_bad": "realtime:publish,,REALTIME:x,a:b:c",
    }
    for name, text in seeds.items():
        write("fuzz_cap", name, text)


def keys():
    live = key_string("live", "0123456789abcdef", SECRET_HEX)
    write("fuzz_key", "live", live)
    write("fuzz_key", "sbx", key_string("sbx", KID_FULL, SECRET_HEX))
    write("fuzz_key", "max_scalar", key_string("sbx", "aaaaaaaaaaaaaaaa",
                                               f"{int(N_HEX, 16) - 1:064x}"))
    write("fuzz_key", "scalar_one", key_string("live", "bbbbbbbbbbbbbbbb", "0" * 63 + "1"))
    write("fuzz_key", "scalar_zero", key_string("live", "cccccccccccccccc", "0" * 64))
    write("fuzz_key", "scalar_n", key_string("live", "dddddddddddddddd", N_HEX))
    write("fuzz_key", "scalar_ff", key_string("sbx", "eeeeeeeeeeeeeeee", "f" * 64))
    write("fuzz_key", "bad_crc", live[:-8] + "00000000")
    write("fuzz_key", "truncated", live[:-3])
    write("fuzz_key", "upper_hex", live.upper().replace("LK_LIVE_", "lk_live_"))
    write("fuzz_key", "bad_env", key_string("test", "0123456789abcdef", SECRET_HEX))
    write("fuzz_key", "trailing_newline", live + "\n")
    write("fuzz_key", "no_prefix", live[3:])
    write("fuzz_key", "empty", "")


def tokens():
    chat = {"chat:*": ["realtime:subscribe", "realtime:publish"], "news": ["realtime:subscribe"]}
    write("fuzz_token", "valid", token_with_parity(chat))
    write("fuzz_token", "valid_aud", token_with_parity(chat, aud=AUDIENCE))
    write("fuzz_token", "valid_sub_nbf", token_with_parity(chat, sub="user-42", nbf=NOW - 1))
    write("fuzz_token", "valid_aud_array", token_with_parity(
        {"*": ["realtime:subscribe"]}, aud=["other", AUDIENCE]))
    write("fuzz_token", "subscribe_kid", token_with_parity(
        {"room-1": ["realtime:subscribe"]}, kid=KID_SUB))
    write("fuzz_token", "scope_missing", token_with_parity(chat, kid=KID_SUB))
    write("fuzz_token", "revoked_kid", token_with_parity(chat, kid=KID_REVOKED))
    write("fuzz_token", "unknown_kid", token_with_parity(chat, kid="0000000000000000"))
    write("fuzz_token", "expired", sign(header(), compact(
        {"iat": NOW - 700, "exp": NOW, "jti": "j" * 22, "cap": chat})))
    write("fuzz_token", "too_long_ttl", sign(header(), compact(
        {"iat": NOW, "exp": NOW + 3601, "jti": "j" * 22, "cap": chat})))
    write("fuzz_token", "bad_cap", token_with_parity({"chat:*": ["realtime:*"]}))
    write("fuzz_token", "empty_cap", token_with_parity({}))
    good = token_with_parity(chat)
    head, payload, sig = good.split(".")
    write("fuzz_token", "bad_signature", f"{head}.{payload}.{sig[:-4]}AAAA")
    write("fuzz_token", "alg_none", b64(header(alg="none").encode()) + "." + payload + ".")
    write("fuzz_token", "alg_hs256", b64(header(alg="HS256").encode()) + "." + payload + "." + sig)
    write("fuzz_token", "two_parts", f"{head}.{payload}")
    write("fuzz_token", "oversized", token_with_parity({"chat:" + "x" * 190 + "*":
                                                       ["realtime:subscribe"]},
                                                      pad="p" * 8200))
    # Documents the harness signs itself ('{'), and capabilities it mints ('!').
    write("fuzz_token", "sign_claims", next(c for c in (claims(chat, jti_len=n) for n in (22, 23))
                                            if len(c) % 2 == 0))
    write("fuzz_token", "sign_header_claims",
          header(KID_SUB) + "\n" + claims({"a*": ["realtime:subscribe"]}, sub="u1"))
    write("fuzz_token", "sign_dup_claims",
          '{"iat":%d,"exp":%d,"exp":%d,"jti":"%s","cap":{"c":["realtime:publish"]}}'
          % (NOW, NOW + 60, NOW + 999999, "j" * 20))
    write("fuzz_token", "mint_cap", "!" + compact(chat))
    write("fuzz_token", "mint_reserved", '!{"*":["realtime:history"],"x":["realtime:presence"]}')


if __name__ == "__main__":
    caps()
    keys()
    tokens()
