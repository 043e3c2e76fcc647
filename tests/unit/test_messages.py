"""The WebSockets' messages as models (cti.messages): the same JSON, byte for byte, as the
hand-built dicts they replaced; the unions tell the messages apart; the schema covers them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel, ValidationError

from centralino.desk import agent_json
from centralino.web.agents import LINES, message_schema
from centralino.web.common import authenticate, plain_errors
from cti.agents import Agent, AgentState, Change
from cti.messages import (
    CLIENT,
    SCHEMA_URL,
    SERVER,
    Ack,
    AgentChanged,
    AgentView,
    Auth,
    CallOffer,
    Error,
    Hello,
    MenuStep,
    PreviousContact,
    PreviousTicket,
    QueueConnected,
    QueueJoined,
    QueueLeft,
    RecallAttemptView,
    RecallOffer,
    RecallOutcome,
    Snapshot,
    WaitingView,
    json_schema,
    wire,
)
from queue_manager.queues import QueueManager, Waiting
from tests import schema_check

AT = datetime(2026, 3, 2, 9, 15, 4, 120500, tzinfo=UTC)
ROME = timezone(timedelta(hours=1))


def agent() -> Agent:
    a = Agent("1001", "Anna Rossi", "PJSIP/1001", {"alpha": 0, "beta": 2})
    a.state, a.since, a.call_id = AgentState.RINGING, AT, "c0ffee"
    a.after_call = (AgentState.PAUSED, "pranzo", "agent:1001")
    return a


AGENT_DICT = {"id": "1001", "name": "Anna Rossi", "state": "ringing", "reason": "",
              "since": "2026-03-02T09:15:04.120500+00:00", "topics": {"alpha": 0, "beta": 2},
              "call_id": "c0ffee", "missed_in_a_row": 0, "after_call": "paused"}

CALL_OFFER = CallOffer(
    offer_id="o1", call_id="c0ffee", caller_number="0611111111", caller_name="Mario Bianchi",
    number="0999000001", line="Test menu line", topic="alpha", topic_name="Alpha",
    path=[MenuStep(menu="main", key="1", label="Sub"), MenuStep(menu="sub", key="1",
                                                                label="Alpha")],
    waited_seconds=12.3,
    previous_contacts=[
        PreviousContact(at=AT - timedelta(days=1), line="Test direct line", topic=None,
                        outcome="abandoned", agent=None),
        PreviousContact(at=AT - timedelta(days=2), line="Test menu line", topic="alpha",
                        outcome="answered", agent="1002")],
    previous_tickets=[PreviousTicket(number="HD-2026-000042", subject="Rimborsi",
                                     state="risolto", created_at=AT - timedelta(days=3))],
    offered_at=AT)
CALL_OFFER_DICT = {
    "type": "offer", "offer_id": "o1", "call_id": "c0ffee", "caller_number": "0611111111",
    "caller_name": "Mario Bianchi", "number": "0999000001", "line": "Test menu line",
    "topic": "alpha", "topic_name": "Alpha",
    "path": [{"menu": "main", "key": "1", "label": "Sub"},
             {"menu": "sub", "key": "1", "label": "Alpha"}],
    "waited_seconds": 12.3,
    "previous_contacts": [
        {"at": "2026-03-01T09:15:04.120500+00:00", "line": "Test direct line", "topic": None,
         "outcome": "abandoned", "agent": None},
        {"at": "2026-02-28T09:15:04.120500+00:00", "line": "Test menu line", "topic": "alpha",
         "outcome": "answered", "agent": "1002"}],
    "previous_tickets": [{"number": "HD-2026-000042", "subject": "Rimborsi",
                          "state": "risolto", "created_at": "2026-02-27T09:15:04.120500+00:00"}],
    "offered_at": "2026-03-02T09:15:04.120500+00:00",
}

RECALL_OFFER = RecallOffer(
    offer_id="o2", call_id="r1", recall_id="r1", number="+390612345678",
    caller_number="+390612345678", caller_name="Lucia Verdi", topic="beta", topic_name="Beta",
    name="Lucia Verdi", note="pratica 42 è ferma", portal_ref=None, mode="back",
    requested_at=AT - timedelta(hours=3), due_at=AT.replace(microsecond=0),
    waited_seconds=0.1,
    attempts=[RecallAttemptView(at=AT - timedelta(minutes=5), outcome="no_answer",
                                detail="no answer in 20 s", agent="1003")],
    offered_at=AT)
RECALL_OFFER_DICT = {
    "type": "recall", "offer_id": "o2", "call_id": "r1", "recall_id": "r1",
    "number": "+390612345678", "caller_number": "+390612345678", "caller_name": "Lucia Verdi",
    "topic": "beta", "topic_name": "Beta", "name": "Lucia Verdi", "note": "pratica 42 è ferma",
    "portal_ref": None, "mode": "back", "requested_at": "2026-03-02T06:15:04.120500+00:00",
    "due_at": "2026-03-02T09:15:04+00:00", "waited_seconds": 0.1,
    "attempts": [{"at": "2026-03-02T09:10:04.120500+00:00", "outcome": "no_answer",
                  "detail": "no answer in 20 s", "agent": "1003"}],
    "offered_at": "2026-03-02T09:15:04.120500+00:00",
}

RECALL_OUTCOME = RecallOutcome(call_id="r1", offer_id="o2", outcome="busy",
                               number="+390612345678", name="Lucia Verdi", status="waiting",
                               attempts=2, next_due_at=AT + timedelta(minutes=10))
RECALL_OUTCOME_DICT = {
    "type": "recall_outcome", "call_id": "r1", "offer_id": "o2", "outcome": "busy",
    "number": "+390612345678", "name": "Lucia Verdi", "status": "waiting", "attempts": 2,
    "next_due_at": "2026-03-02T09:25:04.120500+00:00"}

# (model, the dict today's code built for it)
EXAMPLES: list[tuple[BaseModel, dict[str, object]]] = [
    (CALL_OFFER, CALL_OFFER_DICT),
    (RECALL_OFFER, RECALL_OFFER_DICT),
    (RECALL_OUTCOME, RECALL_OUTCOME_DICT),
    (RecallOutcome(call_id="r1", offer_id="o2", outcome="answered", number="+390612345678",
                   name="", status="done", attempts=1, next_due_at=None),
     {"type": "recall_outcome", "call_id": "r1", "offer_id": "o2", "outcome": "answered",
      "number": "+390612345678", "name": "", "status": "done", "attempts": 1,
      "next_due_at": None}),
    (Hello(agent=AgentView.of(agent()), wrap_up={"alpha": 5.0, "beta": 1.0}),
     {"type": "hello", "agent": AGENT_DICT, "wrap_up": {"alpha": 5.0, "beta": 1.0}}),
    (Hello(agent=AgentView.of(agent()), wrap_up={}, offer=CALL_OFFER),
     {"type": "hello", "agent": AGENT_DICT, "wrap_up": {}, "offer": CALL_OFFER_DICT}),
    (Hello(agent=AgentView.of(agent()), wrap_up={}, offer=RECALL_OUTCOME),
     {"type": "hello", "agent": AGENT_DICT, "wrap_up": {}, "offer": RECALL_OUTCOME_DICT}),
    (AgentChanged.of(Change("1002", AT.astimezone(ROME), AgentState.PAUSED,
                            "2 calls not answered", "system")),
     {"type": "agent", "agent": "1002", "state": "paused", "reason": "2 calls not answered",
      "by": "system", "at": "2026-03-02T10:15:04.120500+01:00"}),
    (Snapshot(agents=[AgentView.of(agent())], queues={"beta": [WaitingView(
        call_id="c1", caller="", line="Test direct line", since=AT, waited=3.4, ringing=None,
        recall=False)], "alpha": []}),
     {"type": "snapshot", "agents": [AGENT_DICT], "queues": {"beta": [
         {"call_id": "c1", "caller": "", "line": "Test direct line",
          "since": "2026-03-02T09:15:04.120500+00:00", "waited": 3.4, "ringing": None,
          "recall": False}], "alpha": []}}),
    (QueueJoined(call_id="c1", topic="beta", caller="0644444444", position=2, waited=0.0),
     {"type": "queue", "event": "joined", "call_id": "c1", "topic": "beta",
      "caller": "0644444444", "position": 2, "waited": 0.0}),
    (QueueJoined(call_id="r1", topic="beta", caller="+390612345678", position=1, waited=61.2,
                 recall=True),
     {"type": "queue", "event": "joined", "call_id": "r1", "topic": "beta",
      "caller": "+390612345678", "position": 1, "waited": 61.2, "recall": True}),
    (QueueLeft(call_id="c1", topic="beta", outcome="abandoned"),
     {"type": "queue", "event": "left", "call_id": "c1", "topic": "beta",
      "outcome": "abandoned"}),
    (QueueLeft(call_id="r1", topic="beta", outcome="recall", recall=True),
     {"type": "queue", "event": "left", "call_id": "r1", "topic": "beta", "outcome": "recall",
      "recall": True}),
    (QueueConnected(call_id="c1", topic="beta", agent="1003"),
     {"type": "queue", "event": "connected", "call_id": "c1", "topic": "beta",
      "agent": "1003"}),
    (QueueConnected(call_id="r1", topic="beta", agent="1003", recall=True),
     {"type": "queue", "event": "connected", "call_id": "r1", "topic": "beta",
      "agent": "1003", "recall": True}),
    (Error(error="unknown token"), {"type": "error", "error": "unknown token"}),
]


@pytest.mark.parametrize(("model", "expected"), EXAMPLES)
def test_the_json_is_todays_byte_for_byte(model: BaseModel, expected: dict[str, object]):
    assert model.model_dump(mode="json") == expected
    assert wire(model) == json.dumps(expected)  # the same keys in the same order, same text


@pytest.mark.parametrize(("model", "expected"), EXAMPLES)
def test_the_server_union_reads_each_message_back_as_its_model(model, expected):
    assert SERVER.validate_python(expected) == model
    assert SERVER.validate_json(wire(model)) == model


def test_the_queue_events_are_told_apart_by_their_event():
    base = {"type": "queue", "call_id": "c", "topic": "t"}
    assert isinstance(SERVER.validate_python({**base, "event": "left", "outcome": "x"}),
                      QueueLeft)
    assert isinstance(SERVER.validate_python({**base, "event": "connected", "agent": "1"}),
                      QueueConnected)
    with pytest.raises(ValidationError, match="union_tag_invalid"):
        SERVER.validate_python({**base, "event": "moved"})


def test_the_union_refuses_what_no_message_is():
    with pytest.raises(ValidationError, match="union_tag_invalid"):
        SERVER.validate_python({"type": "call", "call_id": "c"})
    with pytest.raises(ValidationError, match="union_tag_not_found"):
        SERVER.validate_python({"call_id": "c"})
    with pytest.raises(ValidationError, match="extra_forbidden"):  # a key nobody sends
        SERVER.validate_python({**RECALL_OUTCOME_DICT, "surprise": 1})
    with pytest.raises(ValidationError, match="timezone_aware"):  # times always carry an offset
        RecallOutcome(**{**RECALL_OUTCOME.model_dump(), "next_due_at": datetime(2026, 3, 2)})


def test_absent_optional_keys_stay_absent_and_null_ones_stay_null():
    assert "recall" not in QueueLeft(call_id="c", topic="t", outcome="x").model_dump(mode="json")
    assert "offer" not in wire(Hello(agent=AgentView.of(agent()), wrap_up={}))
    view = AgentView.of(Agent("1002", "Bruno", "PJSIP/1002", {}))
    assert view.model_dump(mode="json") == {
        "id": "1002", "name": "Bruno", "state": "logged_out", "reason": "", "since": None,
        "topics": {}, "call_id": None, "missed_in_a_row": 0, "after_call": None}


def test_the_rest_api_describes_agents_as_the_sockets_do():
    assert agent_json(agent()) == AGENT_DICT


def test_the_lines_in_a_snapshot_are_the_queue_managers_own():
    queues = QueueManager()
    queues.join(Waiting("c1", "beta", AT, caller="0611111111", line="Test direct line"))
    queues.join(Waiting("r1", "beta", AT + timedelta(seconds=1), caller="+390612345678",
                        line="recall", recall=True))
    queues.get("c1").offered_to = "1003"
    lines = queues.snapshot(AT + timedelta(seconds=7.25))  # what the REST API answers
    snapshot = Snapshot(agents=[], queues=LINES.validate_python(lines))
    assert wire(snapshot) == json.dumps({"type": "snapshot", "agents": [], "queues": lines})
    assert lines["beta"][0]["ringing"] == "1003" and lines["beta"][1]["waited"] == 6.2


def test_the_client_union_reads_the_token_and_the_acks():
    assert CLIENT.validate_json('{"token": "dev-1001", "states": true}') == Auth(
        token="dev-1001", states=True)
    assert CLIENT.validate_json('{"token": "dev-sup"}') == Auth(token="dev-sup")
    assert CLIENT.validate_json('{"type": "ack", "offer_id": "o1"}') == Ack(type="ack",
                                                                            offer_id="o1")
    for bad in ('{"type": "ack"}', '{"type": "nack", "offer_id": "o1"}', '{"token": 5}',
                '{"type": "ack", "offer_id": "' + "x" * 65 + '"}', "[]"):
        with pytest.raises(ValidationError):
            CLIENT.validate_json(bad)


def test_the_schema_is_json_schema_covering_every_message():
    schema = json_schema()
    json.dumps(schema)  # plain JSON
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema_check.problems(schema) == []
    defs = schema["$defs"]
    types = {d["properties"]["type"]["const"] for d in defs.values()
             if "type" in d.get("properties", {}) and "const" in d["properties"]["type"]}
    assert types == {"hello", "offer", "recall", "recall_outcome", "ticket", "agent",
                     "snapshot", "queue", "error", "ack"}
    assert {defs[n]["properties"]["event"]["const"] for n in (
        "QueueJoined", "QueueLeft", "QueueConnected")} == {"joined", "left", "connected"}
    for name in ("CallOffer", "QueueJoined", "Hello"):
        assert defs[name]["required"][0] == "type" and defs[name]["additionalProperties"] is False
    assert "recall" not in defs["QueueJoined"]["required"]
    assert "offer" not in defs["Hello"]["required"]


@pytest.mark.parametrize(("model", "expected"), EXAMPLES)
def test_each_message_matches_the_schema(model, expected):
    schema = json_schema()
    assert schema_check.errors(schema, json.loads(wire(model))) == []
    assert schema_check.errors(schema, expected, {"$ref": "#/$defs/ServerMessage"}) == []


def test_the_schema_refuses_what_is_not_a_message():
    schema = json_schema()
    server = {"$ref": "#/$defs/ServerMessage"}
    assert schema_check.errors(schema, {**CALL_OFFER_DICT, "type": "call"}, server)
    assert schema_check.errors(schema, {**CALL_OFFER_DICT, "offered_at": "yesterday"}, server)
    no_topic = {k: v for k, v in CALL_OFFER_DICT.items() if k != "topic"}
    assert schema_check.errors(schema, no_topic, server)
    assert schema_check.errors(schema, {"type": "queue", "event": "joined"}, server)
    client = {"$ref": "#/$defs/ClientMessage"}
    assert schema_check.errors(schema, {"token": "dev-1001", "states": True}, client) == []
    assert schema_check.errors(schema, {"type": "ack", "offer_id": "o1"}, client) == []
    assert schema_check.errors(schema, {"type": "ack"}, client)


async def test_the_schema_is_served_public_and_cacheable():
    app = web.Application(middlewares=[plain_errors, authenticate])
    app.router.add_get(SCHEMA_URL, message_schema)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get(SCHEMA_URL)  # no token
        assert resp.status == 200 and resp.content_type == "application/schema+json"
        assert await resp.json(content_type=None) == json_schema()
        assert "max-age" in resp.headers["Cache-Control"]
        again = await client.get(SCHEMA_URL, headers={"If-None-Match": resp.headers["ETag"]})
        assert again.status == 304
