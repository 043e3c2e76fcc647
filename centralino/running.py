"""The configuration running now: the files' Config, their prompts, the lines' overrides.

A reload builds the new version off to the side and swaps it in only whole; calls in progress
keep the version they started with (they hold their own `Setup`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from centralino.clock import Timers
from centralino.config import Config, load_config
from centralino.desk import Desk
from centralino.media import PromptCatalog
from centralino.promptbuild import PromptBuildError, build_prompts
from centralino.settings import Settings
from centralino.storage.store import Store
from centralino.telephony import Bridges
from ivr.hours import Override
from ivr.yamlfile import ConfigError

log = logging.getLogger("centralino")


class RunningConfig:
    def __init__(self, settings: Settings, store: Store, clock: Timers, desk: Desk,
                 bridges: Bridges):
        self._settings = settings
        self._store, self._clock, self._desk, self._bridges = store, clock, desk, bridges
        self.overrides: dict[str, Override] = {}  # the same mapping the calls read
        self.config: Config
        self.catalog: PromptCatalog
        self._lock = asyncio.Lock()

    @property
    def topics(self) -> list[str]:
        """The configured topics, then those a reload removed that are still served."""
        return [*self.config.call.queues, *sorted(self._desk.retiring)]

    async def load(self) -> Config:
        """The first version, at start (ConfigError if anything is wrong)."""
        self.config, self.catalog = await self._prepare()
        return self.config

    async def reload(self) -> Config:
        """Validate the new configuration and swap it in; on any error keep the running one
        and raise ConfigError."""
        async with self._lock:
            config, catalog = await self._prepare()
            self.config, self.catalog = config, catalog
            self._bridges.forget()  # topics may have changed their music
            self._desk.configure(config.agents, topics=config.call.queues, groups=self.groups_of)
            log.info("configuration %s loaded (%d numbers, %d agents)", config.version,
                     len(config.call.flows), len(config.agents.agents))
            return config

    def groups_of(self, agent: str) -> frozenset[str]:
        """The agent's second-level groups (tickets.yaml)."""
        tickets = self.config.tickets
        return tickets.groups_of(agent) if tickets else frozenset()

    async def _prepare(self) -> tuple[Config, PromptCatalog]:
        """Load the configuration and build its prompts; raise ConfigError and change nothing
        if anything is wrong."""
        s = self._settings
        # In a thread: calls go on being served while the files are read (ivr/yamlfile.py bounds
        # what one file may cost).
        config = await asyncio.to_thread(load_config, s)
        try:
            report = await asyncio.to_thread(build_prompts, config.call.prompts,
                                             s.prompts.recordings, s.prompts.build_dir)
        except PromptBuildError as exc:  # the build folder unwritable, its index unreadable
            raise ConfigError.single(str(s.prompts.build_dir), f"prompts: {exc}") from None
        for error in report.errors:
            log.error("prompt build: %s", error)
        catalog = PromptCatalog(s.prompts.build_dir, s.http.public_url)
        if missing := catalog.missing(config.call.prompts):
            raise ConfigError.single(str(s.prompts.manifest), f"prompts without audio: "
                                     f"{', '.join(missing)} ({'; '.join(report.errors)})")
        return config, catalog

    # --- line overrides -------------------------------------------------------------------

    async def load_overrides(self) -> None:
        rows = await self._store.active_overrides(self._clock.now())
        self.overrides.clear()
        self.overrides.update({r.number: Override(r.state, r.until, r.reason, r.set_by)  # type: ignore[arg-type]
                               for r in rows})

    async def set_override(self, number: str, state: str, until: datetime, reason: str,
                           by: str) -> Override:
        await self._store.set_override(number, state, until, reason, by, self._clock.now())
        override = Override(state, until, reason, by)  # type: ignore[arg-type]
        self.overrides[number] = override
        log.warning("line %s forced %s until %s by %s: %s", number, state, until.isoformat(),
                    by, reason)
        return override

    async def clear_override(self, number: str, by: str) -> bool:
        cleared = await self._store.clear_override(number, by, self._clock.now())
        self.overrides.pop(number, None)
        log.warning("line %s back to its opening hours (override cleared by %s)", number, by)
        return cleared > 0
