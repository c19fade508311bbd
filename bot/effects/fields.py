"""Reading an effect's payload, whose JSON the engine wrote into the outbox: a field of
the wrong shape refuses the effect (EffectRefused) rather than send GitHub something the
engine did not decide. And the text shapes GitHub takes: capped, with our hidden marker."""

from __future__ import annotations

import re
from typing import Any

from bot.effects.outbox import EffectRefused

Json = dict[str, Any]

_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


def repo_of(payload: Json) -> str:
    repo = text_of(payload, "repo")
    if not _REPO.match(repo):
        raise EffectRefused(f"payload field 'repo' is not OWNER/NAME: {repo!r}")
    return repo


def text_of(payload: Json, key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str):
        raise EffectRefused(f"payload field {key!r} must be a string")
    return value


def int_of(payload: Json, key: str) -> int:
    value = payload.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise EffectRefused(f"payload field {key!r} must be an integer")
    return value


def head(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 20] + "\n… (truncated)"


def tail(text: str, limit: int) -> str:
    """The end of an output: where the failure usually is."""
    return text if len(text) <= limit else "… (truncated)\n" + text[-(limit - 20) :]


def with_marker(body: str, marker: str, *, at_end: bool = False) -> str:
    if marker in body:
        return body
    return f"{body}\n\n{marker}" if at_end else f"{marker}\n{body}"
