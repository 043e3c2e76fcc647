// The agent's console: sign in with a personal token, see and change one's state, get the
// screen pop of each offered call, work the written requests (tickets) and open one for a
// caller. Plain JS, no build step, nothing loaded from elsewhere. Whatever people typed (bodies,
// names, subjects) reaches the page only as text (textContent), never as markup.
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
  if (answer.data.name) names[agentId] = answer.data.name;
  showAgent(answer.data);
  connect();
  startTickets();
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  session = null;
  agent = null;
  clearTimeout(retryTimer);
  drop();
  clearPop();
  stopTickets();
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
  } else if (data.type === "consultation") {
    consultStep(data);
  } else if (data.type === "ticket") {
    // Why it concerns this agent: theirs now, or waiting in their group or topic for them.
    const what = {
      escalated: "È arrivata al tuo gruppo di II livello la richiesta",
      handed_back: "È stata restituita al I livello la richiesta",
      reassigned: "La supervisione ti ha assegnato la richiesta",
    }[data.why] || "Ti è stata assegnata la richiesta";
    announce("inbox-announce", `${what} ${data.number || ""}` +
                               (data.subject ? `: ${data.subject}.` : "."));
    loadInbox();
    if (ticket && ticket.number === data.number) loadTicket(ticket.number);
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
  showHold();  // a call's controls only while talking to a citizen
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

// --- logging out with written requests in charge ------------------------------------------

async function inHand() {
  // The tickets this agent has in charge now (the inbox read again: the desk may have handed
  // one over a moment ago); if it cannot be read, as last seen.
  if (!session || !ticketsOn) return [];
  const seq = ++inboxSeq;
  const answer = await api("GET", TICKETS);
  if (answer.ok && Array.isArray(answer.data) && seq === inboxSeq && session) {
    say("inbox-error", "");
    showInbox(answer.data);
  }
  return (inbox || []).filter((t) => session && t.owner === session.agent &&
                                     t.state === "preso in carico");
}

async function leave() {
  // "Esci": with tickets in charge the agent says first what becomes of them (the service
  // keeps them by default); without, out at once.
  say("message", "");
  $("logout").disabled = true;  // one question at a time
  const tickets = await inHand();
  if (agent) showAgent(agent);  // the button as the state says
  if (!session) return;
  if (!tickets.length) {
    await change("logout");
    return;
  }
  const one = tickets.length === 1;
  say("leave-title", one ? "Hai una richiesta in carico: cosa vuoi farne?"
                         : `Hai ${tickets.length} richieste in carico: cosa vuoi farne?`);
  say("leave-keep", one ? "Tienila (resta tua)" : "Tienile (restano tue)");
  say("leave-release", one ? "Rimettila in coda (la prende un collega)"
                           : "Rimettile in coda (le prendono i colleghi)");
  $("leave-tickets").replaceChildren(...tickets.map((t) => el("li", `${t.number}: ${t.subject}`)));
  $("leave").dataset.numbers = tickets.map((t) => t.number).join(" ");
  $("leave").returnValue = "";  // Esc leaves it as it was
  $("leave").showModal();
  $("leave-keep").focus();
}

async function leaveWith(choice) {
  const numbers = ($("leave").dataset.numbers || "").split(" ").filter(Boolean);
  $("leave").close(choice);
  const done = await change("logout", { tickets: choice });
  if (!session) return;
  await loadInbox();
  if (ticket) await loadTicket(ticket.number);
  if (done) {
    const mine = new Set((inbox || []).filter((t) => t.owner === session.agent)
                                      .map((t) => t.number));
    const moved = numbers.filter((n) => !mine.has(n));
    const kept = numbers.filter((n) => mine.has(n));
    if (choice === "release" && moved.length) {
      announce("inbox-announce", `Rimesse in coda: ${moved.join(", ")}.`);
    } else if (choice === "keep" && kept.length) {
      announce("inbox-announce", `Restano in carico a te: ${kept.join(", ")}.`);
    }
  }
  $(!$("login").disabled ? "login" : !$("logout").disabled ? "logout" : "state-title").focus();
}

// --- the screen pop ---------------------------------------------------------------------

function showPop(data) {
  if (data.type === "recall") {
    showRecall(data);
    return;
  }
  pop = data;
  if (data.topic_name) lineNames[data.topic] = data.topic_name;
  $("recall-facts").hidden = true;
  $("call-details").hidden = false;
  say("transfer-done", "");
  showTransferred(data);
  say("pop-caller", data.caller_number || "numero nascosto");
  if (data.caller_name && data.caller_name !== data.caller_number) {
    $("pop-caller").textContent += ` · ${data.caller_name}`;
  }
  say("pop-number", data.number);
  say("pop-line", data.line);
  say("pop-topic", data.topic_name || data.topic);
  say("pop-waited", duration(data.waited_seconds));
  $("ticket-from-call").hidden = !ticketsOn;

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

  // The caller's written requests (same phone number): each opens in the ticket view.
  const tickets = data.previous_tickets || [];
  $("pop-tickets").replaceChildren(...tickets.map((t) => {
    const li = document.createElement("li");
    const open = el("button", t.number, "link");
    open.type = "button";
    open.addEventListener("click", () => openTicket(t.number));
    li.append(open, ` ${t.subject} · ${t.state} · ` +
                    `del ${dateTime.format(new Date(t.created_at))}`);
    return li;
  }));
  $("pop-tickets").hidden = tickets.length === 0;
  $("no-pop-tickets").hidden = tickets.length > 0;
  $("pop-tickets-block").hidden = !ticketsOn;

  showPhase();
  $("no-call").hidden = true;
  $("pop").hidden = false;
  say("call-error", "");
  showHold();
  const by = data.transferred;
  say("announce", `Chiamata in arrivo da ${data.caller_number || "numero nascosto"}, ` +
                  `linea ${data.line}, ${data.topic_name || data.topic}.` +
                  (by ? ` Trasferita da ${by.agent_name || by.agent}` +
                        (by.group ? ` al II livello, ${groupName(by.group)}.`
                                  : ".") +
                        (by.note ? ` Nota: ${by.note}` : "") : ""));
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
  say("transfer-done", "");
  $("pop-transfer").hidden = true;
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
  say("call-error", "");
  showHold();  // no hold for a recall (the service refuses it): no button
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
  say("call-error", "");
  showHold();
}

// --- hold and resume, for the conversation in progress ----------------------------------------

let held = false;       // the caller on hold, as the service last said
let heldSince = null;   // Date.now() when put on hold from this page (null: not known here)
let heldCall = null;    // the call these facts are about
let holdTimer = null;
let holdBusy = false;   // a request in flight: the button waits for its answer

function holdable() {
  // Talking to a citizen: the service refuses hold for a recall.
  return Boolean(agent && agent.state === "on_call" && pop && pop.type === "offer");
}

function resetHold() {
  held = false;
  heldSince = null;
  heldCall = null;
  say("hold-status", "");
  renderHold();
}

function showHold() {
  if (!holdable()) {
    // The call is over (or not yet talking): no controls, and the next call starts afresh.
    if (held || heldCall) resetHold();
    clearInterval(holdTimer);
    holdTimer = null;
    $("hold").hidden = true;
    closeTransfer(false);
    endConsult();
    return;
  }
  if (heldCall && heldCall !== pop.call_id) resetHold();  // another call (a socket came back)
  if (transferCall && transferCall !== pop.call_id) closeTransfer(false);
  if (consult && consult.call !== pop.call_id) endConsult();
  $("hold").hidden = false;
  renderHold();
}

function renderHold() {
  $("hold").dataset.held = String(held);
  $("hold-toggle").textContent = held ? "Riprendi" : "Metti in attesa";
  // One change of the call at a time; none while a colleague is consulted.
  $("hold-toggle").disabled = holdBusy || transferBusy || Boolean(consult);
  clearInterval(holdTimer);
  holdTimer = null;
  if (held && heldSince !== null) {
    // Counted from the service's answer on this browser's clock (like the wrap-up).
    const tick = () => say("hold-time", `In attesa da ${duration((Date.now() - heldSince) / 1000)}`);
    tick();
    holdTimer = setInterval(tick, 250);
  } else {
    say("hold-time", "");
  }
}

function setHeld(on, since) {
  // The status changes only with the hold, so that screen readers say it once.
  if (on !== held) {
    say("hold-status", on ? "Chiamante in attesa (musica)"
                          : "Di nuovo in conversazione con il chiamante.");
  }
  if (on && (!held || heldSince === null)) heldSince = since;
  if (!on) heldSince = null;
  held = on;
  heldCall = pop.call_id;
}

async function toggleHold() {
  if (holdBusy || !holdable()) return;
  const action = held ? "resume" : "hold";
  const call = pop.call_id;
  const button = $("hold-toggle");
  const focused = document.activeElement === button;
  holdBusy = true;  // disabled until the answer: a double click sends one request
  button.disabled = true;
  say("call-error", "");
  const answer = await api("POST", agentPath(`call/${action}`), {});
  holdBusy = false;
  if (!session || !holdable() || pop.call_id !== call) {  // the call ended meanwhile
    showHold();
    return;
  }
  if (answer.ok) {
    setHeld(answer.data.on_hold, Date.now());
  } else {
    const reason = (answer.data && answer.data.error) || "";
    // The service knows best (the hold may have been asked elsewhere, or before this page
    // was loaded): the controls follow what it says; how long, this page cannot tell.
    if (/on hold already$/.test(reason)) setHeld(true, null);
    else if (/not on hold$/.test(reason)) setHeld(false, null);
    say("call-error", answer.status === 409 ? `Non è possibile ora: ${italian(reason)}.`
                                            : `Operazione non riuscita: ${reasonOf(answer)}.`);
  }
  renderHold();
  if (focused) button.focus();  // a disabled button loses the focus: the keyboard keeps it
}

// --- blind transfer of the conversation in progress ------------------------------------------

const lineNames = {};      // topic id -> its line's name, as pops and transfer-targets say
const groupNames = {};     // second-level group id -> its name, as transfer-targets says
let transferCall = null;   // the call the open form is about (null: the form is closed)
let transferBusy = false;  // the transfer asked, no answer yet: one request per click
let targetsSeq = 0;        // an older reading of the destinations is dropped

function lineName(id) {
  const listed = deskTopics && deskTopics.topics.find((t) => t.id === id);
  return lineNames[id] || (listed && listed.name) || id;
}

function groupName(id) {
  const listed = deskTopics && (deskTopics.groups || []).find((g) => g.id === id);
  return groupNames[id] || (listed && listed.name) || id;
}

function showTransferred(data) {
  // A caller a colleague passed on: who, from which line, and why, first in the pop.
  const by = data.transferred;
  $("pop-transfer").hidden = !by;
  if (!by) return;
  const from = () => `Trasferita da ${by.agent_name || by.agent} (${lineName(by.from_topic)})` +
    (by.group ? ` al II livello: ${groupName(by.group)}` : "");
  say("pop-transfer-from", from());
  say("pop-transfer-note", by.note);
  $("pop-transfer-note-line").hidden = !by.note;
  if (lineNames[by.from_topic] && (!by.group || groupName(by.group) !== by.group)) return;
  // The line's (or group's) name, if this console has not met it: the service lists them.
  const call = data.call_id;
  api("GET", agentPath("transfer-targets")).then((answer) => {
    if (!answer.ok || !answer.data || !pop || pop.call_id !== call) return;
    for (const t of answer.data.topics || []) lineNames[t.id] = t.name;
    for (const g of answer.data.groups || []) groupNames[g.id] = g.name;
    say("pop-transfer-from", from());
  });
}

function renderTransfer() {
  $("transfer-send").disabled = transferBusy;
  $("consult-send").disabled = transferBusy;
  $("transfer-cancel").disabled = transferBusy;
  $("transfer-toggle").disabled = transferBusy || Boolean(consult);
  $("hold-toggle").disabled = holdBusy || transferBusy || Boolean(consult);
  // Talking to a colleague first is for a colleague, not a line or a group.
  const chosen = $("transfer-target").value;
  const person = /^agent:/.test(chosen);
  $("consult-send").hidden = !person;
  $("consult-send-hint").hidden = !person;
  $("transfer-number-block").hidden = chosen !== "number:";
}

function toggleTransfer() {
  if (transferCall) closeTransfer(true);
  else openTransfer();
}

function openTransfer() {
  if (!holdable() || transferBusy) return;
  transferCall = pop.call_id;
  say("transfer-done", "");
  say("call-error", "");
  $("transfer-form").reset();
  $("transfer-target").removeAttribute("aria-invalid");
  renderTransfer();
  $("transfer").hidden = false;
  $("transfer-toggle").setAttribute("aria-expanded", "true");
  $("transfer-target").focus();
  loadTargets();
}

function closeTransfer(refocus) {
  const wasOpen = transferCall !== null;
  transferCall = null;
  targetsSeq += 1;  // a reading under way is for a form no longer there
  $("transfer").hidden = true;
  $("transfer-toggle").setAttribute("aria-expanded", "false");
  if (wasOpen && refocus) {  // the agent gave up: a refusal shown for the form is past
    say("call-error", "");
    if (!$("hold").hidden) $("transfer-toggle").focus();
  }
}

function lineText(t, here) {
  if (here) return `${t.name} (linea di questa chiamata)`;
  const staffed = t.logged_in ? `${t.free} ${t.free === 1 ? "libero" : "liberi"}`
                              : "nessuno in servizio";
  return `${t.name} (${t.waiting} in attesa, ${staffed})`;
}

async function loadTargets() {
  const call = transferCall;
  const seq = ++targetsSeq;
  const select = $("transfer-target");
  const chosen = select.value;
  say("transfer-status", "Caricamento delle destinazioni…");
  const answer = await api("GET", agentPath("transfer-targets"));
  if (seq !== targetsSeq || !session || transferCall !== call) return;
  const targets = answer.ok && answer.data ? answer.data : { topics: [], agents: [] };
  const choose = el("option", "— scegli una linea, un collega o il II livello —");
  choose.value = "";
  const lines = el("optgroup");
  lines.label = "Linee";
  for (const t of targets.topics || []) {
    lineNames[t.id] = t.name;
    const here = pop && t.id === pop.topic;  // the service refuses the caller's own line
    const option = el("option", lineText(t, here));
    option.value = `topic:${t.id}`;
    option.disabled = here;
    lines.append(option);
  }
  const people = el("optgroup");
  people.label = "Colleghi";
  for (const a of targets.agents || []) {
    names[a.id] = a.name;
    const option = el("option", `${a.name} (${STATES[a.state] || a.state})`);
    option.value = `agent:${a.id}`;
    people.append(option);
  }
  const second = el("optgroup");
  second.label = "II livello";
  for (const g of targets.groups || []) {
    groupNames[g.id] = g.name;
    const staffed = g.logged_in ? `${g.free} ${g.free === 1 ? "libero" : "liberi"}`
                                : "nessuno in servizio";
    const option = el("option", `${g.name} (${staffed})`);
    option.value = `group:${g.id}`;
    option.disabled = !g.logged_in;  // the service refuses a group with nobody in
    second.append(option);
  }
  const outside = el("optgroup");
  outside.label = "Fuori dallo sportello";
  const number = el("option", "Un numero esterno…");
  number.value = "number:";
  outside.append(number);
  select.replaceChildren(choose, ...[lines, people, second].filter((g) => g.children.length),
                         outside);
  const still = [...select.options].some((o) => o.value === chosen && !o.disabled);
  select.value = still ? chosen : "";
  renderTransfer();
  if (!answer.ok) {
    say("transfer-status", `Destinazioni non disponibili: ${reasonOf(answer)}.`);
  } else {
    say("transfer-status", people.children.length ? "" : "Nessun collega in servizio ora.");
  }
}

async function sendTransfer(event) {
  event.preventDefault();
  if (transferBusy || !holdable() || transferCall !== pop.call_id) return;
  const select = $("transfer-target");
  select.removeAttribute("aria-invalid");
  say("call-error", "");
  let target = /^(topic|agent|group):(.+)$/.exec(select.value);
  const typed = $("transfer-number");
  typed.removeAttribute("aria-invalid");
  if (select.value === "number:") {
    target = typed.value.trim() ? [null, "number", typed.value.trim()] : null;
    if (!target) {
      typed.setAttribute("aria-invalid", "true");
      say("call-error", "Scrivi il numero da chiamare.");
      typed.focus();
      return;
    }
  }
  if (!target) {
    select.setAttribute("aria-invalid", "true");
    say("call-error", "Scegli una linea, un collega, il II livello o un numero esterno.");
    select.focus();
    return;
  }
  const [, kind, id] = target;
  const button = $("transfer-send");
  const focused = document.activeElement === button;
  transferBusy = true;  // disabled until the answer: a double click sends one request
  renderTransfer();
  say("transfer-status", "Trasferimento in corso…");
  const answer = await api("POST", agentPath("call/transfer"),
                           { [kind]: id, note: $("transfer-note").value.trim() });
  transferBusy = false;
  renderTransfer();
  if (!session) return;
  say("transfer-status", "");
  if (answer.ok) {
    // The agent's phone is hung up: the wrap-up comes over the socket, the pop stays for it.
    const { agent, group, number } = answer.data;
    const to = agent ? `a ${names[agent] || agent}`
      : group ? `al II livello (${groupName(group)})`
      : number ? `al numero ${number}`
      : `a ${lineName(answer.data.transferred_to)}`;
    closeTransfer(false);
    say("transfer-done", `Chiamata trasferita ${to}.`);
    $("transfer-done").focus();
    return;
  }
  const reason = (answer.data && answer.data.error) || "";
  say("call-error", answer.status === 409 ? `Non è possibile ora: ${italian(reason)}.`
                                          : `Trasferimento non riuscito: ${reasonOf(answer)}.`);
  if (!holdable() || transferCall !== pop.call_id) return;  // the call ended meanwhile
  loadTargets();  // the destinations as they are now (a colleague may have left)
  if (focused) button.focus();  // a disabled button loses the focus: the keyboard keeps it
}

// --- attended transfer: the agent talks to a colleague first --------------------------------

let consult = null;       // {call, agent, name, phase} while a consultation goes on
let consultBusy = false;  // a step asked, no answer yet
const CONSULT_PHASES = {
  asked: (n) => `Chiamata a ${n} in corso. Il chiamante è in attesa con la musica.`,
  ringing: (n) => `Squilla il telefono di ${n}. Il chiamante è in attesa con la musica.`,
  talking: (n) => `Parli con ${n}. Il chiamante è in attesa con la musica.`,
  with_caller: (n) => `Parli con il chiamante. ${n} è in attesa con la musica.`,
};
const CONSULT_OVER = {
  completed: (n) => `Chiamata trasferita a ${n} dopo la consultazione.`,
  cancelled: (n) => `Consultazione con ${n} annullata: sei di nuovo con il chiamante.`,
  no_answer: (n) => `${n} non ha risposto: sei di nuovo con il chiamante.`,
  refused: (n) => `${n} ha rifiutato la chiamata: sei di nuovo con il chiamante.`,
  hung_up: (n) => `${n} ha riagganciato: sei di nuovo con il chiamante.`,
  unreachable: (n) => `Il telefono di ${n} non è raggiungibile: sei di nuovo con il chiamante.`,
  not_free: (n) => `${n} non è più libero: sei di nuovo con il chiamante.`,
};

function renderConsult() {
  $("consult").hidden = !consult;
  renderTransfer();
  renderHold();
  if (!consult) return;
  const talking = consult.phase === "talking" || consult.phase === "with_caller";
  say("consult-status", CONSULT_PHASES[consult.phase](consult.name));
  $("consult-complete").disabled = consultBusy || !talking;
  $("consult-swap").disabled = consultBusy || !talking;
  $("consult-swap").textContent = consult.phase === "with_caller" ? "Torna al collega"
                                                                  : "Passa al chiamante";
  $("consult-cancel").disabled = consultBusy;
}

function endConsult() {
  if (!consult) return;
  consult = null;
  consultBusy = false;
  renderConsult();
}

async function startConsult() {
  if (transferBusy || !holdable() || transferCall !== pop.call_id) return;
  const target = /^agent:(.+)$/.exec($("transfer-target").value);
  if (!target) return;
  const colleague = target[1];
  const call = pop.call_id;
  transferBusy = true;
  renderTransfer();
  say("call-error", "");
  const answer = await api("POST", agentPath("call/consult"), { agent: colleague });
  transferBusy = false;
  renderTransfer();
  if (!session || !holdable() || pop.call_id !== call) return;
  if (answer.ok) {
    closeTransfer(false);
    // The caller goes on hold as the service rings the colleague: the steps come over the
    // socket (consultStep), unless they already did.
    if (!consult) consult = { call, agent: colleague, name: names[colleague] || colleague,
                              phase: "asked" };
    setHeld(true, Date.now());
    renderConsult();
    $("consult-title").focus();
    return;
  }
  const reason = (answer.data && answer.data.error) || "";
  say("call-error", answer.status === 409 ? `Non è possibile ora: ${italian(reason)}.`
                                          : `Consultazione non riuscita: ${reasonOf(answer)}.`);
  loadTargets();
}

function consultStep(data) {
  if (!pop || pop.call_id !== data.call_id) return;
  const name = names[data.agent] || data.agent_name || data.agent;
  if (data.phase !== "over") {
    consult = { call: data.call_id, agent: data.agent, name, phase: data.phase };
    if (data.phase !== "with_caller") setHeld(true, Date.now());
    else setHeld(false);
    renderConsult();
    return;
  }
  const inside = document.activeElement && $("consult").contains(document.activeElement);
  endConsult();
  if (data.outcome !== "completed") setHeld(false);
  renderHold();
  say("transfer-done", (CONSULT_OVER[data.outcome] || CONSULT_OVER.cancelled)(name));
  if (inside) $("transfer-done").focus();
}

async function consultAction(action) {
  if (!consult || consultBusy) return;
  const button = $(`consult-${action}`);
  const focused = document.activeElement === button;
  consultBusy = true;
  renderConsult();
  say("call-error", "");
  const answer = await api("POST", agentPath(`call/consult/${action}`), {});
  consultBusy = false;
  if (!answer.ok) {
    const reason = (answer.data && answer.data.error) || "";
    say("call-error", answer.status === 409 ? `Non è possibile ora: ${italian(reason)}.`
                                            : `Operazione non riuscita: ${reasonOf(answer)}.`);
  }
  renderConsult();
  if (focused && consult && !button.disabled) button.focus();
}

// --- written requests (tickets) -------------------------------------------------------------

const TICKETS = "/api/tickets";
const INBOX_EVERY = 30000;  // ms: the inbox (and the ticket on show) read again
const FIRST_LEVEL = "I";
const WORKING = ["preso in carico", "in attesa del cittadino"];  // the owner works on it
const OPEN_STATES = ["nuovo", ...WORKING, "escalato"];
const CHANNELS = { web: "modulo web", phone: "telefono", email: "e-mail" };
// An SLA clock's standing: the words say it, the sign and the colour only help the eye.
const STANDINGS = {
  ok: ["", "nei tempi"], warning: ["⚠", "in scadenza"], breached: ["✖", "scaduta"],
  paused: ["⏸", "sospesa: si attende il cittadino"], met: ["✓", "rispettata"],
  missed: ["✖", "non rispettata"],
};
const DONE = {
  take: "Richiesta presa in carico.", reply: "Risposta inviata al cittadino.",
  note: "Nota interna aggiunta.", wait: "Richiesta in attesa del cittadino.",
  escalate: "Richiesta passata al II livello.", hand_back: "Richiesta restituita al I livello.",
  resolve: "Richiesta risolta.", release: "Richiesta rimessa in coda.",
};
const ACTED = ["reply", "note", "wait", "escalate", "hand_back", "release", "resolve"];  // forms
const HISTORY = {
  opened: "aperta", taken: "presa in carico", replied: "risposta al cittadino",
  "internal note": "nota interna", "waiting for the citizen": "in attesa del cittadino",
  resolved: "risolta", closed: "chiusa", "citizen replied": "il cittadino ha risposto",
  reopened: "riaperta dal cittadino", "citizen wrote": "il cittadino ha scritto",
  released: "rimessa in coda",
};
// The new request's fields as the service names them in its problems, and their inputs.
const FIELDS = {
  topic: ["Argomento", "nt-topic"], subject: ["Oggetto", "nt-subject"],
  body: ["Testo della richiesta", "nt-body"], name: ["Nome e cognome", "nt-name"],
  email: ["E-mail", "nt-email"], phone: ["Telefono", "nt-phone"],
  tax_code: ["Codice fiscale", "nt-tax-code"],
};
// The service gives its reasons in English (for logs and integrators): the usual ones are said
// in Italian here, any other is shown as it is.
const REASONS = [
  [/^cannot take a ticket that is (.+?)(?: by (.+))?$/,
   (m) => `la richiesta è già «${m[1]}»${m[2] ? `, dell'operatore ${m[2]}` : ""}`],
  [/^escalated to (.+): only its members take it$/,
   (m) => `è al II livello (${m[1]}): la prendono in carico solo i suoi membri`],
  [/^cannot .+ this ticket: nobody has taken it$/, () => "nessuno l'ha ancora presa in carico"],
  [/^cannot .+ this ticket: (.+) has it$/, (m) => `è in carico all'operatore ${m[1]}`],
  [/^the ticket is at the first level already$/, () => "la richiesta è già al I livello"],
  [/^the ticket is (.+?)(?: by (.+))?$/,
   (m) => `la richiesta è «${m[1]}»${m[2] ? `, dell'operatore ${m[2]}` : ""}`],
  [/^the ticket changed meanwhile/,
   () => "la richiesta è cambiata nel frattempo: guardala di nuovo"],
  [/^no second-level group ['"](.*)['"]$/, (m) => `non c'è un gruppo di II livello «${m[1]}»`],
  [/^already at (.+)$/, (m) => `è già al gruppo ${m[1]}`],
  [/^say why it goes to the second level/, () => "scrivi perché passa al II livello"],
  [/^say what the first level should do/, () => "scrivi cosa deve fare il I livello"],
  [/^(.+) is not one of your topics$/, (m) => `${m[1]} non è tra i tuoi argomenti`],
  [/^only a member of (.+) hands it back$/, (m) => `solo chi è nel gruppo ${m[1]} la restituisce`],
  [/^write the answer$/, () => "scrivi la risposta"],
  [/^write the note$/, () => "scrivi la nota"],
  [/^no ticket waits for you$/, () => "nessuna richiesta in attesa per te"],
  [/^no ticket /, () => "la richiesta non c'è o non è visibile per te"],
  [/^choose one of: (.+)$/, (m) => `scegli tra: ${m[1]}`],
  [/^say what the request is about$/, () => "scrivi di cosa si tratta"],
  [/^give a name$/, () => "scrivi nome e cognome"],
  [/^not an e-mail address/, () => "non è un indirizzo e-mail valido"],
  [/^give an e-mail address or a phone number/,
   () => "serve un'e-mail o un telefono a cui rispondere"],
  [/^not a valid phone number/,
   () => "non è un numero di telefono valido (senza prefisso internazionale è italiano)"],
  [/^not a valid codice fiscale/, () => "codice fiscale non valido"],
  [/^control characters are not allowed$/, () => "contiene caratteri non ammessi"],
  [/^at most (\d+) characters \((\d+) given\)$/,
   (m) => `al massimo ${m[1]} caratteri (ne hai scritti ${m[2]})`],
  // Hold and resume (POST /api/agents/{id}/call/hold|resume).
  [/^agent .+ has no call in progress$/, () => "nessuna chiamata in corso"],
  [/^no conversation in progress on this call$/, () => "nessuna conversazione in corso"],
  [/^the caller is on hold already$/, () => "il chiamante è già in attesa"],
  [/^the caller is not on hold$/, () => "il chiamante non è in attesa"],
  [/^the caller has hung up$/, () => "il chiamante ha riagganciato"],
  [/^hold .*for calls from citizens/,
   () => "attesa e trasferimento sono solo per le chiamate dei cittadini"],
  [/^could not put the caller on hold: (.+)$/,
   (m) => `il chiamante non è stato messo in attesa (${m[1]})`],
  [/^could not take the caller off hold: (.+)$/,
   (m) => `il chiamante non è stato ripreso dall'attesa (${m[1]})`],
  // Transfer (POST /api/agents/{id}/call/transfer).
  [/^a transfer is under way already$/, () => "un trasferimento è già in corso"],
  [/^no agent ['"](.+)['"]$/, (m) => `non c'è un operatore con codice ${m[1]}`],
  [/^the caller is talking to that agent already$/,
   () => "il chiamante sta già parlando con quel collega"],
  [/^agent (.+) is (\w+): not taking calls now$/,
   (m) => `${names[m[1]] || `l'operatore ${m[1]}`} è «${STATES[m[2]] || m[2]}» e ora non ` +
          "riceve chiamate"],
  [/^agent (.+) takes no calls$/,
   (m) => `${names[m[1]] || `l'operatore ${m[1]}`} non riceve chiamate su nessuna linea`],
  // Attended transfer (POST /api/agents/{id}/call/consult...).
  [/^a consultation is going on already$/, () => "è già in corso una consultazione"],
  [/^a consultation is going on: complete or cancel it$/,
   () => "c'è una consultazione in corso: completala o annullala"],
  [/^no consultation is going on$/, () => "non c'è nessuna consultazione in corso"],
  [/^agent (.+) is (\w+): not free to talk$/,
   (m) => `${names[m[1]] || `l'operatore ${m[1]}`} è «${STATES[m[2]] || m[2]}» e ora non è ` +
          "libero"],
  [/^(.+) has not answered yet$/,
   (m) => `${names[m[1]] || m[1]} non ha ancora risposto`],
  [/^say where to: a topic, an agent, a group or a number$/,
   () => "scegli una linea, un collega, il II livello o un numero esterno"],
  // A number outside (the recall rules: cti/recalls.py classify).
  [/^'(.+)': not a phone number$/, (m) => `${m[1]} non è un numero di telefono`],
  [/^'(.+)': not a valid phone number/, (m) => `${m[1]} non è un numero valido (controlla ` +
                                              "le cifre e il prefisso)"],
  [/^'(.+)': extensions cannot be dialled/, (m) => `${m[1]}: gli interni non si possono ` +
                                                  "chiamare, serve un numero diretto"],
  [/^'(.+)': this is the help desk's own number$/,
   (m) => `${m[1]} è un numero dello sportello stesso`],
  [/^'(.+)': (.+) numbers cannot be called back \(allowed: (.+)\)$/,
   (m) => `${m[1]}: i numeri di questo tipo (${m[2]}) non si possono chiamare ` +
          `(ammessi: ${m[3]})`],
  [/^no group ['"](.+)['"], or none of its other members takes calls$/,
   (m) => `nessun altro del gruppo ${groupName(m[1])} riceve chiamate`],
  [/^nobody of group ['"](.+)['"] is logged in$/,
   (m) => `nessuno del gruppo ${groupName(m[1])} è in servizio`],
  [/^no topic ['"](.+)['"]$/, (m) => `non c'è la linea ${m[1]}`],
  [/^the caller is in ['"](.+)['"]'s line already$/,
   (m) => `il chiamante è già sulla linea ${lineName(m[1])}`],
];

let ticketsOn = true;    // false when the service takes no written requests (503)
let inbox = null;        // the last inbox read (null: none yet, or it failed)
let ticket = null;       // the ticket on show (TicketDetail)
let inboxTimer = null;
let inboxSeq = 0;        // answers to a request older than the last one are dropped
let ticketSeq = 0;
let ticketCall = null;   // the call the new request's form was filled from
const groupsSeen = new Set();  // second-level groups met in tickets: offered for escalation
const subjectsSeen = {};       // topic -> subjects met: offered for a new request
let deskTopics = null;         // GET /api/tickets/topics where the service has it, else null
let names = {};                // agent id -> name (agents.yaml), as tickets' owner_name say

function italian(reason) {
  for (const [pattern, words] of REASONS) {
    const m = pattern.exec(reason || "");
    if (m) return words(m);
  }
  return reason || "errore sconosciuto";
}

function reasonOf(answer) {
  if (answer.status === 0) return "servizio non raggiungibile";
  return italian(answer.data && answer.data.error ? answer.data.error : `errore ${answer.status}`);
}

function announce(id, text) {
  // Emptied first, so that the same words twice are read out twice.
  say(id, "");
  setTimeout(() => say(id, text), 100);
}

const el = (tag, text, className) => {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
};

function operator(id, name) {
  // An agent by name where the service said it (owner_name), else by their code.
  const known = name && name !== id ? name : names[id];
  return `${known || `operatore ${id}`}${session && id === session.agent ? " (tu)" : ""}`;
}
const ownerText = (t) => operator(t.owner, t.owner_name);
const levelText = (level) => level === FIRST_LEVEL ? "I livello" : `II livello: ${level}`;

function byWhom(by) {
  if (by === "citizen") return "cittadino";
  if (by === "system") return "sistema";
  const m = /^agent:(.+)$/.exec(by || "");
  return m ? operator(m[1]) : by;
}

function historyText(action) {
  if (HISTORY[action]) return HISTORY[action];
  let m = /^escalated to (.+)$/.exec(action);
  if (m) return `passata al II livello (${m[1]})`;
  m = /^handed back by (.+)$/.exec(action);
  if (m) return `restituita al I livello da ${m[1]}`;
  m = /^assigned to (.+)$/.exec(action);
  if (m) return `assegnata a ${operator(m[1])}`;
  m = /^reassigned to (.+)$/.exec(action);
  return m ? `riassegnata a ${operator(m[1])}` : action;
}

function standingBadge(c) {
  // The sign is decoration (aria-hidden): the words carry the meaning.
  const [sign, words] = STANDINGS[c.standing] || ["", c.standing];
  const badge = el("span", undefined, "sla");
  badge.dataset.standing = c.standing;
  if (sign) {
    const mark = el("span", sign, "sla-sign");
    mark.setAttribute("aria-hidden", "true");
    badge.append(mark, " ");
  }
  badge.append(words);
  return badge;
}

function workingTime(seconds) {
  // The working time left to a deadline (on the SLA calendar, as the service counts it: the
  // browser could not, its clock may not even agree), to the nearest minute, in words.
  const minutes = Math.round(Math.abs(seconds) / 60);
  const h = Math.floor(minutes / 60);
  const min = minutes % 60;
  const span = minutes === 0 ? "meno di 1\u00a0min"  // no-break spaces: "16 h" on one line
    : [h ? `${h}\u00a0h` : "", min ? `${min}\u00a0min` : ""].filter(Boolean).join(" ");
  if (seconds < 0) return `scaduta da ${span} di lavoro`;
  return `${[0, 1, 60].includes(minutes) ? "manca" : "mancano"} ${span} di lavoro`;
}

function clockCell(node, c, compact = false) {
  // Due time in Europe/Rome, the working time left and how it stands; in full, the share of
  // the target used too.
  if (!c) {
    node.replaceChildren("—");
    return;
  }
  const due = el("span", `entro ${dateTime.format(new Date(c.due))}`, "due");
  const left = typeof c.remaining_seconds === "number"
    ? el("span", workingTime(c.remaining_seconds), "left") : null;
  if (compact) {
    node.replaceChildren(due, ...(left ? [el("br"), left] : []), el("br"), standingBadge(c));
    return;
  }
  const used = ["ok", "warning", "breached", "paused"].includes(c.standing)
    ? ` (usato ${Math.round(c.used * 100)}% del tempo)` : "";
  node.replaceChildren(due, ...(left ? [" · ", left] : []), " ", standingBadge(c), used);
}

function learn(t) {
  // What the console learns from tickets for its suggestions, where the service does not
  // list its topics, subjects and groups (GET /api/tickets/topics, see loadDeskTopics); and
  // the names of the agents who have them.
  if (t.owner && t.owner_name && t.owner_name !== t.owner) names[t.owner] = t.owner_name;
  (subjectsSeen[t.topic] = subjectsSeen[t.topic] || new Set()).add(t.subject);
  for (const level of [t.level, ...(t.history || []).map((e) => e.level)]) {
    if (level && level !== FIRST_LEVEL) groupsSeen.add(level);
  }
  if (!deskTopics) options($("escalate-groups"), groupsSeen);
}

function options(datalist, values, labels = {}) {
  datalist.replaceChildren(...[...(values || [])].sort().map((v) => {
    const option = document.createElement("option");
    option.value = v;
    if (labels[v] && labels[v] !== v) option.label = labels[v];
    return option;
  }));
}

async function loadDeskTopics() {
  // What tickets may be about and the second-level groups, if this service says it; an older
  // one answers 404 and the suggestions come from the tickets seen.
  const answer = await api("GET", `${TICKETS}/topics`);
  const data = answer.ok && answer.data;
  if (!session || !data || !Array.isArray(data.topics) || !Array.isArray(data.groups)) return;
  deskTopics = { topics: data.topics, groups: data.groups };
  const names = Object.fromEntries(data.groups.map((g) => [g.id, g.name]));
  options($("escalate-groups"), data.groups.map((g) => g.id), names);
}

function startTickets() {
  ticketsOn = true;
  $("tickets-panel").hidden = false;
  clearInterval(inboxTimer);
  inboxTimer = setInterval(refreshTickets, INBOX_EVERY);
  loadInbox();
  loadDeskTopics();
}

function stopTickets() {
  clearInterval(inboxTimer);
  inboxTimer = null;
  inboxSeq += 1;
  ticketSeq += 1;  // answers still on their way are for nobody
  inbox = null;
  ticket = null;
  ticketCall = null;
  deskTopics = null;
  names = {};
  if ($("leave").open) $("leave").close("gone");
  $("inbox").querySelector("tbody").replaceChildren();
  $("ticket").hidden = true;
  $("no-ticket").hidden = false;
  $("new-ticket-form").reset();
  $("new-ticket").hidden = true;
  $("nt-done").hidden = true;
  for (const id of ["inbox-error", "inbox-updated", "ticket-error", "ticket-done", "nt-error"]) {
    say(id, "");
  }
}

function ticketsOff() {
  // The service takes no written requests (no tickets.yaml): nothing of them on the page.
  ticketsOn = false;
  clearInterval(inboxTimer);
  inboxTimer = null;
  $("tickets-panel").hidden = true;
  $("ticket-from-call").hidden = true;
  if ($("leave").open) $("leave").close("gone");
  $("pop-tickets-block").hidden = true;
  $("new-ticket").hidden = true;
}

function refreshTickets() {
  loadInbox();
  if (ticket) loadTicket(ticket.number);
}

// --- the inbox ------------------------------------------------------------------------------

async function loadInbox(told = false) {
  if (!session || !ticketsOn) return;
  const seq = ++inboxSeq;
  const answer = await api("GET", TICKETS);
  if (seq !== inboxSeq || !session) return;
  if (answer.status === 503) {
    ticketsOff();
    return;
  }
  if (!answer.ok) {
    say("inbox-error", `Elenco delle richieste non aggiornato: ${reasonOf(answer)}.`);
    return;
  }
  say("inbox-error", "");
  showInbox(answer.data);
  if (told) {
    const n = answer.data.length;
    announce("inbox-announce",
             `Elenco aggiornato: ${n === 1 ? "una richiesta" : `${n} richieste`}.`);
  }
}

function showInbox(rows) {
  inbox = rows;
  rows.forEach(learn);
  $("inbox").querySelector("tbody").replaceChildren(...rows.map(inboxRow));
  $("inbox").hidden = rows.length === 0;
  $("inbox-empty").hidden = rows.length > 0;
  say("inbox-updated", `Aggiornato alle ${clock.format(new Date())}`);
  if (ticket) showActions(ticket);  // which tickets are free for me may have changed
}

function inboxRow(t) {
  const tr = document.createElement("tr");
  tr.dataset.number = t.number;
  const resolution = t.clocks && t.clocks.resolution;
  tr.dataset.standing = resolution ? resolution.standing : "";
  if (ticket && ticket.number === t.number) tr.setAttribute("aria-current", "true");

  const open = el("button", t.number, "link");
  open.type = "button";
  open.addEventListener("click", () => openTicket(t.number));
  let state = t.state + (t.owner ? ` · ${ownerText(t)}` : "");
  if (t.level !== FIRST_LEVEL) state += ` · ${levelText(t.level)}`;
  if (t.priority === "high") state += " · priorità alta";

  const cells = [open, t.subject, t.requester_name, state, null].map((content) => {
    const td = document.createElement("td");
    if (content instanceof Node) td.append(content);
    else if (content !== null) td.textContent = content;
    return td;
  });
  clockCell(cells[4], resolution, true);
  tr.append(...cells);
  return tr;
}

async function takeNext() {
  // The ticket the desk would give this agent (their topics' and groups' free ones, soonest
  // deadline first), taken in charge and opened.
  if (!session || !ticketsOn) return;
  say("inbox-error", "");
  say("inbox-announce", "");
  const button = $("inbox-next");
  const seq = ++ticketSeq;  // a ticket being read is older than this one
  button.disabled = true;
  const answer = await api("POST", `${TICKETS}/next`);
  button.disabled = false;
  if (!session) return;
  if (answer.status === 404 && answer.data && /^no ticket waits/.test(answer.data.error || "")) {
    announce("inbox-announce", "Nessuna richiesta in attesa per te.");
    await loadInbox();
    return;
  }
  if (answer.status === 503) {
    ticketsOff();
    return;
  }
  if (!answer.ok) {
    say("inbox-error", `Nessuna richiesta presa: ${reasonOf(answer)}.`);
    return;
  }
  const taken = answer.data;
  await loadInbox();  // first: which actions show depends on it
  if (seq === ticketSeq) showTicket(taken);
  else await loadTicket(taken.number);
  say("ticket-done", `Richiesta ${taken.number} presa in carico. Stato: ${taken.state}.`);
  $("ticket-title").focus();
}

// --- one ticket -----------------------------------------------------------------------------

async function openTicket(number) {
  say("ticket-error", "");
  if (await loadTicket(number)) $("ticket-title").focus();
}

async function loadTicket(number) {
  const seq = ++ticketSeq;
  const answer = await api("GET", `${TICKETS}/${encodeURIComponent(number)}`);
  if (seq !== ticketSeq || !session) return false;
  if (!answer.ok) {
    say("inbox-error", `Richiesta ${number} non aperta: ${reasonOf(answer)}.`);
    if (answer.status === 404 && ticket && ticket.number === number) closeTicket();
    return false;
  }
  showTicket(answer.data);
  return true;
}

function closeTicket() {
  ticket = null;
  $("ticket").hidden = true;
  $("no-ticket").hidden = false;
}

function showTicket(t) {
  if (!ticket || ticket.number !== t.number) {
    // Another ticket: what was typed for the previous one, and its messages, go.
    for (const form of document.querySelectorAll("#ticket form")) form.reset();
    for (const details of document.querySelectorAll("#ticket details")) details.open = false;
    for (const field of document.querySelectorAll("#ticket [aria-invalid]")) {
      field.removeAttribute("aria-invalid");
    }
    say("ticket-done", "");
    say("ticket-error", "");
  }
  ticket = t;
  learn(t);
  say("ticket-title", `Richiesta ${t.number}`);
  say("t-topic", t.topic);
  say("t-subject", t.subject);
  say("t-channel", CHANNELS[t.channel] || t.channel);
  say("t-name", t.requester_name);
  say("t-email", t.requester_email || "—");
  say("t-phone", t.requester_phone || "—");
  say("t-tax-code", t.requester_tax_code || "—");
  say("t-state", t.state + (t.priority === "high" ? " · priorità alta" : ""));
  say("t-level", levelText(t.level));
  say("t-owner", t.owner ? ownerText(t) : "nessuno");
  clockCell($("t-first-response"), t.clocks.first_response);
  clockCell($("t-resolution"), t.clocks.resolution);
  say("t-created", dateTime.format(new Date(t.created_at)));
  const links = [];
  if (t.linked_to) links.push(`continua la richiesta ${t.linked_to}`);
  if (t.call_id) links.push(`aperta durante la chiamata ${t.call_id}`);
  say("t-links", links.join(" · ") || "—");

  // The messages again (read every 30 s): a quote or an HTML version opened stays open.
  const opened = new Set([...$("t-thread").querySelectorAll("[data-open-key]")]
    .filter((n) => n.open || n.getAttribute("aria-expanded") === "true")
    .map((n) => n.dataset.openKey));
  $("t-thread").replaceChildren(...t.thread.map((m, i) => messageItem(m, t, i, opened)));
  const bounced = t.bounced;
  $("t-bounced").hidden = !bounced;
  if (bounced) {
    say("t-bounced", `Indirizzo non raggiungibile: le e-mail a ${bounced.address} non ` +
        `arrivano (segnalato il ${dateTime.format(new Date(bounced.at))}: ` +
        `${bounced.reason || "motivo non indicato"}). Torna valido quando il cittadino ` +
        "scrive di nuovo da questo indirizzo.");
  }
  $("t-history").querySelector("tbody").replaceChildren(...t.history.map((e) => {
    const tr = document.createElement("tr");
    for (const text of [dateTime.format(new Date(e.at)), byWhom(e.by), historyText(e.action),
                        e.state, levelText(e.level), e.owner ? operator(e.owner) : "—",
                        e.note || "—"]) {
      tr.append(el("td", text));
    }
    return tr;
  }));
  showActions(t);
  for (const tr of $("inbox").querySelectorAll("tbody tr")) {
    if (tr.dataset.number === t.number) tr.setAttribute("aria-current", "true");
    else tr.removeAttribute("aria-current");
  }
  $("no-ticket").hidden = true;
  $("ticket").hidden = false;
}

const MAIL_KINDS = { reply: "E-mail al cittadino", acknowledgement: "Conferma di ricezione",
                     confirmation: "Conferma della richiesta" };

function mailStateText(mail) {
  // How the answer's e-mail stands (the outbox): one that did not reach the citizen shows.
  const kind = MAIL_KINDS[mail.kind] || "E-mail";
  const error = mail.error ? ` Ultimo errore: ${mail.error}.` : "";
  if (mail.status === "sent") {
    return `${kind}: inviata a ${mail.recipient}` +
           (mail.sent_at ? ` il ${dateTime.format(new Date(mail.sent_at))}.` : ".");
  }
  if (mail.status === "failed") {
    return `${kind}: NON recapitata a ${mail.recipient} (rifiutata; tentativi: ` +
           `${mail.attempts}).${error}`;
  }
  if (mail.status === "uncertain") {
    return `${kind}: esito incerto (invio interrotto), non sarà ritentata da sola.${error}`;
  }
  if (mail.status === "sending") return `${kind}: invio in corso.`;
  const next = mail.next_at ? ` Prossimo tentativo: ${dateTime.format(new Date(mail.next_at))}.`
                            : "";
  return `${kind}: in attesa di invio (tentativi: ${mail.attempts}).${next}${error}`;
}

async function download(event, file) {
  // The file comes with the agent's token (a plain link would carry none), then is saved.
  event.preventDefault();
  const response = await fetch(file.url, {
    cache: "no-store", headers: { "Authorization": `Bearer ${session && session.token}` } })
    .catch(() => null);
  if (!response || !response.ok) {
    say("ticket-error", `Allegato ${file.filename} non scaricabile.`);
    return;
  }
  const url = URL.createObjectURL(await response.blob());
  const save = document.createElement("a");
  save.href = url;
  save.download = file.filename;
  document.body.append(save);
  save.click();
  save.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function htmlFrame(m) {
  // The message's HTML (made safe by the service, remote images removed) in a frame with no
  // rights: no script, no form, no same origin, no popup; its own policy loads nothing.
  const frame = document.createElement("iframe");
  frame.className = "html";
  frame.setAttribute("sandbox", "");
  frame.setAttribute("referrerpolicy", "no-referrer");
  frame.title = "Versione HTML del messaggio";
  frame.srcdoc = '<!doctype html><html lang="it"><head><meta charset="utf-8">' +
    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\">" +
    "<title>Versione HTML del messaggio</title></head><body>" + m.html + "</body></html>";
  return frame;
}

function messageExtras(li, m, key, opened) {
  if (m.quoted) {
    const details = el("details", undefined, "quoted");
    details.dataset.openKey = `${key}:quoted`;
    details.open = opened.has(details.dataset.openKey);
    details.append(el("summary", "Testo citato"), el("p", m.quoted, "msg-body"));
    li.append(details);
  }
  if (m.html) {
    const button = el("button", "Mostra versione HTML", "link show-html");
    button.type = "button";
    button.dataset.openKey = `${key}:html`;
    const holder = el("div");
    holder.id = `html-${key}`;
    button.setAttribute("aria-controls", holder.id);
    const toggle = (show) => {
      button.setAttribute("aria-expanded", String(show));
      button.textContent = show ? "Mostra solo il testo" : "Mostra versione HTML";
      holder.replaceChildren(...(show ? [htmlFrame(m)] : []));
    };
    button.addEventListener("click", () => toggle(button.getAttribute("aria-expanded") !== "true"));
    toggle(opened.has(button.dataset.openKey));
    const line = el("p");
    line.append(button);
    li.append(line, holder);
  }
  if (m.attachments && m.attachments.length) {
    const list = el("ul", undefined, "files");
    list.setAttribute("aria-label", "Allegati");
    for (const file of m.attachments) {
      const link = el("a", file.filename);
      link.href = file.url;
      link.addEventListener("click", (event) => download(event, file));
      const size = file.size >= 1048576 ? `${(file.size / 1048576).toFixed(1)} MB`
                                        : `${Math.max(1, Math.round(file.size / 1024))} kB`;
      const item = el("li");
      item.append(link, ` (${size})`);
      list.append(item);
    }
    li.append(list);
  }
  if (m.refused && m.refused.length) {
    const list = el("ul", undefined, "refused");
    list.setAttribute("aria-label", "Allegati non accettati");
    for (const why of m.refused) list.append(el("li", `Allegato non accettato: ${why}`));
    li.append(list);
  }
  if (m.mail) {
    const state = el("p", mailStateText(m.mail), "mail-state");
    state.dataset.status = m.mail.status;
    li.append(state);
  }
}

function messageItem(m, t, key = 0, opened = new Set()) {
  const internal = m.visibility === "internal";
  const li = el("li", undefined, `msg ${internal ? "internal" : m.direction}`);
  const head = el("p", undefined, "msg-head");
  if (internal) head.append(el("span", "nota interna", "tag"), " ");
  let who;
  if (internal) {
    who = byWhom(m.author);
  } else if (m.direction === "in") {
    // An agent may have written it down for the citizen (a request opened during a call).
    who = `Cittadino: ${t.requester_name}` +
          (m.author.startsWith("agent:") ? ` (trascritta da ${byWhom(m.author)})` : "");
  } else {
    who = `Al cittadino, da ${byWhom(m.author)}`;
  }
  const when = el("time", dateTime.format(new Date(m.at)));
  when.dateTime = m.at;
  head.append(el("span", who, "who"), " · ", when);
  li.append(head, el("p", m.body, "msg-body"));
  messageExtras(li, m, key, opened);
  return li;
}

function showActions(t) {
  // What makes sense in this state for this agent; the service has the last word.
  const mine = session && t.owner === session.agent;
  const working = mine && WORKING.includes(t.state);
  // Free tickets in my inbox are those I may take: the service lists an escalated ticket only
  // to its group's members, a new one only to the agents of its topic.
  const listed = inbox === null || inbox.some((x) => x.number === t.number);
  const free = !t.owner && ["nuovo", "escalato"].includes(t.state) && listed;
  const shown = {
    take: free, reply: working, note: true, wait: mine && t.state === "preso in carico",
    escalate: working, resolve: working,
    hand_back: t.level !== FIRST_LEVEL && OPEN_STATES.includes(t.state) && (mine || free),
    release: working,  // back to its line, unowned
  };
  $("t-take").hidden = !shown.take;
  for (const action of ACTED) $(`act-${action}`).hidden = !shown[action];
  $("t-no-actions").hidden = Object.keys(shown).some((a) => a !== "note" && shown[a]);
}

async function act(action, form) {
  if (!ticket) return;
  say("ticket-done", "");
  say("ticket-error", "");
  if (form) {
    // What the service would refuse for want of text, said at once by the field.
    for (const field of form.querySelectorAll("[data-required]")) {
      field.removeAttribute("aria-invalid");
    }
    const missing = [...form.querySelectorAll("[data-required]")].find((f) => !f.value.trim());
    if (missing) {
      missing.setAttribute("aria-invalid", "true");
      say("ticket-error", missing.dataset.required);
      missing.focus();
      return;
    }
  }
  const text = form ? form.querySelector("textarea").value : "";
  const group = action === "escalate" ? $("escalate-group").value.trim() : null;
  const button = form ? form.querySelector("button[type=submit]") : $("t-take");
  const number = ticket.number;
  const seq = ++ticketSeq;  // a reading already under way is older than this step's answer
  button.disabled = true;
  const answer = await api("POST", `${TICKETS}/${encodeURIComponent(number)}/actions`,
                           { action, text, group });
  button.disabled = false;
  if (!session) return;
  if (answer.ok) {
    if (form) {
      form.reset();
      form.parentElement.open = false;
    }
    await loadInbox();  // first: which actions show depends on it
    if (seq === ticketSeq) showTicket(answer.data);
    else await loadTicket(number);
    say("ticket-done", `${DONE[action]} Stato: ${answer.data.state}.`);
    $("ticket-title").focus();
    return;
  }
  say("ticket-error", `Non è stato possibile: ${reasonOf(answer)}.`);
  if ([404, 409].includes(answer.status)) {
    // Someone else was quicker, or the ticket moved on: show it as it is now.
    await loadInbox();
    await loadTicket(number);
    if (button.closest("[hidden]")) $("ticket-error").focus();
  }
}

// --- a new request for the caller -----------------------------------------------------------

function openNewTicket() {
  if (!pop || pop.type !== "offer") return;
  const call = pop;
  if (ticketCall !== call.call_id) {  // another call: the form starts again from its facts
    ticketCall = call.call_id;
    // The topics: the service's list if it gives one, else the call's and the agent's own
    // (the service refuses a topic that takes no written requests, and says which do).
    const names = { [call.topic]: call.topic_name };
    let topics;
    if (deskTopics) {
      topics = deskTopics.topics.map((t) => t.id);
      for (const t of deskTopics.topics) names[t.id] = t.name;
    } else {
      const mine = Object.entries((agent && agent.topics) || {}).sort((a, b) => a[1] - b[1]);
      topics = [...new Set([call.topic, ...mine.map(([topic]) => topic)])];
    }
    $("nt-topic").replaceChildren(...topics.map((topic) => {
      const option = el("option", names[topic] && names[topic] !== topic
        ? `${names[topic]} (${topic})` : topic);
      option.value = topic;
      return option;
    }));
    $("new-ticket-form").reset();
    if (topics.includes(call.topic)) $("nt-topic").value = call.topic;
    subjectsFor();
    const named = call.caller_name && call.caller_name !== call.caller_number;
    $("nt-name").value = named ? call.caller_name : "";
    $("nt-phone").value = call.caller_number || "";
    const path = (call.path || []).map((step) => step.label || `tasto ${step.key}`).join(" > ");
    $("nt-body").value = path ? `Percorso nel menu: ${path}\n\n` : "";
    say("new-ticket-call", `Per la chiamata da ${call.caller_number || "numero nascosto"}` +
                           ` (${call.line}) delle ${clock.format(new Date(call.offered_at))}.`);
    clearProblems();
  }
  $("nt-done").hidden = true;
  $("new-ticket").hidden = false;
  $("nt-topic").focus();
}

function subjectsFor() {
  const topic = $("nt-topic").value;
  const listed = deskTopics && deskTopics.topics.find((t) => t.id === topic);
  options($("nt-subjects"), listed ? listed.subjects : subjectsSeen[topic]);
}

function clearProblems() {
  $("nt-error").replaceChildren();
  for (const field of document.querySelectorAll("#new-ticket-form [aria-invalid]")) {
    field.removeAttribute("aria-invalid");
  }
}

function showProblems(problems) {
  const list = el("ul");
  let first = null;
  for (const problem of problems) {
    const m = /^(\w+): (.*)$/s.exec(problem);
    const field = m && FIELDS[m[1]];
    list.append(el("li", field ? `${field[0]}: ${italian(m[2])}` : italian(problem)));
    if (!field) continue;
    $(field[1]).setAttribute("aria-invalid", "true");
    first = first || $(field[1]);
    const subjects = m[1] === "subject" && /^choose one of: (.+)$/.exec(m[2]);
    if (subjects) {  // the service listed the topic's subjects: offer them
      const topic = $("nt-topic").value;
      subjectsSeen[topic] = new Set(subjects[1].split(", "));
      subjectsFor();
    }
  }
  $("nt-error").replaceChildren(el("p", "La richiesta non è stata registrata:"), list);
  if (first) first.focus();
}

async function sendNewTicket(event) {
  event.preventDefault();
  clearProblems();
  const value = (id) => $(id).value.trim();
  const request = {
    topic: $("nt-topic").value, subject: value("nt-subject"), body: $("nt-body").value,
    name: value("nt-name"), email: value("nt-email"), phone: value("nt-phone"),
    tax_code: value("nt-tax-code"), call_id: ticketCall,
  };
  $("nt-send").disabled = true;
  const answer = await api("POST", TICKETS, request);
  $("nt-send").disabled = false;
  if (!session) return;
  if (answer.status === 201) {
    const made = answer.data;
    $("new-ticket-form").reset();
    $("new-ticket").hidden = true;
    ticketCall = null;
    const done = $("nt-done");
    const link = new URL(made.status_url, location.href).href;
    done.replaceChildren("Richiesta ", el("strong", made.number), ` registrata (${made.state}). ` +
                         `Pagina con cui il cittadino la segue: ${link}`);
    done.hidden = false;
    done.focus();
    loadInbox();
  } else if (answer.status === 422 && answer.data) {
    showProblems(answer.data.problems && answer.data.problems.length
      ? answer.data.problems : [answer.data.error]);
  } else {
    $("nt-error").replaceChildren(el("p", `Richiesta non registrata: ${reasonOf(answer)}.`));
  }
}

function cancelNewTicket() {
  $("new-ticket-form").reset();
  clearProblems();
  $("new-ticket").hidden = true;
  ticketCall = null;
  // Back to where the agent came from, if it is still there.
  if (!$("pop").hidden && !$("ticket-from-call").hidden) $("ticket-from-call").focus();
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
  $("logout").addEventListener("click", leave);
  $("leave-keep").addEventListener("click", () => leaveWith("keep"));
  $("leave-release").addEventListener("click", () => leaveWith("release"));
  $("leave-cancel").addEventListener("click", () => $("leave").close());
  $("leave").addEventListener("close", () => {
    // Annulla, or Esc: back to "Esci" (a choice made says its own result, see leaveWith)
    if (!$("leave").returnValue && !$("logout").disabled) $("logout").focus();
  });
  $("resume").addEventListener("click", () => change("resume"));
  $("hold-toggle").addEventListener("click", toggleHold);
  $("transfer-toggle").addEventListener("click", toggleTransfer);
  $("transfer-form").addEventListener("submit", sendTransfer);
  $("transfer-cancel").addEventListener("click", () => closeTransfer(true));
  $("transfer-target").addEventListener("change", renderTransfer);
  $("consult-send").addEventListener("click", startConsult);
  for (const action of ["complete", "swap", "cancel"]) {
    $(`consult-${action}`).addEventListener("click", () => consultAction(action));
  }
  $("transfer").addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !transferBusy) closeTransfer(true);
  });
  $("pause-form").addEventListener("submit", pause);
  for (const button of $("verdict-actions").querySelectorAll("button")) {
    button.addEventListener("click", () => giveVerdict(button.dataset.outcome));
  }
  $("verdict-hide").addEventListener("click", hideVerdict);

  $("inbox-next").addEventListener("click", takeNext);
  $("inbox-refresh").addEventListener("click", () => {
    loadInbox(true);
    if (ticket) loadTicket(ticket.number);
  });
  $("t-take").addEventListener("click", () => act("take"));
  for (const form of document.querySelectorAll("#ticket form[data-action]")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      act(form.dataset.action, form);
    });
  }
  $("ticket-from-call").addEventListener("click", openNewTicket);
  $("nt-topic").addEventListener("change", subjectsFor);
  $("new-ticket-form").addEventListener("submit", sendNewTicket);
  $("nt-cancel").addEventListener("click", cancelNewTicket);

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
