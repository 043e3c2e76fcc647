"""The example configuration shipped in config/: each of its three numbers, called for real."""

from __future__ import annotations

from tests.integration.conftest import EXAMPLE_SETTINGS, record_of, settings_for, steps

ASSOCIAZIONI, CITTADINI, REFERENTI = "0612345001", "0612345002", "0612345003"


async def _skip_to_menu(call, skippable: list[str]) -> None:
    for prompt in skippable:
        await call.wait_heard(prompt, timeout=60)
        await call.press("#")


async def test_trade_associations_line_to_suap_queue(start_service, caller):
    """With nobody logged in for SUAP, its `no_agents` rule says so and ends the call."""
    service = await start_service(settings=settings_for(EXAMPLE_SETTINGS))
    call = await caller.dial(ASSOCIAZIONI)
    await _skip_to_menu(call, ["welcome_associazioni", "promo_fascicolo_digitale",
                               "privacy_notice"])
    await call.wait_heard("menu_associazioni")
    await call.press("1")
    await call.wait_heard("menu_suap")
    await call.press("1")
    await call.wait_ended(30)
    assert call.heard == ["cost_notice", "welcome_associazioni", "promo_fascicolo_digitale",
                          "privacy_notice", "menu_associazioni", "menu_suap", "hold_nobody"]
    record = await record_of(service, call)
    assert (record.line, record.topic, record.outcome) == (
        "Associazioni di categoria", "suap", "no_agents")
    assert [s[4] for s in steps(record, "key")] == ["SUAP", "Pratiche in corso"]


async def test_citizens_line_has_its_own_menu(start_service, caller):
    service = await start_service(settings=settings_for(EXAMPLE_SETTINGS))
    call = await caller.dial(CITTADINI)
    await _skip_to_menu(call, ["welcome_cittadini", "privacy_notice"])
    await call.wait_heard("menu_cittadini")
    await call.press("1")
    await call.wait_heard("menu_anagrafe")
    await call.press("2")
    await call.wait_idle()
    assert call.heard[-2:] == ["menu_cittadini", "menu_anagrafe"]
    assert "promo_fascicolo_digitale" not in call.heard
    await call.hangup()
    record = await record_of(service, call)
    assert record.topic == "anagrafe"


async def test_referents_line_has_no_menu(start_service, desk, caller):
    service = await start_service(settings=settings_for(EXAMPLE_SETTINGS))
    call = await caller.dial(REFERENTI)
    await _skip_to_menu(call, ["welcome_referenti"])
    await call.wait_idle()
    assert call.heard == ["cost_notice", "welcome_referenti"]
    assert [w["line"] for w in await desk.waiting("tecnico")] == ["Referenti tecnici"]
    assert await call.listen(1.5) > 0.005  # music on hold
    await call.hangup()
    assert (await record_of(service, call)).topic == "tecnico"
