#!/usr/bin/python3
"""03-subscribe-publish: the latchkey.v1 requests and replies, message
frames, byte-exact data, capability checks, bad requests, protocol errors
(4400), frame size (4413), ping and `since` replay (SPEC 4)."""

import asyncio
import json
import time

import lkharness as h
from lkharness import BOTH, PUB, SUB

MESSAGE_KEYS = {"op", "channel", "seq", "data", "from", "ts"}


def setup(env):
    env.reg = env.registry()
    env.key = env.reg.create_key("ws_pubsub")
    env.b = env.broker(env.reg)


async def conn(env, cap=..., sub=None, via="bearer"):
    c, _ = await h.connect_ok(env, env.b, h.mint(env.key, cap, sub=sub), via)
    return c


async def subscribe(c, ch, rid=1, **extra):
    req = {"op": "subscribe", "id": rid, "channel": ch}
    req.update(extra)
    r = await c.request(req)
    h.eq((r.get("op"), r.get("id"), r.get("channel")), ("subscribed", rid, ch),
         "subscribe reply %s" % r.raw)
    return r


async def expect_error(c, code, rid=None, what=""):
    m = await c.recv()
    h.eq(m.get("op"), "error", "%s: op of %s" % (what, m.raw))
    h.eq(m.get("code"), code, "%s: code of %s" % (what, m.raw))
    h.check(isinstance(m.get("message"), str) and m["message"], "%s: error has a message" % what)
    if rid is not None:
        h.eq(m.get("id"), rid, "%s: id echoed" % what)
    return m


async def test_subscribe_reply(env):
    c = await conn(env)
    ch = h.channel()
    r = await c.request({"op": "subscribe", "id": 1, "channel": ch})
    h.eq(dict(r), {"op": "subscribed", "id": 1, "channel": ch, "seq": 0}, "reply")
    ch2 = h.channel()
    r = await c.request({"op": "subscribe", "channel": ch2})
    h.eq(dict(r), {"op": "subscribed", "channel": ch2, "seq": 0}, "reply without id")


async def test_unsubscribe_and_not_subscribed(env):
    c = await conn(env)
    ch = h.channel()
    await subscribe(c, ch)
    r = await c.request({"op": "unsubscribe", "id": 2, "channel": ch})
    h.eq(dict(r), {"op": "unsubscribed", "id": 2, "channel": ch}, "reply")
    await c.send({"op": "unsubscribe", "id": 3, "channel": ch})
    await expect_error(c, "not_subscribed", 3, "second unsubscribe")
    await c.send({"op": "unsubscribe", "id": 4, "channel": h.channel()})
    await expect_error(c, "not_subscribed", 4, "never subscribed")
    r = await c.request({"op": "unsubscribe", "channel": h.channel()})
    h.eq((r["op"], r["code"], "id" in r), ("error", "not_subscribed", False), "without id")


async def test_publish_ack_seq_and_message(env):
    ch = h.channel()
    sub = await conn(env, sub="reader")
    await subscribe(sub, ch)
    pub = await conn(env, sub="writer-1")
    t0 = time.time() * 1000
    for i in range(1, 6):
        r = await pub.request({"op": "publish", "id": 100 + i, "channel": ch, "data": {"i": i}})
        h.eq(dict(r), {"op": "ack", "id": 100 + i, "channel": ch, "seq": i}, "ack %d" % i)
    for i in range(1, 6):
        m = await sub.expect("message")
        h.eq(set(m), MESSAGE_KEYS, "message fields")
        h.eq((m["channel"], m["seq"], m["data"], m["from"]), (ch, i, {"i": i}, "writer-1"),
             "message %d" % i)
        h.check(isinstance(m["ts"], int) and t0 - 1000 <= m["ts"] <= time.time() * 1000 + 1000,
                "ts %r is unix ms of the publish" % m["ts"])
    other = h.channel()
    r = await pub.request({"op": "publish", "id": 7, "channel": other, "data": 1})
    h.eq(r.get("seq"), 1, "seq of another channel starts at 1")
    h.eq(await sub.ping(), [], "subscriber got nothing from the other channel")


async def test_from_null_without_sub(env):
    ch = h.channel()
    c = await conn(env)
    await subscribe(c, ch)
    await c.send({"op": "publish", "channel": ch, "data": "x"})
    m = await c.expect("message")
    h.eq(m.rawf("from"), "null", "from without a sub")


async def test_from_is_not_client_supplied(env):
    ch = h.channel()
    c = await conn(env, sub="real")
    await subscribe(c, ch)
    await c.send({"op": "publish", "channel": ch, "data": 1, "from": "mallory",
                  "seq": 999, "ts": 1})
    m = await c.expect("message")
    h.eq((m["from"], m["seq"]), ("real", 1), "from and seq set by the broker")


async def test_publisher_receives_own_message(env):
    ch = h.channel()
    c = await conn(env, sub="me")
    await subscribe(c, ch)
    await c.send({"op": "publish", "id": 9, "channel": ch, "data": [1]})
    got = {m["op"]: m for m in [await c.recv(), await c.recv()]}
    h.eq(set(got), {"ack", "message"}, "ack and own message")
    h.eq((got["message"]["seq"], got["ack"]["seq"]), (1, 1), "seqs")


async def test_publisher_not_subscribed_gets_no_message(env):
    ch = h.channel()
    c = await conn(env)
    r = await c.request({"op": "publish", "id": 1, "channel": ch, "data": 1})
    h.eq(r["op"], "ack", "reply")
    h.eq(await c.ping(), [], "nothing else")


async def test_fire_and_forget(env):
    suffix = h.channel().split(":")[1]
    ok, ro = "ok:" + suffix, "ro:" + suffix
    c = await conn(env, {"ok:*": BOTH, "ro:*": [SUB]})
    await c.send({"op": "publish", "channel": ok, "data": 1})
    await c.send({"op": "publish", "channel": ok, "data": 2})
    h.eq(await c.ping(), [], "no ack for publishes without id")
    r = await c.request({"op": "publish", "id": 3, "channel": ok, "data": 3})
    h.eq(r.get("seq"), 3, "the id-less publishes were applied")
    await c.send({"op": "publish", "channel": ro, "data": 1})
    m = await expect_error(c, "forbidden", what="id-less forbidden publish")
    h.check("id" not in m, "no id in the error")
    await c.send({"op": "publish", "channel": "bad channel", "data": 1})
    await expect_error(c, "bad_request", what="id-less bad publish")


DATA = [
    "9007199254740993",
    "12345678901234567890",
    "-123456789012345678901234567890",
    '{"big":9007199254740993,"neg":-9223372036854775809,"f":1.50,"e":1E+2,'
    '"z":-0,"tiny":1e-400,"huge":1e400}',
    '[1,[2,[3,{"a":{"b":{"c":[]}}}]],{},[],""]',
    '"h\u00e9llo w\u00f6rld \u2713 \U0001F600"',
    '"\\u00e9\\ud83d\\ude00\\u2028"',
    '"line1\\nline2\\r\\n\\ttab \\"q\\" \\\\ \\/ \\b\\f"',
    '{"nested":{"text":"a\\nb","list":[true,false,null]}}',
    '"nul\\u0000byte \\u001f"', '{"":"empty key","dup":1,"dup":2}',
    "null", "true", "false", '""', "{}", "[]", "0", "-0.0", "3.141592653589793238462643383279",
]


async def test_data_byte_exact(env):
    ch = h.channel()
    sub = await conn(env)
    await subscribe(sub, ch)
    pub = await conn(env)
    for i, data in enumerate(DATA):
        await pub.send('{"op":"publish","id":%d,"channel":"%s","data":%s}' % (i, ch, data))
        h.eq((await pub.expect("ack"))["id"], i, "ack id")
        m = await sub.expect("message")
        h.eq(m.rawf("data"), data, "raw data #%d" % i)
        h.check("\n" not in m.raw, "no raw newline in the message")


PRETTY = '''
{
  "op": "publish",
  "id": 77,
  "channel": "%s",
  "data": {
    "n": 12345678901234567890,
    "s": "two\\nlines",
    "list": [ 1, 2 ,
              3 ],
    "obj": { "k" :  "v  with  spaces" }
  }
}
'''


async def test_pretty_printed_publish(env):
    ch = h.channel()
    sub = await conn(env)
    await subscribe(sub, ch)
    pub = await conn(env)
    frame = PRETTY % ch
    await pub.send(frame)
    h.eq((await pub.expect("ack"))["id"], 77, "ack id")
    m = await sub.expect("message")
    want = h.minify(h.raw_fields(frame)["data"])
    h.eq(m.rawf("data"), want, "data without insignificant whitespace")
    h.eq(m["data"]["s"], "two\nlines", "escaped newline preserved")
    await pub.send('\t{ "op" : "publish" , "id" : 78 , "channel" : "%s" , "data" : [ ] }\r\n' % ch)
    h.eq((await pub.expect("ack"))["id"], 78, "ack for a whitespace-padded frame")
    h.eq((await sub.expect("message")).rawf("data"), "[]", "data")


async def test_forbidden(env):
    c = await conn(env, {"ro:*": [SUB], "wo:*": [PUB]})
    await c.send({"op": "subscribe", "id": 1, "channel": "wo:x"})
    await expect_error(c, "forbidden", 1, "subscribe without realtime:subscribe")
    await c.send({"op": "publish", "id": 2, "channel": "ro:x", "data": 1})
    await expect_error(c, "forbidden", 2, "publish without realtime:publish")
    await c.send({"op": "subscribe", "id": 3, "channel": "other"})
    await expect_error(c, "forbidden", 3, "subscribe outside the cap")
    await subscribe(c, "ro:x", 4)
    r = await c.request({"op": "publish", "id": 5, "channel": "wo:x", "data": 1})
    h.eq(r["op"], "ack", "publish allowed")


async def test_patterns(env):
    c = await conn(env, {"chat:*": BOTH, "news": [SUB], "pub:*": [PUB]})
    rid = 0
    for ch, sub_ok, pub_ok in (("chat:x", 1, 1), ("chat:", 1, 1), ("chat:a:b", 1, 1),
                               ("chats", 0, 0), ("chat", 0, 0), ("cha", 0, 0),
                               ("news", 1, 0), ("news:x", 0, 0), ("new", 0, 0),
                               ("pub:x", 0, 1), ("pub", 0, 0)):
        rid += 1
        r = await c.request({"op": "subscribe", "id": rid, "channel": ch})
        h.eq(r["op"], "subscribed" if sub_ok else "error", "subscribe %s" % ch)
        if not sub_ok:
            h.eq(r["code"], "forbidden", "subscribe %s" % ch)
        rid += 1
        r = await c.request({"op": "publish", "id": rid, "channel": ch, "data": 0})
        # A subscribed publisher may see its own message first.
        while r["op"] == "message":
            r = await c.recv()
        h.eq(r["op"], "ack" if pub_ok else "error", "publish %s" % ch)
        if not pub_ok:
            h.eq(r["code"], "forbidden", "publish %s" % ch)
        await c.ping()  # drops an own message that came after the ack
    c2 = await conn(env, {"*": [SUB]})
    await subscribe(c2, "anything:at-all", 1)
    r = await c2.request({"op": "publish", "id": 2, "channel": "x", "data": 0})
    h.eq((r["op"], r["code"]), ("error", "forbidden"), "publish with a subscribe-only cap")


async def test_bad_requests(env):
    c = await conn(env)
    cases = [
        ({"op": "subscribe", "id": 1, "channel": "bad channel"}, 1),
        ({"op": "subscribe", "id": 2, "channel": ""}, 2),
        ({"op": "subscribe", "id": 3, "channel": "x" * 201}, 3),
        ({"op": "subscribe", "id": 4, "channel": "a/b"}, 4),
        ({"op": "subscribe", "id": 5, "channel": "caf\u00e9"}, 5),
        ({"op": "subscribe", "id": 6, "channel": "chat:*"}, 6),
        ({"op": "subscribe", "id": 7, "channel": 123}, 7),
        ({"op": "subscribe", "id": 8, "channel": None}, 8),
        ({"op": "subscribe", "id": 9}, 9),
        ({"op": "unsubscribe", "id": 10}, 10),
        ({"op": "unsubscribe", "id": 11, "channel": "no way"}, 11),
        ({"op": "publish", "id": 12, "data": 1}, 12),
        ({"op": "publish", "id": 13, "channel": h.channel()}, 13),
        ({"op": "publish", "id": 14, "channel": "a b", "data": 1}, 14),
        ({"op": "subscribe", "id": 15, "channel": h.channel(), "since": -1}, 15),
        ({"op": "subscribe", "id": 16, "channel": h.channel(), "since": "3"}, 16),
        ({"op": "subscribe", "id": 17, "channel": h.channel(), "since": 1.5}, 17),
        ({"op": "auth", "id": 18}, 18),
        ({"op": "auth", "id": 19, "token": 5}, 19),
        ({"op": "ping", "id": "1"}, None),
        ({"op": "ping", "id": 1.5}, None),
        ({"op": "subscribe", "id": "x", "channel": h.channel()}, None),
        ({"op": "publish", "id": [1], "channel": h.channel(), "data": 1}, None),
        ({"op": "ping", "id": None}, None),
    ]
    for req, rid in cases:
        await c.send(req)
        await expect_error(c, "bad_request", rid, h.dumps(req)[:80])
    await subscribe(c, "x" * 200, 99)
    await subscribe(c, "AZaz09_@.:=-", 100)
    await subscribe(c, ":", 101)
    h.eq(await c.ping(), [], "connection still usable")


PROTOCOL_ERRORS = [
    "not json", "[]", '[{"op":"ping"}]', '"ping"', "42", "null", "", " ",
    '{"op":"ping","id":1}\n{"op":"ping","id":2}',
    '{"op":"ping","id":1}{"op":"ping","id":2}',
    '{"op":"ping","id":1} x',
    '{"op":"nope","id":1}', '{"op":"PING","id":1}', '{"id":1}', '{"op":5,"id":1}',
    '{"op":null,"id":1}', '{"op":["ping"],"id":1}', '{"op":"ping","id":1',
    '{"op":"message","channel":"x","seq":1,"data":1}', '{"op":"welcome"}',
    '{"op":"ping","id":1,}',
]


async def protocol_error(env, frame):
    c = await conn(env)
    await c.send_quiet(frame)
    code, msgs = await c.until_closed()
    h.check(all(m["op"] != "pong" for m in msgs), "no pong for %r" % frame)
    h.eq(code, 4400, "close code for %r" % frame[:60])


async def test_protocol_errors_close_4400(env):
    await asyncio.gather(*[protocol_error(env, f) for f in PROTOCOL_ERRORS])


def close_handshake(port, tok):
    """Triggers a 4400 close on a raw connection; returns (close code,
    seconds the broker kept TCP open without our Close, EOF after ours)."""
    raw = h.RawWS(port, tok)
    try:
        raw.read_message(h.T(3))
        raw.send_frame(0x1, b"[]")
        code, _ = raw.until_close(h.T(3))
        t0 = time.monotonic()
        try:
            early = raw.read_message(0.5)
            return code, time.monotonic() - t0, early
        except OSError:
            pass
        raw.send_frame(0x8, code.to_bytes(2, "big"))
        return code, None, raw.read_message(h.T(3))
    finally:
        raw.close()


async def test_close_handshake_waits_for_client_close(env):
    # RFC 6455 5.5.1/7.1.1: after its Close frame the broker waits for the
    # client's Close before dropping TCP. Dropping at once resets clients
    # that are still sending, and libraries then lose the close code (a
    # flooding client sees 1006 instead of 4429 and cannot tell it to back off).
    code, early_secs, after = await asyncio.to_thread(close_handshake, env.b.port,
                                                      h.mint(env.key))
    h.eq(code, 4400, "close code")
    h.check(early_secs is None, "the broker dropped TCP %.3fs after its Close frame, "
            "without waiting for the client's Close" % (early_secs or 0))
    h.check(after is None or after[0] == 0x8, "TCP closed after the client's Close")


async def test_binary_frame_closes_4400(env):
    await protocol_error(env, b'{"op":"ping","id":1}')


def oversized_raw(port, tok, frames):
    """Sends `frames` [(fin, opcode, payload, announced length)] on a raw
    connection; returns (close code, error codes before it)."""
    raw = h.RawWS(port, tok)
    try:
        h.check('"welcome"' in raw.read_message(h.T(3))[1].decode(), "welcome")
        for fin, op, payload, length in frames:
            raw.send_frame(op, payload, fin, length)
        code, texts = raw.until_close(h.T(5))
    finally:
        raw.close()
    errors = [json.loads(t).get("code") for t in texts if '"error"' in t]
    return code, errors


async def test_max_frame(env):
    ch = h.channel()
    sub = await conn(env)
    await subscribe(sub, ch)
    c = await conn(env)
    head = '{"op":"publish","id":1,"channel":"%s","data":"' % ch
    frame = head + "a" * (65536 - len(head) - 2) + '"}'
    h.eq(len(frame), 65536, "frame size")
    r = await c.request(frame, h.T(5))
    h.eq((r["op"], r["id"]), ("ack", 1), "a 65536-byte frame is accepted")
    m = await sub.expect("message", h.T(5))
    h.eq(len(m["data"]), 65536 - len(head) - 2, "large message delivered")
    tok = h.mint(env.key)
    big = (frame[:-2] + 'a"}').encode()
    for what, frames in (
            ("a 65537-byte frame", [(True, 1, big, None)]),
            ("a frame announcing 1 MiB", [(True, 1, big, 1 << 20)]),
            ("two fragments of 40000 bytes", [(False, 1, big[:40000], None),
                                              (True, 0, big[:40000], None)]),
            ("fragments of 60000 + 10000 bytes", [(False, 1, big[:60000], None),
                                                  (True, 0, big[:10000], None)])):
        code, errors = await asyncio.to_thread(oversized_raw, env.b.port, tok, frames)
        h.eq(code, 4413, "close code for %s" % what)
        h.eq(errors, ["too_large"] * len(errors), "only too_large errors before the close")


async def test_fragmented_frames(env):
    c = await conn(env)
    ch = h.channel()
    await c.send(('{"op":"publish","id":1,', '"channel":"%s",' % ch,
                  '"data":"%s"}' % ("b" * 30000)))
    r = await c.recv(h.T(5))
    h.eq((r["op"], r["id"]), ("ack", 1), "fragmented message reassembled")
    await c.send(('{"op":"ping",', '"id":2}'))
    h.eq(dict(await c.recv()), {"op": "pong", "id": 2}, "small fragmented request")


def pipelined_raw(port, tok, ch, n):
    """Subscribes, then writes n publishes of assorted sizes (most of them
    spanning the broker's small per-connection read chunks, some split into
    fragments) with a 125-byte ping in the middle, all in one go. Returns
    (the sizes sent, ack ids, message data, pong payloads)."""
    raw = h.RawWS(port, tok)
    try:
        h.check('"welcome"' in raw.read_message(h.T(3))[1].decode(), "welcome")
        raw.send_frame(0x1, h.dumps({"op": "subscribe", "id": 0, "channel": ch}).encode())
        h.check('"subscribed"' in raw.read_message(h.T(3))[1].decode(), "subscribed")
        sizes = [(i * 397) % 1500 for i in range(1, n + 1)]
        ping = bytes(range(125))
        burst = []
        for i, size in enumerate(sizes, 1):
            req = h.dumps({"op": "publish", "id": i, "channel": ch,
                           "data": "%d:%s" % (i, "x" * size)}).encode()
            if i % 7 == 0:
                cut = len(req) // 3
                burst += [raw.frame(0x1, req[:cut], fin=False), raw.frame(0x0, req[cut:])]
            else:
                burst.append(raw.frame(0x1, req))
            if i == n // 2:
                burst.append(raw.frame(0x9, ping))
        raw.sock.sendall(b"".join(burst))
        acks, data, pongs = [], [], []
        deadline = time.monotonic() + h.T(10)
        while len(acks) < n or len(data) < n or not pongs:
            m = raw.read_message(max(0.01, deadline - time.monotonic()))
            h.check(m is not None and m[0] != 0x8, "connection closed: %r" % (m,))
            if m[0] == 0xA:
                pongs.append(m[1])
                continue
            for line in m[1].decode().split("\n"):
                r = json.loads(line)
                if r["op"] == "ack":
                    acks.append(r["id"])
                elif r["op"] == "message":
                    data.append(r["data"])
                else:
                    raise h.Failure("unexpected %s" % line)
        return sizes, acks, data, pongs, ping
    finally:
        raw.close()


async def test_pipelined_mixed_sizes(env):
    """The broker reads a client in small chunks and reassembles what spans
    them: a burst written at once must come out whole and in order."""
    n = 120
    sizes, acks, data, pongs, ping = await asyncio.to_thread(
        pipelined_raw, env.b.port, h.mint(env.key), h.channel(), n)
    h.eq(acks, list(range(1, n + 1)), "every publish acked, in order")
    h.eq(data, ["%d:%s" % (i, "x" * size) for i, size in enumerate(sizes, 1)],
         "every message delivered whole, in order")
    h.eq(pongs, [ping], "the ping in the burst answered with its payload")


async def test_deep_nesting(env):
    ch = h.channel()
    for data in ("[" * 30000 + "]" * 30000, '{"a":' * 10000 + "1" + "}" * 10000,
                 "[" * 60000):
        c = await conn(env)
        await c.send_quiet('{"op":"publish","id":1,"channel":"%s","data":%s}' % (ch, data))
        try:
            r = await c.recv()
            h.check(r["op"] == "error" and r["code"] == "bad_request",
                    "deep data refused with bad_request: %s" % r.raw[:100])
        except h.Closed as e:
            h.eq(e.code, 4400, "or closed as not one JSON object")
    c = await conn(env)
    h.eq(dict(await c.request({"op": "ping", "id": 1})), {"op": "pong", "id": 1},
         "broker still serving")


def invalid_utf8_publish(port, tok, ch):
    raw = h.RawWS(port, tok)
    try:
        raw.read_message(h.T(3))
        raw.send_frame(0x1, b'{"op":"publish","id":1,"channel":"' + ch.encode()
                       + b'","data":"\xff\xfe bad \xc3"}')
        m = raw.read_message(h.T(3))
        return m and (m[0], m[1][:2] if m[0] == 0x8 else m[1])
    finally:
        raw.close()


async def test_invalid_utf8_never_forwarded(env):
    ch = h.channel()
    sub = await conn(env)
    await subscribe(sub, ch)
    got = await asyncio.to_thread(invalid_utf8_publish, env.b.port, h.mint(env.key), ch)
    print("     invalid UTF-8 publish answered with %r" % (got,))
    h.check(got is None or got[0] == 0x8 or b'"ack"' not in got[1],
            "a publish with invalid UTF-8 is not acknowledged")
    h.eq(await sub.ping(), [], "subscriber got nothing and is still connected")


async def test_publish_after_subscriber_vanishes(env):
    chans = [h.channel() for _ in range(50)]
    tok = h.mint(env.key)
    for _ in range(3):
        c = await conn(env)
        for i, ch in enumerate(chans):
            await c.send({"op": "subscribe", "id": i, "channel": ch})
        for ch in chans[:10]:
            await c.send({"op": "publish", "channel": ch, "data": "x" * 1000})
        c.ws.transport.abort()
    pub, _ = await h.connect_ok(env, env.b, tok)
    for i, ch in enumerate(chans):
        r = await pub.request({"op": "publish", "id": i, "channel": ch, "data": i})
        h.eq((r["op"], r["id"]), ("ack", i), "publish after the subscribers vanished")


async def test_ping_pong(env):
    c = await conn(env)
    r = await c.request({"op": "ping", "id": 5})
    h.eq(dict(r), {"op": "pong", "id": 5}, "pong")
    r = await c.request({"op": "ping"})
    h.eq(dict(r), {"op": "pong"}, "pong without id")
    r = await c.request('{"op":"ping","id":9007199254740993}')
    h.eq(r.rawf("id"), "9007199254740993", "64-bit id echoed exactly")
    r = await c.request({"op": "ping", "id": -7, "extra": {"ignored": [1, 2]}})
    h.eq(dict(r), {"op": "pong", "id": -7}, "negative id, unknown field ignored")
    r = await c.request({"op": "ping", "id": 0})
    h.eq(dict(r), {"op": "pong", "id": 0}, "id 0")


async def test_since_replay(env):
    ch = h.channel()
    pub = await conn(env, sub="p")
    for i in range(1, 6):
        r = await pub.request({"op": "publish", "id": i, "channel": ch, "data": {"n": i}})
        h.eq(r["seq"], i, "ack seq")
    c = await conn(env)
    r = await subscribe(c, ch, 1, since=2)
    h.eq(r["seq"], 5, "subscribed.seq is the last seq")
    for i in (3, 4, 5):
        m = await c.expect("message", channel=ch, seq=i)
        h.eq(m["data"], {"n": i}, "replayed data")
    await pub.send({"op": "publish", "channel": ch, "data": {"n": 6}})
    await c.expect("message", channel=ch, seq=6)

    c0 = await conn(env)
    await subscribe(c0, ch, 1, since=0)
    h.eq([(await c0.expect("message"))["seq"] for _ in range(6)], [1, 2, 3, 4, 5, 6],
         "since 0 replays everything held")
    for since in (6, 7, 1000):
        c2 = await conn(env)
        r = await subscribe(c2, ch, 1, since=since)
        h.eq(r["seq"], 6, "subscribed.seq")
        h.eq(await c2.ping(), [], "nothing replayed for since=%d" % since)
    c3 = await conn(env)
    await subscribe(c3, ch, 1)
    h.eq(await c3.ping(), [], "nothing replayed without since")
    await pub.send({"op": "publish", "channel": ch, "data": {"n": 7}})
    await c3.expect("message", seq=7)
    await c2.expect("message", seq=7)


async def test_since_on_new_channel(env):
    c = await conn(env)
    r = await subscribe(c, h.channel(), 1, since=5)
    h.eq(r["seq"], 0, "seq of an unused channel")
    h.eq(await c.ping(), [], "nothing replayed")


async def test_fanout_to_many(env):
    ch = h.channel()
    subs = [await conn(env) for _ in range(5)]
    for s in subs:
        await subscribe(s, ch)
    pub = await conn(env, sub="fan")
    for i in range(20):
        await pub.send({"op": "publish", "channel": ch, "data": i})
    for s in subs:
        seqs = [(await s.expect("message"))["seq"] for _ in range(20)]
        h.eq(seqs, list(range(1, 21)), "every subscriber gets every seq in order")


async def test_unsubscribe_stops_delivery(env):
    ch = h.channel()
    c = await conn(env)
    await subscribe(c, ch)
    r = await c.request({"op": "unsubscribe", "id": 2, "channel": ch})
    h.eq(r["op"], "unsubscribed", "reply")
    pub = await conn(env)
    await pub.request({"op": "publish", "id": 1, "channel": ch, "data": 1})
    h.eq(await c.ping(), [], "no message after unsubscribe")


async def test_double_subscribe_delivers_once(env):
    ch = h.channel()
    c = await conn(env)
    await subscribe(c, ch, 1)
    r = await c.request({"op": "subscribe", "id": 2, "channel": ch})
    h.eq(r.get("id"), 2, "second subscribe answered")
    pub = await conn(env)
    await pub.request({"op": "publish", "id": 1, "channel": ch, "data": 1})
    got = [m for m in await c.ping() if m["op"] == "message"]
    if not got:
        got = [await c.expect("message")] + [m for m in await c.ping() if m["op"] == "message"]
    h.eq(len(got), 1, "message delivered once")


async def test_messages_are_split_on_newlines(env):
    ch = h.channel()
    c = await conn(env)
    await subscribe(c, ch)
    pub = await conn(env)
    for i in range(200):
        await pub.send({"op": "publish", "channel": ch, "data": i})
    seqs = [(await c.expect("message"))["seq"] for _ in range(200)]
    h.eq(seqs, list(range(1, 201)), "seqs")
    print("     200 messages arrived in %d frames" % (c.frames - 2))


h.main(setup, [test_subscribe_reply, test_unsubscribe_and_not_subscribed,
               test_publish_ack_seq_and_message, test_from_null_without_sub,
               test_from_is_not_client_supplied, test_publisher_receives_own_message,
               test_publisher_not_subscribed_gets_no_message, test_fire_and_forget,
               test_data_byte_exact, test_pretty_printed_publish, test_forbidden,
               test_patterns, test_bad_requests, test_protocol_errors_close_4400,
               test_close_handshake_waits_for_client_close, test_binary_frame_closes_4400,
               test_max_frame, test_fragmented_frames, test_pipelined_mixed_sizes,
               test_deep_nesting, test_invalid_utf8_never_forwarded,
               test_publish_after_subscriber_vanishes, test_ping_pong, test_since_replay,
               test_since_on_new_channel,
               test_fanout_to_many, test_unsubscribe_stops_delivery,
               test_double_subscribe_delivers_once, test_messages_are_split_on_newlines])
