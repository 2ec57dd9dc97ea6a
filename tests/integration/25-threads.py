#!/usr/bin/python3
"""25-threads: a broker with --threads 2 spreads connections over both
service threads (SO_REUSEPORT) and still behaves as one broker: every
subscriber, whichever thread owns it, receives every message of two
publishers racing on one channel, in seq order with no gap or duplicate;
`since` replays across threads; a server-side publish reaches all; the
per-thread gauges add up; SIGTERM closes every connection with 1001."""

import asyncio
import json
import re
import signal

import lkharness as h
from lkharness import BOTH

SUBSCRIBERS = 24   # all on one thread by chance: 2^-23
PER_PUBLISHER = 300


def setup(env):
    env.reg = env.registry()
    env.key = env.reg.create_key("ws_threads")
    env.b = env.broker(env.reg, ["--threads", "2", "--publish-rate", "0"], log_level="info")


def scrape(port):
    status, _, body = h.http_request(port, "GET", "/metrics")
    h.eq(status, 200, "GET /metrics")
    values = {}
    for line in body.decode().splitlines():
        m = re.match(r'^([a-z_]+)(\{[^}]*\})? (\S+)$', line)
        if m:
            values[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return values


async def publish(pub, ch, pid, count):
    for i in range(count):
        await pub.send({"op": "publish", "channel": ch, "data": {"p": pid, "i": i}})
    return await pub.ping()


async def receive(c, total):
    got = []
    while len(got) < total:
        m = await c.recv(h.T(15))
        if m["op"] == "message":
            got.append((m["seq"], m["data"]["p"], m["data"]["i"]))
    return got


async def test_one_broker_over_two_threads(env):
    b = env.b
    ch = h.channel()
    tok = h.mint(env.key, {"*": BOTH})
    subs = []
    for _ in range(SUBSCRIBERS):
        c, _ = await h.connect_ok(env, b, tok)
        h.eq((await c.request({"op": "subscribe", "id": 1, "channel": ch}))["op"],
             "subscribed", "subscribe")
        subs.append(c)
    pubs = [(await h.connect_ok(env, b, tok))[0] for _ in range(2)]

    v = scrape(b.port)
    per_thread = [v.get('latchkey_thread_connections{thread="%d"}' % t) for t in (0, 1)]
    print("     connections per thread: %r" % per_thread)
    h.check(None not in per_thread, "a gauge per thread")
    h.eq(sum(per_thread), SUBSCRIBERS + 2, "per-thread gauges add up")
    h.check(min(per_thread) >= 1, "both threads own connections")
    h.eq(v["latchkey_connections"], SUBSCRIBERS + 2, "connections gauge")

    total = 2 * PER_PUBLISHER
    results = await asyncio.gather(
        publish(pubs[0], ch, 0, PER_PUBLISHER), publish(pubs[1], ch, 1, PER_PUBLISHER),
        *[receive(c, total) for c in subs])
    h.eq(results[0], [], "publisher 0 saw no error")
    h.eq(results[1], [], "publisher 1 saw no error")
    for n, got in enumerate(results[2:]):
        h.eq([s for s, _, _ in got], list(range(1, total + 1)),
             "subscriber %d: every seq once, in order" % n)
        for pid in (0, 1):
            h.eq([i for _, p, i in got if p == pid], list(range(PER_PUBLISHER)),
                 "subscriber %d: publisher %d's messages in its order" % (n, pid))
    # Every subscriber saw the same seq for the same message.
    h.eq(len({tuple(g) for g in results[2:]}), 1, "one order for everyone")

    # since replays from the shared history, whatever thread asks.
    late = []
    for _ in range(6):
        c, _ = await h.connect_ok(env, b, tok)
        r = await c.request({"op": "subscribe", "id": 2, "channel": ch, "since": total - 5})
        h.eq((r["op"], r["seq"]), ("subscribed", total), "late subscribe")
        got = [(await c.expect("message"))["seq"] for _ in range(5)]
        h.eq(got, list(range(total - 4, total + 1)), "replay after since")
        late.append(c)

    # A server-side publish lands on one thread and reaches all.
    body = json.dumps({"data": {"server": True}}).encode()
    status, _, resp = h.http_request(
        b.port, "POST", "/v1/channels/%s/messages" % ch, body=body,
        headers={"Authorization": "Bearer " + env.key.raw, "Content-Type": "application/json"})
    h.eq(status, 202, "server-side publish: %r" % resp)
    h.eq(json.loads(resp)["seq"], total + 1, "its seq follows")
    for c in subs + late:
        m = await c.expect("message")
        h.eq((m["seq"], m["data"]), (total + 1, {"server": True}), "server-side message")

    v = scrape(b.port)
    h.eq(v["latchkey_messages_published_total"], total + 1, "published, all threads")
    h.eq(v["latchkey_messages_delivered_total"],
         SUBSCRIBERS * total + SUBSCRIBERS + len(late),
         "delivered live (replays are not counted), all threads")
    h.eq(v["latchkey_inbox_drops_total"], 0, "no inbox drops")

    # Unsubscribe on every thread, then the channel still counts seq on.
    for c in subs:
        r = await c.request({"op": "unsubscribe", "id": 3, "channel": ch})
        h.eq(r["op"], "unsubscribed", "unsubscribe")
    r = await pubs[0].request({"op": "publish", "id": 9, "channel": ch, "data": 1})
    h.eq((r["op"], r["seq"]), ("ack", total + 2), "seq after unsubscribes")
    for c in subs:
        h.eq(await c.ping(), [], "no message after unsubscribe")

    conns = subs + late + pubs
    codes = await asyncio.gather(
        asyncio.to_thread(b.signal_and_wait, signal.SIGTERM),
        *[c.until_closed(h.T(5)) for c in conns])
    h.eq(codes[0][0], 0, "broker exit status")
    h.eq({code for code, _ in codes[1:]}, {1001}, "every connection closed with 1001")


def get_key(port, key):
    status, _, _ = h.http_request(port, "GET", "/v1/key",
                                  headers={"Authorization": "Bearer " + key.raw})
    return status


async def test_revocation_holds_on_every_thread(env):
    """Once any request is refused after a revocation, every later one is,
    whichever thread serves it (each request is a new connection, spread
    over the threads by the kernel) and whether or not its API key cache
    held the key."""
    b = env.broker(env.reg, ["--threads", "2"], log_level="info")
    k = env.reg.create_key("ws_threads", name="revoke-me")
    deadline = asyncio.get_running_loop().time() + h.T(3)
    while get_key(b.port, k) != 200:
        h.check(asyncio.get_running_loop().time() < deadline, "new key accepted")
        await asyncio.sleep(0.05)
    # Now one thread has the key in its cache and the other, likely, not:
    # a miss there reads the registry itself.
    env.reg.revoke(k.kid)
    deadline = asyncio.get_running_loop().time() + h.T(3)
    while get_key(b.port, k) != 401:
        h.check(asyncio.get_running_loop().time() < deadline, "revocation takes effect")
    h.eq([get_key(b.port, k) for _ in range(40)], [401] * 40,
         "refused on every thread from then on")


h.main(setup, [test_one_broker_over_two_threads, test_revocation_holds_on_every_thread])
