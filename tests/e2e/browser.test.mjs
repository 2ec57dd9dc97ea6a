// The whole web demo in headless Chromium: the real broker, the real demo
// backend and two browser contexts as two users.
//
// Checks: chat between the two with the right sender; the forbidden news
// post; server-side news; two in-band token renewals (20 s TTL) on one
// connection; recovery after a broker restart on the same port; and that
// nothing the browser received (pages, scripts, API responses, WebSocket
// frames) holds API key material. Writes tests/artifacts/web-demo.png.

import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

import {
  T, check, createKey, env, eq, run, serverPublish, sleep, startBroker, startDemo, tmpdir, waitFor, within,
} from "./harness.mjs";

const CHROMIUM = process.env.LK_CHROMIUM || "/usr/bin/chromium";
const TTL = 20;

const received = []; // {where, text} for everything that reached a browser
const pending = []; // response bodies still being read
const wsUrls = [];
const pageErrors = [];
const s = {}; // shared state between the steps

function watch(page, who) {
  page.on("response", (res) => {
    pending.push((async () => {
      const headers = JSON.stringify(await res.allHeaders());
      let body = "";
      try {
        body = (await res.body()).toString("latin1");
      } catch (_) {
        /* no body (redirect, HEAD, aborted) */
      }
      received.push({ where: `${who}: ${res.status()} ${res.url()}`, text: headers + "\n" + body });
    })());
  });
  page.on("websocket", (ws) => {
    wsUrls.push(ws.url());
    ws.on("framereceived", ({ payload }) => {
      received.push({ where: `${who}: frame from ${ws.url()}`, text: String(payload) });
    });
  });
  page.on("pageerror", (e) => pageErrors.push(`${who}: ${e.message}`));
}

async function join(name) {
  const ctx = await s.browser.newContext({ viewport: { width: 1180, height: 760 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(T(10000));
  watch(page, name);
  await page.goto(`http://127.0.0.1:${s.demoPort}/`);
  await page.fill("#name", name);
  await page.click("#join");
  await page.waitForSelector("body[data-state=connected]");
  const connId = (await page.textContent("#conn-id")).trim();
  check(connId && connId !== "-", `${name} shows a conn_id`);
  eq((await page.textContent("#me")).trim(), name, `${name} is shown as signed in`);
  return { ctx, page, connId };
}

async function say(user, text) {
  await user.page.fill("#chat-input", text);
  await user.page.press("#chat-input", "Enter");
}

/** Waits until `user` shows a chat line `text` from `from`. */
async function sees(user, from, text, ms = T(10000)) {
  await user.page.waitForFunction(([f, t]) => [...document.querySelectorAll("#chat-log li")]
    .some((li) => li.dataset.from === f && li.querySelector(".text").textContent === t), [from, text], { timeout: ms });
}

const steps = [
  ["start a registry, the broker and the demo backend", async () => {
    check(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium, listed in scripts/setup)`);
    s.dir = tmpdir();
    const k = createKey(s.dir, "ws_e2e");
    s.db = k.db;
    s.key = k.key;
    s.broker = startBroker(s.db);
    s.brokerPort = await s.broker.start();
    s.demo = startDemo(s.key, s.brokerPort, TTL);
    s.demoPort = await s.demo.start();
    s.browser = await chromium.launch({
      executablePath: CHROMIUM,
      timeout: T(30000),
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"],
    });
  }],

  ["two users join and chat with the right sender", async () => {
    s.alice = await join("alice");
    s.bob = await join("bob");
    check(s.alice.connId !== s.bob.connId, "distinct connections");
    await say(s.alice, "hello from alice");
    await sees(s.bob, "alice", "hello from alice");
    await sees(s.alice, "alice", "hello from alice");
    check(await s.alice.page.isVisible("#chat-log li.mine"), "alice's own message is marked as hers");
    await say(s.bob, "hi alice, bob here");
    await sees(s.alice, "bob", "hi alice, bob here");
  }],

  ["posting to news is refused with forbidden; server-side news arrives", async () => {
    await s.alice.page.click("#news-try");
    await s.alice.page.waitForFunction(() => /forbidden/.test(document.querySelector("#news-error").textContent));
    await serverPublish(s.brokerPort, s.key, "news", { text: "Latchkey 1.0 is out" });
    for (const u of [s.alice, s.bob])
      await u.page.waitForFunction(() => [...document.querySelectorAll("#news-log li .text")]
        .some((el) => el.textContent === "Latchkey 1.0 is out"));
  }],

  ["the connection survives two token renewals with the same conn_id", async () => {
    const page = s.alice.page;
    const expiresIn = async () => parseInt(await page.textContent("#expires"), 10);
    // Each renewal pushes the countdown back up: watch it rise twice.
    let rises = 0;
    let last = await expiresIn();
    const deadline = Date.now() + T(2.5 * TTL * 1000);
    while (Date.now() < deadline) {
      const n = Number(await page.textContent("#renewals"));
      const now = await expiresIn();
      if (now > last + 3) rises++;
      last = now;
      if (n >= 2 && rises >= 2) break;
      await sleep(250);
    }
    const renewals = Number(await page.textContent("#renewals"));
    check(renewals >= 2, `alice renewed ${renewals} times`);
    check(rises >= 2, `the expiry countdown visibly renewed (${rises} rises)`);
    eq((await page.textContent("#conn-id")).trim(), s.alice.connId, "alice's conn_id");
    eq((await s.bob.page.textContent("#conn-id")).trim(), s.bob.connId, "bob's conn_id");
    check(Number(await s.bob.page.textContent("#renewals")) >= 1, "bob renewed too");
    eq(await page.getAttribute("body", "data-state"), "connected", "still connected");
    await say(s.bob, "still here after renewals");
    await sees(s.alice, "bob", "still here after renewals");
  }],

  ["screenshot", async () => {
    fs.mkdirSync(env.artifacts, { recursive: true });
    const file = path.join(env.artifacts, "web-demo.png");
    await s.alice.page.screenshot({ path: file, fullPage: true });
    check(fs.statSync(file).size > 10000, "screenshot written");
  }],

  ["after a broker restart on the same port the pages reconnect and keep chatting", async () => {
    const exit = await s.broker.stop();
    eq(exit.code, 0, "broker exit status after SIGTERM");
    await s.alice.page.waitForFunction(() => document.body.dataset.state !== "connected", null, { timeout: T(5000) });
    s.broker.args = ["--listen", `127.0.0.1:${s.brokerPort}`, "--db", s.db];
    await s.broker.start();
    for (const u of [s.alice, s.bob]) {
      await u.page.waitForFunction((old) => document.body.dataset.state === "connected" &&
        !["-", old].includes(document.querySelector("#conn-id").textContent.trim()), u.connId, { timeout: T(20000) });
    }
    await say(s.alice, "back after the restart");
    await sees(s.bob, "alice", "back after the restart");
    await say(s.bob, "welcome back");
    await sees(s.alice, "bob", "welcome back");
  }],

  ["nothing that reached the browser holds API key material or a token URL", async () => {
    await within(Promise.allSettled(pending), T(5000), "response bodies");
    check(received.length > 10, `responses and frames were captured (${received.length})`);
    check(received.some((r) => r.where.includes("frame from")), "WebSocket frames were captured");
    check(received.some((r) => r.where.includes("/api/token")), "token responses were captured");
    const secret = s.key.split("_")[3];
    for (const r of received) {
      check(!r.text.includes(s.key) && !r.text.includes(secret), `API key in ${r.where}`);
      check(!/lk_(live|sbx)_/.test(r.text), `lk_live_/lk_sbx_ string in ${r.where}`);
    }
    check(wsUrls.length >= 4, `WebSocket connections seen (${wsUrls.length})`);
    for (const u of wsUrls) check(!/access_token|eyJ/.test(u), `token in a WebSocket URL: ${u}`);
    eq(pageErrors, [], "uncaught page errors");
    for (const [name, srv] of [["demo", s.demo], ["broker", s.broker]]) {
      const log = srv.log();
      check(!log.includes(secret) && !/lk_(live|sbx)_/.test(log), `${name} log holds key material`);
      check(!/eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+/.test(log), `${name} log holds a token`);
    }
  }],
];

await run(steps, {
  budgetMs: T(120000),
  stopOnFailure: true,
  after: async () => {
    if (s.browser) await s.browser.close().catch(() => {});
    if (s.demo) await s.demo.stop().catch(() => {});
    if (s.broker) {
      const exit = await s.broker.stop();
      if (exit && exit.code !== 0 && exit.code !== null) throw new Error(`broker exited ${exit.code}`);
    }
  },
});
