"""`/activity?q=`: a substring search reads a window of the log a page (no index serves an
ILIKE), says how far back it looked, and links on to the entries older than the window."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
from sqlalchemy import insert

from bot.deps import Deps
from bot.tables.workflow import Activity
from bot.web.activity_page import SEARCH_WINDOW
from harness_store.db import transaction
from tests.support.board import add_repo, add_ticket
from tests.support.run_streams import T0


async def test_a_search_reads_a_window_and_links_on_past_it(
    deps: Deps, client: httpx.AsyncClient
) -> None:
    await add_repo(deps, 1, "acme/api")
    ticket = await add_ticket(deps, "acme/api#1", repo_id=1)
    # The one match is older than a whole window of other entries.
    rows = [
        {
            "ticket_id": ticket,
            "kind": "run",
            "message": "the needle" if n == 0 else f"step {n}",
            "data": {},
            "at": T0 + timedelta(seconds=n),
        }
        for n in range(SEARCH_WINDOW + 5)
    ]
    async with transaction(deps.sessions) as session:
        await session.execute(insert(Activity), rows)

    first = await client.get("/activity", params={"q": "needle"})
    assert first.status_code == 200
    assert "the needle" not in first.text
    assert f"Searched the {SEARCH_WINDOW:,} entries back to" in first.text
    older = re.search(r'<a href="([^"]+)" rel="next">Older entries</a>', first.text)
    assert older is not None

    second = await client.get(older.group(1).replace("&amp;", "&"))
    assert second.status_code == 200
    assert "the needle" in second.text
    assert "Searched the" not in second.text  # fewer than a window were left
    assert 'rel="next"' not in second.text

    unfiltered = await client.get("/activity")
    assert "Searched the" not in unfiltered.text
