"""The JSON API for harnesses and skills (bot/api/harnesses.py) and the usage queries behind
it (bot/api/harness_usage.py), over a real Postgres."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import event, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.api.harness_usage import harness_usage, run_counts, skill_usage, version_runs
from bot.deps import Deps
from bot.tables.mirror import Repository, Ticket
from bot.tables.workflow import Run
from harness_store import store
from harness_store.db import transaction
from harness_store.models import HarnessVersion, RunVersions, SkillVersion
from tests.conftest import AppWith

V1 = "# {{ ticket.key }}\n\nFix it.\n"
V2 = "# {{ ticket.key }}\n\nFix it well.\n"
SKILL_MD = "---\nname: lint\ndescription: Run the linters.\n---\n\nRun `scripts/run.sh`.\n"


@dataclass(frozen=True)
class Used:
    """Two versions of harness `coder`, two of skill `lint`, and runs of tickets using them."""

    coder: list[HarnessVersion]
    lint: list[SkillVersion]
    tickets: list[int]


async def _ticket(session: AsyncSession, repo_id: int, repo: str, number: int, title: str) -> int:
    if await session.get(Repository, repo_id) is None:
        session.add(Repository(id=repo_id, full_name=repo))
        await session.flush()
    ticket = Ticket(
        source="github",
        external_id=f"{repo_id}-{number}",
        repository_id=repo_id,
        number=number,
        key=f"{repo}#{number}",
        title=title,
        state="open",
    )
    session.add(ticket)
    await session.flush()
    return ticket.id


async def _used(deps: Deps) -> Used:
    async with transaction(deps.sessions) as session:
        coder = [
            await store.publish_harness(session, "coder", V1, author="ann", message="first"),
            await store.publish_harness(session, "coder", V2, author="bob", message="second"),
        ]
        await store.publish_harness(session, "idle", V1, author="ann")
        files = {"SKILL.md": SKILL_MD, "scripts/run.sh": "ruff check .\n"}
        lint = [await store.publish_skill(session, "lint", files, author="ann")]
        files = {**files, "scripts/run.sh": "ruff check .\nmypy .\n"}
        lint.append(await store.publish_skill(session, "lint", files, author="ann"))
        tickets = [
            await _ticket(session, 1, "acme/api", 1, "First <b>ticket</b>"),
            await _ticket(session, 1, "acme/api", 2, "Second"),
            await _ticket(session, 2, "acme/web", 3, "Third"),
        ]
        # (run, ticket, workflow, harness version, skill versions), oldest first
        runs = [
            ("r1", tickets[0], "coder", coder[0], [lint[0]]),
            ("r2", tickets[1], "coder", coder[0], [lint[0], lint[1]]),
            ("r3", tickets[2], "review", coder[1], [lint[1]]),
            ("r4", tickets[2], "coder", coder[1], []),
        ]
        for run_id, ticket_id, workflow, harness, skills in runs:
            session.add(
                Run(
                    id=run_id,
                    ticket_id=ticket_id,
                    workflow=workflow,
                    attempt=1,
                    state="finished",
                    status="succeeded",
                    spec={},
                )
            )
            await session.flush()
            await store.record_run_versions(
                session,
                run_id,
                harness_version_id=harness.id,
                skill_version_ids=[s.id for s in skills],
                ticket_id=ticket_id,
            )
        # now() is the transaction's start: give each run its own moment, in order.
        for minutes, (run_id, *_) in enumerate(runs):
            await session.execute(
                update(RunVersions)
                .where(RunVersions.run_id == run_id)
                .values(created_at=func.now() + timedelta(minutes=minutes))
            )
    return Used(coder, lint, tickets)


async def test_usage_names_repositories_and_workflows_once_each(deps: Deps) -> None:
    await _used(deps)
    async with deps.sessions() as session:
        assert await harness_usage(session) == {
            "coder": [("acme/api", "coder"), ("acme/web", "coder"), ("acme/web", "review")]
        }
        assert await skill_usage(session) == {
            "lint": [("acme/api", "coder"), ("acme/web", "review")]
        }


async def test_version_runs_are_newest_first_with_their_tickets(deps: Deps) -> None:
    used = await _used(deps)
    async with deps.sessions() as session:
        runs = await version_runs(session, used.coder[0])
        assert [(r.run_id, r.ticket_key, r.ticket_title) for r in runs] == [
            ("r2", "acme/api#2", "Second"),
            ("r1", "acme/api#1", "First <b>ticket</b>"),
        ]
        assert (runs[0].state, runs[0].status, runs[0].ticket_id) == (
            "finished",
            "succeeded",
            used.tickets[1],
        )
        assert [r.run_id for r in await version_runs(session, used.lint[1])] == ["r3", "r2"]
        assert [r.run_id for r in await version_runs(session, used.lint[1], limit=1)] == ["r3"]


async def test_run_counts_per_version_include_zero(deps: Deps) -> None:
    used = await _used(deps)
    async with deps.sessions() as session:
        idle = await store.list_versions(session, HarnessVersion, "idle")
        counts = await run_counts(session, [*used.coder, *idle])
        assert counts == {used.coder[0].id: 2, used.coder[1].id: 2, idle[0].id: 0}
        assert await run_counts(session, used.lint) == {used.lint[0].id: 2, used.lint[1].id: 2}
        assert await run_counts(session, []) == {}


# --- the HTTP API --------------------------------------------------------------------------

TOKEN = "admin-token-for-tests"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def api(app_with: AppWith) -> AsyncIterator[httpx.AsyncClient]:
    """The app with an admin token set, and a client that sends it."""
    async with app_with(
        base_url="http://openase.test/api/v1/", headers=BEARER, admin_token=SecretStr(TOKEN)
    ) as http:
        yield http


async def _count(deps: Deps, model: type[HarnessVersion] | type[SkillVersion]) -> int:
    async with deps.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


async def test_publish_then_read_a_harness_back(api: httpx.AsyncClient, deps: Deps) -> None:
    first = await api.post("harnesses/coder/versions", json={"content": V1, "message": "new"})
    assert first.status_code == 201, first.text
    assert first.json() | {"created_at": None} == {
        "name": "coder",
        "version": 1,
        "author": "api",
        "message": "new",
        "created_at": None,
        "content_hash": hashlib.sha256(V1.encode()).hexdigest(),
        "created": True,
    }
    assert first.json()["created_at"].startswith("20")
    same = await api.post("harnesses/coder/versions", json={"content": V1, "author": "bob"})
    assert same.status_code == 200
    assert (same.json()["version"], same.json()["created"], same.json()["author"]) == (
        1,
        False,
        "api",
    )
    second = await api.post("harnesses/coder/versions", json={"content": V2, "author": " bob "})
    assert (second.status_code, second.json()["version"], second.json()["author"]) == (
        201,
        2,
        "bob",
    )

    shown = (await api.get("harnesses/coder")).json()
    assert (shown["version"], shown["content"], shown["author"]) == (2, V2, "bob")
    old = (await api.get("harnesses/coder/versions/1")).json()
    assert (old["content"], old["message"], old["runs"], old["used_by_runs"]) == (V1, "new", 0, [])
    history = (await api.get("harnesses/coder/versions")).json()
    assert history["name"] == "coder"
    assert [(v["version"], v["author"], v["runs"]) for v in history["versions"]] == [
        (2, "bob", 0),
        (1, "api", 0),
    ]
    assert "content" not in history["versions"][0]
    diff = (await api.get("harnesses/coder/diff", params={"from": 1, "to": 2})).json()
    assert diff["diff"].startswith("--- coder@1\n+++ coder@2\n")
    assert "-Fix it.\n+Fix it well.\n" in diff["diff"]
    assert (diff["from"], diff["to"]) == (1, 2)
    same_diff = await api.get("harnesses/coder/diff?from=2&to=2")
    assert same_diff.json()["diff"] == ""
    assert await _count(deps, HarnessVersion) == 2


async def test_listings_say_who_uses_what(api: httpx.AsyncClient, deps: Deps) -> None:
    used = await _used(deps)
    listing = (await api.get("harnesses")).json()["harnesses"]
    assert [item["name"] for item in listing] == ["coder", "idle"]
    coder = listing[0]
    assert (coder["current_version"], coder["versions"], coder["author"]) == (2, 2, "bob")
    assert coder["message"] == "second"
    assert coder["updated_at"].startswith("20")
    assert coder["used_by"] == [
        {"repo": "acme/api", "workflow": "coder"},
        {"repo": "acme/web", "workflow": "coder"},
        {"repo": "acme/web", "workflow": "review"},
    ]
    assert listing[1]["used_by"] == []
    skills = (await api.get("skills")).json()["skills"]
    assert [(s["name"], s["current_version"], s["versions"]) for s in skills] == [("lint", 2, 2)]
    assert skills[0]["used_by"] == [
        {"repo": "acme/api", "workflow": "coder"},
        {"repo": "acme/web", "workflow": "review"},
    ]

    history = (await api.get("harnesses/coder/versions")).json()["versions"]
    assert [(v["version"], v["runs"]) for v in history] == [(2, 2), (1, 2)]
    first = (await api.get("harnesses/coder/versions/1")).json()
    assert [(r["run_id"], r["ticket_id"], r["ticket_key"]) for r in first["used_by_runs"]] == [
        ("r2", used.tickets[1], "acme/api#2"),
        ("r1", used.tickets[0], "acme/api#1"),
    ]
    assert (first["used_by_runs"][0]["state"], first["used_by_runs"][0]["status"]) == (
        "finished",
        "succeeded",
    )
    lint = (await api.get("skills/lint/versions/2")).json()
    assert [r["run_id"] for r in lint["used_by_runs"]] == ["r3", "r2"]


async def test_skills_publish_show_diff_and_roll_back(api: httpx.AsyncClient, deps: Deps) -> None:
    files = {"SKILL.md": SKILL_MD, "scripts/run.sh": "ruff check .\n"}
    first = await api.post("skills/lint/versions", json={"files": files, "message": "first"})
    assert (first.status_code, first.json()["version"]) == (201, 1)
    more = {**files, "notes.md": "Runs in CI too.\n"}
    assert (await api.post("skills/lint/versions", json={"files": more})).status_code == 201
    assert (await api.get("skills/lint")).json()["files"] == more
    assert (await api.get("skills/lint/versions/1")).json()["files"] == files
    diff = (await api.get("skills/lint/diff?from=1&to=2")).json()["diff"]
    assert "--- /dev/null\n+++ lint@2/notes.md\n" in diff

    rolled = await api.post("skills/lint/rollback", json={"version": 1})
    assert rolled.status_code == 201
    assert (rolled.json()["version"], rolled.json()["message"]) == (3, "roll back to version 1")
    assert (await api.get("skills/lint")).json()["files"] == files
    again = await api.post("skills/lint/rollback", json={"version": 1, "message": "again"})
    assert (again.status_code, again.json()["created"], again.json()["version"]) == (200, False, 3)

    no_front_matter = {"SKILL.md": "# Lint\n"}
    refused = await api.post("skills/lint/versions", json={"files": no_front_matter})
    assert refused.status_code == 422
    assert refused.json()["error"].startswith("SKILL.md must start with YAML front matter")
    escaping = {**files, "../evil.sh": "rm -rf /\n"}
    refused = await api.post("skills/lint/versions", json={"files": escaping})
    assert refused.status_code == 422
    assert "'../evil.sh'" in refused.json()["error"]
    assert await _count(deps, SkillVersion) == 3


async def test_a_harness_rolls_back_with_its_message(api: httpx.AsyncClient) -> None:
    await api.post("harnesses/coder/versions", json={"content": V1})
    await api.post("harnesses/coder/versions", json={"content": V2})
    rolled = await api.post(
        "harnesses/coder/rollback", json={"version": 1, "message": "v2 broke CI", "author": "ops"}
    )
    assert rolled.status_code == 201
    assert (rolled.json()["version"], rolled.json()["message"], rolled.json()["author"]) == (
        3,
        "v2 broke CI",
        "ops",
    )
    assert (await api.get("harnesses/coder")).json()["content"] == V1
    missing = await api.post("harnesses/coder/rollback", json={"version": 9})
    assert missing.status_code == 404
    assert missing.json()["error"] == "harness 'coder' has no version 9 (versions 1 to 3)"
    unknown = await api.post("harnesses/nope/rollback", json={"version": 1})
    assert (unknown.status_code, unknown.json()["error"]) == (404, "no harness named 'nope'")


async def test_an_invalid_template_is_422_naming_its_line(
    api: httpx.AsyncClient, deps: Deps
) -> None:
    broken = await api.post("harnesses/coder/versions", json={"content": "one\n{{ ticket.key \n"})
    assert broken.status_code == 422
    assert broken.json()["error"].startswith("harness 'coder' is not a valid template: line 2:")
    unsafe = await api.post("harnesses/coder/versions", json={"content": "ok\n{% include 'x' %}"})
    assert unsafe.status_code == 422
    assert "line 2: harness templates cannot extend, include or import" in unsafe.json()["error"]
    withheld = await api.post("harnesses/coder/versions", json={"content": "{{ ticket.body }}"})
    assert withheld.status_code == 422
    assert withheld.json()["error"].startswith(
        "harness 'coder' is not a valid template: line 1: 'ticket.body' is not available to "
        "harnesses: anyone who can open an issue writes its description"
    )
    empty = await api.post("harnesses/coder/versions", json={"content": "  \n"})
    assert (empty.status_code, empty.json()["error"]) == (422, "harness 'coder' is empty")
    assert await _count(deps, HarnessVersion) == 0


async def test_hostile_content_comes_back_as_json_data(api: httpx.AsyncClient) -> None:
    hostile = "<script>alert(1)</script>\n{{ ticket.key }}\n"
    await api.post(
        "harnesses/coder/versions", json={"content": hostile, "message": "<img src=x onerror=1>"}
    )
    shown = await api.get("harnesses/coder")
    assert shown.headers["content-type"] == "application/json"
    assert (shown.json()["content"], shown.json()["message"]) == (
        hostile,
        "<img src=x onerror=1>",
    )


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{not json", 400, "body: not valid JSON"),
        (b"[1, 2]", 400, "body: must be a JSON object"),
        (b'"text"', 400, "body: must be a JSON object"),
        (b"\xff\xfe", 400, "body: not valid JSON"),
        (json.dumps({"content": V1, "extra": 1}).encode(), 400, "extra: unknown field"),
        (json.dumps({"message": "no content"}).encode(), 400, "content: missing"),
        (json.dumps({"content": 7}).encode(), 400, "content: must be a string"),
        (json.dumps({"content": None}).encode(), 400, "content: must be a string"),
        (json.dumps({"content": V1, "message": 7}).encode(), 400, "message: must be a string"),
        (json.dumps({"content": V1, "message": "m" * 4001}).encode(), 400, "message: longer"),
        (json.dumps({"content": V1, "author": " "}).encode(), 400, "author: must not be blank"),
        (json.dumps({"content": V1, "author": "a\nb"}).encode(), 400, "author: at most 200"),
        (json.dumps({"content": V1, "author": 5}).encode(), 400, "author: must be a string"),
        (b'{"content": "\\ud800 lone"}', 400, "content: not valid Unicode text"),
        (json.dumps({"content": V1, "message": "a\x00b"}).encode(), 400, "message: contains a NUL"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "body: nested too deeply"),
        (json.dumps({"content": "x" * (256 * 1024 + 1)}).encode(), 400, "content: larger than"),
        (b'{"content": "' + b"x" * (2 * 1024 * 1024) + b'"}', 413, "body: larger than"),
    ],
)
async def test_a_malformed_publish_is_refused_naming_the_field(
    api: httpx.AsyncClient, deps: Deps, body: bytes, status: int, error: str
) -> None:
    answer = await api.post(
        "harnesses/coder/versions", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == status, answer.text
    assert answer.json()["error"].startswith(error)
    assert await _count(deps, HarnessVersion) == 0


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("skills/lint/versions", {"files": ["SKILL.md"]}, "files: must be an object"),
        ("skills/lint/versions", {"files": {"SKILL.md": 1}}, "files: 'SKILL.md': must be a str"),
        ("skills/lint/versions", {"files": {"\ud800": "x"}}, "files: not valid Unicode text"),
        ("skills/lint/versions", {"content": "x"}, "content: unknown field"),
        ("skills/lint/rollback", {"version": "1"}, "version: must be a whole number"),
        ("skills/lint/rollback", {"version": True}, "version: must be a whole number"),
        ("skills/lint/rollback", {"version": 0}, "version: must be a whole number"),
        ("harnesses/coder/rollback", {}, "version: missing"),
        ("harnesses/Coder/versions", {"content": V1}, "name: invalid harness name 'Coder'"),
    ],
)
async def test_malformed_skill_and_rollback_bodies(
    api: httpx.AsyncClient, path: str, body: dict[str, Any], error: str
) -> None:
    # json.dumps escapes a lone surrogate, which httpx's `json=` refuses to encode.
    answer = await api.post(
        path, content=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert (answer.status_code, answer.json()["error"][: len(error)]) == (400, error)


async def test_a_write_must_be_json(api: httpx.AsyncClient, deps: Deps) -> None:
    form = await api.post("harnesses/coder/versions", data={"content": V1})
    assert form.status_code == 415
    assert form.json()["error"].startswith("body: send JSON")
    assert await _count(deps, HarnessVersion) == 0


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("harnesses/nope", 404, "no harness named 'nope'"),
        ("harnesses/nope/versions", 404, "no harness named 'nope'"),
        ("skills/nope/versions/1", 404, "no skill named 'nope'"),
        ("harnesses/coder/versions/9", 404, "harness 'coder' has no version 9 (versions 1 to 1)"),
        ("harnesses/coder/versions/0", 400, "version: must be a whole number from 1"),
        ("harnesses/coder/versions/1x", 400, "version: must be a whole number from 1"),
        ("harnesses/coder/versions/9999999999", 400, "version: must be a whole number"),
        ("harnesses/Bad_Name", 400, "name: invalid harness name 'Bad_Name'"),
        ("harnesses/coder/diff?from=1", 400, "to: missing"),
        ("harnesses/coder/diff?from=1&to=two", 400, "to: must be a whole number from 1"),
        ("harnesses/coder/diff?from=1&to=3", 404, "harness 'coder' has no version 3"),
        ("harnesses/coder/diff?from=1&to=1&context=3", 400, "context: unknown query parameter"),
        ("harnesses?limit=5", 400, "limit: unknown query parameter"),
        ("harnesses/coder?version=1", 400, "version: unknown query parameter"),
    ],
)
async def test_unknown_and_malformed_reads(
    api: httpx.AsyncClient, path: str, status: int, error: str
) -> None:
    await api.post("harnesses/coder/versions", json={"content": V1})
    answer = await api.get(path)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"].startswith(error)


async def test_writes_need_the_bearer_token(api: httpx.AsyncClient, deps: Deps) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
        answer = await api.post("harnesses/coder/versions", json={"content": V1}, headers=headers)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert TOKEN not in answer.text
    reading = await api.get("harnesses", headers={"Authorization": ""})
    assert reading.status_code == 401
    assert await _count(deps, HarnessVersion) == 0


async def test_without_a_token_configured_reads_are_open_and_writes_refused(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    assert deps.settings.admin_token is None
    await _used(deps)
    assert (await client.get("/api/v1/harnesses")).status_code == 200
    for path, body in [
        ("/api/v1/harnesses/coder/versions", {"content": V2 + "more\n"}),
        ("/api/v1/skills/lint/rollback", {"version": 1}),
    ]:
        answer = await client.post(path, json=body, headers=BEARER)
        assert answer.status_code == 403
        assert "set OPENASE_ADMIN_TOKEN on the server" in answer.json()["error"]
    assert await _count(deps, HarnessVersion) == 3


async def test_listings_take_the_same_queries_however_many_names(
    api: httpx.AsyncClient, deps: Deps
) -> None:
    await _used(deps)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])  # (conn, cursor, statement, ...)

    async def queries(path: str) -> int:
        statements.clear()
        event.listen(deps.engine.sync_engine, "before_cursor_execute", count)
        try:
            assert (await api.get(path)).status_code == 200
        finally:
            event.remove(deps.engine.sync_engine, "before_cursor_execute", count)
        return len(statements)

    paths = ("harnesses", "skills", "harnesses/coder/versions")
    few = {path: await queries(path) for path in paths}
    async with transaction(deps.sessions) as session:
        for n in range(12):
            await store.publish_harness(session, f"extra-{n}", V1, author="ann")
            await store.publish_harness(session, "coder", f"{V1}{n}\n", author="ann")
            files = {"SKILL.md": SKILL_MD.replace("lint", f"lint-{n}")}
            await store.publish_skill(session, f"lint-{n}", files, author="ann")
    many = {path: await queries(path) for path in paths}
    assert many == few
    assert few["harnesses"] <= 2
