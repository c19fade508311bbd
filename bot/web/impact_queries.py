"""A harness's numbers per version for /harnesses/{name}/impact, read from the summaries that
triggers keep as runs are written (harness_store.models: `harness_impact`, and
`harness_impact_prs` for the median time to PR), never from the runs themselves."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class VersionImpact:
    """What one harness version's runs did; time to PR in hours."""

    version: int
    runs: int
    ended: int  # finished or lost
    succeeded: int
    tickets: int
    cost_usd: float
    to_pr_p50: float | None
    prs: int

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.ended if self.ended else None

    @property
    def attempts_per_ticket(self) -> float | None:
        return self.runs / self.tickets if self.tickets else None

    @property
    def cost_per_run(self) -> float | None:
        return self.cost_usd / self.runs if self.runs else None


# The median needs every PR's time: a version's runs that opened one, at most a few
# thousand index entries (ix_harness_impact_prs_harness_version_id covers them).
_IMPACT = """
SELECT hv.version, i.runs, i.ended, i.succeeded, i.tickets, i.cost_usd, p.to_pr, p.prs
FROM harness_versions hv
JOIN harness_impact i ON i.harness_version_id = hv.id
CROSS JOIN LATERAL (
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY to_pr_seconds) AS to_pr, count(*) AS prs
    FROM harness_impact_prs WHERE harness_version_id = hv.id
) p
WHERE hv.name = :name AND i.runs > 0
ORDER BY hv.version"""


async def harness_impact(session: AsyncSession, name: str) -> list[VersionImpact]:
    """Per version of harness `name` that runs were given: runs, success, attempts per
    ticket, cost, and time to PR — from a run's queueing to the ticket's move to
    `in_review` that the run caused (the activity row carries the run's id)."""
    rows = await session.execute(text(_IMPACT), {"name": name})
    return [
        VersionImpact(
            int(version),
            int(runs),
            int(ended),
            int(succeeded),
            int(tickets),
            float(cost),
            None if to_pr is None else float(to_pr) / 3600,
            int(prs),
        )
        for version, runs, ended, succeeded, tickets, cost, to_pr, prs in rows
    ]
