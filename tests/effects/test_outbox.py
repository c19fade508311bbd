"""The outbox: effects decided in a transaction, performed once, retried with backoff,
serialised per installation; against real Postgres and Redis and the respx fake of GitHub."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.deps import Deps
from bot.effects.kinds import EffectKind
from bot.effects.outbox import (
    NewEffect,
    SettledEffect,
    add_effect,
    add_effects,
    enqueue_perform,
    key_scope,
    revision_key,
)
from bot.effects.perform import BACKOFF_BASE, MAX_ATTEMPTS, backoff, perform_pending
from bot.processes.worker import PERFORMERS, perform_outbox_cron, perform_outbox_job
from bot.tables.mirror import Ticket
from bot.tables.workflow import Activity, EffectStatus, OutboxEffect
from harness_store.db import transaction
from tests.fakes.github_api import FakeGitHubAPI, FakeRepo
from tests.support.outbox import make_due, outbox_rows

INSTALLATION = 77
OTHER_INSTALLATIONS = (78, 79)
REPO = "acme/widgets"


@pytest.fixture
def widgets(github_api: FakeGitHubAPI) -> FakeRepo:
    github_api.add_installation(INSTALLATION, "acme")
    repo = github_api.add_repo(REPO, 555, INSTALLATION)
    for number in range(1, 5):
        github_api.add_issue(repo, number, title=f"issue {number}")
    return repo


async def _ticket(deps: Deps, number: int = 1) -> int:
    async with transaction(deps.sessions) as session:
        ticket = Ticket(
            source="github", external_id=f"555:{number}", key=f"{REPO}#{number}", state="open"
        )
        session.add(ticket)
        await session.flush()
        return ticket.id


def _reply(number: int, body: str, repo: str = REPO) -> dict[str, Any]:
    return {"repo": repo, "number": number, "body": body}


async def _decide(
    deps: Deps,
    key: str,
    payload: dict[str, Any],
    *,
    kind: str = EffectKind.COMMENT,
    ticket_id: int | None = None,
    installation_id: int | None = INSTALLATION,
) -> None:
    async with transaction(deps.sessions) as session:
        await add_effect(
            session,
            key=key,
            kind=kind,
            payload=payload,
            ticket_id=ticket_id,
            installation_id=installation_id,
        )


async def _activity(deps: Deps) -> list[tuple[int, str, str]]:
    async with deps.sessions() as session:
        rows = await session.execute(
            select(Activity.ticket_id, Activity.kind, Activity.message).order_by(Activity.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]  # rows of three columns


# --- deciding ----------------------------------------------------------------------------------


async def test_an_effect_decided_twice_is_recorded_once(deps: Deps) -> None:
    async with transaction(deps.sessions) as session:
        first = await add_effect(
            session,
            key="reply:1",
            kind=EffectKind.COMMENT,
            payload=_reply(1, "a"),
            ticket_id=None,
            installation_id=INSTALLATION,
        )
    async with transaction(deps.sessions) as session:
        again = await add_effect(
            session,
            key="reply:1",
            kind=EffectKind.COMMENT,
            payload=_reply(1, "changed"),
            ticket_id=None,
            installation_id=INSTALLATION,
        )

    assert (first, again) == (True, False)
    rows = await outbox_rows(deps)
    assert list(rows) == ["reply:1"]
    assert rows["reply:1"].payload["body"] == "a"


async def test_an_effect_is_lost_with_a_decision_that_rolls_back(deps: Deps) -> None:
    async def decide_then_fail() -> None:
        async with transaction(deps.sessions) as session:
            await add_effect(
                session,
                key="reply:1",
                kind=EffectKind.COMMENT,
                payload=_reply(1, "a"),
                ticket_id=None,
                installation_id=INSTALLATION,
            )
            raise RuntimeError("the decision failed")

    with pytest.raises(RuntimeError):
        await decide_then_fail()

    assert await outbox_rows(deps) == {}


async def test_effects_decided_together_go_in_one_statement_each_key_once(deps: Deps) -> None:
    """`add_effects`, as a state change publishes (label, card, status comment): in the
    order given, a key already there or twice in the batch recorded once, JSON kept as
    given, a later start honoured, and the ticket row the same transaction added first
    flushed before them (the statement skips the session's autoflush)."""
    await _decide(deps, "reply:1", _reply(1, "first"))
    later = datetime.now(UTC) + timedelta(hours=1)
    async with transaction(deps.sessions) as session:
        ticket = Ticket(source="github", external_id="555:9", key=f"{REPO}#9", state="open")
        session.add(ticket)  # pending: only the flush sends it
        await session.flush()
        ticket_id = ticket.id
        unflushed = Ticket(source="github", external_id="555:10", key=f"{REPO}#10", state="open")
        session.add(unflushed)
        new = await add_effects(
            session,
            [
                NewEffect(
                    "label:9#1",
                    EffectKind.STATUS_LABEL,
                    {"add": "x", "n": [1, None]},
                    ticket_id,
                    INSTALLATION,
                ),
                NewEffect("reply:1", EffectKind.COMMENT, _reply(1, "again"), None, INSTALLATION),
                NewEffect(
                    "status:9#1",
                    EffectKind.STATUS_COMMENT,
                    _reply(9, "é ✓"),
                    ticket_id,
                    INSTALLATION,
                    later,
                ),
                NewEffect(
                    "label:9#1", EffectKind.STATUS_LABEL, {"add": "y"}, ticket_id, INSTALLATION
                ),
            ],
        )
        assert unflushed.id is not None  # flushed before the effects went in
    assert new == {"label:9#1", "status:9#1"}
    rows = await outbox_rows(deps)
    assert list(rows) == ["reply:1", "label:9#1", "status:9#1"]  # in id order
    assert rows["reply:1"].payload["body"] == "first"
    assert rows["label:9#1"].payload == {"add": "x", "n": [1, None]}
    assert rows["status:9#1"].payload["body"] == "é ✓"
    assert rows["status:9#1"].not_before == later
    assert rows["label:9#1"].not_before < later
    assert {row.status for row in rows.values()} == {EffectStatus.PENDING}
    assert {row.attempts for row in rows.values()} == {0}


async def test_a_batch_with_a_bad_key_records_none_of_it(deps: Deps) -> None:
    async with transaction(deps.sessions) as session:
        with pytest.raises(ValueError, match="an outbox key must be 1 to 255 characters"):
            await add_effects(
                session,
                [
                    NewEffect("reply:1", EffectKind.COMMENT, _reply(1, "a"), None, INSTALLATION),
                    NewEffect("x" * 256, EffectKind.COMMENT, _reply(1, "b"), None, INSTALLATION),
                ],
            )
        assert await add_effects(session, []) == set()
    assert await outbox_rows(deps) == {}


def test_revision_keys_name_their_scope() -> None:
    assert revision_key("status:12", 3) == "status:12#3"
    assert key_scope("status:12#3") == "status:12"
    assert key_scope("reaction:5:eyes") is None
    with pytest.raises(ValueError, match="may not contain"):
        revision_key("a#b", 1)


def test_backoff_doubles_up_to_a_cap() -> None:
    delays = [backoff(n).total_seconds() for n in (1, 2, 3, 20)]
    assert BACKOFF_BASE <= delays[0] <= BACKOFF_BASE * 1.1
    assert 2 * BACKOFF_BASE <= delays[1] <= 2 * BACKOFF_BASE * 1.1
    assert 4 * BACKOFF_BASE <= delays[2] <= 4 * BACKOFF_BASE * 1.1
    assert 600 <= delays[3] <= 660


# --- performing ----------------------------------------------------------------------------------


async def test_done_effects_are_recorded_with_their_result_and_activity(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    ticket_id = await _ticket(deps)
    await _decide(deps, "reply:1", _reply(1, "hello"), ticket_id=ticket_id)
    await _decide(deps, "reply:2", _reply(2, "no ticket"))

    assert await perform_pending(deps, PERFORMERS) == 2

    rows = await outbox_rows(deps)
    assert {key: row.status for key, row in rows.items()} == {
        "reply:1": EffectStatus.DONE,
        "reply:2": EffectStatus.DONE,
    }
    assert rows["reply:1"].attempts == 1
    assert rows["reply:1"].done_at is not None
    assert rows["reply:1"].result is not None
    assert rows["reply:1"].result["comment_id"] == github_api.comments_on(widgets, 1)[0]["id"]
    # Only effects of a ticket land in its activity.
    assert await _activity(deps) == [(ticket_id, "effect", "comment posted on #1")]
    assert await perform_pending(deps, PERFORMERS) == 0  # nothing is performed twice


async def test_a_server_error_is_retried_with_backoff(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    github_api.queue(502, {"message": "Bad Gateway"}, method="POST", path_regex="/comments$")
    await _decide(deps, "reply:1", _reply(1, "hello"))

    before = datetime.now(UTC)
    assert await perform_pending(deps, PERFORMERS) == 0
    row = (await outbox_rows(deps))["reply:1"]
    assert row.status == EffectStatus.PENDING
    assert row.attempts == 1
    assert "502" in (row.last_error or "")
    wait = (row.not_before - before).total_seconds()
    assert BACKOFF_BASE * 0.9 <= wait <= BACKOFF_BASE * 1.1 + 1
    assert await perform_pending(deps, PERFORMERS) == 0  # not due yet

    await make_due(deps)
    assert await perform_pending(deps, PERFORMERS) == 1
    row = (await outbox_rows(deps))["reply:1"]
    assert (row.status, row.attempts, row.last_error) == (EffectStatus.DONE, 2, None)
    assert len(github_api.comments_on(widgets, 1)) == 1


async def test_a_rate_limit_waits_for_its_reset_and_pauses_the_installation(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    limited = {"message": "You have exceeded a secondary rate limit."}
    github_api.queue(403, limited, headers={"retry-after": "120"}, method="POST")
    await _decide(deps, "reply:1", _reply(1, "one"))
    await _decide(deps, "reply:2", _reply(2, "two"))

    before = datetime.now(UTC)
    assert await perform_pending(deps, PERFORMERS) == 0

    rows = await outbox_rows(deps)
    first, second = rows["reply:1"], rows["reply:2"]
    assert first.status == EffectStatus.PENDING
    assert first.attempts == 0  # a rate limit is no failed attempt
    assert 115 <= (first.not_before - before).total_seconds() <= 125
    assert "rate limit" in (first.last_error or "")
    # The other effect of that installation was not tried against the same limit.
    assert (second.status, second.attempts) == (EffectStatus.PENDING, 0)
    assert github_api.calls("POST", "/comments$") == []


async def test_a_rejected_request_fails_at_once(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    ticket_id = await _ticket(deps)
    await _decide(deps, "reply:1", _reply(99, "no such issue"), ticket_id=ticket_id)

    assert await perform_pending(deps, PERFORMERS) == 1

    row = (await outbox_rows(deps))["reply:1"]
    assert (row.status, row.attempts) == (EffectStatus.FAILED, 1)
    assert row.last_error is not None
    assert "404" in row.last_error
    [(_, kind, message)] = await _activity(deps)
    assert kind == "effect"
    assert message.startswith("post_comment failed: GitHub answered 404")


async def test_an_effect_is_given_up_after_max_attempts(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    await _decide(deps, "reply:1", _reply(1, "hello"))
    async with transaction(deps.sessions) as session:
        await session.execute(update(OutboxEffect).values(attempts=MAX_ATTEMPTS - 1))
    github_api.queue(503, {"message": "Unavailable"}, method="POST", path_regex="/comments$")

    assert await perform_pending(deps, PERFORMERS) == 1

    row = (await outbox_rows(deps))["reply:1"]
    assert row.status == EffectStatus.FAILED
    assert (row.last_error or "").startswith(f"gave up after {MAX_ATTEMPTS} attempts")


async def test_an_effect_whose_worker_died_is_performed_after_its_lease(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    await _decide(deps, "reply:1", _reply(1, "hello"))
    lease_ends = datetime.now(UTC) + timedelta(minutes=5)
    async with transaction(deps.sessions) as session:  # claimed by a worker that then died
        await session.execute(update(OutboxEffect).values(attempts=1, not_before=lease_ends))

    assert await perform_pending(deps, PERFORMERS) == 0  # leased: nobody else touches it
    await make_due(deps)
    assert await perform_pending(deps, PERFORMERS) == 1
    assert (await outbox_rows(deps))["reply:1"].attempts == 2


async def test_unknown_kinds_and_effects_without_installation_fail(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    await _decide(deps, "odd:1", {}, kind="teleport")
    await _decide(deps, "reply:1", _reply(1, "hi"), installation_id=None)

    assert await perform_pending(deps, PERFORMERS) == 2

    rows = await outbox_rows(deps)
    assert rows["odd:1"].last_error == "no performer for effect kind 'teleport'"
    assert rows["reply:1"].last_error == "effect reply:1 names no GitHub installation"
    assert github_api.calls("POST", "/comments$") == []


# --- latest wins -------------------------------------------------------------------------------


async def test_an_older_revision_never_overwrites_a_newer_one(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    ticket_id = await _ticket(deps)
    labels = ["openase/todo", "openase/in-progress", "openase/in-review"]

    def label(add: str) -> dict[str, Any]:
        return {"repo": REPO, "number": 1, "add": add, "remove": [n for n in labels if n != add]}

    await _decide(deps, "label:1#1", label("openase/in-progress"), kind=EffectKind.STATUS_LABEL)
    await _decide(deps, "label:1#2", label("openase/in-review"), kind=EffectKind.STATUS_LABEL)
    await _decide(deps, "status:1#1", _reply(1, "in progress"), kind=EffectKind.STATUS_COMMENT)
    await _decide(deps, "status:1#2", _reply(1, "in review"), kind=EffectKind.STATUS_COMMENT)
    # The first revisions were delayed (as by a retry) until after the second were done.
    async with transaction(deps.sessions) as session:
        await session.execute(
            update(OutboxEffect)
            .where(OutboxEffect.key.in_(["label:1#1", "status:1#1"]))
            .values(not_before=datetime.now(UTC) + timedelta(minutes=1), ticket_id=ticket_id)
        )
    assert await perform_pending(deps, PERFORMERS) == 2
    await make_due(deps)
    requests_before = len(github_api.requests)

    await perform_pending(deps, PERFORMERS)

    assert len(github_api.requests) == requests_before  # the stale ones sent nothing
    rows = await outbox_rows(deps)
    assert rows["label:1#1"].result == {"superseded_by": rows["label:1#2"].id}
    assert rows["status:1#1"].result == {"superseded_by": rows["status:1#2"].id}
    assert github_api.labels_of(widgets, 1) == ["openase/in-review"]
    assert [c["body"].splitlines()[-1] for c in github_api.comments_on(widgets, 1)] == ["in review"]
    assert await _activity(deps) == []  # superseded effects are no news


async def test_scopes_are_matched_exactly_not_as_like_patterns(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    # '_' is a LIKE wildcard: "check:runX1" must not count as a newer "check:run_1".
    await _decide(deps, "status:run_1#1", _reply(1, "a"), kind=EffectKind.STATUS_COMMENT)
    await _decide(deps, "status:runX1#1", _reply(2, "b"), kind=EffectKind.STATUS_COMMENT)

    assert await perform_pending(deps, PERFORMERS) == 2

    rows = await outbox_rows(deps)
    assert rows["status:run_1#1"].result is not None
    assert "comment_id" in rows["status:run_1#1"].result
    assert len(github_api.comments_on(widgets, 1)) == 1


# --- several workers -------------------------------------------------------------------------


async def _many_replies(github_api: FakeGitHubAPI, deps: Deps, per_installation: int) -> int:
    count = 0
    for installation in (INSTALLATION, *OTHER_INSTALLATIONS):
        if installation != INSTALLATION:
            github_api.add_installation(installation, f"org{installation}")
            repo = github_api.add_repo(f"org{installation}/app", installation * 10, installation)
            for number in range(1, 5):
                github_api.add_issue(repo, number, title=f"issue {number}")
        name = REPO if installation == INSTALLATION else f"org{installation}/app"
        for n in range(per_installation):
            number = n % 4 + 1
            await _decide(
                deps,
                f"reply:{installation}:{n}",
                _reply(number, f"reply {n}", repo=name),
                installation_id=installation,
            )
            count += 1
    return count


async def test_two_performers_never_perform_an_effect_twice_nor_overlap_an_installation(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    total = await _many_replies(github_api, deps, per_installation=4)
    github_api.latency = 0.01  # requests take time, so concurrent ones would overlap

    settled = await asyncio.gather(
        perform_pending(deps, PERFORMERS), perform_pending(deps, PERFORMERS)
    )

    assert sum(settled) == total
    assert all(settled)  # both worked: on different installations at once
    assert len(github_api.calls("POST", "/comments$")) == total
    assert {row.status for row in (await outbox_rows(deps)).values()} == {EffectStatus.DONE}
    assert {row.attempts for row in (await outbox_rows(deps)).values()} == {1}
    assert github_api.max_in_flight == {i: 1 for i in (INSTALLATION, *OTHER_INSTALLATIONS)}


async def test_many_performers_on_one_installation_still_write_one_at_a_time(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    for n in range(12):
        await _decide(deps, f"reply:{n}", _reply(n % 4 + 1, f"reply {n}"))
    github_api.latency = 0.005

    settled = await asyncio.gather(*(perform_pending(deps, PERFORMERS) for _ in range(4)))

    assert sum(settled) == 12
    assert len(github_api.calls("POST", "/comments$")) == 12
    assert github_api.max_in_flight[INSTALLATION] == 1


async def test_an_effect_committed_while_another_performer_holds_the_lock_is_not_stranded(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    late: list[int] = []

    async def meanwhile(session: AsyncSession, effect: SettledEffect) -> None:
        if effect.key == "reply:1":  # the holder is mid-installation
            await _decide(deps, "reply:2", _reply(2, "second"))
            # That decision's own job finds the installation locked and leaves at once...
            late.append(await perform_pending(deps, PERFORMERS, installations=[INSTALLATION]))

    await _decide(deps, "reply:1", _reply(1, "first"))

    # ... and the holder performs it before it lets go.
    assert await perform_pending(deps, PERFORMERS, on_settled=meanwhile) == 2
    assert late == [0]
    assert {row.status for row in (await outbox_rows(deps)).values()} == {EffectStatus.DONE}


# --- hooks and jobs ------------------------------------------------------------------------------


async def test_the_settle_hook_decides_in_the_same_transaction(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    seen: list[SettledEffect] = []

    async def on_settled(session: AsyncSession, effect: SettledEffect) -> None:
        seen.append(effect)
        if effect.status == EffectStatus.FAILED:
            await add_effect(
                session,
                key=f"reply:after:{effect.id}",
                kind=EffectKind.COMMENT,
                payload=_reply(1, f"Could not comment: {effect.error}"),
                ticket_id=None,
                installation_id=effect.installation_id,
            )

    await _decide(deps, "reply:1", _reply(98, "to nowhere"))
    await perform_pending(deps, PERFORMERS, on_settled=on_settled)

    assert [(e.key, e.status) for e in seen] == [
        ("reply:1", EffectStatus.FAILED),
        (f"reply:after:{seen[0].id}", EffectStatus.DONE),  # performed in the same call
    ]
    [comment] = github_api.comments_on(widgets, 1)
    assert "Could not comment: GitHub answered 404" in comment["body"]


async def test_the_arq_job_performs_what_was_enqueued(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo, run_worker: Any
) -> None:
    await _decide(deps, "reply:1", _reply(1, "via the worker"))

    assert await enqueue_perform(deps.redis, decision="1:1", installation_id=INSTALLATION)
    assert await enqueue_perform(deps.redis, decision="1:1", installation_id=INSTALLATION)
    assert len(await deps.redis.queued_jobs()) == 1  # one decision, one job
    await run_worker()

    assert (await outbox_rows(deps))["reply:1"].status == EffectStatus.DONE
    assert len(github_api.comments_on(widgets, 1)) == 1


async def test_the_job_and_the_cron_sweep(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    await _decide(deps, "reply:1", _reply(1, "one"))
    await _decide(deps, "reply:2", _reply(2, "two"), installation_id=None)

    assert await perform_outbox_job({"deps": deps}, INSTALLATION) == 1
    assert (await outbox_rows(deps))[
        "reply:2"
    ].status == EffectStatus.PENDING  # not its installation
    assert await perform_outbox_cron({"deps": deps}) == 1
    assert (await outbox_rows(deps))["reply:2"].status == EffectStatus.FAILED
