// Cross-checks liblatchkey-mint against the npm `jose` library (Node).
//
//   (a) tokens minted by lk_tokentool verify with jose's jwtVerify using
//       only the public key;
//   (b) tokens jose's SignJWT mints with the private key built from the API
//       key's hex secret (a JWK with d, x, y) verify with lk_tokentool;
//   (c) expired, tampered, wrong-key and wrong-algorithm tokens are refused
//       on both sides.
//
// Usage: node jose_interop.mjs PATH/TO/lk_tokentool
// Any mismatch exits 1 with a message naming the failed check.
import { spawnSync } from 'node:child_process';
import { createECDH, createHmac, randomBytes } from 'node:crypto';
import {
  SignJWT, decodeProtectedHeader, errors, exportJWK, importJWK, importSPKI, jwtVerify,
} from 'jose';

const TOOL = process.argv[2];
if (!TOOL) {
  console.error('usage: node jose_interop.mjs TOOL');
  process.exit(2);
}
const KEY_ENV = 'LK_INTEROP_KEY';
const CAP = { 'chat:*': ['realtime:subscribe', 'realtime:publish'], news: ['realtime:subscribe'] };
const CAP_CANON = { 'chat:*': ['realtime:publish', 'realtime:subscribe'], news: ['realtime:subscribe'] };
const KEY_RE = /^lk_(live|sbx)_([0-9a-f]{16})_([0-9a-f]{64})_([0-9a-f]{8})$/;

let checks = 0;
function check(cond, what) {
  if (!cond) {
    console.error(`FAIL: ${what}`);
    process.exit(1);
  }
  checks++;
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

// The API key travels in the environment, never in argv.
function run(args, key, stdin) {
  const env = { ...process.env };
  if (key !== undefined) env[KEY_ENV] = key;
  const p = spawnSync(TOOL, args, { input: stdin ?? '', env, encoding: 'utf8', timeout: 60000 });
  if (p.error) throw p.error;
  return { rc: p.status, out: p.stdout, err: p.stderr };
}

function toolOk(args, key, stdin) {
  const r = run(args, key, stdin);
  check(r.rc === 0, `lk_tokentool ${args[0]} exited ${r.rc}: ${r.err.trim()}`);
  return r.out;
}

function toolRefuses(args, key, code) {
  const r = run(args, key);
  check(r.rc === 1, `lk_tokentool ${args[0]} should refuse (exit 1), got ${r.rc}`);
  check(r.err.includes(code), `expected ${code}, tool said: ${r.err.trim()}`);
  check(r.out === '', 'refused verify must print no claims');
}

async function joseRefuses(token, pub, ErrorType, what, opts = {}) {
  try {
    await jwtVerify(token, pub, { algorithms: ['ES256'], ...opts });
  } catch (e) {
    check(e instanceof ErrorType, `${what}: jose threw ${e.code ?? e.name}, expected ${ErrorType.name}`);
    return;
  }
  check(false, `${what}: jose accepted the token`);
}

async function newKey(env) {
  const key = toolOk(['genkey', env]).trim();
  const m = KEY_RE.exec(key);
  check(m !== null, 'genkey output has the lk_<env>_<kid>_<secret>_<crc> form');
  check(m[1] === env, 'genkey env');
  const d = Buffer.from(m[3], 'hex');
  // Node's own EC code derives the public point: an independent d*G.
  const ecdh = createECDH('prime256v1');
  ecdh.setPrivateKey(d);
  const point = ecdh.getPublicKey();
  const jwk = {
    kty: 'EC', crv: 'P-256', d: b64url(d), x: b64url(point.subarray(1, 33)), y: b64url(point.subarray(33, 65)),
  };
  const priv = await importJWK(jwk, 'ES256');
  return { key, kid: m[2], priv, jwk };
}

async function main() {
  const { key, kid, priv, jwk } = await newKey('live');

  const pem = toolOk(['pubpem', `env:${KEY_ENV}`], key);
  const pub = await importSPKI(pem, 'ES256');
  const exported = await exportJWK(pub);
  check(exported.x === jwk.x && exported.y === jwk.y,
    'public key from lk_pubkey_to_pem matches the point Node derives from the secret');

  // (a) lk -> jose.
  let now = Math.floor(Date.now() / 1000);
  const toks = toolOk(['mint', `env:${KEY_ENV}`, JSON.stringify(CAP), '--ttl', '120',
    '--sub', 'node-\u00fc', '--aud', 'interop', '--count', '300'], key).trim().split('\n');
  check(toks.length === 300, 'minted 300 tokens');
  const jtis = new Set();
  for (const t of toks) {
    const { payload, protectedHeader } = await jwtVerify(t, pub, {
      algorithms: ['ES256'], audience: 'interop', requiredClaims: ['iat', 'exp', 'jti'],
    });
    check(same(protectedHeader, { alg: 'ES256', typ: 'JWT', kid }), `header is exactly alg/typ/kid: ${JSON.stringify(protectedHeader)}`);
    check(same(payload.cap, CAP_CANON), 'cap claim is the canonical capability');
    check(payload.sub === 'node-\u00fc', 'sub survives as UTF-8');
    check(payload.exp - payload.iat === 120, 'exp - iat == ttl');
    check(Math.abs(payload.iat - now) <= 60, 'iat is the current time');
    check(payload.jti.length === 22, 'jti is 16 random bytes in base64url');
    jtis.add(payload.jti);
  }
  check(jtis.size === toks.length, 'every jti is unique');

  // (b) jose -> lk.
  const joseToks = [];
  for (let i = 0; i < 100; i++) {
    const jwt = new SignJWT({ cap: CAP, sub: `js-${i}`, ...(i % 2 ? { aud: 'interop' } : {}) })
      .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid })
      .setIssuedAt()
      .setExpirationTime('10m')
      .setJti(b64url(randomBytes(16)));
    joseToks.push(await jwt.sign(priv));
  }
  const out = toolOk(['verify', `env:${KEY_ENV}`, '-'], key, `${joseToks.join('\n')}\n`);
  const got = out.trim().split('\n').map((l) => JSON.parse(l));
  check(got.length === 100, 'lk verified all 100 jose tokens');
  got.forEach((c, i) => {
    check(c.sub === `js-${i}` && c.kid === kid, 'claims read back by lk');
    check(same(c.cap, CAP_CANON), 'cap parsed by lk');
    check(c.exp - c.iat === 600, 'times read back by lk');
  });
  toolOk(['verify', `env:${KEY_ENV}`, joseToks[1], '--audience', 'interop'], key);
  toolRefuses(['verify', `env:${KEY_ENV}`, joseToks[0], '--audience', 'interop'], key, 'ETOKEN_AUDIENCE');

  // (c) refusals, both directions.
  now = Math.floor(Date.now() / 1000);
  const expired = await new SignJWT({ cap: CAP, jti: b64url(randomBytes(16)) })
    .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid })
    .setIssuedAt(now - 700).setExpirationTime(now - 100).sign(priv);
  toolRefuses(['verify', `env:${KEY_ENV}`, expired], key, 'ETOKEN_EXPIRED (close 4401)');
  const lkExpired = toolOk(['mint', `env:${KEY_ENV}`, JSON.stringify(CAP), '--now', String(now - 700),
    '--ttl', '600'], key).trim();
  await joseRefuses(lkExpired, pub, errors.JWTExpired, 'jose refuses an expired lk token');
  toolRefuses(['verify', `env:${KEY_ENV}`, lkExpired], key, 'ETOKEN_EXPIRED');

  const [h, p, s] = toks[0].split('.');
  const claims = JSON.parse(Buffer.from(p, 'base64url'));
  claims.cap = { '*': ['realtime:publish', 'realtime:subscribe'] };
  const p2 = b64url(JSON.stringify(claims));
  await joseRefuses(`${h}.${p2}.${s}`, pub, errors.JWSSignatureVerificationFailed,
    'jose refuses a tampered lk token', { audience: 'interop' });
  toolRefuses(['verify', `env:${KEY_ENV}`, `${h}.${p2}.${s}`], key, 'ETOKEN_SIGNATURE');
  const [jh, jp, js] = joseToks[0].split('.');
  const jc = JSON.parse(Buffer.from(jp, 'base64url'));
  jc.sub = 'mallory';
  toolRefuses(['verify', `env:${KEY_ENV}`, `${jh}.${b64url(JSON.stringify(jc))}.${js}`], key, 'ETOKEN_SIGNATURE');
  const sig = Buffer.from(s, 'base64url');
  sig[40] ^= 0x01;
  await joseRefuses(`${h}.${p}.${b64url(sig)}`, pub, errors.JWSSignatureVerificationFailed,
    'jose refuses an lk token with a flipped signature bit', { audience: 'interop' });
  toolRefuses(['verify', `env:${KEY_ENV}`, `${h}.${p}.${b64url(sig)}`], key, 'ETOKEN_SIGNATURE');

  // Another key claiming this kid; and an lk token checked with another key.
  const other = await newKey('sbx');
  const impostor = await new SignJWT({ cap: CAP, jti: b64url(randomBytes(16)) })
    .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid })
    .setIssuedAt().setExpirationTime('1m').sign(other.priv);
  check(decodeProtectedHeader(impostor).kid === kid, 'impostor names the real kid');
  toolRefuses(['verify', `env:${KEY_ENV}`, impostor], key, 'ETOKEN_SIGNATURE');
  const otherPub = await importSPKI(toolOk(['pubpem', `env:${KEY_ENV}`], other.key), 'ES256');
  await joseRefuses(toks[0], otherPub, errors.JWSSignatureVerificationFailed,
    'jose refuses an lk token under another public key', { audience: 'interop' });
  toolRefuses(['verify', `env:${KEY_ENV}`, toks[0]], other.key, 'ETOKEN_KID');

  // Algorithm confusion: HS256 keyed with the public PEM, and alg none.
  const body = { iat: now, exp: now + 60, jti: b64url(randomBytes(16)), cap: CAP };
  const hsH = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid }));
  const hsP = b64url(JSON.stringify(body));
  const mac = createHmac('sha256', pem).update(`${hsH}.${hsP}`).digest();
  toolRefuses(['verify', `env:${KEY_ENV}`, `${hsH}.${hsP}.${b64url(mac)}`], key, 'ETOKEN_ALG');
  const noneH = b64url(JSON.stringify({ alg: 'none', kid }));
  toolRefuses(['verify', `env:${KEY_ENV}`, `${noneH}.${hsP}.`], key, 'ETOKEN_ALG');

  console.log(`jose interop: ${checks} checks passed`);
}

main().catch((e) => {
  console.error(`FAIL: ${e.stack ?? e}`);
  process.exit(1);
});
