"""A TCP relay between the service's mailbox and Dovecot that a test can break (issue #12's
fault proofs): cut every connection now, or in the middle of the answer to the n-th command
naming a word (a FETCH's literal half relayed), and refuse new ones for a while (accepted and
closed at once, as a server going away does, so that each attempt is seen and timed)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Self


class ImapProxy:
    def __init__(self, host: str, port: int):
        self.upstream = (host, port)
        self.port = 0
        self.refusing = False
        self.attempts: list[tuple[float, bool]] = []  # (monotonic time, refused) per connection
        self.commands: list[tuple[int, bytes]] = []  # (connection, line without its tag)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._cut_after: tuple[bytes, int] | None = None
        self._armed = False  # the command to cut in has gone through: cut in its answer
        self.cut_done = asyncio.Event()
        self._hold: tuple[bytes, int] | None = None
        self.held = asyncio.Event()  # the command to hold came, and was not passed on

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        await self._server.wait_closed()

    def count(self, word: bytes) -> int:
        return sum(1 for _, line in self.commands if word in line.upper())

    def idling(self) -> bool:
        """Whether the client is in IDLE on the newest connection."""
        if not self.commands:
            return False
        newest = max(n for n, _ in self.commands)
        return [line for n, line in self.commands if n == newest][-1].upper() == b"IDLE"

    def cut(self) -> None:
        """Every connection closed at once (reset, as a broken link or a server killed)."""
        for writer in list(self._open):
            transport = writer.transport
            with contextlib.suppress(Exception):
                transport.abort()
        self._open.clear()
        self.cut_done.set()

    def cut_in_answer_to(self, word: bytes, nth: int) -> None:
        """Cut everything halfway through the server's answer to the client's `nth` command
        (from now on) naming `word`."""
        self._cut_after = (word, self.count(word) + nth)
        self._armed = False
        self.cut_done.clear()

    def hold(self, word: bytes, nth: int) -> None:
        """Never pass on the client's `nth` command (from now on) naming `word`, nor anything
        after it on its connection: the client waits for an answer that does not come."""
        self._hold = (word, self.count(word) + nth)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.attempts.append((time.monotonic(), self.refusing))
        number = len(self.attempts)
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._open |= {writer, up_writer}
        await asyncio.gather(self._relay(reader, up_writer, number),
                             self._relay(up_reader, writer, None),
                             return_exceptions=True)
        for w in (writer, up_writer):
            self._open.discard(w)
            w.transport.abort()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     client: int | None) -> None:
        """From the client (its connection's number) or from the server (None)."""
        upward = client is not None
        while data := await (reader.readline() if upward else reader.read(65536)):
            if client is not None:
                self.commands.append((client, data.split(b" ", 1)[-1].rstrip()))
                if self._hold and self.count(self._hold[0]) >= self._hold[1]:
                    self._hold = None
                    self.held.set()
                    return
                if self._cut_after and self.count(self._cut_after[0]) >= self._cut_after[1]:
                    self._cut_after, self._armed = None, True
            elif self._armed:
                self._armed = False
                writer.write(data[:max(1, len(data) // 2)])  # half of the answer, then nothing
                with contextlib.suppress(Exception):
                    await writer.drain()
                self.cut()
                return
            writer.write(data)
            await writer.drain()
