#!/usr/bin/python3
"""12-http: the HTTP side of the listener the WebSocket tests rely on:
/healthz, JSON 404s before authentication, 405 with Allow, Prometheus
/metrics whose connection counters move, and a server-side publish reaching
WebSocket subscribers with from null (SPEC 4, 5)."""

import json
import urllib.parse

from prometheus_client.parser import text_string_to_metric_families

import lkharness as h
from lkharness import BOTH


def setup(env):
    env.reg = env.registry()
    env.key = env.reg.create_key("ws_http")
    env.b = env.broker(env.reg)


def get(env, path, method="GET", **kw):
    return h.http_request(env.b.port, method, path, **kw)


def json_body(status, headers, body, want_status):
    h.eq(status, want_status, "status")
    h.check(headers.get("content-type", "").startswith("application/json"),
            "JSON content type, got %r" % headers.get("content-type"))
    return json.loads(body)


async def test_healthz(env):
    doc = json_body(*get(env, "/healthz"), 200)
    h.eq(doc, {"status": "ok"}, "healthz body")


async def test_unknown_path_404(env):
    for path in ("/nope", "/v1/nope", "/v1/realtimex", "/healthz/x",
                 "/nope?access_token=abc"):
        doc = json_body(*get(env, path), 404)
        h.eq(doc.get("code"), "not_found", "code for %s" % path)
        h.check(isinstance(doc.get("error"), str) and doc["error"], "error message")
    doc = json_body(*get(env, "/v1/nothing-here", "POST", body=b"{}",
                         headers={"Authorization": "Bearer lk_live_bogus"}), 404)
    h.eq(doc.get("code"), "not_found", "404 before any authentication")


async def test_method_not_allowed(env):
    status, headers, body = get(env, "/healthz", "POST", body=b"")
    doc = json_body(status, headers, body, 405)
    h.eq(doc.get("code"), "method_not_allowed", "code")
    h.check("GET" in headers.get("allow", ""), "Allow header lists GET: %r" % headers.get("allow"))


def scrape(env):
    status, headers, body = get(env, "/metrics")
    h.eq(status, 200, "/metrics status")
    h.check(headers.get("content-type", "").startswith("text/plain"),
            "text/plain content type, got %r" % headers.get("content-type"))
    values = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            if "connection" in s.name:
                key = s.name + json.dumps(s.labels, sort_keys=True)
                values[key] = s.value
    return values


async def test_metrics_connection_counters(env):
    before = scrape(env)
    h.check(before, "some metric names mention connections")
    conns = [(await h.connect_ok(env, env.b, h.mint(env.key)))[0] for _ in range(3)]
    during = scrape(env)
    moved = {k: during[k] - before.get(k, 0) for k in during if during[k] - before.get(k, 0) >= 3}
    h.check(moved, "a connection metric grew by 3: before %r, during %r" % (before, during))
    print("     moved: %s" % ", ".join(sorted(moved)))
    for c in conns:
        await c.close()
    await h.connect_refused(env, env.b, "garbage", "unauthorized", 4401)
    after = scrape(env)
    h.check(after != during, "connection metrics change when connections close or are refused")


async def test_server_side_publish(env):
    ch = "srv:" + h.channel().split(":")[1]
    c, _ = await h.connect_ok(env, env.b, h.mint(env.key, {"srv:*": BOTH}, sub="web"))
    r = await c.request({"op": "subscribe", "id": 1, "channel": ch})
    h.eq(r["op"], "subscribed", "subscribe")
    data = '{"big":12345678901234567890,"s":"\\u00e9\\n"}'
    path = "/v1/channels/%s/messages" % urllib.parse.quote(ch, safe="")
    h.check("%3A" in path, "the channel is percent-encoded in the path")
    status, headers, body = get(env, path, "POST", body=('{"data":%s}' % data).encode(),
                                headers={"Authorization": "Bearer " + env.key.raw,
                                         "Content-Type": "application/json"})
    doc = json_body(status, headers, body, 202)
    h.eq(doc, {"seq": 1}, "server-side publish reply")
    m = await c.expect("message", channel=ch, seq=1)
    h.eq(m.rawf("from"), "null", "from of a server-side publish")
    h.eq(m.rawf("data"), data, "data byte for byte")


h.main(setup, [test_healthz, test_unknown_path_404, test_method_not_allowed,
               test_metrics_connection_counters, test_server_side_publish])
