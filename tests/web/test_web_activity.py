"""`/activity`: the activity log, failed deliveries and failed effects as one feed, newest
first, filtered, searched and keyset-paged, escaped; and its live stream."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta

import httpx
from sqlalchemy import update

from bot.deps import Deps
from bot.tables.mirror import Delivery, DeliveryStatus, Ticket
from bot.tables.workflow import Activity, EffectStatus, OutboxEffect
from bot.web.activity_page import PAGE_SIZE, ActivityFilters, new_entries
from bot.web.board import database_now
from harness_store.db import transaction
from tests.support.board import HOSTILE, add_repo, add_ticket
from tests.support.run_streams import T0, Received


def entry_ids(html: str) -> list[str]:
    return re.findall(r'<li class="entry" id="entry-([a-z]+-\d+)"', html)


async def seed(deps: Deps) -> dict[str, str]:
    """One entry of each kind, a minute apart (state oldest, the failed effect newest)."""
    await add_repo(deps, 1, "acme/api")
    await add_repo(deps, 2, "acme/web")
    api = await add_ticket(deps, "acme/api#1", repo_id=1)
    web = await add_ticket(deps, "acme/web#1", repo_id=2)
    ids: dict[str, str] = {}
    async with transaction(deps.sessions) as session:
        await session.execute(update(Ticket).where(Ticket.id == api).values(author_login="alice"))
        rows = [
            ("state", api, None, "todo → in_progress: claimed"),
            ("run", api, "run-1", "gates failed: openase/tests"),
            ("effect", web, None, "comment failed: 502"),
            ("command", web, "run-2", "/ask by @bob"),
        ]
        for minute, (kind, ticket, run, message) in enumerate(rows):
            row = Activity(
                ticket_id=ticket,
                run_id=run,
                kind=kind,
                message=message,
                data={},
                at=T0 + timedelta(minutes=minute),
            )
            session.add(row)
            await session.flush()
            ids[kind] = f"activity-{row.id}"
        delivery = Delivery(
            source="github",
            delivery_id="d-1",
            event="issues",
            action="opened",
            repository="acme/web",
            payload={"sender": {"login": "carol"}},
            status=DeliveryStatus.FAILED,
            error=HOSTILE,
            received_at=T0 + timedelta(minutes=4),
        )
        effect = OutboxEffect(
            key="label:repo",
            kind="label",
            payload={},
            status=EffectStatus.FAILED,
            last_error="no permission",
            created_at=T0 + timedelta(minutes=5),
        )
        session.add_all([delivery, effect])
        await session.flush()
        ids["delivery"] = f"delivery-{delivery.id}"
        ids["outbox"] = f"outbox-{effect.id}"
    ids["api"], ids["web"] = str(api), str(web)
    return ids


async def test_every_kind_is_listed_newest_first(client: httpx.AsyncClient, deps: Deps) -> None:
    ids = await seed(deps)
    page = await client.get("/activity")
    assert page.status_code == 200
    order = ["outbox", "delivery", "command", "effect", "run", "state"]
    assert entry_ids(page.text) == [ids[name] for name in order]
    html = page.text
    assert f'<a href="/tickets/{ids["api"]}">acme/api#1</a>' in html
    assert '<a href="/runs/run-1">run run-1</a>' in html
    assert "github issues.opened delivery failed" in html
    assert "label failed: no permission" in html
    # Hostile text is escaped; the live script is a file (CSP).
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(" in html
    assert '<a href="/activity">Activity</a>' in html  # in the main navigation
    assert re.search(r'data-events="/activity/events\?since=2\d{3}-[^"]+"', html)
    assert '<script src="/static/activity.js" defer></script>' in html


async def test_filters_and_search_narrow_the_feed(client: httpx.AsyncClient, deps: Deps) -> None:
    ids = await seed(deps)

    async def listed(**params: str) -> list[str]:
        page = await client.get("/activity", params=params)
        assert page.status_code == 200, page.text
        return entry_ids(page.text)

    assert await listed(type="run") == [ids["run"]]
    assert await listed(type="delivery") == [ids["delivery"]]
    assert await listed(type="effect") == [ids["outbox"], ids["effect"]]
    assert await listed(repo="ACME/web") == [ids["delivery"], ids["command"], ids["effect"]]
    assert await listed(workflow="coder") == [ids[n] for n in ("command", "effect", "run", "state")]
    assert await listed(workflow="reviewer") == []
    assert await listed(person="alice") == [ids["run"], ids["state"]]
    assert await listed(person="@bob") == [ids["command"]]
    assert await listed(person="carol") == [ids["delivery"]]
    assert await listed(q="OPENASE/tests") == [ids["run"]]
    assert await listed(q="in_progress") == [ids["state"]]
    assert await listed(q="100%") == []  # a wildcard is text
    assert await listed(q="failed", repo="acme/web") == [ids["delivery"], ids["effect"]]
    narrowed = await client.get("/activity", params={"q": "failed", "type": "run"})
    assert 'value="failed"' in narrowed.text
    assert '<option value="run" selected>' in narrowed.text


async def test_pages_follow_a_keyset(client: httpx.AsyncClient, deps: Deps) -> None:
    ids = await seed(deps)
    async with transaction(deps.sessions) as session:
        # Older entries, all at one moment: the keyset breaks the tie by id.
        older = [
            Activity(ticket_id=int(ids["api"]), kind="state", message=f"old {n}", data={}, at=T0)
            for n in range(PAGE_SIZE - 5)
        ]
        session.add_all(older)
        await session.flush()
    newest = [ids[n] for n in ("outbox", "delivery", "command", "effect", "run")]
    at_t0 = sorted(
        [ids["state"], *(f"activity-{row.id}" for row in older)],
        key=lambda key: -int(key.split("-")[1]),
    )

    first = await client.get("/activity", params={"type": "", "q": ""})
    seen = entry_ids(first.text)
    assert len(seen) == PAGE_SIZE
    found = re.search(r'<a href="([^"]+)" rel="next">Older entries</a>', first.text)
    assert found
    url = found.group(1).replace("&amp;", "&")
    assert "before=" in url
    assert "offset" not in url
    second = await client.get(url)
    assert second.status_code == 200
    seen += entry_ids(second.text)
    assert 'rel="next"' not in second.text
    assert "data-live-activity" not in second.text  # only the newest page is live
    assert '<a href="/activity">Newest entries</a>' in second.text
    assert seen == newest + at_t0


async def test_bad_parameters_are_a_400_page(client: httpx.AsyncClient) -> None:
    for query in (
        "type=gossip",
        "repo=not-a-repo",
        "workflow=../etc",
        "person=<b>",
        "q=" + "x" * 201,
        "before=yesterday",
        "before=2026-03-01T09:00:00|activity|1",
        "before=2026-03-01T09:00:00+00:00|nowhere|1",
    ):
        page = await client.get(f"/activity?{query}")
        assert page.status_code == 400, query
        assert "Bad request" in page.text
    assert (await client.get("/activity/events?type=x")).status_code == 400
    assert (await client.get("/activity/events?since=yesterday")).status_code == 400


async def test_the_stream_sends_new_entries(deps: Deps) -> None:
    await add_repo(deps, 1, "acme/api")
    ticket = await add_ticket(deps, "acme/api#1", repo_id=1)
    async with deps.sessions() as session:
        since = await database_now(session)
    received = Received()
    stream = new_entries(deps, ActivityFilters(type="run"), since, poll_seconds=0.05)
    task = asyncio.create_task(received.read(stream))
    try:
        await asyncio.sleep(0.2)
        async with transaction(deps.sessions) as session:
            session.add(Activity(ticket_id=ticket, kind="state", message="skipped", data={}))
            session.add(
                Activity(ticket_id=ticket, run_id="r-9", kind="run", message=HOSTILE, data={})
            )
        await received.wait_for(1)
        await asyncio.sleep(0.3)  # and only once
    finally:
        task.cancel()
    entries = [json.loads(m["data"]) for m in received.messages if m.get("event") == "entry"]
    assert len(entries) == 1
    entry = entries[0]
    assert entry["kind"] == "run"
    assert entry["message"] == HOSTILE  # JSON for activity.js, which sets it as text
    assert entry["ticket_url"] == f"/tickets/{ticket}"
    assert entry["run_url"] == "/runs/r-9"
    assert entry["repo"] == "acme/api"
