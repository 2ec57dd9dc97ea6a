#!/usr/bin/python3
"""04-auth-renewal: in-band `auth` replaces the token: same sub and
workspace required, narrower capabilities drop subscriptions, refused
renewals keep the old token (SPEC 4)."""

import asyncio
import json
import time

import lkharness as h
from lkharness import BOTH, PUB, SUB, now

REFUSED = {"unauthorized", "forbidden"}


def setup(env):
    env.reg = env.registry()
    env.key = env.reg.create_key("ws_auth")
    env.key2 = env.reg.create_key("ws_auth", name="second")
    env.subonly = env.reg.create_key("ws_auth", name="subonly", scopes=SUB)
    env.other = env.reg.create_key("ws_auth-other")
    env.revoked = env.reg.create_key("ws_auth", name="revoked")
    env.reg.revoke(env.revoked.kid)
    env.b = env.broker(env.reg)


def exp_of(tok):
    return h.jwt.decode(tok, options={"verify_signature": False})["exp"]


async def auth(c, tok, rid):
    await c.send({"op": "auth", "id": rid, "token": tok})
    return await c.recv()


async def auth_refused(c, tok, rid, codes=REFUSED):
    m = await auth(c, tok, rid)
    h.eq(m.get("op"), "error", "reply to a refused auth: %s" % m.raw[:200])
    h.eq(m.get("id"), rid, "id echoed")
    h.check(m.get("code") in ({codes} if isinstance(codes, str) else codes),
            "code %r in %s" % (m.get("code"), codes))
    h.check(tok not in m.raw, "error does not echo the token")
    h.eq(await c.ping(), [], "connection stays open")
    return m


async def test_renewal_outlives_first_token(env):
    second = env.reg.mint_cli(env.key, {"r:*": BOTH}, ttl=600, client_id="u1")
    t = now()
    first = h.mint(env.key, {"r:*": BOTH}, sub="u1", iat=t, exp=t + 3)
    c, w = await h.connect_ok(env, env.b, first)
    h.eq(w["expires_at"], t + 3, "welcome.expires_at")
    ch = h.channel("r")
    r = await c.request({"op": "subscribe", "id": 1, "channel": ch})
    h.eq(r["op"], "subscribed", "subscribe")
    await c.send({"op": "auth", "id": 4, "token": second})
    m = await c.recv()
    if m["op"] == "token_expiring":
        m = await c.recv()  # the first token's warning, legitimately due first on a slow run
    h.eq(dict(m), {"op": "authed", "id": 4, "expires_at": exp_of(second)}, "authed")
    await asyncio.sleep(max(0.0, t + 4.3 - time.time()))
    before = await c.ping(2)
    h.eq([x.raw for x in before], [], "frames after the renewal (none: no error, no stale "
         "token_expiring)")
    pub, _ = await h.connect_ok(env, env.b, h.mint(env.key))
    await pub.request({"op": "publish", "id": 1, "channel": ch, "data": "still here"})
    m = await c.expect("message", channel=ch)
    h.eq(m["data"], "still here", "subscription kept across the renewal")


async def test_renewal_with_another_key_of_the_workspace(env):
    c, _ = await h.connect_ok(env, env.b, h.mint(env.key, sub="rot"))
    tok = h.mint(env.key2, sub="rot")
    m = await auth(c, tok, 1)
    h.eq(dict(m), {"op": "authed", "id": 1, "expires_at": exp_of(tok)}, "authed")


async def test_renewal_without_id(env):
    c, _ = await h.connect_ok(env, env.b, h.mint(env.key))
    tok = h.mint(env.key, ttl=1200)
    await c.send({"op": "auth", "token": tok})
    m = await c.recv()
    h.eq(dict(m), {"op": "authed", "expires_at": exp_of(tok)}, "authed without id")


async def test_different_sub_refused(env):
    c, _ = await h.connect_ok(env, env.b, h.mint(env.key, {"a:*": BOTH}, sub="alice"))
    await auth_refused(c, h.mint(env.key, {"*": BOTH}, sub="mallory"), 1)
    await auth_refused(c, h.mint(env.key, {"*": BOTH}), 2)
    r = await c.request({"op": "subscribe", "id": 3, "channel": "b:x"})
    h.eq((r["op"], r.get("code")), ("error", "forbidden"), "old capability still in force")
    r = await c.request({"op": "subscribe", "id": 4, "channel": "a:x"})
    h.eq(r["op"], "subscribed", "old token still works")
    c2, _ = await h.connect_ok(env, env.b, h.mint(env.key, {"a:*": BOTH}))
    await auth_refused(c2, h.mint(env.key, {"a:*": BOTH}, sub="someone"), 5)
    m = await auth(c2, h.mint(env.key, {"a:*": BOTH}), 6)
    h.eq(m["op"], "authed", "no sub before, none after")


async def test_other_workspace_refused(env):
    c, _ = await h.connect_ok(env, env.b, h.mint(env.key, {"a:*": BOTH}, sub="alice"))
    await auth_refused(c, h.mint(env.other, {"*": BOTH}, sub="alice"), 1)
    r = await c.request({"op": "subscribe", "id": 2, "channel": "z:z"})
    h.eq((r["op"], r.get("code")), ("error", "forbidden"), "old capability still in force")


async def test_narrower_cap_drops_subscriptions(env):
    s = h.channel("x").split(":")[1]
    a1, b1, b2, p1 = "a:" + s, "b:" + s, "b:" + s + "-2", "p:" + s
    c, _ = await h.connect_ok(env, env.b, h.mint(env.key, {"a:*": BOTH, "b:*": BOTH,
                                                          "p:*": BOTH}, sub="n"))
    for i, ch in enumerate((a1, b1, b2, p1)):
        r = await c.request({"op": "subscribe", "id": i, "channel": ch})
        h.eq(r["op"], "subscribed", "subscribe %s" % ch)
    tok = h.mint(env.key, {"a:*": BOTH, "p:*": [SUB]}, sub="n")
    await c.send({"op": "auth", "id": 9, "token": tok})
    got = [await c.recv() for _ in range(3)]
    authed = [dict(m) for m in got if m["op"] == "authed"]
    dropped = sorted((dict(m) for m in got if m["op"] == "unsubscribed"),
                     key=lambda m: m["channel"])
    h.eq(authed, [{"op": "authed", "id": 9, "expires_at": exp_of(tok)}], "authed")
    h.eq(dropped, [{"op": "unsubscribed", "channel": ch, "reason": "capability_revoked"}
                   for ch in sorted((b1, b2))], "dropped subscriptions")
    h.eq(await c.ping(), [], "nothing else (the p: subscription is still allowed)")
    pub, _ = await h.connect_ok(env, env.b, h.mint(env.key))
    for ch in (b1, a1, p1):
        await pub.request({"op": "publish", "id": 1, "channel": ch, "data": ch})
    got = [await c.recv(), await c.recv()]
    h.eq(sorted(m["data"] for m in got), sorted([a1, p1]), "only allowed channels deliver")
    h.eq(await c.ping(), [], "nothing from the dropped channel")
    r = await c.request({"op": "publish", "id": 3, "channel": p1, "data": 1})
    h.eq((r["op"], r.get("code")), ("error", "forbidden"), "publish right removed")
    r = await c.request({"op": "subscribe", "id": 4, "channel": b1})
    h.eq((r["op"], r.get("code")), ("error", "forbidden"), "resubscribe refused")


async def test_expired_new_token(env):
    c, _ = await h.connect_ok(env, env.b, h.mint(env.key, sub="e"))
    t = now()
    await auth_refused(c, h.mint(env.key, sub="e", iat=t - 100, exp=t - 1), 1, "token_expired")


async def test_bad_new_tokens(env):
    c, _ = await h.connect_ok(env, env.b, h.mint(env.key, sub="b"))
    t = now()
    await auth_refused(c, "garbage", 1, "unauthorized")
    await auth_refused(c, h.mint(env.key, {}, sub="b"), 2, "unauthorized")
    await auth_refused(c, h.mint(env.key, sub="b", iat=t, exp=t + 3601), 3, "unauthorized")
    await auth_refused(c, h.mint(env.key, sub="b", iat=t + 120), 4, "unauthorized")
    tok = h.mint(env.key, sub="b")
    hd, payload, sig = tok.split(".")
    await auth_refused(c, hd + "." + payload + "." + sig[::-1], 5, "unauthorized")
    await auth_refused(c, h.mint(env.revoked, sub="b"), 6, "forbidden")
    await auth_refused(c, h.mint(env.subonly, {"x": [PUB]}, sub="b"), 7, "forbidden")
    r = await c.request({"op": "publish", "id": 8, "channel": "x", "data": 1})
    h.eq(r["op"], "ack", "old token's rights intact")


def json_or_none(line):
    try:
        return json.loads(line)
    except ValueError:
        return None  # a wrapper's own report (valgrind)


async def test_auth_burst_rate_limited(env):
    """`auth` costs a signature verification each, so a connection gets a
    small budget (burst 10, then 0.5/s); refusals echo the id, are below the
    4429 threshold, and leave the connection and its token working."""
    c, _ = await h.connect_ok(env, env.b, h.mint(env.key, sub="burst"))
    tok = h.mint(env.key, sub="burst", ttl=900)
    for i in range(30):
        await c.send({"op": "auth", "id": 100 + i, "token": tok})
    replies = [await c.recv() for _ in range(30)]
    h.eq([m.get("id") for m in replies], list(range(100, 130)), "every auth answered, in order")
    authed = [m for m in replies if m["op"] == "authed"]
    limited = [m for m in replies if m["op"] == "error" and m.get("code") == "rate_limited"]
    h.eq(len(authed) + len(limited), 30, "replies are authed or rate_limited: %r"
         % [m.raw[:120] for m in replies if m not in authed and m not in limited])
    h.check(10 <= len(authed) <= 12, "the burst is honoured, then limited (%d authed)"
            % len(authed))
    h.eq([m["op"] for m in replies[:10]], ["authed"] * 10, "the first ten pass")
    h.check(all(tok not in m.raw for m in limited), "errors do not echo the token")
    h.eq(await c.ping(), [], "connection survives the refusals")
    ch = h.channel("burst")
    r = await c.request({"op": "publish", "id": 1, "channel": ch, "data": 1})
    h.eq(r["op"], "ack", "token still in force")
    renewed = [o for o in map(json_or_none, list(env.b.lines))
               if isinstance(o, dict) and o.get("msg") == "token renewed"]
    h.check(renewed and all(o.get("level") == "debug" for o in renewed),
            "renewals are logged at debug level")


h.main(setup, [test_renewal_outlives_first_token,
               test_renewal_with_another_key_of_the_workspace, test_renewal_without_id,
               test_different_sub_refused, test_other_workspace_refused,
               test_narrower_cap_drops_subscriptions, test_expired_new_token,
               test_bad_new_tokens, test_auth_burst_rate_limited])
