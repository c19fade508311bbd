"""Notifications through the outbox: what the engine decides (`notify`: one effect per
channel a rule sends the event to) and the performers that send them (Slack, the signed
webhook, e-mail; the senders are in adapters/notify/, reached through bot/registry.py).

Never twice: an effect's key is the event's occurrence and the channel
(`notify:<occurrence>:<event>:<channel>`), so deciding the same thing again adds nothing,
and the outbox performs each key once, retrying what is transient with its backoff. A
notification that cannot be sent is given up like any effect, with an activity line on the
ticket. Each channel is its own outbox lane (`lane`): a receiver that is down holds back
only its own notifications, never GitHub's effects or another channel's.

The payload holds the message and the channel's name, never its URL or secret: those are
read from the control config when sending.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.notifications import Channel, Notifications
from bot.effects.outbox import EffectContext, EffectRefused, Performer, add_effect
from bot.registry import notify_mail as mail
from bot.registry import notify_slack as slack
from bot.registry import notify_webhook as webhook

Json = dict[str, Any]


class NotifyEffect(enum.StrEnum):
    SLACK = "notify_slack"
    WEBHOOK = "notify_webhook"
    EMAIL = "notify_email"


_KIND_OF = {
    "slack": NotifyEffect.SLACK,
    "webhook": NotifyEffect.WEBHOOK,
    "email": NotifyEffect.EMAIL,
}
# How each event reads after a ticket's name, and as a headline without one.
PHRASES: Mapping[str, str] = {
    "ticket_failed": "failed",
    "needs_input": "needs input",
    "in_review": "is ready for review",
    "merged": "was merged",
    "budget_exceeded": "went over its budget",
    "runner_offline": "A runner went offline",
    "deliveries_failing": "Webhook deliveries are failing",
}
_LANE_BASE = 1000  # below the trackers' lanes (-1, -2)


def lane(channel: str) -> int:
    """The outbox lane (`installation_id`) of a channel's notifications."""
    return -(_LANE_BASE + zlib.crc32(channel.encode()) % 1_000_000_000)


@dataclass(frozen=True)
class TicketRef:
    key: str  # acme/api#12, ENG-7, PROJ-3
    title: str
    url: str | None  # on GitHub, Linear or Jira
    repo: str | None  # owner/name


@dataclass(frozen=True)
class Occurrence:
    """One event that happened, as every channel is told of it. `id` names the occurrence
    (e.g. `ticket:12:v7`): with the event and channel, the effect's key."""

    id: str
    event: str
    reason: str
    ticket: TicketRef | None = None
    ticket_id: int | None = None
    state: str | None = None
    workflow: str | None = None
    pull_request_url: str | None = None
    page_url: str | None = None  # the ticket's (or the machine's) page on OpenASE
    at: datetime | None = None

    def message(self) -> Json:
        """The JSON a webhook receives (the schema README "Notifications" documents)."""
        ticket = self.ticket
        return {
            "event": self.event,
            "at": (self.at or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
            "ticket": None
            if ticket is None
            else {"key": ticket.key, "title": ticket.title, "url": ticket.url, "repo": ticket.repo},
            "state": self.state,
            "reason": self.reason,
            "workflow": self.workflow,
            "pull_request_url": self.pull_request_url,
            "page_url": self.page_url,
        }


async def notify(
    session: AsyncSession, notifications: Notifications, occurrence: Occurrence
) -> set[int]:
    """Outbox effects telling each channel a rule names of `occurrence`, in the caller's
    transaction; the lanes of the new ones, to perform after its commit (none when every
    channel was told of it already)."""
    repo = occurrence.ticket.repo if occurrence.ticket is not None else None
    lanes: set[int] = set()
    for name in notifications.channels_for(occurrence.event, repo, occurrence.workflow):
        channel = notifications.channels[name]
        added = await add_effect(
            session,
            key=f"notify:{occurrence.id}:{occurrence.event}:{name}"[:255],
            kind=_KIND_OF[channel.kind],
            payload={"channel": name, "message": occurrence.message()},
            ticket_id=occurrence.ticket_id,
            installation_id=lane(name),
        )
        if added:
            lanes.add(lane(name))
    return lanes


# --- sending --------------------------------------------------------------------------------


def headline(message: Json) -> tuple[str, str]:
    """The notification in one line: as plain text, and as Slack mrkdwn with its link."""
    ticket, phrase = message.get("ticket"), PHRASES.get(message["event"], message["event"])
    if not isinstance(ticket, dict):
        return phrase, slack.escape(phrase)
    name = f"{ticket['key']} {ticket['title']}".strip()
    url = ticket.get("url") or message.get("page_url")
    linked = slack.link(url, name) if url else slack.escape(name)
    return f"{name} {phrase}", f"*{linked}* {slack.escape(phrase)}"


def _links(message: Json) -> list[tuple[str, str]]:
    ticket = message.get("ticket") or {}
    found = [
        ("Open the ticket", ticket.get("url")),
        ("Pull request", message.get("pull_request_url")),
        ("OpenASE page", message.get("page_url")),
    ]
    return [(text, url) for text, url in found if isinstance(url, str) and url]


def _context(message: Json) -> str:
    ticket = message.get("ticket") or {}
    parts = [ticket.get("repo"), message.get("workflow"), message.get("state")]
    return slack.escape(" · ".join(str(part) for part in parts if part) or "OpenASE")


def slack_message(message: Json) -> Json:
    """The Block Kit message for a notification."""
    _, text = headline(message)
    reason = slack.escape(str(message.get("reason") or ""))
    return slack.blocks(text, reason, _context(message), _links(message))


def email_text(message: Json) -> tuple[str, str]:
    """The subject and plain-text body of a notification's mail."""
    plain, _ = headline(message)
    lines = [plain, ""]
    if message.get("reason"):
        lines += [str(message["reason"]), ""]
    lines += [f"{text}: {url}" for text, url in _links(message)]
    return f"[OpenASE] {plain}", "\n".join(lines) + "\n"


ChannelsNow = Callable[[], Notifications | None]


def performers(current: ChannelsNow) -> dict[str, Performer]:
    """The performers of notifications; `current` gives the control config's channels as
    they are now (None while the engine is not built: the effect is tried again later)."""

    def channel_of(ctx: EffectContext, payload: Json, kind: str) -> tuple[Channel, Json]:
        notifications = current()
        if notifications is None:
            raise RuntimeError("no control-plane config loaded yet")
        name, message = payload.get("channel"), payload.get("message")
        if not isinstance(name, str) or not isinstance(message, dict):
            raise EffectRefused(f"effect {ctx.key} carries no channel and message")
        channel = notifications.channels.get(name)
        if channel is None or channel.kind != kind:
            raise EffectRefused(f"no {kind} channel {name!r} in the control-plane config now")
        return channel, message

    def done(payload: Json, kind: str, status: int | None = None) -> Json:
        summary = f"notified {kind} channel {payload['channel']} of {payload['message']['event']}"
        return {"summary": summary} | ({} if status is None else {"status": status})

    async def to_slack(ctx: EffectContext, payload: Json) -> Json:
        channel, message = channel_of(ctx, payload, "slack")
        assert channel.url is not None  # a slack channel has one (bot/config/notifications.py)
        status = await slack.send(channel.url.get_secret_value(), slack_message(message))
        return done(payload, "slack", status)

    async def to_webhook(ctx: EffectContext, payload: Json) -> Json:
        channel, message = channel_of(ctx, payload, "webhook")
        assert channel.url is not None
        assert channel.secret is not None
        status = await webhook.send(
            channel.url.get_secret_value(),
            channel.secret.get_secret_value(),
            message,
            delivery=ctx.key,
        )
        return done(payload, "webhook", status)

    async def to_email(ctx: EffectContext, payload: Json) -> Json:
        channel, message = channel_of(ctx, payload, "email")
        assert channel.host is not None
        assert channel.sender is not None
        assert channel.to
        server = mail.Smtp(
            host=channel.host,
            port=channel.smtp_port,
            security=channel.security,
            username=None if channel.username is None else channel.username.get_secret_value(),
            password=None if channel.password is None else channel.password.get_secret_value(),
        )
        subject, text = email_text(message)
        await mail.send(server, mail.message(channel.sender, channel.to, subject, text))
        return done(payload, "email")

    return {
        NotifyEffect.SLACK: to_slack,
        NotifyEffect.WEBHOOK: to_webhook,
        NotifyEffect.EMAIL: to_email,
    }
