"""Ticket pages by their human key — /tickets/acme/widgets/5, /tickets/linear/ENG-12 — with
the numeric id still working, and bad or unknown keys answered with a clear page."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import pytest

from bot.deps import Deps
from bot.tables.mirror import Comment, Ticket
from bot.web.ticket_keys import ticket_path
from harness_store.db import transaction
from tests.support.board import add_repo, add_ticket


async def test_a_ticket_page_is_found_by_its_key_and_by_its_id(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    await add_repo(deps, 1, "Acme/Widgets")
    github = await add_ticket(deps, "Acme/Widgets#5", repo_id=1, title="Add <login>")
    linear = await add_ticket(deps, "ENG-12", source="linear", title="Linear one")
    jira = await add_ticket(deps, "PROJ-7", source="jira", title="Jira one")

    for path, title in [
        ("/tickets/Acme/Widgets/5", "Add &lt;login&gt;"),
        ("/tickets/acme/widgets/5", "Add &lt;login&gt;"),  # GitHub names ignore case
        (f"/tickets/{github}", "Add &lt;login&gt;"),
        ("/tickets/linear/ENG-12", "Linear one"),
        ("/tickets/linear/eng-12", "Linear one"),
        (f"/tickets/{linear}", "Linear one"),
        ("/tickets/jira/PROJ-7", "Jira one"),
        (f"/tickets/{jira}", "Jira one"),
    ]:
        page = await client.get(path)
        assert page.status_code == 200, path
        assert title in page.text, path


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/tickets/acme/widgets/6", 404, "There is no ticket acme/widgets#6."),
        ("/tickets/acme/widgets/x", 400, "The issue number must be a positive integer."),
        ("/tickets/acme/wid%20gets/5", 400, "is not a repository (owner/name)."),
        ("/tickets/linear/ENG-99", 404, "There is no Linear ticket ENG-99."),
        ("/tickets/jira/not-a-key!", 400, "is not an issue key (like ENG-12)."),
        ("/tickets/gitlab/ENG-12", 404, "There are no &#39;gitlab&#39; tickets"),
    ],
)
async def test_bad_or_unknown_keys_get_a_clear_page(
    client: httpx.AsyncClient, deps: Deps, path: str, status: int, says: str
) -> None:
    await add_repo(deps, 1, "acme/widgets")
    await add_ticket(deps, "acme/widgets#5", repo_id=1)
    page = await client.get(path)
    assert page.status_code == status
    assert says in page.text


@pytest.mark.parametrize(
    ("source", "key", "path"),
    [
        ("github", "acme/widgets#5", "/tickets/acme/widgets/5"),
        ("linear", "ENG-12", "/tickets/linear/ENG-12"),
        ("jira", "PROJ-7", "/tickets/jira/PROJ-7"),
        ("github", "not a key", "/tickets/9"),  # anything unexpected: the id
        ("linear", "../../etc", "/tickets/9"),
    ],
)
def test_ticket_paths_use_the_key_when_it_is_one(source: str, key: str, path: str) -> None:
    assert ticket_path(source, key, 9) == path


async def test_the_ticket_page_shows_its_description_labels_and_comments_sanitised(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    await add_repo(deps, 1, "acme/widgets")
    ticket = await add_ticket(deps, "acme/widgets#5", repo_id=1)
    hostile = '**Bold** <script>alert("x")</script> <img src=x onerror=alert(1)>'
    async with transaction(deps.sessions) as session:
        row = await session.get(Ticket, ticket)
        assert row is not None
        row.body, row.labels = hostile, ["openase", "<b>bug</b>"]
        session.add_all(
            Comment(
                source="github",
                external_id=str(n),
                ticket_id=ticket,
                author_login=f"user{n}",
                body=f"comment {n} [link](javascript:alert(1))",
                external_created_at=datetime(2026, 3, 1, 9, n, tzinfo=UTC),
                deleted=n == 3,
            )
            for n in range(1, 5)
        )

    html = (await client.get("/tickets/acme/widgets/5")).text

    description = html[html.index('id="description"') : html.index('id="comments"')]
    assert "<strong>Bold</strong>" in description
    assert "<script" not in html.split("<body>", 1)[1].replace('<script src="/static/', "")
    assert "onerror" not in description
    assert '<span class="label">&lt;b&gt;bug&lt;/b&gt;</span>' in description
    comments = html[html.index('id="comments"') : html.index('id="checks"')]
    assert [f"user{n}" for n in (1, 2, 4)] == re.findall(r"<strong>(user\d)</strong>", comments)
    assert "comment 3" not in comments  # deleted on the tracker
    assert 'href="javascript:' not in comments  # left as text, never a link
