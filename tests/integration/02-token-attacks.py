#!/usr/bin/python3
"""02-token-attacks: every token the broker must refuse gets no welcome,
exactly one error frame and the right close code; the boundary cases just
inside the rules are accepted (SPEC 3, 4: check order, 4401 vs 4403)."""

import socket

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives import hashes

import lkharness as h
from lkharness import BOTH, PUB, SUB, b64u, claims_for, forge, now

AUD = "https://rt.example.test"


def setup(env):
    env.reg = env.registry()
    env.key = env.reg.create_key("ws_attack")
    env.other = env.reg.create_key("ws_attack", name="other")
    env.subonly = env.reg.create_key("ws_attack", name="subonly", scopes=SUB)
    env.wild = env.reg.create_key("ws_attack", name="wild", scopes="*:subscribe")
    env.allrt = env.reg.create_key("ws_attack", name="all", scopes="realtime:*")
    env.revoked = env.reg.create_key("ws_attack", name="revoked")
    env.revoked_tok = h.mint(env.revoked, sub="r")
    env.reg.revoke(env.revoked.kid)
    env.b = env.broker(env.reg)
    env.aud = env.broker(env.reg, ["--audience", AUD])
    env.short = env.broker(env.reg, ["--max-token-ttl", "60"])


def es256(key):
    return lambda si: h.es256_raw(key.private, si)


def header(key, **kw):
    hd = {"alg": "ES256", "typ": "JWT", "kid": key.kid}
    hd.update(kw)
    return hd


async def refused(env, tok, code="unauthorized", close=4401, broker=None, via="bearer"):
    await h.connect_refused(env, broker or env.b, tok, code, close, via=via)


async def accepted(env, tok, broker=None, via="bearer"):
    c, w = await h.connect_ok(env, broker or env.b, tok, via)
    await c.close()
    return w


async def test_no_token(env):
    await refused(env, None)


async def test_garbage(env):
    for tok in ("garbage", "a.b.c", "a.b", "...", "e30.e30.e30",
                h.mint(env.key) + ".", h.mint(env.key).replace(".", "..", 1)):
        await refused(env, tok)


async def test_alg_none(env):
    c = claims_for({"*": BOTH})
    for alg in ("none", "None", "NONE"):
        await refused(env, forge(header(env.key, alg=alg), c))
        await refused(env, forge(header(env.key, alg=alg), c, es256(env.key)))


async def test_hs256_with_public_key(env):
    c = claims_for({"*": BOTH})
    pem = env.key.public_pem
    for secret in (pem, pem.rstrip(b"\n"), env.key.kid.encode()):
        for alg in ("HS256", "HS384", "HS512"):
            await refused(env, forge(header(env.key, alg=alg), c, h.hs256(secret)))


async def test_rs256(env):
    c = claims_for({"*": BOTH})
    await refused(env, forge(header(env.key, alg="RS256"), c, es256(env.key)))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tok = h.jwt.encode(c, rsa_key, algorithm="RS256", headers={"kid": env.key.kid})
    h.remember(tok)
    await refused(env, tok)


async def test_other_es_algs(env):
    c = claims_for({"*": BOTH})
    for alg in ("es256", "ES384", "ES512", "ES256K", "PS256", "EdDSA"):
        await refused(env, forge(header(env.key, alg=alg), c, es256(env.key)))


async def test_unknown_or_missing_kid(env):
    c = claims_for({"*": BOTH})
    for kid in ("0123456789abcdef", env.key.kid.upper(), env.key.kid + "0", "", None, 7):
        hd = header(env.key, kid=kid)
        if kid is None:
            del hd["kid"]
        await refused(env, forge(hd, c, es256(env.key)))


async def test_revoked_key(env):
    await refused(env, env.revoked_tok, "forbidden", 4403)
    await refused(env, h.mint(env.revoked), "forbidden", 4403, via="header")


async def test_expired(env):
    t = now()
    await refused(env, h.mint(env.key, iat=t - 120, exp=t - 1), "token_expired")
    await refused(env, h.mint(env.key, iat=t - 60, exp=t), "token_expired", via="query")


async def test_not_yet_valid(env):
    t = now()
    await refused(env, h.mint(env.key, iat=t + 60))
    await refused(env, h.mint(env.key, iat=t + 45))
    await refused(env, h.mint(env.key, nbf=t + 60))
    await refused(env, h.mint(env.key, iat=t - 10, nbf=t + 45))


async def test_within_skew_accepted(env):
    t = now()
    await accepted(env, h.mint(env.key, iat=t + 20))
    await accepted(env, h.mint(env.key, nbf=t + 20))


async def test_max_ttl(env):
    t = now()
    await refused(env, h.mint(env.key, iat=t, exp=t + 3601))
    await refused(env, h.mint(env.key, iat=t - 100, exp=t + 3501))
    w = await accepted(env, h.mint(env.key, iat=t, exp=t + 3600))
    h.eq(w["expires_at"], t + 3600, "expires_at")


async def test_configured_max_ttl(env):
    t = now()
    await refused(env, h.mint(env.key, iat=t, exp=t + 61), broker=env.short)
    await refused(env, env.reg.mint_cli(env.key, {"*": BOTH}, ttl=600), broker=env.short)
    await accepted(env, h.mint(env.key, iat=t, exp=t + 60), broker=env.short)
    c, _ = await h.connect_ok(env, env.short, h.mint(env.key, ttl=30))
    m = await c.request({"op": "auth", "id": 1, "token": h.mint(env.key, ttl=61)})
    h.eq((m["op"], m.get("code")), ("error", "unauthorized"), "auth with an over-long token")


async def test_tampered_cap(env):
    tok = h.mint(env.key, {"news": [SUB]}, sub="u")
    hd, payload, sig = tok.split(".")
    c = h.json.loads(h.b64u_decode(payload))
    c["cap"] = {"*": BOTH}
    await refused(env, hd + "." + b64u(h.dumps(c)) + "." + sig)
    c["cap"] = {"news": [SUB]}
    c["sub"] = "admin"
    await refused(env, hd + "." + b64u(h.dumps(c)) + "." + sig)


async def test_tampered_signature(env):
    tok = h.mint(env.key)
    hd, payload, sig = tok.split(".")
    raw = bytearray(h.b64u_decode(sig))
    for i in (0, 31, 32, 63):
        bad = bytearray(raw)
        bad[i] ^= 0x01
        await refused(env, "%s.%s.%s" % (hd, payload, b64u(bytes(bad))))
    await refused(env, "%s.%s.%s" % (hd, payload, b64u(bytes(raw[:63]))))
    await refused(env, "%s.%s.%s" % (hd, payload, b64u(bytes(raw) + b"\0")))
    await refused(env, "%s.%s." % (hd, payload))
    der = env.key.private.sign((hd + "." + payload).encode(), ec.ECDSA(hashes.SHA256()))
    await refused(env, "%s.%s.%s" % (hd, payload, b64u(der)))


async def test_signed_by_another_key(env):
    c = claims_for({"*": BOTH})
    await refused(env, forge(header(env.key), c, es256(env.other)))
    attacker = ec.generate_private_key(ec.SECP256R1())
    nums = attacker.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "x": b64u(nums.x.to_bytes(32, "big")),
           "y": b64u(nums.y.to_bytes(32, "big"))}
    sign = lambda si: h.es256_raw(attacker, si)  # noqa: E731
    await refused(env, forge(header(env.key, jwk=jwk), c, sign))
    await refused(env, forge(header(env.key, x5u="http://127.0.0.1:1/k.pem"), c, sign))


def token_near(key, target, above):
    """A validly signed token padded (with an extra, ignored claim) to the
    longest length <= target (above=False) or the shortest > target."""
    base = h.mint(key, extra={"pad": ""})
    n = max(0, (target - len(base)) * 3 // 4 - 8)
    best = None
    for _ in range(40):
        tok = h.mint(key, extra={"pad": "x" * n})
        if above and len(tok) > target:
            return tok
        if not above:
            if len(tok) > target:
                return best
            best = tok
        n += 1
    raise h.Failure("could not size a token near %d" % target)


async def test_token_size_limit(env):
    ok = token_near(env.key, 8192, above=False)
    h.check(8185 <= len(ok) <= 8192, "near-limit token is %d bytes" % len(ok))
    await accepted(env, ok, via="header")
    await accepted(env, ok, via="bearer")
    big = token_near(env.key, 8192, above=True)
    h.check(8192 < len(big) < 8200, "over-limit token is %d bytes" % len(big))
    for via in ("header", "bearer", "query"):
        await refused(env, big, {"unauthorized", "too_large"}, 4401, via=via)
    big = token_near(env.key, 12000, above=True)
    await refused(env, big, {"unauthorized", "too_large"}, 4401, via="header")


async def test_request_over_16k_survives(env):
    big = token_near(env.key, 20000, above=True)
    how = await h.not_welcomed(env, env.b, big, "header")
    print("     20 KB token: %s" % how)
    await accepted(env, h.mint(env.key))


async def test_garbage_http_survives(env):
    for junk in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 64,
                 b"GET /v1/realtime HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
                 b"GET /" + b"A" * 30000 + b" HTTP/1.1\r\n\r\n",
                 b"\xff" * 4096):
        s = socket.create_connection(("127.0.0.1", env.b.port), timeout=h.T(3))
        try:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            for _ in range(64):
                if not s.recv(65536):
                    break
        except OSError:
            pass
        finally:
            s.close()
    await accepted(env, h.mint(env.key))


async def test_cap_beyond_scopes(env):
    await refused(env, h.mint(env.subonly, {"chat": BOTH}), "forbidden", 4403)
    await refused(env, h.mint(env.subonly, {"a": [SUB], "b": [PUB]}), "forbidden", 4403)
    await accepted(env, h.mint(env.subonly, {"chat": [SUB]}))
    await refused(env, h.mint(env.wild, {"*": [PUB]}), "forbidden", 4403)
    await accepted(env, h.mint(env.wild, {"*": [SUB]}))
    await refused(env, h.mint(env.key, {"x": ["realtime:presence"]}), "forbidden", 4403)


async def test_reserved_action_grants_nothing(env):
    c, _ = await h.connect_ok(env, env.b, h.mint(env.allrt, {"x": ["realtime:history"]}))
    r = await c.request({"op": "subscribe", "id": 1, "channel": "x"})
    h.eq((r["op"], r.get("id"), r.get("code")), ("error", 1, "forbidden"), "subscribe reply")


async def test_invalid_cap(env):
    for cap in ({}, {"x": []}, {"x": ["realtime:admin"]}, {"x": ["realtime:*"]},
                {"x": ["*"]}, {"x": [SUB, "realtime:nope"]}, {"chat*x": [SUB]},
                {"a b": [SUB]}, {"": [SUB]}, {"x" * 201: [SUB]}, {"x": SUB},
                {"x": [1]}, [SUB], "x", None, 1):
        await refused(env, h.mint(env.key, cap))
    await refused(env, h.mint(env.key, drop=["cap"]))
    await refused(env, h.mint(env.key, extra={"cap": '{"x":["realtime:subscribe"]}'}))


async def test_claims_malformed(env):
    t = now()
    for kw in ({"drop": ["exp"]}, {"drop": ["iat"]}, {"drop": ["jti"]},
               {"jti": "x" * 15}, {"jti": ""}, {"extra": {"jti": 1234567890123456789}},
               {"sub": "s" * 129}, {"extra": {"sub": 42}},
               {"extra": {"exp": str(t + 600)}}, {"extra": {"iat": str(t)}},
               {"extra": {"nbf": "soon"}}):
        await refused(env, h.mint(env.key, **kw))
    for raw in ("[]", "null", '"x"', "{", h.dumps(claims_for({"*": BOTH}))[:-1]):
        await refused(env, forge(header(env.key), raw, es256(env.key)))
    await refused(env, forge("{", claims_for({"*": BOTH}), es256(env.key)))


async def test_claims_boundaries_accepted(env):
    w = await accepted(env, h.mint(env.key, jti="j" * 16, sub="s" * 128))
    h.eq(w["client_id"], "s" * 128, "128-byte sub")


async def test_check_order(env):
    t = now()
    # Times are checked before the key's status: expired wins over revoked.
    await refused(env, h.mint(env.revoked, iat=t - 120, exp=t - 1), "token_expired")
    # Signature before status.
    await refused(env, forge(header(env.revoked), claims_for({"*": BOTH}), es256(env.key)))
    # Cap validity (4401) before scopes (4403).
    await refused(env, h.mint(env.subonly, {"a": [PUB], "b": ["realtime:bogus"]}))
    await refused(env, h.mint(env.revoked, {}))
    # Revoked and over scope: both 4403.
    await refused(env, h.mint(env.revoked, {"x": ["realtime:presence"]}), "forbidden", 4403)


async def test_audience(env):
    await refused(env, h.mint(env.key), broker=env.aud)
    await refused(env, h.mint(env.key, aud="https://other.example.test"), broker=env.aud)
    await refused(env, h.mint(env.key, aud=AUD + "/"), broker=env.aud)
    await refused(env, h.mint(env.key, aud=["https://other.example.test"]), broker=env.aud)
    await accepted(env, h.mint(env.key, aud=AUD), broker=env.aud)
    await accepted(env, h.mint(env.key, aud=["https://other.example.test", AUD]), broker=env.aud)
    # Without --audience, aud is not checked.
    await accepted(env, h.mint(env.key, aud="https://other.example.test"))


async def test_refused_attempts_do_not_disturb(env):
    good, _ = await h.connect_ok(env, env.b, h.mint(env.key, sub="bystander"))
    for _ in range(20):
        await refused(env, "garbage")
    h.eq(await good.ping(1), [], "bystander still served")


h.main(setup, [test_no_token, test_garbage, test_alg_none, test_hs256_with_public_key,
               test_rs256, test_other_es_algs, test_unknown_or_missing_kid,
               test_revoked_key, test_expired, test_not_yet_valid,
               test_within_skew_accepted, test_max_ttl, test_configured_max_ttl,
               test_tampered_cap,
               test_tampered_signature, test_signed_by_another_key,
               test_token_size_limit, test_request_over_16k_survives,
               test_garbage_http_survives, test_cap_beyond_scopes,
               test_reserved_action_grants_nothing, test_invalid_cap,
               test_claims_malformed, test_claims_boundaries_accepted,
               test_check_order, test_audience, test_refused_attempts_do_not_disturb])
