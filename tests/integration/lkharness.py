"""Harness for the latchkey-broker integration tests.

Every test file starts its own broker on an ephemeral loopback port with a
fresh key registry made by the real `latchkey` CLI, runs its tests against
it with real WebSocket clients, then stops it with SIGTERM and requires exit
code 0 and clean logs (one JSON object per line, no token, key or secret).

Environment (set by tests/integration/CMakeLists.txt):
  LK_BROKER          path of latchkey-broker
  LK_CLI             path of the latchkey CLI
  LK_BROKER_WRAPPER  optional command prefix for the broker (e.g. valgrind)
  LK_TIMEOUT_SCALE   multiplies every wait (not the SPEC's own deadlines)

Run one file by hand (optionally naming tests):
  LK_BROKER=... LK_CLI=... /usr/bin/python3 03-subscribe-publish.py [test_name ...]
"""

import asyncio
import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib
from json.decoder import scanstring

import jwt
import websockets
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature)

BROKER = os.environ.get("LK_BROKER", "")
CLI = os.environ.get("LK_CLI", "")
WRAPPER = shlex.split(os.environ.get("LK_BROKER_WRAPPER", ""))
SCALE = float(os.environ.get("LK_TIMEOUT_SCALE", "1") or "1")

PUB = "realtime:publish"
SUB = "realtime:subscribe"
BOTH = [SUB, PUB]

# Strings that must never reach the broker's logs: raw keys, secrets, tokens.
SECRETS = set()


def T(seconds):
    """A harness wait, scaled for slow runs (valgrind)."""
    return seconds * SCALE


def now():
    return int(time.time())


class Failure(AssertionError):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def eq(got, want, what=""):
    if got != want:
        raise Failure("%s: expected %r, got %r" % (what or "value", want, got))


def remember(secret):
    if secret and len(secret) >= 16:
        SECRETS.add(secret)


# ---------------------------------------------------------------- JSON text

def _skip_ws(s, i):
    while i < len(s) and s[i] in " \t\r\n":
        i += 1
    return i


def _skip_value(s, i):
    c = s[i]
    if c == '"':
        return scanstring(s, i + 1)[1]
    if c in "{[":
        depth = 0
        while i < len(s):
            c = s[i]
            if c == '"':
                i = scanstring(s, i + 1)[1]
                continue
            if c in "{[":
                depth += 1
            elif c in "}]":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        raise ValueError("unterminated value")
    j = i
    while j < len(s) and s[j] not in ",}] \t\r\n":
        j += 1
    return j


def raw_fields(text):
    """The raw JSON text of each top-level member of an object, so a test
    can compare `data` byte for byte instead of after a re-encode."""
    i = _skip_ws(text, 0)
    if text[i] != "{":
        raise ValueError("not an object")
    i += 1
    out = {}
    while True:
        i = _skip_ws(text, i)
        if text[i] == "}":
            return out
        key, i = scanstring(text, i + 1)
        i = _skip_ws(text, i)
        if text[i] != ":":
            raise ValueError("expected ':'")
        i = _skip_ws(text, i + 1)
        j = _skip_value(text, i)
        out.setdefault(key, text[i:j])
        i = _skip_ws(text, j)
        if text[i] == ",":
            i += 1


def minify(text):
    """Drops insignificant whitespace, leaving strings and numbers intact."""
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == '"':
            j = scanstring(text, i + 1)[1]
            out.append(text[i:j])
            i = j
            continue
        if c not in " \t\r\n":
            out.append(c)
        i += 1
    return "".join(out)


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# ----------------------------------------------------------------- API keys

KEY_RE = re.compile(r"^lk_(live|sbx)_([0-9a-f]{16})_([0-9a-f]{64})_([0-9a-f]{8})$")


class ApiKey:
    """A raw API key and the EC key pair it encodes."""

    def __init__(self, raw, workspace, info=None):
        m = KEY_RE.match(raw)
        check(m, "API key does not match lk_<env>_<kid>_<secret>_<crc>")
        self.raw = raw
        self.env, self.kid, self.secret_hex, crc = m.groups()
        body = raw[:raw.rindex("_")]
        eq(crc, "%08x" % (zlib.crc32(body.encode()) & 0xffffffff), "key crc")
        self.workspace = workspace
        self.info = info or {}
        self.private = ec.derive_private_key(int(self.secret_hex, 16), ec.SECP256R1())
        self.public_pem = self.private.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo)
        remember(raw)
        remember(self.secret_hex)


class Registry:
    """A fresh key registry, driven only through the real CLI."""

    def __init__(self, tmp, name="latchkey.db"):
        check(CLI and os.access(CLI, os.X_OK), "LK_CLI is not an executable: %r" % CLI)
        self.db = os.path.join(tmp, name)

    def cli(self, *args, ok=True):
        p = subprocess.run([CLI, "--db", self.db, "--json", *args],
                           stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=T(20))
        if ok and p.returncode != 0:
            raise Failure("latchkey %s exited %d: %s" % (
                args[0:2], p.returncode, p.stderr.strip()[:500]))
        return p

    def _key_from(self, p, workspace):
        out = json.loads(p.stdout)
        check(isinstance(out, dict) and "key" in out,
              "keys create/rotate --json prints an object with \"key\"")
        key = ApiKey(out["key"], out.get("workspace", workspace), out)
        if "kid" in out:
            eq(out["kid"], key.kid, "kid printed by the CLI")
        return key

    def create_key(self, workspace, name="test", scopes="realtime:publish,realtime:subscribe",
                   sandbox=False):
        args = ["keys", "create", "--workspace", workspace, "--name", name,
                "--scopes", scopes]
        if sandbox:
            args.append("--sandbox")
        return self._key_from(self.cli(*args), workspace)

    def revoke(self, kid):
        self.cli("keys", "revoke", kid)

    def rotate(self, key):
        return self._key_from(self.cli("keys", "rotate", key.kid), key.workspace)

    def mint_cli(self, key, cap, ttl=None, client_id=None):
        args = ["token", "mint", "--key", key.raw, "--capability",
                cap if isinstance(cap, str) else dumps(cap)]
        if ttl is not None:
            args += ["--ttl", str(ttl)]
        if client_id is not None:
            args += ["--client-id", client_id]
        out = self.cli(*args).stdout.strip()
        if out.startswith("{"):
            doc = json.loads(out)
            out = doc.get("token") or doc.get("access_token")
        check(out and out.count(".") == 2, "token mint prints a compact JWS")
        remember(out)
        return out


# ------------------------------------------------------------------- tokens

def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def new_jti():
    return secrets.token_hex(12)


def claims_for(cap, sub=None, ttl=600, iat=None, exp=None, nbf=None, aud=None,
               jti=None, extra=None, drop=()):
    iat = now() if iat is None else iat
    c = {"iat": iat, "exp": iat + ttl if exp is None else exp,
         "jti": new_jti() if jti is None else jti, "cap": cap}
    if sub is not None:
        c["sub"] = sub
    if nbf is not None:
        c["nbf"] = nbf
    if aud is not None:
        c["aud"] = aud
    c.update(extra or {})
    for k in drop:
        c.pop(k, None)
    return c


def mint(key, cap=..., **kw):
    """A token minted with PyJWT straight from the API key's secret, as any
    third-party backend would. `cap` defaults to everything on every channel;
    it is sent as given otherwise (None becomes a JSON null)."""
    cap = {"*": BOTH} if cap is ... else cap
    headers = {"kid": key.kid}
    headers.update(kw.pop("header", None) or {})
    tok = jwt.encode(claims_for(cap, **kw), key.private, algorithm="ES256",
                     headers=headers)
    remember(tok)
    return tok


def es256_raw(private, signing_input):
    der = private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def forge(header, claims, sign=None):
    """Builds a compact JWS from arbitrary parts. `header`/`claims` are dicts
    or raw text; `sign(signing_input) -> bytes` makes the signature."""
    h = header if isinstance(header, str) else dumps(header)
    c = claims if isinstance(claims, str) else dumps(claims)
    signing_input = b64u(h) + "." + b64u(c)
    sig = sign(signing_input) if sign else b""
    tok = signing_input + "." + b64u(sig)
    remember(tok)
    return tok


def hs256(secret):
    return lambda si: hmac.new(secret, si.encode(), hashlib.sha256).digest()


# ------------------------------------------------------------------- broker

class Broker:
    """One latchkey-broker process."""

    def __init__(self, env, db, args=(), log_level="debug", listen="127.0.0.1:0",
                 extra_env=None, with_db=True, with_listen=True):
        check(BROKER and os.access(BROKER, os.X_OK), "LK_BROKER is not an executable: %r" % BROKER)
        self.env = env
        self.cmd = WRAPPER + [BROKER]
        if with_listen:
            self.cmd += ["--listen", listen]
        if with_db:
            self.cmd += ["--db", db]
        if log_level:
            self.cmd += ["--log-level", log_level]
        # The suite runs once with several service threads and once with
        # one (tests/CMakeLists.txt sets LK_BROKER_THREADS).
        if os.environ.get("LK_BROKER_THREADS") and "--threads" not in args and with_listen:
            self.cmd += ["--threads", os.environ["LK_BROKER_THREADS"]]
        self.cmd += list(args)
        self.penv = dict(os.environ)
        self.penv.update(extra_env or {})
        self.lines = []
        self.cond = threading.Condition()
        self.proc = None
        self.port = None
        self.rc = None
        self.stopped = False

    def _pump(self, stream, sink):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                sink.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def start(self, wait=True):
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=self.penv, start_new_session=True)
        self.stdout = []
        for stream, sink in ((self.proc.stderr, self.lines), (self.proc.stdout, self.stdout)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()
        self.env.brokers.append(self)
        if wait:
            line = self.wait_log(lambda l: l.get("msg") == "listening", T(15))
            check(isinstance(line.get("port"), int) and line["port"] > 0,
                  "listening line has an integer port: %r" % line)
            self.port = line["port"]
        return self

    def wait_log(self, pred, timeout):
        """The first JSON log line satisfying pred; fails if the broker exits
        or nothing matches within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            with self.cond:
                lines = self.lines[seen:]
                seen = len(self.lines)
            for l in lines:
                try:
                    o = json.loads(l)
                except ValueError:
                    continue
                if isinstance(o, dict) and pred(o):
                    return o
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("broker log line not seen within %.1fs" % timeout)
            if self.proc.poll() is not None:
                time.sleep(0.05)
                with self.cond:
                    if len(self.lines) == seen:
                        raise Failure("broker exited with %d before the expected log line"
                                      % self.proc.returncode)
                continue
            with self.cond:
                if len(self.lines) == seen:
                    self.cond.wait(min(left, 0.2))

    def url(self, path="/v1/realtime", query=None):
        u = "ws://127.0.0.1:%d%s" % (self.port, path)
        return u + ("?" + query if query else "")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal_and_wait(self, sig=signal.SIGTERM, timeout=None):
        """Sends `sig`, returns (exit code, seconds until exit)."""
        timeout = T(5) if timeout is None else timeout
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.rc = self.proc.wait(T(5))
            self.stopped = True
            raise Failure("broker did not exit within %.1fs of signal %d" % (timeout, sig))
        self.stopped = True
        time.sleep(0.05)
        return self.rc, time.monotonic() - t0

    def stop(self):
        """Stops with SIGTERM; fails on a non-zero exit or bad logs."""
        if not self.stopped:
            check(self.proc.poll() is None,
                  "broker died during the tests (exit %s)" % self.proc.returncode)
            rc, _ = self.signal_and_wait()
            eq(rc, 0, "broker exit code after SIGTERM")
        if WRAPPER and "valgrind" in os.path.basename(WRAPPER[0]):
            with self.cond:
                check(any(l.startswith("==") for l in self.lines),
                      "the broker did not run under valgrind")
        self.check_logs()

    def check_logs(self):
        with self.cond:
            lines = list(self.lines)
        for n, l in enumerate(lines, 1):
            if l.startswith("==") or not l.strip():
                continue  # valgrind's own report
            for s in SECRETS:
                check(s not in l, "stderr line %d contains a token, key or secret" % n)
            try:
                o = json.loads(l)
            except ValueError:
                raise Failure("stderr line %d is not JSON: %r" % (n, l[:200]))
            check(isinstance(o, dict) and isinstance(o.get("ts"), str)
                  and o.get("level") in ("debug", "info", "warn", "error")
                  and isinstance(o.get("msg"), str),
                  "stderr line %d is not a {ts,level,msg} log object: %r" % (n, l[:200]))

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(T(5))
            except subprocess.TimeoutExpired:
                pass

    def dump(self, out=sys.stdout):
        with self.cond:
            lines = list(self.lines)
        out.write("---- broker stderr (%s) ----\n" % " ".join(self.cmd[-8:]))
        redacted = []
        for l in lines[-400:]:
            for s in SECRETS:
                l = l.replace(s, "<secret>")
            redacted.append(l)
        out.write("\n".join(redacted) + "\n---- end ----\n")


# ----------------------------------------------------------- websocket side

class Closed(Exception):
    def __init__(self, code, reason):
        super().__init__("connection closed with %s %r" % (code, reason))
        self.code = code
        self.reason = reason


class Msg(dict):
    """One broker message: the parsed object plus its raw text."""
    raw = ""

    def rawf(self, field):
        return raw_fields(self.raw).get(field)


def offer(token, via):
    """(subprotocols, headers, query) for a token placement."""
    if via == "bearer":
        return ["latchkey.v1", "bearer." + token], [], None
    if via == "header":
        return ["latchkey.v1"], [("Authorization", "Bearer " + token)], None
    if via == "header-nosub":
        return None, [("Authorization", "Bearer " + token)], None
    if via == "query":
        return ["latchkey.v1"], [], "access_token=" + token
    if via == "none":
        return ["latchkey.v1"], [], None
    raise ValueError(via)


class Conn:
    """A WebSocket client speaking latchkey.v1; splits frames on '\\n'."""

    def __init__(self, ws):
        self.ws = ws
        self.pending = []
        self.frames = 0

    @classmethod
    async def open(cls, env, broker, token=None, via="bearer", subprotocols=None,
                   headers=(), query=None, origin=None, path="/v1/realtime", **kw):
        sp, hd, q = offer(token, via) if token is not None else (["latchkey.v1"], [], None)
        if subprotocols is not None:
            sp = subprotocols
        hd = list(hd) + list(headers)
        q = query if query is not None else q
        kw.setdefault("max_size", None)
        kw.setdefault("max_queue", None)
        kw.setdefault("compression", None)
        ws = await asyncio.wait_for(websockets.connect(
            broker.url(path, q), subprotocols=sp, extra_headers=hd, origin=origin,
            ping_interval=None, close_timeout=T(2), open_timeout=T(5), **kw), T(6))
        c = cls(ws)
        env.conns.append(c)
        if token:
            for k, v in ws.response_headers.raw_items():
                check(token not in v, "the token is echoed in response header %s" % k)
        return c

    async def send(self, msg):
        """Sends a dict as compact JSON, str as a text frame, bytes as a
        binary frame, and a tuple of str as one fragmented text message."""
        if isinstance(msg, tuple):
            await self.ws.send(iter(msg))
        else:
            await self.ws.send(msg if isinstance(msg, (str, bytes)) else dumps(msg))

    async def send_quiet(self, msg):
        """Sends when the broker may close the connection mid-send."""
        try:
            await self.send(msg)
        except (websockets.ConnectionClosed, ConnectionError):
            pass

    async def recv(self, timeout=None):
        """The next message; raises Closed when the broker closed instead."""
        timeout = T(3) if timeout is None else timeout
        if not self.pending:
            try:
                frame = await asyncio.wait_for(self.ws.recv(), timeout)
            except websockets.ConnectionClosed:
                await self._closed()
            except asyncio.TimeoutError:
                raise Failure("no message within %.1fs" % timeout) from None
            check(isinstance(frame, str), "broker sent a binary frame")
            self.frames += 1
            for part in frame.split("\n"):
                if part == "":
                    continue
                try:
                    obj = json.loads(part)
                except ValueError:
                    raise Failure("broker sent a line that is not JSON: %r" % part[:200])
                check(isinstance(obj, dict) and isinstance(obj.get("op"), str),
                      "broker message is not an object with an op: %r" % part[:200])
                m = Msg(obj)
                m.raw = part
                self.pending.append(m)
            check(self.pending, "broker sent an empty frame")
        return self.pending.pop(0)

    async def _closed(self):
        await asyncio.wait_for(self.ws.wait_closed(), T(3))
        code = self.ws.close_code
        if code == 1006:
            # No close frame: say what the client saw, for the report.
            print("     closed without a close frame: %r" % (self.ws.transfer_data_exc,))
        raise Closed(code, self.ws.close_reason)

    async def expect(self, op, timeout=None, **fields):
        m = await self.recv(timeout)
        eq(m.get("op"), op, "op of %s" % m.raw[:200])
        for k, v in fields.items():
            eq(m.get(k), v, "%s of %s" % (k, m.raw[:200]))
        return m

    async def request(self, msg, timeout=None):
        """Sends a request and returns the next message (the reply)."""
        await self.send(msg)
        return await self.recv(timeout)

    async def ping(self, pid=None):
        """A protocol-level barrier: returns the messages before the pong."""
        pid = secrets.randbelow(1 << 30) if pid is None else pid
        await self.send({"op": "ping", "id": pid})
        before = []
        for _ in range(10000):
            m = await self.recv()
            if m.get("op") == "pong" and m.get("id") == pid:
                return before
            before.append(m)
        raise Failure("no pong")

    async def until_closed(self, timeout=None, limit=100000):
        """Reads until the broker closes; returns (close code, messages)."""
        timeout = T(5) if timeout is None else timeout
        deadline = time.monotonic() + timeout
        got = []
        for _ in range(limit):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                got.append(await self.recv(left))
            except Closed as e:
                return e.code, got
            except Failure as e:
                if "no message within" in str(e):
                    break
                raise
        raise Failure("connection still open after %.1fs (got %r)" % (
            timeout, [m.raw[:120] for m in got[:5]]))

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), T(3))
        except Exception:
            self.ws.transport.abort()


async def connect_ok(env, broker, token, via="bearer", **kw):
    """Connects and requires a welcome first; returns (conn, welcome)."""
    c = await Conn.open(env, broker, token, via, **kw)
    try:
        w = await c.recv()
    except Closed as e:
        raise Failure("refused: closed with %s before a welcome" % e.code)
    if w.get("op") != "welcome":
        raise Failure("expected welcome, got %s" % w.raw[:300])
    if kw.get("subprotocols") is None and via != "header-nosub":
        eq(c.ws.subprotocol, "latchkey.v1", "selected subprotocol")
    return c, w


async def connect_refused(env, broker, token, code, close, via="bearer", **kw):
    """Requires: upgrade completed, exactly one error frame with `code`
    (a string or a set of allowed codes), then close code `close`."""
    c = await Conn.open(env, broker, token, via, **kw)
    if kw.get("subprotocols") is None and via != "header-nosub":
        eq(c.ws.subprotocol, "latchkey.v1", "subprotocol selected on a refused upgrade")
    got_close, msgs = await c.until_closed()
    ops = [m.raw[:200] for m in msgs]
    eq(len(msgs), 1, "frames before the close (%r)" % ops)
    m = msgs[0]
    eq(m.get("op"), "error", "op of the only frame")
    codes = {code} if isinstance(code, str) else set(code)
    check(m.get("code") in codes, "error code: expected %s, got %r" % (
        " or ".join(sorted(codes)), m.get("code")))
    check(isinstance(m.get("message"), str) and m["message"],
          "error frame has a non-empty message")
    check(not token or len(token) < 16 or token not in m.raw, "the error echoes the token")
    eq(got_close, close, "close code")
    return m


async def not_welcomed(env, broker, token=None, via="bearer", **kw):
    """True when the broker refuses in any way: HTTP error, failed handshake,
    or upgrade without a welcome. Returns a short description."""
    try:
        c = await Conn.open(env, broker, token, via, **kw)
    except websockets.InvalidStatusCode as e:
        return "http %d" % e.status_code
    except (websockets.InvalidHandshake, OSError) as e:
        return "handshake: %s" % e
    try:
        code, msgs = await c.until_closed()
    except Failure:
        raise Failure("connection was accepted and kept open")
    check(all(m.get("op") != "welcome" for m in msgs), "got a welcome")
    return "closed %s" % code


# ------------------------------------------------------------ raw websocket

class RawWS:
    """A blocking WebSocket client on a plain socket, for tests that need
    control the library would take away (tiny receive buffer, no pong)."""

    def __init__(self, port, token, rcvbuf=None, path="/v1/realtime", protocols=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(T(5))
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Protocol: %s\r\n\r\n"
               % (path, port, key, protocols or "latchkey.v1, bearer." + token))
        self.sock.sendall(req.encode())
        self.buf = b""
        deadline = time.monotonic() + T(5)
        while b"\r\n\r\n" not in self.buf:
            check(time.monotonic() < deadline, "no handshake response")
            chunk = self.sock.recv(4096)
            check(chunk, "connection closed during handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        check(head.startswith(b"HTTP/1.1 101"), "upgrade refused: %r" % head[:80])
        self.eof = False

    @staticmethod
    def frame(opcode, payload, fin=True, length=None):
        """One masked client frame. `length` may announce more payload than
        is given, to test a peer's reaction to a frame's header alone."""
        mask = os.urandom(4)
        n = len(payload) if length is None else length
        hdr = bytes([(0x80 if fin else 0) | opcode])
        if n < 126:
            hdr += bytes([0x80 | n])
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            hdr += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return hdr + mask + body

    def send_frame(self, opcode, payload, fin=True, length=None):
        self.sock.sendall(self.frame(opcode, payload, fin, length))

    def until_close(self, timeout):
        """Reads to the close frame: (close code or None at EOF, [text
        messages before it])."""
        texts = []
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            m = self.read_message(max(0.01, deadline - time.monotonic()))
            if m is None:
                return None, texts
            if m[0] == 0x8:
                return (int.from_bytes(m[1][:2], "big") if len(m[1]) >= 2 else None), texts
            if m[0] == 0x1:
                texts.append(m[1].decode())
        raise Failure("too many frames")

    def _fill(self, need, deadline):
        while len(self.buf) < need:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.eof = True
                return False
            self.buf += chunk
        return True

    def read_frame(self, timeout):
        """(fin, opcode, payload) of the next frame, or None at EOF. Raises
        socket.timeout when nothing complete arrives in time."""
        deadline = time.monotonic() + timeout
        if not self._fill(2, deadline):
            return None
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7f
        off = 2
        if n == 126:
            off = 4
        elif n == 127:
            off = 10
        if not self._fill(off, deadline):
            return None
        if off > 2:
            n = int.from_bytes(self.buf[2:off], "big")
        if not self._fill(off + n, deadline):
            return None
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return bool(b0 & 0x80), b0 & 0x0f, payload

    def read_message(self, timeout):
        """Reassembles fragments; returns (opcode, payload) or None at EOF."""
        parts = []
        first = None
        deadline = time.monotonic() + timeout
        while True:
            fr = self.read_frame(max(0.01, deadline - time.monotonic()))
            if fr is None:
                return None
            fin, op, payload = fr
            if op >= 8:
                return op, payload
            if first is None:
                first = op
            parts.append(payload)
            if fin:
                return first, b"".join(parts)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# -------------------------------------------------------------------- HTTP

def http_request(port, method, path, body=None, headers=None, timeout=None):
    """(status, headers dict with lower-case names, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port,
                                      timeout=T(5) if timeout is None else timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


# -------------------------------------------------------------------- runner

class Env:
    """Per-file state: a temporary directory, brokers and open connections."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="lk-it-")
        self.brokers = []
        self.conns = []

    def registry(self, name="latchkey.db"):
        return Registry(self.tmp, name)

    def broker(self, reg, args=(), **kw):
        return Broker(self, reg.db, args, **kw).start()

    def path(self, name):
        return os.path.join(self.tmp, name)

    async def close_conns(self):
        conns, self.conns = self.conns, []
        for c in conns:
            if c.ws.open:
                c.ws.transport.abort()


def channel(prefix="c"):
    """A unique channel name so tests on one broker never interfere."""
    return "%s:%s" % (prefix, secrets.token_hex(6))


def main(setup, tests):
    """Runs `setup(env)` then each `async def test_*(env)` in order. Exits
    non-zero if any test, the broker's exit code or its logs fail."""
    only = set(sys.argv[1:])
    env = Env()
    failed = []
    t_start = time.monotonic()

    async def run_all():
        for t in tests:
            if only and t.__name__ not in only:
                continue
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(t(env), T(60))
                print("ok   %-45s %.2fs" % (t.__name__, time.monotonic() - t0), flush=True)
            except BaseException as e:  # noqa: B902 - report and continue
                if isinstance(e, KeyboardInterrupt):
                    raise
                failed.append(t.__name__)
                what = "timed out" if isinstance(e, asyncio.TimeoutError) else ""
                print("FAIL %-45s %.2fs %s" % (t.__name__, time.monotonic() - t0, what), flush=True)
                traceback.print_exc(file=sys.stdout)
            await env.close_conns()

    try:
        try:
            setup(env)
        except BaseException:
            failed.append("setup")
            traceback.print_exc(file=sys.stdout)
        else:
            asyncio.run(run_all())
        for b in env.brokers:
            try:
                b.stop()
            except BaseException:
                failed.append("broker shutdown/logs")
                traceback.print_exc(file=sys.stdout)
        if failed:
            for b in env.brokers:
                b.dump()
    finally:
        for b in env.brokers:
            b.kill()
        shutil.rmtree(env.tmp, ignore_errors=True)
    print("%s: %d failed (%s) in %.1fs" % (
        os.path.basename(sys.argv[0]), len(failed), ", ".join(failed) or "-",
        time.monotonic() - t_start), flush=True)
    sys.exit(1 if failed else 0)
