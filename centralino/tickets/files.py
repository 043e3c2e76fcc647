"""Attachments' bytes on disk: each file once, at <root>/<ab>/<cd>/<sha256>, written whole
before it is named (a crash leaves at most a temporary file, never half an attachment).

A file arrives in pieces (`Incoming`): hashed and checked as it comes, kept only once the
request it belongs to is stored (`keep`), dropped otherwise (`discard`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from centralino.storage.store import Attachment
from tickets.attachments import SNIFF_BYTES, Refused, clean_name, content_type


class TooLarge(ValueError):
    pass


class Incoming:
    """One file being received: written to a temporary file in the store's folder."""

    def __init__(self, files: Files, name: str, limit: int):
        self.files, self.name, self.limit = files, clean_name(name), limit
        self.size = 0
        self._hash = hashlib.sha256()
        self._head = b""
        self._fd, self.path = tempfile.mkstemp(dir=files.incoming, prefix="in-")

    async def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise TooLarge(f"{self.name}: supera {self.limit // (1024 * 1024)} MB")
        self._hash.update(chunk)
        if len(self._head) < SNIFF_BYTES:
            self._head += chunk[:SNIFF_BYTES - len(self._head)]
        await asyncio.to_thread(os.write, self._fd, chunk)

    def finish(self) -> Attachment:
        """The file as received: Refused if it is not of an accepted kind, or empty."""
        os.close(self._fd)
        self._fd = -1
        if self.size == 0:
            raise Refused(f"{self.name}: il file è vuoto")
        try:
            kind = content_type(self._head, self.name)
        except Refused as exc:
            raise Refused(f"{self.name}: {exc}") from None
        return Attachment(self.name, kind, self.size, self._hash.hexdigest())

    def discard(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class Files:
    def __init__(self, root: Path):
        self.root = root
        self.incoming = root / "incoming"

    def receive(self, name: str, limit: int) -> Incoming:
        self.incoming.mkdir(parents=True, exist_ok=True)
        return Incoming(self, name, limit)

    def path_of(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    async def keep(self, received: list[tuple[Incoming, Attachment]]) -> None:
        """Name the files by their hash (one already there is the same bytes: kept once)."""
        def move() -> None:
            for incoming, attachment in received:
                final = self.path_of(attachment.sha256)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(incoming.path, final)
        await asyncio.to_thread(move)

    @staticmethod
    def discard(received: list[Incoming]) -> None:
        for incoming in received:
            incoming.discard()
