/**
 * latchkey.js - browser client for the Latchkey realtime broker
 * (WebSocket protocol `latchkey.v1`).
 *
 * One dependency-free ES module. Copy it next to your page and:
 *
 *   import { Latchkey } from "./latchkey.js";
 *   const rt = new Latchkey({ url: "wss://rt.example.com/v1/realtime",
 *                             authUrl: "/api/token" });
 *   rt.on("connected", ({ connId }) => console.log("up", connId));
 *   rt.channel("chat:lobby").subscribe((data, meta) => show(meta.from, data));
 *   await rt.connect();
 *   await rt.channel("chat:lobby").publish({ text: "hi" });
 *
 * The token travels as the WebSocket subprotocol `bearer.<token>` next to
 * `latchkey.v1`, never in the URL. The client renews it in-band when the
 * broker says it is expiring, and reconnects (with a fresh token,
 * exponential backoff and jitter) after network loss or a recoverable close;
 * subscriptions resume from the last sequence number seen on each channel.
 *
 * @module latchkey
 */

const PROTOCOL = "latchkey.v1";

/** Close codes after which reconnecting cannot help: the client stops. */
const FATAL_CLOSE_CODES = new Set([4400, 4403, 4413]);

/** A compact JWS: three base64url segments. Also a valid subprotocol token. */
const TOKEN_RE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** HTTP statuses from the auth endpoint that retrying will not fix. */
const FATAL_AUTH_STATUS = new Set([400, 401, 403, 404, 405]);

/** 4401 closes in a row without a welcome before the client gives up. */
const MAX_AUTH_REJECTIONS = 5;

const DEFAULTS = {
  requestTimeout: 10000,
  connectTimeout: 10000,
  heartbeatInterval: 20000,
  minReconnectDelay: 500,
  maxReconnectDelay: 30000,
  rateLimitedDelay: 5000,
};

/**
 * An error from the broker or the client. `code` is the broker's error code
 * (`bad_request`, `unauthorized`, `token_expired`, `forbidden`,
 * `not_subscribed`, `too_large`, `rate_limited`, `internal`) or one of the
 * client's own: `timeout`, `disconnected`, `closed`, `not_connected`,
 * `auth_failed`.
 */
export class LatchkeyError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {object} [extra] copied onto the error (e.g. `status`, `fatal`)
   */
  constructor(code, message, extra) {
    super(message);
    this.name = "LatchkeyError";
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

/**
 * @typedef {object} MessageMeta
 * @property {number} seq      per-channel sequence number
 * @property {?string} from    the publisher's client id (token `sub`), or
 *                             null for server-side publishes
 * @property {number} ts       broker timestamp, unix milliseconds
 * @property {string} channel
 */

/**
 * @callback MessageListener
 * @param {*} data            the published JSON value
 * @param {MessageMeta} meta
 */

/** A channel handle; get one with {@link Latchkey#channel}. */
export class Channel {
  /** @param {Latchkey} client @param {string} name */
  constructor(client, name) {
    /** The channel name. @type {string} */
    this.name = name;
    this._client = client;
    this._listeners = new Set();
    this._wanted = false;     /* the application asked to be subscribed */
    this._subscribed = false; /* the broker confirmed on this connection */
    this._lastSeq = 0;        /* last seq seen, for `since` on resubscribe */
    this._initialSince = null; /* `since` asked for by subscribe() */
    this._waiters = [];       /* subscribe() promises awaiting `subscribed` */
  }

  /** True while the broker has confirmed the subscription. */
  get subscribed() {
    return this._subscribed;
  }

  /**
   * Subscribes (once per channel) and adds a listener. While disconnected the
   * subscription is sent as soon as the connection is up, and it is renewed
   * automatically after every reconnect.
   * @param {MessageListener} [listener]
   * @param {{since?: number}} [options] `since`: on the first subscribe,
   *   also deliver the messages after this seq that the broker still holds
   *   (0 = all of them)
   * @returns {Promise<{seq: number}>} resolves when the broker confirms,
   *   with the channel's last seq; rejects with a LatchkeyError
   *   (e.g. `forbidden`) when it refuses.
   */
  subscribe(listener, options) {
    if (listener !== undefined && listener !== null && typeof listener !== "function")
      throw new TypeError("listener must be a function");
    const since = options && options.since;
    if (since !== undefined && !(Number.isSafeInteger(since) && since >= 0))
      throw new TypeError("since must be a non-negative integer");
    if (listener) this._listeners.add(listener);
    if (this._subscribed) return Promise.resolve({ seq: this._lastSeq });
    const p = new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
    /* Callers often ignore this promise; refusals also reach the client's
     * "error" event, so an unawaited one must not be an unhandled rejection. */
    p.catch(() => {});
    if (!this._wanted) {
      this._wanted = true;
      this._initialSince = since === undefined ? null : since;
      this._client._sendSubscribe(this, false);
    }
    return p;
  }

  /**
   * Removes one listener, or all of them; when none remain, unsubscribes.
   * @param {MessageListener} [listener]
   * @returns {Promise<void>}
   */
  unsubscribe(listener) {
    if (listener) this._listeners.delete(listener);
    else this._listeners.clear();
    if (this._listeners.size > 0 || !this._wanted) return Promise.resolve();
    const wasSubscribed = this._subscribed;
    this._wanted = false;
    this._subscribed = false;
    this._lastSeq = 0;
    this._initialSince = null;
    this._failWaiters(new LatchkeyError("closed", "unsubscribed before the broker confirmed"));
    if (!wasSubscribed || !this._client._isOpen()) return Promise.resolve();
    return this._client
      ._request({ op: "unsubscribe", channel: this.name })
      .then(() => undefined, (err) => {
        if (err.code !== "not_subscribed") throw err;
      });
  }

  /**
   * Publishes a JSON value on the channel.
   * @param {*} data any JSON-serialisable value
   * @returns {Promise<{seq: number}>} resolves on the broker's `ack`;
   *   rejects with a LatchkeyError whose `code` says why (`forbidden`,
   *   `rate_limited`, `too_large`, `disconnected`, `timeout`, ...).
   */
  publish(data) {
    if (data === undefined)
      return Promise.reject(new TypeError("publish needs a JSON value"));
    return this._client
      ._request({ op: "publish", channel: this.name, data })
      .then((reply) => ({ seq: reply.seq }));
  }

  _deliver(msg) {
    if (!this._wanted) return;
    if (typeof msg.seq === "number") this._lastSeq = msg.seq;
    const meta = {
      seq: msg.seq,
      from: msg.from === undefined ? null : msg.from,
      ts: msg.ts,
      channel: this.name,
    };
    for (const fn of [...this._listeners]) {
      try {
        fn(msg.data, meta);
      } catch (e) {
        reportListenerError(e);
      }
    }
  }

  _onSubscribed(reply, since) {
    if (!this._wanted) return;
    this._subscribed = true;
    this._initialSince = null;
    /* A reply below our `since` means the broker lost the channel's history
     * (e.g. it restarted): its numbering starts again. */
    if (since === null || reply.seq < since) this._lastSeq = reply.seq;
    const waiters = this._waiters;
    this._waiters = [];
    for (const w of waiters) w.resolve({ seq: reply.seq });
  }

  _onRefused(err) {
    err.channel = this.name;
    this._wanted = false;
    this._subscribed = false;
    this._listeners.clear();
    this._failWaiters(err);
  }

  _failWaiters(err) {
    const waiters = this._waiters;
    this._waiters = [];
    for (const w of waiters) w.reject(err);
  }
}

/**
 * @typedef {object} LatchkeyOptions
 * @property {string} url  the broker's WebSocket URL, e.g.
 *   `wss://rt.example.com/v1/realtime`
 * @property {string} [authUrl]  your backend's token endpoint: the client
 *   POSTs `authBody` as JSON (with cookies) and expects `{"token": ...}`
 *   or `{"access_token": ...}`
 * @property {object} [authBody]  JSON body for `authUrl` (default `{}`)
 * @property {Object<string,string>} [authHeaders]  extra headers for `authUrl`
 * @property {function(): Promise<string|{token?: string, access_token?: string}>}
 *   [authCallback]  alternative to `authUrl`: returns a fresh token. Throw
 *   an error with `fatal: true` to stop retrying.
 * @property {number} [requestTimeout=10000]  ms before a request (publish,
 *   subscribe, auth, ping) without reply rejects with `timeout`; the
 *   connection is then considered dead and re-established
 * @property {number} [connectTimeout=10000]  ms allowed for token fetch,
 *   handshake and welcome
 * @property {number} [heartbeatInterval=20000]  ms of silence before the
 *   client pings the broker; 0 disables
 * @property {number} [minReconnectDelay=500]  first backoff step, ms
 * @property {number} [maxReconnectDelay=30000]  backoff ceiling, ms
 * @property {typeof WebSocket} [WebSocket]  WebSocket implementation
 *   (default: the browser's)
 */

/**
 * A connection to a Latchkey broker.
 *
 * Events (see {@link Latchkey#on}):
 * - `connecting` `{attempt}`
 * - `connected` `{connId, clientId, workspace, expiresAt}`
 * - `disconnected` `{code, reason, willReconnect, delay}`
 * - `failed` `{code, reason, error}`: stopped for good (4400, 4403, 4413, or
 *   the auth endpoint refused); call `connect()` to try again
 * - `renewed` `{expiresAt}`: the token was replaced in-band
 * - `unsubscribed` `{channel, reason}`: the broker dropped a subscription
 *   (e.g. `capability_revoked`)
 * - `error` `LatchkeyError`: a broker error not tied to a request, a
 *   refused subscription (`err.channel` names it), or a failed renewal
 * - `statechange` `{state, previous}`
 */
export class Latchkey {
  /** @param {LatchkeyOptions} options */
  constructor(options) {
    const o = { ...DEFAULTS, ...options };
    if (typeof o.url !== "string" || !/^wss?:\/\//i.test(o.url))
      throw new TypeError("url must be a ws:// or wss:// URL");
    if (!o.authUrl && typeof o.authCallback !== "function")
      throw new TypeError("give authUrl or authCallback");
    this._opts = o;
    this._WS = o.WebSocket || globalThis.WebSocket;
    if (typeof this._WS !== "function") throw new TypeError("no WebSocket implementation");

    this._state = "initial";
    this._ws = null;
    this._gen = 0;               /* bumps on every new attempt; stale callbacks compare it */
    this._attempt = 0;
    this._authRejections = 0;
    this._timers = new Set();
    this._reconnectTimer = null;
    this._lastRx = 0;
    this._pending = new Map();   /* request id -> {resolve, reject, timer, settled} */
    this._nextId = 0;
    this._channels = new Map();
    this._handlers = new Map();
    this._connectWaiters = [];
    this._renewing = false;
    this._connectDeadline = null;
    this._onOnline = () => {
      if (this._state === "disconnected") this._reconnectNow();
    };

    this._connId = null;
    this._clientId = null;
    this._workspace = null;
    this._expiresAt = null;
    this._offset = 0;
    this._maxFrame = 65536;
  }

  /** `initial`, `connecting`, `connected`, `disconnected` (will retry),
   * `failed` or `closed`. @type {string} */
  get state() { return this._state; }
  /** The broker's id for the current connection. @type {?string} */
  get connId() { return this._connId; }
  /** The token's `sub`, as the broker sees it. @type {?string} */
  get clientId() { return this._clientId; }
  /** @type {?string} */
  get workspace() { return this._workspace; }
  /** Token expiry, unix seconds on the broker's clock. @type {?number} */
  get expiresAt() { return this._expiresAt; }
  /** Broker clock minus local clock, ms (from `welcome.server_time`). @type {number} */
  get serverTimeOffset() { return this._offset; }

  /** The broker's current time, unix ms. @returns {number} */
  now() {
    return Date.now() + this._offset;
  }

  /** Seconds until the token expires (broker clock), or null. @returns {?number} */
  expiresIn() {
    return this._expiresAt === null ? null : this._expiresAt - this.now() / 1000;
  }

  /**
   * Adds an event listener.
   * @param {string} event
   * @param {function(object): void} fn
   * @returns {function(): void} removes the listener
   */
  on(event, fn) {
    if (typeof fn !== "function") throw new TypeError("listener must be a function");
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(fn);
    return () => this.off(event, fn);
  }

  /** Removes an event listener. @param {string} event @param {function} fn */
  off(event, fn) {
    const set = this._handlers.get(event);
    if (set) set.delete(fn);
  }

  /**
   * The handle for a channel (the same object on every call).
   * @param {string} name a channel name (1-200 of `[A-Za-z0-9_@.:=-]`)
   * @returns {Channel}
   */
  channel(name) {
    if (typeof name !== "string" || !/^[A-Za-z0-9_@.:=-]{1,200}$/.test(name))
      throw new TypeError("invalid channel name");
    let ch = this._channels.get(name);
    if (!ch) {
      ch = new Channel(this, name);
      this._channels.set(name, ch);
    }
    return ch;
  }

  /**
   * Opens the connection (no-op if already open or opening). Reconnection
   * after a loss is automatic.
   * @returns {Promise<void>} resolves on the first `welcome`; rejects if the
   *   client fails or is closed first.
   */
  connect() {
    if (this._state === "connected") return Promise.resolve();
    const p = new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
    p.catch(() => {}); /* also reported by the "failed" event */
    if (this._state !== "connecting" && this._state !== "disconnected") {
      this._attempt = 0;
      this._authRejections = 0;
      if (typeof globalThis.addEventListener === "function")
        globalThis.addEventListener("online", this._onOnline);
      this._open();
    }
    return p;
  }

  /**
   * Closes the connection and stops reconnecting. Pending requests reject
   * with `closed`. Channels keep their listeners: a later `connect()`
   * resubscribes them.
   */
  close() {
    if (this._state === "closed" || this._state === "initial") return;
    if (typeof globalThis.removeEventListener === "function")
      globalThis.removeEventListener("online", this._onOnline);
    this._gen++;
    this._teardown(new LatchkeyError("closed", "connection closed by the client"));
    for (const ch of this._channels.values())
      ch._failWaiters(new LatchkeyError("closed", "connection closed by the client"));
    this._settleConnect(new LatchkeyError("closed", "connection closed by the client"));
    this._setState("closed");
    this._emit("disconnected", { code: 1000, reason: "closed by client", willReconnect: false, delay: 0 });
  }

  /**
   * Measures the round trip to the broker.
   * @returns {Promise<number>} milliseconds
   */
  ping() {
    const t0 = Date.now();
    return this._request({ op: "ping" }).then(() => Date.now() - t0);
  }

  /* ---- internals ---- */

  _isOpen() {
    return this._state === "connected";
  }

  _setState(state) {
    if (state === this._state) return;
    const previous = this._state;
    this._state = state;
    this._emit("statechange", { state, previous });
  }

  _emit(event, arg) {
    const set = this._handlers.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(arg);
      } catch (e) {
        reportListenerError(e);
      }
    }
  }

  _later(fn, ms) {
    const t = setTimeout(() => {
      this._timers.delete(t);
      fn();
    }, ms);
    this._timers.add(t);
    return t;
  }

  _cancel(t) {
    if (t === null || t === undefined) return;
    clearTimeout(t);
    this._timers.delete(t);
  }

  _settleConnect(err) {
    const waiters = this._connectWaiters;
    this._connectWaiters = [];
    for (const w of waiters) (err ? w.reject(err) : w.resolve());
  }

  async _open() {
    const gen = ++this._gen;
    this._setState("connecting");
    this._emit("connecting", { attempt: this._attempt });
    const deadline = this._later(() => {
      if (gen === this._gen) this._lost(1006, "connect timeout");
    }, this._opts.connectTimeout);

    let token;
    try {
      token = await this._fetchToken();
    } catch (err) {
      if (gen !== this._gen) return;
      this._cancel(deadline);
      if (err.fatal) this._fail(0, err.message, err);
      else this._lost(1006, err.message);
      return;
    }
    if (gen !== this._gen) return;

    let ws;
    try {
      ws = new this._WS(this._opts.url, [PROTOCOL, "bearer." + token]);
    } catch (err) {
      this._cancel(deadline);
      this._fail(0, "cannot open WebSocket: " + err.message, err);
      return;
    }
    this._ws = ws;
    this._connectDeadline = deadline;
    ws.onmessage = (ev) => {
      if (gen === this._gen) this._onFrame(ev.data);
    };
    ws.onclose = (ev) => {
      if (gen === this._gen) this._lost(ev.code || 1006, ev.reason || "");
    };
    ws.onerror = () => {
      /* Always followed by a close event, which carries the code. */
    };
  }

  /** A fresh token from authCallback or authUrl, within requestTimeout. */
  async _fetchToken() {
    const ctl = typeof AbortController === "function" ? new AbortController() : null;
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => {
        if (ctl) ctl.abort();
        reject(new LatchkeyError("auth_failed", "token request timed out"));
      }, this._opts.requestTimeout);
    });
    try {
      return await Promise.race([this._requestToken(ctl && ctl.signal), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async _requestToken(signal) {
    const o = this._opts;
    let got;
    if (o.authCallback) {
      got = await o.authCallback();
    } else {
      let res;
      try {
        res = await fetch(o.authUrl, {
          method: "POST",
          credentials: "same-origin",
          cache: "no-store",
          headers: { "Content-Type": "application/json", ...(o.authHeaders || {}) },
          body: JSON.stringify(o.authBody || {}),
          signal,
        });
      } catch (err) {
        throw new LatchkeyError("auth_failed", "token request failed: " + err.message);
      }
      let body = null;
      try {
        body = await res.json();
      } catch (_) {
        /* A non-JSON body is reported below by status or missing token. */
      }
      if (!res.ok) {
        const why = body && typeof body.error === "string" ? body.error : "HTTP " + res.status;
        throw new LatchkeyError("auth_failed", "token request refused: " + why, {
          status: res.status,
          fatal: FATAL_AUTH_STATUS.has(res.status),
        });
      }
      got = body;
    }
    const token = typeof got === "string" ? got : got && (got.token || got.access_token);
    if (typeof token !== "string" || token.length > 8192 || !TOKEN_RE.test(token))
      throw new LatchkeyError("auth_failed", "the token endpoint returned no valid token");
    return token;
  }

  _onFrame(data) {
    if (typeof data !== "string") return; /* latchkey.v1 is text-only */
    this._lastRx = Date.now();
    const gen = this._gen;
    /* The broker may pack several messages into one frame. */
    for (const line of data.split("\n")) {
      if (line.length === 0) continue;
      let msg;
      try {
        msg = JSON.parse(line);
      } catch (_) {
        continue;
      }
      if (msg && typeof msg === "object") this._onMessage(msg);
      if (gen !== this._gen) return; /* a handler ended this connection */
    }
  }

  _onMessage(msg) {
    switch (msg.op) {
      case "welcome":
        this._onWelcome(msg);
        return;
      case "message": {
        const ch = this._channels.get(msg.channel);
        if (ch) ch._deliver(msg);
        return;
      }
      case "token_expiring":
        this._renew();
        return;
      case "unsubscribed":
        if (msg.id === undefined || msg.reason) {
          const ch = this._channels.get(msg.channel);
          if (ch) ch._onRefused(new LatchkeyError("forbidden", "subscription dropped: " + (msg.reason || "by the broker")));
          this._emit("unsubscribed", { channel: msg.channel, reason: msg.reason || null });
        }
        break;
      case "error":
        if (msg.id === undefined || msg.id === null || !this._pending.has(msg.id)) {
          this._emit("error", new LatchkeyError(msg.code || "internal", msg.message || "error"));
          return;
        }
        this._settle(msg.id, new LatchkeyError(msg.code || "internal", msg.message || "error"));
        return;
      default:
        break;
    }
    if (typeof msg.id === "number" && this._pending.has(msg.id)) this._settle(msg.id, null, msg);
  }

  _onWelcome(msg) {
    this._cancel(this._connectDeadline);
    this._connId = msg.conn_id || null;
    this._clientId = msg.client_id === undefined ? null : msg.client_id;
    this._workspace = msg.workspace || null;
    this._expiresAt = typeof msg.expires_at === "number" ? msg.expires_at : null;
    if (typeof msg.server_time === "number") this._offset = msg.server_time - Date.now();
    if (typeof msg.max_frame === "number" && msg.max_frame > 0) this._maxFrame = msg.max_frame;
    this._attempt = 0;
    this._authRejections = 0;
    this._setState("connected");
    for (const ch of this._channels.values()) if (ch._wanted) this._sendSubscribe(ch, true);
    this._armHeartbeat();
    this._settleConnect(null);
    this._emit("connected", {
      connId: this._connId,
      clientId: this._clientId,
      workspace: this._workspace,
      expiresAt: this._expiresAt,
    });
  }

  _sendSubscribe(ch, resume) {
    if (!this._isOpen()) return;
    const since = resume && ch._lastSeq > 0 ? ch._lastSeq : ch._initialSince;
    const req = { op: "subscribe", channel: ch.name };
    if (since !== null) req.since = since;
    const gen = this._gen;
    /* Handled synchronously, not in a promise callback: replayed messages
     * may follow in the same frame and must see the updated seq. */
    const settled = (err, reply) => {
      if (gen !== this._gen) return;
      if (err) {
        /* A lost connection resubscribes on the next welcome. */
        if (err.code !== "disconnected" && err.code !== "timeout" && err.code !== "closed") {
          ch._onRefused(err);
          this._emit("error", err);
        }
        return;
      }
      if (!ch._wanted) {
        /* unsubscribe() ran while this request was in flight. */
        this._request({ op: "unsubscribe", channel: ch.name }).catch(() => {});
        return;
      }
      ch._onSubscribed(reply, since);
    };
    this._request(req, settled).catch(() => {});
  }

  /* `settled(err, reply)`, if given, runs synchronously when the reply
   * arrives, before any later message is processed. */
  _request(msg, settled) {
    if (!this._isOpen())
      return Promise.reject(new LatchkeyError("not_connected", "not connected"));
    const id = ++this._nextId;
    let text;
    try {
      text = JSON.stringify({ ...msg, id });
    } catch (err) {
      return Promise.reject(err);
    }
    /* Sending it anyway would get the connection closed with 4413. */
    if (exceedsBytes(text, this._maxFrame))
      return Promise.reject(new LatchkeyError("too_large", "message exceeds the broker's max_frame"));
    return new Promise((resolve, reject) => {
      const timer = this._later(() => {
        const p = this._pending.get(id);
        if (!p) return;
        this._pending.delete(id);
        const err = new LatchkeyError("timeout", "no reply from the broker to " + msg.op);
        if (settled) settled(err);
        reject(err);
        /* The broker answers every request: silence means a dead link. */
        this._lost(1006, msg.op + " timeout");
      }, this._opts.requestTimeout);
      this._pending.set(id, { resolve, reject, timer, settled });
      try {
        this._ws.send(text);
      } catch (err) {
        this._settle(id, new LatchkeyError("disconnected", "send failed: " + err.message));
      }
    });
  }

  _settle(id, err, reply) {
    const p = this._pending.get(id);
    if (!p) return;
    this._pending.delete(id);
    this._cancel(p.timer);
    if (p.settled) p.settled(err, reply);
    if (err) p.reject(err);
    else p.resolve(reply);
  }

  async _renew() {
    if (this._renewing || !this._isOpen()) return;
    this._renewing = true;
    const gen = this._gen;
    try {
      const token = await this._fetchToken();
      if (gen !== this._gen) return;
      const reply = await this._request({ op: "auth", token });
      if (gen !== this._gen) return;
      if (typeof reply.expires_at === "number") this._expiresAt = reply.expires_at;
      this._emit("renewed", { expiresAt: this._expiresAt });
    } catch (err) {
      if (gen !== this._gen) return;
      this._emit("error", err);
      /* Try again while the current token still has time left; if it runs
       * out, the broker closes with 4401 and reconnecting fetches a token. */
      const left = this.expiresIn();
      if (!err.fatal && left !== null && left > 4)
        this._later(() => {
          if (gen === this._gen) this._renew();
        }, Math.min(2000, (left - 2) * 500));
    } finally {
      if (gen === this._gen) this._renewing = false;
    }
  }

  /* Browsers cannot send WebSocket pings, and a dead link can stay silent
   * for minutes: after `heartbeatInterval` without traffic, send an
   * application ping; its request timeout then detects the loss. */
  _armHeartbeat() {
    const every = this._opts.heartbeatInterval;
    if (!every) return;
    const gen = this._gen;
    this._lastRx = Date.now();
    let inFlight = false;
    const tick = () => {
      if (gen !== this._gen || !this._isOpen()) return;
      if (!inFlight && Date.now() - this._lastRx >= every) {
        inFlight = true;
        this._request({ op: "ping" }).then(() => { inFlight = false; }, () => {});
      }
      this._later(tick, Math.max(1000, every / 2));
    };
    this._later(tick, Math.max(1000, every / 2));
  }

  /** Ends the current socket and fails every request in flight. */
  _teardown(err) {
    for (const t of this._timers) clearTimeout(t);
    this._timers.clear();
    this._reconnectTimer = null;
    this._renewing = false;
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onmessage = ws.onclose = null;
      /* Some implementations (Node's `ws`) throw on an unheard error event. */
      ws.onerror = () => {};
      try {
        ws.close(1000);
      } catch (_) {
        /* already closing */
      }
    }
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const p of pending) {
      if (p.settled) p.settled(err);
      p.reject(err);
    }
    for (const ch of this._channels.values()) ch._subscribed = false;
    this._connId = null;
  }

  /** The connection (or attempt) ended with `code`: retry or stop. */
  _lost(code, reason) {
    if (this._state === "closed" || this._state === "failed") return;
    this._gen++;
    this._teardown(new LatchkeyError("disconnected", "connection lost (" + code + (reason ? ": " + reason : "") + ")"));
    if (FATAL_CLOSE_CODES.has(code)) {
      this._fail(code, reason, new LatchkeyError(code === 4403 ? "forbidden" : "bad_request", reason || "closed by the broker"));
      return;
    }
    if (code === 4401 && ++this._authRejections >= MAX_AUTH_REJECTIONS) {
      this._fail(code, reason, new LatchkeyError("unauthorized", "the broker keeps refusing fresh tokens: " + reason));
      return;
    }
    const o = this._opts;
    const base = Math.min(o.maxReconnectDelay, o.minReconnectDelay * 2 ** Math.min(this._attempt, 16));
    let delay = base / 2 + Math.random() * (base / 2);
    if (code === 4429) delay = Math.max(delay, o.rateLimitedDelay * (0.5 + Math.random()));
    delay = Math.round(delay);
    this._attempt++;
    this._setState("disconnected");
    this._emit("disconnected", { code, reason, willReconnect: true, delay });
    const gen = this._gen;
    this._reconnectTimer = this._later(() => {
      if (gen === this._gen) this._open();
    }, delay);
  }

  _reconnectNow() {
    this._cancel(this._reconnectTimer);
    this._reconnectTimer = null;
    this._open();
  }

  _fail(code, reason, error) {
    this._gen++;
    this._teardown(new LatchkeyError("disconnected", "connection failed: " + reason));
    if (typeof globalThis.removeEventListener === "function")
      globalThis.removeEventListener("online", this._onOnline);
    for (const ch of this._channels.values()) ch._failWaiters(error);
    this._settleConnect(error);
    this._setState("failed");
    this._emit("failed", { code, reason, error });
  }
}

/** True if `s` encodes to more than `limit` UTF-8 bytes. */
function exceedsBytes(s, limit) {
  /* A UTF-16 unit takes 1 to 3 bytes: only encode when it matters. */
  if (s.length > limit) return true;
  if (s.length * 3 <= limit) return false;
  return new TextEncoder().encode(s).length > limit;
}

function reportListenerError(e) {
  /* A throwing listener must not break the client's own bookkeeping. */
  setTimeout(() => {
    throw e;
  }, 0);
}

export default Latchkey;
