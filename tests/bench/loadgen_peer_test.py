#!/usr/bin/python3
"""Runs loadgen against an independent WebSocket implementation.

A minimal latchkey.v1 peer built on Python's `websockets` (which checks
client masking and the handshake itself) sends welcome, answers subscribe,
fans publishes out to subscribers (some with whitespace and members in
another order), packs several messages per frame with '\\n', fragments
some frames, pings every connection and refuses a wrong
token with HTTP 401. loadgen's sub, pub, idle and connect modes must count
exactly what was sent, with no gaps, also with per-connection channels
(--channel-pattern) plus a shared one.

usage: loadgen_peer_test.py PATH/TO/loadgen
"""
import asyncio
import http
import json
import os
import secrets
import sys
import tempfile

import websockets

TOKEN = "eyJ0ZXN0IjoxfQ." + secrets.token_urlsafe(24) + ".sig"
SUBS = 20


class Peer:
    def __init__(self):
        self.channels = {}
        self.packed = 0
        self.fragmented = 0
        self.pongs = 0
        self.ping_failures = 0
        self.seq = 0

    async def check_request(self, path, headers):
        offered = [p.strip() for p in headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if path != "/v1/realtime" or "bearer." + TOKEN not in offered:
            return (http.HTTPStatus.UNAUTHORIZED, [("Content-Length", "0")], b"")
        return None

    async def writer(self, ws, queue):
        n = 0
        while True:
            lines = [await queue.get()]
            while not queue.empty() and len(lines) < 20:
                lines.append(queue.get_nowait())
            text = "\n".join(lines)
            if len(lines) > 1:
                self.packed += 1
            n += 1
            if n % 3 == 0 and len(text) >= 3:
                third = len(text) // 3
                await ws.send([text[:third], text[third:2 * third], text[2 * third:]])
                self.fragmented += 1
            else:
                await ws.send(text)

    async def pinger(self, ws):
        while True:
            await asyncio.sleep(0.2)
            try:
                await asyncio.wait_for(await ws.ping(b"lg"), 2)
                self.pongs += 1
            except asyncio.TimeoutError:
                self.ping_failures += 1
            except websockets.ConnectionClosed:
                return

    async def handler(self, ws, path=None):
        queue = asyncio.Queue()
        tasks = [asyncio.ensure_future(self.writer(ws, queue)),
                 asyncio.ensure_future(self.pinger(ws))]
        subscribed = set()
        try:
            await queue.put(json.dumps({"op": "welcome", "conn_id": "c", "client_id": None,
                                        "workspace": "ws_bench", "expires_at": 0,
                                        "server_time": 0, "max_frame": 65536},
                                       separators=(",", ":")))
            async for raw in ws:
                msg = json.loads(raw)
                if msg["op"] == "subscribe":
                    ch = msg["channel"]
                    self.channels.setdefault(ch, set()).add(queue)
                    subscribed.add(ch)
                    await queue.put('{"op":"subscribed","id":%d,"channel":"%s","seq":%d}'
                                    % (msg["id"], ch, self.seq))
                elif msg["op"] == "publish":
                    self.seq += 1
                    if self.seq % 4:
                        data = json.dumps(msg["data"], separators=(",", ":"))
                        out = ('{"op":"message","channel":"%s","seq":%d,"data":%s,'
                               '"from":null,"ts":0}' % (msg["channel"], self.seq, data))
                    else:
                        # Insignificant whitespace and another member order
                        # are allowed too.
                        out = json.dumps({"channel": msg["channel"], "op": "message",
                                          "seq": self.seq, "from": "data", "ts": 0,
                                          "data": msg["data"]})
                    for q in self.channels.get(msg["channel"], ()):
                        q.put_nowait(out)
        except websockets.ConnectionClosed:
            pass
        finally:
            for ch in subscribed:
                self.channels[ch].discard(queue)
            for t in tasks:
                t.cancel()


def last_json(line):
    assert line, "loadgen printed nothing"
    return json.loads(line)


async def run(loadgen):
    peer = Peer()
    server = await websockets.serve(peer.handler, "127.0.0.1", 0, subprotocols=["latchkey.v1"],
                                    process_request=peer.check_request)
    port = server.sockets[0].getsockname()[1]
    tmp = tempfile.mkdtemp(prefix="lg-peer-")
    good = os.path.join(tmp, "token")
    bad = os.path.join(tmp, "bad")
    for path, tok in ((good, TOKEN), (bad, TOKEN + "x")):
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(tok + "\n")
    common = ["--port", str(port), "--token-file", good, "--channel", "peer:test"]

    async def run_once(*args, timeout=20):
        p = await asyncio.create_subprocess_exec(loadgen, *args, stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(p.communicate(), timeout)
        assert p.returncode == 0, (args, p.returncode)
        return last_json(out.decode().strip().splitlines()[-1])

    sub = await asyncio.create_subprocess_exec(
        loadgen, "sub", "-n", str(SUBS), "--control", "--duration", "60", "--quiet-ms", "200",
        "--src", "127.0.0.1,127.0.0.2", *common,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    try:
        ready = last_json(await asyncio.wait_for(sub.stdout.readline(), 20))
        assert ready["event"] == "ready" and ready["ready"] == SUBS, ready
        assert ready["proto"] == "latchkey" and ready["mode"] == "sub", ready

        steps = [("500", "1", "1", "0"), ("300", "0.5", "2", "5")]
        for rate, dur, conns, pub_id in steps:
            pub = await run_once("pub", "--rate", rate, "--duration", dur, "-n", conns,
                                 "--pub-id", pub_id, *common)
            want = int(float(rate) * float(dur))
            assert pub["sent"] == want and pub["ready"] == int(conns), pub
            assert pub["unflushed"] == 0 and pub["skipped"] == 0, pub
            sub.stdin.write(b"report\n")
            await sub.stdin.drain()
            step = last_json(await asyncio.wait_for(sub.stdout.readline(), 20))
            assert step["event"] == "step", step
            assert step["received"] == want * SUBS, (step["received"], want * SUBS)
            assert step["gaps"] == 0 and step["dups"] == 0 and step["bad_payload"] == 0, step
            assert step["open"] == SUBS and step["failed"] == 0, step
            assert sum(c for _, c in step["hist"]) == step["received"], "histogram total"
            assert 0 < step["lat_us"]["p50"] <= step["lat_us"]["p99"] <= step["lat_us"]["max"]
            print("step rate=%s: %d received, p50 %.0f us, p99 %.0f us"
                  % (rate, step["received"], step["lat_us"]["p50"], step["lat_us"]["p99"]))

        sub.stdin.write(b"quit\n")
        await sub.stdin.drain()
        final = last_json(await asyncio.wait_for(sub.stdout.readline(), 20))
        assert final["event"] == "result" and final["received"] == 0, final
        assert await asyncio.wait_for(sub.wait(), 10) == 0
    finally:
        if sub.returncode is None:
            sub.kill()
            await sub.wait()

    # Own channel per connection plus a shared one: 5 subscribers on
    # peer:c0..c4 and peer:shared; every 4th publish goes to the shared one.
    pat = ["--port", str(port), "--token-file", good, "--channel", "peer:shared",
           "--channel-pattern", "peer:c%d"]
    psub = await asyncio.create_subprocess_exec(
        loadgen, "sub", "-n", "5", "--control", "--duration", "60", "--quiet-ms", "200",
        "--shared", *pat, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    try:
        ready = last_json(await asyncio.wait_for(psub.stdout.readline(), 20))
        assert ready["ready"] == 5, ready
        pub = await run_once("pub", "--rate", "400", "--duration", "0.5", "-n", "2",
                             "--channel-count", "5", "--shared-every", "4", *pat)
        assert pub["sent"] == 200 and pub["sent_shared"] == 50 and pub["sent_own"] == 150, pub
        psub.stdin.write(b"quit\n")
        await psub.stdin.drain()
        res = last_json(await asyncio.wait_for(psub.stdout.readline(), 20))
        assert res["received_own"] == 150 and res["received_shared"] == 250, res
        assert res["gaps"] == 0 and res["dups"] == 0 and res["bad_payload"] == 0, res
        assert await asyncio.wait_for(psub.wait(), 10) == 0
    finally:
        if psub.returncode is None:
            psub.kill()
            await psub.wait()

    # Connect rate: a round per line, the second after dropping them all.
    p = await asyncio.create_subprocess_exec(loadgen, "connect", "-n", "30", "--rounds", "2",
                                             *common, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(p.communicate(), 30)
    assert p.returncode == 0
    rounds = [json.loads(l) for l in out.decode().splitlines() if '"round"' in l]
    assert [r["round"] for r in rounds] == [1, 2], rounds
    assert all(r["ok"] == 30 and r["failed"] == 0 and r["rate"] > 0 for r in rounds), rounds
    bad_connect = await run_once("connect", "-n", "4", "--port", str(port), "--token-file", bad)
    assert bad_connect["failures"] == {"upgrade_HTTP_401": 4}, bad_connect

    idle = await run_once("idle", "-n", "10", "--duration", "0.6", *common)
    assert idle["ready"] == 10 and idle["open"] == 10 and idle["failed"] == 0, idle

    refused = await run_once("idle", "-n", "3", "--duration", "0.2", "--port", str(port),
                             "--token-file", bad)
    assert refused["ready"] == 0 and refused["failures"] == {"upgrade_HTTP_401": 3}, refused

    # Nothing listens on the old port once the peer is gone.
    server.close()
    await server.wait_closed()
    down = await run_once("idle", "-n", "2", "--duration", "0.2", *common)
    assert down["failed"] == 2 and down["failures"].get("connect_refused") == 2, down

    assert peer.packed > 0 and peer.fragmented > 0, (peer.packed, peer.fragmented)
    assert peer.pongs > 0 and peer.ping_failures == 0, (peer.pongs, peer.ping_failures)
    print("packed frames %d, fragmented %d, pongs %d" % (peer.packed, peer.fragmented, peer.pongs))
    for name in os.listdir(tmp):
        os.unlink(os.path.join(tmp, name))
    os.rmdir(tmp)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    asyncio.run(asyncio.wait_for(run(sys.argv[1]), 50))
    print("loadgen peer test: ok")


if __name__ == "__main__":
    main()
