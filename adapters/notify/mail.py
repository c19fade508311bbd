"""E-mail over SMTP with the standard library's smtplib, in a thread.

smtplib rather than aiosmtplib: one short conversation per notification, off the event
loop in a thread, needs no dependency and is the most widely exercised SMTP client there is.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

from adapters.errors import RequestRejected, TransientError

TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Smtp:
    """How to reach the server: `security` is starttls, tls (implicit, port 465) or none."""

    host: str
    port: int
    security: str = "starttls"
    username: str | None = None
    password: str | None = None
    timeout: float = TIMEOUT_SECONDS
    context: ssl.SSLContext | None = None  # default: the system's trusted CAs


def message(sender: str, to: tuple[str, ...], subject: str, text: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["Subject"] = " ".join(subject.split())[:200]
    mail.set_content(text)
    return mail


async def send(server: Smtp, mail: EmailMessage) -> None:
    """Send `mail`; TransientError when the server or network fails for now (4xx, a
    dropped connection), RequestRejected when it refuses (5xx, credentials)."""
    await asyncio.to_thread(_send, server, mail)


def _send(server: Smtp, mail: EmailMessage) -> None:
    context = server.context or ssl.create_default_context()
    try:
        if server.security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                server.host, server.port, timeout=server.timeout, context=context
            )
        else:
            client = smtplib.SMTP(server.host, server.port, timeout=server.timeout)
        with client:
            if server.security == "starttls":
                client.starttls(context=context)
            if server.username is not None and server.password is not None:
                client.login(server.username, server.password)
            client.send_message(mail)
    except smtplib.SMTPAuthenticationError as exc:
        raise RequestRejected(exc.smtp_code, f"SMTP refused the login ({exc.smtp_code})") from None
    except smtplib.SMTPResponseException as exc:
        raise _answer(exc.smtp_code) from None
    except smtplib.SMTPRecipientsRefused as exc:
        codes = sorted({code for code, _ in exc.recipients.values()})
        raise _answer(min(codes) if codes else 550, "recipients") from None
    except smtplib.SMTPNotSupportedError:
        raise RequestRejected(502, "the SMTP server does not offer STARTTLS or AUTH") from None
    except (smtplib.SMTPException, OSError) as exc:  # disconnected, refused, timed out
        raise TransientError(f"SMTP {server.host}:{server.port}: {type(exc).__name__}") from None


def _answer(code: int, what: str = "message") -> Exception:
    if 400 <= code < 500:
        return TransientError(f"SMTP answered {code} for the {what}")
    return RequestRejected(code, f"SMTP refused the {what} ({code})")
