"""How long each part of a recurring piece of work took, for its log line when it was slow
(the engine's tick, the run events' recorder): which part to look at, without a profiler."""

from __future__ import annotations

import time


class Laps:
    """Laps of one pass: `lap(part)` ends the part that began at the previous lap."""

    def __init__(self) -> None:
        self.began = self.last = time.monotonic()
        self.seconds: dict[str, float] = {}

    def lap(self, part: str) -> None:
        now = time.monotonic()
        self.seconds[part] = self.seconds.get(part, 0.0) + now - self.last
        self.last = now

    @property
    def total(self) -> float:
        return self.last - self.began

    def slowest(self, count: int = 3) -> str:
        """The `count` slowest parts, slowest first: "sweep 420 ms, due 80 ms"."""
        ranked = sorted(self.seconds.items(), key=lambda item: -item[1])[:count]
        return ", ".join(f"{part} {1000 * seconds:.0f} ms" for part, seconds in ranked)
