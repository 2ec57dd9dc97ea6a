#!/usr/bin/python3
"""21-ratelimit: the HTTP API's per-workspace limits (SPEC 5): the default
3000/min (live) and 100/min (sandbox) with bursts of 30/s and 5/s, small
configured limits to exhaust a minute window (X-RateLimit-Remaining down to
0, then 429 with Retry-After matching X-RateLimit-Reset), the burst cap
refilling within a second, refused requests (400, 403, 404-free paths)
counting, 401s not counting and carrying no headers, workspaces counted
apart, limits changed by SIGHUP, and the rate-limit metric."""

import asyncio
import importlib.util
import os
import signal
import time

import lkharness as h
from lkharness import PUB, SUB

_spec = importlib.util.spec_from_file_location(
    "http_api", os.path.join(os.path.dirname(os.path.abspath(__file__)), "20-http-api.py"))
api = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(api)


def setup(env):
    env.reg = env.registry()
    env.live = env.reg.create_key("ws_rl_live", name="live")
    env.live2 = env.reg.create_key("ws_rl_live", name="live second key", scopes=SUB)
    env.live_other = env.reg.create_key("ws_rl_other", name="other live")
    env.sbx = env.reg.create_key("ws_rl_sbx", name="sandbox", sandbox=True)
    env.defaults = api.Client(env.broker(env.reg, log_level="info"))
    env.minute = api.Client(env.broker(env.reg, ["--api-rate-live", "6/1000",
                                                 "--api-rate-sandbox", "4/1000"],
                                       log_level="info"))
    env.burst = api.Client(env.broker(env.reg, ["--api-rate-live", "1000/3",
                                                "--api-rate-sandbox", "1000/2"],
                                      log_level="info"))
    env.conf = env.path("rl.conf")
    with open(env.conf, "w") as f:
        f.write("api-rate-live 2/1000\n")
    env.reload = api.Client(env.broker(env.reg, ["--config", env.conf], log_level="info"))


def get_key(client, key, path="/v1/key"):
    return client.request("GET", path, key=key)


def remaining(r):
    return int(r.headers["x-ratelimit-remaining"])


def limited(r, limit, what):
    doc = api.error(r, 429, "rate_limited", what)
    api.has_rate_headers(r, limit, what)
    h.eq(remaining(r), 0, "%s: Remaining" % what)
    ra = r.headers.get("retry-after", "")
    h.check(ra.isdigit() and int(ra) >= 1, "%s: Retry-After is a positive integer: %r" % (what, ra))
    return doc, int(ra)


async def test_default_limits(env):
    r = get_key(env.defaults, env.live)
    api.has_rate_headers(r, 3000, "live default")
    h.eq(remaining(r), 2999, "first request of a live workspace")
    r = get_key(env.defaults, env.sbx)
    api.has_rate_headers(r, 100, "sandbox default")
    h.eq(remaining(r), 99, "first request of a sandbox workspace")


async def test_default_burst(env):
    """The default bursts: 30/s live, 5/s sandbox (timing-tolerant: only
    what the refill rate allows may pass)."""
    for key, per_second, tries in ((env.live_other, 30, 45), (env.sbx, 5, 12)):
        conn = env.defaults.connection()
        t0 = time.monotonic()
        codes = []
        try:
            for _ in range(tries):
                codes.append(env.defaults.request("GET", "/v1/key", key=key, conn=conn).status)
        finally:
            conn.close()
        elapsed = time.monotonic() - t0
        passed = codes.count(200)
        h.eq(set(codes) - {200, 429}, set(), "only 200 and 429")
        h.check(passed <= per_second + per_second * elapsed + 1,
                "%d of %d passed in %.2fs against a burst of %d/s" % (passed, tries, elapsed,
                                                                        per_second))
        if elapsed < 0.3:
            h.check(429 in codes, "a fast burst of %d hits the %d/s cap" % (tries, per_second))


async def test_minute_window(env):
    c = env.minute
    t0 = h.now()
    seen = []
    for i in range(6):
        r = get_key(c, env.live)
        h.eq(r.status, 200, "request %d within the window" % (i + 1))
        api.has_rate_headers(r, 6, "minute window")
        seen.append((remaining(r), int(r.headers["x-ratelimit-reset"])))
    h.eq([s[0] for s in seen], [5, 4, 3, 2, 1, 0], "Remaining counts down to 0")
    resets = {s[1] for s in seen}
    h.eq(len(resets), 1, "one Reset for the whole window")
    reset = resets.pop()
    h.check(t0 + 59 <= reset <= t0 + 61, "Reset %d is a minute after the first request (%d)"
            % (reset, t0))
    for path, method, body in (("/v1/key", "GET", None),
                               ("/v1/tokens", "POST", {"capability": {"a": [SUB]}}),
                               (api.chan_path("c:x"), "POST", {"data": 1})):
        r = c.request(method, path, body, key=env.live)
        _, ra = limited(r, 6, "%s over the minute limit" % path)
        h.eq(int(r.headers["x-ratelimit-reset"]), reset, "Reset of a 429")
        h.check(abs(ra - (reset - h.now())) <= 1,
                "Retry-After %d matches Reset - now (%d)" % (ra, reset - h.now()))
    # Every key of the workspace shares the window.
    r = get_key(c, env.live2)
    limited(r, 6, "another key of the same workspace")
    # Other workspaces are counted apart; sandbox ones with their own limit.
    r = get_key(c, env.live_other)
    h.eq((r.status, remaining(r)), (200, 5), "another live workspace")
    for i in range(4):
        h.eq(get_key(c, env.sbx).status, 200, "sandbox request %d" % (i + 1))
    limited(get_key(c, env.sbx), 4, "sandbox over its limit")


async def test_refused_requests_count_401_does_not(env):
    c = env.minute
    k = env.reg.create_key("ws_rl_count", name="counting", scopes=SUB)
    await api.wait_key_known(env, k, c)          # the 200 that ends the wait counts
    r = c.request("POST", "/v1/tokens", {"capability": {"a": ["realtime:nope"]}}, key=k)
    h.eq((r.status, remaining(r)), (400, 4), "a 400 counts")
    r = c.request("POST", api.chan_path("c:x"), {"data": 1}, key=k)
    h.eq((r.status, remaining(r)), (403, 3), "a 403 counts")
    for _ in range(5):
        r = c.request("GET", "/v1/key", headers={"Authorization": "Bearer " + k.raw[:-1] + "x"})
        h.eq(r.status, 401, "bad key")
        api.no_rate_headers(r, "401")
    r = c.request("GET", "/v1/nowhere", key=k)
    h.eq(r.status, 404, "unknown path")
    api.no_rate_headers(r, "404 before authentication")
    r = get_key(c, k)
    h.eq((r.status, remaining(r)), (200, 2), "401s and 404s did not count")


async def test_burst_refills(env):
    c = env.burst
    conn = c.connection()
    try:
        t0 = time.monotonic()
        codes = [c.request("GET", "/v1/key", key=env.live, conn=conn) for _ in range(5)]
        elapsed = time.monotonic() - t0
    finally:
        conn.close()
    statuses = [r.status for r in codes]
    if elapsed < 0.3:
        h.eq(statuses[:3], [200, 200, 200], "the burst of 3 passes")
        h.check(429 in statuses[3:], "then the cap refuses: %r" % statuses)
    refused = [r for r in codes if r.status == 429]
    for r in refused:
        h.eq(r.json(), {"error": "rate limit exceeded: 3 requests per second for this "
                                 "workspace", "code": "rate_limited"}, "429 body")
        h.eq(r.headers.get("retry-after"), "1", "Retry-After of the per-second cap")
        api.has_rate_headers(r, 1000, "burst 429")
    h.eq([remaining(r) for r in codes], [999 - i for i in range(5)],
         "every request counts in the minute window, refused ones included")
    await asyncio.sleep(1.1)
    h.eq(get_key(c, env.live).status, 200, "the bucket refills within a second")
    # Sandbox workspaces have their own, smaller cap.
    statuses = [get_key(c, env.sbx).status for _ in range(4)]
    h.eq(statuses[0], 200, "first sandbox request")
    h.check(statuses.count(200) <= 3, "at most 2 (+refill) pass: %r" % statuses)


async def test_reload_changes_limits(env):
    c = env.reload
    h.eq([get_key(c, env.live).status for _ in range(3)], [200, 200, 429],
         "limit 2 from the config file")
    with open(env.conf, "w") as f:
        f.write("api-rate-live 10/1000\n")
    mark = len(c.b.lines)
    c.b.proc.send_signal(signal.SIGHUP)
    c.b.wait_log(lambda o: o.get("msg") == "reloaded", h.T(5))
    r = get_key(c, env.live)
    h.eq(r.status, 200, "allowed after raising the limit")
    api.has_rate_headers(r, 10, "after SIGHUP")
    h.eq(remaining(r), 6, "the window's count survives the reload (4 used)")
    h.check(len(c.b.lines) > mark, "reload logged")


async def test_metric(env):
    r = env.minute.request("GET", "/metrics")
    text = r.body.decode()
    lines = [l for l in text.splitlines() if l.startswith("latchkey_api_rate_limited_total")]
    vals = {l.split("{")[1].split("}")[0]: float(l.split()[-1]) for l in lines}
    h.check(vals.get('limit="minute"', 0) >= 5, "per-minute refusals counted: %r" % vals)
    r = env.burst.request("GET", "/metrics")
    lines = [l for l in r.body.decode().splitlines()
             if l.startswith('latchkey_api_rate_limited_total{limit="second"}')]
    h.check(lines and float(lines[0].split()[-1]) >= 1, "per-second refusals counted: %r" % lines)


h.main(setup, [test_default_limits, test_default_burst, test_minute_window,
               test_refused_requests_count_401_does_not, test_burst_refills,
               test_reload_changes_limits, test_metric])
