"""The one module of `bot` that imports the concrete adapters (DESIGN §2 import rules)."""

from __future__ import annotations

from adapters.base import WebhookParser
from adapters.github.client import CachedPage, GitHubApp, Page, graphql_url
from adapters.github.events import parse as parse_github
from adapters.github.verify import SIGNATURE_HEADER as GITHUB_SIGNATURE_HEADER
from adapters.github.verify import signature_valid as github_signature_valid

# The GitHub App client and its paging types, for the GitHub-only parts of bot (backfill).
__all__ = [
    "GITHUB_SIGNATURE_HEADER",
    "CachedPage",
    "GitHubApp",
    "Page",
    "github_signature_valid",
    "graphql_url",
    "parser_for",
]


def parser_for(source: str) -> WebhookParser:
    """The webhook parser of a tracker, by the `source` a delivery was stored under."""
    parsers: dict[str, WebhookParser] = {"github": parse_github}
    try:
        return parsers[source]
    except KeyError:
        raise LookupError(f"no webhook parser for source {source!r}") from None
