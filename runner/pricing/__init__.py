"""Model prices: the table shipped as data (prices.toml), how a model name finds its row,
and the meter that prices a run's usage turn by turn."""

from runner.pricing.meter import Meter
from runner.pricing.table import VENDOR_OF_CLI, find_price, match_model, shipped_prices

__all__ = ["VENDOR_OF_CLI", "Meter", "find_price", "match_model", "shipped_prices"]
