"""What applying a delivery to the mirror did."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Applied:
    """What applying a delivery did: tickets it touched, repositories to backfill after commit."""

    tickets: set[int] = field(default_factory=set)
    backfill: set[int] = field(default_factory=set)

    def __iter__(self) -> Any:  # iterating yields the touched tickets, the common question
        return iter(sorted(self.tickets))
