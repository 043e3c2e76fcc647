"""Who takes which channel's events, and which call or recall is live, by id.

The service's event loop routes each ARI event to the party owning its channel (a caller's
session, or the session that rang an agent's or citizen's leg); the desk finds the party
waiting for an agent by its call id (a recall's: the request's id).
"""

from __future__ import annotations

from typing import Protocol

from centralino.ari.models import Event


class Party(Protocol):
    @property
    def call_id(self) -> str: ...

    def deliver(self, event: Event) -> None: ...


class Registry:
    def __init__(self) -> None:
        self.channels: dict[str, Party] = {}  # callers, agents' legs, recalls' legs
        self.calls: dict[str, Party] = {}  # live calls and recalls waiting or talking

    def watch(self, channel: str, party: Party) -> None:
        self.channels[channel] = party

    def unwatch(self, channel: str) -> None:
        self.channels.pop(channel, None)

    def live(self, party: Party) -> None:
        self.calls[party.call_id] = party

    def in_progress(self) -> int:
        """Calls with a channel up: a caller and the agent's leg rung for them are one."""
        return len({id(party) for party in self.channels.values()})

    def over(self, party: Party) -> None:
        if self.calls.get(party.call_id) is party:
            del self.calls[party.call_id]
