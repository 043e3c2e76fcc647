"""How the mailbox reader reads a batched UID FETCH answer (aioimaplib's lines: text lines,
and each message's bytes as a bytearray), whatever order the server puts UID and body in; and
when it tries again a mailbox it cannot reach (on the service's clock)."""

import asyncio
from datetime import UTC, datetime

from centralino.clock import VirtualClock
from centralino.mail.inbox import Inbox, _bodies, _chunks, _uid_set
from mail.config import Mailbox, MailConfig, Secret, Server


def test_bodies_by_uid_whether_the_uid_comes_before_or_after_them():
    dovecot = [b"1 FETCH (UID 7 BODY[] {5}", bytearray(b"uno\r\n"), b")",
               b"2 FETCH (UID 9 BODY[] {4}", bytearray(b"due\n"), b")", b"Fetch completed."]
    assert _bodies(dovecot) == {7: b"uno\r\n", 9: b"due\n"}
    after = [b"1 FETCH (BODY[] {3}", bytearray(b"tre"), b" UID 12)",
             b"2 FETCH (BODY[] {7}", bytearray(b"quattro"), b" UID 13 FLAGS (\\Seen))",
             b"Fetch completed."]
    assert _bodies(after) == {12: b"tre", 13: b"quattro"}
    assert _bodies([b"Fetch completed."]) == {}  # all gone meanwhile


def test_uids_go_in_batches():
    assert _chunks(list(range(1, 8)), 3) == [[1, 2, 3], [4, 5, 6], [7]]
    assert _uid_set([3, 5, 9]) == "3,5,9"


# --- the reconnection back-off, on the service's clock -----------------------------------------

class Refusing:
    """An IMAP port whose server hangs up at once: each connection is a failed attempt."""

    def __init__(self) -> None:
        self.attempts = 0
        self.changed = asyncio.Event()

    def _accept(self, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.attempts += 1
        self.changed.set()
        writer.close()

    async def until(self, attempts: int) -> None:
        async with asyncio.timeout(5):
            while self.attempts < attempts:
                self.changed.clear()
                await self.changed.wait()


async def test_a_mailbox_that_cannot_be_reached_is_tried_again_on_the_clocks_back_off():
    refusing = Refusing()
    server = await asyncio.start_server(refusing._accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    imap = Server(host="127.0.0.1", port=port, tls="none", user="helpdesk",
                  auth=Secret(password="test"))
    box = Mailbox(imap=imap, topic="generale", address="helpdesk@helpdesk.test")
    config = MailConfig(domain="helpdesk.test", sweep_seconds=60,
                        acknowledgements_per_sender_per_hour=3, smtp=imap,
                        mailboxes={"cittadini": box}, digest="test")
    clock = VirtualClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    inbox = Inbox("cittadini", box, config, None, clock, lambda: None)  # type: ignore[arg-type]
    task = asyncio.create_task(inbox.run())
    try:
        await refusing.until(1)
        async with asyncio.timeout(5):  # the failure said, then the first wait
            while inbox.health.problem is None or not clock._timers:
                await asyncio.sleep(0.01)
        assert not inbox.health.connected
        # BACKOFF: 1, 2, 5, 10, 30, then every 60 s of the clock; never sooner.
        for attempt, wait in enumerate((1, 2, 5, 10, 30, 60, 60), start=2):
            await clock.advance(wait - 0.01)
            await asyncio.sleep(0.05)  # real time for a connection that would be made now
            assert refusing.attempts == attempt - 1, f"tried again before {wait} s"
            await clock.advance(0.01)
            await refusing.until(attempt)
            async with asyncio.timeout(5):  # it fails, and waits again
                while not [t for t in clock._timers if not t[2].cancelled]:
                    await asyncio.sleep(0.01)
        assert refusing.attempts == 8
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        server.close()
        await server.wait_closed()
