"""Notifications through the outbox against local receivers on 127.0.0.1 (a Slack incoming
webhook, a generic webhook, an SMTP server): each event arrives once, signed, after the
receiver failed twice; rules filter by repository; secrets never reach the logs."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from typing import Any, cast

import structlog
from sqlalchemy import select, update

from adapters.base import CodeHost
from adapters.notify import webhook
from bot.config.control import ControlConfig, parse_control_config
from bot.deps import Deps
from bot.effects.notifications import NotifyEffect, Occurrence, TicketRef, lane, notify, performers
from bot.effects.perform import perform_pending
from bot.tables.workflow import EffectStatus, OutboxEffect
from harness_store.db import transaction
from tests.fakes.smtp_server import smtp_server
from tests.support.receivers import receivers

Json = dict[str, Any]
SLACK_TOKEN = "slack-token-not-real-7f3a"
HOOK_SECRET = "whsec-not-real-9c1e"
SMTP_PASSWORD = "smtp-pass-not-real-4d2b"
TICKET = TicketRef(
    key="acme/api#12",
    title="Fix <the> & login",
    url="https://github.com/acme/api/issues/12",
    repo="acme/api",
)


def control(url: str, smtp_port: int = 1, rules: str | None = None) -> ControlConfig:
    text = textwrap.dedent(
        f"""\
        providers: {{script: {{cli: command, argv: [x]}}}}
        notifications:
          channels:
            team: {{kind: slack, url: "${{SLACK_URL}}"}}
            audit: {{kind: webhook, url: "{url}/hook", secret: "${{HOOK_SECRET}}"}}
            gone: {{kind: webhook, url: "{url}/gone", secret: "${{HOOK_SECRET}}"}}
            oncall:
              kind: email
              host: 127.0.0.1
              port: {smtp_port}
              security: none
              from: openase@example.com
              to: [oncall@example.com, lead@example.com]
              username: openase
              password: "${{SMTP_PASSWORD}}"
          rules:
        """
    ) + textwrap.indent(
        rules
        or "- {events: [ticket_failed, merged], channels: [team, audit], repos: [acme/api]}\n",
        "    ",
    )
    env = {
        "SLACK_URL": f"{url}/slack/{SLACK_TOKEN}",
        "HOOK_SECRET": HOOK_SECRET,
        "SMTP_PASSWORD": SMTP_PASSWORD,
    }
    parsed = parse_control_config(text, file="control.yml", environ=env)
    assert isinstance(parsed, ControlConfig), parsed
    return parsed


def occurrence(event: str, version: int, ticket: TicketRef = TICKET) -> Occurrence:
    return Occurrence(
        id=f"ticket:7:v{version}",
        event=event,
        reason="the tests gate failed twice",
        ticket=ticket,
        state="failed" if event == "ticket_failed" else "done",
        workflow="coder",
        pull_request_url="https://github.com/acme/api/pull/13" if event == "merged" else None,
        page_url="http://openase.test/tickets/7",
        at=datetime(2026, 12, 6, 10, 0, tzinfo=UTC),
    )


async def decide(deps: Deps, config: ControlConfig, *occurrences: Occurrence) -> set[int]:
    lanes: set[int] = set()
    async with transaction(deps.sessions) as session:
        for each in occurrences:
            lanes |= await notify(session, config.notifications, each)
    return lanes


async def perform_all(deps: Deps, config: ControlConfig, lanes: set[int], rounds: int = 6) -> None:
    """Perform the lanes' effects as the outbox does, making each retry due at once."""
    for _ in range(rounds):
        await perform_pending(
            deps,
            performers(lambda: config.notifications),
            installations=sorted(lanes),
            github=cast(CodeHost, object()),  # notifications never reach GitHub
        )
        async with transaction(deps.sessions) as session:
            await session.execute(
                update(OutboxEffect)
                .where(OutboxEffect.status == EffectStatus.PENDING)
                .values(not_before=datetime.now(UTC))
            )


async def effects(deps: Deps) -> list[OutboxEffect]:
    async with deps.sessions() as session:
        return list((await session.scalars(select(OutboxEffect).order_by(OutboxEffect.id))).all())


async def test_a_webhook_gets_each_event_once_signed_after_failing_twice(deps: Deps) -> None:
    async with receivers(hook=2, slack=2) as got:
        config = control(got.url)
        failed, merged = occurrence("ticket_failed", 3), occurrence("merged", 9)
        lanes = await decide(deps, config, failed, merged)
        # Deciding the same occurrences again (a redelivered webhook) adds nothing.
        assert await decide(deps, config, failed, merged) == set()
        assert lanes == {lane("team"), lane("audit")}
        assert len(await effects(deps)) == 4

        await perform_all(deps, config, lanes)

        accepted = got.accepted("/hook")
        assert [r.json()["event"] for r in accepted] == ["ticket_failed", "merged"]
        assert len(got.tried("/hook")) == 4  # two 503s, then each event once
        for request in got.tried("/hook"):
            signature = request.headers["x-openase-signature-256"]
            assert signature.startswith("sha256=")
            assert webhook.verify(HOOK_SECRET, request.body, signature)
            assert not webhook.verify("another secret", request.body, signature)
        # One delivery id per notification, the same on each retry of it.
        deliveries = [r.headers["x-openase-delivery"] for r in got.tried("/hook")]
        assert deliveries[0] == deliveries[1] == deliveries[2] != deliveries[3]
        assert accepted[0].headers["x-openase-event"] == "ticket_failed"
        assert accepted[1].json() == {
            "event": "merged",
            "at": "2026-12-06T10:00:00Z",
            "ticket": {
                "key": "acme/api#12",
                "title": "Fix <the> & login",
                "url": "https://github.com/acme/api/issues/12",
                "repo": "acme/api",
            },
            "state": "done",
            "reason": "the tests gate failed twice",
            "workflow": "coder",
            "pull_request_url": "https://github.com/acme/api/pull/13",
            "page_url": "http://openase.test/tickets/7",
        }
        assert all(row.status == EffectStatus.DONE for row in await effects(deps))


async def test_slack_gets_a_block_kit_message_with_its_links(deps: Deps) -> None:
    async with receivers(slack=2) as got:
        config = control(got.url)
        lanes = await decide(deps, config, occurrence("merged", 4))
        await perform_all(deps, config, lanes)

        path = f"/slack/{SLACK_TOKEN}"
        assert len(got.tried(path)) == 3
        [message] = [r.json() for r in got.accepted(path)]
        blocks = message["blocks"]
        assert blocks[0]["type"] == "section"
        headline = blocks[0]["text"]["text"]
        # The ticket linked by its key and title, Slack's markup characters escaped.
        assert headline == (
            "*<https://github.com/acme/api/issues/12|acme/api#12 Fix &lt;the&gt; &amp; login>*"
            " was merged"
        )
        assert message["text"] == headline
        buttons = {b["text"]["text"]: b["url"] for b in blocks[-1]["elements"]}
        assert buttons == {
            "Open the ticket": "https://github.com/acme/api/issues/12",
            "Pull request": "https://github.com/acme/api/pull/13",
            "OpenASE page": "http://openase.test/tickets/7",
        }
        rows = await effects(deps)
        assert [(row.kind, row.status) for row in rows] == [
            (NotifyEffect.SLACK, EffectStatus.DONE),
            (NotifyEffect.WEBHOOK, EffectStatus.DONE),
        ]


async def test_a_rules_repository_filter_keeps_other_repositories_quiet(deps: Deps) -> None:
    async with receivers() as got:
        config = control(got.url)
        elsewhere = TicketRef(key="acme/web#1", title="x", url=None, repo="acme/web")
        assert await decide(deps, config, occurrence("ticket_failed", 1, elsewhere)) == set()
        assert await decide(deps, config, occurrence("in_review", 2)) == set()  # no rule
        assert await effects(deps) == []
        assert got.requests == []


async def test_email_goes_over_smtp_with_a_login_after_the_server_was_busy(deps: Deps) -> None:
    async with smtp_server("openase", SMTP_PASSWORD) as server, receivers() as got:
        server.busy = 2
        rules = "- {events: [ticket_failed], channels: [oncall]}\n"
        config = control(got.url, smtp_port=server.port, rules=rules)
        lanes = await decide(deps, config, occurrence("ticket_failed", 5))
        await perform_all(deps, config, lanes)

        assert server.refused == 2
        [mail] = server.messages
        assert mail["Subject"] == "[OpenASE] acme/api#12 Fix <the> & login failed"
        assert mail["From"] == "openase@example.com"
        assert mail["To"] == "oncall@example.com, lead@example.com"
        assert server.envelopes == [
            ("openase@example.com", ["oncall@example.com", "lead@example.com"])
        ]
        payload = mail.get_payload(decode=True)
        assert isinstance(payload, bytes)
        text = payload.decode()
        assert "the tests gate failed twice" in text
        assert "Open the ticket: https://github.com/acme/api/issues/12" in text
        assert "OpenASE page: http://openase.test/tickets/7" in text
        [row] = await effects(deps)
        assert row.status == EffectStatus.DONE
        assert row.attempts == 3


async def test_secrets_never_reach_the_logs(deps: Deps) -> None:
    async with smtp_server("openase", "another password") as server, receivers(hook=1) as got:
        got.failures["/slack"] = 1
        rules = "- {events: [ticket_failed], channels: [team, audit, oncall]}\n"
        config = control(got.url, smtp_port=server.port, rules=rules)
        with structlog.testing.capture_logs() as logs:
            lanes = await decide(deps, config, occurrence("ticket_failed", 6))
            await perform_all(deps, config, lanes, rounds=2)
        assert any(entry["event"] == "outbox_effect_retry" for entry in logs)
        assert any(entry["event"] == "outbox_effect_failed" for entry in logs)  # the login
        shown = repr(logs) + repr([row.last_error for row in await effects(deps)])
        for secret in (SLACK_TOKEN, HOOK_SECRET, SMTP_PASSWORD):
            assert secret not in shown


async def test_a_refusing_receiver_or_a_removed_channel_fails_at_once(deps: Deps) -> None:
    async with receivers() as got:
        got.refuse.add("/gone")
        rules = "- {events: [merged], channels: [gone, audit]}\n"
        config = control(got.url, rules=rules)
        lanes = await decide(deps, config, occurrence("merged", 8))
        without_audit = config.model_copy(
            update={
                "notifications": config.notifications.model_copy(
                    update={"channels": {"gone": config.notifications.channels["gone"]}}
                )
            }
        )
        await perform_all(deps, without_audit, lanes, rounds=1)

        gone, audit = await effects(deps)
        assert gone.status == EffectStatus.FAILED
        assert gone.last_error == "the webhook refused the notification: HTTP 404"
        assert audit.status == EffectStatus.FAILED
        assert audit.last_error == "no webhook channel 'audit' in the control-plane config now"
        assert len(got.tried("/gone")) == 1
