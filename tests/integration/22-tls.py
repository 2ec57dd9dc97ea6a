#!/usr/bin/python3
"""22-tls: the broker with --tls-cert/--tls-key, using a throw-away
self-signed P-256 certificate made by openssl at test time: every HTTP API
test of 20-http-api.py again over https:// and wss:// (including a long
`bearer.` subprotocol), TLS 1.2 and 1.3 accepted and 1.1 refused, ALPN
http/1.1 only, plain HTTP refused on the TLS listener, large and many
messages through the TLS side, a slow TLS subscriber dropped with 4408
(back-pressure reaches the send queue), certificate reload on SIGHUP (and
a bad pair on reload keeping the running one), and start-up errors."""

import asyncio
import base64
import importlib.util
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import warnings

import lkharness as h
from lkharness import BOTH

_spec = importlib.util.spec_from_file_location(
    "http_api", os.path.join(os.path.dirname(os.path.abspath(__file__)), "20-http-api.py"))
api = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(api)


def make_cert(env, name, extra=()):
    cert, key = env.path(name + ".crt"), env.path(name + ".key")
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj",
                        "/CN=localhost", "-keyout", key, "-out", cert, *extra],
                       capture_output=True, text=True, timeout=h.T(30))
    h.eq(p.returncode, 0, "openssl req (%s)" % p.stderr.strip()[-300:])
    return cert, key


def trust(cert):
    ctx = ssl.create_default_context(cafile=cert)
    return ctx


def der_of(cert):
    with open(cert) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def handshake(port, ctx, timeout=None):
    """(version, alpn, peer certificate DER) of one TLS handshake."""
    s = socket.create_connection(("127.0.0.1", port), h.T(5) if timeout is None else timeout)
    try:
        ss = ctx.wrap_socket(s, server_hostname="localhost")
        try:
            return ss.version(), ss.selected_alpn_protocol(), ss.getpeercert(binary_form=True)
        finally:
            ss.close()
    finally:
        s.close()


def wait_log_after(broker, mark, pred, timeout):
    """The first JSON log line after line `mark` that satisfies pred."""
    deadline = time.monotonic() + timeout
    while True:
        with broker.cond:
            lines = broker.lines[mark:]
        for line in lines:
            try:
                o = json.loads(line)
            except ValueError:
                continue
            if isinstance(o, dict) and pred(o):
                return o
        h.check(time.monotonic() < deadline, "log line not seen within %.1fs" % timeout)
        time.sleep(0.05)


def setup(env):
    env.cert, env.keyfile = make_cert(env, "tls")
    api.make_env(env, tls=trust(env.cert), tls_args=["--tls-cert", env.cert,
                                                     "--tls-key", env.keyfile])


async def test_tls_versions_and_alpn(env):
    port = env.client.b.port
    ctx = trust(env.cert)
    version, alpn, der = handshake(port, ctx)
    h.eq(version, "TLSv1.3", "default version")
    h.eq(der, der_of(env.cert), "the configured certificate is served")
    ctx12 = trust(env.cert)
    ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
    h.eq(handshake(port, ctx12)[0], "TLSv1.2", "TLS 1.2 is accepted")
    ctx_alpn = trust(env.cert)
    ctx_alpn.set_alpn_protocols(["h2", "http/1.1"])
    h.eq(handshake(port, ctx_alpn)[1], "http/1.1", "ALPN offers only http/1.1")

    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = ssl.TLSVersion.TLSv1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError) as e:
        print("     (this client cannot offer TLS 1.1: %s)" % e)
        return
    try:
        v = handshake(port, old)[0]
    except (ssl.SSLError, OSError) as e:
        reason = getattr(e, "reason", "") or str(e)
        h.check("NO_PROTOCOLS_AVAILABLE" not in reason,
                "the client refused to offer TLS 1.1 itself (%s); nothing tested" % reason)
        print("     TLS 1.1 refused: %s" % reason)
    else:
        raise h.Failure("a TLS 1.1 handshake succeeded (%s)" % v)


async def test_plain_http_refused(env):
    s = socket.create_connection(("127.0.0.1", env.client.b.port), h.T(5))
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        deadline = time.monotonic() + h.T(5)
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    h.check(not data.startswith(b"HTTP/"), "plain HTTP got an HTTP answer: %r" % data[:60])


async def test_wss_large_and_many(env):
    ch = "big:" + os.urandom(4).hex()
    tok = h.mint(env.key, {"big:*": BOTH}, sub="x" * 128)   # a long bearer. subprotocol
    sub, w = await env.client.ws(env, tok)
    pub, _ = await env.client.ws(env, h.mint(env.key, {"big:*": BOTH}), via="header")
    h.eq((await sub.request({"op": "subscribe", "id": 1, "channel": ch}))["op"], "subscribed", "")
    data = json.dumps({"blob": "z" * 60000, "n": 12345678901234567890})
    r = env.client.request("POST", api.chan_path(ch), '{"data":%s}' % data, key=env.key)
    h.eq((r.status, r.json()), (202, {"seq": 1}), "https publish of 60 KB")
    m = await sub.expect("message", channel=ch, seq=1, timeout=h.T(5))
    h.eq(m.rawf("data"), h.minify(data), "60 KB over wss, byte for byte")
    n = 400
    for i in range(n):
        await pub.send({"op": "publish", "channel": ch, "data": {"i": i, "pad": "p" * 2000}})
    for i in range(n):
        m = await sub.expect("message", channel=ch, timeout=h.T(10))
        h.eq((m["seq"], m["data"]["i"]), (i + 2, i), "message %d in order" % i)


def tls_raw_subscriber(env, port, token, ch):
    """A wss client with a tiny receive buffer that reads only when asked."""
    raw = h.RawWS.__new__(h.RawWS)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(h.T(5))
    s.connect(("127.0.0.1", port))
    raw.sock = trust(env.cert).wrap_socket(s, server_hostname="localhost")
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sock.sendall(("GET /v1/realtime HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13"
                      "\r\nSec-WebSocket-Protocol: latchkey.v1, bearer.%s\r\n\r\n"
                      % (key, token)).encode())
    raw.buf = b""
    raw.eof = False
    deadline = time.monotonic() + h.T(5)
    while b"\r\n\r\n" not in raw.buf:
        h.check(time.monotonic() < deadline, "no upgrade response")
        chunk = raw.sock.recv(4096)
        h.check(chunk, "closed during the upgrade")
        raw.buf += chunk
    head, raw.buf = raw.buf.split(b"\r\n\r\n", 1)
    h.check(head.startswith(b"HTTP/1.1 101"), "upgrade: %r" % head[:60])
    raw.send_frame(0x1, json.dumps({"op": "subscribe", "id": 1, "channel": ch}).encode())
    ops = []
    for _ in range(4):
        m = raw.read_message(h.T(5))
        h.check(m is not None and m[0] == 0x1, "text frames")
        ops += [json.loads(l)["op"] for l in m[1].decode().split("\n") if l]
        if "subscribed" in ops:
            return raw
    raise h.Failure("not subscribed: %r" % ops)


async def test_slow_tls_subscriber_dropped(env):
    cl = api.spawn(env, ["--publish-rate", "0", "--send-queue-messages", "64",
                         "--send-queue-bytes", "262144"])
    ch = "slow:" + os.urandom(4).hex()
    tok = h.mint(env.key, {"slow:*": BOTH})
    raw = tls_raw_subscriber(env, cl.b.port, tok, ch)
    pub, _ = await cl.ws(env, h.mint(env.key, {"slow:*": BOTH}))
    pad = "q" * 8000
    for i in range(1500):
        await pub.send('{"op":"publish","channel":"%s","data":{"i":%d,"p":"%s"}}' % (ch, i, pad))
        if i % 100 == 99:
            await pub.ping()
    await pub.ping()
    code, how = None, ""
    total = 0
    deadline = time.monotonic() + h.T(20)
    while time.monotonic() < deadline and total < 64 * 1024 * 1024:
        m = await asyncio.get_running_loop().run_in_executor(None, raw.read_message, h.T(5))
        if m is None:
            how = "eof"
            break
        total += len(m[1])
        if m[0] == 0x8:
            code = int.from_bytes(m[1][:2], "big")
            break
    raw.close()
    h.eq(code, 4408, "slow wss subscriber closed with 4408 (%s after %d bytes)" % (how, total))
    text = cl.request("GET", "/metrics").body.decode()
    drops = [l for l in text.splitlines() if l.startswith("latchkey_slow_consumer_drops_total ")]
    h.check(drops and float(drops[0].split()[1]) >= 1, "drop counted: %r" % drops)
    h.eq((await pub.request({"op": "ping", "id": 7}))["op"], "pong", "the publisher is unaffected")


async def test_start_errors(env):
    other_cert, other_key = make_cert(env, "other")
    enc_key = env.path("enc.key")
    p = subprocess.run(["openssl", "pkey", "-in", env.keyfile, "-aes256", "-passout", "pass:pw",
                        "-out", enc_key], capture_output=True, timeout=h.T(30))
    h.eq(p.returncode, 0, "openssl pkey -aes256")
    cases = [(["--tls-cert", env.cert], 2, "tls-key"),
             (["--tls-key", env.keyfile], 2, "tls-cert"),
             (["--tls-cert", env.cert, "--tls-key", other_key], 1, "does not match"),
             (["--tls-cert", env.cert, "--tls-key", env.path("missing.key")], 1, "missing.key"),
             (["--tls-cert", env.keyfile, "--tls-key", env.keyfile], 1, "certificate"),
             (["--tls-cert", env.cert, "--tls-key", enc_key], 1, "encrypted")]
    for args, rc, word in cases:
        try:
            p = subprocess.run(h.WRAPPER + [h.BROKER, "--listen", "127.0.0.1:0", "--db",
                                            env.reg.db, *args], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=h.T(10))
        except subprocess.TimeoutExpired:
            raise h.Failure("broker kept running with %r" % args) from None
        h.eq(p.returncode, rc, "exit code with %r (%s)" % (args, p.stderr.strip()[-200:]))
        h.check(word in p.stderr, "%r: the error mentions %r: %r" % (args, word, p.stderr[-300:]))


async def test_reload_certificate(env):
    b = env.client.b
    old_ctx = env.client.tls
    before = handshake(b.port, old_ctx)[2]
    live, _ = await env.client.ws(env, h.mint(env.key, {"*": BOTH}))
    new_cert, new_key = make_cert(env, "renewed")
    h.check(der_of(new_cert) != before, "a different certificate")
    os.replace(new_key, env.keyfile)
    os.replace(new_cert, env.cert)
    mark = len(b.lines)
    b.proc.send_signal(signal.SIGHUP)
    wait_log_after(b, mark, lambda o: o.get("msg") == "tls certificate reloaded", h.T(5))
    new_ctx = trust(env.cert)
    h.eq(handshake(b.port, new_ctx)[2], der_of(env.cert), "new handshakes get the new certificate")
    env.client.tls = new_ctx
    h.eq((await live.request({"op": "ping", "id": 1}))["op"], "pong",
         "a connection made before the reload continues")
    r = env.client.request("GET", "/v1/key", key=env.key)
    h.eq(r.status, 200, "https with the new certificate")
    h.check(any('"tls certificate reloaded"' in l for l in b.lines[mark:]), "reload logged")


async def test_reload_bad_pair_keeps_running_one(env):
    b = env.client.b
    served = der_of(env.cert)
    with open(env.cert, "rb") as f:
        good_cert = f.read()
    with open(env.keyfile, "rb") as f:
        good_key = f.read()
    _, other_key = make_cert(env, "mismatch")
    try:
        for what, write in (("garbage key", lambda: open(env.keyfile, "w").write("garbage\n")),
                            ("mismatched key", lambda: os.replace(other_key, env.keyfile)),
                            ("empty cert", lambda: open(env.cert, "w").close())):
            write()
            mark = len(b.lines)
            b.proc.send_signal(signal.SIGHUP)
            o = wait_log_after(b, mark, lambda o: o.get("msg", "").startswith(
                "tls certificate not reloaded"), h.T(5))
            h.eq(o.get("level"), "error", "%s: logged as an error" % what)
            h.eq(handshake(b.port, env.client.tls)[2], served, "%s: the running pair stays" % what)
            h.eq(env.client.request("GET", "/healthz").status, 200, "%s: still serving" % what)
            with open(env.cert, "wb") as f:
                f.write(good_cert)
            with open(env.keyfile, "wb") as f:
                f.write(good_key)
    finally:
        with open(env.cert, "wb") as f:
            f.write(good_cert)
        with open(env.keyfile, "wb") as f:
            f.write(good_key)


h.main(setup, api.SHARED + [test_tls_versions_and_alpn, test_plain_http_refused,
                            test_wss_large_and_many, test_slow_tls_subscriber_dropped,
                            test_start_errors, test_reload_certificate,
                            test_reload_bad_pair_keeps_running_one])
