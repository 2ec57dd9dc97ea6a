#!/usr/bin/python3
"""Runs loadgen against the servers of the comparison benchmark.

Starts `limit` and, when installed, nats-server and mosquitto with the
config templates here (nats.conf, mosquitto.conf), each on free loopback
ports, and against each:
  - fan-out: sub -n 50 on one channel + pub at 200 msg/s for 1 s: every
    message reaches every subscriber exactly once, in order, with a
    plausible latency;
  - channels: sub -n 10 with --channel-pattern and --shared + pub over the
    10 channels with every 5th message on the shared one: per-kind counts
    match, no gaps;
  - connect -n 200 --rounds 2: every connection ready in both rounds.
The two fan-outs run at once, on different channels. Exits 77 (skip) after
the rest passed when a server binary is missing. Servers are stopped by
PID whatever happens.

usage: loadgen_servers_test.py LOADGEN LIMIT CONFIG_DIR
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

SUBS = 50
RATE = 200
PATTERN_SUBS = 10


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, "server exited with %s" % proc.returncode
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("port %d never opened" % port)


def find(name, *paths):
    for p in paths:
        if os.access(p, os.X_OK):
            return p
    return shutil.which(name)


def template(src, dst, **subs):
    text = open(src).read()
    for k, v in subs.items():
        text = text.replace("@%s@" % k, str(v))
    assert "@" not in "".join(l.split("#")[0] for l in text.splitlines()), "unreplaced"
    with open(dst, "w") as f:
        f.write(text)
    return dst


def lines(out):
    return [json.loads(l) for l in out.decode().splitlines() if l.strip()]


class Sub:
    """A loadgen sub process driven through --control."""

    def __init__(self, loadgen, proto, port, n, extra):
        self.p = subprocess.Popen([loadgen, "sub", "--proto", proto, "--port", str(port),
                                   "-n", str(n), "--control", "--duration", "30",
                                   "--quiet-ms", "300"] + extra,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def ready(self):
        r = json.loads(self.p.stdout.readline())
        assert r["event"] == "ready", r
        return r

    def result(self):
        out, _ = self.p.communicate(b"quit\n", timeout=20)
        assert self.p.returncode == 0, self.p.returncode
        r = lines(out)[-1]
        assert r["event"] == "result", r
        return r

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def run_server(loadgen, name, proto, port):
    t0 = time.monotonic()
    fan = Sub(loadgen, proto, port, SUBS, ["--channel", "bench:fanout"])
    pat = Sub(loadgen, proto, port, PATTERN_SUBS,
              ["--channel", "bench:shared", "--channel-pattern", "bench:c%d",
               "--channel-offset", "0", "--shared"])
    try:
        for s, n in ((fan, SUBS), (pat, PATTERN_SUBS)):
            r = s.ready()
            assert r["ready"] == n and r["failed"] == 0 and r["proto"] == proto, r
        pubs = [
            subprocess.Popen([loadgen, "pub", "--proto", proto, "--port", str(port),
                              "--rate", str(RATE), "--duration", "1",
                              "--channel", "bench:fanout"], stdout=subprocess.PIPE),
            subprocess.Popen([loadgen, "pub", "--proto", proto, "--port", str(port),
                              "--rate", str(RATE), "--duration", "1", "-n", "2",
                              "--pub-id", "10", "--channel", "bench:shared",
                              "--channel-pattern", "bench:c%d",
                              "--channel-count", str(PATTERN_SUBS), "--shared-every", "5"],
                             stdout=subprocess.PIPE)]
        res = []
        for p in pubs:
            out, _ = p.communicate(timeout=30)
            assert p.returncode == 0, p.returncode
            res.append(lines(out)[-1])
        pub, ppub = res
        assert pub["sent"] == RATE and pub["unflushed"] == 0 and pub["skipped"] == 0, pub
        assert ppub["sent"] == RATE and ppub["unflushed"] == 0, ppub
        assert ppub["sent_shared"] == RATE // 5 and ppub["sent_own"] == RATE - RATE // 5, ppub

        f = fan.result()
        assert f["received"] == RATE * SUBS, (name, f["received"], RATE * SUBS)
        assert f["gaps"] == 0 and f["dups"] == 0 and f["bad_payload"] == 0, f
        assert f["open"] == SUBS and not f["errors"], f
        lat = f["lat_us"]
        assert 0 < lat["p50"] <= lat["p99"] <= lat["max"], lat
        # Plausible: a 200 msg/s x 50 fan-out on loopback is far from any
        # server's limit; allow for a loaded machine (and mosquitto's
        # WebSocket clients, serviced on a 100 ms poll).
        assert lat["p50"] < 1e6 and lat["max"] < 5e6, lat

        p = pat.result()
        assert p["received_own"] == ppub["sent_own"], (name, p, ppub)
        assert p["received_shared"] == ppub["sent_shared"] * PATTERN_SUBS, (name, p, ppub)
        assert p["gaps"] == 0 and p["dups"] == 0 and p["bad_payload"] == 0, p
    finally:
        fan.kill()
        pat.kill()

    out = subprocess.run([loadgen, "connect", "--proto", proto, "--port", str(port),
                          "-n", "200", "--rounds", "2", "--connect-timeout", "10"],
                         stdout=subprocess.PIPE, timeout=40, check=True).stdout
    rounds = [r for r in lines(out) if r["event"] == "round"]
    assert [r["round"] for r in rounds] == [1, 2], rounds
    for r in rounds:
        assert r["ok"] == 200 and r["failed"] == 0, r
        assert r["seconds"] > 0 and r["rate"] > 0, r
        assert 0 < r["hs_ms"]["p50"] <= r["hs_ms"]["p99"], r
    print("%-9s fan-out p50 %.2f ms p99 %.2f ms; connect %.0f/s, reconnect %.0f/s; %.1f s"
          % (name, lat["p50"] / 1e3, lat["p99"] / 1e3, rounds[0]["rate"], rounds[1]["rate"],
             time.monotonic() - t0))


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    loadgen, limit, confdir = sys.argv[1:]
    nats = find("nats-server", "/usr/bin/nats-server")
    mosquitto = find("mosquitto", "/usr/sbin/mosquitto")
    tmp = tempfile.mkdtemp(prefix="lg-servers-")
    procs = []
    try:
        p = subprocess.Popen([limit, "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE)
        procs.append(p)
        line = p.stderr.readline().decode()
        assert line.startswith('{"msg":"listening","port":'), line
        run_server(loadgen, "limit", "raw", int(line.split(":")[-1].rstrip("}\n")))

        if nats:
            port, cport = free_port(), free_port()
            conf = template(os.path.join(confdir, "nats.conf"), os.path.join(tmp, "nats.conf"),
                            PORT=port, CPORT=cport, DIR=tmp)
            p = subprocess.Popen([nats, "-c", conf], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            procs.append(p)
            wait_port(port, p)
            run_server(loadgen, "nats", "nats", port)
        if mosquitto:
            port, cport = free_port(), free_port()
            conf = template(os.path.join(confdir, "mosquitto.conf"),
                            os.path.join(tmp, "mosquitto.conf"), PORT=port, CPORT=cport, DIR=tmp)
            p = subprocess.Popen([mosquitto, "-c", conf], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            procs.append(p)
            wait_port(port, p)
            run_server(loadgen, "mosquitto", "mqtt", port)
        # limit exits 0 on SIGTERM (nats-server, for one, exits 1).
        stop(procs[0])
        assert procs[0].returncode == 0, procs[0].returncode
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)
    if not nats or not mosquitto:
        print("skipped: %s not installed" % " and ".join(
            n for n, b in (("nats-server", nats), ("mosquitto", mosquitto)) if not b))
        sys.exit(77)
    print("loadgen servers test: ok")


if __name__ == "__main__":
    main()
