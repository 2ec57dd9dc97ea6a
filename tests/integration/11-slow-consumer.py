#!/usr/bin/python3
"""11-slow-consumer: a subscriber that stops reading while a publisher
floods is closed with 4408 once its bounded send queue overflows (bytes or
message count), while a subscriber that keeps reading receives every message
in order with no gaps (SPEC 4; --send-queue-bytes, --send-queue-messages)."""

import asyncio
import json
import time

import lkharness as h
from lkharness import BOTH

# Publishes in flight: the publisher waits for acks, and for the fast
# subscriber to catch up, past this many. The broker's threads run the
# publisher and the subscriber in parallel, so without the second wait the
# fast subscriber could legitimately fall behind by more than its queue.
WINDOW = 8


def setup(env):
    env.reg = env.registry()
    env.key = env.reg.create_key("ws_slow")
    env.by_bytes = env.broker(env.reg, ["--publish-rate", "0", "--send-queue-bytes", "65536",
                                        "--send-queue-messages", "100000"], log_level="info")
    env.by_count = env.broker(env.reg, ["--publish-rate", "0", "--send-queue-messages", "32",
                                        "--send-queue-bytes", "4194304"], log_level="info")


def slow_subscriber(port, tok, ch):
    """A raw client with a tiny receive buffer, subscribed to `ch`."""
    raw = h.RawWS(port, tok, rcvbuf=4096)
    raw.send_frame(0x1, json.dumps({"op": "subscribe", "id": 1, "channel": ch}).encode())
    ops = []
    for _ in range(4):
        m = raw.read_message(h.T(5))
        h.check(m is not None and m[0] == 0x1, "slow subscriber got text frames")
        for line in m[1].decode().split("\n"):
            if line:
                ops.append(json.loads(line)["op"])
        if "subscribed" in ops:
            return raw
    raise h.Failure("slow subscriber not subscribed: %r" % ops)


def drain(raw, limit_bytes):
    """Reads the slow subscriber's backlog: (seqs, close code or None, how
    it ended)."""
    seqs = []
    total = 0
    deadline = time.monotonic() + h.T(10)
    while time.monotonic() < deadline and total <= limit_bytes:
        try:
            m = raw.read_message(max(0.05, deadline - time.monotonic()))
        except OSError:
            return seqs, None, "timeout"
        if m is None:
            return seqs, None, "eof"
        op, payload = m
        total += len(payload)
        if op == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            return seqs, code, "close frame"
        if op == 0x1:
            for line in payload.decode().split("\n"):
                if line:
                    o = json.loads(line)
                    if o.get("op") == "message":
                        seqs.append(o["seq"])
    return seqs, None, "limit"


async def publish_all(pub, ch, count, pad, fast):
    sent = acked = 0
    deadline = time.monotonic() + h.T(30)
    while acked < count:
        while sent < count and sent - acked < WINDOW and sent - fast[0] < WINDOW:
            sent += 1
            await pub.send('{"op":"publish","id":%d,"channel":"%s","data":{"i":%d,"pad":"%s"}}'
                           % (sent, ch, sent, pad))
        if acked == sent:
            h.check(time.monotonic() < deadline, "fast subscriber keeps up")
            await asyncio.sleep(0.001)
            continue
        m = await pub.recv(h.T(10))
        acked += 1
        h.eq((m["op"], m.get("id"), m.get("seq")), ("ack", acked, acked), "ack %d" % acked)


async def receive_all(c, count, fast):
    for i in range(1, count + 1):
        m = await c.recv(h.T(10))
        h.eq((m["op"], m.get("seq")), ("message", i), "fast subscriber message %d" % i)
        h.eq(m["data"]["i"], i, "payload of %d" % i)
        fast[0] = i


async def scenario(env, b, count, size):
    ch = h.channel()
    tok = h.mint(env.key, {"*": BOTH})
    slow = await asyncio.to_thread(slow_subscriber, b.port, tok, ch)
    try:
        fast, _ = await h.connect_ok(env, b, tok)
        r = await fast.request({"op": "subscribe", "id": 1, "channel": ch})
        h.eq(r["op"], "subscribed", "fast subscriber")
        pub, _ = await h.connect_ok(env, b, tok)
        t0 = time.monotonic()
        got = [0]
        await asyncio.gather(publish_all(pub, ch, count, "x" * size, got),
                             receive_all(fast, count, got))
        secs = time.monotonic() - t0
        seqs, code, how = await asyncio.to_thread(drain, slow, count * (size + 200))
    finally:
        slow.close()
    print("     %d x %d B in %.2fs; slow subscriber got %d then %s %s" % (
        count, size, secs, len(seqs), how, code))
    h.eq(seqs, list(range(1, len(seqs) + 1)), "slow subscriber's messages are a gapless prefix")
    h.check(len(seqs) < count, "slow subscriber was cut off before the end")
    h.eq((how, code), ("close frame", 4408), "slow subscriber's close")
    h.eq(await fast.ping(), [], "fast subscriber still connected")
    h.eq(await pub.ping(), [], "publisher still connected")


async def test_queue_bytes_overflow(env):
    await scenario(env, env.by_bytes, 1200, 4000)


async def test_queue_messages_overflow(env):
    await scenario(env, env.by_count, 6000, 1000)


h.main(setup, [test_queue_bytes_overflow, test_queue_messages_overflow])
