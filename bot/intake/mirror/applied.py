"""What applying a delivery to the mirror did."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Applied:
    """What applying a delivery did: tickets it touched, repositories to backfill after commit."""

    tickets: set[int] = field(default_factory=set)
    backfill: set[int] = field(default_factory=set)

    def __iter__(self) -> Iterator[int]:  # the touched tickets, the common question
        return iter(sorted(self.tickets))
