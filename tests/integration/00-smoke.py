#!/usr/bin/python3
"""00-smoke: one pass over the main paths (connect, subscribe, publish,
auth, refusal, shutdown). Small and quick, so it also runs with the broker
under valgrind (ctest label "valgrind")."""

import asyncio
import signal

import lkharness as h


def setup(env):
    env.reg = env.registry()
    env.key = env.reg.create_key("ws_smoke")
    env.b = env.broker(env.reg)


async def test_connect_subscribe_publish(env):
    tok = env.reg.mint_cli(env.key, {"room:*": h.BOTH}, client_id="alice")
    c, w = await h.connect_ok(env, env.b, tok)
    h.eq(w.get("workspace"), "ws_smoke", "welcome.workspace")
    h.eq(w.get("client_id"), "alice", "welcome.client_id")
    ch = h.channel("room")
    r = await c.request({"op": "subscribe", "id": 1, "channel": ch})
    h.eq(dict(r), {"op": "subscribed", "id": 1, "channel": ch, "seq": 0}, "subscribed")
    await c.send({"op": "publish", "id": 2, "channel": ch, "data": {"n": 1}})
    got = [await c.recv(), await c.recv()]
    ack = next(m for m in got if m["op"] == "ack")
    msg = next(m for m in got if m["op"] == "message")
    h.eq(dict(ack), {"op": "ack", "id": 2, "channel": ch, "seq": 1}, "ack")
    h.eq(msg.rawf("data"), '{"n":1}', "data")
    h.eq(msg["from"], "alice", "from")
    r = await c.request({"op": "unsubscribe", "id": 3, "channel": ch})
    h.eq(dict(r), {"op": "unsubscribed", "id": 3, "channel": ch}, "unsubscribed")


async def test_auth_renewal(env):
    c, w = await h.connect_ok(env, env.b, h.mint(env.key, sub="bob", ttl=300))
    tok2 = h.mint(env.key, sub="bob", ttl=900)
    exp2 = h.jwt.decode(tok2, options={"verify_signature": False})["exp"]
    r = await c.request({"op": "auth", "id": 7, "token": tok2})
    h.eq(dict(r), {"op": "authed", "id": 7, "expires_at": exp2}, "authed")
    h.eq(await c.ping(), [], "frames before pong")


async def test_refused(env):
    await h.connect_refused(env, env.b, "not.a.token", "unauthorized", 4401)
    c = await h.Conn.open(env, env.b, h.mint(env.key), "header")
    await c.expect("welcome")
    await c.send("[]")
    code, _ = await c.until_closed()
    h.eq(code, 4400, "close code for a JSON array")


async def test_shutdown(env):
    ch = h.channel()
    conns = []
    for i in range(3):
        c, _ = await h.connect_ok(env, env.b, h.mint(env.key, sub="u%d" % i))
        await c.request({"op": "subscribe", "id": 1, "channel": ch})
        conns.append(c)
    rc, secs = await asyncio.to_thread(env.b.signal_and_wait, signal.SIGTERM, h.T(2))
    for c in conns:
        code, _ = await c.until_closed()
        h.eq(code, 1001, "close code on shutdown")
    h.eq(rc, 0, "exit code")
    h.check(secs <= h.T(2), "exited in %.2fs" % secs)


h.main(setup, [test_connect_subscribe_publish, test_auth_renewal, test_refused,
               test_shutdown])
