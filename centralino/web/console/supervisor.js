// The supervisors' board: every queue and every agent, live from /ws/supervisor (read only);
// the written requests (tickets) from REST, where a supervisor may give one to an agent; the
// mailboxes from REST, where a supervisor looks at quarantined mail and sends failed mail again.
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
  clearTimeout(ticketsTimer);
  ticketsSeq += 1;  // an answer still on its way is not shown
  clearTimeout(mailTimer);
  mailSeq += 1;
  mailList = null;
  $("mb-list").hidden = true;
  say("mb-done", "");
  say("mb-error", "");
  say("tk-done", "");
  say("tk-error", "");
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
    loadTickets();  // after a reconnection the service may have restarted, or changed agents
    loadMail();
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

// --- written requests (tickets) -------------------------------------------------------------

const TICKETS = "/api/tickets";
const TICKETS_EVERY = 30000;  // ms: deadlines pass and requests arrive without any live event
const OPEN_LIMIT = 200;
const FIRST_LEVEL = "I";
// An SLA clock's standing: the words say it, the sign and the colour only help the eye
// (the same words as the agents' console).
const STANDINGS = {
  ok: ["", "nei tempi"], warning: ["⚠", "in scadenza"], breached: ["✖", "scaduta"],
  paused: ["⏸", "sospesa: si attende il cittadino"], met: ["✓", "rispettata"],
  missed: ["✖", "non rispettata"],
};
const WORST = ["breached", "warning"];  // what puts a ticket on the list to follow
// The service refuses in English (for logs and integrators): the usual reasons in Italian,
// any other shown as it is.
const REFUSALS = [
  [/^(.+) is not one of (.+)'s topics$/,
   (m) => `${topicName(m[1])} non è tra gli argomenti di ${agentName(m[2])}`],
  [/^escalated to (.+): only its members work it$/,
   (m) => `è al II livello (${groupName(m[1])}): la lavorano solo i membri del gruppo`],
  [/^(.+) has it already$/, (m) => `è già in carico a ${agentName(m[1])}`],
  [/^the ticket changed meanwhile/, () => "la richiesta è cambiata nel frattempo: riprova"],
  [/^the ticket is (.+?)(?: by .+)?$/, (m) => `la richiesta è «${m[1]}»`],
  [/^no agent ['"](.*)['"]$/, (m) => `non esiste l'operatore «${m[1]}»`],
  [/^no ticket /, () => "la richiesta non esiste più"],
];
const dateTime = new Intl.DateTimeFormat("it-IT", { dateStyle: "short", timeStyle: "short",
                                                    timeZone: "Europe/Rome" });
let ticketsTimer = null;
let ticketsSeq = 0;            // answers to a read older than the last one are dropped
let topicNames = new Map();    // topic id -> name, from /api/tickets/topics
let groupNames = new Map();    // second-level group id -> name
const openRows = new Map();    // ticket number -> its row of #tk-open, kept across refreshes
let assigning = false;

const el = (tag, text, className) => {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
};
const topicName = (id) => topicNames.get(id) || id;
const groupName = (id) => groupNames.get(id) || id;
const levelText = (level) => level === FIRST_LEVEL ? "I livello"
  : `II livello: ${groupName(level)}`;

function agentName(id) {
  const a = agents.get(id);
  return a ? `${a.name} (${a.id})` : `operatore ${id}`;
}

function age(seconds) {
  // In words, the two largest units: "3 giorni 2 ore", "5 ore 10 minuti", "1 giorno".
  const s = Math.max(0, Math.floor(seconds));
  const units = [[Math.floor(s / 86400), "giorno", "giorni"],
                 [Math.floor((s % 86400) / 3600), "ora", "ore"],
                 [Math.floor((s % 3600) / 60), "minuto", "minuti"]];
  const first = units.findIndex(([n]) => n > 0);
  if (first < 0) return "meno di un minuto";
  return units.slice(first, first + 2).filter(([n]) => n > 0)
    .map(([n, one, many]) => `${n} ${n === 1 ? one : many}`).join(" ");
}

async function ask(method, path, body) {
  // {ok, status, data}; status 0 when the service cannot be reached.
  const headers = { "Authorization": `Bearer ${token}` };
  if (body) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, cache: "no-store", headers,
                                   body: body ? JSON.stringify(body) : undefined });
  } catch (_) {
    return { ok: false, status: 0, data: null };
  }
  let data = null;
  try { data = await response.json(); } catch (_) { /* no JSON: the status says enough */ }
  return { ok: response.ok, status: response.status, data };
}

async function loadTickets() {
  clearTimeout(ticketsTimer);
  if (!token) return;
  ticketsTimer = setTimeout(loadTickets, TICKETS_EVERY);
  const seq = ++ticketsSeq;
  const [board, open, desk] = await Promise.all([
    ask("GET", `${TICKETS}/board`), ask("GET", `${TICKETS}?limit=${OPEN_LIMIT}`),
    ask("GET", `${TICKETS}/topics`)]);
  if (seq !== ticketsSeq || !token) return;  // a newer read, or signed out meanwhile
  if ([board, open, desk].some((a) => a.status === 503)) {
    $("written").hidden = true;  // this service takes no written requests
    return;
  }
  if (!board.ok || !open.ok) return;  // away: the socket's reconnection says so; keep the last
  if (desk.ok) {
    topicNames = new Map(desk.data.topics.map((t) => [t.id, t.name]));
    groupNames = new Map(desk.data.groups.map((g) => [g.id, g.name]));
  }
  renderBacklog(board.data.backlog);
  renderAttention(board.data.attention);
  renderOpen(open.data);
  $("written").hidden = false;
}

function renderBacklog(backlog) {
  const oldest = backlog.oldest;
  $("tk-oldest").textContent = oldest ? `${oldest.number} (${topicName(oldest.topic)}, `
    + `${levelText(oldest.level)}): aperta da ${age(oldest.age_seconds)}` : "nessuna";
  $("tk-late").textContent = String(backlog.past_deadline);
  $("tk-late").dataset.late = backlog.past_deadline > 0 ? "true" : "false";
  $("tk-total").textContent = String(backlog.open);
  $("tk-backlog").tBodies[0].replaceChildren(...backlog.by_topic_level.map((b) => {
    const tr = document.createElement("tr");
    tr.dataset.topic = b.topic;
    tr.dataset.level = b.level;
    const th = el("th", topicName(b.topic));
    th.scope = "row";
    tr.append(th);
    cell(tr, levelText(b.level));
    cell(tr, String(b.open));
    return tr;
  }));
  $("tk-backlog").hidden = backlog.by_topic_level.length === 0;
  $("tk-no-backlog").hidden = backlog.by_topic_level.length > 0;
}

function standingBadge(c) {
  // The sign is decoration (aria-hidden): the words carry the meaning.
  const [sign, words] = STANDINGS[c.standing] || ["", c.standing];
  const badge = el("span", undefined, "standing");
  badge.dataset.standing = c.standing;
  if (sign) {
    const mark = el("span", sign);
    mark.setAttribute("aria-hidden", "true");
    badge.append(mark, " ");
  }
  badge.append(words);
  return badge;
}

function clockCell(td, c) {
  // How the clock stands, then its deadline in Rome's time (the service counts working hours:
  // the browser cannot tell the time left, its clock may not even agree with the service's).
  if (!c) td.replaceChildren("—");
  else td.replaceChildren(standingBadge(c), " ",
                          el("span", `entro ${dateTime.format(new Date(c.due))}`, "due"));
}

function numberCell(tr, number) {
  const th = el("th", number);
  th.scope = "row";
  tr.append(th);
}

function renderAttention(tickets) {
  $("tk-attention").tBodies[0].replaceChildren(...tickets.map((t) => {
    const tr = document.createElement("tr");
    tr.dataset.number = t.number;
    const standings = Object.values(t.clocks).map((c) => c.standing);
    tr.dataset.standing = WORST.find((s) => standings.includes(s)) || "";
    numberCell(tr, t.number);
    cell(tr, t.subject).className = "subject";
    cell(tr, topicName(t.topic));
    cell(tr, levelText(t.level));
    cell(tr, t.owner ? agentName(t.owner) : "nessuno");
    clockCell(cell(tr, ""), t.clocks.first_response);
    clockCell(cell(tr, ""), t.clocks.resolution);
    return tr;
  }));
  $("tk-attention").hidden = tickets.length === 0;
  $("tk-no-attention").hidden = tickets.length > 0;
}

function openRow(number) {
  // A row's cells are made once and filled at each refresh: the agent's select and its button
  // stay the same elements, so a refresh neither drops the focus nor the choice in progress.
  const tr = document.createElement("tr");
  tr.dataset.number = number;
  numberCell(tr, number);
  const cells = ["subject", "citizen", "topic", "level", "ticket-state", "owner", "clock"]
    .map((name) => { const td = cell(tr, ""); td.className = name; return td; });
  const select = el("select");
  select.id = `assign-${number}`;  // numbers are letters, digits and dashes
  const label = el("label", `Operatore a cui assegnare ${number}`, "sr-only");
  label.htmlFor = select.id;
  const button = el("button", "Assegna");
  button.type = "button";
  button.append(el("span", ` ${number}`, "sr-only"));  // each button says which ticket
  button.addEventListener("click", () => assign(number));
  const box = el("div", undefined, "assign");
  box.append(label, select, button);
  cell(tr, "").append(box);
  return { tr, cells, select, button, agentsShown: "" };
}

function fillAgents(row) {
  // The options change only when the agents do (re-made, they would close an open list).
  const shown = [...agents.values()].map((a) => `${a.id}\t${a.name}`).join("\n");
  if (shown === row.agentsShown) return;
  const chosen = row.select.value;
  row.select.replaceChildren(el("option", "— scegli —"), ...[...agents.values()].map((a) => {
    const option = el("option", `${a.name} (${a.id})`);
    option.value = a.id;
    return option;
  }));
  row.select.options[0].value = "";
  row.select.value = agents.has(chosen) ? chosen : "";
  row.agentsShown = shown;
}

function renderOpen(tickets) {
  const body = $("tk-open").tBodies[0];
  const focused = document.activeElement;
  const seen = new Set();
  tickets.forEach((t, i) => {
    seen.add(t.number);
    if (!openRows.has(t.number)) openRows.set(t.number, openRow(t.number));
    const row = openRows.get(t.number);
    const [subject, citizen, topic, level, state, owner, due] = row.cells;
    subject.textContent = t.subject;
    citizen.textContent = t.requester_name;
    topic.textContent = topicName(t.topic);
    level.textContent = levelText(t.level);
    state.textContent = t.state;
    owner.textContent = t.owner ? agentName(t.owner) : "nessuno";
    clockCell(due, t.clocks.resolution);
    fillAgents(row);
    // Moved only if out of place: a row taken out and put back loses the focus.
    if (body.children[i] !== row.tr) body.insertBefore(row.tr, body.children[i] || null);
  });
  for (const [number, row] of openRows) {
    if (!seen.has(number)) {
      row.tr.remove();
      openRows.delete(number);
    }
  }
  if (focused && focused.isConnected && document.activeElement !== focused) focused.focus();
  $("tk-open").hidden = tickets.length === 0;
  $("tk-no-open").hidden = tickets.length > 0;
  $("tk-more").hidden = tickets.length < OPEN_LIMIT;
  $("tk-more").textContent = `Sono mostrate le prime ${OPEN_LIMIT}, per scadenza.`;
}

const saying = {};  // element id -> the timer of the words about to be shown

function say(id, text) {
  // Emptied first, so that the same words twice are read out twice.
  clearTimeout(saying[id]);
  $(id).textContent = "";
  if (text) saying[id] = setTimeout(() => { $(id).textContent = text; }, 100);
}

function refusal(answer) {
  if (answer.status === 0) return "il servizio non risponde, riprova tra poco";
  if (answer.status === 401 || answer.status === 403) {
    return "la chiave non è abilitata ad assegnare richieste";
  }
  const reason = answer.data && answer.data.error ? answer.data.error : `errore ${answer.status}`;
  for (const [pattern, words] of REFUSALS) {
    const m = pattern.exec(reason);
    if (m) return words(m);
  }
  return reason;
}

async function assign(number) {
  const row = openRows.get(number);
  if (!row || assigning) return;  // one at a time: the answer refreshes the whole list
  const agent = row.select.value;
  say("tk-done", "");
  if (!agent) {
    say("tk-error", `Scegli l'operatore a cui assegnare ${number}.`);
    row.select.focus();
    return;
  }
  say("tk-error", "");
  assigning = true;
  row.tr.setAttribute("aria-busy", "true");
  const answer = await ask("POST", `${TICKETS}/${encodeURIComponent(number)}/assign`, { agent });
  assigning = false;
  row.tr.removeAttribute("aria-busy");
  if (!token) return;  // signed out meanwhile
  if (answer.ok) {
    row.select.value = "";
    say("tk-done", `${number} assegnata. In carico a: ${agentName(answer.data.owner)}.`);
  } else {
    say("tk-error", `${number} non assegnata: ${refusal(answer)}.`);
  }
  await loadTickets();
}

// --- the mailboxes (mail.yaml) --------------------------------------------------------------

const MAIL = "/api/mail";
const MAIL_EVERY = 15000;  // ms: a mailbox goes down or comes back without any live event
const KINDS = { acknowledgement: "conferma di ricezione", reply: "risposta",
                confirmation: "conferma del modulo web" };
const NOT_SENT = { failed: "rifiutato dal server", uncertain: "incerto: invio interrotto" };
let mailTimer = null;
let mailSeq = 0;
let mailList = null;  // the list open: {kind: "quarantine" | "outbox", box: name}
let mailBusy = false;

function mailState(b) {
  // Words first; the colour only helps the eye.
  const badge = el("span", b.connected ? "connessa" : b.problem_since
    ? `non raggiungibile dalle ${clock.format(new Date(b.problem_since))}`
    : "non raggiungibile", "mbstate");
  badge.dataset.up = b.connected ? "true" : "false";
  const out = [badge];
  if (!b.connected && b.problem) out.push(" ", el("span", `(${b.problem})`, "problem"));
  else if (!b.connected) out.push(" ", el("span", "(connessione in corso)", "problem"));
  return out;
}

function countButton(b, kind, count, words) {
  const button = el("button", `${count} ${words}`, "link");
  button.type = "button";
  button.dataset.list = kind;
  button.setAttribute("aria-controls", "mb-list");
  button.append(el("span", ` di ${b.name}: apri l'elenco`, "sr-only"));
  button.addEventListener("click", () => openMailList(kind, b.name));
  return button;
}

async function loadMail() {
  clearTimeout(mailTimer);
  if (!token) return;
  mailTimer = setTimeout(loadMail, MAIL_EVERY);
  const seq = ++mailSeq;
  const answer = await ask("GET", `${MAIL}/mailboxes`);
  if (seq !== mailSeq || !token) return;
  if (answer.status === 503) {
    $("mail").hidden = true;  // this service reads no mailboxes
    return;
  }
  if (!answer.ok) return;  // away: the socket's reconnection says so; keep the last
  renderMailboxes(answer.data.mailboxes);
  $("mail").hidden = false;
  if (mailList) await loadMailList();
}

function renderMailboxes(boxes) {
  const focused = document.activeElement;
  const refocus = focused && focused.closest && focused.closest("#mb-boxes")
    ? [focused.closest("tr").dataset.mailbox, focused.dataset.list] : null;
  $("mb-boxes").tBodies[0].replaceChildren(...boxes.map((b) => {
    const tr = document.createElement("tr");
    tr.dataset.mailbox = b.name;
    tr.dataset.up = b.connected ? "true" : "false";
    const th = el("th", b.name);
    th.scope = "row";
    th.append(el("span", b.address, "address"));
    tr.append(th);
    cell(tr, "").replaceChildren(...mailState(b));
    cell(tr, String(b.stored_today));
    cell(tr, String(b.stored_total));
    cell(tr, b.last_message_at ? dateTime.format(new Date(b.last_message_at)) : "nessuno");
    cell(tr, "").append(countButton(b, "quarantine", b.quarantined, "in quarantena"));
    cell(tr, "").append(countButton(b, "outbox", b.not_sent, "non inviati"));
    return tr;
  }));
  if (refocus) {  // the rows are made again: the focus stays on the same button
    const again = document.querySelector(
      `#mb-boxes tr[data-mailbox="${CSS.escape(refocus[0])}"] button[data-list="${refocus[1]}"]`);
    if (again) again.focus();
  }
}

async function openMailList(kind, box) {
  mailList = { kind, box };
  say("mb-done", "");
  say("mb-error", "");
  $("mb-list-title").textContent = kind === "quarantine"
    ? `In quarantena: ${box}` : `Invii non riusciti: ${box}`;
  $("mb-list").hidden = false;
  await loadMailList();
  $("mb-list-title").focus();
}

function closeMailList() {
  const was = mailList;
  mailList = null;
  $("mb-list").hidden = true;
  if (was) {
    const back = document.querySelector(`#mb-boxes tr[data-mailbox="${CSS.escape(was.box)}"] `
                                        + `button[data-list="${was.kind}"]`);
    if (back) back.focus();
  }
}

async function loadMailList() {
  const open = mailList;
  if (!open) return;
  const path = open.kind === "quarantine" ? "quarantine" : "outbox";
  const answer = await ask("GET", `${MAIL}/${path}?mailbox=${encodeURIComponent(open.box)}`);
  if (open !== mailList || !token) return;  // closed or another opened meanwhile
  if (!answer.ok) {
    say("mb-error", `Elenco non disponibile: ${refusal(answer)}.`);
    return;
  }
  const rows = answer.data;
  const quarantine = open.kind === "quarantine";
  $("mb-quarantine").hidden = !quarantine || rows.length === 0;
  $("mb-outbox").hidden = quarantine || rows.length === 0;
  $("mb-list-empty").hidden = rows.length > 0;
  $("mb-list-empty").textContent = quarantine ? "Nessun messaggio in quarantena."
    : "Nessun invio non riuscito.";
  if (quarantine) $("mb-quarantine").tBodies[0].replaceChildren(...rows.map(quarantineRow));
  else $("mb-outbox").tBodies[0].replaceChildren(...rows.map(outboxRow));
}

function actionButton(text, hidden, onClick) {
  const button = el("button", text, "secondary");
  button.type = "button";
  button.append(el("span", hidden, "sr-only"));
  button.addEventListener("click", onClick);
  return button;
}

function quarantineRow(m) {
  const tr = document.createElement("tr");
  tr.dataset.id = String(m.id);
  const when = dateTime.format(new Date(m.received_at));
  const th = el("th", when);
  th.scope = "row";
  tr.append(th);
  cell(tr, m.reason).className = "subject";
  cell(tr, m.sender || "illeggibile").className = "subject";
  cell(tr, m.subject || "illeggibile").className = "subject";
  const box = el("div", undefined, "assign");
  box.append(actionButton("Scarica", ` il messaggio del ${when}`, () => download(m)),
             actionButton("Visto", `: togli dall'elenco il messaggio del ${when}`,
                          () => lookedAt(m, when)));
  cell(tr, "").append(box);
  return tr;
}

function outboxRow(m) {
  const tr = document.createElement("tr");
  tr.dataset.id = String(m.id);
  const th = el("th", m.ticket || "nessuna");
  th.scope = "row";
  tr.append(th);
  cell(tr, m.recipient).className = "subject";
  cell(tr, KINDS[m.kind] || m.kind);
  cell(tr, NOT_SENT[m.status] || m.status);
  cell(tr, String(m.attempts));
  cell(tr, m.error || "—").className = "subject";
  cell(tr, "").append(actionButton("Riprova", ` l'invio a ${m.recipient}`, () => retry(m)));
  return tr;
}

async function download(m) {
  // The token goes in a header, never in a link: fetched, then saved from memory.
  let response = null;
  try {
    response = await fetch(`${MAIL}/quarantine/${m.id}/raw`, {
      cache: "no-store", headers: { "Authorization": `Bearer ${token}` } });
  } catch (_) { /* said below */ }
  if (!response || !response.ok) {
    say("mb-error", `Messaggio non scaricato: ${refusal({ status: response ? response.status : 0,
                                                          data: null })}.`);
    return;
  }
  const url = URL.createObjectURL(await response.blob());
  const a = el("a");
  a.href = url;
  a.download = `messaggio-${m.id}.eml`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

async function mailAction(path, done, failed) {
  if (mailBusy) return;  // one at a time: the answer refreshes the lists
  mailBusy = true;
  say("mb-done", "");
  say("mb-error", "");
  const answer = await ask("POST", path);
  mailBusy = false;
  if (!token) return;
  if (answer.ok) say("mb-done", done);
  else if (answer.status === 401 || answer.status === 403) {
    say("mb-error", `${failed}: la chiave non è abilitata alla supervisione.`);
  } else say("mb-error", `${failed}: ${refusal(answer)}.`);
  await loadMail();
  if (mailList && !$("mb-list").hidden) $("mb-list-title").focus();  // its row is gone
}

function lookedAt(m, when) {
  return mailAction(`${MAIL}/quarantine/${m.id}/done`,
                    `Messaggio del ${when} segnato come visto: tolto dall'elenco.`,
                    "Messaggio non segnato");
}

function retry(m) {
  return mailAction(`${MAIL}/outbox/${m.id}/retry`,
                    `Messaggio a ${m.recipient} rimesso in invio.`, "Invio non ripreso");
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const given = $("token").value;
    if (given) signIn(given);
    else $("signin-error").textContent = "Scrivi la chiave personale.";
  });
  $("signout").addEventListener("click", () => signOut(""));
  $("mb-close").addEventListener("click", closeMailList);
  setInterval(() => { if (socket) renderQueues(); }, 1000);  // the waits keep growing
  const saved = sessionStorage.getItem(KEY);
  if (saved) signIn(saved);
});
