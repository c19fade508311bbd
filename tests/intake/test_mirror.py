"""The mirror converges on the newest state whatever the order and count of deliveries."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select

from bot.deps import Deps
from bot.intake.ingest import ingest_batch, ingest_delivery
from bot.tables.mirror import (
    Comment,
    Delivery,
    DeliveryTicket,
    PullRequest,
    Repository,
    Ticket,
    TicketPullRequest,
)
from tests.support.helpers import GitHubWebhookSender, github_example

RunWorker = Callable[[], Awaitable[object]]


_LABEL_IDS = {"bug": 1362937026, "openase": 77}  # "bug": the id in the label.* examples


def _issue(
    action: str, updated_at: str, labels: list[str], title: str = "Spelling error"
) -> dict[str, Any]:
    payload = github_example("issues", action)
    payload["issue"]["updated_at"] = updated_at
    payload["issue"]["title"] = title
    payload["issue"]["labels"] = [
        {"id": _LABEL_IDS.get(name, 1000 + i), "name": name, "color": "ededed", "default": False}
        for i, name in enumerate(labels)
    ]
    return payload


async def _ticket(deps: Deps) -> Ticket:
    async with deps.sessions() as s:
        return (await s.execute(select(Ticket))).scalar_one()


async def test_older_event_arriving_late_never_moves_the_ticket_back(
    github: GitHubWebhookSender, deps: Deps, run_worker: RunWorker
) -> None:
    await github.send(
        "issues", _issue("labeled", "2024-01-02T00:00:00Z", ["bug", "openase"], "New")
    )
    await run_worker()
    await github.send("issues", _issue("opened", "2024-01-01T00:00:00Z", [], "Old"))
    await run_worker()
    ticket = await _ticket(deps)
    assert (ticket.title, ticket.labels) == ("New", ["bug", "openase"])
    async with deps.sessions() as s:
        statuses = (await s.execute(select(Delivery.status))).scalars().all()
        touched = (await s.execute(select(DeliveryTicket.ticket_id))).scalars().all()
    # Both were processed, and both count as having touched the ticket.
    assert statuses == ["done", "done"]
    assert touched == [ticket.id, ticket.id]


async def test_events_applied_concurrently_in_any_order_converge(
    github: GitHubWebhookSender, deps: Deps
) -> None:
    stamps = [f"2024-01-01T00:00:{second:02d}Z" for second in range(10)]
    ids = []
    for second, stamp in reversed(list(enumerate(stamps))):
        response = await github.send(
            "issues", _issue("edited", stamp, [f"l{second}"], f"v{second}")
        )
        ids.append(response.json()["delivery"])
    await asyncio.gather(*(ingest_delivery(deps, pk) for pk in ids))
    ticket = await _ticket(deps)
    assert (ticket.title, ticket.labels) == ("v9", ["l9"])


async def test_the_same_delivery_ingested_twice_at_once_applies_once(
    github: GitHubWebhookSender, deps: Deps
) -> None:
    response = await github.send("issues", github_example("issues", "opened"))
    pk = response.json()["delivery"]
    results = await asyncio.gather(*(ingest_delivery(deps, pk) for _ in range(5)))
    assert results.count("done") >= 1
    assert set(results) <= {"done", "absent_or_locked"}
    async with deps.sessions() as s:
        assert (await s.execute(select(Delivery.attempts))).scalar_one() == 1
        assert len((await s.execute(select(DeliveryTicket))).all()) == 1


async def test_a_deleted_issue_stays_deleted(
    github: GitHubWebhookSender, deps: Deps, run_worker: RunWorker
) -> None:
    deleted = github_example("issues", "deleted")
    late_edit = github_example("issues", "edited")
    late_edit["issue"]["id"] = deleted["issue"]["id"]
    late_edit["issue"]["updated_at"] = "2030-01-01T00:00:00Z"  # even a newer-looking one
    await github.send("issues", deleted)
    await run_worker()
    await github.send("issues", late_edit)
    await run_worker()
    assert (await _ticket(deps)).state == "deleted"


async def test_a_deleted_comment_stays_deleted(
    github: GitHubWebhookSender, deps: Deps, run_worker: RunWorker
) -> None:
    created = github_example("issue_comment", "created")
    deleted = github_example("issue_comment", "deleted")
    deleted["comment"]["id"] = created["comment"]["id"]
    deleted["issue"] = created["issue"]
    await github.send("issue_comment", deleted)
    await run_worker()
    await github.send("issue_comment", created)
    await run_worker()
    async with deps.sessions() as s:
        comment = (await s.execute(select(Comment))).scalar_one()
    assert comment.deleted


def _pull_request(body: str, head_ref: str, pr_id: int = 7001, number: int = 50) -> dict[str, Any]:
    payload = github_example("pull_request", "opened")
    payload["pull_request"].update(id=pr_id, number=number, body=body)
    payload["pull_request"]["head"]["ref"] = head_ref
    return payload


async def _links(deps: Deps) -> list[tuple[int, int, str]]:
    async with deps.sessions() as s:
        rows = await s.execute(
            select(
                TicketPullRequest.ticket_id,
                TicketPullRequest.pull_request_id,
                TicketPullRequest.via,
            ).order_by(TicketPullRequest.pull_request_id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]  # Row -> tuple


async def test_pr_linked_by_closing_keyword_whichever_arrives_first(
    github: GitHubWebhookSender, deps: Deps, run_worker: RunWorker
) -> None:
    issue = github_example("issues", "opened")
    number = issue["issue"]["number"]
    full_name = issue["repository"]["full_name"]
    # PR first: the issue is not mirrored yet.
    await github.send("pull_request", _pull_request(f"Fixes #{number}", "feature"))
    await run_worker()
    assert await _links(deps) == []
    await github.send("issues", issue)
    await run_worker()
    ticket = await _ticket(deps)
    assert await _links(deps) == [(ticket.id, 7001, "closing_keyword")]
    # Issue first, then a second PR naming the repository explicitly.
    await github.send("pull_request", _pull_request(f"closes: {full_name}#{number}", "x", 7002, 51))
    await run_worker()
    assert await _links(deps) == [
        (ticket.id, 7001, "closing_keyword"),
        (ticket.id, 7002, "closing_keyword"),
    ]
    # Editing the body to drop the keyword unlinks it.
    edited = _pull_request("no longer related", "feature")
    edited["pull_request"]["updated_at"] = "2030-01-01T00:00:00Z"
    await github.send("pull_request", edited)
    await run_worker()
    assert await _links(deps) == [(ticket.id, 7002, "closing_keyword")]


async def test_pr_linked_by_work_branch(
    github: GitHubWebhookSender, deps: Deps, run_worker: RunWorker
) -> None:
    issue = github_example("issues", "opened")
    await github.send("issues", issue)
    await github.send(
        "pull_request", _pull_request("", f"openase/{issue['issue']['number']}-fix-typo")
    )
    await run_worker()
    ticket = await _ticket(deps)
    assert await _links(deps) == [(ticket.id, 7001, "branch")]
    async with deps.sessions() as s:
        pr = (await s.execute(select(PullRequest))).scalar_one()
    assert pr.head_ref == f"openase/{issue['issue']['number']}-fix-typo"


async def test_label_rename_reaches_every_ticket(
    github: GitHubWebhookSender, deps: Deps, run_worker: RunWorker
) -> None:
    await github.send("issues", _issue("labeled", "2024-01-02T00:00:00Z", ["bug", "openase"]))
    rename = github_example("label", "edited")
    rename["label"]["name"] = "defect"
    rename["changes"] = {"name": {"from": "bug"}}
    await github.send("label", rename)
    await run_worker()
    assert (await _ticket(deps)).labels == ["defect", "openase"]
    deleted = github_example("label", "deleted")
    deleted["label"].update(name="openase", id=77)
    await github.send("label", deleted)
    await run_worker()
    assert (await _ticket(deps)).labels == ["defect"]


async def test_in_one_batch_a_rename_wins_over_the_old_name_a_later_issue_event_carries(
    github: GitHubWebhookSender, deps: Deps, run_worker: RunWorker
) -> None:
    """A batch reads its tickets' labels once, before applying (bot/intake/mirror/tickets.py
    `prefetch_labels`); a label event in the batch must still count for the deliveries
    after it, as when each delivery read the labels itself."""
    await github.send("issues", _issue("labeled", "2024-01-02T00:00:00Z", ["bug", "openase"]))
    await run_worker()
    rename = github_example("label", "edited")
    rename["label"]["name"] = "defect"
    rename["changes"] = {"name": {"from": "bug"}}
    await github.send("label", rename)
    # Sent before the rename reached GitHub's issue payloads: it still says "bug".
    await github.send("issues", _issue("edited", "2024-01-03T00:00:00Z", ["bug", "openase"]))
    deleted = github_example("label", "deleted")
    deleted["label"].update(name="openase", id=77)
    await github.send("label", deleted)
    await github.send("issues", _issue("edited", "2024-01-04T00:00:00Z", ["bug", "openase"]))
    # The four in one batch (a worker's two batches in flight could split them).
    assert [done.status for done in await ingest_batch(deps)] == ["done"] * 4
    assert (await _ticket(deps)).labels == ["defect"]


async def test_a_rename_in_a_batch_beside_the_issues_reaches_it(
    github: GitHubWebhookSender, deps: Deps
) -> None:
    """Two batches side by side (as the worker's pump runs them), one with the issue event,
    one with a rename of its label: the rename waits for the issue's batch to commit (its
    label scope's lock, bot/intake/label_order.py), so it finds the label on the ticket.
    Before, it ran while the issue's transaction was open and left the old name for good."""
    await github.send("issues", _issue("labeled", "2024-01-02T00:00:00Z", ["bug", "openase"]))
    rename = github_example("label", "edited")
    rename["label"]["name"] = "defect"
    rename["changes"] = {"name": {"from": "bug"}}
    await github.send("label", rename)
    # One delivery each: the first claims the issue event, the second the rename.
    batches = await asyncio.gather(ingest_batch(deps, limit=1), ingest_batch(deps, limit=1))
    assert [[done.status for done in batch] for batch in batches] == [["done"], ["done"]]
    assert (await _ticket(deps)).labels == ["defect", "openase"]


async def test_a_payload_that_does_not_parse_is_kept_with_its_error_and_the_queue_goes_on(
    github: GitHubWebhookSender, deps: Deps, run_worker: RunWorker
) -> None:
    broken = github_example("issues", "opened")
    del broken["issue"]["title"]
    await github.send("issues", broken, delivery_id="broken")
    await github.send("issues", github_example("issues", "opened"), delivery_id="fine")
    await run_worker()
    async with deps.sessions() as s:
        rows = dict((await s.execute(select(Delivery.delivery_id, Delivery.status))).all())
        error = (
            await s.execute(select(Delivery.error).where(Delivery.delivery_id == "broken"))
        ).scalar_one()
    assert rows == {"broken": "failed", "fine": "done"}
    assert error == "payload.issue.title: expected a string, got null"


async def test_installation_created_enqueues_a_backfill_per_repository(
    github: GitHubWebhookSender, deps: Deps
) -> None:
    payload = github_example("installation", "created")
    response = await github.send("installation", payload)
    await ingest_delivery(deps, response.json()["delivery"])
    jobs = await deps.redis.queued_jobs(queue_name="openase:control")
    backfills = sorted(j.args for j in jobs if j.function == "backfill_repository")
    assert backfills == sorted((r["id"],) for r in payload["repositories"])


async def test_a_transferred_issue_does_not_claim_its_new_repository(
    github: GitHubWebhookSender, deps: Deps, run_worker: RunWorker
) -> None:
    payload = github_example("issues", "transferred")
    await github.send("issues", payload)
    await run_worker()
    async with deps.sessions() as s:
        repos = dict((await s.execute(select(Repository.full_name, Repository.active))).all())
        states = dict((await s.execute(select(Ticket.key, Ticket.state))).all())
    old, new = payload["repository"], payload["changes"]["new_repository"]
    assert repos == {old["full_name"]: True, new["full_name"]: False}
    new_key = f"{new['full_name']}#{payload['changes']['new_issue']['number']}"
    assert states == {
        f"{old['full_name']}#{payload['issue']['number']}": "transferred",
        new_key: "open",
    }
