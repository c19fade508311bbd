"""What one reconcile pass did for one source (GitHub, Linear or Jira)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SourceReport:
    """What one pass did for one source."""

    changes: int = 0  # items newer than the mirror, applied (and reacted to)
    scopes: int = 0  # repositories, teams or projects read to the end
    pages: int = 0  # asked for, 304s included
    unchanged: int = 0  # of those, answered 304
    cut_short: list[str] = field(default_factory=list)  # scopes a later pass goes on with
