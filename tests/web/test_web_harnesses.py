"""The harness and skill pages: every route, reads behind the login or public, writes only
signed in with the form's CSRF token, hostile text escaped or sanitised, and publishing,
rolling back and diffing through the forms against a real Postgres."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
from markupsafe import escape
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from bot.deps import Deps
from bot.tables.mirror import Repository, Ticket
from bot.tables.workflow import Run
from bot.web.diff_view import diff_file, diff_files
from bot.web.markdown import render_markdown
from harness_store import store
from harness_store.db import make_engine, make_sessionmaker, transaction
from harness_store.models import HarnessVersion, SkillVersion
from tests.conftest import AppWith
from tests.support.signing_in import TOKEN, csrf_of, sign_in

V1 = "# Coder\n\nFix {{ ticket.key }}.\nKeep it small.\nRun the tests.\n"
V2 = "# Coder\n\nFix {{ ticket.key }} carefully.\nKeep it small.\nRun the tests.\nOpen a PR.\n"
HOSTILE = (
    "# Evil\n\n<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n"
    '[click](javascript:alert(3)) <a href="JaVaScRiPt:alert(4)">too</a>\n\n'
    "[docs](https://example.com/docs)\n"
)
HOSTILE_TITLE = '<img src=x onerror="alert(5)">Fix the <b>login</b>'
SKILL = "SKILL.md"
SKILL_MD = "---\nname: lint\ndescription: Run the linters.\n---\n\n# Lint\n\nRun `check.sh`.\n"
LINT_V1 = {"SKILL.md": SKILL_MD, "check.sh": "ruff check .\n", "old.txt": "bye\n"}
LINT_V2 = {"SKILL.md": SKILL_MD, "check.sh": "ruff check .\nmypy .\n", "new.txt": "hi\n"}

Client = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def open_client(app_with: AppWith) -> Client:
    """An app client with the admin token set; `web_reads` as given (default: login)."""

    def opened(**settings: Any) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        return app_with(admin_token=SecretStr(TOKEN), **settings)

    return opened


@pytest.fixture
async def web(open_client: Client) -> AsyncIterator[httpx.AsyncClient]:
    """Signed in as admin."""
    async with open_client() as http:
        assert (await sign_in(http)).status_code == 303
        yield http


async def _ticket(session: AsyncSession, number: int, title: str, repo: str = "acme/api") -> int:
    repo_id = 1 if repo == "acme/api" else 2
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


async def _run(
    session: AsyncSession,
    run_id: str,
    ticket_id: int,
    workflow: str,
    harness: HarnessVersion,
    skills: list[SkillVersion],
) -> None:
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
        skill_version_ids=[skill.id for skill in skills],
        ticket_id=ticket_id,
    )


async def _seed(deps: Deps) -> dict[str, int]:
    """coder@1..2 (runs on two repositories), evil@1, lint@1..2; the ticket ids by name."""
    async with transaction(deps.sessions) as session:
        coder1 = await store.publish_harness(session, "coder", V1, author="ann", message="first")
        coder2 = await store.publish_harness(session, "coder", V2, author="bob", message="better")
        evil = await store.publish_harness(session, "evil", HOSTILE, author="eve")
        lint1 = await store.publish_skill(session, "lint", LINT_V1, author="ann", message="one")
        lint2 = await store.publish_skill(session, "lint", LINT_V2, author="bob", message="two")
        hostile = await _ticket(session, 1, HOSTILE_TITLE)
        plain = await _ticket(session, 2, "Plain", repo="acme/web")
        await _run(session, "run-1", hostile, "coder", coder1, [lint1])
        await _run(session, "run-2", plain, "review", coder1, [lint1, lint2])
        await _run(session, "run-3", plain, "coder", coder2, [])
        await _run(session, "run-4", hostile, "coder", evil, [lint2])
    return {"hostile": hostile, "plain": plain}


async def _versions(deps: Deps, model: type[HarnessVersion] | type[SkillVersion], name: str) -> int:
    async with deps.sessions() as session:
        if model is HarnessVersion:
            return len(await store.list_versions(session, HarnessVersion, name))
        return len(await store.list_versions(session, SkillVersion, name))


def _section(page: str, start: str, end: str) -> str:
    """The page's HTML between two markers (both must be there)."""
    head = page.index(start)
    return page[head : page.index(end, head)]


READS = [
    "/harnesses",
    "/harnesses/coder",
    "/harnesses/coder/versions/1",
    "/harnesses/coder/diff?from=1&to=2",
    "/skills",
    "/skills/lint",
    "/skills/lint/versions/2",
    "/skills/lint/diff?from=1&to=2&view=split",
]
WRITE_PAGES = ["/harnesses/coder/new", "/harnesses/-/new", "/skills/lint/new", "/skills/-/new"]


async def test_reads_need_a_login_when_the_admin_token_is_set(
    deps: Deps, open_client: Client
) -> None:
    await _seed(deps)
    async with open_client() as http:
        for path in READS + WRITE_PAGES:
            refused = await http.get(path)
            assert refused.status_code == 303, path
            assert refused.headers["location"].startswith("/login?next=%2F"), path
        assert (await sign_in(http)).status_code == 303
        for path in READS + WRITE_PAGES:
            shown = await http.get(path)
            assert shown.status_code == 200, path
            assert shown.headers["content-security-policy"].startswith("default-src 'self'")


async def test_public_reads_still_need_a_login_to_write(deps: Deps, open_client: Client) -> None:
    await _seed(deps)
    async with open_client(web_reads="public") as http:
        for path in READS:
            assert (await http.get(path)).status_code == 200, path
        for path in WRITE_PAGES:
            assert (await http.get(path)).status_code == 303, path
        versions = await http.get("/harnesses/coder")
        assert "Sign in to roll back" in versions.text
        assert 'action="/harnesses/coder/rollback"' not in versions.text
        token = csrf_of((await http.get("/login")).text)  # the signed-out double-submit one
        writes = [
            ("/harnesses/coder/new", {"content": "# New\n", "message": "m"}),
            ("/harnesses/coder/rollback", {"version": "1"}),
            ("/harnesses/-/new", {"name": "fresh", "content": "# New\n"}),
            ("/skills/lint/rollback", {"version": "1"}),
        ]
        for path, form in writes:
            refused = await http.post(path, data={"csrf": token, **form})
            assert refused.status_code == 303, path
            assert refused.headers["location"].startswith("/login?next="), path
    assert await _versions(deps, HarnessVersion, "coder") == 2
    assert await _versions(deps, HarnessVersion, "fresh") == 0
    assert await _versions(deps, SkillVersion, "lint") == 2


async def test_writes_need_the_forms_csrf_token(deps: Deps, web: httpx.AsyncClient) -> None:
    await _seed(deps)
    editor = await web.get("/harnesses/coder/new")
    token = csrf_of(editor.text)
    form = {"content": "# Changed\n", "message": "m", "base": "2"}
    for data, headers in [
        (form, {}),
        ({**form, "csrf": "x" * 32}, {}),
        ({**form, "csrf": token}, {"Origin": "https://evil.example"}),
    ]:
        refused = await web.post("/harnesses/coder/new", data=data, headers=headers)
        assert refused.status_code == 403
        assert "security token" in refused.text
    assert (await web.post("/harnesses/coder/rollback", data={"version": "1"})).status_code == 403
    new_skill = {"name": "fresh", "path-0": "SKILL.md", "content-0": SKILL_MD}
    assert (await web.post("/skills/-/new", data=new_skill)).status_code == 403
    assert await _versions(deps, HarnessVersion, "coder") == 2
    assert await _versions(deps, SkillVersion, "fresh") == 0


async def test_the_list_shows_current_versions_last_changes_and_users(
    deps: Deps, web: httpx.AsyncClient
) -> None:
    await _seed(deps)
    listing = await web.get("/harnesses")
    assert listing.status_code == 200
    row = _section(listing.text, 'href="/harnesses/coder"', "</tr>")
    assert 'href="/harnesses/coder/versions/2">version 2</a>' in row
    assert "of 2" in row
    assert "by bob" in row
    assert "better" in row
    assert 'acme/api <span class="muted">· coder</span>' in row
    assert 'acme/web <span class="muted">· coder</span>' in row
    assert 'acme/web <span class="muted">· review</span>' in row
    assert '<th scope="col">Used by</th>' in listing.text
    skills = await web.get("/skills")
    row = _section(skills.text, 'href="/skills/lint"', "</tr>")
    assert 'href="/skills/lint/versions/2"' in row
    assert "acme/api" in row
    assert "acme/web" in row


async def test_an_empty_store_lists_nothing(deps: Deps, web: httpx.AsyncClient) -> None:
    listing = await web.get("/harnesses")
    assert listing.status_code == 200
    assert "No harness has been published yet." in listing.text


async def test_one_harness_lists_its_versions_with_runs_and_forms(
    deps: Deps, web: httpx.AsyncClient
) -> None:
    await _seed(deps)
    page = await web.get("/harnesses/coder")
    assert page.status_code == 200
    rows = re.findall(r'<th scope="row"><a href="/harnesses/coder/versions/(\d)">', page.text)
    assert rows == ["2", "1"]  # newest first
    newest = _section(page.text, 'versions/2">2</a>', "</tr>")
    assert "bob" in newest
    assert "better" in newest
    assert "<td>1</td>" in newest
    assert "current" in newest
    oldest = _section(page.text, 'versions/1">1</a>', "</tr>")
    assert "<td>2</td>" in oldest  # two runs used version 1
    assert 'action="/harnesses/coder/rollback"' in oldest
    assert 'name="version" value="1"' in oldest
    assert 'for="rollback-message-1"' in oldest
    assert 'href="/harnesses/coder/new"' in page.text
    compare = _section(page.text, 'action="/harnesses/coder/diff"', "</form>")
    assert 'method="get"' in page.text
    assert '<option value="1" selected>' in compare
    assert '<option value="2" selected>' in compare


async def test_a_version_is_shown_rendered_and_as_source_with_its_runs(
    deps: Deps, web: httpx.AsyncClient
) -> None:
    tickets = await _seed(deps)
    page = await web.get("/harnesses/coder/versions/1")
    assert page.status_code == 200
    rendered = _section(page.text, '<div class="rendered">', "</div>")
    assert "<h3>Coder</h3>" in rendered  # headings sit below the page's own
    source = _section(page.text, '<pre class="source">', "</pre>")
    assert "Fix {{ ticket.key }}." in source
    runs = _section(page.text, 'id="runs"', "</table>")
    assert runs.index('href="/runs/run-2"') < runs.index('href="/runs/run-1"')  # newest first
    assert f'href="/tickets/{tickets["hostile"]}">acme/api#1</a>' in runs
    assert f'href="/tickets/{tickets["plain"]}">acme/web#2</a>' in runs
    assert "Changes from version" not in page.text
    assert 'href="/harnesses/coder/diff?from=1&amp;to=2">Compare with current' in page.text
    assert 'href="/harnesses/coder/new?from=1"' in page.text


async def test_hostile_harness_text_and_ticket_titles_never_run(
    deps: Deps, web: httpx.AsyncClient
) -> None:
    await _seed(deps)
    page = await web.get("/harnesses/evil/versions/1")
    assert page.status_code == 200
    rendered = _section(page.text, '<div class="rendered">', '<h2 id="source">')
    lowered = rendered.lower()
    assert "<script" not in lowered
    assert "alert(1)" not in lowered
    assert "onerror" not in lowered
    assert not re.search(r"href=[\"']?\s*javascript", lowered)  # left as text, never a link
    assert '<a href="https://example.com/docs" rel="noopener noreferrer">docs</a>' in rendered
    source = _section(page.text, '<pre class="source">', "</pre>")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in source
    assert "&lt;img src=x onerror=alert(2)&gt;" in source
    # Outside the two sections no hostile markup appears at all.
    assert "<script>" not in page.text
    assert "<img src=x" not in page.text
    assert escape(HOSTILE_TITLE) in page.text  # the ticket in the runs list
    assert HOSTILE_TITLE not in page.text
    for path in ("/harnesses/coder/versions/1", "/skills/lint/versions/1"):
        used = await web.get(path)
        assert escape(HOSTILE_TITLE) in used.text
        assert "<img src=x" not in used.text


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/harnesses/nobody", 404, "no harness named"),
        ("/harnesses/Not_A_Name", 404, "no harness with that name"),
        ("/harnesses/coder/versions/9", 404, "has no version 9"),
        ("/harnesses/coder/versions/0", 404, "has no such version"),
        ("/harnesses/coder/versions/x1", 404, "has no such version"),
        ("/harnesses/coder/versions/99999999999", 404, "has no such version"),
        ("/harnesses/nobody/versions/1", 404, "no harness named"),
        ("/harnesses/coder/diff?from=1&to=7", 404, "has no version 7"),
        ("/harnesses/nobody/diff?from=1&to=2", 404, "no harness named"),
        ("/harnesses/coder/diff?from=one&to=2", 400, "from: must be a version number"),
        ("/harnesses/coder/diff?from=1&to=-2", 400, "to: must be a version number"),
        ("/harnesses/coder/diff?from=1&to=2&view=wide", 400, "view: unknown value"),
        ("/harnesses/coder/diff?from=1&from=2", 400, "from: give it at most once"),
        ("/harnesses/coder/diff?form=1", 400, "form: unknown query parameter"),
        ("/harnesses/coder/new?from=5", 404, "has no version 5"),
        ("/harnesses/nobody/new", 404, "no harness named"),
        ("/skills/nobody", 404, "no skill named"),
        ("/skills/lint/versions/3", 404, "has no version 3"),
        ("/skills/lint/diff?to=x", 400, "to: must be a version number"),
    ],
)
async def test_unknown_things_are_404_and_bad_parameters_400(
    deps: Deps, web: httpx.AsyncClient, path: str, status: int, says: str
) -> None:
    await _seed(deps)
    answer = await web.get(path)
    assert answer.status_code == status
    assert says in html.unescape(answer.text)


async def test_the_unified_diff_numbers_and_marks_the_lines(
    deps: Deps, web: httpx.AsyncClient
) -> None:
    await _seed(deps)
    page = await web.get("/harnesses/coder/diff?from=1&to=2")
    assert page.status_code == 200
    table = _section(page.text, '<table class="diff unified">', "</table>")
    assert "@@ -1,5 +1,6 @@" in table
    assert (
        '<tr class="del"><td class="num">3</td><td class="num"></td><td><span class="sign">-'
        "</span>Fix {{ ticket.key }}.</td></tr>"
    ) in table
    assert (
        '<tr class="add"><td class="num"></td><td class="num">3</td><td><span class="sign">+'
        "</span>Fix {{ ticket.key }}<mark> carefully</mark>.</td></tr>"
    ) in table
    assert '<td class="num">6</td><td><span class="sign">+</span>Open a PR.</td>' in table
    assert '<tr class="ctx"><td class="num">4</td><td class="num">4</td>' in table
    assert "+2 \u22121" in page.text  # a minus sign, not a hyphen
    # Defaults: to the current version from the one before it.
    assert (await web.get("/harnesses/coder/diff")).text.count("<mark>") == 1
    same = await web.get("/harnesses/coder/diff?from=2&to=2")
    assert "No differences" in same.text


async def test_the_split_diff_puts_old_and_new_side_by_side(
    deps: Deps, web: httpx.AsyncClient
) -> None:
    await _seed(deps)
    page = await web.get("/harnesses/coder/diff?from=1&to=2&view=split")
    table = _section(page.text, '<table class="diff split">', "</table>")
    assert (
        '<td class="num">3</td><td class="del"><span class="sign">-</span>Fix {{ ticket.key }}.'
        '</td><td class="num">3</td><td class="add"><span class="sign">+</span>'
        "Fix {{ ticket.key }}<mark> carefully</mark>.</td>"
    ) in table
    assert (
        '<td class="num"></td><td class="none"></td><td class="num">6</td>'
        '<td class="add"><span class="sign">+</span>Open a PR.</td>'
    ) in table
    assert '<a href="/harnesses/coder/diff?from=1&amp;to=2&amp;view=unified">Unified</a>' in (
        page.text
    )
    backwards = await web.get("/harnesses/coder/diff?from=2&to=1&view=split")
    assert '<span class="sign">-</span>Open a PR.' in backwards.text


async def test_the_editor_publishes_a_new_version(deps: Deps, web: httpx.AsyncClient) -> None:
    await _seed(deps)
    editor = await web.get("/harnesses/coder/new")
    assert editor.status_code == 200
    textarea = _section(editor.text, '<textarea id="content"', "</textarea>")
    assert textarea.endswith("\n" + V2)
    assert 'name="base" value="2"' in editor.text
    assert 'for="message"' in editor.text
    published = await web.post(
        "/harnesses/coder/new",
        data={
            "csrf": csrf_of(editor.text),
            "base": "2",
            "content": V2.replace("\n", "\r\n") + "Say <thanks>.\r\n",
            "message": "be polite",
        },
    )
    assert published.status_code == 303
    assert published.headers["location"] == "/harnesses/coder/versions/3"
    async with deps.sessions() as session:
        newest = await store.require_current(session, HarnessVersion, "coder")
    assert (newest.version, newest.author, newest.message) == (3, "admin", "be polite")
    assert newest.content == V2 + "Say <thanks>.\n"
    shown = await web.get("/harnesses/coder/versions/3")
    assert "Say &lt;thanks&gt;." in shown.text
    old = await web.get("/harnesses/coder/new?from=1")
    assert _section(old.text, '<textarea id="content"', "</textarea>").endswith("\n" + V1)
    assert 'value="Based on version 1"' in old.text


async def test_the_editor_keeps_refused_text_and_says_why(
    deps: Deps, web: httpx.AsyncClient
) -> None:
    await _seed(deps)
    editor = await web.get("/harnesses/coder/new")
    token = csrf_of(editor.text)
    broken = "# Coder\n\n{% if ticket.key %}\nno end <b>here</b>\n"
    refused = await web.post(
        "/harnesses/coder/new",
        data={"csrf": token, "base": "2", "content": broken, "message": "oops"},
    )
    assert refused.status_code == 422
    assert 'role="alert"' in refused.text
    assert "not a valid template" in refused.text
    assert html.escape(broken, quote=False) in refused.text
    assert 'value="oops"' in refused.text
    same = await web.post(
        "/harnesses/coder/new", data={"csrf": token, "base": "2", "content": V2, "message": "x"}
    )
    assert same.status_code == 200
    assert "Nothing to publish: this is the same as version 2." in same.text
    assert await _versions(deps, HarnessVersion, "coder") == 2


async def test_the_editor_refuses_to_overwrite_a_newer_version(
    deps: Deps, web: httpx.AsyncClient
) -> None:
    await _seed(deps)
    token = csrf_of((await web.get("/harnesses/coder/new")).text)
    stale = await web.post(
        "/harnesses/coder/new",
        data={"csrf": token, "base": "1", "content": "# Mine\n", "message": "mine"},
    )
    assert stale.status_code == 409
    assert "Version 2 was published since you opened the editor" in stale.text
    assert 'href="/harnesses/coder/diff?from=1&amp;to=2">See what changed' in stale.text
    assert 'name="base" value="2"' in stale.text  # publishing again goes through
    assert "# Mine" in stale.text
    again = await web.post(
        "/harnesses/coder/new",
        data={"csrf": token, "base": "2", "content": "# Mine\n", "message": "mine"},
    )
    assert again.status_code == 303


async def test_rolling_back_publishes_the_old_version_again(
    deps: Deps, web: httpx.AsyncClient
) -> None:
    await _seed(deps)
    page = await web.get("/harnesses/coder")
    rolled = await web.post(
        "/harnesses/coder/rollback",
        data={"csrf": csrf_of(page.text), "version": "1", "message": "v2 <broke> things"},
    )
    assert rolled.status_code == 303
    assert rolled.headers["location"] == "/harnesses/coder/versions/3"
    async with deps.sessions() as session:
        newest = await store.require_current(session, HarnessVersion, "coder")
    assert newest.content == V1
    assert newest.message == "roll back to version 1: v2 <broke> things"
    assert newest.author == "admin"
    after = await web.get("/harnesses/coder")
    assert "roll back to version 1: v2 &lt;broke&gt; things" in after.text
    assert "same as current" in _section(after.text, 'versions/1">1</a>', "</tr>")
    for version, status in (("abc", 400), ("", 400), ("9", 404)):
        bad = await web.post(
            "/harnesses/coder/rollback", data={"csrf": csrf_of(page.text), "version": version}
        )
        assert bad.status_code == status, version
    assert await _versions(deps, HarnessVersion, "coder") == 3


async def test_a_new_harness_name_gets_its_first_version(
    deps: Deps, web: httpx.AsyncClient
) -> None:
    await _seed(deps)
    form = await web.get("/harnesses/-/new")
    assert form.status_code == 200
    assert 'for="name"' in form.text
    assert 'action="/harnesses/-/new"' in form.text
    token = csrf_of(form.text)
    for name, says in [
        ("Bad Name", "invalid harness name"),
        ("coder", "already exists"),
        ("", "a harness needs a name"),
    ]:
        refused = await web.post(
            "/harnesses/-/new", data={"csrf": token, "name": name, "content": "# Hi <x>\n"}
        )
        assert refused.status_code == 422, name
        assert says in html.unescape(refused.text)
        assert "# Hi &lt;x&gt;" in refused.text
        assert f'value="{html.escape(name)}"' in refused.text
    created = await web.post(
        "/harnesses/-/new",
        data={"csrf": token, "name": "triage", "content": "# Triage\n", "message": "start"},
    )
    assert created.status_code == 303
    assert created.headers["location"] == "/harnesses/triage/versions/1"
    assert "start" in (await web.get("/harnesses/triage")).text
    assert await _versions(deps, HarnessVersion, "coder") == 2


async def test_a_skill_version_lists_renders_and_shows_every_file(
    deps: Deps, web: httpx.AsyncClient
) -> None:
    await _seed(deps)
    page = await web.get("/skills/lint/versions/2")
    assert page.status_code == 200
    files = _section(page.text, 'id="files"', "</ul>")
    assert files.index(">SKILL.md<") < files.index(">check.sh<") < files.index(">new.txt<")
    rendered = _section(page.text, '<div class="rendered">', "</div>")
    assert "<h3>Lint</h3>" in rendered
    assert "<code>check.sh</code>" in rendered
    assert "ruff check .\nmypy .\n</pre>" in page.text
    assert 'href="/runs/run-4"' in page.text
    assert 'href="/runs/run-2"' in page.text
    assert 'href="/runs/run-1"' not in page.text


async def test_a_skill_diff_covers_added_removed_and_changed_files(
    deps: Deps, web: httpx.AsyncClient
) -> None:
    await _seed(deps)
    for view in ("unified", "split"):
        page = await web.get(f"/skills/lint/diff?from=1&to=2&view={view}")
        assert page.status_code == 200
        headings = re.findall(r"<h2>([^<]+) <span class=\"muted\">([a-z]+),", page.text)
        assert headings == [("check.sh", "changed"), ("new.txt", "added"), ("old.txt", "removed")]
        assert "SKILL.md" not in re.sub(r"<a [^>]*>", "", page.text.split("<h2>", 1)[1])
        assert "mypy ." in page.text
        assert "bye" in page.text


async def test_the_skill_editor_changes_removes_and_adds_files(
    deps: Deps, web: httpx.AsyncClient
) -> None:
    await _seed(deps)
    editor = await web.get("/skills/lint/new")
    assert editor.status_code == 200
    paths = re.findall(r'name="path-(\d)" value="([^"]*)"', editor.text)
    assert paths == [("0", "SKILL.md"), ("1", "check.sh"), ("2", "new.txt")]
    assert 'for="path-3"' in editor.text  # the "add a file" pair
    form = {
        "csrf": csrf_of(editor.text),
        "base": "2",
        "message": "three",
        "path-0": "SKILL.md",
        "content-0": SKILL_MD,
        "path-1": "check.sh",
        "content-1": "ruff check .\r\nmypy --strict .\r\n",
        "path-2": "new.txt",
        "content-2": "hi\n",
        "remove-2": "1",
        "path-3": "docs/usage.md",
        "content-3": "Use it <well>.\n",
    }
    published = await web.post("/skills/lint/new", data=form)
    assert published.status_code == 303
    assert published.headers["location"] == "/skills/lint/versions/3"
    async with deps.sessions() as session:
        newest = await store.require_current(session, SkillVersion, "lint")
    assert newest.files == {
        "SKILL.md": SKILL_MD,
        "check.sh": "ruff check .\nmypy --strict .\n",
        "docs/usage.md": "Use it <well>.\n",
    }
    assert (newest.author, newest.message) == ("admin", "three")


async def test_the_skill_editor_keeps_refused_files_and_says_why(
    deps: Deps, web: httpx.AsyncClient
) -> None:
    await _seed(deps)
    token = csrf_of((await web.get("/skills/lint/new")).text)
    base = {"csrf": token, "base": "2", "message": "m"}
    cases = [
        ({"path-0": "SKILL.md", "content-0": "no front matter <i>\n"}, "front matter"),
        ({"path-0": "SKILL.md", "content-0": SKILL_MD, "path-1": "", "content-1": "x"}, "no path"),
        (
            {"path-0": "SKILL.md", "content-0": SKILL_MD, "path-1": "../up", "content-1": "x"},
            "'..' path segments are not allowed",
        ),
        (
            {"path-0": "a.md", "content-0": "a", "path-1": "a.md", "content-1": "b"},
            "'a.md' is given twice",
        ),
    ]
    for files, says in cases:
        refused = await web.post("/skills/lint/new", data={**base, **files})
        assert refused.status_code == 422, says
        assert says in html.unescape(refused.text)
        assert html.escape(files["content-0"], quote=False) in refused.text
    assert await _versions(deps, SkillVersion, "lint") == 2


async def test_skills_roll_back_and_start_new_names(deps: Deps, web: httpx.AsyncClient) -> None:
    await _seed(deps)
    page = await web.get("/skills/lint")
    assert 'action="/skills/lint/rollback"' in page.text
    rolled = await web.post(
        "/skills/lint/rollback", data={"csrf": csrf_of(page.text), "version": "1"}
    )
    assert rolled.status_code == 303
    assert rolled.headers["location"] == "/skills/lint/versions/3"
    async with deps.sessions() as session:
        newest = await store.require_current(session, SkillVersion, "lint")
    assert (newest.files, newest.message) == (LINT_V1, "roll back to version 1")

    form = await web.get("/skills/-/new")
    assert "name: my-skill" in form.text
    fresh_md = SKILL_MD.replace("name: lint", "name: fmt")
    created = await web.post(
        "/skills/-/new",
        data={
            "csrf": csrf_of(form.text),
            "name": "fmt",
            "path-0": "SKILL.md",
            "content-0": fresh_md,
            "message": "First version",
        },
    )
    assert created.status_code == 303
    assert created.headers["location"] == "/skills/fmt/versions/1"
    mismatch = await web.post(
        "/skills/-/new",
        data={
            "csrf": csrf_of(form.text),
            "name": "other",
            "path-0": "SKILL.md",
            "content-0": fresh_md,
            "message": "First version",
        },
    )
    assert mismatch.status_code == 422
    assert "must equal the skill&#39;s name" in mismatch.text


async def test_a_database_outage_is_a_503_page(
    deps: Deps, web: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = make_engine("postgresql://openase@127.0.0.1:1/openase")
    monkeypatch.setattr(deps, "sessions", make_sessionmaker(nowhere))
    try:
        for path in ("/harnesses", "/skills/lint/versions/1", "/harnesses/coder/diff"):
            answer = await web.get(path)
            assert answer.status_code == 503, path
            assert "The database is unavailable" in answer.text
    finally:
        await nowhere.dispose()


@pytest.mark.parametrize(
    ("markdown", "absent", "present"),
    [
        ("<script>alert(1)</script>", ["<script", "alert(1)"], []),
        ("<img src=x onerror=alert(1)>", ["onerror"], ['<img src="x">']),
        ('<a href="javascript:alert(1)">x</a>', ["javascript"], ['<a rel="noopener noreferrer">x']),
        ("[x](https://a.example)", [], ['href="https://a.example" rel="noopener noreferrer"']),
        (
            '<div id="login" onclick="x()" style="color:red">d</div>',
            ["id=", "onclick", "style"],
            [],
        ),
        ("<iframe src=https://a.example></iframe>ok", ["iframe"], ["ok"]),
        ("<form action=/logout><button>x</button></form>", ["<form", "<button"], []),
        ("![i](data:image/png;base64,AAAA)", ["data:"], []),
        ("<details><summary>More</summary>\n\nhidden\n</details>", [], ["<details>", "<summary>"]),
        ("# Top\n## Next", ["<h1>", "<h2>"], ["<h3>Top</h3>", "<h4>Next</h4>"]),
        ("| a |\n|---|\n| 1 |", [], ["<th>a</th>", "<td>1</td>"]),
    ],
)
def test_markdown_keeps_document_markup_only(
    markdown: str, absent: list[str], present: list[str]
) -> None:
    rendered = str(render_markdown(markdown))
    for text in absent:
        assert text not in rendered, rendered
    for text in present:
        assert text in rendered, rendered


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("a\nb\nc\n", "a\nB\nc\n"),
        ("", "one\ntwo\n"),
        ("one\ntwo\n", ""),
        ("\n".join(map(str, range(30))) + "\n", "\n".join(map(str, range(2, 33))) + "\n"),
        ("x\n" * 10 + "y\n" + "x\n" * 10, "x\n" * 10 + "z\n" + "x\n" * 10 + "w\n"),
    ],
)
def test_diff_hunks_match_a_unified_diff(old: str, new: str) -> None:
    """Same hunks, same line numbers as the text diff the store and the CLI print."""
    unified = store.diff_text(old, new, old_label="a", new_label="b").splitlines()
    expected_headers = [line for line in unified if line.startswith("@@")]
    expected_rows = [line for line in unified[2:] if not line.startswith("@@")]
    file = diff_file("f", old, new)
    assert [hunk.header for hunk in file.hunks] == expected_headers
    assert [row.sign + row.text for hunk in file.hunks for row in hunk.rows] == expected_rows
    for hunk in file.hunks:
        lefts = [pair.left.old_no or 0 for pair in hunk.pairs if pair.left]
        rights = [pair.right.new_no or 0 for pair in hunk.pairs if pair.right]
        assert lefts == sorted(lefts)
        assert rights == sorted(rights)
        assert len(hunk.pairs) >= max(len(lefts), len(rights))


def test_a_lost_final_newline_is_noted_not_hidden() -> None:
    file = diff_file("f", "a\nb\n", "a\nb")
    assert file.hunks == []
    assert file.note == "The new version ends without a newline."
    assert diff_files({"f": "same\n"}, {"f": "same\n"}) == []
