#!/usr/bin/python3
"""09-shutdown: SIGTERM or SIGINT closes every connection with 1001 and the
broker exits 0 within 2 s (SPEC 6a)."""

import asyncio
import signal
import socket

import lkharness as h
from lkharness import BOTH

DEADLINE = 2.0


def setup(env):
    env.reg = env.registry()
    env.key = env.reg.create_key("ws_shutdown")


async def shutdown_with_clients(env, sig, n):
    b = env.broker(env.reg)
    ch = h.channel()
    conns = []
    for i in range(n):
        c, _ = await h.connect_ok(env, b, h.mint(env.key, {"*": BOTH}, sub="c%d" % i),
                                  ("bearer", "header", "query")[i % 3])
        if i % 2 == 0:
            await c.request({"op": "subscribe", "id": 1, "channel": ch})
        conns.append(c)
    # One client is mid-stream when the signal arrives.
    for i in range(50):
        await conns[1].send({"op": "publish", "channel": ch, "data": i})
    rc, secs = await asyncio.to_thread(b.signal_and_wait, sig, h.T(DEADLINE))
    codes = []
    for c in conns:
        code, _ = await c.until_closed(h.T(3))
        codes.append(code)
    print("     signal %d: exit %d after %.3fs, close codes %s" % (sig, rc, secs, codes))
    h.eq(codes, [1001] * n, "close codes")
    h.eq(rc, 0, "exit code")
    h.check(secs <= DEADLINE, "exited %.2fs after the signal" % secs)
    s = socket.socket()
    try:
        s.settimeout(h.T(2))
        h.check(s.connect_ex(("127.0.0.1", b.port)) != 0, "port closed after exit")
    finally:
        s.close()


async def test_sigterm(env):
    await shutdown_with_clients(env, signal.SIGTERM, 6)


async def test_sigint(env):
    await shutdown_with_clients(env, signal.SIGINT, 3)


async def test_idle_sigterm(env):
    b = env.broker(env.reg)
    rc, secs = await asyncio.to_thread(b.signal_and_wait, signal.SIGTERM, h.T(DEADLINE))
    h.eq(rc, 0, "exit code")
    h.check(secs <= DEADLINE, "exited %.2fs after the signal" % secs)


async def test_refused_upgrade_then_sigterm(env):
    b = env.broker(env.reg)
    await h.connect_refused(env, b, "garbage", "unauthorized", 4401)
    c, _ = await h.connect_ok(env, b, h.mint(env.key))
    rc, secs = await asyncio.to_thread(b.signal_and_wait, signal.SIGTERM, h.T(DEADLINE))
    code, _ = await c.until_closed(h.T(3))
    h.eq((rc, code), (0, 1001), "exit code and close code")


async def test_sigterm_with_a_client_that_never_answers_close(env):
    # The broker waits for each client's Close after sending 1001, but a
    # client that never sends one must not hold up the exit.
    b = env.broker(env.reg)
    raw = h.RawWS(b.port, h.mint(env.key))
    try:
        raw.read_message(h.T(3))
        c, _ = await h.connect_ok(env, b, h.mint(env.key))
        rc, secs = await asyncio.to_thread(b.signal_and_wait, signal.SIGTERM,
                                           h.T(DEADLINE))
        code, _ = await asyncio.to_thread(raw.until_close, h.T(3))
        print("     exit %d after %.3fs; silent client got %s" % (rc, secs, code))
        h.eq((rc, code), (0, 1001), "exit code and the silent client's close code")
        h.check(secs <= DEADLINE, "exited %.2fs after the signal" % secs)
        code, _ = await c.until_closed(h.T(3))
        h.eq(code, 1001, "close code of the answering client")
    finally:
        raw.close()


h.main(setup, [test_sigterm, test_sigint, test_idle_sigterm, test_refused_upgrade_then_sigterm,
               test_sigterm_with_a_client_that_never_answers_close])
