"""Calls to the test lines: what the caller hears, the branch taken and the stored record."""

from __future__ import annotations

from tests.integration.conftest import record_of, steps

MENU, DIRECT, NO_BARGE = "0999000001", "0999000002", "0999000003"
CHAIN = ["cost", "welcome", "promo_now", "privacy"]  # promo_old and promo_future are out of dates


async def test_announcements_in_order_and_expired_promo_skipped(start_service, caller):
    service = await start_service()
    call = await caller.dial(MENU, caller_number="0612340000")
    await call.wait_heard("menu_main")
    assert call.heard == [*CHAIN, "menu_main"]
    await call.hangup()
    record = await record_of(service, call)
    assert record.number == MENU and record.line == "Test menu line"
    assert record.caller_number == "0612340000"
    assert record.outcome == "caller_hangup" and record.detail == "in menu main"
    announcements = [(p, d) for k, _, _, p, d in steps(record, "announcement")]
    assert announcements == [("cost", "full"), ("welcome", "full"), ("promo_old", "out_of_dates"),
                             ("promo_now", "full"), ("promo_future", "out_of_dates"),
                             ("privacy", "full")]
    assert record.answered_at is not None and record.ended_at >= record.started_at


async def test_skip_key_skips_only_the_current_announcement(start_service, caller):
    service = await start_service()
    call = await caller.dial(MENU)
    await call.wait_heard("welcome")
    await call.press("#")
    await call.wait_heard("menu_main")
    assert call.heard == [*CHAIN, "menu_main"]
    await call.hangup()
    record = await record_of(service, call)
    heard = {p: d for k, _, _, p, d in steps(record, "announcement")}
    assert heard["welcome"] == "skipped" and heard["promo_now"] == "full"


async def test_cost_notice_cannot_be_skipped(start_service, caller):
    service = await start_service()
    call = await caller.dial(MENU)
    await call.wait_heard("cost")
    await call.press("#")
    await call.wait_heard("welcome")
    await call.hangup()
    record = await record_of(service, call)
    assert steps(record, "announcement")[0][3:] == ("cost", "full")


async def test_barge_in_submenu_queue_and_hold_music(start_service, desk, caller):
    service = await start_service()
    call = await caller.dial(MENU)
    await call.wait_heard("menu_main")
    await call.press("1")  # while the menu prompt plays: barge-in
    await call.wait_heard("menu_sub")
    await call.press("1")
    await call.wait_idle()
    assert call.heard == [*CHAIN, "menu_main", "menu_sub"]
    # cut short, not played to the end
    assert ("menu_main" in [m.rsplit("/", 1)[-1].removesuffix(".wav") for m, _ in call.finished])
    this = (await desk.call_of(call.service_half))["id"]
    assert [w["call_id"] for w in await desk.waiting("alpha")].index(this) + 1 == 1  # position
    assert await call.listen(2) > 0.005, "the caller should hear music on hold"
    await call.hangup()
    record = await record_of(service, call)
    assert record.outcome == "abandoned" and record.topic == "alpha"
    assert record.detail.startswith("waited ")
    keys = [(node, key, detail) for _, node, key, _, detail in steps(record, "key")]
    assert keys == [("main", "1", "Sub"), ("sub", "1", "Alpha")]


async def test_invalid_key_then_valid_choice(start_service, caller):
    service = await start_service()
    call = await caller.dial(MENU)
    await call.wait_heard("menu_main")
    await call.press("7")
    await call.wait_heard("menu_main", count=2)
    await call.press("2")
    await call.wait_idle()
    assert call.heard == [*CHAIN, "menu_main", "invalid", "menu_main"]
    await call.hangup()
    record = await record_of(service, call)
    assert steps(record, "invalid") == [("invalid", "main", "7", None, "")]
    assert record.topic == "beta" and record.outcome == "abandoned"


async def test_timeout_reprompt_then_fallback(start_service, caller):
    service = await start_service()
    call = await caller.dial(MENU)
    await call.wait_ended(timeout=30)  # the caller presses nothing at all
    assert call.heard == [*CHAIN, "menu_main", "no_key", "menu_main", "no_key", "sorry",
                          "goodbye"]
    record = await record_of(service, call)
    assert record.outcome == "goodbye"
    assert [k for k, *_ in steps(record, "timeout", "fallback")] == ["timeout", "timeout",
                                                                     "fallback"]


async def test_info_leaf_then_back_to_menu_and_back_key(start_service, caller):
    service = await start_service()
    call = await caller.dial(MENU)
    await call.wait_heard("menu_main")
    await call.press("1")
    await call.wait_heard("menu_sub")
    await call.press("2")
    await call.wait_heard("menu_sub", count=2)  # info_a, then the same menu again
    await call.press("*")
    await call.wait_heard("menu_main", count=2)
    await call.press("3")
    await call.wait_ended()
    assert call.heard[len(CHAIN):] == ["menu_main", "menu_sub", "info_a", "menu_sub",
                                       "menu_main", "info_b", "goodbye"]
    record = await record_of(service, call)
    assert record.outcome == "goodbye"
    assert [s[4] for s in steps(record, "key")] == ["Sub", "Info A", "back", "Info B"]


async def test_no_barge_in_menu_ignores_keys_during_prompt(start_service, caller):
    service = await start_service()
    call = await caller.dial(NO_BARGE)
    await call.wait_heard("menu_slow")
    await call.press("2")  # ignored: the prompt cannot be interrupted
    await call.wait_idle()
    assert not call.ended.is_set()
    await call.press("2")
    await call.wait_ended()
    assert call.heard == ["menu_slow", "goodbye"]
    record = await record_of(service, call)
    assert record.outcome == "goodbye"


async def test_direct_line_goes_to_queue_without_menu(start_service, desk, caller):
    service = await start_service()
    first = await caller.dial(DIRECT, caller_number="0611111111")
    await first.wait_idle()
    second = await caller.dial(DIRECT, caller_number="0622222222")
    await second.wait_idle()
    assert first.heard == second.heard == ["cost"]
    waiting = [w["caller"] for w in await desk.waiting("beta")]
    assert waiting == ["0611111111", "0622222222"]  # first come, first served
    assert await second.listen(1.5) > 0.005
    await first.hangup()
    await second.hangup()
    assert (await record_of(service, first)).topic == "beta"


async def test_caller_hangs_up_during_announcements(start_service, caller):
    service = await start_service()
    call = await caller.dial(MENU)
    await call.wait_heard("welcome")
    await call.hangup()
    record = await record_of(service, call)
    assert record.outcome == "caller_hangup" and record.detail == "during announcements"
    assert steps(record, "announcement")[:2] == [
        ("announcement", "", None, "cost", "full"), ("announcement", "", None, "welcome", "hangup")]


async def test_unknown_number_in_dialplan_but_not_configured(start_service, caller, asterisk):
    service = await start_service()
    # The example line is routed by the test dialplan but this service runs the test config.
    call = await caller.dial("0612345001")
    await call.wait_ended()
    assert call.heard == ["ss-noservice"]
    record = await record_of(service, call)
    assert record.outcome == "unknown_number"


async def test_a_key_during_an_info_message_is_taken_as_the_next_choice(start_service, caller):
    service = await start_service()
    call = await caller.dial(MENU)
    await call.wait_heard("menu_main")
    await call.press("1")
    await call.wait_heard("menu_sub")
    await call.press("2")
    await call.wait_heard("info_a")
    await call.press("*")  # the caller already knows: back, without hearing menu_sub again
    await call.wait_heard("menu_main", count=2)
    assert call.heard[len(CHAIN):] == ["menu_main", "menu_sub", "info_a", "menu_main"]
    await call.hangup()
    record = await record_of(service, call)
    assert [s[4] for s in steps(record, "key")] == ["Sub", "Info A", "back"]
