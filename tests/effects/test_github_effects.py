"""The outbox's GitHub performers against the respx fake: the requests each makes, and that
none duplicates anything when performed again (real Postgres for the outbox rows)."""

from __future__ import annotations

from typing import Any

import pytest
from githubkit.compat import type_validate_python
from githubkit_schemas.latest.models import CheckRun, IssueComment, PullRequest, Reaction
from sqlalchemy import select, update

from bot.deps import Deps
from bot.effects.annotations import annotations_from_output
from bot.effects.github_checks import RETRY_ACTION
from bot.effects.kinds import STATUS_MARKER, EffectKind, comment_marker, pr_marker
from bot.effects.outbox import add_effect, revision_key
from bot.effects.perform import perform_pending
from bot.processes.worker import PERFORMERS
from bot.tables.workflow import EffectStatus, OutboxEffect
from harness_store.db import transaction
from tests.fakes.github_api import FakeGitHubAPI, FakeRepo

INSTALLATION = 77
REPO = "acme/widgets"
SHA = "a" * 40


@pytest.fixture
def widgets(github_api: FakeGitHubAPI) -> FakeRepo:
    github_api.add_installation(INSTALLATION, "acme")
    repo = github_api.add_repo(REPO, 555, INSTALLATION)
    github_api.add_issue(repo, 7, title="Add a widget", labels=("openase", "openase/todo"))
    return repo


async def _decide(
    deps: Deps, key: str, kind: str, payload: dict[str, Any], ticket_id: int | None = None
) -> None:
    async with transaction(deps.sessions) as session:
        assert await add_effect(
            session,
            key=key,
            kind=kind,
            payload=payload,
            ticket_id=ticket_id,
            installation_id=INSTALLATION,
        )


async def _run(deps: Deps, key: str, kind: str, payload: dict[str, Any]) -> OutboxEffect:
    """Decide one effect, perform everything due, and return its row."""
    await _decide(deps, key, kind, payload)
    await perform_pending(deps, PERFORMERS)
    return await _row(deps, key)


async def _row(deps: Deps, key: str) -> OutboxEffect:
    async with deps.sessions() as session:
        return (
            await session.execute(select(OutboxEffect).where(OutboxEffect.key == key))
        ).scalar_one()


async def _replay(deps: Deps, key: str) -> OutboxEffect:
    """As if the worker died after performing `key` but before marking it done."""
    async with transaction(deps.sessions) as session:
        await session.execute(
            update(OutboxEffect)
            .where(OutboxEffect.key == key)
            .values(
                status=EffectStatus.PENDING,
                result=None,
                done_at=None,
                not_before=OutboxEffect.created_at,
            )
        )
    await perform_pending(deps, PERFORMERS)
    return await _row(deps, key)


def _label_payload(add: str, *, color: str = "fbca04") -> dict[str, Any]:
    others = ["openase/todo", "openase/in-progress", "openase/in-review", "openase/done"]
    return {
        "repo": REPO,
        "number": 7,
        "add": add,
        "remove": [name for name in others if name != add],
        "color": color,
        "description": "OpenASE status",
    }


# --- status label --------------------------------------------------------------------------------


async def test_status_label_is_created_when_missing_added_and_the_old_one_removed(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    row = await _run(
        deps, "label:1#1", EffectKind.STATUS_LABEL, _label_payload("openase/in-progress")
    )

    assert row.status == EffectStatus.DONE, row.last_error
    assert github_api.labels_of(widgets, 7) == ["openase", "openase/in-progress"]
    assert github_api.calls("POST", "/labels$") == [
        (
            "/repos/acme/widgets/labels",
            {"name": "openase/in-progress", "color": "fbca04", "description": "OpenASE status"},
        ),
        ("/repos/acme/widgets/issues/7/labels", {"labels": ["openase/in-progress"]}),
    ]
    # Names with '/' travel as one URL-encoded path segment.
    deletes = [r.url.raw_path for r in github_api.requests if r.method == "DELETE"]
    assert deletes == [b"/api/v3/repos/acme/widgets/issues/7/labels/openase%2Ftodo"]
    assert row.result is not None
    assert row.result["created"] is True
    assert row.result["removed"] == ["openase/todo"]


async def test_status_label_already_in_the_repo_is_not_created_again(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    await _run(deps, "label:1#1", EffectKind.STATUS_LABEL, _label_payload("openase/in-progress"))
    await _run(deps, "label:1#2", EffectKind.STATUS_LABEL, _label_payload("openase/in-review"))
    await _run(deps, "label:1#3", EffectKind.STATUS_LABEL, _label_payload("openase/in-progress"))

    assert github_api.labels_of(widgets, 7) == ["openase", "openase/in-progress"]
    created = [body["name"] for _, body in github_api.calls("POST", r"/repos/[^/]+/[^/]+/labels$")]
    assert created == ["openase/in-progress", "openase/in-review"]  # each once, when missing


async def test_status_label_already_carried_changes_nothing(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    row = await _run(deps, "label:1#1", EffectKind.STATUS_LABEL, _label_payload("openase/todo"))

    assert row.status == EffectStatus.DONE
    assert [r.method for r in github_api.requests if r.url.path.endswith("/labels")] == ["GET"]
    assert github_api.labels_of(widgets, 7) == ["openase", "openase/todo"]


# --- status comment ------------------------------------------------------------------------------


def _status(body: str) -> dict[str, Any]:
    return {"repo": REPO, "number": 7, "body": body}


async def test_status_comment_is_posted_once_then_edited_in_place(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    first = await _run(deps, "status:1#1", EffectKind.STATUS_COMMENT, _status("**todo**"))
    await _run(deps, "status:1#2", EffectKind.STATUS_COMMENT, _status("**in progress**"))
    await _run(deps, "status:1#3", EffectKind.STATUS_COMMENT, _status("**in review**"))

    comments = github_api.comments_on(widgets, 7)
    assert len(comments) == 1
    assert comments[0]["body"] == f"{STATUS_MARKER}\n**in review**"
    assert len(github_api.calls("POST", "/comments$")) == 1
    # The later revisions knew the comment from the first one's result: no search needed.
    assert github_api.calls("GET", "/comments$") == [
        ("/repos/acme/widgets/issues/7/comments", None)
    ]
    assert [path for path, _ in github_api.calls("PATCH")] == [
        f"/repos/acme/widgets/issues/comments/{comments[0]['id']}"
    ] * 2
    assert first.result is not None
    assert first.result["comment_id"] == comments[0]["id"]
    for _, answer in github_api.answers[-1:]:
        type_validate_python(IssueComment, answer.json())


async def test_status_comment_is_found_by_its_marker_when_no_result_remembers_it(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    github_api.max_per_page = 2  # the search pages through the comments
    github_api.add_comment(widgets, 7, "first!")
    await _run(deps, "status:1#1", EffectKind.STATUS_COMMENT, _status("old"))
    # A person quoting the marker does not make their comment ours.
    github_api.add_comment(widgets, 7, f"why does it say {STATUS_MARKER}?")
    github_api.add_comment(widgets, 7, "another")

    row = await _replay(deps, "status:1#1")

    assert row.status == EffectStatus.DONE
    bodies = [c["body"] for c in github_api.comments_on(widgets, 7)]
    assert bodies == [
        "first!",
        f"{STATUS_MARKER}\nold",
        f"why does it say {STATUS_MARKER}?",
        "another",
    ]
    assert len(github_api.calls("POST", "/comments$")) == 1


async def test_a_deleted_status_comment_is_posted_anew(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    await _run(deps, "status:1#1", EffectKind.STATUS_COMMENT, _status("one"))
    github_api.comments.clear()  # someone deleted it

    row = await _run(deps, "status:1#2", EffectKind.STATUS_COMMENT, _status("two"))

    assert row.status == EffectStatus.DONE
    assert [c["body"] for c in github_api.comments_on(widgets, 7)] == [f"{STATUS_MARKER}\ntwo"]


# --- replies and reactions ---------------------------------------------------------------------


async def test_a_reply_is_never_posted_twice(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    payload = {"repo": REPO, "number": 7, "body": "Only writers may `/approve`."}
    row = await _run(deps, "reply:991:denied", EffectKind.COMMENT, payload)
    replayed = await _replay(deps, "reply:991:denied")

    comments = github_api.comments_on(widgets, 7)
    assert [c["body"] for c in comments] == [
        f"{comment_marker('reply:991:denied')}\nOnly writers may `/approve`."
    ]
    assert row.result is not None
    assert replayed.result is not None
    assert replayed.result["comment_id"] == row.result["comment_id"]
    assert replayed.result["created"] is False


async def test_reactions_use_githubs_content_names_and_are_not_doubled(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    comment = github_api.add_comment(widgets, 7, "/run")
    on_comment = {"repo": REPO, "comment_id": comment["id"], "content": "👀"}
    await _run(deps, f"reaction:{comment['id']}:eyes", EffectKind.REACTION, on_comment)
    await _replay(deps, f"reaction:{comment['id']}:eyes")
    await _run(
        deps,
        "reaction:issue7:rocket",
        EffectKind.REACTION,
        {"repo": REPO, "number": 7, "content": "rocket"},
    )

    assert github_api.calls("POST", "/reactions$") == [
        (f"/repos/acme/widgets/issues/comments/{comment['id']}/reactions", {"content": "eyes"}),
        (f"/repos/acme/widgets/issues/comments/{comment['id']}/reactions", {"content": "eyes"}),
        ("/repos/acme/widgets/issues/7/reactions", {"content": "rocket"}),
    ]
    assert [r["content"] for r in github_api.reactions] == ["eyes", "rocket"]
    type_validate_python(Reaction, github_api.answers[-1][1].json())


async def test_an_unknown_reaction_fails_without_a_request(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    row = await _run(
        deps, "reaction:x", EffectKind.REACTION, {"repo": REPO, "number": 7, "content": "tada"}
    )

    assert row.status == EffectStatus.FAILED
    assert row.last_error == "unknown reaction 'tada'"
    assert github_api.calls("POST") == []


async def test_update_issue_closes_it(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    payload = {"repo": REPO, "number": 7, "state": "closed", "state_reason": "completed"}
    row = await _run(deps, "close:1", EffectKind.ISSUE, payload)

    assert row.status == EffectStatus.DONE
    assert github_api.calls("PATCH") == [
        ("/repos/acme/widgets/issues/7", {"state": "closed", "state_reason": "completed"})
    ]


# --- check runs ----------------------------------------------------------------------------------


def _check(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "repo": REPO,
        "head_sha": SHA,
        "name": "openase/tests",
        "external_id": "run-1:tests",
        "status": status,
        "title": f"tests {status}",
        "summary": "pytest -q",
        "details_url": "https://openase.example/runs/run-1",
        **extra,
    }


async def test_a_check_run_is_created_then_updated_by_id(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    await _run(
        deps, revision_key("check:run-1:tests", 1), EffectKind.CHECK_RUN, _check("in_progress")
    )
    notes = [
        {
            "path": "app.py",
            "start_line": 3,
            "end_line": 3,
            "annotation_level": "failure",
            "message": "boom",
        }
    ]
    failed = _check("completed", conclusion="failure", text="E   boom", annotations=notes)
    row = await _run(deps, revision_key("check:run-1:tests", 2), EffectKind.CHECK_RUN, failed)

    assert row.status == EffectStatus.DONE, row.last_error
    [(post_path, created)] = github_api.calls("POST", "/check-runs$")
    assert post_path == "/repos/acme/widgets/check-runs"
    assert created["head_sha"] == SHA
    assert created["external_id"] == "run-1:tests"
    assert created["status"] == "in_progress"
    assert "started_at" in created
    assert "conclusion" not in created
    [(patch_path, patched)] = github_api.calls("PATCH", "/check-runs/")
    [run] = github_api.check_runs.values()
    assert patch_path == f"/repos/acme/widgets/check-runs/{run['id']}"
    assert patched["conclusion"] == "failure"
    assert patched["status"] == "completed"
    assert patched["actions"] == [RETRY_ACTION]
    assert patched["output"] == {
        "title": "tests completed",
        "summary": "pytest -q",
        "text": "E   boom",
        "annotations": notes,
    }
    assert run["conclusion"] == "failure"
    assert github_api.annotations[run["id"]] == notes
    assert github_api.calls("GET", "/check-runs$") == [
        (f"/repos/acme/widgets/commits/{SHA}/check-runs", None)
    ]  # only the first revision had to look
    type_validate_python(CheckRun, github_api.answers[-1][1].json())


async def test_a_check_run_is_found_by_external_id_not_duplicated(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    await _run(deps, "check:run-1:tests#1", EffectKind.CHECK_RUN, _check("in_progress"))
    row = await _replay(deps, "check:run-1:tests#1")

    assert row.status == EffectStatus.DONE
    assert len(github_api.check_runs) == 1
    assert len(github_api.calls("POST", "/check-runs$")) == 1
    # Looked up on the commit (nothing there), created; replayed: looked up, found, updated.
    checks = [r for r in github_api.requests if "/check-runs" in r.url.path]
    assert [r.method for r in checks] == ["GET", "POST", "GET", "PATCH"]
    query = dict(checks[2].url.params)
    assert query == {
        "check_name": "openase/tests",
        "filter": "all",
        "app_id": str(github_api.app_id),
        "per_page": "100",
        "page": "1",
    }


async def test_120_annotations_go_out_in_batches_of_50(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    notes = [
        {
            "path": "app.py",
            "start_line": n,
            "end_line": n,
            "annotation_level": "warning",
            "message": f"n{n}",
        }
        for n in range(1, 121)
    ]
    payload = _check("completed", conclusion="failure", annotations=notes)
    row = await _run(deps, "check:run-1:tests#1", EffectKind.CHECK_RUN, payload)

    assert row.status == EffectStatus.DONE, row.last_error
    sent = [body["output"]["annotations"] for _, body in github_api.calls("POST", "/check-runs$")]
    sent += [body["output"]["annotations"] for _, body in github_api.calls("PATCH", "/check-runs/")]
    assert [len(batch) for batch in sent] == [50, 50, 20]
    [run_id] = github_api.check_runs
    assert github_api.annotations[run_id] == notes
    assert row.result is not None
    assert row.result["annotations_sent"] == 120


async def test_a_retry_resumes_annotations_without_sending_any_twice(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    notes = [
        {
            "path": "app.py",
            "start_line": n,
            "end_line": n,
            "annotation_level": "failure",
            "message": f"n{n}",
        }
        for n in range(1, 121)
    ]
    payload = _check("completed", conclusion="failure", annotations=notes)
    # The run and its first 50 annotations are created; the first follow-up meets a 502.
    github_api.queue(502, {"message": "Server Error"}, method="PATCH", path_regex="/check-runs/")
    row = await _run(deps, "check:run-1:tests#1", EffectKind.CHECK_RUN, payload)
    assert row.status == EffectStatus.PENDING
    assert row.result is not None
    assert row.result["annotations_sent"] == 50

    async with transaction(deps.sessions) as session:  # the retry comes due
        await session.execute(update(OutboxEffect).values(not_before=OutboxEffect.created_at))
    await perform_pending(deps, PERFORMERS)

    row = await _row(deps, "check:run-1:tests#1")
    assert row.status == EffectStatus.DONE, row.last_error
    [run_id] = github_api.check_runs
    assert github_api.annotations[run_id] == notes  # each exactly once
    assert len(github_api.calls("POST", "/check-runs$")) == 1
    batches = [len(body["output"]["annotations"]) for _, body in github_api.calls("PATCH")]
    assert batches == [50, 50, 20]  # the refused one, then the rest


async def test_check_run_text_keeps_the_tail_within_githubs_limit(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    text = "x" * 70_000 + "\nFAILED tests/test_app.py::test_it"
    row = await _run(
        deps,
        "check:run-1:tests#1",
        EffectKind.CHECK_RUN,
        _check("completed", conclusion="success", text=text),
    )

    assert row.status == EffectStatus.DONE, row.last_error
    [(_, body)] = github_api.calls("POST", "/check-runs$")
    assert len(body["output"]["text"]) <= 65535
    assert body["output"]["text"].endswith("FAILED tests/test_app.py::test_it")
    assert "actions" not in body  # only a failure offers Retry


# --- pull requests and merges ------------------------------------------------------------------


def _pr(title: str) -> dict[str, Any]:
    return {
        "repo": REPO,
        "head": "openase/7-add-a-widget",
        "base": "main",
        "title": title,
        "body": "Closes #7\n\nAdds a widget.\n\nHarness coder@3 · $0.42",
        "ticket": 7,
    }


async def test_a_pr_is_opened_once_then_updated(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    opened = await _run(deps, "pr:1:run-1", EffectKind.PULL_REQUEST, _pr("Add a widget"))
    same = await _run(deps, "pr:1:run-2", EffectKind.PULL_REQUEST, _pr("Add a widget"))
    renamed = await _run(deps, "pr:1:run-3", EffectKind.PULL_REQUEST, _pr("Add a blue widget"))

    [(_, created)] = github_api.calls("POST", "/pulls$")
    assert created == {
        "title": "Add a widget",
        "head": "openase/7-add-a-widget",
        "base": "main",
        "body": "Closes #7\n\nAdds a widget.\n\nHarness coder@3 · $0.42\n\n" + pr_marker(7),
    }
    assert opened.result is not None
    number = opened.result["number"]
    assert opened.result["head_sha"]
    assert opened.result["html_url"].endswith(f"/acme/widgets/pull/{number}")
    assert same.result == {**opened.result, "created": False, "summary": f"PR #{number} updated"}
    assert github_api.calls("PATCH") == [
        (
            f"/repos/acme/widgets/pulls/{number}",
            {"title": "Add a blue widget", "body": created["body"]},
        )
    ]
    assert renamed.status == EffectStatus.DONE
    listed = [dict(r.url.params) for r in github_api.requests if r.url.path.endswith("/pulls")]
    assert listed[0] == {
        "head": "acme:openase/7-add-a-widget",
        "base": "main",
        "state": "open",
        "per_page": "100",
    }
    assert len([p for p in widgets.pulls if p["state"] == "open"]) == 1
    type_validate_python(PullRequest, github_api.answers[-1][1].json())


async def test_a_pr_opened_meanwhile_is_updated_not_doubled(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    await _run(deps, "pr:1:run-1", EffectKind.PULL_REQUEST, _pr("Add a widget"))
    github_api.queue(200, [], path_regex=r"/pulls$")  # the list lags behind: no PR seen

    row = await _run(deps, "pr:1:run-2", EffectKind.PULL_REQUEST, _pr("Add a widget, v2"))

    assert row.status == EffectStatus.DONE, row.last_error
    assert len(github_api.calls("POST", "/pulls$")) == 2  # the second got 422 "already exists"
    assert len(widgets.pulls) == 1
    assert widgets.pulls[0]["title"] == "Add a widget, v2"


async def test_a_pr_github_refuses_fails_with_its_reason(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    refusal = {"message": "No commits between main and openase/7-add-a-widget"}
    github_api.queue(422, refusal, method="POST", path_regex=r"/pulls$")

    row = await _run(deps, "pr:1:run-1", EffectKind.PULL_REQUEST, _pr("Add a widget"))

    assert row.status == EffectStatus.FAILED
    assert "No commits between main" in (row.last_error or "")
    assert row.result is not None
    assert row.result["opened"] is False


async def _open_pr(deps: Deps) -> tuple[int, str]:
    row = await _run(deps, "pr:1:run-1", EffectKind.PULL_REQUEST, _pr("Add a widget"))
    assert row.result is not None
    return row.result["number"], row.result["head_sha"]


async def test_merge_at_the_gated_sha(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    number, head = await _open_pr(deps)
    payload = {"repo": REPO, "number": number, "method": "squash", "sha": head}
    row = await _run(deps, f"merge:1:{head}", EffectKind.MERGE, payload)

    assert row.status == EffectStatus.DONE, row.last_error
    assert github_api.calls("PUT") == [
        (f"/repos/acme/widgets/pulls/{number}/merge", {"merge_method": "squash", "sha": head})
    ]
    assert row.result is not None
    assert row.result["merged"] is True
    assert row.result["already"] is False

    replayed = await _replay(deps, f"merge:1:{head}")  # GitHub now says 405: merged already
    assert replayed.status == EffectStatus.DONE
    assert replayed.result is not None
    assert replayed.result["already"] is True
    assert replayed.result["sha"] == row.result["sha"]


async def test_merge_refused_when_the_head_moved(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    number, _ = await _open_pr(deps)
    payload = {"repo": REPO, "number": number, "method": "merge", "sha": "b" * 40}
    row = await _run(deps, "merge:1:bbb", EffectKind.MERGE, payload)

    assert row.status == EffectStatus.FAILED
    assert row.attempts == 1  # not retried
    assert row.result is not None
    assert row.result["merged"] is False
    assert row.result["status"] == 409
    assert "head branch moved" in row.result["reason"]
    assert "was not merged" in (row.last_error or "")


async def test_merge_refused_when_not_mergeable(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    number, head = await _open_pr(deps)
    widgets.pulls[0].update(mergeable=False, mergeable_state="dirty")
    payload = {"repo": REPO, "number": number, "method": "rebase", "sha": head}
    row = await _run(deps, f"merge:1:{head}", EffectKind.MERGE, payload)

    assert row.status == EffectStatus.FAILED
    assert row.result is not None
    assert row.result["status"] == 405
    assert row.result["mergeable_state"] == "dirty"
    assert widgets.pulls[0]["merged"] is False


# --- annotations from tool output --------------------------------------------------------------

PYTEST_LONG = """\
___________________________ test_add ___________________________

    def test_add():
>       assert add(1, 2) == 4
E       assert 3 == 4
E        +  where 3 = add(1, 2)

tests/test_calc.py:5: AssertionError
=========================== short test summary info ============================
FAILED tests/test_calc.py::test_add - assert 3 == 4
"""

PYTEST_SHORT = """\
___________________________ test_div ___________________________
tests/test_calc.py:9: in test_div
    div(1, 0)
src/calc.py:3: in div
    return a / b
E   ZeroDivisionError: division by zero
"""

RUFF_FULL = """\
F401 [*] `os` imported but unused
 --> /work/repo/src/app.py:1:8
  |
1 | import os
  |        ^^
"""

ESLINT_STYLISH = """\

/work/repo/web/main.js
   1:10  error    'foo' is defined but never used  no-unused-vars
   3:1   warning  Unexpected console statement     no-console

✖ 2 problems (1 error, 1 warning)
"""


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        pytest.param(
            "src/app.py:1:8: F401 [*] `os` imported but unused\nFound 1 error.",
            [("src/app.py", 1, 8, "failure", "F401 [*] `os` imported but unused")],
            id="ruff-concise",
        ),
        pytest.param(
            RUFF_FULL,
            [("src/app.py", 1, 8, "failure", "F401 [*] `os` imported but unused")],
            id="ruff-full",
        ),
        pytest.param(
            "src/app.py:12: error: Incompatible return value type  [return-value]\n"
            "src/app.py:13: note: See https://mypy.rtfd.io\nFound 1 error in 1 file",
            [
                (
                    "src/app.py",
                    12,
                    None,
                    "failure",
                    "Incompatible return value type  [return-value]",
                ),
                ("src/app.py", 13, None, "notice", "See https://mypy.rtfd.io"),
            ],
            id="mypy",
        ),
        pytest.param(
            PYTEST_LONG,
            [("tests/test_calc.py", 5, None, "failure", "assert 3 == 4\n+  where 3 = add(1, 2)")],
            id="pytest-long",
        ),
        pytest.param(
            PYTEST_SHORT,
            [("src/calc.py", 3, None, "failure", "ZeroDivisionError: division by zero")],
            id="pytest-short",
        ),
        pytest.param(
            ESLINT_STYLISH,
            [
                (
                    "web/main.js",
                    1,
                    10,
                    "failure",
                    "'foo' is defined but never used (no-unused-vars)",
                ),
                ("web/main.js", 3, 1, "warning", "Unexpected console statement (no-console)"),
            ],
            id="eslint-stylish",
        ),
        pytest.param(
            "web/main.js:1:10: 'foo' is defined but never used [Error/no-unused-vars]",
            [("web/main.js", 1, 10, "failure", "'foo' is defined but never used")],
            id="eslint-unix",
        ),
        pytest.param(
            "web/app.ts(4,7): error TS2322: Type 'string' is not assignable to type 'number'.",
            [("web/app.ts", 4, 7, "failure", "Type 'string' is not assignable to type 'number'.")],
            id="tsc",
        ),
        pytest.param(
            "\x1b[1msrc/app.py\x1b[0m:2:1: \x1b[31mE302\x1b[0m expected 2 blank lines",
            [("src/app.py", 2, 1, "failure", "E302 expected 2 blank lines")],
            id="colours",
        ),
        pytest.param(
            "/usr/lib/python3.11/site-packages/x.py:3: error: no\n"
            "../outside.py:1: error: no\n"
            "12:30:45: backup done\nhttp://host:8080: up\n"
            "tests/test_calc.py::test_add FAILED",
            [],
            id="not-the-repository",
        ),
    ],
)
def test_annotations_from_output(output: str, expected: list[tuple[Any, ...]]) -> None:
    found = annotations_from_output(output, root="/work/repo")

    assert [
        (a["path"], a["start_line"], a.get("start_column"), a["annotation_level"], a["message"])
        for a in found
    ] == expected
    assert all(a["end_line"] == a["start_line"] for a in found)


def test_annotations_are_deduplicated_and_capped() -> None:
    output = "\n".join(f"a.py:{n % 300}: error: e{n % 300}" for n in range(1, 1000))

    found = annotations_from_output(output, limit=120, level="warning")

    assert len(found) == 120
    assert len({(a["start_line"], a["message"]) for a in found}) == 120
    assert {a["annotation_level"] for a in found} == {"failure"}  # the tool said "error"
    assert (
        annotations_from_output("a.py:1: plain", level="warning")[0]["annotation_level"]
        == "warning"
    )
