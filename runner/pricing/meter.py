"""What a run has cost so far: each model turn's usage priced at its model's price.

A parser reports a turn with `turn(key, usage, model)`; a later report of the same turn (the
same key) replaces it, since CLIs repeat a message's usage on each of its lines or report
running totals. A model with no known price is said once — as a LOG event when the run has
a dollar budget, which then cannot see those tokens, and always in `note`, which the run's
result carries — and never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping

from runner.contract import AgentConfig, AgentEvent, EventKind, ModelPrice, Usage
from runner.pricing.table import find_price


class Meter:
    def __init__(
        self,
        prices: Mapping[str, ModelPrice] | None = None,
        model: str | None = None,
        *,
        budget_usd: float | None = None,
    ) -> None:
        self.prices = dict(prices or {})
        self.model = model  # the model of a turn that names none (the configured one)
        self.budget_usd = budget_usd
        self._turns: dict[str, tuple[str | None, Usage]] = {}
        self._unpriced: list[str] = []

    @classmethod
    def for_agent(cls, config: AgentConfig, budget_usd: float | None = None) -> Meter:
        return cls(config.prices, config.model, budget_usd=budget_usd)

    def turn(self, key: str, usage: Usage, model: str | None = None) -> list[AgentEvent]:
        """Record a turn's usage; the LOG event saying a model cannot be priced, first time."""
        model = model or self.model
        self._turns[key] = (model, usage)
        if usage.total_tokens == 0 or find_price(self.prices, model) is not None:
            return []
        name = model or "(not named)"
        if name in self._unpriced:
            return []
        self._unpriced.append(name)
        if self.budget_usd is None:
            return []
        return [
            AgentEvent(kind=EventKind.LOG, text=self.note, is_error=True, data={"cost": "unpriced"})
        ]

    @property
    def cost_usd(self) -> float | None:
        """The priced turns' cost; None while no turn could be priced."""
        costs = [
            price.cost(usage)
            for model, usage in self._turns.values()
            if (price := find_price(self.prices, model)) is not None
        ]
        return sum(costs) if costs else None

    @property
    def note(self) -> str | None:
        """Why the cost leaves tokens out, or None when every turn was priced."""
        if not self._unpriced:
            return None
        names = ", ".join(repr(name) for name in self._unpriced)
        what = "no model named" if self._unpriced == ["(not named)"] else f"no price for {names}"
        budget = (
            f"; the ${self.budget_usd:g} budget cannot count those tokens (max_tokens or the "
            "CLI's own total still apply)"
            if self.budget_usd is not None
            else ""
        )
        return (
            f"cost not priced: {what} (add it under `prices:` in the control config, or set "
            f"the provider's model){budget}"
        )
