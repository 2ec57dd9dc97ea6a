// web-demo/latchkey.js under Node, with the `ws` package as its WebSocket.
//
// Part one scripts the broker's side of the protocol (a small ws server) to
// drive the client through cases a real broker produces only rarely or
// slowly: packed frames, every close code, timeouts, backoff. Part two runs
// the client against the real latchkey-broker, with tokens from the real
// latchkey-demo backend.

import path from "node:path";
import { pathToFileURL } from "node:url";
import WebSocket, { WebSocketServer } from "ws";

import {
  T, addKey, check, cli, createKey, env, eq, run, serverPublish, sleep, startBroker, startDemo, tmpdir, waitFor, within,
} from "./harness.mjs";

const { Latchkey, LatchkeyError } = await import(pathToFileURL(path.join(env.webDemo, "latchkey.js")).href);

/** Resolves with the next emission of `event` (optionally matching `pred`). */
function nextEvent(rt, event, ms = T(5000), pred = () => true) {
  return within(new Promise((resolve) => {
    const off = rt.on(event, (arg) => {
      if (!pred(arg)) return;
      off();
      resolve(arg);
    });
  }), ms, `event ${event}`);
}

/** Collects every emission of the given events, in order. */
function record(rt, ...events) {
  const log = [];
  for (const e of events) rt.on(e, (arg) => log.push([e, arg]));
  return log;
}

// ------------------------------------------------------------ scripted broker

let tokenSerial = 0;
const fakeToken = () => `eyJhbGciOiJFUzI1NiJ9.eyJuIjo${++tokenSerial}fQ.c2ln`;

class ScriptedBroker {
  constructor() {
    this.conns = [];
    this.onConnection = (c) => c.welcome();
    this.wss = new WebSocketServer({
      host: "127.0.0.1",
      port: 0,
      handleProtocols: (protocols) => (protocols.has("latchkey.v1") ? "latchkey.v1" : false),
    });
    this.ready = new Promise((r) => this.wss.on("listening", r));
    this.wss.on("connection", (ws, req) => {
      const index = this.conns.length;
      const c = {
        ws,
        url: req.url,
        protocols: (req.headers["sec-websocket-protocol"] || "").split(",").map((s) => s.trim()),
        received: [],
        waiters: [],
        send: (m) => ws.send(typeof m === "string" ? m : JSON.stringify(m)),
        welcome: (extra = {}) => c.send({
          op: "welcome", conn_id: "c" + index, client_id: "u1", workspace: "ws_t",
          expires_at: Math.floor(Date.now() / 1000) + 600, server_time: Date.now(), max_frame: 65536, ...extra,
        }),
        /** The next client message matching pred (already received ones included). */
        next: (pred, ms = T(3000)) => {
          const i = c.received.findIndex(pred);
          if (i >= 0) return Promise.resolve(c.received.splice(i, 1)[0]);
          return within(new Promise((resolve) => c.waiters.push({ pred, resolve })), ms, "client message");
        },
        closed: new Promise((r) => ws.on("close", (code) => r(code))),
      };
      ws.on("message", (data) => {
        const m = JSON.parse(String(data));
        const w = c.waiters.findIndex((x) => x.pred(m));
        if (w >= 0) c.waiters.splice(w, 1)[0].resolve(m);
        else c.received.push(m);
      });
      this.conns.push(c);
      this.onConnection(c);
    });
  }

  get url() {
    return `ws://127.0.0.1:${this.wss.address().port}/v1/realtime`;
  }

  connection(n, ms = T(5000)) {
    return waitFor(() => this.conns[n], ms, `connection #${n}`, 10);
  }

  close() {
    for (const c of this.conns) c.ws.terminate();
    return new Promise((r) => this.wss.close(r));
  }
}

async function scripted(fn) {
  const b = new ScriptedBroker();
  await b.ready;
  const clients = [];
  const make = (opts = {}) => {
    const rt = new Latchkey({
      url: b.url, authCallback: async () => fakeToken(), WebSocket, minReconnectDelay: 50, maxReconnectDelay: 400, ...opts,
    });
    clients.push(rt);
    return rt;
  };
  try {
    await fn(b, make);
  } finally {
    for (const rt of clients) rt.close();
    await b.close();
  }
}

const op = (name) => (m) => m.op === name;

const scriptedTests = [
  ["token goes in the subprotocol, never in the URL; welcome fills the state", () => scripted(async (b, make) => {
    b.onConnection = (c) => c.welcome({ conn_id: "conn-1", client_id: "alice", expires_at: 2000000000, server_time: Date.now() + 5000 });
    const rt = make();
    const states = record(rt, "statechange");
    await within(rt.connect(), T(3000), "connect");
    const c = await b.connection(0);
    eq(c.protocols[0], "latchkey.v1", "first subprotocol");
    check(/^bearer\.eyJ[\w-]+\.[\w-]+\.[\w-]+$/.test(c.protocols[1] || ""), "second subprotocol is bearer.<token>");
    eq(c.url, "/v1/realtime", "request URL carries no token");
    eq([rt.state, rt.connId, rt.clientId, rt.workspace, rt.expiresAt], ["connected", "conn-1", "alice", "ws_t", 2000000000], "state");
    check(Math.abs(rt.serverTimeOffset - 5000) < 500, `server clock offset ${rt.serverTimeOffset}`);
    eq(states.map(([, s]) => s.state), ["connecting", "connected"], "state changes");
  })],

  ["packed frames are split on newlines; listeners get data and meta", () => scripted(async (b, make) => {
    const rt = make();
    const got = [];
    const ch = rt.channel("chat:lobby");
    const subscribed = ch.subscribe((data, meta) => got.push([data, meta]));
    await within(rt.connect(), T(5000), "connect");
    const c = await b.connection(0);
    const sub = await c.next(op("subscribe"));
    eq(sub.channel, "chat:lobby", "subscribe channel");
    check(!("since" in sub), "a first subscribe has no since");
    c.send([
      JSON.stringify({ op: "subscribed", id: sub.id, channel: "chat:lobby", seq: 4 }),
      JSON.stringify({ op: "message", channel: "chat:lobby", seq: 5, data: { text: "a" }, from: "bob", ts: 1700000000000 }),
      JSON.stringify({ op: "message", channel: "chat:lobby", seq: 6, data: [1, "x\ny"], from: null, ts: 1700000000001 }),
      JSON.stringify({ op: "message", channel: "other", seq: 1, data: 0, from: null, ts: 1 }),
    ].join("\n"));
    eq(await within(subscribed, T(2000), "subscribed"), { seq: 4 }, "subscribe() result");
    await waitFor(() => got.length === 2, T(2000), "two messages");
    eq(got, [
      [{ text: "a" }, { seq: 5, from: "bob", ts: 1700000000000, channel: "chat:lobby" }],
      [[1, "x\ny"], { seq: 6, from: null, ts: 1700000000001, channel: "chat:lobby" }],
    ], "delivered messages");
    check(ch.subscribed, "channel reports subscribed");
  })],

  ["subscribe(fn, {since}) asks for held messages on the first subscribe only", () => scripted(async (b, make) => {
    const rt = make();
    const seqs = [];
    rt.channel("news").subscribe((d, m) => seqs.push(m.seq), { since: 0 });
    let threw = null;
    try {
      rt.channel("x").subscribe(() => {}, { since: -1 });
    } catch (e) {
      threw = e;
    }
    check(threw instanceof TypeError, "a negative since is refused");
    await within(rt.connect(), T(5000), "connect");
    const c0 = await b.connection(0);
    const s0 = await c0.next(op("subscribe"));
    eq(s0.since, 0, "since on the first subscribe");
    c0.send([{ op: "subscribed", id: s0.id, channel: "news", seq: 2 },
      { op: "message", channel: "news", seq: 1, data: "a", from: null, ts: 1 },
      { op: "message", channel: "news", seq: 2, data: "b", from: null, ts: 2 }].map((m) => JSON.stringify(m)).join("\n"));
    await waitFor(() => seqs.length === 2, T(2000), "held messages delivered");
    c0.ws.close(1001, "bye");
    const s1 = await (await b.connection(1)).next(op("subscribe"));
    eq(s1.since, 2, "a resubscribe resumes from the last seq");
  })],

  ["publish resolves on ack and rejects with the broker's error code", () => scripted(async (b, make) => {
    const rt = make();
    await within(rt.connect(), T(5000), "connect");
    const c = await b.connection(0);
    const p1 = rt.channel("news").publish({ n: 1 });
    const m1 = await c.next(op("publish"));
    eq([m1.channel, m1.data, Number.isInteger(m1.id)], ["news", { n: 1 }, true], "publish frame");
    c.send({ op: "ack", id: m1.id, channel: "news", seq: 7 });
    eq(await p1, { seq: 7 }, "ack result");
    const p2 = rt.channel("news").publish("x");
    const m2 = await c.next(op("publish"));
    c.send({ op: "error", id: m2.id, code: "forbidden", message: "no realtime:publish on news" });
    const err = await p2.then(() => null, (e) => e);
    check(err instanceof LatchkeyError, "rejects with a LatchkeyError");
    eq([err.code, err.message], ["forbidden", "no realtime:publish on news"], "error");
    eq(rt.state, "connected", "the connection stays open");
  })],

  ["token_expiring renews in-band on the same connection", () => scripted(async (b, make) => {
    const rt = make();
    await within(rt.connect(), T(5000), "connect");
    const c = await b.connection(0);
    const first = c.protocols[1].slice("bearer.".length);
    const renewed = nextEvent(rt, "renewed");
    c.send({ op: "token_expiring", expires_in: 30 });
    const auth = await c.next(op("auth"));
    check(typeof auth.token === "string" && auth.token !== first, "auth carries a fresh token");
    c.send({ op: "authed", id: auth.id, expires_at: 2100000000 });
    eq(await renewed, { expiresAt: 2100000000 }, "renewed event");
    eq([rt.expiresAt, rt.connId, b.conns.length], [2100000000, "c0", 1], "same connection, new expiry");
  })],

  ["a recoverable close rejects pending publishes, reconnects with a fresh token and resumes with since", () => scripted(async (b, make) => {
    const rt = make();
    const seen = [];
    rt.channel("chat:lobby").subscribe((d, m) => seen.push(m.seq));
    await within(rt.connect(), T(5000), "connect");
    const c0 = await b.connection(0);
    const s0 = await c0.next(op("subscribe"));
    c0.send({ op: "subscribed", id: s0.id, channel: "chat:lobby", seq: 0 });
    c0.send({ op: "message", channel: "chat:lobby", seq: 1, data: 1, from: null, ts: 1 });
    c0.send({ op: "message", channel: "chat:lobby", seq: 2, data: 2, from: null, ts: 2 });
    await waitFor(() => seen.length === 2, T(2000), "messages before the close");
    const pending = rt.channel("chat:lobby").publish("lost");
    await c0.next(op("publish"));
    const disconnected = nextEvent(rt, "disconnected");
    c0.ws.close(4408, "slow consumer");
    const err = await pending.then(() => null, (e) => e);
    eq(err && err.code, "disconnected", "pending publish rejected");
    const d = await disconnected;
    eq([d.code, d.reason, d.willReconnect], [4408, "slow consumer", true], "disconnected event");
    const c1 = await b.connection(1);
    check(c1.protocols[1] !== c0.protocols[1], "reconnect fetched a fresh token");
    const s1 = await c1.next(op("subscribe"));
    eq([s1.channel, s1.since], ["chat:lobby", 2], "resubscribe resumes after the last seq");
    await waitFor(() => rt.state === "connected", T(3000), "connected again");
    eq([rt.state, rt.connId], ["connected", "c1"], "connected again");
  })],

  ["a broker whose history restarted resets the channel's seq", () => scripted(async (b, make) => {
    const rt = make();
    rt.channel("c").subscribe(() => {});
    await within(rt.connect(), T(5000), "connect");
    const c0 = await b.connection(0);
    const s0 = await c0.next(op("subscribe"));
    c0.send({ op: "subscribed", id: s0.id, channel: "c", seq: 40 });
    c0.ws.close(1001, "going away");
    const c1 = await b.connection(1);
    const s1 = await c1.next(op("subscribe"));
    eq(s1.since, 40, "since");
    c1.send({ op: "subscribed", id: s1.id, channel: "c", seq: 0 });
    await sleep(50);
    c1.ws.close(1001, "going away");
    const c2 = await b.connection(2);
    const s2 = await c2.next(op("subscribe"));
    check(!("since" in s2), "no since once the broker's numbering restarted");
  })],

  ["a silent broker: requests time out and the link is re-established", () => scripted(async (b, make) => {
    const rt = make({ requestTimeout: 300, heartbeatInterval: 0 });
    await within(rt.connect(), T(5000), "connect");
    await b.connection(0);
    const t0 = Date.now();
    const err = await rt.channel("x").publish(1).then(() => null, (e) => e);
    const took = Date.now() - t0;
    eq(err && err.code, "timeout", "publish rejected");
    check(took >= 250 && took < T(2000), `timed out after ${took} ms`);
    await b.connection(1);
    await waitFor(() => rt.state === "connected", T(3000), "reconnected");
  })],

  ["heartbeat pings an idle connection and drops it when unanswered", () => scripted(async (b, make) => {
    const rt = make({ heartbeatInterval: 300, requestTimeout: 400 });
    await within(rt.connect(), T(5000), "connect");
    const c0 = await b.connection(0);
    const ping = await c0.next(op("ping"), T(2000));
    c0.send({ op: "pong", id: ping.id });
    eq(await within(rt.ping(), T(1000), "ping").catch(() => "timeout"), "timeout", "unanswered rt.ping()");
    await b.connection(1, T(3000));
  })],

  ["4400, 4403 and 4413 stop the client: state failed, no reconnect", async () => {
    for (const code of [4400, 4403, 4413]) {
      await scripted(async (b, make) => {
        b.onConnection = (c) => {
          c.send({ op: "error", code: code === 4403 ? "forbidden" : "bad_request", message: "no" });
          c.ws.close(code, "closed " + code);
        };
        const rt = make();
        const errors = record(rt, "error");
        const failed = nextEvent(rt, "failed");
        const err = await within(rt.connect().then(() => null, (e) => e), T(5000), "connect");
        check(err instanceof LatchkeyError, `connect() rejects after ${code}`);
        const f = await failed;
        eq([f.code, f.reason, rt.state], [code, "closed " + code, "failed"], `failed event for ${code}`);
        eq(errors.length, 1, "the broker's error frame is reported");
        await sleep(400);
        eq(b.conns.length, 1, `no reconnect after ${code}`);
      });
    }
  }],

  ["4401, 1001, 4429 and network loss reconnect; backoff grows with jitter and a ceiling", () => scripted(async (b, make) => {
    const rt = make({ rateLimitedDelay: 600 });
    const disc = record(rt, "disconnected");
    await within(rt.connect(), T(5000), "connect");
    let n = 0;
    for (const code of [4401, 1001, 4408]) {
      (await b.connection(n++)).ws.close(code, "x");
      await b.connection(n, T(3000));
      await waitFor(() => rt.state === "connected", T(3000), `reconnected after ${code}`);
    }
    (await b.connection(n++)).ws.close(4429, "rate limited");
    await b.connection(n, T(3000));
    await waitFor(() => rt.state === "connected", T(3000), "reconnected after 4429");
    eq(disc.map(([, d]) => d.code), [4401, 1001, 4408, 4429], "close codes reported");
    check(disc[3][1].delay >= 300, `4429 waits at least half the rate-limit delay (${disc[3][1].delay})`);

    // Network loss: the broker vanishes; attempts back off.
    disc.length = 0;
    await b.close();
    await waitFor(() => disc.length >= 5, T(8000), "five failed attempts");
    rt.close();
    const delays = disc.slice(0, 5).map(([, d]) => d.delay);
    const codes = disc.slice(0, 5).map(([, d]) => d.code);
    check(codes.every((c) => c === 1006), `abnormal closes: ${codes}`);
    const bounds = [[25, 50], [50, 100], [100, 200], [200, 400], [200, 400]];
    delays.forEach((d, i) => check(d >= bounds[i][0] && d <= bounds[i][1], `attempt ${i} delay ${d} in ${bounds[i]}`));
  })],

  ["the auth callback: a fatal refusal fails, a transient error retries", () => scripted(async (b, make) => {
    const fatal = make({ authCallback: async () => { throw Object.assign(new Error("logged out"), { fatal: true }); } });
    const f = nextEvent(fatal, "failed");
    await within(fatal.connect().catch(() => {}), T(5000), "connect");
    eq((await f).error.message, "logged out", "fatal auth error");
    eq(b.conns.length, 0, "no WebSocket opened");

    let calls = 0;
    const flaky = make({ authCallback: async () => { if (++calls < 3) throw new Error("503"); return fakeToken(); } });
    await within(flaky.connect(), T(3000), "connect after two failed token fetches");
    eq(calls, 3, "token fetches");

    let hung = 0;
    const slow = make({
      requestTimeout: 200,
      authCallback: () => (++hung === 1 ? new Promise(() => {}) : Promise.resolve({ access_token: fakeToken() })),
    });
    const lost = nextEvent(slow, "disconnected");
    await within(slow.connect(), T(3000), "connect after a hung token fetch");
    eq((await lost).reason, "token request timed out", "a hung auth callback times out");

    const junk = make({ authCallback: async () => ({ token: "not a token" }) });
    const d = await within(new Promise((r) => { junk.on("disconnected", r); junk.connect().catch(() => {}); }), T(2000), "junk token");
    check(/no valid token/.test(d.reason), "a malformed token is never sent");
  })],

  ["gives up after repeated 4401 refusals of fresh tokens", () => scripted(async (b, make) => {
    b.onConnection = (c) => {
      c.send({ op: "error", code: "unauthorized", message: "unknown key" });
      c.ws.close(4401, "unauthorized");
    };
    const rt = make();
    const f = nextEvent(rt, "failed", T(5000));
    await within(rt.connect().catch(() => {}), T(5000), "connect");
    eq((await f).code, 4401, "failed after 4401s");
    eq(b.conns.length, 5, "attempts");
  })],

  ["oversized publishes are refused locally instead of closing the link", () => scripted(async (b, make) => {
    b.onConnection = (c) => c.welcome({ max_frame: 200 });
    const rt = make();
    await within(rt.connect(), T(5000), "connect");
    const err = await rt.channel("x").publish("é".repeat(100)).then(() => null, (e) => e);
    eq(err && err.code, "too_large", "publish refused");
    const bad = await rt.channel("x").publish(10n).then(() => null, (e) => e);
    check(bad instanceof TypeError, "a value JSON cannot encode rejects");
    eq([rt.state, b.conns.length], ["connected", 1], "still connected");
  })],

  ["subscribe refusals and capability revocation reach the application", () => scripted(async (b, make) => {
    const rt = make();
    const unsubs = record(rt, "unsubscribed");
    const denied = rt.channel("secret").subscribe(() => {});
    const lobby = rt.channel("lobby");
    lobby.subscribe(() => {});
    await within(rt.connect(), T(5000), "connect");
    const c = await b.connection(0);
    const s1 = await c.next((m) => m.op === "subscribe" && m.channel === "secret");
    c.send({ op: "error", id: s1.id, code: "forbidden", message: "no" });
    eq((await denied.then(() => null, (e) => e)).code, "forbidden", "subscribe() rejects");
    const s2 = await c.next((m) => m.op === "subscribe" && m.channel === "lobby");
    c.send({ op: "subscribed", id: s2.id, channel: "lobby", seq: 0 });
    await waitFor(() => lobby.subscribed, T(1000), "lobby subscribed");
    c.send({ op: "unsubscribed", channel: "lobby", reason: "capability_revoked" });
    await waitFor(() => unsubs.length === 1, T(1000), "unsubscribed event");
    eq(unsubs[0][1], { channel: "lobby", reason: "capability_revoked" }, "event");
    check(!lobby.subscribed, "channel no longer subscribed");
    await within(lobby.unsubscribe(), T(1000), "unsubscribe() after revocation");
  })],

  ["unsubscribe and close", () => scripted(async (b, make) => {
    const rt = make();
    const ch = rt.channel("a");
    const fn = () => {};
    ch.subscribe(fn);
    await within(rt.connect(), T(5000), "connect");
    const c = await b.connection(0);
    const s = await c.next(op("subscribe"));
    c.send({ op: "subscribed", id: s.id, channel: "a", seq: 0 });
    await waitFor(() => ch.subscribed, T(1000), "subscribed");
    const u = ch.unsubscribe(fn);
    const um = await c.next(op("unsubscribe"));
    c.send({ op: "unsubscribed", id: um.id, channel: "a" });
    await within(u, T(1000), "unsubscribe()");
    const pending = rt.channel("a").publish(1);
    const d = nextEvent(rt, "disconnected");
    rt.close();
    eq((await pending.then(() => null, (e) => e)).code, "closed", "pending publish on close()");
    eq((await d).willReconnect, false, "no reconnect after close()");
    eq(await c.closed, 1000, "closed with 1000");
    await sleep(200);
    eq([rt.state, b.conns.length], ["closed", 1], "stays closed");
    eq((await rt.channel("a").publish(1).then(() => null, (e) => e)).code, "not_connected", "publish while closed");
  })],
];

// ------------------------------------------------------------ the real broker

const CHAT = "chat:lobby";
let world = null;

async function realWorld() {
  if (world) return world;
  const dir = tmpdir();
  const { db, key } = createKey(dir, "ws_clienttest");
  const broker = startBroker(db);
  const bport = await broker.start();
  const demo = startDemo(key, bport, 4);
  const dport = await demo.start();
  world = { dir, db, key, broker, bport, demo, dport, url: `ws://127.0.0.1:${bport}/v1/realtime` };
  return world;
}

function demoClient(w, name, opts = {}) {
  return new Latchkey({
    url: w.url, authUrl: `http://127.0.0.1:${w.dport}/api/token`, authBody: { name }, WebSocket,
    minReconnectDelay: 100, ...opts,
  });
}

const realTests = [
  ["real broker: two users chat, news is read-only, server publishes arrive", async () => {
    const w = await realWorld();
    const alice = demoClient(w, "alice");
    const bob = demoClient(w, "bob");
    try {
      const got = { alice: [], bob: [] };
      alice.channel(CHAT).subscribe((d, m) => got.alice.push([d, m.from]));
      bob.channel(CHAT).subscribe((d, m) => got.bob.push([d, m.from]));
      const news = [];
      bob.channel("news").subscribe((d, m) => news.push([d, m.from]));
      await within(Promise.all([alice.connect(), bob.connect()]), T(5000), "both connect");
      eq([alice.clientId, bob.clientId], ["alice", "bob"], "client ids");
      await waitFor(() => bob.channel(CHAT).subscribed && bob.channel("news").subscribed && alice.channel(CHAT).subscribed,
        T(3000), "subscriptions confirmed");
      const ack = await alice.channel(CHAT).publish({ text: "hi bob" });
      check(Number.isInteger(ack.seq) && ack.seq >= 1, "ack seq");
      await waitFor(() => got.bob.length === 1 && got.alice.length === 1, T(3000), "message fan-out");
      eq(got.bob[0], [{ text: "hi bob" }, "alice"], "bob receives alice's message");
      const err = await bob.channel("news").publish({ text: "fake news" }).then(() => null, (e) => e);
      eq(err && err.code, "forbidden", "publishing to news is forbidden");
      await serverPublish(w.bport, w.key, "news", { text: "release 1.0" });
      await waitFor(() => news.length === 1, T(3000), "server-side news");
      eq(news[0], [{ text: "release 1.0" }, null], "news item from the server");
    } finally {
      alice.close();
      bob.close();
    }
  }],

  ["real broker: a 4 s token renews twice on one connection", async () => {
    const w = await realWorld();
    const carol = demoClient(w, "carol");
    try {
      const renewals = record(carol, "renewed");
      await within(carol.connect(), T(5000), "connect");
      const connId = carol.connId;
      const exp0 = carol.expiresAt;
      await waitFor(() => renewals.length >= 2, T(9000), "two renewals", 100);
      eq(carol.connId, connId, "same connection");
      check(carol.expiresAt > exp0, "expiry moved forward");
      eq(carol.state, "connected", "still connected");
    } finally {
      carol.close();
    }
  }],

  ["real broker: an expired token reconnects, and resubscribing replays what was missed", async () => {
    const w = await realWorld();
    let calls = 0;
    const token = async (name) => {
      const res = await fetch(`http://127.0.0.1:${w.dport}/api/token`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name }),
      });
      return (await res.json()).token;
    };
    // dave's renewals fail, so the broker closes his connection at expiry.
    // A slow first retry leaves time to publish while dave is away.
    const dave = new Latchkey({
      url: w.url, WebSocket, minReconnectDelay: 1500,
      authCallback: async () => {
        calls++;
        if (calls === 2) throw new Error("renewal unavailable");
        return token("dave");
      },
    });
    const erin = demoClient(w, "erin");
    try {
      const seen = [];
      dave.channel(CHAT).subscribe((d) => seen.push(d.n));
      const codes = record(dave, "disconnected");
      await within(Promise.all([dave.connect(), erin.connect()]), T(5000), "connect");
      await waitFor(() => dave.channel(CHAT).subscribed, T(3000), "subscribed");
      await erin.channel(CHAT).publish({ n: 1 });
      await waitFor(() => seen.includes(1), T(3000), "live message");
      const first = dave.connId;
      await waitFor(() => codes.length === 1, T(8000), "closed at expiry", 50);
      eq(codes[0][1].code, 4401, "expired un-renewed: 4401");
      // Published while dave is away: the resubscribe's `since` brings it back.
      await erin.channel(CHAT).publish({ n: 2 });
      await waitFor(() => dave.state === "connected", T(5000), "reconnected");
      check(dave.connId !== first, "a new connection");
      await waitFor(() => seen.includes(2), T(3000), "missed message replayed");
      eq(seen.filter((n) => n === 2).length, 1, "replayed once");
    } finally {
      dave.close();
      erin.close();
    }
  }],

  ["real broker: a restart is survived", async () => {
    const w = await realWorld();
    const frank = demoClient(w, "frank");
    try {
      const seen = [];
      frank.channel(CHAT).subscribe((d) => seen.push(d));
      await within(frank.connect(), T(5000), "connect");
      const first = frank.connId;
      const disconnected = nextEvent(frank, "disconnected", T(5000));
      const exit = await w.broker.stop();
      eq(exit.code, 0, "broker exit status after SIGTERM");
      eq((await disconnected).code, 1001, "shutdown close code");
      w.broker.args = ["--listen", `127.0.0.1:${w.bport}`, "--db", w.db];
      await w.broker.start();
      await waitFor(() => frank.state === "connected", T(10000), "reconnected after the restart", 100);
      check(frank.connId !== first, "new connection");
      await waitFor(() => frank.channel(CHAT).subscribed, T(3000), "resubscribed");
      await frank.channel(CHAT).publish({ after: "restart" });
      await waitFor(() => seen.length === 1, T(3000), "chat works again");
    } finally {
      frank.close();
    }
  }],

  ["real broker: revoking the key stops the client for good", async () => {
    const w = await realWorld();
    // A second key, so revoking it leaves the demo's key alone.
    const other = addKey(w.db, "ws_clienttest");
    const mint = () => cli(w.db, "token", "mint", "--key", other.key, "--capability",
      JSON.stringify({ [CHAT]: ["realtime:subscribe"] }), "--ttl", "60", "--client-id", "gina").trim();
    const gina = new Latchkey({ url: w.url, WebSocket, minReconnectDelay: 100, authCallback: async () => mint() });
    try {
      await within(gina.connect(), T(5000), "connect");
      const failed = nextEvent(gina, "failed", T(5000));
      cli(w.db, "keys", "revoke", other.kid);
      const f = await failed;
      eq([f.code, gina.state], [4403, "failed"], "closed with 4403 and failed");
      const attempts = record(gina, "connecting");
      await sleep(500);
      eq(attempts.length, 0, "no reconnect after 4403");
    } finally {
      gina.close();
    }
  }],
];

await run([...scriptedTests, ...realTests], {
  budgetMs: T(85000),
  after: async () => {
    if (!world) return;
    await world.demo.stop().catch(() => {});
    await world.broker.stop().catch(() => {});
  },
});
