"""The editor's Preview (a draft rendered with a sample ticket, numbered, diffed against the
current version; nothing published) and the message every version must carry."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from bot.deps import Deps
from harness_store import store
from harness_store.db import transaction
from harness_store.models import HarnessVersion, SkillVersion
from tests.conftest import AppWith
from tests.support.signing_in import TOKEN, csrf_of, sign_in

pytestmark = pytest.mark.asyncio

V1 = "# Coder\n\nFix {{ ticket.key }}.\nKeep it small.\n"
SKILL = "---\nname: lint\ndescription: Lint the code.\n---\n\n# lint\n"


@pytest.fixture
async def web(app_with: AppWith, deps: Deps) -> AsyncIterator[httpx.AsyncClient]:
    """Signed in as admin, with coder@1 and lint@1 published."""
    async with transaction(deps.sessions) as session:
        await store.publish_harness(session, "coder", V1, author="ann", message="first")
        await store.publish_skill(session, "lint", {"SKILL.md": SKILL}, author="ann")
    async with app_with(admin_token=SecretStr(TOKEN)) as http:
        assert (await sign_in(http)).status_code == 303
        yield http


async def _current(deps: Deps) -> HarnessVersion:
    async with deps.sessions() as session:
        return await store.require_current(session, HarnessVersion, "coder")


async def test_preview_renders_numbers_and_diffs_the_draft_and_publishes_nothing(
    web: httpx.AsyncClient, deps: Deps
) -> None:
    token = csrf_of((await web.get("/harnesses/coder/new")).text)
    draft = V1.replace("Keep it small.", "Keep it <small>.") + "Attempt {{ attempt }}.\n"

    shown = await web.post(
        "/harnesses/coder/new",
        data={"csrf": token, "base": "1", "content": draft, "message": "", "intent": "preview"},
    )

    assert shown.status_code == 200
    page = shown.text
    assert "Preview: what publishing would change" in page
    assert "Changes against version 1" in page
    assert "+2 \u22121" in page  # one line changed, one added
    # Rendered with the sample ticket, escaped like everything else on the page.
    assert "Fix octo/hello#42.\nKeep it &lt;small&gt;.\nAttempt 2." in page
    assert '<ol class="numbered"' in page
    assert page.count("<li><code>") == len(draft.splitlines())
    assert html.escape(draft, quote=False) in page  # the draft stays in the editor
    assert (await _current(deps)).version == 1  # nothing published


async def test_preview_names_the_line_a_template_error_is_on(web: httpx.AsyncClient) -> None:
    token = csrf_of((await web.get("/harnesses/coder/new")).text)
    broken = "# Coder\n\nFix {{ ticket.key }}.\n{{ ticket.body }}\n"

    shown = await web.post(
        "/harnesses/coder/new",
        data={"csrf": token, "base": "1", "content": broken, "intent": "preview"},
    )

    assert shown.status_code == 200
    assert "The template does not render (line 4)" in shown.text
    assert "ticket.body" in shown.text
    assert '<li class="error-line" aria-current="true"><code>{{ ticket.body }}</code></li>' in (
        shown.text
    )


async def test_preview_of_an_unchanged_draft_says_so(web: httpx.AsyncClient) -> None:
    token = csrf_of((await web.get("/harnesses/coder/new")).text)
    shown = await web.post(
        "/harnesses/coder/new",
        data={"csrf": token, "base": "1", "content": V1, "intent": "preview"},
    )
    assert "No differences from version 1: publishing would change nothing." in shown.text


async def test_a_skill_preview_diffs_its_files(web: httpx.AsyncClient, deps: Deps) -> None:
    token = csrf_of((await web.get("/skills/lint/new")).text)
    shown = await web.post(
        "/skills/lint/new",
        data={
            "csrf": token,
            "base": "1",
            "path-0": "SKILL.md",
            "content-0": SKILL,
            "path-1": "check.sh",
            "content-1": "ruff check .\n",
            "intent": "preview",
        },
    )
    assert shown.status_code == 200
    assert 'check.sh <span class="muted">added, +1 \u22120</span>' in shown.text
    async with deps.sessions() as session:
        assert (await store.require_current(session, SkillVersion, "lint")).version == 1


@pytest.mark.parametrize("message", ["", "   "])
async def test_publishing_needs_a_message(web: httpx.AsyncClient, deps: Deps, message: str) -> None:
    token = csrf_of((await web.get("/harnesses/coder/new")).text)
    refused = await web.post(
        "/harnesses/coder/new",
        data={"csrf": token, "base": "1", "content": V1 + "More.\n", "message": message},
    )
    assert refused.status_code == 422
    assert "Write a message: what this version changes and why" in refused.text
    assert "More." in refused.text  # the draft is kept
    assert (await _current(deps)).version == 1

    named = await web.post(
        "/harnesses/-/new",
        data={"csrf": token, "name": "triage", "content": "# Triage\n", "message": message},
    )
    assert named.status_code == 422
    assert "Write a message" in named.text


async def test_preview_needs_the_csrf_token(web: httpx.AsyncClient, deps: Deps) -> None:
    refused = await web.post(
        "/harnesses/coder/new",
        data={"csrf": "forged", "base": "1", "content": "# x\n", "intent": "preview"},
    )
    assert refused.status_code in (400, 403)
    assert (await _current(deps)).version == 1
