"""`/tickets/list`: full-text search over title and body, filters, sorts and keyset pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update

from bot.deps import Deps
from bot.tables.mirror import Ticket
from bot.tables.workflow import Run, RunState
from bot.web.ticket_list import PAGE_SIZE
from harness_store.db import transaction
from tests.support.board import add_repo, add_ticket

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def keys(html: str) -> list[str]:
    table = html[html.index("<tbody>") : html.index("</tbody>")] if "<tbody>" in html else ""
    return re.findall(r'<td><a href="[^"]+">([^<]+)</a></td>', table)


async def seed(deps: Deps) -> dict[str, int]:
    await add_repo(deps, 1, "acme/api")
    await add_repo(deps, 2, "acme/web")
    ids = {
        "login": await add_ticket(deps, "acme/api#1", repo_id=1, title="Add a login page"),
        "oauth": await add_ticket(deps, "acme/api#2", repo_id=1, title="OAuth", state="in_review"),
        "web": await add_ticket(deps, "acme/web#3", repo_id=2, title="Dark mode", state=None),
        "eng": await add_ticket(deps, "ENG-4", source="linear", title="Billing export"),
    }
    async with transaction(deps.sessions) as session:
        for n, ticket in enumerate(ids.values()):
            await session.execute(
                update(Ticket)
                .where(Ticket.id == ticket)
                .values(
                    updated_at=T0 + timedelta(minutes=n),
                    labels=["openase"] if n else ["bug"],
                    body="Sign in with the login API" if ticket == ids["oauth"] else "",
                )
            )
        session.add(
            Run(
                id="r1",
                ticket_id=ids["eng"],
                workflow="coder",
                attempt=1,
                state=RunState.FINISHED,
                machine="gpu-1",
                spec={},
            )
        )
    return ids


async def test_search_and_filters_narrow_the_list(client: httpx.AsyncClient, deps: Deps) -> None:
    await seed(deps)

    every = (await client.get("/tickets/list")).text
    assert keys(every) == ["ENG-4", "acme/web#3", "acme/api#2", "acme/api#1"]  # updated first
    assert "Dark mode" in every  # mirrored but in no workflow: listed too

    for query, expected in [
        ("q=login", ["acme/api#2", "acme/api#1"]),  # the title of #1, the body of #2
        ("q=login+-oauth", ["acme/api#1"]),
        ("q=%22login+page%22", ["acme/api#1"]),
        ("repo=ACME/web", ["acme/web#3"]),
        ("source=linear", ["ENG-4"]),
        ("state=in_review", ["acme/api#2"]),
        ("label=bug", ["acme/api#1"]),
        ("workflow=coder&source=github", ["acme/api#2", "acme/api#1"]),
        ("machine=gpu-1", ["ENG-4"]),
        ("sort=oldest", ["acme/api#1", "acme/api#2", "acme/web#3", "ENG-4"]),
        ("q=nothing-like-it", []),
    ]:
        html = (await client.get(f"/tickets/list?{query}")).text
        assert keys(html) == expected, query


async def test_pages_follow_a_keyset(client: httpx.AsyncClient, deps: Deps) -> None:
    await add_repo(deps, 1, "acme/api")
    for number in range(1, PAGE_SIZE + 8):
        await add_ticket(deps, f"acme/api#{number}", repo_id=1, title=f"Ticket {number}")
    seen: list[str] = []
    for sort in ("updated", "newest", "oldest"):
        seen.clear()
        url: str | None = f"/tickets/list?sort={sort}"
        while url is not None:
            html = (await client.get(url)).text
            seen += keys(html)
            found = re.search(r'<a href="([^"]+)" rel="next">Next page</a>', html)
            url = found.group(1).replace("&amp;", "&") if found else None
        assert len(seen) == PAGE_SIZE + 7, sort
        assert len(set(seen)) == len(seen), sort  # nothing twice across pages


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("repo=not-a-repo", "repo must be OWNER/NAME"),
        ("source=gitlab", "source must be one of github, linear, jira"),
        ("state=In+Review", "state must be a state like in_review"),
        ("sort=random", "sort must be one of updated, newest, oldest"),
        ("after=yesterday", "after must be a page link&#39;s cursor"),
        ("q=" + "x" * 201, "q must be at most 200 characters"),
    ],
)
async def test_bad_parameters_are_a_400_page(
    client: httpx.AsyncClient, query: str, says: str
) -> None:
    answer = await client.get(f"/tickets/list?{query}")
    assert answer.status_code == 400
    assert says in answer.text


async def test_hostile_titles_stay_text(client: httpx.AsyncClient, deps: Deps) -> None:
    await add_ticket(deps, "ENG-9", source="linear", title='<script>alert("x")</script>')
    html = (await client.get("/tickets/list")).text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert '<script>alert("x")' not in html
