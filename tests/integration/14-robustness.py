#!/usr/bin/python3
"""14-robustness: awkward HTTP input must never make the broker spin or stop
answering signals. Each case sends raw bytes (pipelined requests with and
without bodies, half-closes, heads of exactly the limit, bare LF, chunked
bodies, upgrades on odd paths or kept-alive connections...), checks the
answers where they are defined, and then requires that the broker still
answers /healthz promptly. At the end the broker must have been idle (low
CPU time over a quiet second) and must exit on SIGTERM within 2 s."""

import asyncio
import base64
import json
import os
import signal
import socket
import time

import lkharness as h
from lkharness import BOTH

HEAD_MAX = 24576          # LK_PRELUDE_MAX: the longest request head accepted
IDLE_WINDOW = 1.0         # seconds of quiet over which CPU time is measured
IDLE_CPU_MAX = 0.25       # CPU seconds allowed in that window
STOP_DEADLINE = 2.0


def setup(env):
    env.reg = env.registry()
    env.key = env.reg.create_key("ws_robust")
    env.b = env.broker(env.reg)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post(path="/v1/tokens", body=b"{}", extra=""):
    return (("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "Content-Length: %d\r\n%s\r\n" % (path, len(body), extra)).encode() + body)


def get(path="/healthz", extra=""):
    return ("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, extra)).encode()


def upgrade(path, protocols, extra=""):
    key = base64.b64encode(os.urandom(16)).decode()
    return ("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: %s\r\n%s\r\n" % (path, key, protocols, extra)).encode()


def padded_get(total):
    """A GET /healthz head of exactly `total` bytes."""
    base = len(get(extra="X-Pad: \r\n"))
    return get(extra="X-Pad: %s\r\n" % ("p" * (total - base)))


class Client:
    """A raw HTTP/1.1 client that reads responses framed by Content-Length."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=h.T(3))
        self.buf = b""
        self.eof = False

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0 or self.eof:
            return False
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def response(self, timeout=None):
        """(status, body) of the next response, or None at EOF/timeout."""
        deadline = time.monotonic() + (h.T(3) if timeout is None else timeout)
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline):
                return None
        head, rest = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        length = 0
        for l in lines[1:]:
            k, _, v = l.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v.strip())
        if status == 101:
            self.buf = rest
            return status, b""
        while len(rest) < length:
            if not self._fill(deadline):
                return None
            rest = self.buf.split(b"\r\n\r\n", 1)[1]
        self.buf = rest[length:]
        return status, rest[:length]

    def statuses(self, n, timeout=None):
        out = []
        for _ in range(n):
            r = self.response(timeout)
            if r is None:
                break
            out.append(r[0])
        return out

    def closed(self, timeout=None):
        """True once the broker closed the connection."""
        deadline = time.monotonic() + (h.T(3) if timeout is None else timeout)
        while not self.eof and self._fill(deadline):
            pass
        return self.eof

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def exchange(port, data, n, half_close=False, timeout=None):
    c = Client(port)
    try:
        c.send(data)
        if half_close:
            c.sock.shutdown(socket.SHUT_WR)
        return c.statuses(n, timeout)
    finally:
        c.close()


async def responsive(env, what):
    """The broker answers /healthz at once: it is not stuck in a loop."""
    t0 = time.monotonic()
    try:
        got = await asyncio.to_thread(exchange, env.b.port, get(), 1, False, h.T(2))
    except OSError as e:
        got = "error %s" % e
    h.check(got == [200], "broker unresponsive after %s: /healthz gave %r" % (what, got))
    h.check(time.monotonic() - t0 < h.T(2), "/healthz slow after %s" % what)
    h.check(env.b.alive(), "broker died after %s" % what)


async def case(env, what, data, n, want=None, half_close=False):
    got = await asyncio.to_thread(exchange, env.b.port, data, n, half_close)
    if want is not None:
        h.eq(got, want, "statuses for %s" % what)
    await responsive(env, what)
    return got


async def test_pipelined_requests_with_bodies(env):
    await case(env, "pipelined POSTs", post() * 3, 3, [401, 401, 401])
    await case(env, "GET then pipelined POSTs", get() + post() + post(), 3,
               [200, 401, 401])
    await case(env, "POSTs then GETs", post() + get() + post() + get(), 4,
               [401, 200, 401, 200])
    await case(env, "large body then POST",
               post(body=b"{" + b" " * 30000 + b"}") + post(), 2, [401, 401])


async def test_pipelined_api_calls_get_their_answers(env):
    # With a valid key every pipelined call is answered, in order.
    auth = "Authorization: Bearer %s\r\n" % env.key.raw
    body = b'{"capability":{"c:*":["realtime:subscribe"]}}'
    data = post(body=body, extra=auth) + get("/v1/key", auth) + post(body=body, extra=auth)
    c = Client(env.b.port)
    try:
        c.send(data)
        got = [c.response() for _ in range(3)]
    finally:
        c.close()
    h.eq([r and r[0] for r in got], [200, 200, 200], "pipelined API calls")
    h.check(b"access_token" in got[0][1] and b"access_token" in got[2][1], "tokens issued")
    h.check(env.key.kid.encode() in got[1][1], "key details")
    line = await asyncio.to_thread(env.b.wait_log, lambda o: o.get("msg") == "http request"
                                   and o.get("route") == "/v1/key", h.T(3))
    h.eq(line.get("ip"), "127.0.0.1", "client address in the access log")
    await responsive(env, "pipelined API calls")


async def test_half_close_and_abrupt_close(env):
    await case(env, "POST then half-close", post(), 1, [401], half_close=True)
    await case(env, "pipelined POSTs then half-close", post() * 3, 3, [401] * 3,
               half_close=True)
    await case(env, "partial body then half-close", post(body=b"{}")[:-1], 1,
               half_close=True)
    for i in range(20):
        s = socket.create_connection(("127.0.0.1", env.b.port), timeout=h.T(3))
        s.sendall((post() * 3) if i % 2 else (get() + post()))
        if i % 3 == 0:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        s.close()
    await responsive(env, "connections closed right after pipelined requests")


async def test_upgrades_and_bearer_heads(env):
    tok = h.mint(env.key, {"*": BOTH})
    bearer = "latchkey.v1, bearer." + tok
    got = await case(env, "bearer upgrade on an unknown path + POST",
                     upgrade("/nope", bearer) + post(), 2)
    h.eq(got[:1], [404], "upgrade on an unknown path")
    await case(env, "bearer upgrade + garbage", upgrade("/v1/realtime", bearer) +
               post() * 2, 1, [101])
    await case(env, "upgrade without a key + POST",
               get("/v1/realtime", "Upgrade: websocket\r\nConnection: Upgrade\r\n") + post(),
               2)
    await case(env, "bearer subprotocol on a plain GET + POST",
               get("/healthz", "Sec-WebSocket-Protocol: bearer.%s\r\n" % tok) + post(), 2,
               [200, 401])
    await case(env, "unknown upgrade + POST", get("/healthz", "Upgrade: h2c\r\n") + post(),
               2)
    await case(env, "CONNECT + POST", b"CONNECT x:1 HTTP/1.1\r\n\r\n" + post(), 2)
    # lws would bind an upgrade to any protocol of the vhost that the client
    # names; the broker's internal ones must not be reachable that way.
    for proto in ("(acceptor)", "(prelude)", "(signal)", "acceptor", "prelude",
                  "lk-acceptor", "lk-prelude", "lk-signal", '"(prelude)"'):
        got = await case(env, "upgrade offering %s" % proto,
                         upgrade("/v1/realtime", proto), 1)
        h.check(101 not in got, "upgrade accepted on the internal protocol %s" % proto)


async def test_upgrade_on_a_kept_alive_connection(env):
    # The gate passes an upgrade after plain requests through to lws.
    tok = h.mint(env.key, {"*": BOTH})
    c = Client(env.b.port)
    try:
        c.send(get())
        h.eq(c.statuses(1), [200], "first request")
        c.send(upgrade("/v1/realtime", "latchkey.v1, bearer." + tok))
        h.eq(c.statuses(1), [101], "upgrade on the same connection")
        deadline = time.monotonic() + h.T(3)
        while b"welcome" not in c.buf and c._fill(deadline):
            pass
        h.check(b'"welcome"' in c.buf, "welcome after the upgrade: %r" % c.buf[:80])
    finally:
        c.close()
    await responsive(env, "upgrade on a kept-alive connection")


async def test_heads_at_the_limit(env):
    await case(env, "head of exactly the limit", padded_get(HEAD_MAX), 1, [200])
    await case(env, "head of exactly the limit + POST", padded_get(HEAD_MAX) + post(), 2,
               [200, 401])
    await case(env, "head one byte over the limit", padded_get(HEAD_MAX + 1), 1, [431])
    await case(env, "head over the limit, pipelined", post() + padded_get(HEAD_MAX + 1),
               2, [401, 431])
    await case(env, "endless head", b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 40000, 1,
               [431])


async def test_ambiguous_framing_refused(env):
    c = Client(env.b.port)
    try:
        c.send(get() + b"GET /healthz HTTP/1.1\nHost: x\n\n" + post())
        first, refused = c.response(), c.response()
        h.eq(first and first[0], 200, "the request before the malformed one")
        h.eq(refused and (refused[0], json.loads(refused[1])["code"]), (400, "bad_request"),
             "the malformed request's answer")
        h.check(c.closed(), "the connection is closed after a malformed request")
    finally:
        c.close()
    await case(env, "bare LF + POST", b"GET /healthz HTTP/1.1\nHost: x\n\n" + post(), 1,
               [400])
    await case(env, "chunked body",
               b"POST /v1/tokens HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"2\r\n{}\r\n0\r\n\r\n" + post(), 1, [400])
    await case(env, "two Content-Lengths",
               b"POST /v1/tokens HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 40\r\n"
               b"\r\n{}" + post(), 1, [400])
    await case(env, "Content-Length with a sign",
               b"POST /v1/tokens HTTP/1.1\r\nContent-Length: +2\r\n\r\n{}" + post(), 1, [400])
    await case(env, "folded header", get(extra="X-A: b\r\n c\r\n") + post(), 1, [400])
    await case(env, "space before the colon",
               b"POST /v1/tokens HTTP/1.1\r\nContent-Length : 2\r\n\r\n{}" + post(), 1,
               [400])
    await case(env, "lower-case method", b"get /healthz HTTP/1.1\r\n\r\n" + post(), 1, [400])
    await case(env, "HTTP/0.9 request line", b"GET /healthz\r\n\r\n", 1, [400])
    await case(env, "POST without Content-Length + GET",
               b"POST /v1/tokens HTTP/1.1\r\nHost: x\r\n\r\n" + get(), 1, [400])
    await case(env, "GET with a body + POST",
               b"GET /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello" + post(), 2,
               [200, 401])
    await case(env, "HTTP/1.0 + POST", b"GET /healthz HTTP/1.0\r\n\r\n" + post(), 2)


async def test_slow_and_idle_clients(env):
    s = socket.create_connection(("127.0.0.1", env.b.port), timeout=h.T(3))
    try:
        for ch in post()[:40]:
            s.sendall(bytes([ch]))
            await asyncio.sleep(0.005)
        await responsive(env, "a head arriving byte by byte")
    finally:
        s.close()
    idle = [socket.create_connection(("127.0.0.1", env.b.port), timeout=h.T(3))
            for _ in range(10)]
    try:
        for i, s in enumerate(idle):
            s.sendall(get() if i % 2 else post()[:30])
        await responsive(env, "idle half-sent requests")
    finally:
        for s in idle:
            s.close()


async def test_broker_idle_and_stops(env):
    await asyncio.sleep(0.3)   # let the last closes settle
    pid = env.b.proc.pid
    c0 = cpu_seconds(pid)
    await asyncio.sleep(IDLE_WINDOW)
    used = cpu_seconds(pid) - c0
    print("     %.2f CPU seconds over %.1fs of quiet" % (used, IDLE_WINDOW))
    h.check(used <= IDLE_CPU_MAX, "the broker used %.2f CPU seconds while idle" % used)
    status, _, body = await asyncio.to_thread(h.http_request, env.b.port, "GET", "/metrics")
    gauge = [l for l in body.decode().splitlines() if l.startswith("latchkey_sockets ")]
    h.eq(gauge, ["latchkey_sockets 1"], "open connections counted once every case closed")
    # Stop with connections in every state: kept alive after an answer, mid
    # head, mid body, and a WebSocket behind the gate.
    tok = h.mint(env.key, {"*": BOTH})
    open_conns = [Client(env.b.port) for _ in range(4)]
    try:
        kept, mid_head, mid_body, ws = open_conns
        kept.send(get())
        h.eq(kept.statuses(1), [200], "kept-alive connection")
        mid_head.send(b"GET /healthz HTTP/1.1\r\nHo")
        mid_body.send(post(body=b"{" + b" " * 100 + b"}")[:-20])
        ws.send(get())
        h.eq(ws.statuses(1), [200], "request before the upgrade")
        ws.send(upgrade("/v1/realtime", "latchkey.v1, bearer." + tok))
        h.eq(ws.statuses(1), [101], "upgrade behind the gate")
        await asyncio.sleep(0.1)
        rc, secs = await asyncio.to_thread(env.b.signal_and_wait, signal.SIGTERM,
                                           h.T(STOP_DEADLINE))
    finally:
        for c in open_conns:
            c.close()
    print("     exit %d %.2fs after SIGTERM" % (rc, secs))
    h.eq(rc, 0, "exit code after SIGTERM")
    h.check(secs <= STOP_DEADLINE, "exited %.2fs after SIGTERM" % secs)


h.main(setup, [test_pipelined_requests_with_bodies, test_pipelined_api_calls_get_their_answers,
               test_half_close_and_abrupt_close, test_upgrades_and_bearer_heads,
               test_upgrade_on_a_kept_alive_connection, test_heads_at_the_limit,
               test_ambiguous_framing_refused, test_slow_and_idle_clients,
               test_broker_idle_and_stops])
