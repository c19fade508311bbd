"""Signing in to the web page with the admin token, as a browser's form does (its CSRF
token read off the page)."""

from __future__ import annotations

import re

import httpx

TOKEN = "admin-token-for-tests"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def sign_in(
    web: httpx.AsyncClient, token: str = TOKEN, next_path: str = "/x"
) -> httpx.Response:
    form = await web.get("/login")
    return await web.post(
        "/login", data={"csrf": csrf_of(form.text), "token": token, "next": next_path}
    )
