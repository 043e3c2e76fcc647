// The supervisors' board: every queue and every agent, live from /ws/supervisor (read only).
"use strict";

const STATES = {
  logged_out: "non in servizio", available: "disponibile", ringing: "squilla",
  on_call: "in chiamata", wrap_up: "post-chiamata", paused: "in pausa",
};
const KEY = "centralino.supervisor";  // sessionStorage: the token, gone when the tab closes
const BACKOFF = [500, 1000, 2000, 4000, 8000, 15000];

const $ = (id) => document.getElementById(id);
const clock = new Intl.DateTimeFormat("it-IT", { hour: "2-digit", minute: "2-digit",
                                                 timeZone: "Europe/Rome" });
let token = null;
let socket = null;
let attempt = 0;
let retryTimer = null;
let agents = new Map();  // id -> agent
let queues = new Map();  // topic -> Map(call_id -> {caller, recall, arrived: local ms})
let recalls = [];        // open recall requests (waiting or being called), from /api/recalls
let recallsTimer = null;
const RECALLS_EVERY = 30000;  // ms: requests scheduled later change without any live event
const dayTime = new Intl.DateTimeFormat("it-IT", { weekday: "short", hour: "2-digit",
                                                   minute: "2-digit", timeZone: "Europe/Rome" });

function cell(tr, text) {
  const td = document.createElement("td");
  td.textContent = text;
  tr.append(td);
  return td;
}

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
}

function reasonText(reason) {
  const missed = /^(\d+) calls not answered$/.exec(reason || "");
  return missed ? `${missed[1]} chiamate senza risposta` : reason || "";
}

function setLink(kind, text) {
  $("link").dataset.link = kind;
  $("link").textContent = text;
}

async function signIn(given) {
  $("signin-error").textContent = "";
  let response = null;
  try {
    response = await fetch("/api/agents", { cache: "no-store",
                                            headers: { "Authorization": `Bearer ${given}` } });
  } catch (_) { /* unreachable: said below */ }
  if (!response || !response.ok) {
    if (response) sessionStorage.removeItem(KEY);  // kept across a service restart
    $("signin-error").textContent = !response ? "Il servizio non risponde: riprova tra poco."
      : "Chiave non valida o non abilitata alla supervisione.";
    return;
  }
  token = given;
  sessionStorage.setItem(KEY, token);
  $("token").value = "";
  $("signin").hidden = true;
  $("board").hidden = false;
  $("signout").hidden = false;
  $("link").hidden = false;
  connect();
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  token = null;
  clearTimeout(retryTimer);
  clearTimeout(recallsTimer);
  drop();
  $("board").hidden = true;
  $("signout").hidden = true;
  $("link").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
}

function drop() {  // the current socket, without reconnecting
  if (socket) {
    socket.onclose = socket.onmessage = null;
    socket.close();
    socket = null;
  }
}

function connect() {
  drop();
  clearTimeout(retryTimer);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = socket = new WebSocket(`${scheme}://${location.host}/ws/supervisor`);
  setLink("connecting", "connessione…");
  ws.onopen = () => ws.send(JSON.stringify({ token }));
  ws.onmessage = (message) => {
    let data;
    try { data = JSON.parse(message.data); } catch (_) { return; }
    received(data);
  };
  ws.onclose = (event) => {
    if (ws !== socket) return;
    socket = null;
    if (event.code === 4001 || event.code === 4003) {
      signOut("La chiave non è più valida: accedi di nuovo.");
      return;
    }
    const wait = BACKOFF[Math.min(attempt, BACKOFF.length - 1)] * (1 + Math.random() * 0.2);
    attempt += 1;
    setLink("off", `disconnesso: nuovo tentativo tra ${Math.ceil(wait / 1000)} s`);
    retryTimer = setTimeout(connect, wait);
  };
}

function received(data) {
  const now = Date.now();
  if (data.type === "snapshot") {
    attempt = 0;
    setLink("on", "connesso");
    agents = new Map(data.agents.map((a) => [a.id, a]));
    loadRecalls();
    queues = new Map(Object.entries(data.queues).map(([topic, waiting]) => [topic, new Map(
      waiting.map((w) => [w.call_id, { caller: w.caller, recall: w.recall,
                                       arrived: now - w.waited * 1000 }]))]));
  } else if (data.type === "agent" && agents.has(data.agent)) {
    Object.assign(agents.get(data.agent), { state: data.state, reason: data.reason,
                                            since: data.at });
  } else if (data.type === "queue") {
    if (data.recall) loadRecalls();  // one joined, got an agent or left
    if (!queues.has(data.topic)) queues.set(data.topic, new Map());
    const line = queues.get(data.topic);
    // A caller back after a restart, or a recall, has been waiting since before it joined.
    if (data.event === "joined") line.set(data.call_id, { caller: data.caller, recall: data.recall,
                                                          arrived: now - (data.waited || 0) * 1000 });
    else line.delete(data.call_id);  // left or connected to an agent
  }
  render();
}

function render() {
  renderQueues();
  renderAgents();
  renderRecalls();
}

async function loadRecalls() {
  clearTimeout(recallsTimer);
  if (!token) return;
  recallsTimer = setTimeout(loadRecalls, RECALLS_EVERY);
  const found = [];
  for (const status of ["calling", "waiting"]) {
    try {
      const response = await fetch(`/api/recalls?status=${status}&limit=200`, {
        cache: "no-store", headers: { "Authorization": `Bearer ${token}` } });
      if (!response.ok) return;
      found.push(...await response.json());
    } catch (_) {
      return;  // the socket's reconnection says the service is away
    }
  }
  recalls = found.sort((a, b) => a.due_at.localeCompare(b.due_at));
  renderRecalls();
}

function renderRecalls() {
  // In a line now, or due later (the browser's clock need not match the server's).
  const inLine = new Set([...queues.values()].flatMap((line) => [...line.keys()]));
  $("recalls").tBodies[0].replaceChildren(...recalls.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.recall = r.id;
    const due = new Date(r.due_at);
    cell(tr, dayTime.format(due));
    cell(tr, r.topic);
    cell(tr, r.name ? `${r.name} · ${r.number}` : r.number);
    cell(tr, String(r.attempts));
    cell(tr, r.status === "calling" ? "in chiamata" : inLine.has(r.id) ? "in coda"
      : "programmata");
    return tr;
  }));
  $("recalls").hidden = recalls.length === 0;
  $("no-recalls").hidden = recalls.length > 0;
}

function renderQueues() {
  const now = Date.now();
  $("queues").tBodies[0].replaceChildren(...[...queues].map(([topic, line]) => {
    const tr = document.createElement("tr");
    tr.dataset.topic = topic;
    const waits = [...line.values()].map((w) => (now - w.arrived) / 1000);
    cell(tr, topic);
    cell(tr, String(line.size));
    cell(tr, waits.length ? duration(Math.max(...waits)) : "—");
    cell(tr, [...line.values()].map((w) => (w.recall ? "da richiamare " : "") +
                                           (w.caller || "numero nascosto")).join(", ") || "—");
    return tr;
  }));
}

function renderAgents() {
  $("agents").tBodies[0].replaceChildren(...[...agents.values()].map((a) => {
    const tr = document.createElement("tr");
    tr.dataset.agent = a.id;
    cell(tr, `${a.name} (${a.id})`);
    const state = cell(tr, STATES[a.state] || a.state);
    state.className = "state";
    state.dataset.state = a.state;
    cell(tr, a.since ? clock.format(new Date(a.since)) : "—");
    cell(tr, a.state === "paused" ? reasonText(a.reason) : "");
    cell(tr, Object.keys(a.topics || {}).join(", "));
    return tr;
  }));
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const given = $("token").value;
    if (given) signIn(given);
    else $("signin-error").textContent = "Scrivi la chiave personale.";
  });
  $("signout").addEventListener("click", () => signOut(""));
  setInterval(() => { if (socket) renderQueues(); }, 1000);  // the waits keep growing
  const saved = sessionStorage.getItem(KEY);
  if (saved) signIn(saved);
});
