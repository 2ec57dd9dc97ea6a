#!/usr/bin/python3
"""01-connect: the welcome frame, token placements and their order of
preference, several connections per token, reconnects (SPEC 3, 4)."""

import asyncio
import time

import lkharness as h

WELCOME_KEYS = {"op", "conn_id", "client_id", "workspace", "expires_at",
                "server_time", "max_frame"}


def setup(env):
    env.reg = env.registry()
    env.key = env.reg.create_key("ws_connect")
    env.sbx = env.reg.create_key("ws_sandbox-1", sandbox=True)
    env.b = env.broker(env.reg)


def claims(tok):
    return h.jwt.decode(tok, options={"verify_signature": False})


async def test_welcome_fields(env):
    tok = env.reg.mint_cli(env.key, {"chat:*": h.BOTH}, ttl=600, client_id="user-1")
    c, w = await h.connect_ok(env, env.b, tok)
    t_ms = time.time() * 1000
    h.eq(set(w), WELCOME_KEYS, "welcome fields")
    h.check(isinstance(w["conn_id"], str) and w["conn_id"], "conn_id is a non-empty string")
    h.check(tok not in w.raw, "welcome does not echo the token")
    h.eq(w["client_id"], "user-1", "client_id")
    h.eq(w["workspace"], "ws_connect", "workspace")
    h.eq(w["expires_at"], claims(tok)["exp"], "expires_at")
    h.check(isinstance(w["server_time"], int) and abs(w["server_time"] - t_ms) < 2000,
            "server_time %r is unix ms close to %d" % (w["server_time"], t_ms))
    h.eq(w["max_frame"], 65536, "max_frame")
    h.eq(c.ws.subprotocol, "latchkey.v1", "selected subprotocol")
    h.eq(await c.ping(), [], "frames before the pong")


async def test_welcome_without_sub(env):
    c, w = await h.connect_ok(env, env.b, h.mint(env.key, {"x": [h.SUB]}))
    h.eq(w["client_id"], None, "client_id without sub")
    h.eq(w.rawf("client_id"), "null", "raw client_id")


async def test_client_id_escaping(env):
    sub = 'a"b\\c\n\u00e9\u2028</script>\x01'
    ch = h.channel()
    c, w = await h.connect_ok(env, env.b, h.mint(env.key, sub=sub))
    h.eq(w["client_id"], sub, "client_id round-trips through JSON escaping")
    await c.request({"op": "subscribe", "id": 1, "channel": ch})
    await c.send({"op": "publish", "channel": ch, "data": 1})
    m = await c.expect("message")
    h.eq(m["from"], sub, "from round-trips through JSON escaping")


async def test_sandbox_workspace(env):
    c, w = await h.connect_ok(env, env.b, env.reg.mint_cli(env.sbx, {"x": [h.SUB]}))
    h.eq(w["workspace"], "ws_sandbox-1", "workspace of a sandbox key")


async def test_each_placement(env):
    for via in ("bearer", "header", "query", "header-nosub"):
        tok = h.mint(env.key, sub="p-" + via)
        c, w = await h.connect_ok(env, env.b, tok, via)
        h.eq(w["client_id"], "p-" + via, "client_id via %s" % via)
        if via == "header-nosub":
            h.eq(c.ws.subprotocol, None, "no subprotocol selected when none offered")
        else:
            h.eq(c.ws.subprotocol, "latchkey.v1", "subprotocol via %s" % via)
        h.eq(await c.ping(5), [], "pong via %s" % via)
        await c.close()


async def test_placement_variants(env):
    tok = h.mint(env.key, sub="variant")
    c, w = await h.connect_ok(env, env.b, tok, "query",
                              query="foo=bar&access_token=%s&x=y" % tok)
    h.eq(w["client_id"], "variant", "access_token among other query parameters")
    raw = await asyncio.to_thread(h.RawWS, env.b.port, tok,
                                  protocols="latchkey.v1,bearer." + tok)
    try:
        m = await asyncio.to_thread(raw.read_message, h.T(3))
        h.check(m and b'"welcome"' in m[1], "welcome with a comma-only protocol list")
    finally:
        raw.close()


async def test_bearer_scheme_case_insensitive(env):
    # RFC 7235: the auth-scheme is case-insensitive.
    tok = h.mint(env.key, sub="lower")
    c, w = await h.connect_ok(env, env.b, tok, subprotocols=["latchkey.v1"],
                              headers=[("Authorization", "bearer " + tok)])
    h.eq(w["client_id"], "lower", "client_id")


async def test_bearer_beats_header(env):
    good = h.mint(env.key, sub="good")
    await h.connect_refused(env, env.b, "bad.bearer.token", "unauthorized", 4401,
                            via="bearer", headers=[("Authorization", "Bearer " + good)])
    c, w = await h.connect_ok(env, env.b, good, "bearer",
                              headers=[("Authorization", "Bearer garbage")])
    h.eq(w["client_id"], "good", "client_id")


async def test_header_beats_query(env):
    good = h.mint(env.key, sub="good")
    await h.connect_refused(env, env.b, "garbage", "unauthorized", 4401, via="header",
                            query="access_token=" + good)
    c, w = await h.connect_ok(env, env.b, good, "header", query="access_token=garbage")
    h.eq(w["client_id"], "good", "client_id")


async def test_bearer_beats_query(env):
    good = h.mint(env.key, sub="good")
    await h.connect_refused(env, env.b, "garbage", "unauthorized", 4401, via="bearer",
                            query="access_token=" + good)


async def test_empty_bearer_falls_through(env):
    good = h.mint(env.key, sub="hdr")
    c, w = await h.connect_ok(env, env.b, good, "header",
                              subprotocols=["latchkey.v1", "bearer."])
    h.eq(w["client_id"], "hdr", "client_id from the header")
    h.eq(c.ws.subprotocol, "latchkey.v1", "selected subprotocol")
    c, w = await h.connect_ok(env, env.b, good, "query",
                              subprotocols=["latchkey.v1", "bearer."])
    h.eq(w["client_id"], "hdr", "client_id from the query")


async def test_empty_query_is_no_token(env):
    await h.connect_refused(env, env.b, None, "unauthorized", 4401, query="access_token=")


async def test_bearer_alone_never_echoed(env):
    # Clients must offer latchkey.v1 with bearer.<token>; whatever the broker
    # does with one that does not, it must not select (echo) the token.
    tok = h.mint(env.key)
    try:
        c = await h.Conn.open(env, env.b, tok, subprotocols=["bearer." + tok])
    except h.websockets.InvalidHandshake as e:
        print("     bearer without latchkey.v1: refused (%s)" % e)
        return
    h.check(c.ws.subprotocol in (None, "latchkey.v1"), "selected %r" % c.ws.subprotocol)
    print("     bearer without latchkey.v1: upgraded, subprotocol %r" % c.ws.subprotocol)


async def test_same_token_many_connections(env):
    tok = h.mint(env.key, sub="tabs")
    pairs = await asyncio.gather(*[h.connect_ok(env, env.b, tok) for _ in range(4)])
    ids = {w["conn_id"] for _, w in pairs}
    h.eq(len(ids), 4, "distinct conn_ids")
    for i, (c, _) in enumerate(pairs):
        h.eq(await c.ping(i), [], "pong on connection %d" % i)


async def test_reconnect_same_token(env):
    tok = env.reg.mint_cli(env.key, {"*": h.BOTH}, client_id="again")
    for i in range(3):
        c, w = await h.connect_ok(env, env.b, tok)
        h.eq(w["client_id"], "again", "client_id on attempt %d" % i)
        await c.close()


async def test_unknown_path_not_upgraded(env):
    how = await h.not_welcomed(env, env.b, h.mint(env.key), path="/v1/other")
    h.check(how.startswith("http 4") or how.startswith("handshake"),
            "upgrade on an unknown path refused at HTTP level (%s)" % how)


h.main(setup, [test_welcome_fields, test_welcome_without_sub, test_sandbox_workspace,
               test_client_id_escaping, test_each_placement, test_placement_variants,
               test_bearer_scheme_case_insensitive, test_bearer_beats_header,
               test_header_beats_query,
               test_bearer_beats_query, test_empty_bearer_falls_through,
               test_empty_query_is_no_token, test_bearer_alone_never_echoed,
               test_same_token_many_connections, test_reconnect_same_token,
               test_unknown_path_not_upgraded])
