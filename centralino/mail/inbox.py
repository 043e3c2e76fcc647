"""The desk's mailboxes over IMAP: each message stored before anything is done on the server.

For each mailbox, a task: connect, then sweep (every message in the folder: fetched with
BODY.PEEK, so never marked read; stored in one transaction with its UIDs; only then moved to
the done folder, or flagged); then IDLE until the server says something arrived or the sweep
interval passes, and sweep again. A dropped connection reconnects with back-off; a mailbox
that cannot be reached is said on /healthz, the others keep working.

Why nothing is lost or doubled: a message leaves the folder only once it is stored; one
stored but not moved (a crash in between) is found again at the next sweep, recognised by its
UIDs (or, after a UIDVALIDITY change, by its Message-ID or bytes), and moved without a second
row. What the stored rows become is the intake's (centralino/mail/intake.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aioimaplib

from centralino.clock import Timers, woken
from centralino.mail import tls
from centralino.storage.faults import fault_of
from centralino.storage.store import Store
from mail.config import Mailbox, MailConfig, Secret

log = logging.getLogger("centralino.mail")
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]{1,250}>)", re.IGNORECASE | re.MULTILINE)
_FETCH_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
BATCH = 25  # messages looked up, fetched and moved together
BATCH_BYTES = 8 * 1024 * 1024  # at most this much fetched at once
FLAG = "$Centralino"  # a kept message left in its folder (no done folder) is flagged so


class MailboxError(RuntimeError):
    pass


class DatabaseAway(MailboxError):
    """The mail server is fine, the database is not: the messages wait in the mailbox (said
    so on /healthz and the board, so that nobody goes to look at the mail server)."""


@contextlib.contextmanager
def _database() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        stopping(exc)
        fault = fault_of(exc)
        if not fault.waits:
            raise
        raise DatabaseAway(f"database {fault.kind} ({fault.reason}): the messages wait in "
                           "the mailbox") from exc


def stopping(exc: BaseException) -> None:
    """Raise CancelledError if this task is being cancelled: a cleanup that failed while it
    was (a logout timing out) must not turn the stop into one more retry."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


@dataclass
class Health:
    connected: bool = False
    problem: str | None = None
    since: float | None = None  # monotonic, when the problem began
    stored: int = 0


def secret(auth: Secret) -> str:
    """The password or token (a command's output for OAuth2: a fresh token each time)."""
    if auth.password is not None:
        return auth.password
    if auth.password_env is not None:
        value = os.environ.get(auth.password_env)
        if not value:
            raise MailboxError(f"environment variable {auth.password_env} is not set")
        return value
    assert auth.oauth2_token_command is not None
    done = subprocess.run(auth.oauth2_token_command, capture_output=True, text=True,  # noqa: S603
                          timeout=30, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise MailboxError(f"the token command failed: {done.stderr.strip()[:200]}")
    return done.stdout.strip()


class Inbox:
    """One mailbox's loop."""

    def __init__(self, name: str, box: Mailbox, config: MailConfig, store: Store,
                 clock: Timers, stored: Callable[[], None]):
        self.name, self.box, self.config = name, box, config
        self.store, self.clock, self._stored = store, clock, stored
        self.health = Health()
        self._wake = asyncio.Event()
        self._logged_in = False  # in this session (the back-off starts again after one)
        self._lost: asyncio.Future[None] | None = None  # done when the connection drops
        self._why: Exception | None = None  # why the session's work failed, if it did

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        attempt = 0
        while True:
            self._logged_in = False
            try:
                await self._session()
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 (any failure: said, then tried again)
                stopping(exc)
                self._failed(exc)
                if self._logged_in:  # it worked until now: the back-off starts again
                    attempt = 0
                await self.clock.after(BACKOFF[min(attempt, len(BACKOFF) - 1)])
                attempt += 1

    def _failed(self, exc: BaseException) -> None:
        if self.health.problem is None:
            self.health.since = self.clock.monotonic()
            log.error("mailbox %s: %s", self.name, exc or type(exc).__name__)
        self.health.connected = False
        self.health.problem = str(exc) or type(exc).__name__

    async def _session(self) -> None:
        # aioimaplib leaves a command waiting for its timeout (IDLE for the sweep interval)
        # when its connection drops: the session ends as soon as the connection is lost.
        lost = self._lost = asyncio.get_running_loop().create_future()
        work = asyncio.ensure_future(self._work())
        try:
            self._why = None
            await asyncio.wait({work, lost}, return_when=asyncio.FIRST_COMPLETED)
            if work.done():
                return work.result()
            if self._why is not None:  # it failed, and its logout closed the connection
                raise self._why
            raise MailboxError("the connection to the server was lost")
        finally:
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)

    async def _work(self) -> None:
        imap = await self._connect()
        try:
            while True:
                await self.sweep(imap)
                await self._idle(imap)
        except Exception as exc:
            self._why = exc  # the reason, even if the connection closes as this ends
            raise
        finally:
            self.health.connected = False
            try:
                if not self._dropped():  # else it would only wait for its timeout
                    await asyncio.wait_for(imap.logout(), 5)
            except Exception as exc:  # noqa: BLE001 (a broken connection closes as it can)
                log.debug("mailbox %s: logout: %s", self.name, exc)
            finally:  # whatever the logout did: the connection is not left open
                transport = getattr(getattr(imap, "protocol", None), "transport", None)
                if transport is not None:
                    transport.close()

    def _dropped(self) -> bool:
        return self._lost is not None and self._lost.done()

    async def _connect(self) -> aioimaplib.IMAP4:
        server = self.box.imap
        if self._lost is None or self._lost.done():  # not in a session (a test's own use)
            self._lost = asyncio.get_running_loop().create_future()
        lost = self._lost  # this connection's: a late loss of the last one is not this one's

        def on_lost(_exc: Exception | None) -> None:
            if not lost.done():
                lost.set_result(None)
        # (IMAP4 with a context is IMAP4_SSL, which takes no conn_lost_cb)
        imap = aioimaplib.IMAP4(
            server.host, server.port, timeout=30, conn_lost_cb=on_lost,
            ssl_context=tls.context(server) if server.tls == "tls" else None)
        await imap.wait_hello_from_server()
        if server.tls == "starttls":
            await tls.starttls(imap, server)
        password = await asyncio.to_thread(secret, server.auth)
        if server.auth.oauth2_token_command is not None:
            answer = await imap.xoauth2(server.user, password)
        else:
            answer = await imap.login(server.user, password)
        _ok(answer, "login")
        self.health.connected, self.health.problem, self.health.since = True, None, None
        self._logged_in = True
        return imap

    async def sweep(self, imap: aioimaplib.IMAP4) -> int:
        """Store every message in the folder not stored yet, then move (or flag) them all
        out of the way; how many were new."""
        selected = await imap.select(self.box.folder)
        _ok(selected, f"select {self.box.folder}")
        found = _UIDVALIDITY.search(b"\n".join(_bytes(x) for x in selected.lines))
        if found is None:
            raise MailboxError("the server gave no UIDVALIDITY")
        uidvalidity = int(found.group(1))
        criteria = "ALL" if self.box.done_folder else f"UNKEYWORD {FLAG}"
        search = await imap.uid_search(criteria)
        _ok(search, "search")
        uids = sorted({int(u) for line in search.lines[:-1] for u in _bytes(line).split()
                       if u.isdigit()})
        if not uids:
            return 0
        new = 0
        for chunk in _chunks(uids, BATCH):
            with _database():
                known = await self.store.stored_uids(self.name, uidvalidity, chunk)
            taken = [uid for uid in chunk if uid in known]
            for batch in await self._batches(imap, [uid for uid in chunk if uid not in known]):
                # (one not returned is gone meanwhile: another client moved it)
                for uid, raw in (await self._fetch(imap, batch)).items():
                    if await self._store(uidvalidity, uid, raw):
                        new += 1
                    taken.append(uid)
            if taken:  # stored (now or before): out of the way, once they all are
                await self._put_away(imap, sorted(taken))
        if new:
            self._stored()
        return new

    async def _store(self, uidvalidity: int, uid: int, raw: bytes) -> bool:
        found_id = _MESSAGE_ID.search(raw[:64 * 1024])
        message_id = found_id.group(1).decode("ascii", "replace") if found_id else None
        dedupe = message_id or "sha256:" + hashlib.sha256(raw).hexdigest()
        with _database():
            stored = await self.store.store_mail(self.name, uidvalidity, uid, dedupe,
                                                 message_id, raw, self.clock.now())
        if stored:
            self.health.stored += 1
        return stored

    async def _batches(self, imap: aioimaplib.IMAP4, uids: list[int]) -> list[list[int]]:
        """`uids` in fetches of at most BATCH_BYTES (one message larger is a fetch alone):
        a few round trips per batch instead of a few per message, memory bounded."""
        if not uids:
            return []
        answer = await imap.uid("fetch", _uid_set(uids), "(RFC822.SIZE)")
        _ok(answer, "fetch sizes")
        sizes = {int(u.group(1)): int(z.group(1)) for line in answer.lines
                 if (u := _FETCH_UID.search(_bytes(line))) and (z := _SIZE.search(_bytes(line)))}
        batches: list[list[int]] = []
        total = BATCH_BYTES
        for uid in uids:
            if uid not in sizes:
                continue  # gone meanwhile
            if total + sizes[uid] > BATCH_BYTES or len(batches[-1]) >= BATCH:
                batches.append([])
                total = 0
            batches[-1].append(uid)
            total += sizes[uid]
        return batches

    async def _fetch(self, imap: aioimaplib.IMAP4, uids: list[int]) -> dict[int, bytes]:
        """The messages' bytes by UID (BODY.PEEK: never marked read); one gone is missing."""
        answer = await imap.uid("fetch", _uid_set(uids), "(UID BODY.PEEK[])")
        _ok(answer, "fetch")
        return _bodies(answer.lines)

    async def _put_away(self, imap: aioimaplib.IMAP4, uids: list[int]) -> None:
        which = _uid_set(uids)
        if self.box.done_folder:
            _ok(await imap.uid("move", which, self.box.done_folder), f"move {which}")
        else:
            _ok(await imap.uid("store", which, "+FLAGS", f"({FLAG})"), f"flag {which}")

    async def _idle(self, imap: aioimaplib.IMAP4) -> None:
        """Until the server announces mail, the sweep interval passes, or we are woken."""
        self._wake.clear()
        if not imap.has_capability("IDLE"):
            await woken(self._wake, self.clock, self.config.sweep_seconds)
            return
        idle = await imap.idle_start(timeout=self.config.sweep_seconds)
        try:
            push = asyncio.ensure_future(imap.wait_server_push())
            wake = asyncio.ensure_future(self._wake.wait())
            sweep = self.clock.after(self.config.sweep_seconds)
            _, pending = await asyncio.wait({push, wake, sweep},
                                            return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        finally:
            imap.idle_done()
            if not self._dropped():
                await asyncio.wait_for(idle, 10)


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[n:n + size] for n in range(0, len(items), size)]


def _uid_set(uids: list[int]) -> str:
    return ",".join(str(uid) for uid in uids)


def _bodies(lines: list[Any]) -> dict[int, bytes]:
    """A UID FETCH's literals by UID. The UID comes in the line that opens each message's
    answer (Dovecot), or in the one that closes it (the order is the server's choice)."""
    out: dict[int, bytes] = {}
    uid: int | None = None
    body: bytes | None = None
    for line in lines:
        if isinstance(line, bytearray):
            if uid is not None:
                out[uid], uid = bytes(line), None
            else:
                body = bytes(line)
            continue
        found = _FETCH_UID.search(_bytes(line))
        if found is None:
            continue
        if body is not None:  # the UID after its literal
            out[int(found.group(1))], body = body, None
        else:
            uid = int(found.group(1))
    return out


def _bytes(value: object) -> bytes:
    return bytes(value) if isinstance(value, (bytes, bytearray)) else str(value).encode()


def _ok(answer: aioimaplib.Response, what: str) -> None:
    if answer.result != "OK":
        said = b" ".join(_bytes(x) for x in answer.lines)[:200].decode("utf-8", "replace")
        raise MailboxError(f"{what}: {answer.result} {said}")
