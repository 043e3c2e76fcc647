"""The mailboxes on the supervisors' board in a real browser (issue #12): each mailbox's state
in words (connected, or unreachable since when and why), the quarantined messages counted and
listed, one downloaded and marked as looked at, the counts kept up to date without a reload,
and axe-core's WCAG 2.1 A/AA audit. Against the real service, Dovecot and PostgreSQL, with the
mailboxes of tests/integration/test_mail_board.py (two of them broken on purpose).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Locator, Page, expect

from tests.e2e.test_board_tickets import AXE, BOARD, ROME, SUPERVISOR
from tests.integration.test_mail_board import append, boxes, broken_mail_settings, until

pytestmark = pytest.mark.asterisk  # the service under test connects to the real Asterisk


@pytest.fixture
def board_settings(tmp_path: Path) -> Any:
    return broken_mail_settings(tmp_path)


async def signed_in(page: Page) -> Locator:
    """The board signed in as the supervisor: its mailboxes' section."""
    await page.goto(BOARD)
    await page.get_by_label("Chiave personale").fill(SUPERVISOR)
    await page.get_by_role("button", name="Entra").click()
    await expect(page.get_by_role("status")).to_have_text("connesso")
    section = page.get_by_role("region", name="Caselle di posta")
    await expect(section.get_by_role("heading", name="Caselle di posta")).to_be_visible()
    return section


async def quarantined(desk: Any, raw: bytes) -> int:
    """Put an unreadable message in the desk's mailbox; its id once the service quarantined it."""
    await asyncio.to_thread(append, "helpdesk", raw)

    async def found() -> int | None:
        for m in await desk.request("GET", "/api/mail/quarantine?mailbox=cittadini",
                                    token=SUPERVISOR):
            got = await desk.request("GET", f"/api/mail/quarantine/{m['id']}/raw",
                                     token=SUPERVISOR)
            if got.encode() == raw:
                return int(m["id"])
        return None
    mail_id = await until(found)
    assert mail_id, "the unreadable message was not quarantined"
    return mail_id


async def settled(desk: Any) -> dict[str, dict[str, Any]]:
    """The mailboxes once the broken ones have failed at least once."""
    async def ready() -> dict[str, dict[str, Any]] | None:
        found = await boxes(desk)
        return found if found["cittadini"]["connected"] and found["password-sbagliata"][
            "problem"] and found["server-spento"]["problem"] else None
    found = await until(ready)
    assert found
    return found


def garbage() -> bytes:
    return f"garbage {uuid.uuid4().hex}: no header at all\r\n".encode()


async def test_the_board_shows_each_mailbox_and_a_supervisor_handles_the_quarantine(
        start_service, desk, board_settings, page, tmp_path):
    await start_service(settings=board_settings)
    first = garbage()
    first_id = await quarantined(desk, first)
    found = await settled(desk)

    await page.clock.install()  # timers the test moves on (the 15 s refresh, the messages)
    section = await signed_in(page)
    table = section.get_by_role("table", name="Stato di ogni casella")
    await expect(table.get_by_role("columnheader")).to_have_text(
        ["Casella", "Stato", "Ricevuti oggi", "Ricevuti in tutto", "Ultimo messaggio",
         "In quarantena", "Invii non riusciti"])
    ok = table.locator('tbody tr[data-mailbox="cittadini"]')
    await expect(ok.get_by_role("rowheader")).to_have_text("cittadinihelpdesk@helpdesk.test")
    await expect(ok.locator("td").first).to_have_text("connessa")
    wrong = found["password-sbagliata"]
    since = datetime.fromisoformat(wrong["problem_since"]).astimezone(ROME).strftime("%H:%M")
    down = table.locator('tbody tr[data-mailbox="password-sbagliata"]')
    await expect(down.locator("td").first).to_have_text(
        f"non raggiungibile dalle {since} ({wrong['problem']})")
    await expect(table.locator('tbody tr[data-mailbox="server-spento"] td').first).to_contain_text(
        "non raggiungibile dalle")

    # One more unreadable message: the count grows at the next refresh, without a reload.
    count = found["cittadini"]["quarantined"]
    button = ok.locator('button[data-list="quarantine"]')
    await expect(button).to_have_accessible_name(
        f"{count} in quarantena di cittadini: apri l'elenco")
    second = garbage()
    second_id = await quarantined(desk, second)
    await page.clock.fast_forward(15_000)
    await expect(button).to_have_text(re.compile(f"^{count + 1} in quarantena"))

    # The list: each message with its reason; the unreadable sender and subject said so.
    await button.click()
    heading = section.get_by_role("heading", name="In quarantena: cittadini")
    await expect(heading).to_be_focused()
    listed = section.get_by_role("table", name="Messaggi che non si possono leggere")
    row = listed.locator(f'tbody tr[data-id="{second_id}"]')
    await expect(row.locator("td")).to_have_text(
        ["no headers", "illeggibile", "illeggibile", re.compile("Scarica.*Visto")])
    await expect(listed.locator(f'tbody tr[data-id="{first_id}"]')).to_be_visible()

    # Downloaded as it came.
    async with page.expect_download() as info:
        await row.get_by_role("button", name=re.compile("^Scarica")).click()
    download = await info.value
    assert download.suggested_filename == f"messaggio-{second_id}.eml"
    saved = tmp_path / "saved.eml"
    await download.save_as(saved)
    assert await asyncio.to_thread(saved.read_bytes) == second

    # Looked at: out of the list and of the count, said in words.
    await row.get_by_role("button", name=re.compile("^Visto")).click()
    await expect(row).to_have_count(0)
    await page.clock.run_for(500)
    await expect(section.locator("#mb-done")).to_contain_text("segnato come visto")
    await expect(button).to_have_text(re.compile(f"^{count} in quarantena"))
    assert second_id not in [m["id"] for m in await desk.request(
        "GET", "/api/mail/quarantine", token=SUPERVISOR)]

    # The failed sends' list opens too (none here), and closes.
    await ok.locator('button[data-list="outbox"]').click()
    await expect(section.get_by_role("heading", name="Invii non riusciti: cittadini")
                 ).to_be_focused()
    await expect(section.locator("#mb-list-empty")).to_have_text("Nessun invio non riuscito.")
    await section.get_by_role("button", name="Chiudi l'elenco").click()
    await expect(section.locator("#mb-list")).to_be_hidden()
    await expect(ok.locator('button[data-list="outbox"]')).to_be_focused()
    await desk.request("POST", f"/api/mail/quarantine/{first_id}/done", token=SUPERVISOR)


async def test_axe_finds_no_wcag_violation_on_the_mailboxes(start_service, desk, board_settings,
                                                            browser):
    assert AXE.exists(), f"{AXE}: run ./dev test (it installs axe-core from tests/e2e/axe)"
    await start_service(settings=board_settings)
    mail_id = await quarantined(desk, garbage())
    await settled(desk)
    # The page allows no script but its own: this tab, for the audit only, does not apply it.
    context = await browser.new_context(bypass_csp=True, locale="it-IT",
                                        viewport={"width": 1366, "height": 768})
    try:
        page = await context.new_page()
        section = await signed_in(page)
        await section.locator('tr[data-mailbox="cittadini"] button[data-list="quarantine"]'
                              ).click()
        await expect(section.locator(f'#mb-quarantine tr[data-id="{mail_id}"]')).to_be_visible()
        await expect(section.locator('tr[data-mailbox="password-sbagliata"] .problem')
                     ).to_be_visible()
        await page.add_script_tag(path=str(AXE))
        found = await page.evaluate(
            "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})"
            ".then(r => r.violations.map(v => `${v.id}: ${v.help} (` +"
            " v.nodes.map(n => n.target.join(' ')).join(', ') + ')'))",
            ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"])
        assert found == []
    finally:
        await context.close()
    await desk.request("POST", f"/api/mail/quarantine/{mail_id}/done", token=SUPERVISOR)
