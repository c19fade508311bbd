"""Every route of the web page, collected for bot.api.routes()."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bot.web import github_login
from bot.web.auth import login, login_form, logout


def web_routes() -> list[BaseRoute]:
    return [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/login/github", github_login.start, methods=["GET"]),
        Route("/login/github/callback", github_login.callback, methods=["GET"]),
        Mount(
            "/static", app=StaticFiles(directory=Path(__file__).parent / "static"), name="static"
        ),
    ]
