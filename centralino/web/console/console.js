// The agent's console: sign in with a personal token, see and change one's state, get the
// screen pop of each offered call. Plain JS, no build step, nothing loaded from elsewhere.
"use strict";

const STATES = {
  logged_out: "non in servizio",
  available: "disponibile",
  ringing: "squilla",
  on_call: "in chiamata",
  wrap_up: "post-chiamata",
  paused: "in pausa",
};
const BUSY = ["ringing", "on_call", "wrap_up"];
const PHASES = { ringing: "Squilla: rispondi al telefono", on_call: "In conversazione",
                 wrap_up: "Chiamata terminata" };
const OUTCOMES = {
  answered: "risposta", abandoned: "abbandonata in coda", caller_hangup: "riagganciata nel menu",
  no_agents: "nessun operatore", queue_full: "coda piena", unknown_number: "numero sconosciuto",
  callback: "chiesto di essere richiamato", left_queue: "uscito dalla coda",
};
const RECALL_OUTCOMES = {
  answered: "il cittadino ha risposto", no_answer: "nessuna risposta", busy: "occupato",
  failed: "chiamata non riuscita", agent_missed: "l'operatore non ha risposto",
  agent_left: "l'operatore ha chiuso prima", wrong_number: "numero errato",
};
const KEY = "centralino.console";  // sessionStorage: {agent, token}, gone when the tab closes
const BACKOFF = [500, 1000, 2000, 4000, 8000, 15000];  // ms between reconnection attempts

const $ = (id) => document.getElementById(id);
let session = null;   // {agent, token}
let agent = null;     // the agent as the server last described them
let wrapUp = {};      // topic -> seconds of wrap-up
let pop = null;       // the screen pop on show
let socket = null;
let attempt = 0;
let retryTimer = null;
let countdown = null;
let verdict = null;   // the recall whose outcome is on show: {call_id, number, name}

// --- time and text ------------------------------------------------------------------------

const clock = new Intl.DateTimeFormat("it-IT", { hour: "2-digit", minute: "2-digit",
                                                 timeZone: "Europe/Rome" });
const dateTime = new Intl.DateTimeFormat("it-IT", { dateStyle: "short", timeStyle: "short",
                                                    timeZone: "Europe/Rome" });

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
}

function reasonText(reason) {
  const missed = /^(\d+) calls not answered$/.exec(reason || "");
  return missed ? `${missed[1]} chiamate senza risposta` : reason;
}

function say(id, text) { $(id).textContent = text || ""; }

// --- the server -------------------------------------------------------------------------

async function api(method, path, body, token = session && session.token) {
  let response;
  try {
    response = await fetch(path, {
      method, cache: "no-store",
      headers: { "Authorization": `Bearer ${token}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (_) {
    return { ok: false, status: 0, data: { error: "servizio non raggiungibile" } };
  }
  let data = null;
  try { data = await response.json(); } catch (_) { /* not JSON: keep null */ }
  return { ok: response.ok, status: response.status, data };
}

const agentPath = (action = "") =>
  `/api/agents/${encodeURIComponent(session.agent)}${action ? "/" + action : ""}`;

// --- signing in and out -----------------------------------------------------------------

async function signIn(agentId, token) {
  say("signin-error", "");
  session = { agent: agentId, token };
  const answer = await api("GET", agentPath());
  if (!answer.ok) {
    session = null;
    const refused = [401, 403, 404].includes(answer.status);
    if (refused) sessionStorage.removeItem(KEY);  // else kept across a service restart
    say("signin-error", refused
      ? "Codice operatore o chiave personale non validi."
      : "Il servizio non risponde: riprova tra poco.");
    return;
  }
  sessionStorage.setItem(KEY, JSON.stringify(session));
  $("token").value = "";
  $("signin").hidden = true;
  $("desk").hidden = false;
  $("signout").hidden = false;
  $("who").hidden = false;
  $("link").hidden = false;
  say("who", `${answer.data.name} (${answer.data.id})`);
  showAgent(answer.data);
  connect();
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  session = null;
  agent = null;
  clearTimeout(retryTimer);
  drop();
  clearPop();
  $("desk").hidden = true;
  $("signout").hidden = true;
  $("who").hidden = true;
  $("signin").hidden = false;
  $("link").hidden = true;
  say("signin-error", message);
  $("agent-id").focus();
}

// --- the live connection ----------------------------------------------------------------

function setLink(kind, text) {
  $("link").dataset.link = kind;
  say("link", text);
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
  const ws = socket = new WebSocket(
    `${scheme}://${location.host}/ws/agents/${encodeURIComponent(session.agent)}`);
  setLink("connecting", "connessione…");
  ws.onopen = () => ws.send(JSON.stringify({ token: session.token, states: true }));  // not in the URL
  ws.onmessage = (message) => {
    let data;
    try { data = JSON.parse(message.data); } catch (_) { return; }
    received(data);
  };
  ws.onclose = (event) => {
    if (ws !== socket) return;
    socket = null;
    if (event.code === 4001 || event.code === 4003) {  // the token no longer opens this console
      signOut("La chiave non è più valida: accedi di nuovo.");
      return;
    }
    const wait = BACKOFF[Math.min(attempt, BACKOFF.length - 1)];
    const jitter = Math.random() * wait * 0.2;  // consoles must not all come back in one instant
    attempt += 1;
    setLink("off", `disconnesso: nuovo tentativo tra ${Math.ceil((wait + jitter) / 1000)} s`);
    retryTimer = setTimeout(connect, wait + jitter);
  };
}

function received(data) {
  if (data.type === "hello") {
    attempt = 0;
    wrapUp = data.wrap_up || {};
    setLink("on", "connesso");
    showAgent(data.agent);
    if (data.offer && data.offer.type === "recall_outcome") showVerdict(data.offer);
    else if (data.offer) showPop(data.offer);  // reconnected during a call: the pop again
    else if (!BUSY.includes(data.agent.state)) clearPop();
  } else if (data.type === "agent") {
    // A change from the server: the agent's own request, or the system's (a call, a missed
    // call, the end of wrap-up, a supervisor).
    const after = BUSY.includes(data.state) ? agent.after_call : null;
    showAgent({ ...agent, state: data.state, reason: data.reason, since: data.at,
                after_call: after });
  } else if (data.type === "offer" || data.type === "recall") {
    showPop(data);
  } else if (data.type === "recall_outcome") {
    showVerdict(data);
  }
}

// --- state ------------------------------------------------------------------------------

function showAgent(next) {
  const before = agent && agent.state;
  agent = next;
  const state = agent.state;
  const badge = $("state");
  badge.dataset.state = state;
  badge.textContent = STATES[state] || state;
  let detail = agent.since ? `dalle ${clock.format(new Date(agent.since))}` : "";
  if (state === "paused" && agent.reason) detail = `${reasonText(agent.reason)} · ${detail}`;
  say("state-detail", detail);

  const after = $("after-call");
  after.hidden = !agent.after_call;
  after.textContent = agent.after_call === "paused"
    ? "Pausa richiesta: inizierà al termine di questa chiamata."
    : agent.after_call === "logged_out" ? "Uscita richiesta: al termine di questa chiamata." : "";

  const busy = BUSY.includes(state);
  $("login").disabled = state !== "logged_out";
  $("logout").disabled = state === "logged_out" || agent.after_call === "logged_out";
  $("resume").disabled = !(state === "paused" || agent.after_call === "paused");
  $("resume").textContent = busy ? "Annulla pausa" : "Riprendi";
  $("pause").disabled = state === "logged_out";
  $("pause").textContent = busy ? "Pausa dopo questa chiamata" : "Pausa";

  if (state !== before) stateChanged(state);
}

function stateChanged(state) {
  clearInterval(countdown);
  countdown = null;
  if (BUSY.includes(state)) {
    if (pop) showPhase();
    if (state === "wrap_up") startCountdown();
  } else if (pop) {
    clearPop();  // the call is over (or was never answered): the pop goes
  }
}

function startCountdown() {
  // Counted from when the change arrived: the browser's clock need not match the server's.
  const seconds = wrapUp[pop && pop.topic];
  if (!seconds) return;
  const end = Date.now() + seconds * 1000;
  const tick = () => say("state-detail", `ancora ${Math.max(0, Math.ceil((end - Date.now()) / 1000))} s`);
  tick();
  countdown = setInterval(tick, 250);
}

async function change(action, body) {
  say("message", "");
  const answer = await api("POST", agentPath(action), body || {});
  if (answer.ok) {
    showAgent(answer.data);
    return true;
  }
  const why = answer.data && answer.data.error ? ` (${answer.data.error})` : "";
  say("message", answer.status === 409 ? `Non è possibile ora${why}.` : `Operazione non riuscita${why}.`);
  return false;
}

async function pause(event) {
  event.preventDefault();
  const chosen = $("pause-reason").value;
  const other = $("pause-other").value.trim();
  const reason = chosen && chosen !== "other" ? (other ? `${chosen}: ${other}` : chosen) : other;
  if (reason.length < 2) {
    say("message", "Indica il motivo della pausa.");
    $(chosen === "other" ? "pause-other" : "pause-reason").focus();
    return;
  }
  if (await change("pause", { reason })) {
    $("pause-reason").value = "";
    $("pause-other").value = "";
  }
}

// --- the screen pop ---------------------------------------------------------------------

function showPop(data) {
  if (data.type === "recall") {
    showRecall(data);
    return;
  }
  pop = data;
  $("recall-facts").hidden = true;
  $("call-details").hidden = false;
  say("pop-caller", data.caller_number || "numero nascosto");
  if (data.caller_name && data.caller_name !== data.caller_number) {
    $("pop-caller").textContent += ` · ${data.caller_name}`;
  }
  say("pop-number", data.number);
  say("pop-line", data.line);
  say("pop-topic", data.topic_name || data.topic);
  say("pop-waited", duration(data.waited_seconds));

  const path = $("pop-path");
  path.replaceChildren(...(data.path || []).map((step) => {
    const li = document.createElement("li");
    li.textContent = `tasto ${step.key}: ${step.label || "?"}`;
    return li;
  }));
  if (!path.children.length) {
    const li = document.createElement("li");
    li.textContent = "nessun menu (linea diretta)";
    path.append(li);
  }

  const rows = (data.previous_contacts || []).map((c) => {
    const tr = document.createElement("tr");
    for (const text of [dateTime.format(new Date(c.at)), c.line, c.topic || "—",
                        OUTCOMES[c.outcome] || c.outcome || "in corso", c.agent || "—"]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    return tr;
  });
  $("previous").querySelector("tbody").replaceChildren(...rows);
  $("previous").hidden = rows.length === 0;
  $("no-previous").hidden = rows.length > 0;

  showPhase();
  $("no-call").hidden = true;
  $("pop").hidden = false;
  say("announce", `Chiamata in arrivo da ${data.caller_number || "numero nascosto"}, ` +
                  `linea ${data.line}, ${data.topic_name || data.topic}.`);
  acknowledge(data);
}

function requestText(data) {
  if (data.mode === "queue") return "chiesta in coda dal cittadino, al posto dell'attesa";
  const at = dateTime.format(new Date(data.requested_at));
  return data.mode === "back"
    ? `dal portale (${at}) per le ${dateTime.format(new Date(data.due_at))}`
    : `dal portale (${at}): appena possibile`;
}

function showRecall(data) {
  pop = data;
  hideVerdict();
  $("call-details").hidden = true;
  $("recall-facts").hidden = false;
  say("recall-citizen", data.name ? `${data.name} · ${data.number}` : data.number);
  say("recall-mode", requestText(data));
  say("recall-topic", data.topic_name || data.topic);
  say("recall-note", data.note || "—");
  say("recall-ref", data.portal_ref || "—");
  const attempts = $("recall-attempts");
  attempts.replaceChildren(...(data.attempts || []).map((a) => {
    const li = document.createElement("li");
    li.textContent = `${dateTime.format(new Date(a.at))}: ${RECALL_OUTCOMES[a.outcome] || a.outcome}` +
                     (a.agent ? ` (${a.agent})` : "");
    return li;
  }));
  if (!attempts.children.length) {
    const li = document.createElement("li");
    li.textContent = "nessuna: è la prima";
    attempts.append(li);
  }
  showPhase();
  $("no-call").hidden = true;
  $("pop").hidden = false;
  say("announce", `Richiamata da fare a ${data.name || ""} ${data.number}, ` +
                  `${data.topic_name || data.topic}.`);
  acknowledge(data);
}

// --- after a recall: what happened and the agent's verdict -------------------------------------

function showVerdict(data) {
  verdict = data;
  const who = data.name ? `${data.name} (${data.number})` : data.number || "";
  const next = data.next_due_at ? ` Nuovo tentativo alle ${clock.format(new Date(data.next_due_at))}.` : "";
  let text;
  if (data.outcome === "answered") {
    text = `Richiamata a ${who} terminata: com'è andata?`;
  } else if (data.status === "failed") {
    text = `Richiamata a ${who}: ${RECALL_OUTCOMES[data.outcome] || data.outcome}. ` +
           `Richiesta chiusa dopo ${data.attempts} tentativi.`;
  } else {
    text = `Richiamata a ${who}: ${RECALL_OUTCOMES[data.outcome] || data.outcome}.${next}`;
  }
  say("verdict-text", text);
  say("verdict-error", "");
  $("verdict-actions").hidden = data.outcome !== "answered";
  $("verdict").hidden = false;
}

function hideVerdict() {
  verdict = null;
  $("verdict").hidden = true;
}

async function giveVerdict(outcome) {
  if (!verdict) return;
  say("verdict-error", "");
  const path = agentPath(`recalls/${encodeURIComponent(verdict.call_id)}/outcome`);
  const answer = await api("POST", path, { outcome });
  if (!answer.ok) {
    say("verdict-error", `Esito non registrato: ${(answer.data && answer.data.error) || "errore"}.`);
    return;
  }
  $("verdict-actions").hidden = true;
  const result = answer.data;
  say("verdict-text", result.status === "waiting"
    ? `Registrato: il cittadino sarà richiamato alle ${clock.format(new Date(result.due_at))}.`
    : result.status === "failed" ? "Registrato: numero errato, richiesta chiusa."
    : "Registrato: richiesta risolta.");
}

function acknowledge(data) {
  // Acknowledge once the browser is about to paint the pop: the service stores when the agent
  // could see it. A hidden tab paints nothing, so it acknowledges when shown.
  const offer = data.offer_id;
  requestAnimationFrame(() => {
    if (socket && socket.readyState === WebSocket.OPEN && pop && pop.offer_id === offer) {
      socket.send(JSON.stringify({ type: "ack", offer_id: offer }));
    }
  });
}

function showPhase() {
  const state = agent && agent.state;
  say("pop-phase", PHASES[state] || "Chiamata offerta");
  $("pop-phase").dataset.state = state || "";
}

function clearPop() {
  pop = null;
  $("pop").hidden = true;
  $("no-call").hidden = false;
  say("announce", "");
}

// --- wiring -----------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("agent-id").value.trim();
    const token = $("token").value;
    if (!id || !token) {
      say("signin-error", "Scrivi codice operatore e chiave personale.");
      return;
    }
    signIn(id, token);
  });
  $("signout").addEventListener("click", () => signOut(""));
  $("login").addEventListener("click", () => change("login"));
  $("logout").addEventListener("click", () => change("logout"));
  $("resume").addEventListener("click", () => change("resume"));
  $("pause-form").addEventListener("submit", pause);
  for (const button of $("verdict-actions").querySelectorAll("button")) {
    button.addEventListener("click", () => giveVerdict(button.dataset.outcome));
  }
  $("verdict-hide").addEventListener("click", hideVerdict);

  const saved = sessionStorage.getItem(KEY);
  if (saved) {
    try {
      const { agent: id, token } = JSON.parse(saved);
      $("agent-id").value = id;
      signIn(id, token);
    } catch (_) {
      sessionStorage.removeItem(KEY);
    }
  }
});
