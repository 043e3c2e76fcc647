"""One inbound call over ARI: the flow engine's CallPort, and the task that runs the call.

Every event of a channel goes into its session's queue and is taken by the session's own task,
so a call sees its events strictly in the order Asterisk sent them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from centralino import metrics
from centralino.ari.client import AriError, AriNotFound, reacting_to
from centralino.ari.models import (
    Channel,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    Event,
    PlaybackContinuing,
    PlaybackFinished,
    StasisEnd,
)
from centralino.storage.store import NewCall
from ivr.clock import LOCAL
from ivr.config import CallConfig
from ivr.engine import ANY_KEY, CallerHungUp, FlowResult, Journal, Played, run_flow
from ivr.hours import line_status
from queue_manager.queues import Waiting

if TYPE_CHECKING:
    from centralino.service import Service

log = logging.getLogger("centralino.calls")
_HANGUP = (StasisEnd, ChannelHangupRequest, ChannelDestroyed)


class ChannelGone(Event):
    """Ours, not Asterisk's: the channel vanished while we were disconnected (a restart)."""

    type: str = "ChannelGone"


class _Lost(CallerHungUp):
    """The call ended without the caller hanging up: Asterisk stopped or lost the channel."""

    def __init__(self, completed: int, why: str):
        super().__init__(completed)
        self.why = why


class AriCallPort:
    """CallPort over ARI for one channel. Prompt ids become media URIs through `media_uri`."""

    def __init__(self, service: Service, channel_id: str, language: str,
                 media_uri: Callable[[str, str], str]):
        self.ari = service.ari
        self.channel_id = channel_id
        self.language = language
        self.media_uri = media_uri
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self._getter: asyncio.Future[Event] | None = None

    async def _next(self, timeout: float | None = None, completed: int = 0) -> Event | None:
        """The channel's next event (None after `timeout`). A pending read survives a timeout,
        so no event is ever dropped between two waits."""
        if self._getter is None:
            if not self.events.empty():
                event = self.events.get_nowait()
                return self._took(event, completed)
            self._getter = asyncio.ensure_future(self.events.get())
        done, _ = await asyncio.wait({self._getter}, timeout=timeout)
        if not done:
            reacting_to.set(None)  # what follows reacts to a timer, not to an event
            return None
        event, self._getter = self._getter.result(), None
        return self._took(event, completed)

    def _took(self, event: Event, completed: int) -> Event:
        reacting_to.set(event.received)
        if isinstance(event, ChannelGone):
            raise _Lost(completed, "the channel vanished while Asterisk was unreachable")
        if isinstance(event, ChannelHangupRequest) and event.soft:
            raise _Lost(completed, f"Asterisk ended the call (shutdown or admin hangup, "
                                   f"cause {event.cause})")
        if isinstance(event, _HANGUP):
            raise CallerHungUp(completed)
        return event

    async def play(self, prompts: Sequence[str], interrupt: str) -> Played:
        playback = uuid.uuid4().hex
        media = [self.media_uri(p, self.language) for p in prompts]
        log.debug("%s play %s as %s", self.channel_id, prompts, playback)
        try:
            await self.ari.play(self.channel_id, playback, media, self.language)
        except AriNotFound:
            raise CallerHungUp(0) from None
        completed = 0
        while True:
            event = await self._next(completed=completed)
            if isinstance(event, PlaybackContinuing) and event.playback.id == playback:
                completed += 1
            elif isinstance(event, PlaybackFinished) and event.playback.id == playback:
                if event.playback.state == "failed":
                    log.error("Asterisk could not play %s on %s", event.playback.media_uri,
                              self.channel_id)
                return Played(None, len(prompts))
            elif isinstance(event, ChannelDtmfReceived) and interrupt and (
                interrupt == ANY_KEY or event.digit in interrupt
            ):
                await self.ari.stop_playback(playback)
                return Played(event.digit, completed)

    async def wait_key(self, timeout: float) -> str | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            event = await self._next(timeout=left)
            if event is None:
                return None
            if isinstance(event, ChannelDtmfReceived):
                return event.digit
        return None

    async def wait_hangup(self) -> None:
        """Hold until the caller goes (CallerHungUp ends the wait)."""
        while True:
            await self._next()


@dataclass
class CallInfo:
    call_id: str
    channel: Channel
    number: str
    started_at: datetime


class CallSession:
    """Runs one call from StasisStart to its end and records it."""

    def __init__(self, service: Service, channel: Channel, number: str, *,
                 resume_topic: str | None = None, resumed: bool = False):
        self.service = service
        self.config: CallConfig = service.call_config  # this call's version, even after reload
        self.catalog = service.catalog
        self.info = CallInfo(uuid.uuid4().hex, channel, number, service.clock.now())
        self.flow = self.config.flows.get(number)
        language = self.flow.language if self.flow else "it"
        self.port = AriCallPort(service, channel.id, language, self.catalog.uri)
        self.journal = Journal(service.clock.now)
        self.resume_topic = resume_topic
        self.resumed = resumed
        self.queued: Waiting | None = None
        self.answered_at: datetime | None = None
        self._record_started: asyncio.Task[None] | None = None

    @property
    def channel_id(self) -> str:
        return self.info.channel.id

    def deliver(self, event: Event) -> None:
        self.port.events.put_nowait(event)

    async def run(self) -> None:
        svc, ch = self.service, self.channel_id
        outcome, topic, detail = "failed", None, ""
        self._record_started = asyncio.create_task(self._start_record())
        try:
            if self.flow is None:
                outcome, detail = await self._unknown_number()
                return
            if self.info.channel.state != "Up":
                await svc.ari.answer(ch)
            self.answered_at = svc.clock.now()
            if self.resume_topic:
                self.journal.add("resumed", detail=f"queue:{self.resume_topic}")
                result = FlowResult("queue", self.resume_topic)
            else:
                if self.resumed:
                    self.journal.add("resumed", detail="restarted flow")
                result = await self._run_flow()
            topic = result.topic
            if result.outcome == "queue":
                assert result.topic is not None
                outcome = "queued"
                await self._wait_in_queue(result.topic)
            else:
                outcome = result.outcome
                await svc.ari.hangup(ch)
        except _Lost as lost:
            outcome, detail = "lost", lost.why
            await self._hangup_quietly()
        except CallerHungUp:
            outcome = "abandoned" if self.queued else "caller_hangup"
            if self.queued:
                waited = (svc.clock.now() - self.queued.since).total_seconds()
                detail = f"waited {waited:.1f} s"
            else:
                last = next((s for s in reversed(self.journal.steps) if s.node), None)
                detail = f"in menu {last.node}" if last else "during announcements"
        except asyncio.CancelledError:
            outcome, detail = "interrupted", "service stopped during the call"
            raise
        except AriError as exc:
            log.error("call %s on %s failed: %s", self.info.call_id, ch, exc)
            outcome, detail = "failed", str(exc)
            await self._hangup_quietly()
        except Exception:
            log.exception("call %s on %s crashed", self.info.call_id, ch)
            outcome, detail = "failed", "internal error (see the service log)"
            await self._hangup_quietly()
        finally:
            if self.queued:
                svc.queues.leave(self.info.call_id, self.queued.topic)
            await asyncio.shield(self._finish_record(outcome, topic, detail))

    async def _run_flow(self) -> FlowResult:
        assert self.flow is not None
        svc, flow = self.service, self.flow
        now = svc.clock.now()
        schedule = self.config.schedules.get(flow.hours) if flow.hours else None
        status = line_status(schedule, svc.overrides.get(flow.number), now)
        today = now.astimezone(schedule.zone if schedule else LOCAL).date()
        return await run_flow(flow, self.port, self.journal, status=status, today=today)

    async def _wait_in_queue(self, topic: str) -> None:
        svc = self.service
        settings = self.config.queues[topic]
        self.queued = Waiting(self.info.call_id, topic, svc.clock.now(),
                              caller=self.info.channel.caller.number, line=self.flow.name if self.flow else "")
        position = svc.queues.join(self.queued)
        log.info("call %s waits in %s at position %d", self.info.call_id, topic, position)
        try:
            await svc.hold(self.channel_id, topic, settings)
        except AriNotFound:
            raise CallerHungUp() from None
        await self.port.wait_hangup()

    async def _unknown_number(self) -> tuple[str, str]:
        log.warning("call to %s: no flow for this number (check the dialplan and flows/)",
                    self.info.number)
        try:
            await self.service.ari.answer(self.channel_id)
            await self.port.play(["sound:ss-noservice"], interrupt="")
        except CallerHungUp:
            pass
        await self._hangup_quietly()
        return "unknown_number", f"no flow for {self.info.number}"

    async def _hangup_quietly(self) -> None:
        try:
            await self.service.ari.hangup(self.channel_id)
        except AriError:
            pass

    async def _start_record(self) -> None:
        info, flow = self.info, self.flow
        await self.service.store.start_call(NewCall(
            id=info.call_id, channel_id=info.channel.id, number=info.number,
            line=flow.name if flow else "", caller_number=info.channel.caller.number,
            caller_name=info.channel.caller.name, config_version=self.config.version,
            started_at=info.started_at,
        ))

    async def _finish_record(self, outcome: str, topic: str | None, detail: str) -> None:
        metrics.CALLS.labels(self.flow.name if self.flow else "", outcome).inc()
        try:
            if self._record_started:
                await self._record_started
            await self.service.store.finish_call(
                self.info.call_id, ended_at=self.service.clock.now(), outcome=outcome,
                topic=topic, detail=detail, steps=self.journal.steps,
                answered_at=self.answered_at,
            )
        except Exception:
            log.exception("could not store the record of call %s", self.info.call_id)
