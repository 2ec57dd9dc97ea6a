#!/usr/bin/python3
"""07-limits: publish rate limiting and the 4429 close, the subscription
limit, a configured max frame, history depth, the Origin allow-list and the
WebSocket ping timeout (SPEC 4, 6a and the agreed broker options)."""

import asyncio
import json
import math
import time

import websockets

import lkharness as h
from lkharness import BOTH

GOOD = "http://good.example"


def setup(env):
    env.reg = env.registry()
    env.key = env.reg.create_key("ws_limits")
    env.rl = env.broker(env.reg, ["--publish-rate", "10", "--publish-burst", "10",
                                  "--rate-limit-close", "50", "--max-subscriptions", "3",
                                  "--max-frame", "1024", "--history", "3"])
    env.origin = env.broker(env.reg, ["--allowed-origins", GOOD + ",http://also.example"])
    env.ping = env.broker(env.reg, ["--ping-interval", "1"])
    env.maxc = env.broker(env.reg, ["--max-connections", "3"])
    env.deep = env.broker(env.reg, ["--history", "100", "--send-queue-messages", "20"])


async def conn(env, broker, **kw):
    c, w = await h.connect_ok(env, broker, h.mint(env.key, {"*": BOTH}), **kw)
    return c, w


def flood(port, tok, ch, n):
    """Writes n publishes in one go on a raw connection, then reads every
    reply: (acks, rate_limited ids, other lines, close code, seconds).
    A raw socket keeps the broker's replies readable even if it resets the
    connection while publishes are still arriving."""
    raw = h.RawWS(port, tok)
    try:
        h.check('"welcome"' in raw.read_message(h.T(3))[1].decode(), "welcome")
        burst = b"".join(raw.frame(0x1, h.dumps({"op": "publish", "id": i, "channel": ch,
                                                 "data": i}).encode())
                         for i in range(1, n + 1))
        t0 = time.monotonic()
        raw.sock.sendall(burst)
        code, texts = raw.until_close(h.T(5))
        secs = time.monotonic() - t0
    finally:
        raw.close()
    acks, limited, rest = [], [], []
    for t in texts:
        for line in t.split("\n"):
            m = json.loads(line)
            if m.get("op") == "ack":
                acks.append(m["id"])
            elif m.get("op") == "error" and m.get("code") == "rate_limited":
                limited.append(m.get("id"))
            else:
                rest.append(line)
    return acks, limited, rest, code, secs


async def test_rate_limit_flood_closes_4429(env):
    acks, limited, rest, code, secs = await asyncio.to_thread(
        flood, env.rl.port, h.mint(env.key, {"*": BOTH}), h.channel(), 120)
    print("     %d acked, %d rate_limited, close %s after %.3fs" % (
        len(acks), len(limited), code, secs))
    h.eq(rest, [], "other frames")
    h.check(set(range(1, 11)) <= set(acks), "the burst of 10 is accepted: %r" % acks[:12])
    h.check(len(acks) <= 10 + math.ceil(secs * 10) + 1,
            "%d acks in %.2fs at 10/s with a burst of 10" % (len(acks), secs))
    h.check(all(isinstance(i, int) for i in limited), "rate_limited errors echo the id")
    h.check(len(limited) in (49, 50), "%d rate_limited before the close (limit 50)"
            % len(limited))
    h.eq(code, 4429, "close code")


FLOOD_LIMIT = 200000


async def flood_with_library(env, ch):
    """Publishes as fast as the websockets library sends until it reports the
    connection closed; returns (close code, publishes sent). The client keeps
    sending while the broker closes, so a broker that drops TCP right after
    its Close frame resets it and the library reports 1006."""
    c, _ = await conn(env, env.rl)
    sent = 0
    deadline = time.monotonic() + h.T(10)
    try:
        while sent < FLOOD_LIMIT and time.monotonic() < deadline:
            await c.ws.send(h.dumps({"op": "publish", "id": sent, "channel": ch,
                                     "data": sent}))
            sent += 1
            if sent % 20 == 0:
                # Loopback buffers rarely fill, so let the library's reader
                # run now and then, as any busy client's would.
                await asyncio.sleep(0)
    except websockets.ConnectionClosed:
        pass
    await asyncio.wait_for(c.ws.wait_closed(), h.T(5))
    return c.ws.close_code, sent


async def test_rate_limit_close_code_reaches_a_flooding_client(env):
    # RFC 6455 7.1.1: after its Close the broker reads on until the client's
    # Close, so a client still sending learns 4429 instead of seeing a reset.
    runs = 20
    codes = []
    for _ in range(runs):
        code, sent = await flood_with_library(env, h.channel())
        h.check(sent < FLOOD_LIMIT, "the broker closed a client flooding publishes")
        codes.append(code)
    print("     close codes over %d runs: %r" % (runs, sorted(set(codes))))
    h.eq(codes.count(4429), runs, "runs where the client saw 4429 (codes %r)" % codes)


async def test_rate_limit_refills(env):
    c, _ = await conn(env, env.rl)
    ch = h.channel()
    for i in range(1, 14):
        await c.send({"op": "publish", "id": i, "channel": ch, "data": i})
    got = [await c.recv() for _ in range(13)]
    acks = [m["id"] for m in got if m["op"] == "ack"]
    limited = [m["id"] for m in got if m["op"] == "error" and m["code"] == "rate_limited"]
    h.check(10 <= len(acks) <= 11 and len(acks) + len(limited) == 13,
            "13 quick publishes: %d acked, %d limited" % (len(acks), len(limited)))
    await asyncio.sleep(0.6)
    for i in range(20, 24):
        r = await c.request({"op": "publish", "id": i, "channel": ch, "data": i})
        h.eq((r["op"], r["id"]), ("ack", i), "publish after the bucket refilled")
    h.eq(await c.ping(), [], "connection stays open")
    for i in range(1, 14):
        await c.send({"op": "publish", "id": 100 + i, "channel": ch, "data": i})
    got = [await c.recv() for _ in range(13)]
    h.check(any(m.get("code") == "rate_limited" for m in got), "bucket exhausted again")
    h.eq(dict(await c.request({"op": "ping", "id": 7})), {"op": "pong", "id": 7},
         "ping is not rate limited")
    r = await c.request({"op": "subscribe", "id": 8, "channel": h.channel()})
    h.eq(r["op"], "subscribed", "subscribe is not rate limited")
    c2, _ = await conn(env, env.rl)
    for i in range(1, 11):
        await c2.send({"op": "publish", "id": i, "channel": ch, "data": i})
    got = [(await c2.recv())["op"] for _ in range(10)]
    h.eq(got, ["ack"] * 10, "each connection has its own bucket")


async def test_max_subscriptions(env):
    c, _ = await conn(env, env.rl)
    chans = [h.channel() for _ in range(5)]
    for i, ch in enumerate(chans[:3]):
        r = await c.request({"op": "subscribe", "id": i, "channel": ch})
        h.eq(r["op"], "subscribed", "subscription %d" % (i + 1))
    r = await c.request({"op": "subscribe", "id": 10, "channel": chans[3]})
    h.eq(dict(r), {"op": "error", "id": 10, "code": "bad_request",
                   "message": "subscription limit reached (3)"}, "one too many")
    r = await c.request({"op": "unsubscribe", "id": 11, "channel": chans[0]})
    h.eq(r["op"], "unsubscribed", "unsubscribe")
    r = await c.request({"op": "subscribe", "id": 12, "channel": chans[4]})
    h.eq(r["op"], "subscribed", "a freed slot is reusable")


async def test_configured_max_frame(env):
    c, w = await conn(env, env.rl)
    h.eq(w["max_frame"], 1024, "welcome.max_frame")
    head = '{"op":"ping","id":1,"pad":"'
    frame = head + "p" * (1024 - len(head) - 2) + '"}'
    h.eq(len(frame), 1024, "frame size")
    r = await c.request(frame)
    h.eq(dict(r), {"op": "pong", "id": 1}, "a 1024-byte frame is accepted")
    await c.send_quiet(frame[:-2] + 'p"}')
    code, _ = await c.until_closed()
    h.eq(code, 4413, "close code for 1025 bytes")


async def test_replay_deeper_than_send_queue(env):
    """--history 100 with a 20-message send queue: since=0 replays the newest
    messages that fit in half the free queue, contiguous up to the last seq,
    and the subscriber is not closed as a slow consumer."""
    ch = h.channel()
    p, _ = await conn(env, env.deep)
    for i in range(1, 61):
        r = await p.request({"op": "publish", "id": i, "channel": ch, "data": i})
        h.eq(r["seq"], i, "ack seq")
    s, _ = await conn(env, env.deep)
    r = await s.request({"op": "subscribe", "id": 1, "channel": ch, "since": 0})
    h.eq(r["seq"], 60, "subscribed.seq")
    seqs = [m["seq"] for m in await s.ping() if m.get("op") == "message"]
    h.check(5 <= len(seqs) <= 10, "replay fits half the queue: %d messages" % len(seqs))
    h.eq(seqs, list(range(61 - len(seqs), 61)), "the newest are replayed, in order")
    await p.send({"op": "publish", "channel": ch, "data": 61})
    await s.expect("message", channel=ch, seq=61)


async def test_history_depth(env):
    c, _ = await conn(env, env.rl)
    ch = h.channel()
    for i in range(1, 6):
        r = await c.request({"op": "publish", "id": i, "channel": ch, "data": i})
        h.eq(r["seq"], i, "seq")
    for since in (0, 1):
        s, _ = await conn(env, env.rl)
        r = await s.request({"op": "subscribe", "id": 1, "channel": ch, "since": since})
        h.eq(dict(r), {"op": "subscribed", "id": 1, "channel": ch, "seq": 5}, "subscribed")
        seqs = [m["seq"] for m in await s.ping()]
        h.eq(seqs, [3, 4, 5], "replay from since=%d holds the last 3" % since)


async def test_origin_allow_list(env):
    tok = h.mint(env.key)
    for origin in (GOOD, "http://also.example"):
        c, _ = await h.connect_ok(env, env.origin, tok, origin=origin)
        await c.close()
    for origin in ("http://evil.example", "http://good.example.evil.example",
                   "https://good.example", "http://good.example:8080", "null"):
        how = await h.not_welcomed(env, env.origin, tok, origin=origin)
        print("     origin %s: %s" % (origin, how))
    # No Origin at all: not a browser, so the allow-list does not apply.
    c, _ = await h.connect_ok(env, env.origin, tok, origin=None)
    await c.close()
    c, _ = await h.connect_ok(env, env.rl, tok, origin="http://evil.example")


async def test_max_connections(env):
    tok = h.mint(env.key)
    conns = [(await h.connect_ok(env, env.maxc, tok))[0] for _ in range(3)]
    how = await h.not_welcomed(env, env.maxc, tok)
    print("     4th connection with --max-connections 3: %s" % how)
    await conns[0].close()
    for _ in range(40):
        try:
            c, _ = await h.connect_ok(env, env.maxc, tok)
            break
        except (h.Failure, h.websockets.InvalidHandshake, OSError):
            await asyncio.sleep(0.05)
    else:
        raise h.Failure("a freed connection slot was not reusable within 2 s")
    for c in conns[1:]:
        h.eq(await c.ping(), [], "existing connections unaffected")


def silent_peer(port, tok):
    """Connects, reads without ever answering a ping; returns (pings seen,
    seconds until the broker dropped the connection)."""
    raw = h.RawWS(port, tok)
    t0 = time.monotonic()
    pings = 0
    try:
        for _ in range(1000):
            try:
                m = raw.read_message(h.T(6) - (time.monotonic() - t0))
            except OSError:
                raise h.Failure("silent peer not dropped within %.1fs" % h.T(6))
            if m is None or m[0] == 0x8:
                return pings, time.monotonic() - t0
            if m[0] == 0x9:
                pings += 1
    finally:
        raw.close()
    raise h.Failure("too many frames")


async def test_ping_timeout(env):
    live, _ = await conn(env, env.ping)
    pings, dropped = await asyncio.to_thread(silent_peer, env.ping.port, h.mint(env.key))
    print("     silent peer: %d ping(s), dropped after %.2fs" % (pings, dropped))
    h.check(pings >= 1, "the broker pings an idle peer")
    h.check(1.0 <= dropped <= 3.5, "dropped after %.2fs (2 x 1 s)" % dropped)
    h.eq(await live.ping(), [], "a peer that answers pings stays connected")


h.main(setup, [test_rate_limit_flood_closes_4429,
               test_rate_limit_close_code_reaches_a_flooding_client, test_rate_limit_refills,
               test_max_subscriptions, test_configured_max_frame, test_history_depth,
               test_replay_deeper_than_send_queue,
               test_origin_allow_list, test_max_connections, test_ping_timeout])
