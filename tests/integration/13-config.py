#!/usr/bin/python3
"""13-config: the broker's command line and config file: --help, --version,
bad flags and values, config-file errors naming the line, file values and
flag overrides, LATCHKEY_DB, a missing registry, a port in use, and
--log-file reopened on SIGHUP (SPEC 6a and the agreed options)."""

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import time

import lkharness as h

FLAGS = ["--listen", "--db", "--config", "--audience", "--max-token-ttl", "--max-frame",
         "--max-subscriptions", "--max-connections", "--publish-rate", "--publish-burst",
         "--rate-limit-close", "--send-queue-messages", "--send-queue-bytes", "--history",
         "--ping-interval", "--allowed-origins", "--log-level", "--log-file", "--help",
         "--version"]


def setup(env):
    env.reg = env.registry()
    env.key = env.reg.create_key("ws_config")


def run(args, env_extra=None, timeout=None):
    """Runs the broker expecting it to exit by itself."""
    e = dict(os.environ)
    e.update(env_extra or {})
    try:
        return subprocess.run(h.WRAPPER + [h.BROKER] + args, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, env=e,
                              timeout=h.T(10) if timeout is None else timeout)
    except subprocess.TimeoutExpired:
        raise h.Failure("broker kept running with %r" % args) from None


def write(env, name, text):
    p = env.path(name)
    with open(p, "w") as f:
        f.write(text)
    return p


async def test_help(env):
    p = run(["--help"])
    h.eq(p.returncode, 0, "--help exit code")
    missing = [f for f in FLAGS if f not in p.stdout]
    h.eq(missing, [], "flags missing from --help")


async def test_version(env):
    p = run(["--version"])
    h.eq(p.returncode, 0, "--version exit code")
    h.check(re.search(r"\d+\.\d+", p.stdout), "--version prints a version: %r" % p.stdout)


async def test_bad_flags(env):
    for args, word in ((["--no-such-flag"], "no-such-flag"),
                       (["--max-frame", "abc"], "max-frame"),
                       (["--max-frame"], "max-frame"),
                       (["--publish-rate", "-5"], "publish-rate"),
                       (["--listen", "nonsense"], "listen"),
                       (["--log-level", "loud"], "log-level"),
                       (["stray-argument"], "stray-argument")):
        p = run(["--listen", "127.0.0.1:0", "--db", env.reg.db] + args)
        h.check(p.returncode != 0, "%r exits non-zero" % args)
        h.check(word in p.stderr, "%r: the error names %r: %r" % (args, word, p.stderr[-300:]))


async def test_config_file_errors_name_the_line(env):
    for text, line in (("# comment\nmax-frame 2048\nbogus-key 1\n", 3),
                       ("\n\n\n   # indented comment\nhistory ten\n", 5),
                       ("max-subscriptions 5\nmax-subscriptions -6\n", 2),
                       ("publish-rate\n", 1)):
        path = write(env, "bad.conf", text)
        p = run(["--listen", "127.0.0.1:0", "--db", env.reg.db, "--config", path])
        h.check(p.returncode != 0, "bad config exits non-zero")
        h.check(re.search(r"(:|line )%d\b" % line, p.stderr),
                "error names line %d: %r" % (line, p.stderr[-300:]))
    p = run(["--listen", "127.0.0.1:0", "--db", env.reg.db, "--config", env.path("absent.conf")])
    h.check(p.returncode != 0 and "absent.conf" in p.stderr, "missing config file named")


async def test_config_file_values_and_overrides(env):
    path = write(env, "good.conf", "# broker settings\n\nlisten 127.0.0.1:0\n"
                 "db %s\nmax-frame 2048   # trailing comment\nmax-subscriptions 2\n"
                 % env.reg.db)
    b = h.Broker(env, env.reg.db, ["--config", path], with_db=False, with_listen=False).start()
    c, w = await h.connect_ok(env, b, h.mint(env.key))
    h.eq(w["max_frame"], 2048, "max-frame from the file")
    for i in range(2):
        await c.request({"op": "subscribe", "id": i, "channel": h.channel()})
    r = await c.request({"op": "subscribe", "id": 9, "channel": h.channel()})
    h.eq((r.get("code"), r.get("message")), ("bad_request", "subscription limit reached (2)"),
         "max-subscriptions from the file")
    b2 = h.Broker(env, env.reg.db, ["--config", path, "--max-frame", "4096"]).start()
    c, w = await h.connect_ok(env, b2, h.mint(env.key))
    h.eq(w["max_frame"], 4096, "the flag overrides the file")


async def test_latchkey_db_env(env):
    b = h.Broker(env, env.reg.db, with_db=False, extra_env={"LATCHKEY_DB": env.reg.db}).start()
    await h.connect_ok(env, b, h.mint(env.key))


async def test_missing_registry(env):
    missing = env.path("nope.db")
    p = run(["--listen", "127.0.0.1:0", "--db", missing])
    h.check(p.returncode != 0, "missing registry exits non-zero")
    h.check("nope.db" in p.stderr, "error names the registry: %r" % p.stderr[-300:])
    h.check(not os.path.exists(missing), "the broker does not create the registry")


async def test_port_in_use(env):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        p = run(["--listen", "127.0.0.1:%d" % port, "--db", env.reg.db])
    finally:
        s.close()
    h.check(p.returncode != 0, "port in use exits non-zero")
    h.check(str(port) in p.stderr or "in use" in p.stderr.lower(),
            "error names the port: %r" % p.stderr[-300:])


def wait_file_line(path, pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                for line in f:
                    try:
                        o = json.loads(line)
                    except ValueError:
                        continue
                    if pred(o):
                        return o
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    raise h.Failure("no matching line in %s" % path)


async def test_log_file_reopened_on_sighup(env):
    log = env.path("broker.log")
    b = h.Broker(env, env.reg.db, ["--log-file", log])
    b.start(wait=False)
    line = await asyncio.to_thread(wait_file_line, log, lambda o: o.get("msg") == "listening",
                                   h.T(10))
    b.port = line["port"]
    await h.connect_ok(env, b, h.mint(env.key))
    os.rename(log, log + ".1")
    b.proc.send_signal(signal.SIGHUP)
    await h.connect_refused(env, b, "garbage", "unauthorized", 4401)
    c, _ = await h.connect_ok(env, b, h.mint(env.key))
    await c.close()
    await asyncio.to_thread(wait_file_line, log, lambda o: isinstance(o.get("msg"), str), h.T(5))
    h.check(b.alive(), "broker survives SIGHUP")
    for path in (log, log + ".1"):
        with open(path) as f:
            text = f.read()
        for sec in h.SECRETS:
            h.check(sec not in text, "%s holds a token, key or secret" % os.path.basename(path))


h.main(setup, [test_help, test_version, test_bad_flags, test_config_file_errors_name_the_line,
               test_config_file_values_and_overrides, test_latchkey_db_env,
               test_missing_registry, test_port_in_use, test_log_file_reopened_on_sighup])
