"""`/machines` and `/machines/{name}`: what runners registered (written to Redis as a real
runner writes it), machines known only from runs greyed, hostile text escaped, and Pause,
Drain and Resume — admin only, CSRF-checked, stored in PostgreSQL, logged with who."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from bot.deps import Deps
from bot.tables.machines import MachineAction, MachineControl
from bot.tables.workflow import Run, RunState
from bot.web.session import SESSION_COOKIE, encode, new_session
from harness_store.db import transaction
from runner.contract import MACHINES_SET, SCHEMA_VERSION, machine_key
from runner.machine import MachineFacts
from tests.support.board import HOSTILE, add_run, add_ticket
from tests.support.browser import chromium, screenshot, served
from tests.support.signing_in import TOKEN, csrf_of, sign_in

GB = 1024**3
LAPTOP = {"width": 1366, "height": 800}
PHONE = {"width": 390, "height": 844}


async def register(deps: Deps, facts: MachineFacts) -> None:
    """What `openase runner` keeps fresh in Redis."""
    await deps.redis.hset(machine_key(facts.name), mapping=facts.to_redis())  # type: ignore[misc]  # redis-py's union return
    await deps.redis.sadd(MACHINES_SET, facts.name)  # type: ignore[misc]


def facts(name: str, **changes: object) -> MachineFacts:
    found = MachineFacts(
        name=name,
        labels=["linux", "gpu"],
        capacity=4,
        running=1,
        clis={"claude_code": "2.1.330", "command": "any"},
        disk_free_bytes=50 * GB,
        memory_available_bytes=8 * GB,
        hostname=f"{name}.example",
        sandbox="bubblewrap 0.8.0",
    )
    for key, value in changes.items():
        setattr(found, key, value)
    return found


def row_of(html: str, name: str) -> tuple[str, str]:
    """(online|offline, the row's HTML) of machine `name` on /machines."""
    for match in re.finditer(
        r'<tr class="(online|offline)" id="machine-\d+">(.*?)</tr>', html, re.S
    ):
        if f">{name}</a>" in match.group(2):
            return match.group(1), match.group(2)
    raise AssertionError(f"no row for {name}")


async def add_old_run(deps: Deps, run_id: str, ticket_id: int, machine: str) -> None:
    async with transaction(deps.sessions) as session:
        session.add(
            Run(
                id=run_id,
                ticket_id=ticket_id,
                workflow="coder",
                attempt=1,
                machine=machine,
                state=RunState.FINISHED,
                status="succeeded",
                spec={},
                queued_at=datetime(2026, 11, 30, 9, 0, tzinfo=UTC),
            )
        )


async def test_the_page_lists_live_and_offline_machines(web: httpx.AsyncClient, deps: Deps) -> None:
    await register(deps, facts("m1"))
    await register(
        deps,
        facts(
            "m2",
            heartbeat_at=time.time() - 120,
            sandbox="",
            sandbox_problem="bubblewrap (bwrap) is not on PATH: install it",
        ),
    )
    ticket = await add_ticket(deps, "acme/api#1")
    await add_run(deps, "r1", ticket)  # running on m1
    await add_old_run(deps, "r0", ticket, "old-box")

    assert (await web.get("/machines")).status_code == 303  # reads need a sign-in here
    await sign_in(web)
    page = await web.get("/machines")
    assert page.status_code == 200
    html = page.text
    assert '<a href="/machines">Machines</a>' in html  # in the main navigation
    assert "<caption" in html
    assert '<th scope="col">Heartbeat</th>' in html

    state, m1 = row_of(html, "m1")
    assert state == "online"
    for shown in (
        "gpu, linux",
        "<code>claude_code</code> 2.1.330",
        "1 of 4",
        '<a href="/runs/r1">r1</a>',
        "50.0 GB, 8.0 GB",
        f"contract {SCHEMA_VERSION}",
        "bubblewrap 0.8.0",
        "healthy",
        "s ago",
        "m1.example",
        ">active<",
    ):
        assert shown in m1, shown
    assert "Pause m1" in m1  # the admin's forms

    state, m2 = row_of(html, "m2")
    assert state == "offline"
    assert "last seen" in m2
    assert "cannot sandbox: bubblewrap (bwrap) is not on PATH: install it" in m2
    assert "no heartbeat for 120 s" in m2

    state, old = row_of(html, "old-box")
    assert state == "offline"
    assert "not registered" in old
    assert '<time datetime="2026-11-30T09:00:00+00:00">2026-11-30 09:00 UTC</time>' in old

    detail = await web.get("/machines/old-box")
    assert detail.status_code == 200
    assert '<a href="/runs/r0">r0</a>' in detail.text
    assert "acme/api#1" in detail.text
    assert "Nobody has paused" in detail.text


async def test_hostile_names_and_labels_are_escaped(web: httpx.AsyncClient, deps: Deps) -> None:
    name = '<b onmouseover="x">'
    await register(
        deps,
        facts(
            name,
            labels=[HOSTILE],
            clis={HOSTILE: HOSTILE},
            hostname=HOSTILE,
            sandbox="",
            sandbox_problem=HOSTILE,
        ),
    )
    await sign_in(web)
    for path in ("/machines", f"/machines/{quote(name, safe='')}"):
        page = await web.get(path)
        assert page.status_code == 200, path
        assert HOSTILE not in page.text
        assert name not in page.text
        assert "&lt;script&gt;" in page.text
        assert "&lt;b onmouseover=" in page.text


async def control(web: httpx.AsyncClient, name: str, action: str) -> httpx.Response:
    page = await web.get(f"/machines/{name}")
    return await web.post(f"/machines/{name}", data={"csrf": csrf_of(page.text), "action": action})


async def stored(deps: Deps) -> tuple[dict[str, tuple[str, str]], list[tuple[str, str, str]]]:
    async with deps.sessions() as session:
        controls = {
            row.name: (row.state, row.changed_by)
            for row in await session.scalars(select(MachineControl))
        }
        actions = [
            (row.machine, row.action, row.by)
            for row in await session.scalars(select(MachineAction).order_by(MachineAction.id))
        ]
    return controls, actions


async def test_the_admin_pauses_drains_and_resumes(web: httpx.AsyncClient, deps: Deps) -> None:
    await register(deps, facts("m1"))
    await sign_in(web)

    paused = await control(web, "m1", "pause")
    assert paused.status_code == 303
    assert paused.headers["location"] == "/machines/m1"
    assert await stored(deps) == ({"m1": ("paused", "admin")}, [("m1", "pause", "admin")])
    page = (await web.get("/machines/m1")).text
    assert "paused</strong>" in page
    assert "paused by admin" in page
    assert "Resume m1" in page
    assert "Pause m1" not in page

    assert (await control(web, "m1", "resume")).status_code == 303
    assert (await control(web, "m1", "drain")).status_code == 303
    controls, actions = await stored(deps)
    assert controls == {"m1": ("draining", "admin")}
    assert [action for _, action, _ in actions] == ["pause", "resume", "drain"]
    # Its heartbeat still counts a run: it stays draining.
    assert "draining</strong>" in (await web.get("/machines")).text

    # The run is over: the next look stores it as paused.
    await register(deps, facts("m1", running=0))
    _, row = row_of((await web.get("/machines")).text, "m1")
    assert "paused</strong>" in row
    controls, actions = await stored(deps)
    assert controls == {"m1": ("paused", "admin")}
    assert actions[-1] == ("m1", "drained", "admin")
    assert "drained (its runs over): now paused" in (await web.get("/machines/m1")).text

    assert (await control(web, "m1", "resume")).status_code == 303
    assert (await stored(deps))[0] == {"m1": ("active", "admin")}
    assert "resumed by admin" in (await web.get("/machines/m1")).text


async def test_only_the_admin_with_the_forms_token_may(web: httpx.AsyncClient, deps: Deps) -> None:
    await register(deps, facts("m1"))

    signed_out = await web.post("/machines/m1", data={"csrf": "x", "action": "pause"})
    assert signed_out.status_code == 303
    assert signed_out.headers["location"].startswith("/login?next=")

    web.cookies.set(SESSION_COOKIE, encode(deps.settings, new_session("octocat", "github")))
    page = await web.get("/machines/m1")
    assert page.status_code == 200
    assert "Pause m1" not in page.text  # no forms for a reader who may not use them
    refused = await web.post("/machines/m1", data={"csrf": csrf_of(page.text), "action": "pause"})
    assert refused.status_code == 403
    assert "Only the admin may pause, resume or drain a machine" in refused.text
    web.cookies.delete(SESSION_COOKIE)

    await sign_in(web)
    token = csrf_of((await web.get("/machines/m1")).text)
    for data, headers in [
        ({"action": "pause"}, {}),
        ({"csrf": "forged-token-of-some-length", "action": "pause"}, {}),
        ({"csrf": token, "action": "pause"}, {"Origin": "https://evil.example"}),
    ]:
        forged = await web.post("/machines/m1", data=data, headers=headers)
        assert forged.status_code == 403
        assert "security token is missing or stale" in forged.text
    bad = await web.post("/machines/m1", data={"csrf": token, "action": "reboot"})
    assert bad.status_code == 400
    assert await stored(deps) == ({}, [])


async def test_an_unknown_machine_is_a_404(web: httpx.AsyncClient, deps: Deps) -> None:
    await sign_in(web)
    page = await web.get("/machines/nope")
    assert page.status_code == 404
    assert "There is no machine named &#39;nope&#39;." in page.text
    token = csrf_of((await web.get("/machines")).text)
    refused = await web.post("/machines/nope", data={"csrf": token, "action": "pause"})
    assert refused.status_code == 404
    assert await stored(deps) == ({}, [])


async def test_a_machine_paused_while_offline_comes_back_paused(
    web: httpx.AsyncClient, deps: Deps
) -> None:
    ticket = await add_ticket(deps, "acme/api#1")
    await add_old_run(deps, "r0", ticket, "m1")  # known, not registered
    await sign_in(web)
    assert (await control(web, "m1", "pause")).status_code == 303
    await register(deps, facts("m1", running=0, heartbeat_at=time.time()))
    state, row = row_of((await web.get("/machines")).text, "m1")
    assert state == "online"
    assert "paused</strong>" in row
    assert (await stored(deps))[0] == {"m1": ("paused", "admin")}


async def test_the_page_fits_a_laptop_and_a_phone(
    deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a real browser, signed in as the admin: no sideways scrolling, and Pause works
    as a plain form."""
    monkeypatch.setattr(
        deps, "settings", deps.settings.model_copy(update={"admin_token": SecretStr(TOKEN)})
    )
    await register(deps, facts("build-1"))
    await register(
        deps,
        facts(
            "gpu-box-with-a-long-name",
            heartbeat_at=time.time() - 600,
            sandbox="",
            sandbox_problem="user namespaces are disabled (sysctl kernel.userns_clone=1)",
        ),
    )
    ticket = await add_ticket(deps, "acme/api#1")
    await add_old_run(deps, "t1-coder-0a1b2c3d", ticket, "build-1")
    async with chromium() as browser, served(deps) as url:
        for name, viewport in (("laptop", LAPTOP), ("phone", PHONE)):
            page = await browser.new_page(viewport=viewport)
            await page.goto(f"{url}/login?next=/machines")
            await page.get_by_label("Admin token").fill(TOKEN)
            await page.get_by_role("button", name="Sign in").click()
            await page.get_by_role("heading", name="Machines").wait_for()
            await screenshot(page, f"machines-{name}")
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= viewport["width"], f"{width}px wide on a {viewport['width']}px screen"
            await page.close()
        page = await browser.new_page(viewport=PHONE)
        await page.goto(f"{url}/login?next=/machines/build-1")
        await page.get_by_label("Admin token").fill(TOKEN)
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("button", name="Pause build-1").click()
        await page.get_by_role("button", name="Resume build-1").wait_for()
        await screenshot(page, "machine-paused-phone")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"]
    assert (await stored(deps))[0] == {"build-1": ("paused", "admin")}
