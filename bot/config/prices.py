"""The control config's `prices:`: model -> {input, output, cache_read, cache_write} in USD
per million tokens, over the table the runner package ships (runner/pricing/prices.toml).

A row may set only some prices of a model the shipped table knows (its id, or a dated id of
it, found by the shipped table's own rule); a model the table does not know needs all four.
What a run is sent: the shipped rows of its CLI's vendor with the overrides over them, plus
every override — a few dozen rows, so each stored spec stays small while any model the CLI
may turn to (Claude Code's subagents run on another model than the main one) is priced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from bot.config.problems import ConfigProblem, YamlDoc
from runner.contract import AgentCli, ModelPrice
from runner.pricing import VENDOR_OF_CLI, find_price, match_model, shipped_prices

PRICE_FIELDS = ("input", "output", "cache_read", "cache_write")
ModelName = Annotated[
    str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/\[\]-]*$")
]
Rate = Annotated[float, Field(ge=0, le=10_000)]


class PriceRow(BaseModel):
    """One model's prices as the control config writes them; any may be left out of a row
    that changes a shipped model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Rate | None = None
    output: Rate | None = None
    cache_read: Rate | None = None
    cache_write: Rate | None = None


Prices = dict[ModelName, PriceRow]


def shipped_table() -> dict[str, ModelPrice]:
    """Every shipped row, whatever its vendor."""
    return {model: price for rows in shipped_prices().values() for model, price in rows.items()}


def check_prices(prices: Prices, doc: YamlDoc) -> list[ConfigProblem]:
    """A row for a model the shipped table does not know must give all four prices."""
    shipped = shipped_table()
    problems = []
    for model, row in prices.items():
        missing = [name for name in PRICE_FIELDS if getattr(row, name) is None]
        if not missing or match_model(shipped, model) is not None:
            continue
        problems.append(
            doc.problem(
                ("prices", model),
                f"{model!r} is not in the shipped price table, so it needs all of "
                f"{', '.join(PRICE_FIELDS)} (USD per million tokens); missing: "
                f"{', '.join(missing)}",
            )
        )
    return problems


def resolved(prices: Prices) -> dict[str, ModelPrice]:
    """The overrides as whole prices: each row over the shipped price it changes."""
    shipped = shipped_table()
    out: dict[str, ModelPrice] = {}
    for model, row in prices.items():
        given = row.model_dump(exclude_none=True)
        base = find_price(shipped, model)
        if base is not None:
            out[model] = base.model_copy(update=given)
        elif len(given) == len(PRICE_FIELDS):
            out[model] = ModelPrice.model_validate(given)
        # An incomplete unknown row is a problem check_prices reports; the config fails.
    return out


def prices_for(
    cli: AgentCli, model: str | None, overrides: Mapping[str, ModelPrice]
) -> dict[str, ModelPrice]:
    """The prices a run of this CLI and model is given (see the module's docstring)."""
    vendor = VENDOR_OF_CLI[cli]
    table = dict(shipped_prices().get(vendor, {})) if vendor else {}
    table.update(overrides)
    if model and find_price(table, model) is None:
        # A `command` agent, or a model of another vendor behind a compatible API.
        shipped = shipped_table()
        name = match_model(shipped, model)
        if name is not None:
            table[name] = shipped[name]
    return table
