"""GitHub (or a tracker) failing for minutes (issue #19, item 4): the outbox backs off per
installation instead of per effect, loses and repeats nothing, sends only the newest status
comment once GitHub is back, and says the outage once; against real Postgres and the respx
fake of GitHub."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from bot.deps import Deps
from bot.effects.kinds import EffectKind
from bot.effects.outbox import add_effect
from bot.effects.perform import perform_pending
from bot.effects.rows import claim, hold, service_of
from bot.processes.worker import PERFORMERS
from bot.tables.workflow import EffectStatus
from harness_store.db import transaction
from tests.fakes.github_api import FakeGitHubAPI, FakeRepo
from tests.support.outbox import make_due, outbox_rows

DOWN = 77  # the installation whose GitHub requests fail
UP = 78  # another installation, on its own
BAD_GATEWAY = {"message": "Bad Gateway"}


@pytest.fixture
def repos(github_api: FakeGitHubAPI) -> tuple[FakeRepo, FakeRepo]:
    made = []
    for installation, name, repo_id in ((DOWN, "acme/down", 601), (UP, "acme/up", 602)):
        github_api.add_installation(installation, name.split("/")[0] + str(installation))
        repo = github_api.add_repo(name, repo_id, installation)
        for number in range(1, 7):
            github_api.add_issue(repo, number, title=f"issue {number}")
        made.append(repo)
    return made[0], made[1]


async def _decide(
    deps: Deps, key: str, kind: str, payload: dict[str, Any], installation: int | None
) -> None:
    async with transaction(deps.sessions) as session:
        await add_effect(
            session,
            key=key,
            kind=kind,
            payload=payload,
            ticket_id=None,
            installation_id=installation,
        )


def _posts(github_api: FakeGitHubAPI, repo: FakeRepo) -> int:
    return len(github_api.calls("POST", f"/repos/{repo.full_name}/issues/[0-9]+/comments$"))


async def test_a_failing_installation_is_asked_once_per_backoff_not_once_per_effect(
    deps: Deps, github_api: FakeGitHubAPI, repos: tuple[FakeRepo, FakeRepo]
) -> None:
    down, up = repos
    for number in range(1, 6):
        body = {"repo": down.full_name, "number": number, "body": f"reply {number}"}
        await _decide(deps, f"reply:{number}", EffectKind.COMMENT, body, DOWN)
    await _decide(
        deps, "other", EffectKind.COMMENT, {"repo": up.full_name, "number": 1, "body": "hi"}, UP
    )
    for _ in range(3):  # GitHub answers 502 to this installation's next three comments
        github_api.queue(502, BAD_GATEWAY, method="POST", path_regex="acme/down/.*/comments$")

    with capture_logs() as logs:
        before = datetime.now(UTC)
        assert await perform_pending(deps, PERFORMERS) == 1  # the other installation's
        assert _posts(github_api, down) == 1  # one try, not five
        rows = await outbox_rows(deps)
        held = [rows[f"reply:{n}"] for n in range(2, 6)]
        assert all(row.attempts == 0 for row in held)  # held back is no failed try
        assert all((row.last_error or "").startswith("held back: TransientError") for row in held)
        assert all(row.not_before > before for row in held)
        assert rows["reply:1"].attempts == 1
        assert rows["other"].status == EffectStatus.DONE

        for _ in range(2):  # two more rounds of the outage: one request each
            await make_due(deps)
            assert await perform_pending(deps, PERFORMERS) == 0
        assert _posts(github_api, down) == 3

        await make_due(deps)  # GitHub is back
        assert await perform_pending(deps, PERFORMERS) == 5

    rows = await outbox_rows(deps)
    assert {row.status for row in rows.values()} == {EffectStatus.DONE}
    assert (
        sum(row.attempts for row in rows.values()) == 3 + 5 + 1
    )  # the failed tries, then one each
    assert sorted(len(github_api.comments_on(down, n)) for n in range(1, 6)) == [1] * 5
    events = [log["event"] for log in logs]
    assert events.count("service_unavailable") == 1
    assert events.count("service_back") == 1
    [back] = [log for log in logs if log["event"] == "service_back"]
    assert (back["service"], back["failures"]) == (f"github installation {DOWN}", 3)


async def test_after_an_outage_only_the_newest_status_comment_is_sent(
    deps: Deps, github_api: FakeGitHubAPI, repos: tuple[FakeRepo, FakeRepo]
) -> None:
    down, _ = repos
    github_api.queue(502, BAD_GATEWAY, method="POST", path_regex="/comments$")
    for version, state in enumerate(["in progress", "gates running", "in review"], start=1):
        body = {"repo": down.full_name, "number": 1, "body": f"state: {state}"}
        await _decide(deps, f"status:1#{version}", EffectKind.STATUS_COMMENT, body, DOWN)
        if version == 1:  # the first update meets the outage; the others are decided during it
            await perform_pending(deps, PERFORMERS)

    await make_due(deps)
    await perform_pending(deps, PERFORMERS)

    [comment] = github_api.comments_on(down, 1)
    assert comment["body"].splitlines()[-1] == "state: in review"
    assert github_api.calls("PATCH", "/comments/[0-9]+$") == []  # nothing old was written
    rows = await outbox_rows(deps)
    assert rows["status:1#1"].result == {"superseded_by": rows["status:1#3"].id}
    assert rows["status:1#2"].result == {"superseded_by": rows["status:1#3"].id}


async def test_a_tracker_outage_holds_back_that_tracker_only(deps: Deps) -> None:
    # Linear's and Jira's effects carry no installation: each tracker backs off alone, and
    # neither holds back the other's (nor GitHub's).
    for key, kind in [
        ("linear:1", "linear_comment"),
        ("linear:2", "linear_state"),
        ("jira:1", "jira_comment"),
        ("github:1", EffectKind.COMMENT),
    ]:
        await _decide(deps, key, kind, {}, None)
    failed = await claim(deps.sessions, None)
    assert failed is not None
    assert (failed.key, service_of(failed.kind, None)) == ("linear:1", "linear")
    until = datetime.now(UTC) + timedelta(minutes=3)

    assert await hold(deps.sessions, failed, until, "TransientError: Linear answered 503") == 1

    rows = await outbox_rows(deps)
    assert rows["linear:2"].not_before == until
    assert rows["linear:2"].last_error == "held back: TransientError: Linear answered 503"
    assert all(rows[key].not_before < until for key in ("jira:1", "github:1"))
    assert service_of("jira_state", None) == "jira"
    assert service_of(EffectKind.COMMENT, 5) == "github installation 5"
