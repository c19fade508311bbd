"""The price table shipped with the package (`prices.toml`, vendor -> model -> price), and
the one rule for finding a model's row in any table: the exact id, else the longest known id
the name starts with, cut at "-", "@" or ":" and not followed by a short number.

The suffix rule is what lets dated and platform ids (`claude-sonnet-4-5-20250929`,
`claude-sonnet-4-5@20250929`, `o3-2025-04-16`, `gemini-2.5-flash-preview-09-2025`) find
their model, while a newer version of a family (`claude-sonnet-4-7`, `gpt-5.9`) does not
borrow an older model's price: a price not known is said, never guessed.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

from runner.contract import AgentCli, ModelPrice

TABLE = Path(__file__).with_name("prices.toml")

# Whose models each CLI calls: the shipped rows a run of it is given.
VENDOR_OF_CLI: dict[AgentCli, str | None] = {
    "claude_code": "anthropic",
    "codex": "openai",
    "gemini": "google",
    "command": None,  # any: only its configured model's row
}

_CUT = "-@:"
_WORD = re.compile(r"[A-Za-z0-9]*")


@cache
def shipped_prices() -> dict[str, dict[str, ModelPrice]]:
    """vendor -> model id -> price, as `prices.toml` ships them."""
    raw = tomllib.loads(TABLE.read_text(encoding="utf-8"))
    return {
        vendor: {model: ModelPrice.model_validate(row) for model, row in rows.items()}
        for vendor, rows in raw.items()
    }


def match_model(known: Iterable[str], model: str) -> str | None:
    """The id in `known` that prices `model`, or None (see the module's rule)."""
    names = set(known)
    if model in names:
        return model
    fits = [name for name in names if model.startswith(name) and _is_suffix(model[len(name) :])]
    return max(fits, key=len, default=None)


def find_price(prices: Mapping[str, ModelPrice], model: str | None) -> ModelPrice | None:
    """`model`'s price in `prices`, or None for no model or an unknown one."""
    if not model:
        return None
    name = match_model(prices, model)
    return None if name is None else prices[name]


def _is_suffix(rest: str) -> bool:
    """A date, a platform version or a label after a known id; not a newer version number."""
    if len(rest) < 2 or rest[0] not in _CUT:
        return False
    first = _WORD.match(rest, 1)
    word = first.group() if first else ""
    return not (word.isdigit() and len(word) <= 2)
