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
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import aioimaplib

from centralino.clock import Timers
from centralino.mail import tls
from centralino.storage.faults import fault_of
from centralino.storage.store import Store
from mail.config import Mailbox, MailConfig, Secret

log = logging.getLogger("centralino.mail")
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]{1,250}>)", re.IGNORECASE | re.MULTILINE)
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
                await asyncio.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
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
        with _database():
            known = await self.store.stored_uids(self.name, uidvalidity, uids)
        new = 0
        for uid in uids:
            if uid not in known:
                raw = await self._fetch(imap, uid)
                if raw is None:
                    continue  # gone meanwhile (another client moved it)
                found_id = _MESSAGE_ID.search(raw[:64 * 1024])
                message_id = found_id.group(1).decode("ascii", "replace") if found_id else None
                dedupe = message_id or "sha256:" + hashlib.sha256(raw).hexdigest()
                with _database():
                    stored = await self.store.store_mail(self.name, uidvalidity, uid, dedupe,
                                                         message_id, raw, self.clock.now())
                if stored:
                    new += 1
                    self.health.stored += 1
            await self._put_away(imap, uid)  # stored (now or before): out of the way
        if new:
            self._stored()
        return new

    async def _fetch(self, imap: aioimaplib.IMAP4, uid: int) -> bytes | None:
        answer = await imap.uid("fetch", str(uid), "(BODY.PEEK[])")
        _ok(answer, f"fetch {uid}")
        literals = [x for x in answer.lines if isinstance(x, bytearray)]
        return bytes(literals[0]) if literals else None

    async def _put_away(self, imap: aioimaplib.IMAP4, uid: int) -> None:
        if self.box.done_folder:
            _ok(await imap.uid("move", str(uid), self.box.done_folder), f"move {uid}")
        else:
            _ok(await imap.uid("store", str(uid), "+FLAGS", f"({FLAG})"), f"flag {uid}")

    async def _idle(self, imap: aioimaplib.IMAP4) -> None:
        """Until the server announces mail, the sweep interval passes, or we are woken."""
        self._wake.clear()
        if not imap.has_capability("IDLE"):
            await _until(self._wake.wait(), self.config.sweep_seconds)
            return
        idle = await imap.idle_start(timeout=self.config.sweep_seconds)
        try:
            push = asyncio.ensure_future(imap.wait_server_push())
            woken = asyncio.ensure_future(self._wake.wait())
            _, pending = await asyncio.wait({push, woken}, timeout=self.config.sweep_seconds,
                                            return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        finally:
            imap.idle_done()
            if not self._dropped():
                await asyncio.wait_for(idle, 10)


async def _until(waiting: Awaitable[object], seconds: float) -> None:
    try:
        await asyncio.wait_for(waiting, seconds)
    except TimeoutError:
        pass


def _bytes(value: object) -> bytes:
    return bytes(value) if isinstance(value, (bytes, bytearray)) else str(value).encode()


def _ok(answer: aioimaplib.Response, what: str) -> None:
    if answer.result != "OK":
        said = b" ".join(_bytes(x) for x in answer.lines)[:200].decode("utf-8", "replace")
        raise MailboxError(f"{what}: {answer.result} {said}")
