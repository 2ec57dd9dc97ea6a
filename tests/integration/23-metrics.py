#!/usr/bin/python3
"""23-metrics: GET /metrics parsed with prometheus_client's own text parser:
valid exposition (HELP and TYPE for every family, histogram buckets
cumulative with +Inf equal to _count), every metric the operations guide
relies on present with its type, and each of them moving when its event
happens: connections (current, total, refused by reason), token
verifications by outcome, subscriptions, channels, messages published and
delivered, bytes out, slow-consumer drops, WebSocket and API rate-limit
hits, revocation kicks, API requests by route and status, and the
enqueue-to-write latency histogram."""

import asyncio
import importlib.util
import json
import os
import secrets
import time

from prometheus_client.parser import text_string_to_metric_families

import lkharness as h
from lkharness import BOTH, PUB, SUB

_spec = importlib.util.spec_from_file_location(
    "http_api", os.path.join(os.path.dirname(os.path.abspath(__file__)), "20-http-api.py"))
api = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(api)

# (metric family as declared by its TYPE line, type) that must exist.
REQUIRED = [
    ("latchkey_connections", "gauge"),
    ("latchkey_connections_total", "counter"),
    ("latchkey_connections_refused_total", "counter"),
    ("latchkey_token_verifications_total", "counter"),
    ("latchkey_subscriptions", "gauge"),
    ("latchkey_channels", "gauge"),
    ("latchkey_messages_published_total", "counter"),
    ("latchkey_messages_delivered_total", "counter"),
    ("latchkey_bytes_out_total", "counter"),
    ("latchkey_slow_consumer_drops_total", "counter"),
    ("latchkey_rate_limited_total", "counter"),
    ("latchkey_api_rate_limited_total", "counter"),
    ("latchkey_revocation_kicks_total", "counter"),
    ("latchkey_api_requests_total", "counter"),
    ("latchkey_api_key_checks_total", "counter"),
    ("latchkey_delivery_latency_seconds", "histogram"),
]


class Scrape:
    def __init__(self, text):
        self.text = text
        self.families = list(text_string_to_metric_families(text))
        self.types = {}
        self.values = {}
        for fam in self.families:
            for s in fam.samples:
                self.types[s.name] = fam.type
                self.values[(s.name, frozenset(s.labels.items()))] = s.value

    def get(self, name, **labels):
        key = (name, frozenset(labels.items()))
        h.check(key in self.values, "sample %s%r exists" % (name, labels))
        return self.values[key]

    def find(self, name, **labels):
        return self.values.get((name, frozenset(labels.items())), 0.0)


def scrape(env):
    r = env.client.request("GET", "/metrics")
    h.eq(r.status, 200, "/metrics")
    h.check(r.headers.get("content-type", "").startswith("text/plain; version=0.0.4"),
            "exposition format 0.0.4: %r" % r.headers.get("content-type"))
    return Scrape(r.body.decode())


def setup(env):
    env.reg = env.registry()
    env.key = env.reg.create_key("ws_metrics")
    env.sub_only = env.reg.create_key("ws_metrics", name="reader", scopes=SUB)
    env.doomed = env.reg.create_key("ws_metrics", name="to revoke")
    env.sbx = env.reg.create_key("ws_metrics_sbx", sandbox=True)
    b = env.broker(env.reg, ["--publish-rate", "5", "--publish-burst", "5",
                             "--rate-limit-close", "0", "--send-queue-messages", "32",
                             "--send-queue-bytes", "65536", "--api-rate-live", "100000/100000",
                             "--api-rate-sandbox", "2/100"], log_level="info")
    env.client = api.Client(b)


async def test_exposition_valid(env):
    s = scrape(env)
    declared = {}
    helped = set()
    for line in s.text.splitlines():
        parts = line.split()
        if line.startswith("# TYPE "):
            declared[parts[2]] = parts[3]
        elif line.startswith("# HELP "):
            helped.add(parts[2])
        elif line and not line.startswith("#"):
            name = line.split("{")[0].split()[0]
            fam = name
            for suffix in ("_bucket", "_sum", "_count"):
                if name.endswith(suffix) and name[:-len(suffix)] in declared:
                    fam = name[:-len(suffix)]
            h.check(fam in declared and fam in helped,
                    "%s has HELP and TYPE lines before its samples" % name)
    for name, typ in REQUIRED:
        h.check(name in declared, "metric %s is declared" % name)
        h.eq(declared[name], typ, "type of %s" % name)
    for name in ("latchkey_delivery_latency_seconds_sum", "latchkey_delivery_latency_seconds_count"):
        h.eq(s.types.get(name), "histogram", "%s parsed as part of the histogram" % name)
    for reason in ("unauthorized", "token_expired", "forbidden", "origin", "capacity"):
        s.get("latchkey_connections_refused_total", reason=reason)
    for result in ("ok", "expired", "invalid", "forbidden"):
        s.get("latchkey_token_verifications_total", result=result)
    for limit in ("minute", "second"):
        s.get("latchkey_api_rate_limited_total", limit=limit)


def check_histogram(s):
    buckets = []
    for (name, labels), v in s.values.items():
        if name == "latchkey_delivery_latency_seconds_bucket":
            le = dict(labels)["le"]
            buckets.append((float("inf") if le == "+Inf" else float(le), v))
    buckets.sort()
    h.check(len(buckets) >= 10, "latency histogram has buckets: %r" % buckets)
    h.eq(buckets[-1][0], float("inf"), "last bucket is +Inf")
    values = [v for _, v in buckets]
    h.eq(values, sorted(values), "buckets are cumulative")
    count = s.get("latchkey_delivery_latency_seconds_count")
    h.eq(buckets[-1][1], count, "+Inf bucket equals _count")
    h.check(s.get("latchkey_delivery_latency_seconds_sum") >= 0, "_sum")
    return count


def slow_subscriber(port, tok, ch):
    raw = h.RawWS(port, tok, rcvbuf=4096)
    raw.send_frame(0x1, json.dumps({"op": "subscribe", "id": 1, "channel": ch}).encode())
    for _ in range(4):
        m = raw.read_message(h.T(5))
        h.check(m is not None and m[0] == 0x1, "slow subscriber got text frames")
        if any(json.loads(l).get("op") == "subscribed" for l in m[1].decode().split("\n") if l):
            return raw
    raise h.Failure("slow subscriber not subscribed")


async def test_counters_move(env):
    b = env.client.b
    before = scrape(env)
    check_histogram(before)
    ch = "m:" + secrets.token_hex(4)

    a, _ = await env.client.ws(env, h.mint(env.key, {"m:*": BOTH}, sub="a"))
    c, _ = await env.client.ws(env, h.mint(env.key, {"m:*": BOTH}, sub="c"))
    await h.connect_refused(env, b, "garbage", "unauthorized", 4401)
    await h.connect_refused(env, b, h.mint(env.key, iat=h.now() - 700, ttl=600),
                            "token_expired", 4401)
    await h.connect_refused(env, b, h.mint(env.sub_only, {"m:*": [PUB]}), "forbidden", 4403)
    for conn in (a, c):
        h.eq((await conn.request({"op": "subscribe", "id": 1, "channel": ch}))["op"],
             "subscribed", "subscribe")
    mid = scrape(env)
    h.eq(mid.get("latchkey_connections") - before.get("latchkey_connections"), 2,
         "open connections")
    h.eq(mid.get("latchkey_subscriptions") - before.get("latchkey_subscriptions"), 2,
         "subscriptions")
    h.eq(mid.get("latchkey_channels") - before.get("latchkey_channels"), 1, "channels")

    await a.send({"op": "publish", "id": 2, "channel": ch, "data": {"x": 1}})
    await c.expect("message", channel=ch, seq=1)
    r = env.client.request("POST", api.chan_path(ch), {"data": 2}, key=env.key)
    h.eq(r.status, 202, "server-side publish")
    await c.expect("message", channel=ch, seq=2)
    # a's own copies (and its ack) arrive in any order
    got = [await a.recv() for _ in range(3)]
    h.eq(sorted(m["op"] for m in got), ["ack", "message", "message"], "a's frames")

    codes = []
    for i in range(12):
        m = await c.request({"op": "publish", "id": 100 + i, "channel": ch, "data": i})
        while m["op"] == "message":
            m = await c.recv()
        codes.append(m.get("code", m["op"]))
    h.check("rate_limited" in codes, "publishes beyond 5/s are refused: %r" % codes)

    h.eq(env.client.request("GET", "/v1/key", key=env.key).status, 200, "GET /v1/key")
    h.eq(env.client.request("GET", "/v1/key", key="lk_live_nope").status, 401, "401")
    h.eq(env.client.request("GET", "/v1/nope").status, 404, "404")
    h.eq([env.client.request("GET", "/v1/key", key=env.sbx).status for _ in range(3)],
         [200, 200, 429], "sandbox limit 2/min")

    doomed, _ = await env.client.ws(env, h.mint(env.doomed, {"m:*": BOTH}))
    env.reg.revoke(env.doomed.kid)
    code, _ = await doomed.until_closed(h.T(3))
    h.eq(code, 4403, "revoked key's connection closed")

    slow_ch = "slow:" + secrets.token_hex(4)
    raw = slow_subscriber(b.port, h.mint(env.key, {"slow:*": BOTH}), slow_ch)
    conn = env.client.connection()
    pad = "s" * 8000
    try:
        for i in range(300):
            r = env.client.request("POST", api.chan_path(slow_ch),
                                   '{"data":{"i":%d,"p":"%s"}}' % (i, pad), key=env.key,
                                   conn=conn)
            h.eq(r.status, 202, "flood publish %d" % i)
            if i % 50 == 49 and scrape(env).get("latchkey_slow_consumer_drops_total") > \
                    before.get("latchkey_slow_consumer_drops_total"):
                break
    finally:
        conn.close()
        raw.close()

    after = scrape(env)
    d = lambda name, **lb: after.find(name, **lb) - before.find(name, **lb)
    expect_min = [
        (("latchkey_connections_total",), 3),
        (("latchkey_connections_refused_total", {"reason": "unauthorized"}), 1),
        (("latchkey_connections_refused_total", {"reason": "token_expired"}), 1),
        (("latchkey_connections_refused_total", {"reason": "forbidden"}), 1),
        (("latchkey_token_verifications_total", {"result": "ok"}), 3),
        (("latchkey_token_verifications_total", {"result": "invalid"}), 1),
        (("latchkey_token_verifications_total", {"result": "expired"}), 1),
        (("latchkey_token_verifications_total", {"result": "forbidden"}), 1),
        (("latchkey_messages_published_total",), 2),
        (("latchkey_messages_delivered_total",), 4),
        (("latchkey_bytes_out_total",), 200),
        (("latchkey_rate_limited_total",), 1),
        (("latchkey_revocation_kicks_total",), 1),
        (("latchkey_slow_consumer_drops_total",), 1),
        (("latchkey_api_rate_limited_total", {"limit": "minute"}), 1),
        (("latchkey_api_requests_total", {"route": "/v1/key", "status": "200"}), 3),
        (("latchkey_api_requests_total", {"route": "/v1/key", "status": "401"}), 1),
        (("latchkey_api_requests_total", {"route": "/v1/key", "status": "429"}), 1),
        (("latchkey_api_requests_total", {"route": "unknown", "status": "404"}), 1),
        (("latchkey_api_requests_total",
          {"route": "/v1/channels/{channel}/messages", "status": "202"}), 2),
        (("latchkey_api_requests_total", {"route": "/metrics", "status": "200"}), 1),
        (("latchkey_api_key_checks_total", {"result": "cached"}), 2),
        (("latchkey_api_key_checks_total", {"result": "refused"}), 1),
        (("latchkey_delivery_latency_seconds_count",), 4),
    ]
    moved = {}
    for (spec, least) in expect_min:
        name, labels = spec[0], (spec[1] if len(spec) > 1 else {})
        delta = d(name, **labels)
        moved["%s%s" % (name, labels or "")] = delta
        h.check(delta >= least, "%s%r moved by %r, expected at least %d"
                % (name, labels, delta, least))
    count = check_histogram(after)
    h.check(after.get("latchkey_delivery_latency_seconds_sum") >
            before.get("latchkey_delivery_latency_seconds_sum"), "latency _sum grew")
    print("     latency observations: %d" % count)

    for conn in (a, c):
        await conn.close()
    deadline = time.monotonic() + h.T(3)
    while True:
        s = scrape(env)
        if s.get("latchkey_connections") == before.get("latchkey_connections") and \
                s.get("latchkey_subscriptions") == before.get("latchkey_subscriptions"):
            break
        h.check(time.monotonic() < deadline, "gauges fall back after the connections close")
        await asyncio.sleep(0.05)


h.main(setup, [test_exposition_valid, test_counters_move])
