"""Agents over HTTP (centralino.web.agents, centralino.desk): who may see and change which
agent, the state an agent ends up in through the REST API, what an agent's console and a
supervisor's board receive on their WebSockets, and the verdict on a recall call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from centralino.desk import OfferMade
from centralino.storage.models import RecallAttempt, RecallRequest
from centralino.web import agents as agents_api
from cti.agents import AgentState
from cti.messages import QueueConnected, QueueJoined
from tests.unit.webparts import (
    ADMIN,
    NOW,
    SUPERVISOR,
    Parts,
    bearer,
    make_desk,
    token,
    web_parts,
)

Client = TestClient[Any, Any]


@pytest.fixture
async def web(tmp_path) -> AsyncIterator[tuple[Client, Parts]]:
    async with web_parts(tmp_path) as parts:
        yield parts


async def act(client: Client, agent_id: str, action: str, by: str, **body: str) -> Any:
    return await client.post(f"/api/agents/{agent_id}/{action}", json=body, headers=bearer(by))


async def state_of(client: Client, agent_id: str) -> dict[str, Any]:
    resp = await client.get(f"/api/agents/{agent_id}", headers=bearer(SUPERVISOR))
    assert resp.status == 200
    return await resp.json()


async def open_console(client: Client, agent_id: str, secret: str, states: bool = False) -> Any:
    """A console signed in; returns the socket and its hello."""
    ws = await client.ws_connect(f"/ws/agents/{agent_id}")
    await ws.send_json({"token": secret, "states": states})
    return ws, await ws.receive_json(timeout=2)


async def open_board(client: Client, secret: str = SUPERVISOR) -> Any:
    ws = await client.ws_connect("/ws/supervisor")
    await ws.send_json({"token": secret})
    return ws, await ws.receive_json(timeout=2)


async def refused(ws: Any) -> tuple[dict[str, Any], int | None]:
    """The error a refused socket is told, and the close code it gets."""
    said = await ws.receive_json(timeout=2)
    closing = await ws.receive(timeout=2)
    assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
    return said, ws.close_code


# --- REST: who may see and change whom ---------------------------------------------------------

async def test_supervisors_and_admin_list_every_agent_and_agents_may_not(web):
    client, parts = web
    for secret in (SUPERVISOR, ADMIN):
        resp = await client.get("/api/agents", headers=bearer(secret))
        assert resp.status == 200
        listed = await resp.json()
        assert [a["id"] for a in listed] == list(parts.config.agents.agents)
        assert {a["state"] for a in listed} == {"logged_out"}
    resp = await client.get("/api/agents", headers=bearer(token("1001")))
    assert resp.status == 403
    assert (await resp.json())["error"] == "an agent token cannot do this"
    resp = await client.get("/api/agents")
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = await client.get("/api/agents", headers=bearer("dev-nobody"))
    assert (resp.status, (await resp.json())["error"]) == (401, "unknown token")


async def test_an_agent_sees_only_themselves(web):
    client, _ = web
    resp = await client.get("/api/agents/1001", headers=bearer(token("1001")))
    assert resp.status == 200
    me = await resp.json()
    assert (me["id"], me["name"], me["state"], me["topics"]) == (
        "1001", "Giulia Rossi", "logged_out", {"suap": 0, "generale": 1})
    resp = await client.get("/api/agents/1002", headers=bearer(token("1001")))
    assert resp.status == 403
    resp = await client.get("/api/agents/ghost", headers=bearer(SUPERVISOR))
    assert (resp.status, (await resp.json())["error"]) == (404, "no agent 'ghost'")


async def test_an_agent_logs_in_pauses_resumes_and_logs_out_through_the_api(web):
    client, parts = web
    mine = token("1001")
    steps = [("login", {}, "available", ""), ("pause", {"reason": " pranzo "}, "paused", "pranzo"),
             ("resume", {}, "available", ""), ("logout", {}, "logged_out", "")]
    for action, body, state, reason in steps:
        parts.clock.advance(60)
        resp = await act(client, "1001", action, mine, **body)
        assert resp.status == 200, await resp.text()
        answer = await resp.json()
        assert (answer["state"], answer["reason"]) == (state, reason)
        assert answer["since"] == parts.clock.now().isoformat()
        assert (await state_of(client, "1001"))["state"] == state
    # Every change is stored, newest first, with who asked.
    resp = await client.get("/api/agents/1001/events", headers=bearer(mine))
    assert resp.status == 200
    events = await resp.json()
    assert [(e["state"], e["reason"], e["by"]) for e in events] == [
        ("logged_out", "", "agent:1001"), ("available", "", "agent:1001"),
        ("paused", "pranzo", "agent:1001"), ("available", "", "agent:1001")]
    assert events[0]["at"] == parts.clock.now().isoformat()
    assert (await client.get("/api/agents/1002/events", headers=bearer(mine))).status == 403


async def test_agents_may_not_change_each_other_but_supervisors_and_admin_may(web):
    client, _ = web
    resp = await act(client, "1001", "login", token("1002"))
    assert resp.status == 403 and "agent token cannot do this" in (await resp.json())["error"]
    assert (await state_of(client, "1001"))["state"] == "logged_out"
    assert (await act(client, "1001", "login", SUPERVISOR)).status == 200
    assert (await act(client, "1001", "pause", ADMIN, reason="riunione")).status == 200
    events = await (await client.get("/api/agents/1001/events", headers=bearer(ADMIN))).json()
    assert [(e["state"], e["by"]) for e in events] == [
        ("paused", "admin:admin"), ("available", "supervisor:supervisore")]


@pytest.mark.parametrize("setup, action, body, status, says", [
    ([], "pause", {"reason": "pranzo"}, 409, "log in first"),
    (["login"], "pause", {}, 400, "reason: say why (a pause needs a reason)"),
    (["login"], "pause", {"reason": " x "}, 400, "reason: say why (a pause needs a reason)"),
    (["login"], "resume", {}, 409, "not paused (now available)"),
    ([], "resume", {}, 409, "not paused (now logged_out)"),
    ([], "login", {"why": "x"}, 422, "why: Extra inputs are not permitted"),
    ([], "pause", {"reason": "x" * 256}, 422, "reason: String should have at most 255"),
])
async def test_refused_state_changes_say_why(web, setup, action, body, status, says):
    client, _ = web
    for step in setup:
        assert (await act(client, "1001", step, token("1001"))).status == 200
    before = await state_of(client, "1001")
    resp = await act(client, "1001", action, token("1001"), **body)
    assert resp.status == status
    assert (await resp.json())["error"].startswith(says)
    assert await state_of(client, "1001") == before  # nothing changed


async def test_a_body_that_is_not_json_is_400(web):
    client, _ = web
    resp = await client.post("/api/agents/1001/login", data=b"{", headers=bearer(token("1001")))
    assert resp.status == 400
    assert (await resp.json())["error"] == "the body is not valid JSON (UTF-8)"
    assert (await state_of(client, "1001"))["state"] == "logged_out"


async def test_logging_in_with_a_caller_waiting_rings_the_agent(web):
    client, parts = web
    session = parts.caller_waits("c1", "suap", seconds_ago=30, caller="3471234567")
    board, _ = await open_board(client)
    resp = await act(client, "1001", "login", token("1001"))
    answer = await resp.json()
    assert (answer["state"], answer["call_id"]) == ("ringing", "c1")
    [offer] = session.delivered
    assert isinstance(offer, OfferMade)
    assert (offer.offer.call_id, offer.offer.topic, offer.offer.agent_id) == ("c1", "suap", "1001")
    assert parts.queues.get("c1").offered_to == "1001"
    # The board saw the login, then the phone ringing.
    seen = [await board.receive_json(timeout=2) for _ in range(2)]
    assert [(m["type"], m["agent"], m["state"], m["by"]) for m in seen] == [
        ("agent", "1001", "available", "agent:1001"), ("agent", "1001", "ringing", "system")]
    await board.close()


async def test_the_agent_with_the_lowest_penalty_gets_the_caller(web):
    client, parts = web
    for agent_id in ("1005", "1001"):  # penalties 2 and 1 for generale
        assert (await act(client, agent_id, "login", SUPERVISOR)).status == 200
    session = parts.caller_waits("c1", "generale")
    parts.desk.distribute()  # as a caller joining the line makes it
    assert [e.offer.agent_id for e in session.delivered] == ["1001"]
    assert (await state_of(client, "1001"))["state"] == "ringing"
    assert (await state_of(client, "1005"))["state"] == "available"


async def test_a_caller_gone_before_the_offer_leaves_the_agent_free(web):
    client, parts = web
    parts.caller_waits("c1", "suap")
    del parts.registry.calls["c1"]  # hung up in the same instant
    answer = await (await act(client, "1001", "login", token("1001"))).json()
    assert (answer["state"], answer["call_id"]) == ("available", None)
    events = await (await client.get("/api/agents/1001/events", headers=bearer(ADMIN))).json()
    assert [(e["state"], e["by"]) for e in events] == [
        ("available", "system"), ("ringing", "system"), ("available", "agent:1001")]


async def test_a_pause_asked_during_a_call_takes_effect_after_it(web):
    client, parts = web
    parts.caller_waits("c1", "suap")
    await act(client, "1001", "login", token("1001"))
    agent = parts.desk.agents["1001"]
    parts.desk.record(agent.answered(parts.clock.now()))  # as the call session does
    resp = await act(client, "1001", "pause", token("1001"), reason="pranzo")
    answer = await resp.json()
    assert (resp.status, answer["state"], answer["after_call"]) == (200, "on_call", "paused")
    parts.clock.advance(120)
    parts.desk.call_ended(agent, 0)  # no wrap-up
    now = await state_of(client, "1001")
    assert (now["state"], now["reason"], now["after_call"], now["call_id"]) == (
        "paused", "pranzo", None, None)
    # Changing one's mind before the call ends: resume cancels the pause asked for.
    parts.caller_waits("c2", "suap")
    await act(client, "1001", "resume", token("1001"))
    assert (await state_of(client, "1001"))["state"] == "ringing"
    await act(client, "1001", "pause", token("1001"), reason="pranzo")
    answer = await (await act(client, "1001", "resume", token("1001"))).json()
    assert (answer["state"], answer["after_call"]) == ("ringing", None)


async def test_staffing_counts_paused_agents_as_logged_in_but_not_serving(web):
    client, parts = web
    await act(client, "1001", "login", SUPERVISOR)
    await act(client, "1004", "login", SUPERVISOR)
    await act(client, "1004", "pause", SUPERVISOR, reason="formazione")
    assert parts.desk.staffing("suap") == (2, 1, 1)
    assert parts.desk.staffing("tecnico") == (1, 0, 0)
    assert parts.desk.staffing("anagrafe") == (0, 0, 0)


async def test_after_a_restart_agents_are_back_as_they_were_and_free(web):
    client, parts = web
    await act(client, "1001", "login", token("1001"))
    await act(client, "1002", "login", token("1002"))
    await act(client, "1002", "pause", token("1002"), reason="pranzo")
    parts.caller_waits("c1", "anagrafe")
    await act(client, "1003", "login", token("1003"))  # rings for c1 when the service stops
    await parts.writer.drain()
    parts.replace(desk=make_desk(parts))  # the next run, as Service starts it
    parts.desk.configure(parts.config.agents, await parts.store.last_agent_states())
    listed = await (await client.get("/api/agents", headers=bearer(SUPERVISOR))).json()
    assert [(a["id"], a["state"], a["reason"]) for a in listed] == [
        ("1001", "available", ""), ("1002", "paused", "pranzo"), ("1003", "available", ""),
        ("1004", "logged_out", ""), ("1005", "logged_out", "")]
    assert listed[1]["since"] == NOW.isoformat()


# --- the agent's console --------------------------------------------------------------------

async def test_the_console_says_hello_with_the_agent_and_its_wrap_up_times(web):
    client, parts = web
    ws, hello = await open_console(client, "1001", token("1001"))
    assert hello["type"] == "hello" and "offer" not in hello
    assert (hello["agent"]["id"], hello["agent"]["state"]) == ("1001", "logged_out")
    queues = parts.config.call.queues
    assert hello["wrap_up"] == {"suap": queues["suap"].wrap_up,
                                "generale": queues["generale"].wrap_up}
    await ws.close()
    # A supervisor (and the admin) may open anybody's console.
    for secret in (SUPERVISOR, ADMIN):
        ws, hello = await open_console(client, "1003", secret)
        assert hello["agent"]["name"] == "Anna Russo"
        await ws.close()


async def test_a_console_gets_its_own_state_changes_only_when_it_asks(web):
    client, parts = web
    watching, _ = await open_console(client, "1001", token("1001"), states=True)
    quiet, _ = await open_console(client, "1001", token("1001"))
    other, _ = await open_console(client, "1002", token("1002"), states=True)
    await act(client, "1001", "login", token("1001"))
    await act(client, "1001", "pause", SUPERVISOR, reason="riunione")
    got = [await watching.receive_json(timeout=2) for _ in range(2)]
    assert [(m["type"], m["agent"], m["state"], m["reason"], m["by"]) for m in got] == [
        ("agent", "1001", "available", "", "agent:1001"),
        ("agent", "1001", "paused", "riunione", "supervisor:supervisore")]
    # The quiet console and another agent's got none of it: their next message is the next
    # thing meant for them.
    await act(client, "1002", "login", token("1002"))
    assert (await other.receive_json(timeout=2))["agent"] == "1002"
    await parts.desk.pop("1001", parts.screen_pop("c9", "o9"))
    assert (await quiet.receive_json(timeout=2))["type"] == "offer"
    for ws in (watching, quiet, other):
        await ws.close()


async def test_a_screen_pop_reaches_every_console_of_the_agent_and_the_ack_is_stored(web):
    client, parts = web
    tabs = [(await open_console(client, "1001", token("1001")))[0] for _ in range(2)]
    parts.caller_waits("c1", "suap", caller="3471234567")
    await act(client, "1001", "login", token("1001"))
    parts.records.offer_made("o1", "c1", "1001", parts.clock.now())  # as the session does
    assert await parts.desk.pop("1001", parts.screen_pop("c1", "o1")) == 2
    for tab in tabs:
        pop = await tab.receive_json(timeout=2)
        assert (pop["type"], pop["offer_id"], pop["call_id"], pop["caller_number"],
                pop["topic_name"]) == ("offer", "o1", "c1", "3471234567",
                                       parts.config.call.queues["suap"].name)
    parts.clock.advance(2)
    await tabs[0].send_json({"type": "ack", "offer_id": "o1"})
    await tabs[0].close()  # the server has read the ack before the close
    await parts.writer.drain()
    [offer] = await parts.store.offers_for("c1")
    assert offer.acked_at == parts.clock.now()
    await tabs[1].close()


async def test_an_ack_for_another_agents_offer_is_not_stored(web):
    client, parts = web
    parts.records.offer_made("o1", "c1", "1001", parts.clock.now())
    ws, _ = await open_console(client, "1002", token("1002"))
    await ws.send_json({"type": "ack", "offer_id": "o1"})
    await ws.close()
    await parts.writer.drain()
    [offer] = await parts.store.offers_for("c1")
    assert offer.acked_at is None


async def test_a_console_reopened_during_the_call_shows_its_pop_again(web):
    client, parts = web
    parts.caller_waits("c1", "suap")
    await act(client, "1001", "login", token("1001"))
    pop = parts.screen_pop("c1", "o1")
    assert await parts.desk.pop("1001", pop) == 0  # no console open: nobody got it
    ws, hello = await open_console(client, "1001", token("1001"))
    assert hello["offer"]["offer_id"] == "o1" and hello["agent"]["call_id"] == "c1"
    await ws.close()
    agent = parts.desk.agents["1001"]
    parts.desk.record(agent.answered(parts.clock.now()))
    parts.desk.call_ended(agent, 0)
    ws, hello = await open_console(client, "1001", token("1001"))
    assert "offer" not in hello and hello["agent"]["state"] == "available"
    await ws.close()


async def test_the_console_sees_wrap_up_then_available(web):
    client, parts = web
    ws, _ = await open_console(client, "1001", token("1001"), states=True)
    parts.caller_waits("c1", "suap")
    await act(client, "1001", "login", token("1001"))
    agent = parts.desk.agents["1001"]
    parts.desk.record(agent.answered(parts.clock.now()))
    parts.desk.call_ended(agent, 0.05)  # wrap-up seconds (a real timer)
    states = [(await ws.receive_json(timeout=2))["state"] for _ in range(5)]
    assert states == ["available", "ringing", "on_call", "wrap_up", "available"]
    await ws.close()


async def test_offers_missed_in_a_row_pause_the_agent(web):
    client, parts = web
    ws, _ = await open_console(client, "1001", token("1001"), states=True)
    await act(client, "1001", "login", token("1001"))
    assert parts.config.agents.max_missed == 3
    agent = parts.desk.agents["1001"]
    for n in range(3):
        parts.caller_waits(f"c{n}", "suap")
        parts.desk.distribute()
        assert agent.state is AgentState.RINGING
        parts.desk.missed(agent)
    told = [await ws.receive_json(timeout=2) for _ in range(7)]
    assert [m["state"] for m in told] == ["available", "ringing", "available", "ringing",
                                          "available", "ringing", "paused"]
    assert (told[-1]["reason"], told[-1]["by"]) == ("3 calls not answered", "system")
    assert (await state_of(client, "1001"))["missed_in_a_row"] == 3
    # Resuming starts the count again.
    answer = await (await act(client, "1001", "resume", token("1001"))).json()
    assert answer["missed_in_a_row"] == 0
    await ws.close()


# --- sockets refused --------------------------------------------------------------------------

@pytest.mark.parametrize("path, first, code, says", [
    ("/ws/agents/1001", {"token": "dev-nobody"}, 4001, "unknown token"),
    ("/ws/supervisor", {"token": "dev-nobody"}, 4001, "unknown token"),
    ("/ws/agents/1001", {"token": token("1002")}, 4003, "not your console"),
    ("/ws/agents/ghost", {"token": SUPERVISOR}, 4003, "not your console"),
    ("/ws/supervisor", {"token": token("1001")}, 4003, "supervisors only"),
    ("/ws/agents/1001", {"hello": "there"}, 1008, 'the first message must be {"token": "..."}'),
    ("/ws/supervisor", "not json", 1008, 'the first message must be {"token": "..."}'),
])
async def test_a_socket_without_the_right_token_is_told_why_and_closed(web, path, first, code,
                                                                       says):
    client, parts = web
    ws = await client.ws_connect(path)
    if isinstance(first, str):
        await ws.send_str(first)
    else:
        await ws.send_json(first)
    said, closed_with = await refused(ws)
    assert (said, closed_with) == ({"type": "error", "error": says}, code)
    assert not parts.desk.consoles.get("1001") and not parts.desk.supervisors


async def test_a_binary_first_message_is_refused(web):
    client, _ = web
    ws = await client.ws_connect("/ws/agents/1001")
    await ws.send_bytes(b'{"token": "dev-1001"}')
    said, code = await refused(ws)
    assert (said["error"], code) == ('send {"token": ...} first', 1008)


async def test_a_socket_silent_after_opening_is_closed(web, monkeypatch):
    client, _ = web
    monkeypatch.setattr(agents_api, "AUTH_TIMEOUT", 0.05)
    ws = await client.ws_connect("/ws/supervisor")
    said, code = await refused(ws)
    assert (said["error"], code) == ('send {"token": ...} first', 4001)


async def test_a_console_that_sends_anything_but_acks_is_closed(web):
    client, parts = web
    ws, _ = await open_console(client, "1001", token("1001"))
    await ws.send_json({"type": "ack", "offer_id": "o1"})  # fine
    await ws.send_json({"type": "chat", "text": "ciao"})
    said, code = await refused(ws)
    assert (said["error"], code) == ('expected {"type": "ack", "offer_id": "..."}', 1008)
    await parts.desk.pop("1001", parts.screen_pop("c1", "o2"))  # nobody to send to
    assert not parts.desk.consoles["1001"]


async def test_a_message_over_the_limit_closes_the_socket(web):
    client, _ = web
    ws, _ = await open_console(client, "1001", token("1001"))
    await ws.send_str("x" * (agents_api.MAX_MESSAGE + 1))
    msg = await ws.receive(timeout=2)
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED) and ws.close_code == 1009


# --- the supervisors' board -------------------------------------------------------------------

async def test_the_board_starts_with_a_snapshot_of_agents_and_lines(web):
    client, parts = web
    await act(client, "1003", "login", SUPERVISOR)
    parts.caller_waits("c1", "suap", seconds_ago=42.25, caller="3471234567")
    board, snapshot = await open_board(client, ADMIN)
    assert snapshot["type"] == "snapshot"
    assert [(a["id"], a["state"]) for a in snapshot["agents"]] == [
        ("1001", "logged_out"), ("1002", "logged_out"), ("1003", "available"),
        ("1004", "logged_out"), ("1005", "logged_out")]
    assert snapshot["queues"] == {"suap": [{
        "call_id": "c1", "caller": "3471234567", "line": "Associazioni di categoria",
        "since": (NOW - timedelta(seconds=42.25)).isoformat(), "waited": 42.2, "ringing": None,
        "recall": False}]}
    await board.close()


async def test_the_board_follows_agents_and_queue_events_and_ignores_what_it_sends(web):
    client, parts = web
    board, _ = await open_board(client)
    other, _ = await open_board(client)
    await board.send_str("anything")  # dropped
    parts.desk.broadcast(QueueJoined(call_id="c1", topic="suap", caller="3471234567",
                                     position=1, waited=0))
    joined = await board.receive_json(timeout=2)
    assert joined == {"type": "queue", "event": "joined", "call_id": "c1", "topic": "suap",
                      "caller": "3471234567", "position": 1, "waited": 0.0}
    await act(client, "1004", "login", token("1004"))
    changed = await board.receive_json(timeout=2)
    assert (changed["type"], changed["agent"], changed["state"]) == ("agent", "1004", "available")
    await other.close()
    parts.desk.broadcast(QueueConnected(call_id="c1", topic="suap", agent="1004"))
    assert (await board.receive_json(timeout=2))["event"] == "connected"
    await board.close()


async def test_a_stopping_service_closes_the_sockets(web):
    client, _ = web
    console, _ = await open_console(client, "1001", token("1001"))
    board, _ = await open_board(client)
    await client.app.shutdown()
    for ws in (console, board):
        msg = await ws.receive(timeout=2)
        assert msg.type is WSMsgType.CLOSE and msg.data == 1001  # going away
        assert msg.extra == "service stopping"


# --- the verdict on a recall call -------------------------------------------------------------

async def recall_called(parts: Parts, recall_id: str, outcome: str = "answered",
                        agent: str = "1001", number: str = "+393471234567") -> None:
    """A recall request whose call (by `agent`) is over, ended with `outcome`."""
    now = parts.clock.now()
    await parts.store.create_recall(RecallRequest(
        id=recall_id, number=number, number_type="mobile", topic="suap", mode="now",
        name="Maria Rossi", note="", client="portale", status="calling", created_at=now,
        updated_at=now, due_at=now, attempts=0))
    status = "done" if outcome == "answered" else "waiting"
    assert await parts.store.end_recall_attempt(RecallAttempt(
        request_id=recall_id, at=now, outcome=outcome, agent_id=agent, dialled_at=now),
        status, None, counted=True)


async def mark(client: Client, recall_id: str, outcome: str, agent: str = "1001",
               by: str | None = None) -> Any:
    return await client.post(f"/api/agents/{agent}/recalls/{recall_id}/outcome",
                             json={"outcome": outcome}, headers=bearer(by or token(agent)))


async def test_the_agent_confirms_a_recall_was_done(web):
    client, parts = web
    await recall_called(parts, "r" * 32)
    for _ in range(2):  # the same verdict again is harmless
        resp = await mark(client, "r" * 32, "done")
        assert resp.status == 200
        assert await resp.json() == {"id": "r" * 32, "outcome": "done", "status": "done",
                                     "attempts": 1, "due_at": NOW.isoformat()}
    assert parts.recalls.pokes == 0


async def test_an_answering_machine_puts_the_request_back_to_be_called_again(web):
    client, parts = web
    await recall_called(parts, "r" * 32)
    parts.clock.advance(60)
    resp = await mark(client, "r" * 32, "no_answer")
    answer = await resp.json()
    first_retry = parts.settings.recalls.retry_delays[0]
    assert (resp.status, answer["status"], answer["attempts"]) == (200, "waiting", 1)
    assert answer["due_at"] == (parts.clock.now() + timedelta(seconds=first_retry)).isoformat()
    assert parts.recalls.pokes == 1  # the scheduler looks again
    [attempt] = await parts.store.recall_attempts("r" * 32)
    assert attempt.outcome == "no_answer" and "marked no_answer by agent:1001" in attempt.detail
    # A verdict once given stands.
    resp = await mark(client, "r" * 32, "wrong_number")
    assert resp.status == 409
    assert (await resp.json())["error"] == "the last call was already recorded as no_answer"


async def test_a_wrong_number_fails_the_request_and_supervisors_may_say_so(web):
    client, parts = web
    await recall_called(parts, "r" * 32)
    resp = await mark(client, "r" * 32, "wrong_number", by=SUPERVISOR)
    assert (resp.status, (await resp.json())["status"]) == (200, "failed")
    assert (await parts.store.get_recall("r" * 32)).status == "failed"


async def test_only_the_agent_who_had_the_call_may_mark_it(web):
    client, parts = web
    await recall_called(parts, "r" * 32, agent="1001")
    resp = await mark(client, "r" * 32, "wrong_number", agent="1002")
    assert resp.status == 403
    assert (await resp.json())["error"] == "the last call of this request was 1001's"
    resp = await mark(client, "r" * 32, "wrong_number", agent="1001", by=token("1002"))
    assert resp.status == 403  # and nobody marks it in another agent's name
    assert (await parts.store.get_recall("r" * 32)).status == "done"


async def test_a_recall_cannot_be_marked_before_its_call_is_over(web):
    client, parts = web
    now = parts.clock.now()
    await parts.store.create_recall(RecallRequest(
        id="c" * 32, number="+393471234567", number_type="mobile", topic="suap", mode="now",
        name="x", note="", client="portale", status="calling", created_at=now, updated_at=now,
        due_at=now, attempts=0))
    resp = await mark(client, "c" * 32, "done")
    assert resp.status == 409 and (await resp.json())["error"].startswith(
        "the call is still being placed or going on")
    await parts.store.set_recall_status("c" * 32, "waiting", now, only_from=("calling",))
    resp = await mark(client, "c" * 32, "done")
    assert (resp.status, (await resp.json())["error"]) == (
        409, "no call was placed for this request")


async def test_reopening_a_request_while_the_citizen_has_another_open_is_refused(web):
    client, parts = web
    await recall_called(parts, "a" * 32)
    now = parts.clock.now()
    await parts.store.create_recall(RecallRequest(
        id="b" * 32, number="+393471234567", number_type="mobile", topic="suap", mode="now",
        name="x", note="", client="portale", status="waiting", created_at=now, updated_at=now,
        due_at=now, attempts=0))
    resp = await mark(client, "a" * 32, "no_answer")
    assert resp.status == 409
    assert (await resp.json())["error"].startswith("the citizen has another open request")
    assert (await parts.store.get_recall("a" * 32)).status == "done"


@pytest.mark.parametrize("recall_id, body, status", [
    ("0" * 32, {"outcome": "done"}, 404),
    ("x" * 33, {"outcome": "done"}, 404),
    ("r" * 32, {"outcome": "maybe"}, 422),
    ("r" * 32, {}, 422),
])
async def test_unknown_recalls_and_unknown_verdicts_are_refused(web, recall_id, body, status):
    client, parts = web
    await recall_called(parts, "r" * 32)
    resp = await client.post(f"/api/agents/1001/recalls/{recall_id}/outcome", json=body,
                             headers=bearer(token("1001")))
    assert resp.status == status
    assert (await parts.store.get_recall("r" * 32)).status == "done"


async def test_an_agent_sees_where_a_caller_can_be_transferred(web):
    client, parts = web
    for agent_id in ("1001", "1002"):
        assert (await act(client, agent_id, "login", token(agent_id))).status == 200
    resp = await client.get("/api/agents/1001/transfer-targets", headers=bearer(token("1001")))
    assert resp.status == 200
    targets = await resp.json()
    topics = {t["id"]: t for t in targets["topics"]}
    assert set(topics) == set(parts.config.call.queues)
    assert all(t["name"] and t["logged_in"] >= 0 for t in topics.values())
    # Colleagues taking calls, never oneself; nobody logged out.
    assert [a["id"] for a in targets["agents"]] == ["1002"]
    assert targets["agents"][0]["state"] == "available"
    # The second level (tickets.yaml): its other members, how many are in and free.
    assert targets["groups"] == [{"id": "back-office", "name": "Back office", "logged_in": 0,
                                  "free": 0}]
    resp = await client.get("/api/agents/1002/transfer-targets", headers=bearer(token("1001")))
    assert resp.status == 403
    resp = await client.post("/api/agents/1001/call/transfer", json={"topic": "suap"},
                             headers=bearer(token("1001")))
    assert (resp.status, (await resp.json())["error"]) == (
        409, "agent 1001 has no call in progress")
    resp = await client.post("/api/agents/1001/call/transfer",
                             json={"topic": "suap", "agent": "1002"},
                             headers=bearer(token("1001")))
    assert resp.status in (400, 422) and "exactly one of topic, agent" in await resp.text()
