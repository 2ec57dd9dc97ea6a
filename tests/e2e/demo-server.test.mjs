// latchkey-demo on its own: what it serves, what it refuses, the tokens it
// mints (checked with an independent JWT library), and that the API key
// never leaves the process. Needs the CLI only to make a real API key.

import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { spawnSync } from "node:child_process";
import * as jose from "jose";

import { KEY_RE, Server, T, check, createKey, env, eq, run, sleep, tmpdir, within } from "./harness.mjs";

const CAP = { "chat:lobby": ["realtime:subscribe", "realtime:publish"], news: ["realtime:subscribe"] };
const TTL = 42;

const dir = tmpdir();
const { key } = createKey(dir);
const responses = []; // every byte the server sent, checked for the key at the end
let demo;
let port;

/** Sends raw bytes, returns {status, headers, body, raw} once the server closes. */
function raw(bytes, { timeoutMs = T(5000) } = {}) {
  return within(new Promise((resolve, reject) => {
    const sock = net.connect(port, "127.0.0.1");
    const chunks = [];
    sock.on("connect", () => sock.write(bytes));
    sock.on("data", (c) => chunks.push(c));
    sock.on("error", reject);
    sock.on("close", () => {
      const text = Buffer.concat(chunks).toString("latin1");
      responses.push(text);
      const sep = text.indexOf("\r\n\r\n");
      const head = sep >= 0 ? text.slice(0, sep) : text;
      const lines = head.split("\r\n");
      const m = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0] || "");
      const headers = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(":");
        if (i > 0) headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
      }
      resolve({ status: m ? Number(m[1]) : 0, headers, body: sep >= 0 ? text.slice(sep + 4) : "", raw: text });
    });
  }), timeoutMs, "raw HTTP exchange");
}

function request(method, target, { body = "", headers = {} } = {}) {
  let h = `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`;
  for (const [k, v] of Object.entries(headers)) h += `${k}: ${v}\r\n`;
  if (body || method === "POST") h += `Content-Length: ${Buffer.byteLength(body)}\r\n`;
  return raw(h + "\r\n" + body);
}

function postToken(body, contentType = "application/json") {
  return request("POST", "/api/token", { body, headers: contentType ? { "Content-Type": contentType } : {} });
}

function publicKeyOf(apiKey) {
  const secret = apiKey.split("_")[3];
  const ecdh = crypto.createECDH("prime256v1");
  ecdh.setPrivateKey(Buffer.from(secret, "hex"));
  const pub = ecdh.getPublicKey();
  return crypto.createPublicKey({
    format: "jwk",
    key: { kty: "EC", crv: "P-256", x: pub.subarray(1, 33).toString("base64url"), y: pub.subarray(33).toString("base64url") },
  });
}

const tests = [
  ["help lists every option", async () => {
    const p = spawnSync(env.demo, ["--help"], { encoding: "utf8", timeout: T(5000) });
    eq(p.status, 0, "--help exit status");
    for (const opt of ["--listen", "--broker-url", "--token-ttl", "--static-dir", "--help", "LATCHKEY_API_KEY"])
      check(p.stdout.includes(opt), `--help mentions ${opt}`);
  }],

  ["refuses to start without a usable key or with bad options", async () => {
    const cases = [
      [{}, []],
      [{ LATCHKEY_API_KEY: key.slice(0, -1) + (key.endsWith("0") ? "1" : "0") }, []],
      [{ LATCHKEY_API_KEY: key }, ["--token-ttl", "0"]],
      [{ LATCHKEY_API_KEY: key }, ["--broker-url", "http://x/\"><script>"]],
      [{ LATCHKEY_API_KEY: key }, ["--listen", "nonsense"]],
      [{ LATCHKEY_API_KEY: key }, ["--static-dir", dir]],
    ];
    for (const [extra, args] of cases) {
      const e = { ...process.env, ...extra };
      if (!("LATCHKEY_API_KEY" in extra)) delete e.LATCHKEY_API_KEY;
      const p = spawnSync(env.demo, ["--listen", "127.0.0.1:0", ...args], { encoding: "utf8", env: e, timeout: T(5000) });
      check(p.status === 2, `exit 2 for ${JSON.stringify(args)} (got ${p.status})`);
      check(!p.stderr.includes("listening"), "does not start listening");
      check(!KEY_RE.test(p.stderr) && !p.stderr.includes(key.split("_")[3]), "the error never echoes the key");
    }
  }],

  ["starts and takes the key out of its environment", async () => {
    demo = new Server("latchkey-demo", env.demo,
      ["--listen", "127.0.0.1:0", "--broker-url", "ws://127.0.0.1:9/v1/realtime", "--token-ttl", String(TTL)],
      { LATCHKEY_API_KEY: key });
    port = await demo.start();
    const environ = `/proc/${demo.child.pid}/environ`;
    if (fs.existsSync(environ))
      check(!fs.readFileSync(environ, "latin1").includes("lk_"), "/proc/<pid>/environ no longer holds the key");
  }],

  ["serves exactly its own static files", async () => {
    const files = { "/": "index.html", "/index.html": "index.html", "/app.js": "app.js", "/latchkey.js": "latchkey.js", "/style.css": "style.css" };
    const types = { html: "text/html", js: "text/javascript", css: "text/css" };
    for (const [p, f] of Object.entries(files)) {
      const r = await request("GET", p);
      eq(r.status, 200, `GET ${p}`);
      eq(r.body, fs.readFileSync(path.join(env.webDemo, f), "latin1"), `body of ${p}`);
      check(r.headers["content-type"].startsWith(types[f.split(".").pop()]), `content type of ${p}`);
      eq(r.headers["x-content-type-options"], "nosniff", "nosniff");
    }
    const html = await request("GET", "/");
    check(/connect-src 'self' ws:\/\/127\.0\.0\.1:9;/.test(html.headers["content-security-policy"] || ""),
      "the page's CSP allows the broker origin and nothing else");
    const head = await request("HEAD", "/app.js");
    eq(head.status, 200, "HEAD /app.js");
    eq(head.body, "", "HEAD has no body");

    const refused = ["/demo-server.c", "/http.c", "/CMakeLists.txt", "/../CMakeLists.txt", "/%2e%2e/CMakeLists.txt",
      "/..%2fCMakeLists.txt", "//etc/passwd", "/index.html/", "/app.js/..", "/./index.html", "/static/../app.js",
      "/api", "/api/", "/api/tokens", "/.git/config", "/favicon.ico"];
    for (const p of refused) {
      const r = await request("GET", p);
      eq(r.status, 404, `GET ${p}`);
      eq(JSON.parse(r.body).code, "not_found", `error body of ${p}`);
    }
    const q = await request("GET", "/app.js?v=1#x");
    eq(q.status, 200, "query strings are ignored");
  }],

  ["config tells the page where the broker is", async () => {
    const r = await request("GET", "/api/config");
    eq(r.status, 200, "GET /api/config");
    eq(JSON.parse(r.body), { broker_url: "ws://127.0.0.1:9/v1/realtime", token_ttl: TTL }, "config");
    const p = await request("POST", "/api/config");
    eq(p.status, 405, "POST /api/config");
    eq(p.headers.allow, "GET", "Allow header");
  }],

  ["mints a verifiable, correctly scoped token for a valid name", async () => {
    const before = Math.floor(Date.now() / 1000);
    const r = await postToken(JSON.stringify({ name: "Alice_01-x" }));
    eq(r.status, 200, "POST /api/token");
    eq(r.headers["cache-control"], "no-store", "token responses are not cached");
    const body = JSON.parse(r.body);
    eq(body.client_id, "Alice_01-x", "client_id");
    const { payload, protectedHeader } = await jose.jwtVerify(body.token, publicKeyOf(key), { algorithms: ["ES256"] });
    eq(protectedHeader, { alg: "ES256", typ: "JWT", kid: key.split("_")[2] }, "JOSE header");
    eq(payload.sub, "Alice_01-x", "sub");
    const sorted = (cap) => Object.fromEntries(Object.entries(cap).map(([k, v]) => [k, [...v].sort()]));
    eq(sorted(payload.cap), sorted(CAP), "cap");
    eq(payload.exp - payload.iat, TTL, "exp - iat");
    check(payload.iat >= before - 1 && payload.iat <= before + 5, "iat is now");
    eq(body.expires_at, payload.exp, "expires_at");
    check(typeof payload.jti === "string" && payload.jti.length >= 16, "jti");
    const max = await postToken(JSON.stringify({ name: "x".repeat(32), extra: [1, 2] }) + "\r\n");
    eq(max.status, 200, "a 32-character name, trailing whitespace");
  }],

  ["refuses bad names and bad token requests", async () => {
    const bad = ['{"name":""}', JSON.stringify({ name: "x".repeat(33) }), '{"name":"a b"}', '{"name":"é"}',
      '{"name":"a/../b"}', '{"name":"a\\u0000"}', '{"name":7}', '{"name":null}', "{}", '["alice"]', '"alice"',
      '{"name":"alice"', '{"name":"alice"} x', "", "null"];
    for (const b of bad) {
      const r = await postToken(b);
      eq(r.status, 400, `POST /api/token ${b}`);
      eq(JSON.parse(r.body).code, "bad_request", `error code for ${b}`);
    }
    eq((await postToken('{"name":"alice"}', "text/plain")).status, 415, "a form-like content type");
    eq((await postToken('{"name":"alice"}', null)).status, 415, "no content type");
    const g = await request("GET", "/api/token");
    eq(g.status, 405, "GET /api/token");
    eq(g.headers.allow, "POST", "Allow header");
    eq((await request("PUT", "/index.html")).status, 405, "PUT on a static file");
  }],

  ["refuses malformed and oversized requests without hanging", async () => {
    const cases = [
      ["GARBAGE\r\n\r\n", 400],
      ["GET /\r\n\r\n", 400],
      ["GET / HTTP/2.0\r\n\r\n", 505],
      ["GET index.html HTTP/1.1\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\n folded: x\r\n\r\n", 400],
      ["GET / HTTP/1.1\nHost: x\n\n\r\n\r\n", 400],
      ["GET /\0 HTTP/1.1\r\n\r\n", 400],
      [`GET /${"a".repeat(300)} HTTP/1.1\r\n\r\n`, 414],
      [`GET / HTTP/1.1\r\nX-Big: ${"a".repeat(9000)}\r\n\r\n`, 431],
      ["POST /api/token HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n", 413],
      ["POST /api/token HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", 413],
      ["POST /api/token HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400],
      ["POST /api/token HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab", 400],
      ["POST /api/token HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501],
    ];
    for (const [req, want] of cases) {
      const r = await raw(req);
      eq(r.status, want, `status for ${JSON.stringify(req.slice(0, 60))}`);
    }
    // A body sent in pieces is reassembled.
    const sock = net.connect(port, "127.0.0.1");
    const chunks = [];
    sock.on("data", (c) => chunks.push(c));
    await within(new Promise((r) => sock.on("connect", r)), T(3000), "connect");
    const body = '{"name":"slow"}';
    sock.write(`POST /api/token HTTP/1.1\r\nContent-Type: application/json\r\nContent-Len`);
    await sleep(100);
    sock.write(`gth: ${body.length}\r\n\r\n{"name":`);
    await sleep(100);
    sock.write('"slow"}');
    await within(new Promise((r) => sock.on("close", r)), T(5000), "reply to a split request");
    const text = Buffer.concat(chunks).toString();
    responses.push(text);
    check(text.startsWith("HTTP/1.1 200 "), "split request answered 200");
  }],

  ["idle connections neither hang it nor lock others out", async () => {
    const idle = [];
    for (let i = 0; i < 80; i++) {
      const s = net.connect(port, "127.0.0.1");
      s.on("error", () => {});
      idle.push(s);
    }
    await Promise.all(idle.map((s) => within(new Promise((r) => { s.on("connect", r); s.on("close", r); }), T(3000), "idle connect")));
    await sleep(200);
    const r = await request("GET", "/api/config");
    eq(r.status, 200, "served while 80 idle sockets are open");
    for (const s of idle) s.destroy();
  }],

  ["a silent client is cut off after the I/O timeout", async () => {
    const s = net.connect(port, "127.0.0.1");
    s.on("error", () => {});
    s.write("GET / HTTP/1.1\r\n");
    const t0 = Date.now();
    await within(new Promise((r) => s.on("close", r)), T(15000), "server closes a stalled request");
    const took = Date.now() - t0;
    check(took >= 8000 && took <= T(13000), `closed after ${took} ms (timeout is 10 s)`);
  }],

  ["nothing it sent or logged contains the API key or a token", async () => {
    const exit = await demo.stop();
    eq(exit.code, 0, "exit status after SIGTERM");
    const secret = key.split("_")[3];
    for (const r of responses) {
      check(!r.includes(secret) && !/lk_(live|sbx)_/.test(r), "a response contains API key material");
    }
    const log = demo.log();
    check(!log.includes(secret) && !/lk_(live|sbx)_/.test(log), "the log contains API key material");
    check(!/eyJ[A-Za-z0-9_-]+\.eyJ/.test(log), "the log contains a token");
    for (const line of demo.lines) JSON.parse(line);
  }],
];

await run(tests, { budgetMs: T(60000) });
