// 10-node-client: a Node client (the `ws` package, as a browser would use
// the WebSocket API) connects with the bearer subprotocol, subscribes,
// publishes and receives, splitting every frame on '\n'. Tokens come from the
// latchkey CLI and from `jose` signing with the API key's secret.
// Env: LK_BROKER, LK_CLI (set by CMake). Exits non-zero on any failure.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createECDH, createPrivateKey, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import { SignJWT } from 'jose';
import WebSocket from 'ws';

const BROKER = process.env.LK_BROKER;
const CLI = process.env.LK_CLI;
const WAIT_MS = 5000;

const overall = setTimeout(() => {
  console.error('FAIL: 10-node-client did not finish within 40 s');
  process.exit(1);
}, 40000);

const tmp = mkdtempSync(join(tmpdir(), 'lk-it-node-'));
const db = join(tmp, 'latchkey.db');
const stderrLines = [];
const redactions = [];
let broker;

function cli(...args) {
  return execFileSync(CLI, ['--db', db, '--json', ...args],
                      { encoding: 'utf8', timeout: 20000 }).trim();
}

function startBroker() {
  return new Promise((resolve, reject) => {
    broker = spawn(BROKER, ['--listen', '127.0.0.1:0', '--db', db, '--log-level', 'debug'],
                   { stdio: ['ignore', 'ignore', 'pipe'] });
    const timer = setTimeout(() => reject(new Error('no listening line')), 15000);
    broker.on('exit', (code) => reject(new Error(`broker exited early (${code})`)));
    createInterface({ input: broker.stderr }).on('line', (line) => {
      stderrLines.push(line);
      let o;
      try { o = JSON.parse(line); } catch { return; }
      if (o.msg === 'listening' && Number.isInteger(o.port)) {
        clearTimeout(timer);
        resolve(o.port);
      }
    });
  });
}

// A latchkey.v1 client: queues every '\n'-separated message.
class Client {
  constructor(url, protocols, options) {
    this.queue = [];
    this.waiters = [];
    this.closed = new Promise((resolve) => {
      this.ws = new WebSocket(url, protocols, options);
      this.ws.on('close', (code) => { resolve(code); this.wake(); });
    });
    this.ws.on('error', () => {});
    this.ws.on('message', (data, isBinary) => {
      assert.equal(isBinary, false, 'broker sends text frames');
      for (const line of data.toString('utf8').split('\n')) {
        if (line === '') continue;
        const msg = JSON.parse(line);
        msg.raw = line;
        this.queue.push(msg);
      }
      this.wake();
    });
  }

  wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  async next(ms = WAIT_MS) {
    const deadline = Date.now() + ms;
    while (this.queue.length === 0) {
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error('closed while waiting');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('no message within ' + ms + ' ms');
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
    return this.queue.shift();
  }

  send(obj) { this.ws.send(JSON.stringify(obj)); }

  async closeCode(ms = WAIT_MS) {
    return Promise.race([this.closed,
      new Promise((_, reject) => setTimeout(() => reject(new Error('not closed')), ms))]);
  }
}

async function joseToken(apiKey, sub, cap) {
  const [, , kid, secretHex] = apiKey.split('_');
  const ecdh = createECDH('prime256v1');
  ecdh.setPrivateKey(Buffer.from(secretHex, 'hex'));
  const pub = ecdh.getPublicKey();
  const key = createPrivateKey({
    format: 'jwk',
    key: { kty: 'EC', crv: 'P-256', d: Buffer.from(secretHex, 'hex').toString('base64url'),
           x: pub.subarray(1, 33).toString('base64url'),
           y: pub.subarray(33, 65).toString('base64url') },
  });
  return new SignJWT({ cap, jti: randomBytes(12).toString('hex') })
    .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid })
    .setSubject(sub).setIssuedAt().setExpirationTime('10m').sign(key);
}

async function main() {
  const created = JSON.parse(cli('keys', 'create', '--workspace', 'ws_node', '--name', 'node',
                                 '--scopes', 'realtime:publish,realtime:subscribe'));
  const apiKey = created.key;
  const cap = { 'chat:*': ['realtime:subscribe', 'realtime:publish'] };
  let cliToken = cli('token', 'mint', '--key', apiKey, '--capability', JSON.stringify(cap),
                     '--client-id', 'node-cli');
  if (cliToken.startsWith('{')) {
    const doc = JSON.parse(cliToken);
    cliToken = doc.token ?? doc.access_token;
  }
  const joseTok = await joseToken(apiKey, 'node-jose', cap);
  const secrets = [apiKey, apiKey.split('_')[3], cliToken, joseTok];
  redactions.push(...secrets);

  const port = await startBroker();
  const url = `ws://127.0.0.1:${port}/v1/realtime`;

  const sub = new Client(url, ['latchkey.v1', 'bearer.' + cliToken]);
  const welcome = await sub.next();
  assert.equal(welcome.op, 'welcome');
  assert.equal(sub.ws.protocol, 'latchkey.v1', 'selected subprotocol');
  assert.equal(welcome.client_id, 'node-cli');
  assert.equal(welcome.workspace, 'ws_node');
  assert.equal(welcome.max_frame, 65536);

  sub.send({ op: 'subscribe', id: 1, channel: 'chat:lobby' });
  assert.deepEqual(JSON.parse((await sub.next()).raw),
                   { op: 'subscribed', id: 1, channel: 'chat:lobby', seq: 0 });

  const pub = new Client(url, ['latchkey.v1', 'bearer.' + joseTok]);
  assert.equal((await pub.next()).op, 'welcome', 'a jose-minted token is accepted');
  for (let i = 1; i <= 50; i++) {
    pub.ws.send(`{"op":"publish","id":${i},"channel":"chat:lobby",` +
                `"data":{"n":12345678901234567890,"i":${i}}}`);
  }
  for (let i = 1; i <= 50; i++) {
    const ack = await pub.next();
    assert.deepEqual([ack.op, ack.id, ack.seq], ['ack', i, i]);
  }
  for (let i = 1; i <= 50; i++) {
    const m = await sub.next();
    assert.equal(m.op, 'message');
    assert.equal(m.channel, 'chat:lobby');
    assert.equal(m.seq, i);
    assert.equal(m.from, 'node-jose');
    assert.ok(m.raw.includes(`"data":{"n":12345678901234567890,"i":${i}}`),
              'data arrives byte for byte: ' + m.raw);
    assert.ok(Math.abs(m.ts - Date.now()) < 5000, 'ts is unix ms');
  }

  const bad = new Client(url, ['latchkey.v1', 'bearer.not-a-token']);
  const err = await bad.next();
  assert.deepEqual([err.op, err.code], ['error', 'unauthorized']);
  assert.equal(await bad.closeCode(), 4401, 'close code seen by a browser-style client');

  broker.removeAllListeners('exit');
  const exited = new Promise((resolve) => broker.on('exit', (code) => resolve(code)));
  const t0 = Date.now();
  broker.kill('SIGTERM');
  assert.equal(await sub.closeCode(), 1001, 'subscriber closed with 1001 on shutdown');
  assert.equal(await pub.closeCode(), 1001, 'publisher closed with 1001 on shutdown');
  const code = await Promise.race([exited,
    new Promise((_, reject) => setTimeout(() => reject(new Error('broker still running')), 5000))]);
  assert.equal(code, 0, 'broker exit code');
  assert.ok(Date.now() - t0 <= 2000, 'broker exited within 2 s');
  for (const line of stderrLines) {
    for (const s of secrets) assert.ok(!line.includes(s), 'a secret reached the broker log');
  }
}

let failed = false;
try {
  await main();
  console.log('ok   10-node-client');
} catch (e) {
  failed = true;
  console.log('FAIL 10-node-client: ' + (e.stack || e));
  const redact = (l) => redactions.reduce((acc, s) => acc.split(s).join('<secret>'), l);
  console.log('---- broker stderr ----\n' + stderrLines.slice(-200).map(redact).join('\n'));
} finally {
  if (broker && broker.exitCode === null) broker.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
  clearTimeout(overall);
}
process.exit(failed ? 1 : 0);
