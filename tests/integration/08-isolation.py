#!/usr/bin/python3
"""08-isolation: channels with the same name in different workspaces (live
and sandbox) never see each other's messages, sequences or history; the
workspace comes from the key, never from the client (SPEC 2, 4)."""

import lkharness as h
from lkharness import BOTH

CH = "shared:room"


def setup(env):
    env.reg = env.registry()
    env.a = env.reg.create_key("ws_iso-a")
    env.b_key = env.reg.create_key("ws_iso-b")
    env.s = env.reg.create_key("ws_iso-sbx", sandbox=True)
    env.b = env.broker(env.reg)


async def client(env, key, sub, **kw):
    c, w = await h.connect_ok(env, env.b, h.mint(key, {"*": BOTH}, sub=sub), **kw)
    h.eq(w["workspace"], key.workspace, "welcome.workspace")
    return c


async def test_no_cross_delivery(env):
    subs = {}
    for name, key in (("a", env.a), ("b", env.b_key), ("s", env.s)):
        subs[name] = await client(env, key, "sub-" + name)
        r = await subs[name].request({"op": "subscribe", "id": 1, "channel": CH})
        h.eq(r["seq"], 0, "fresh channel in %s" % name)
    pa = await client(env, env.a, "pub-a")
    for i in range(1, 4):
        r = await pa.request({"op": "publish", "id": i, "channel": CH, "data": "a%d" % i})
        h.eq(r["seq"], i, "seq in ws a")
    for i in range(1, 4):
        m = await subs["a"].expect("message", seq=i)
        h.eq(m["data"], "a%d" % i, "data in ws a")
    h.eq(await subs["b"].ping(), [], "nothing crosses into ws b")
    h.eq(await subs["s"].ping(), [], "nothing crosses into the sandbox")

    pb = await client(env, env.b_key, "pub-b")
    r = await pb.request({"op": "publish", "id": 1, "channel": CH, "data": "b1"})
    h.eq(r["seq"], 1, "ws b has its own sequence")
    m = await subs["b"].expect("message", seq=1)
    h.eq((m["data"], m["from"]), ("b1", "pub-b"), "message in ws b")
    h.eq(await subs["a"].ping(), [], "nothing crosses into ws a")

    ps = await client(env, env.s, "pub-s")
    r = await ps.request({"op": "publish", "id": 1, "channel": CH, "data": "s1"})
    h.eq(r["seq"], 1, "the sandbox has its own sequence")
    await subs["s"].expect("message", seq=1, data="s1")
    h.eq(await subs["a"].ping(), [], "nothing from the sandbox in ws a")
    h.eq(await subs["b"].ping(), [], "nothing from the sandbox in ws b")


async def test_history_is_per_workspace(env):
    c = await client(env, env.b_key, "late-b")
    r = await c.request({"op": "subscribe", "id": 1, "channel": CH, "since": 0})
    h.eq(r["seq"], 1, "ws b's last seq")
    msgs = await c.ping()
    h.eq([(m["seq"], m["data"]) for m in msgs], [(1, "b1")], "ws b's history only")


async def test_client_cannot_pick_workspace(env):
    c = await client(env, env.a, "sneaky", query="workspace=ws_iso-b")
    watcher = await client(env, env.b_key, "watcher")
    ch = h.channel()
    await watcher.request({"op": "subscribe", "id": 1, "channel": ch})
    r = await c.request({"op": "publish", "id": 1, "channel": ch, "data": 1,
                         "workspace": "ws_iso-b"})
    h.eq(r["op"], "ack", "publish")
    h.eq(await watcher.ping(), [], "a workspace field or query parameter is ignored")


h.main(setup, [test_no_cross_delivery, test_history_is_per_workspace,
               test_client_cannot_pick_workspace])
