"""Browser tests' harness: the real app on a real HTTP server on 127.0.0.1, and Debian's
chromium driven by Playwright. Screenshots go to tests/artifacts/screenshots (kept by CI
as artifacts, ignored by git).

Without chromium (`apt-get install chromium`) or the playwright package the tests skip and
say which is missing; nothing else does.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette

from bot.deps import Deps
from bot.processes.app import create_app

SCREENSHOTS = Path(__file__).parents[1] / "artifacts" / "screenshots"
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def chromium_path() -> str | None:
    for candidate in (shutil.which("chromium"), *CHROMIUM_PATHS):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@asynccontextmanager
async def served(deps: Deps) -> AsyncIterator[str]:
    """The app (with `deps.settings`) on 127.0.0.1; its base URL."""
    app = create_app(deps.settings, database_url="unused", redis_url="unused", deps=deps)
    async with serving(app) as url:
        yield url


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """Any ASGI app (ours, or a page playing GitHub's) on 127.0.0.1; its base URL."""
    # Live pages keep their event streams open: shutting down must not wait for them.
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        listener.close()


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A headless chromium browser (a Playwright `Browser`), or the test skips."""
    path = chromium_path()
    if path is None:
        pytest.skip("browser tests need Debian's chromium (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("browser tests need the playwright package (make sync installs it)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=path, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            await browser.close()


async def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target = SCREENSHOTS / f"{name}.png"
    # A full-page capture waits for a frame; under a loaded 2-core CI machine chromium's
    # compositor can take longer than the page's 10 s default for actions.
    await page.screenshot(path=str(target), full_page=True, timeout=45_000)
    return target
