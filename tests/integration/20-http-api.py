#!/usr/bin/python3
"""20-http-api: the HTTP API of SPEC 5 against the real broker: token
exchange (then a WebSocket connect with the token), server-side publish
reaching a subscriber with from null and the channel's seq (64-bit integers
intact), GET /v1/key, 404 before authentication, 405 with Allow, 413, the
401 body for every kind of bad key (revocation included, through the
broker's key cache), 400s naming the field, 403 naming the scope, the
X-RateLimit headers with their default limits, no CORS, the access log,
and the CLI's `token mint --remote`, `publish` and `login` end to end.

The tests marked SHARED run again over TLS in 22-tls.py, through the same
Client class."""

import asyncio
import http.client
import json
import os
import secrets
import socket
import subprocess
import time
import urllib.parse
import zlib

import jwt
import websockets

import lkharness as h
from lkharness import BOTH, PUB, SUB

INVALID = {"error": "Invalid credentials", "code": "not_authenticated"}
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
BODY_MAX = 65536
# The functional tests send far more than 30 requests a second per
# workspace; they keep the default per-minute limits (whose headers they
# check) and lift only the burst cap. 21-ratelimit tests the limits.
RATE_ARGS = ["--api-rate-live", "3000/1000000", "--api-rate-sandbox", "100/1000000"]


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise h.Failure("response body is not JSON: %r" % self.body[:200]) from None

    def __repr__(self):
        return "<%d %r>" % (self.status, self.body[:160])


class _TLSConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1, checking the certificate against "localhost"."""

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname="localhost")


class Client:
    """HTTP and WebSocket access to one broker, plain or over TLS (`tls` is
    an ssl.SSLContext that trusts the broker's certificate)."""

    def __init__(self, broker, tls=None):
        self.b = broker
        self.tls = tls

    @property
    def base_url(self):
        return "%s://127.0.0.1:%d" % ("https" if self.tls else "http", self.b.port)

    def connection(self, timeout=None):
        t = h.T(5) if timeout is None else timeout
        if self.tls:
            return _TLSConnection("127.0.0.1", self.b.port, timeout=t, context=self.tls)
        return http.client.HTTPConnection("127.0.0.1", self.b.port, timeout=t)

    def request(self, method, path, body=None, key=None, headers=None, conn=None):
        hd = dict(headers or {})
        if key is not None:
            hd["Authorization"] = "Bearer " + (key.raw if isinstance(key, h.ApiKey) else key)
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hd.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        c = conn or self.connection()
        try:
            c.request(method, path, body=body, headers=hd)
            r = c.getresponse()
            return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            if conn is None:
                c.close()

    async def ws(self, env, token, via="bearer", **kw):
        """Connects with `token`; returns (conn, welcome)."""
        if not self.tls:
            return await h.connect_ok(env, self.b, token, via=via, **kw)
        sp, hd, q = h.offer(token, via)
        url = "wss://127.0.0.1:%d/v1/realtime%s" % (self.b.port, "?" + q if q else "")
        ws = await asyncio.wait_for(websockets.connect(
            url, subprotocols=sp, extra_headers=hd, ssl=self.tls, server_hostname="localhost",
            ping_interval=None, close_timeout=h.T(2), open_timeout=h.T(5), max_size=None,
            max_queue=None, compression=None), h.T(6))
        c = h.Conn(ws)
        env.conns.append(c)
        w = await c.recv()
        h.eq(w.get("op"), "welcome", "first frame over wss")
        h.eq(ws.subprotocol, "latchkey.v1", "selected subprotocol over wss")
        return c, w


# ------------------------------------------------------------------ helpers

def error(resp, status, code, what=""):
    """Checks an error response: status, JSON {"error","code"} and nothing else."""
    h.eq(resp.status, status, "status of %s (%r)" % (what, resp))
    h.check(resp.headers.get("content-type", "").startswith("application/json"),
            "%s: JSON content type, got %r" % (what, resp.headers.get("content-type")))
    doc = resp.json()
    h.check(isinstance(doc, dict) and set(doc) == {"error", "code"},
            "%s: error body is exactly {error, code}: %r" % (what, doc))
    h.check(isinstance(doc["error"], str) and doc["error"], "%s: error message" % what)
    h.eq(doc["code"], code, "code of %s" % what)
    return doc


def has_rate_headers(resp, limit=None, what=""):
    for name in RATE_HEADERS:
        h.check(name in resp.headers, "%s: %s present (%r)" % (what, name, resp.headers))
        h.check(resp.headers[name].isdigit(), "%s: %s is an integer" % (what, name))
    if limit is not None:
        h.eq(int(resp.headers["x-ratelimit-limit"]), limit, "%s: X-RateLimit-Limit" % what)
    reset = int(resp.headers["x-ratelimit-reset"])
    h.check(h.now() - 1 <= reset <= h.now() + 61,
            "%s: X-RateLimit-Reset %d is within the next minute" % (what, reset))


def no_rate_headers(resp, what=""):
    present = [n for n in RATE_HEADERS + ("retry-after",) if n in resp.headers]
    h.eq(present, [], "%s: rate-limit headers" % what)


def no_cors(resp, what=""):
    cors = [k for k in resp.headers if k.startswith("access-control-")]
    h.eq(cors, [], "%s: CORS headers" % what)


def log_objects(broker):
    """The broker's JSON log lines so far."""
    with broker.cond:
        lines = list(broker.lines)
    out = []
    for line in lines:
        try:
            o = json.loads(line)
        except ValueError:
            continue
        if isinstance(o, dict):
            out.append(o)
    return out


def canon_cap(cap):
    """Capabilities compare as pattern -> set of actions (the broker writes
    them in canonical order)."""
    return {k: sorted(v) for k, v in cap.items()}


def forge_key(env_name, kid, secret_hex):
    """A well-formed API key string (valid checksum) for any kid and secret."""
    body = "lk_%s_%s_%s" % (env_name, kid, secret_hex)
    raw = body + "_%08x" % (zlib.crc32(body.encode()) & 0xffffffff)
    h.remember(raw)
    return raw


def chan_path(ch):
    return "/v1/channels/%s/messages" % urllib.parse.quote(ch, safe="")


def exchange(env, key, body, client=None):
    return (client or env.client).request("POST", "/v1/tokens", body, key=key)


def token_of(resp):
    h.eq(resp.status, 200, "token exchange status (%r)" % resp)
    doc = resp.json()
    h.eq(sorted(doc), ["access_token", "expires_at", "token_type"], "token response fields")
    h.eq(doc["token_type"], "Bearer", "token_type")
    h.check(isinstance(doc["expires_at"], int), "expires_at is an integer")
    h.remember(doc["access_token"])
    return doc


def decode(key, tok, audience=None):
    opts = {"verify_aud": audience is not None}
    return jwt.decode(tok, key.public_pem, algorithms=["ES256"], audience=audience,
                      options=opts, leeway=5)


async def wait_key_known(env, key, client=None):
    """Keys created while a broker runs reach it within a second."""
    deadline = time.monotonic() + h.T(3)
    while True:
        r = (client or env.client).request("GET", "/v1/key", key=key)
        if r.status == 200:
            return
        h.check(time.monotonic() < deadline, "new key not accepted within 3 s: %r" % r)
        await asyncio.sleep(0.1)


def spawn(env, args=()):
    """Another broker on the same registry, with the same transport."""
    b = env.broker(env.reg, env.tls_args + RATE_ARGS + list(args), log_level="info")
    return Client(b, env.client.tls)


def make_env(env, tls=None, tls_args=()):
    env.reg = env.registry()
    env.key = env.reg.create_key("ws_api", name="backend \u00e9 \"q\"")
    env.sub_only = env.reg.create_key("ws_api", name="reader", scopes=SUB)
    env.sbx = env.reg.create_key("ws_apisbx", name="sandbox", sandbox=True)
    env.other = env.reg.create_key("ws_apiother", name="other")
    env.tls_args = list(tls_args)
    b = env.broker(env.reg, env.tls_args + RATE_ARGS, log_level="info")
    env.client = Client(b, tls)


def setup(env):
    make_env(env)


# -------------------------------------------------------------------- tests

async def test_healthz_metrics_no_rate_headers(env):
    r = env.client.request("GET", "/healthz")
    h.eq((r.status, r.json()), (200, {"status": "ok"}), "/healthz")
    no_rate_headers(r, "/healthz")
    r = env.client.request("GET", "/metrics", key=env.key)
    h.eq(r.status, 200, "/metrics status")
    h.check(r.headers.get("content-type", "").startswith("text/plain"), "/metrics is text")
    no_rate_headers(r, "/metrics")


async def test_unknown_path_404_before_auth(env):
    paths = ["/v1/token", "/v1/tokens/x", "/v1/keys", "/v1/key/x", "/v1/channels/x",
             "/v1/channels/x/message", "/v1/channels/x/messages/y", "/V1/tokens", "/nope",
             "/v1/channels/", "/v1/nothing?access_token=abc"]
    for path in paths:
        for method, body in (("GET", None), ("POST", b"{}")):
            for key in (None, "garbage", env.key):
                r = env.client.request(method, path, body, key=key)
                error(r, 404, "not_found", "%s %s" % (method, path))
                no_rate_headers(r, "404 for %s" % path)


async def test_method_not_allowed(env):
    cases = [("GET", "/v1/tokens", "POST"), ("PUT", "/v1/tokens", "POST"),
             ("POST", "/v1/key", "GET"), ("DELETE", "/v1/key", "GET"),
             ("GET", chan_path("c:x"), "POST"), ("PUT", chan_path("c:x"), "POST"),
             ("DELETE", chan_path("c:x"), "POST"), ("POST", "/healthz", "GET")]
    for method, path, allow in cases:
        r = env.client.request(method, path, key=env.key)
        error(r, 405, "method_not_allowed", "%s %s" % (method, path))
        h.eq(r.headers.get("allow"), allow, "Allow for %s %s" % (method, path))


async def test_no_cors(env):
    pre = env.client.request("OPTIONS", "/v1/tokens", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    error(pre, 405, "method_not_allowed", "CORS preflight")
    no_cors(pre, "preflight")
    r = exchange(env, env.key, {"capability": {"a": [SUB]}})
    r2 = env.client.request("POST", "/v1/tokens", {"capability": {"a": [SUB]}}, key=env.key,
                            headers={"Origin": "https://app.example"})
    for resp in (r, r2):
        token_of(resp)
        no_cors(resp, "token exchange")


async def test_body_too_large(env):
    big = b'{"capability":{"a":["realtime:subscribe"]},"x":"' + b"y" * BODY_MAX + b'"}'
    for path in ("/v1/tokens", chan_path("c:big")):
        r = env.client.request("POST", path, big, key=env.key)
        error(r, 413, "too_large", "%d-byte body to %s" % (len(big), path))
        no_rate_headers(r, "413")
    # Exactly the limit is read and judged on its content.
    pad = BODY_MAX - len('{"data":""}')
    body = ('{"data":"%s"}' % ("z" * pad)).encode()
    h.eq(len(body), BODY_MAX, "test body size")
    r = env.client.request("POST", chan_path("c:big"), body, key=env.key)
    h.eq(r.status, 202, "a body of exactly 64 KiB is accepted (%r)" % r)


async def test_invalid_credentials(env):
    kid = env.key.kid
    secret = secrets.token_hex(32)
    raw = env.key.raw
    bad = {
        "Basic scheme": "Basic " + raw,
        "empty bearer": "Bearer ",
        "not a key": "Bearer hello",
        "bad checksum": "Bearer " + raw[:-1] + ("0" if raw[-1] != "0" else "1"),
        "truncated": "Bearer " + raw[:-3],
        "unknown kid": "Bearer " + forge_key("live", secrets.token_hex(8), secret),
        "wrong secret": "Bearer " + forge_key("live", kid, secret),
        "wrong env": "Bearer " + forge_key("sbx", kid, env.key.secret_hex),
        "uppercase": "Bearer " + raw.upper(),
        "trailing junk": "Bearer " + raw + "x",
        "huge": "Bearer " + "a" * 4000,
    }
    for what, auth in bad.items():
        for method, path, body in (("GET", "/v1/key", None),
                                   ("POST", "/v1/tokens", {"capability": {"a": [SUB]}}),
                                   ("POST", chan_path("c:auth"), {"data": 1})):
            r = env.client.request(method, path, body, headers={"Authorization": auth})
            doc = error(r, 401, "not_authenticated", "%s to %s" % (what, path))
            h.eq(doc, INVALID, "401 body for %s" % what)
            no_rate_headers(r, "401")
            h.check(r.headers.get("www-authenticate", "").startswith("Bearer"),
                    "401 carries WWW-Authenticate: Bearer")
    r = env.client.request("GET", "/v1/key")
    error(r, 401, "not_authenticated", "no Authorization header")
    no_rate_headers(r, "401 without a key")


async def test_revoked_key_refused_despite_cache(env):
    k = env.reg.create_key("ws_api", name="short-lived")
    await wait_key_known(env, k)
    for _ in range(3):   # the second and third come from the key cache
        token_of(exchange(env, k, {"capability": {"a": [SUB]}}))
    env.reg.revoke(k.kid)
    deadline = time.monotonic() + h.T(2)
    while True:
        r = exchange(env, k, {"capability": {"a": [SUB]}})
        if r.status == 401:
            break
        h.check(time.monotonic() < deadline, "revoked key still accepted after 2 s: %r" % r)
        await asyncio.sleep(0.05)
    h.eq(error(r, 401, "not_authenticated", "revoked key"), INVALID, "401 body for a revoked key")
    no_rate_headers(r, "401 for a revoked key")
    h.eq(env.client.request("GET", "/v1/key", key=k).status, 401, "GET /v1/key, revoked key")


async def test_token_exchange(env):
    cap = {"chat:*": [SUB, PUB], "news": [SUB]}
    t0 = h.now()
    r = exchange(env, env.key, {"capability": cap, "ttl": 120, "client_id": "u1"})
    doc = token_of(r)
    has_rate_headers(r, 3000, "token exchange")
    h.eq(r.headers.get("cache-control"), "no-store", "Cache-Control of a token response")
    tok = doc["access_token"]
    h.eq(jwt.get_unverified_header(tok), {"alg": "ES256", "typ": "JWT", "kid": env.key.kid},
         "token header")
    claims = decode(env.key, tok)
    h.eq(canon_cap(claims["cap"]), canon_cap(cap), "cap claim")
    h.eq(claims["sub"], "u1", "sub claim")
    h.eq(claims["exp"] - claims["iat"], 120, "lifetime")
    h.eq(doc["expires_at"], claims["exp"], "expires_at equals exp")
    h.check(t0 - 1 <= claims["iat"] <= h.now() + 1, "iat is now")
    h.check("aud" not in claims, "no aud without --audience")

    c, w = await env.client.ws(env, tok)
    h.eq((w["client_id"], w["workspace"], w["expires_at"]), ("u1", "ws_api", claims["exp"]),
         "welcome for an exchanged token")
    m = await c.request({"op": "subscribe", "id": 1, "channel": "chat:lobby"})
    h.eq(m["op"], "subscribed", "subscribe with the exchanged token")
    m = await c.request({"op": "subscribe", "id": 2, "channel": "other"})
    h.eq((m["op"], m.get("code")), ("error", "forbidden"), "the token grants only its cap")

    doc = token_of(exchange(env, env.key, {"capability": {"a": [SUB]}}))
    claims = decode(env.key, doc["access_token"])
    h.eq(claims["exp"] - claims["iat"], 600, "default ttl")
    h.check("sub" not in claims, "no sub without client_id")
    doc = token_of(exchange(env, env.sbx, {"capability": {"*": [SUB]}, "ttl": 1,
                                           "client_id": None}))
    claims = decode(env.sbx, doc["access_token"])
    h.eq(claims["exp"] - claims["iat"], 1, "ttl 1 (sandbox key)")


async def test_token_exchange_bad_requests(env):
    cases = [
        (None, "body"),
        ("", "body"),
        ("not json", "body"),
        ("[]", "body"),
        ('{"capability":{"a":["realtime:subscribe"]}} x', "body"),
        ({}, "capability"),
        ({"capability": None}, "capability"),
        ({"capability": "chat:*"}, "capability"),
        ({"capability": {}}, "capability"),
        ({"capability": {"a": []}}, "capability"),
        ({"capability": {"a": ["realtime:fly"]}}, "capability"),
        ({"capability": {"a": ["realtime:*"]}}, "capability"),
        ({"capability": {"bad channel": [SUB]}}, "capability"),
        ({"capability": {"a*b": [SUB]}}, "capability"),
        ({"capability": {"a": [SUB]}, "ttl": 0}, "ttl"),
        ({"capability": {"a": [SUB]}, "ttl": -5}, "ttl"),
        ({"capability": {"a": [SUB]}, "ttl": 3601}, "ttl"),
        ({"capability": {"a": [SUB]}, "ttl": 1.5}, "ttl"),
        ({"capability": {"a": [SUB]}, "ttl": "600"}, "ttl"),
        ({"capability": {"a": [SUB]}, "ttl": None}, "ttl"),
        ({"capability": {"a": [SUB]}, "client_id": ""}, "client_id"),
        ({"capability": {"a": [SUB]}, "client_id": "x" * 129}, "client_id"),
        ({"capability": {"a": [SUB]}, "client_id": 7}, "client_id"),
        ({"capability": {"a": [SUB]}, "client_id": "a\u0000b"}, "NUL"),
        ({"capability": {"a": [SUB]}, "audience": "someone"}, "audience"),
        ({"capability": {"a": [SUB]}, "capabilities": {}}, "capabilities"),
        ('{"capability":{"a":["realtime:subscribe"]},"ttl":5,"ttl":6}', "ttl"),
    ]
    for body, field in cases:
        r = exchange(env, env.key, body)
        doc = error(r, 400, "bad_request", "token exchange with %r" % (body,))
        h.check(field in doc["error"], "the 400 for %r names %r: %r" % (body, field, doc["error"]))
        has_rate_headers(r, 3000, "400 after authentication")
    token_of(exchange(env, env.key, {"capability": {"a": [SUB]}, "ttl": 3600,
                                     "client_id": "x" * 128}))
    token_of(exchange(env, env.key, {"capability": {"a": [SUB]}, "client_id": "\u00e9t\u00e9"}))


async def test_token_exchange_beyond_scopes(env):
    for cap, missing in (({"a": [PUB]}, PUB), ({"a": [SUB], "b": [SUB, PUB]}, PUB),
                         ({"*": ["realtime:presence"]}, "realtime:presence")):
        r = exchange(env, env.sub_only, {"capability": cap})
        doc = error(r, 403, "forbidden", "cap %r beyond a subscribe-only key" % cap)
        h.check(missing in doc["error"], "the 403 names %s: %r" % (missing, doc["error"]))
        has_rate_headers(r, 3000, "403")
    token_of(exchange(env, env.sub_only, {"capability": {"*": [SUB]}}))


async def test_token_ttl_limit_and_audience(env):
    cl = spawn(env, ["--max-token-ttl", "300", "--audience", "app-1"])
    doc = token_of(exchange(env, env.key, {"capability": {"a": [SUB]}}, cl))
    claims = decode(env.key, doc["access_token"], audience="app-1")
    h.eq(claims["exp"] - claims["iat"], 300, "default ttl capped by --max-token-ttl")
    h.eq(claims["aud"], "app-1", "aud from --audience")
    await cl.ws(env, doc["access_token"])
    token_of(exchange(env, env.key, {"capability": {"a": [SUB]}, "ttl": 300,
                                     "audience": "app-1"}, cl))
    for body, field in (({"capability": {"a": [SUB]}, "ttl": 301}, "ttl"),
                        ({"capability": {"a": [SUB]}, "audience": "app-2"}, "audience")):
        doc = error(exchange(env, env.key, body, cl), 400, "bad_request", repr(body))
        h.check(field in doc["error"], "names %s: %r" % (field, doc["error"]))


async def test_publish_reaches_subscriber(env):
    ch = "srv:" + secrets.token_hex(4)
    c, _ = await env.client.ws(env, h.mint(env.key, {"srv:*": BOTH}, sub="web"))
    h.eq((await c.request({"op": "subscribe", "id": 1, "channel": ch}))["op"], "subscribed",
         "subscribe")
    datas = [
        '{"big":12345678901234567890,"neg":-9223372036854775809,"f":1.5e300,'
        '"s":"\\u00e9\\n\\ud83d\\ude00 \u00e9","a":[1,{"x":null}],"t":true}',
        '"just a string"', 'null', '[ 1 , 2 ]', '18446744073709551616', '{}',
    ]
    for i, data in enumerate(datas, 1):
        path = chan_path(ch) if i % 2 else "/v1/channels/%s/messages" % ch
        r = env.client.request("POST", path, '{ "data" : %s }' % data, key=env.key,
                               headers={"Content-Type": "application/json"})
        h.eq((r.status, r.json()), (202, {"seq": i}), "publish %d (%r)" % (i, r))
        has_rate_headers(r, 3000, "202")
        m = await c.expect("message", channel=ch, seq=i)
        h.eq(m.rawf("from"), "null", "from of a server-side publish")
        h.eq(m.rawf("data"), h.minify(data), "data byte for byte")
        h.check(isinstance(m.get("ts"), int), "ts")
    # The WebSocket side continues the same seq (the publisher is also a
    # subscriber: its message may come before its ack).
    await c.send({"op": "publish", "id": 9, "channel": ch, "data": 1})
    got = {m["op"]: m for m in (await c.recv(), await c.recv())}
    h.eq((got["ack"].get("seq"), got["message"].get("seq")), (len(datas) + 1,) * 2,
         "ws publish after http ones")


async def test_publish_isolated_by_workspace(env):
    ch = "iso:" + secrets.token_hex(4)
    mine, _ = await env.client.ws(env, h.mint(env.key, {"*": BOTH}))
    theirs, _ = await env.client.ws(env, h.mint(env.other, {"*": BOTH}))
    for c in (mine, theirs):
        h.eq((await c.request({"op": "subscribe", "id": 1, "channel": ch}))["op"],
             "subscribed", "subscribe")
    r = env.client.request("POST", chan_path(ch), {"data": {"to": "ws_api"}}, key=env.key)
    h.eq(r.status, 202, "publish")
    await mine.expect("message", channel=ch, seq=1)
    h.eq([m.raw for m in await theirs.ping()], [], "other workspace got nothing")
    r = env.client.request("POST", chan_path(ch), {"data": 2}, key=env.other)
    h.eq((r.status, r.json()), (202, {"seq": 1}), "seq is per workspace")


async def test_publish_bad_requests(env):
    ch = "bad:" + secrets.token_hex(4)
    for raw_path in ("/v1/channels/a%20b/messages", "/v1/channels/a%2Fb/messages",
                     "/v1/channels/%s/messages" % ("c" * 201), "/v1/channels/a%22b/messages",
                     "/v1/channels/caf%C3%A9/messages"):
        r = env.client.request("POST", raw_path, {"data": 1}, key=env.key)
        doc = error(r, 400, "bad_request", "publish to %s" % raw_path)
        h.check("channel" in doc["error"], "names the channel: %r" % doc["error"])
        has_rate_headers(r, 3000, "400 for a bad channel")
    # lws decodes the path and refuses a malformed escape itself, before
    # the API sees the request.
    for raw_path in ("/v1/channels/%zz/messages", "/v1/channels/a%2/messages",
                     "/v1/channels/a%00b/messages"):
        try:
            r = env.client.request("POST", raw_path, {"data": 1}, key=env.key)
        except (http.client.HTTPException, OSError):
            continue
        h.check(400 <= r.status < 500, "bad %%-encoding %s refused: %r" % (raw_path, r))
    r = env.client.request("POST", chan_path(ch), {"data": 1}, key=env.sub_only)
    doc = error(r, 403, "forbidden", "publish with a subscribe-only key")
    h.check(PUB in doc["error"], "the 403 names realtime:publish: %r" % doc["error"])
    has_rate_headers(r, 3000, "403")
    deep_ok = "[" * 64 + "]" * 64
    deep_bad = "[" * 65 + "]" * 65
    for body, field in ((None, "body"), ("", "body"), ("[]", "body"), ("nope", "body"),
                        ("{}", "data"), ('{"dat":1}', "dat"), ('{"data":1,"data":2}', "data"),
                        ('{"data":1,"name":"x"}', "name"), ('{"data":"\\ud800"}', ""),
                        (b'{"data":"\xff"}', "data"), ('{"data":%s}' % deep_bad, "data"),
                        ('{"data":01}', ""), ('{"data":"a\\u0000"}', "NUL")):
        r = env.client.request("POST", chan_path(ch), body, key=env.key)
        doc = error(r, 400, "bad_request", "publish body %r" % (body,))
        h.check(field in doc["error"], "the 400 for %r names %r: %r" % (body, field, doc["error"]))
    r = env.client.request("POST", chan_path(ch), '{"data":%s}' % deep_ok, key=env.key)
    h.eq((r.status, r.json()), (202, {"seq": 1}), "data nested 64 deep")


async def test_get_key(env):
    for key, env_name, limit in ((env.key, "live", 3000), (env.sbx, "sbx", 100)):
        r = env.client.request("GET", "/v1/key", key=key)
        h.eq(r.status, 200, "GET /v1/key")
        has_rate_headers(r, limit, "GET /v1/key (%s)" % env_name)
        doc = r.json()
        h.eq(sorted(doc), ["env", "kid", "name", "scopes", "workspace"], "fields")
        h.eq((doc["kid"], doc["workspace"], doc["env"]), (key.kid, key.workspace, env_name),
             "key details")
        h.eq(sorted(doc["scopes"]), sorted(BOTH), "scopes")
    h.eq(env.client.request("GET", "/v1/key", key=env.key).json()["name"],
         "backend \u00e9 \"q\"", "name with non-ASCII and quotes")
    h.eq(env.client.request("GET", "/v1/key", key=env.sub_only).json()["scopes"], [SUB],
         "scopes of a subscribe-only key")


async def test_default_rate_headers(env):
    for key, limit in ((env.key, 3000), (env.sbx, 100), (env.other, 3000)):
        first = env.client.request("GET", "/v1/key", key=key)
        second = env.client.request("GET", "/v1/key", key=key)
        for r in (first, second):
            has_rate_headers(r, limit, "defaults for %s" % key.workspace)
        a = int(first.headers["x-ratelimit-remaining"])
        b = int(second.headers["x-ratelimit-remaining"])
        h.eq(b, a - 1, "Remaining counts down")
        h.check(a <= limit - 1, "Remaining counts this request")


async def test_keep_alive(env):
    conn = env.client.connection()
    try:
        for _ in range(3):
            r = env.client.request("GET", "/v1/key", key=env.key, conn=conn)
            h.eq(r.status, 200, "GET on a kept-alive connection")
        r = env.client.request("POST", "/v1/tokens", {"capability": {"a": [SUB]}},
                               key=env.key, conn=conn)
        token_of(r)
        r = env.client.request("GET", "/healthz", conn=conn)
        h.eq(r.status, 200, "GET after a POST")
        r = env.client.request("POST", chan_path("ka:x"), {"data": 5}, key=env.key, conn=conn)
        h.eq(r.status, 202, "publish on the same client connection")
    finally:
        conn.close()


async def test_access_log(env):
    marker = secrets.token_hex(8)
    env.client.request("GET", "/v1/key?secret=%s" % marker, key=env.key)
    env.client.request("GET", "/v1/nothing-%s" % marker, key=env.key)
    env.client.request("POST", "/v1/tokens", {"capability": {"a": [SUB]}},
                       headers={"Authorization": "Bearer nope-" + marker})
    await asyncio.sleep(0.2)
    lines = [o for o in log_objects(env.client.b) if o.get("msg") == "http request"]
    h.check(lines, "access log lines")
    for o in lines:
        h.check(isinstance(o.get("status"), int) and isinstance(o.get("duration_us"), int)
                and o["duration_us"] >= 0 and o.get("method") in ("GET", "POST", "PUT",
                                                                  "DELETE", "OPTIONS"),
                "access log line has method, status, duration: %r" % o)
        h.check(o.get("route") is None or o["route"].startswith("/"), "route template: %r" % o)
    with env.client.b.cond:
        text = "\n".join(env.client.b.lines)
    h.check(marker not in text, "query strings, paths and presented keys stay out of the log")
    key_lines = [o for o in lines if o.get("route") == "/v1/key" and o.get("status") == 200]
    h.check(key_lines and key_lines[-1].get("kid") == env.key.kid and
            key_lines[-1].get("workspace") == "ws_api",
            "authenticated requests log kid and workspace: %r" % key_lines[-1:])
    refused = [o for o in lines if o.get("route") == "/v1/tokens" and o.get("status") == 401]
    h.check(refused and "kid" not in refused[-1], "a 401 logs no kid: %r" % refused[-1:])
    unknown = [o for o in lines if o.get("status") == 404]
    h.check(unknown and unknown[-1].get("route") is None, "unknown paths log no route")


def curl(env, *args):
    """Runs curl against the broker: (status line, lower-case head, body)."""
    cmd = ["curl", "-sS", "-m", str(int(h.T(10))), "-D", "-"]
    if env.client.tls:
        cmd += ["--cacert", env.cert, "--resolve", "localhost:%d:127.0.0.1" % env.client.b.port]
        base = "https://localhost:%d" % env.client.b.port
    else:
        base = env.client.base_url
    args = [a.replace("BASE", base) for a in args]
    p = subprocess.run(cmd + args, capture_output=True, timeout=h.T(15))
    h.eq(p.returncode, 0, "curl exit code (%s)" % p.stderr.decode(errors="replace").strip())
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    head = head.decode("latin-1")
    return head.split("\r\n")[0], head.lower(), body


async def test_curl(env):
    status, head, body = curl(env, "-X", "POST", "-H", "Authorization: Bearer " + env.key.raw,
                              "-H", "Content-Type: application/json", "--data-binary",
                              '{"capability":{"c:*":["realtime:subscribe"]},"ttl":60}',
                              "BASE/v1/tokens")
    h.eq(status, "HTTP/1.1 200 OK", "curl token exchange")
    h.check("x-ratelimit-limit: 3000" in head, "curl sees X-RateLimit-Limit")
    tok = json.loads(body)["access_token"]
    h.remember(tok)
    h.eq(canon_cap(decode(env.key, tok)["cap"]), {"c:*": [SUB]}, "cap of a token from curl")
    status, head, body = curl(env, "-H", "Authorization: Bearer " + env.key.raw, "BASE/v1/key")
    h.eq(status, "HTTP/1.1 200 OK", "curl GET /v1/key")
    h.eq(json.loads(body)["kid"], env.key.kid, "kid via curl")
    status, head, body = curl(env, "BASE/v1/key")
    h.eq(status, "HTTP/1.1 401 Unauthorized", "curl without a key")
    h.check("x-ratelimit" not in head, "no rate-limit headers on a 401")


async def test_cli_remote_mint_publish_login(env):
    url = env.client.base_url
    cap = {"cli:*": BOTH}
    out = env.reg.cli("--url", url, "token", "mint", "--remote", "--key", env.key.raw,
                      "--capability", json.dumps(cap), "--ttl", "90",
                      "--client-id", "cli-user").stdout.strip()
    doc = json.loads(out) if out.startswith("{") else {"token": out}
    tok = doc.get("token") or doc.get("access_token")
    h.remember(tok)
    claims = decode(env.key, tok)
    h.eq((canon_cap(claims["cap"]), claims["sub"], claims["exp"] - claims["iat"]),
         (canon_cap(cap), "cli-user", 90), "token from `latchkey token mint --remote`")
    c, w = await env.client.ws(env, tok)
    h.eq(w["client_id"], "cli-user", "connect with the CLI's token")
    ch = "cli:" + secrets.token_hex(4)
    h.eq((await c.request({"op": "subscribe", "id": 1, "channel": ch}))["op"], "subscribed", "")
    p = env.reg.cli("--url", url, "publish", "--key", env.key.raw, "--channel", ch,
                    "--data", '{"big": 12345678901234567890}')
    h.eq(json.loads(p.stdout).get("seq"), 1, "`latchkey publish` prints the seq")
    m = await c.expect("message", channel=ch, seq=1)
    h.eq((m.rawf("data"), m.rawf("from")), ('{"big":12345678901234567890}', "null"),
         "message from `latchkey publish`")

    refused = env.reg.cli("--url", url, "token", "mint", "--remote", "--key", env.sub_only.raw,
                          "--capability", json.dumps({"a": [PUB]}), ok=False)
    h.check(refused.returncode != 0 and PUB in refused.stderr,
            "a refused exchange exits non-zero naming the scope: %r" % refused.stderr[-200:])

    home = env.path("home")
    os.makedirs(home, exist_ok=True)
    e = {k: v for k, v in os.environ.items() if not k.startswith("LATCHKEY_")}
    e["HOME"] = home
    run = lambda *a: subprocess.run([h.CLI, "--url", url, *a], capture_output=True, text=True,
                                    env=e, cwd=home, stdin=subprocess.DEVNULL, timeout=h.T(20))
    p = run("login", "--key", env.sbx.raw)
    h.eq(p.returncode, 0, "latchkey login via GET /v1/key (%s)" % p.stderr.strip()[:300])
    p = run("--json", "publish", "--channel", ch, "--data", "7")
    h.eq(p.returncode, 0, "publish with the stored sandbox key (%s)" % p.stderr.strip()[:300])
    h.eq(json.loads(p.stdout)["seq"], 1, "the sandbox workspace has its own channel")


SHARED = [test_healthz_metrics_no_rate_headers, test_unknown_path_404_before_auth,
          test_method_not_allowed, test_no_cors, test_body_too_large,
          test_invalid_credentials, test_revoked_key_refused_despite_cache,
          test_token_exchange, test_token_exchange_bad_requests,
          test_token_exchange_beyond_scopes, test_token_ttl_limit_and_audience,
          test_publish_reaches_subscriber, test_publish_isolated_by_workspace,
          test_publish_bad_requests, test_get_key, test_default_rate_headers,
          test_keep_alive, test_access_log, test_curl]

if __name__ == "__main__":
    h.main(setup, SHARED + [test_cli_remote_mint_publish_login])
