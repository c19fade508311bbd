"""The one module of `bot` that imports the concrete adapters (DESIGN §2 import rules)."""

from __future__ import annotations

from adapters.base import WebhookParser
from adapters.github.events import parse as parse_github


def parser_for(source: str) -> WebhookParser:
    """The webhook parser of a tracker, by the `source` a delivery was stored under."""
    parsers: dict[str, WebhookParser] = {"github": parse_github}
    try:
        return parsers[source]
    except KeyError:
        raise LookupError(f"no webhook parser for source {source!r}") from None
