"""Tickets by their human keys: a page path from a ticket's key (`ticket_path`), the keys
a path may carry, and ids as paths and forms write them."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from starlette.requests import Request

from bot.api.request import MAX_ID
from bot.web.pages import bad_request


def http_url(value: str | None) -> str | None:
    """`value` when it is an http(s) URL: a tracker's link must not become `javascript:`."""
    if not value:
        return None
    try:
        scheme = urlsplit(value).scheme
    except ValueError:
        return None
    return value if scheme in ("http", "https") else None


_GITHUB_KEY = re.compile(r"([A-Za-z0-9_.-]{1,100})/([A-Za-z0-9_.-]{1,100})#([0-9]{1,10})")
TRACKER_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,49}-[0-9]{1,10}")


def ticket_path(source: str, key: str, ticket_id: int) -> str:
    """A ticket's page by its human key: /tickets/acme/widgets/5 for GitHub's
    "acme/widgets#5", /tickets/linear/ENG-12 for Linear's and Jira's; the id otherwise."""
    github = _GITHUB_KEY.fullmatch(key)
    if source == "github" and github is not None:
        owner, name, number = github.groups()
        return f"/tickets/{owner}/{name}/{number}"
    if source in ("linear", "jira") and TRACKER_KEY.fullmatch(key):
        return f"/tickets/{source}/{key}"
    return f"/tickets/{ticket_id}"


def positive_id(request: Request, name: str, value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,19}", value) or not 1 <= int(value) <= MAX_ID:
        raise bad_request(request, f"{name} must be a positive integer.")
    return int(value)
