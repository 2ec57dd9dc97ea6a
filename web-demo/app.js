/* app.js - the demo page: log in with a name, chat on chat:lobby, read the
 * news channel, and show the connection and token lifecycle as it happens. */
import { Latchkey } from "./latchkey.js";

const $ = (id) => document.getElementById(id);
const NAME_RE = /^[A-Za-z0-9_-]{1,32}$/;

let config = null;
let rt = null;
let renewals = 0;
let everConnected = false;

async function loadConfig() {
  const res = await fetch("/api/config", { cache: "no-store" });
  if (!res.ok) throw new Error("cannot load /api/config (HTTP " + res.status + ")");
  return res.json();
}

function setState(state) {
  document.body.dataset.state = state;
  const pill = $("state");
  pill.textContent = state;
  pill.className = "pill " + state;
}

function note(text) {
  $("note").textContent = text || "";
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** Message text for display; never interpreted as HTML. */
function textOf(data) {
  if (data && typeof data === "object" && typeof data.text === "string") return data.text;
  return typeof data === "string" ? data : JSON.stringify(data);
}

function appendItem(list, item) {
  const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(item);
  while (list.children.length > 200) list.firstElementChild.remove();
  if (nearBottom) list.scrollTop = list.scrollHeight;
}

function addChat(data, meta) {
  const li = document.createElement("li");
  li.className = "msg" + (meta.from !== null && meta.from === rt.clientId ? " mine" : "");
  li.dataset.from = meta.from === null ? "" : meta.from;
  li.dataset.seq = String(meta.seq);
  const from = document.createElement("span");
  from.className = "from";
  from.textContent = meta.from === null ? "server" : meta.from;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = textOf(data);
  const time = document.createElement("time");
  time.textContent = clock(meta.ts);
  li.append(from, text, time);
  appendItem($("chat-log"), li);
}

function addNews(data, meta) {
  const empty = $("news-empty");
  if (empty) empty.remove();
  const li = document.createElement("li");
  li.className = "news-item";
  li.dataset.seq = String(meta.seq);
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = textOf(data);
  const time = document.createElement("time");
  time.textContent = clock(meta.ts);
  li.append(text, time);
  appendItem($("news-log"), li);
}

function tick() {
  if (!rt || rt.expiresAt === null) {
    $("expires").textContent = "-";
    $("expires-bar").style.width = "0";
    return;
  }
  const left = Math.max(0, rt.expiresIn());
  $("expires").textContent = left.toFixed(0) + " s";
  const ttl = (config && config.token_ttl) || 600;
  $("expires-bar").style.width = Math.min(100, (100 * left) / ttl).toFixed(1) + "%";
  $("expires-bar").classList.toggle("low", left < Math.min(30, ttl / 4));
}

function flashRenewed() {
  const el = $("renewed-flash");
  el.classList.remove("show");
  void el.offsetWidth; /* restart the CSS animation */
  el.classList.add("show");
}

function showLogin(error) {
  $("app").hidden = true;
  $("who").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = error || "";
  $("join").disabled = false;
  setState(rt ? rt.state : "initial");
}

function start(name) {
  renewals = 0;
  everConnected = false;
  $("renewals").textContent = "0";
  $("chat-log").replaceChildren();
  $("me").textContent = name;
  rt = new Latchkey({ url: config.broker_url, authUrl: "/api/token", authBody: { name } });

  rt.on("statechange", ({ state }) => setState(state));
  rt.on("connecting", ({ attempt }) => note(attempt ? "Reconnecting..." : "Connecting..."));
  rt.on("connected", ({ connId }) => {
    everConnected = true;
    $("conn-id").textContent = connId || "-";
    $("login").hidden = true;
    $("app").hidden = false;
    $("who").hidden = false;
    note("");
    tick();
  });
  rt.on("disconnected", ({ code, reason, willReconnect, delay }) => {
    $("conn-id").textContent = "-";
    if (willReconnect)
      note(`Connection lost (${code}${reason ? ": " + reason : ""}); retrying in ${(delay / 1000).toFixed(1)} s.`);
  });
  rt.on("failed", ({ code, reason, error }) => {
    const why = (error && error.message) || reason || "closed " + code;
    if (!everConnected) showLogin(why);
    else note("Stopped: " + why);
  });
  rt.on("renewed", () => {
    renewals++;
    $("renewals").textContent = String(renewals);
    flashRenewed();
    tick();
  });
  rt.on("error", (err) => note(`${err.code}: ${err.message}`));

  rt.channel("chat:lobby").subscribe(addChat).catch((err) => {
    $("chat-error").textContent = `Cannot subscribe: ${err.code}`;
  });
  /* since 0: also show the news items published before this page opened. */
  rt.channel("news").subscribe(addNews, { since: 0 }).catch((err) => {
    $("news-error").textContent = `Cannot subscribe: ${err.code}`;
  });
  rt.connect().catch(() => {
    /* Reported through the "failed" event. */
  });
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = $("name").value.trim();
  if (!NAME_RE.test(name)) {
    $("login-error").textContent = "Use 1-32 letters, digits, _ or -.";
    return;
  }
  $("login-error").textContent = "";
  $("join").disabled = true;
  sessionStorage.setItem("latchkey-demo-name", name);
  start(name);
});

$("leave").addEventListener("click", () => {
  sessionStorage.removeItem("latchkey-demo-name");
  if (rt) rt.close();
  rt = null;
  showLogin("");
});

$("chat-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text || !rt) return;
  $("chat-error").textContent = "";
  rt.channel("chat:lobby").publish({ text }).then(
    () => {
      if (input.value.trim() === text) input.value = "";
    },
    (err) => {
      $("chat-error").textContent = `Not sent: ${err.code} (${err.message})`;
    });
});

$("news-try").addEventListener("click", () => {
  if (!rt) return;
  $("news-error").textContent = "";
  rt.channel("news").publish({ text: "breaking news from " + rt.clientId }).then(
    () => {
      $("news-error").textContent = "Unexpected: the broker accepted the post.";
    },
    (err) => {
      $("news-error").textContent = `Refused by the broker: ${err.code} (${err.message})`;
    });
});

setInterval(tick, 250);

loadConfig().then(
  (cfg) => {
    config = cfg;
    const saved = sessionStorage.getItem("latchkey-demo-name");
    if (saved && NAME_RE.test(saved)) {
      $("name").value = saved;
      $("join").disabled = true;
      start(saved);
    }
  },
  (err) => {
    $("login-error").textContent = err.message;
    $("join").disabled = true;
  });
