"""TLS for the mail servers: certificates always checked (the system's CAs, plus a private CA
when mail.yaml names one), and IMAP STARTTLS, which aioimaplib knows as a command but does
not carry out (the connection has to be upgraded under its protocol object)."""

from __future__ import annotations

import asyncio
import ssl

import aioimaplib

from mail.config import Server


class TlsRefused(RuntimeError):
    pass


def context(server: Server) -> ssl.SSLContext:
    """Hostname and certificate checked; `ca_file` added to the system's authorities."""
    made = ssl.create_default_context()
    if server.ca_file is not None:
        made.load_verify_locations(cafile=str(server.ca_file))
    return made


async def starttls(imap: aioimaplib.IMAP4, server: Server) -> None:
    """Upgrade a just-greeted IMAP connection to TLS before anything secret is said. A server
    that does not offer it is refused: never a fall back to clear text (RFC 3501 6.2.1)."""
    if not imap.has_capability("STARTTLS"):
        raise TlsRefused(f"{server.host} does not offer STARTTLS: not logging in in clear")
    protocol = imap.protocol
    command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
    answer = await asyncio.wait_for(protocol.execute(command), imap.timeout)
    if answer.result != "OK":
        raise TlsRefused(f"STARTTLS refused: {answer.result}")
    loop = asyncio.get_running_loop()
    protocol.transport = await asyncio.wait_for(
        loop.start_tls(protocol.transport, protocol, context(server),
                       server_hostname=server.host), imap.timeout)
    # What the server said before TLS is forgotten (it could have been forged): asked again.
    await asyncio.wait_for(protocol.capability(), imap.timeout)
