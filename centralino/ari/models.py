"""Typed ARI events: only the ones centralino subscribes to (see EVENT_TYPES)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CallerId(_Model):
    name: str = ""
    number: str = ""


class DialplanCEP(_Model):
    context: str = ""
    exten: str = ""
    priority: int = 0
    app_name: str = ""
    app_data: str = ""


class Channel(_Model):
    id: str
    name: str = ""
    state: str = ""
    caller: CallerId = CallerId()
    dialplan: DialplanCEP = DialplanCEP()
    language: str = ""


class Playback(_Model):
    id: str
    media_uri: str = ""
    next_media_uri: str | None = None
    target_uri: str = ""
    state: str = ""

    @property
    def channel_id(self) -> str | None:
        kind, _, ident = self.target_uri.partition(":")
        return ident if kind == "channel" else None


class Event(_Model):
    type: str
    application: str = ""
    timestamp: str = ""
    # When our process read the event off the socket: (time.perf_counter(), time.thread_time()).
    received: tuple[float, float] = (0.0, 0.0)

    @property
    def channel_id(self) -> str | None:
        return None


class ChannelEvent(Event):
    channel: Channel

    @property
    def channel_id(self) -> str | None:
        return self.channel.id


class StasisStart(ChannelEvent):
    args: list[str] = []
    replace_channel: Channel | None = None


class StasisEnd(ChannelEvent):
    pass


class ChannelDtmfReceived(ChannelEvent):
    digit: str
    duration_ms: int = 0


class ChannelHangupRequest(ChannelEvent):
    cause: int = 0
    soft: bool = False  # Asterisk itself ends the call (shutdown, admin hangup), not the caller


class ChannelDestroyed(ChannelEvent):
    cause: int = 0
    cause_txt: str = ""


class ChannelStateChange(ChannelEvent):
    pass


class ReferDestination(_Model):
    destination: str = ""  # a blind transfer's target (the Refer-To URI's user part)
    protocol_id: str = ""  # an attended transfer's: the SIP Call-ID of the call it replaces


class ReferTo(_Model):
    requested_destination: ReferDestination


class ReferredBy(_Model):
    source_channel: Channel


class ChannelTransfer(Event):
    """A SIP phone's own transfer (REFER) on a channel with PJSIP_TRANSFER_HANDLING()=ari-only:
    Asterisk does nothing with it but tell the application, which answers the phone with
    POST /channels/{id}/transfer_progress."""

    state: str = ""  # "" for the phone's request; then Asterisk repeats each answer we give
    refer_to: ReferTo
    referred_by: ReferredBy

    @property
    def channel_id(self) -> str | None:
        return self.referred_by.source_channel.id


class PlaybackEvent(Event):
    playback: Playback

    @property
    def channel_id(self) -> str | None:
        return self.playback.channel_id


class PlaybackStarted(PlaybackEvent):
    pass


class PlaybackContinuing(PlaybackEvent):
    pass


class PlaybackFinished(PlaybackEvent):
    pass


EVENT_MODELS: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        StasisStart, StasisEnd, ChannelDtmfReceived, ChannelHangupRequest, ChannelDestroyed,
        ChannelStateChange, PlaybackStarted, PlaybackContinuing, PlaybackFinished,
        ChannelTransfer,
    )
}
# What the service subscribes to. PlaybackStarted and ChannelStateChange are parsed (the
# simulated callers use them) but not subscribed: fewer events, less CPU per call.
EVENT_TYPES = tuple(t for t in EVENT_MODELS if t not in ("PlaybackStarted", "ChannelStateChange"))


def parse_event(data: dict[str, Any], received: tuple[float, float]) -> Event | None:
    """The typed event, or None for a type we do not use."""
    model = EVENT_MODELS.get(data.get("type", ""))
    if model is None:
        return None
    event = model.model_validate(data)
    event.received = received
    return event
