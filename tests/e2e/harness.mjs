// Shared helpers for the web demo tests: real processes on ephemeral
// loopback ports, a fresh key registry made with the real `latchkey` CLI,
// and bounded waits everywhere.
//
// Environment (set by tests/e2e/CMakeLists.txt):
//   LK_BROKER  path of latchkey-broker
//   LK_CLI     path of the latchkey CLI
//   LK_DEMO    path of latchkey-demo
//   LK_WEB_DEMO  the web-demo source directory (latchkey.js, the page)
//   LK_ARTIFACTS  where screenshots go (tests/artifacts)

import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

export const env = {
  broker: process.env.LK_BROKER || "",
  cli: process.env.LK_CLI || "",
  demo: process.env.LK_DEMO || "",
  webDemo: process.env.LK_WEB_DEMO || path.resolve(here, "../../web-demo"),
  artifacts: process.env.LK_ARTIFACTS || path.resolve(here, "../artifacts"),
  scale: Number(process.env.LK_TIMEOUT_SCALE || "1") || 1,
};

/** A harness wait, scaled for slow (sanitizer) builds. */
export const T = (ms) => Math.round(ms * env.scale);

export const KEY_RE = /lk_(?:live|sbx)_[0-9a-f]{16}_[0-9a-f]{64}_[0-9a-f]{8}/;

export class Failure extends Error {}

export function check(cond, what) {
  if (!cond) throw new Failure(what);
}

export function eq(got, want, what) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g !== w) throw new Failure(`${what}: expected ${w}, got ${g}`);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Rejects if `promise` does not settle within `ms`. */
export function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Failure(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `fn` until it returns a truthy value; fails after `ms`. */
export async function waitFor(fn, ms, what, every = 50) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() >= deadline) throw new Failure(`${what}: not within ${ms} ms`);
    await sleep(every);
  }
}

const live = new Set();
const tmpdirs = new Set();
process.on("exit", () => {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch (_) {
      /* already gone */
    }
  }
  for (const d of tmpdirs) fs.rmSync(d, { recursive: true, force: true });
});

export function tmpdir(prefix = "lk-e2e-") {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tmpdirs.add(d);
  return d;
}

/** A fresh registry with one key, made by the real CLI. */
export function createKey(dir, workspace = "ws_demo", scopes = "realtime:publish,realtime:subscribe") {
  check(env.cli && fs.existsSync(env.cli), `LK_CLI is not an executable: ${env.cli}`);
  const db = path.join(dir, "latchkey.db");
  const p = spawnSync(env.cli, ["--db", db, "--json", "keys", "create", "--workspace", workspace,
    "--name", "demo", "--scopes", scopes], { encoding: "utf8", timeout: T(20000) });
  check(p.status === 0, `latchkey keys create exited ${p.status}: ${(p.stderr || "").slice(0, 400)}`);
  const out = JSON.parse(p.stdout);
  check(typeof out.key === "string" && KEY_RE.test(out.key), "keys create --json prints the key");
  return { db, key: out.key, kid: out.kid || out.key.split("_")[2], workspace };
}

/** Another key in an existing registry. */
export function addKey(db, workspace, scopes = "realtime:publish,realtime:subscribe") {
  const out = JSON.parse(cli(db, "--json", "keys", "create", "--workspace", workspace, "--name", "extra", "--scopes", scopes));
  check(typeof out.key === "string" && KEY_RE.test(out.key), "keys create --json prints the key");
  return { db, key: out.key, kid: out.kid || out.key.split("_")[2], workspace };
}

export function cli(db, ...args) {
  const p = spawnSync(env.cli, ["--db", db, ...args], { encoding: "utf8", timeout: T(20000) });
  check(p.status === 0, `latchkey ${args.slice(0, 2).join(" ")} exited ${p.status}: ${(p.stderr || "").slice(0, 400)}`);
  return p.stdout;
}

/**
 * A server process that logs JSON lines on stderr, one of which is
 * {"msg":"listening","port":N}.
 */
export class Server {
  constructor(name, cmd, args, extraEnv = {}) {
    this.name = name;
    this.cmd = cmd;
    this.args = args;
    this.env = { ...process.env, ...extraEnv };
    this.lines = [];
    this.port = null;
    this.child = null;
    this.exit = null;
  }

  /** Starts it and resolves with the port from its listening line. */
  start(timeoutMs = T(15000)) {
    check(this.cmd && fs.existsSync(this.cmd), `${this.name}: not an executable: ${this.cmd}`);
    this.lines = [];
    this.exit = null;
    const child = spawn(this.cmd, this.args, { env: this.env, stdio: ["ignore", "ignore", "pipe"] });
    this.child = child;
    live.add(child);
    this.exited = new Promise((resolve) => {
      child.on("exit", (code, signal) => {
        live.delete(child);
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
    let buf = "";
    return within(new Promise((resolve, reject) => {
      child.stderr.setEncoding("utf8");
      child.stderr.on("data", (chunk) => {
        buf += chunk;
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          this.lines.push(line);
          let o = null;
          try {
            o = JSON.parse(line);
          } catch (_) {
            /* not a JSON line */
          }
          if (o && o.msg === "listening" && Number.isInteger(o.port)) {
            this.port = o.port;
            resolve(o.port);
          }
        }
      });
      this.exited.then((e) => reject(new Failure(`${this.name} exited (${e.code ?? e.signal}) before listening: ` +
        this.lines.slice(-5).join(" | "))));
    }), timeoutMs, `${this.name} listening`);
  }

  /** SIGTERM, then the exit status; SIGKILL if it hangs. */
  async stop(timeoutMs = T(5000)) {
    if (!this.child || this.exit) return this.exit;
    this.child.kill("SIGTERM");
    try {
      return await within(this.exited, timeoutMs, `${this.name} exit after SIGTERM`);
    } catch (e) {
      this.child.kill("SIGKILL");
      await this.exited;
      throw e;
    }
  }

  log() {
    return this.lines.join("\n");
  }
}

export function startBroker(db, port = 0, extra = []) {
  const s = new Server("latchkey-broker", env.broker,
    ["--listen", `127.0.0.1:${port}`, "--db", db, ...extra]);
  return s;
}

export function startDemo(apiKey, brokerPort, ttl, extra = []) {
  return new Server("latchkey-demo", env.demo,
    ["--listen", "127.0.0.1:0", "--broker-url", `ws://127.0.0.1:${brokerPort}/v1/realtime`,
      "--token-ttl", String(ttl), ...extra],
    { LATCHKEY_API_KEY: apiKey });
}

/** Server-side publish through the broker's HTTP API with the API key. */
export async function serverPublish(brokerPort, apiKey, channel, data) {
  const ctl = new AbortController();
  const exchange = (async () => {
    const res = await fetch(`http://127.0.0.1:${brokerPort}/v1/channels/${encodeURIComponent(channel)}/messages`, {
      method: "POST",
      headers: { Authorization: `Bearer ${apiKey}`, "Content-Type": "application/json" },
      body: JSON.stringify({ data }),
      signal: ctl.signal,
    });
    return [res.status, await res.text()];
  })();
  let status, text;
  try {
    [status, text] = await within(exchange, T(5000), `POST /v1/channels/${channel}/messages`);
  } finally {
    ctl.abort();
  }
  check(status === 202, `POST /v1/channels/${channel}/messages: HTTP ${status} ${text.slice(0, 200)}`);
  return JSON.parse(text);
}

/** Runs named async tests in order; exits non-zero if any fails. */
export async function run(tests, { budgetMs, after, stopOnFailure = false } = {}) {
  const only = process.argv.slice(2);
  let failed = 0;
  const watchdog = budgetMs
    ? setTimeout(() => {
      console.error(`FAIL: whole run exceeded ${budgetMs} ms`);
      process.exit(1);
    }, budgetMs)
    : null;
  for (const [name, fn] of tests) {
    if (only.length && !only.includes(name)) continue;
    const t0 = Date.now();
    try {
      await fn();
      console.log(`ok   ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${name} (${Date.now() - t0} ms): ${e && e.stack ? e.stack : e}`);
      if (stopOnFailure) break;
    }
  }
  if (after) {
    try {
      await within(after(), T(10000), "cleanup");
    } catch (e) {
      failed++;
      console.log(`FAIL cleanup: ${e && e.stack ? e.stack : e}`);
    }
  }
  if (watchdog) clearTimeout(watchdog);
  console.log(failed ? `${failed} failed` : "all passed");
  process.exit(failed ? 1 : 0);
}
