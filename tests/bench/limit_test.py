#!/usr/bin/python3
"""Checks the `limit` broadcaster on its own.

Runs limit on a free loopback port and talks to it with Python's
`websockets` (an independent implementation that checks the handshake and
framing) and with a raw-socket client that controls every byte: the
upgrade and its refusals, fan-out by channel, the batching of a loop turn's
messages into one frame split on '\\n', frames capped at 65535 bytes,
ping/pong, close codes for bad frames, and a clean exit on SIGTERM. Also
that it refuses to listen outside 127.0.0.0/8.

usage: limit_test.py PATH/TO/limit
"""
import asyncio
import base64
import hashlib
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

import websockets

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def start(limit, listen="127.0.0.1:0"):
    p = subprocess.Popen([limit, "--listen", listen], stderr=subprocess.PIPE)
    line = p.stderr.readline().decode()
    assert line.startswith('{"msg":"listening","port":'), line
    return p, int(line.split(":")[-1].rstrip("}\n"))


class Raw:
    """A WebSocket client on a plain socket."""

    def __init__(self, port, path, key=None, extra=b""):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.key = key or base64.b64encode(os.urandom(16))
        self.s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                       b"Connection: Upgrade\r\nSec-WebSocket-Key: " + self.key +
                       b"\r\nSec-WebSocket-Version: 13\r\n" + extra + b"\r\n")
        self.buf = b""
        head = self.read_until(b"\r\n\r\n")
        self.status = int(head.split(b" ")[1])
        if self.status == 101:
            want = base64.b64encode(hashlib.sha1(self.key + GUID).digest())
            assert b"Sec-WebSocket-Accept: " + want + b"\r\n" in head, head

    def read_until(self, sep):
        while sep not in self.buf:
            chunk = self.s.recv(65536)
            assert chunk, "eof before %r" % sep
            self.buf += chunk
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_n(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            assert chunk, "eof"
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    @staticmethod
    def frame(opcode, payload, mask=True, fin=True):
        head = bytes([(0x80 if fin else 0) | opcode])
        n = len(payload)
        m = 0x80 if mask else 0
        if n < 126:
            head += bytes([m | n])
        elif n <= 0xFFFF:
            head += bytes([m | 126]) + struct.pack("!H", n)
        else:
            head += bytes([m | 127]) + struct.pack("!Q", n)
        if not mask:
            return head + payload
        key = os.urandom(4)
        return head + key + bytes(b ^ key[i & 3] for i, b in enumerate(payload))

    def send(self, *frames):
        self.s.sendall(b"".join(frames))

    def recv_frame(self):
        """(opcode, payload); checks the server's header is minimal and unmasked."""
        b0, b1 = self.read_n(2)
        assert b0 & 0x80 and not b0 & 0x70 and not b1 & 0x80, (b0, b1)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.read_n(2))[0]
            assert n >= 126, "non-minimal length"
        elif n == 127:
            raise AssertionError("server frames stay under 64 KiB")
        return b0 & 0x0F, self.read_n(n)

    def lines(self, want):
        """Reads text frames until `want` lines came; returns (lines, frames)."""
        lines, frames = [], 0
        while len(lines) < want:
            op, p = self.recv_frame()
            assert op == 1, op
            frames += 1
            lines += p.split(b"\n")
        assert len(lines) == want, (len(lines), want)
        return lines, frames

    def quiet(self, t=0.2):
        r, _, _ = select.select([self.s], [], [], t)
        return not r and not self.buf

    def close(self):
        self.s.close()


def refused(port, request):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    return int(data.split(b" ")[1]) if data else 0


def check_handshakes(port):
    assert refused(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 400
    assert refused(port, b"POST / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n") == 400
    big = b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n"
    assert refused(port, big) == 431
    for path in ("/sub/a%20b", "/sub/", "/sub/a,", "/sub/" + "x" * 201,
                 "/sub/" + ",".join("c%d" % i for i in range(9))):
        assert Raw(port, path).status == 400, path
    assert Raw(port, "/sub/a", key=b"short").status == 400
    assert Raw(port, "/pub").status == 101


def check_fanout(port):
    both = Raw(port, "/sub/t:a,t:b")
    only_a = Raw(port, "/sub/t:a")
    pub = Raw(port, "/pub")
    # 300 frames and one frame of two lines, in one write: limit reads them
    # in one turn, so each subscriber gets them packed into few frames.
    frames = [Raw.frame(1, b"t:a m%d" % i) for i in range(300)]
    frames.append(Raw.frame(1, b"t:b x1\nt:b x2\nt:none dropped\nnospace"))
    pub.send(*frames)
    lines, nframes = both.lines(302)
    assert lines == [b"t:a m%d" % i for i in range(300)] + [b"t:b x1", b"t:b x2"], lines[:5]
    assert nframes < 302, "no batching: %d frames" % nframes
    lines, _ = only_a.lines(300)
    assert lines[-1] == b"t:a m299"
    assert only_a.quiet(), "a subscriber of t:a got t:b"
    assert pub.quiet(), "a connection that subscribed to nothing got data"

    # Over 64 KiB in one turn: several frames, each under the cap, lines whole.
    big = [b"t:a " + (b"%04d" % i) * 250 for i in range(100)]  # ~1000 bytes each
    pub.send(*[Raw.frame(1, x) for x in big])
    lines, nframes = only_a.lines(100)
    assert lines == big and nframes >= 2, nframes

    # One connection subscribed to what it publishes, with a ping in between:
    # text, pong, text (the second a short frame after another in the buffer).
    self_sub = Raw(port, "/sub/t:self")
    self_sub.send(Raw.frame(1, b"t:self one"), Raw.frame(9, b"pp"), Raw.frame(1, b"t:self two"))
    assert self_sub.recv_frame() == (1, b"t:self one")
    assert self_sub.recv_frame() == (0xA, b"pp")
    assert self_sub.recv_frame() == (1, b"t:self two")
    for c in (both, only_a, pub, self_sub):
        c.close()
    # Publishing to channels whose subscribers left is fine.
    pub = Raw(port, "/pub")
    pub.send(Raw.frame(1, b"t:a gone"), Raw.frame(8, b"\x03\xe8"))
    assert pub.recv_frame() == (8, b"\x03\xe8")
    pub.close()


def check_bad_frames(port):
    cases = [
        (Raw.frame(1, b"t:a x", mask=False), 1002),       # unmasked
        (Raw.frame(1, b"t:a " + b"y" * 65532), 1009),     # 65536 bytes
        (Raw.frame(2, b"t:a x"), 1003),                   # binary
        (Raw.frame(1, b"t:a x", fin=False), 1003),        # fragmented
        (bytes([0xC1, 0x80]) + b"\0\0\0\0", 1002),        # reserved bit
    ]
    for frame, code in cases:
        c = Raw(port, "/pub")
        c.send(frame)
        op, p = c.recv_frame()
        assert op == 8 and struct.unpack("!H", p)[0] == code, (op, p, code)
        c.close()


async def check_with_websockets(port):
    """An independent client: its handshake checks, pings and framing."""
    async with websockets.connect("ws://127.0.0.1:%d/sub/w:x" % port) as sub, \
            websockets.connect("ws://127.0.0.1:%d/pub" % port) as pub:
        await asyncio.wait_for(await sub.ping(b"hi"), 5)
        for i in range(50):
            await pub.send("w:x n%d" % i)
        got = []
        while len(got) < 50:
            got += (await asyncio.wait_for(sub.recv(), 5)).split("\n")
        assert got == ["w:x n%d" % i for i in range(50)], got[:3]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    limit = sys.argv[1]
    for bad in ("0.0.0.0:0", "10.1.2.3:0", "127.0.0.1", "localhost:0"):
        r = subprocess.run([limit, "--listen", bad], stderr=subprocess.PIPE, timeout=5)
        assert r.returncode == 2, (bad, r.returncode)
    p, port = start(limit)
    try:
        check_handshakes(port)
        check_fanout(port)
        check_bad_frames(port)
        asyncio.run(asyncio.wait_for(check_with_websockets(port), 20))
        # Still serving after all of that.
        assert Raw(port, "/sub/t:a").status == 101
        t = time.monotonic()
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=5) == 0
        assert time.monotonic() - t < 1.0, "slow exit"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    print("limit test: ok")


if __name__ == "__main__":
    main()
