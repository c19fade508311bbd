"""A small SMTP server on 127.0.0.1 that records what it is sent: EHLO, AUTH PLAIN, MAIL,
RCPT, DATA, QUIT (RFC 5321 as smtplib speaks it, no TLS). `busy` answers the next MAIL
commands with 451 (try again later), as a server under load does."""

from __future__ import annotations

import asyncio
import base64
import email
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import Message


@dataclass
class FakeSmtp:
    username: str
    password: str
    port: int = 0
    busy: int = 0  # MAIL commands still to refuse with 451
    messages: list[Message] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    refused: int = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def say(text: str) -> None:
            writer.write(text.encode() + b"\r\n")

        say("220 fake.smtp ESMTP ready")
        sender, authed = "", False
        recipients: list[str] = []
        try:
            while line := await reader.readline():
                command = line.decode().rstrip("\r\n")
                verb = command.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    say("250-fake.smtp\r\n250-AUTH PLAIN\r\n250 8BITMIME")
                elif verb == "AUTH":
                    _, _, initial = command.split(" ", 2)
                    _, user, password = base64.b64decode(initial).decode().split("\0")
                    authed = (user, password) == (self.username, self.password)
                    self.logins.append(user)
                    say("235 ok" if authed else "535 bad credentials")
                elif verb == "MAIL":
                    if not authed:
                        say("530 authentication required")
                    elif self.busy > 0:
                        self.busy -= 1
                        self.refused += 1
                        say("451 busy, try again later")
                    else:
                        sender, recipients = command.split(":", 1)[1].strip("<> "), []
                        say("250 ok")
                elif verb == "RCPT":
                    recipients.append(command.split(":", 1)[1].strip("<> "))
                    say("250 ok")
                elif verb == "DATA":
                    say("354 go on")
                    await writer.drain()
                    data = await reader.readuntil(b"\r\n.\r\n")
                    self.messages.append(email.message_from_bytes(data[: -len(b".\r\n")]))
                    self.envelopes.append((sender, recipients))
                    say("250 queued")
                elif verb == "QUIT":
                    say("221 bye")
                    await writer.drain()
                    break
                else:  # RSET, NOOP
                    say("250 ok")
                await writer.drain()
        finally:
            writer.close()


@asynccontextmanager
async def smtp_server(username: str, password: str) -> AsyncIterator[FakeSmtp]:
    """A FakeSmtp listening on 127.0.0.1 (its `port` set) for the block's duration."""
    fake = FakeSmtp(username, password)
    server = await asyncio.start_server(fake._serve, "127.0.0.1", 0)
    fake.port = server.sockets[0].getsockname()[1]
    try:
        yield fake
    finally:
        server.close()
        await server.wait_closed()
