"""The mailboxes and the intake together, as the service runs them (mail.yaml at start)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from centralino.clock import Timers
from centralino.mail.inbox import Inbox
from centralino.mail.intake import Intake
from centralino.storage.faults import fault_of
from centralino.storage.store import Store
from centralino.tickets.desk import TicketDesk
from mail.config import MailConfig

log = logging.getLogger("centralino.mail")
INTAKE_EVERY = 30.0  # seconds: stored mail is also looked at without being woken


class MailDesk:
    def __init__(self, store: Store, tickets: TicketDesk, clock: Timers, config: MailConfig,
                 spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[Any]]):
        self.config = config
        self.intake = Intake(store, tickets, config)
        self._kick = asyncio.Event()
        self.inboxes = {name: Inbox(name, box, config, store, clock, self._kick.set)
                        for name, box in config.mailboxes.items()}
        self._spawn = spawn
        self._tasks: list[asyncio.Task[Any]] = []

    def start(self) -> None:
        self._tasks = [self._spawn(inbox.run()) for inbox in self.inboxes.values()]
        self._tasks.append(self._spawn(self._take_in()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _take_in(self) -> None:
        while True:
            self._kick.clear()
            try:
                await self.intake.run_once()
            except Exception as exc:
                fault = fault_of(exc)
                if not fault.waits:
                    log.exception("e-mail intake")
                else:
                    log.error("e-mail intake: database %s (%s)", fault.kind, fault)
            try:
                await asyncio.wait_for(self._kick.wait(), INTAKE_EVERY)
            except TimeoutError:
                pass

    def health(self) -> dict[str, dict[str, Any]]:
        return {name: {"connected": i.health.connected, "problem": i.health.problem,
                       "stored": i.health.stored} for name, i in self.inboxes.items()}
