"""The metrics dashboard's charts: each chart's table rows and, drawn only when its image is
asked for, its SVG. The page (bot/web/dashboard_page.py) shows every table and links each
chart's image; an image's request runs the one query its chart is drawn from."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from bot.web.charts import dollars, draw_bar, draw_line, number, percent
from bot.web.metrics_queries import (
    DayRuns,
    DoneTickets,
    Filters,
    done_tickets,
    gate_failures,
    runs_in_range,
)

Row = tuple[str, tuple[str, ...]]


@dataclass(frozen=True)
class Figure:
    """A chart's numbers as a table, and how to draw them."""

    key: str
    title: str
    columns: tuple[str, ...]
    rows: list[Row]
    draw: Callable[[], str]  # the SVG (pygal: milliseconds, so only for the image)


def done_figures(days: list[DoneTickets]) -> list[Figure]:
    """Tickets done, lead times, first passes and cost per ticket, per day done."""
    labels = [day.day.isoformat() for day in days if day.day is not None]
    lead = [(d.to_pr_p50, d.to_pr_p90, d.to_merge_p50, d.to_merge_p90) for d in days]
    return [
        Figure(
            "done",
            "Tickets done per day",
            ("Day", "Done"),
            [(label, (str(d.done),)) for label, d in zip(labels, days, strict=True)],
            partial(draw_bar, "Tickets done per day", labels, {"done": [d.done for d in days]}),
        ),
        Figure(
            "lead-time",
            "Lead time (hours): label → PR and label → merge",
            ("Day merged", "→ PR p50", "→ PR p90", "→ merge p50", "→ merge p90"),
            [
                (label, tuple(number(v) for v in times))
                for label, times in zip(labels, lead, strict=True)
            ],
            partial(
                draw_line,
                "Lead time (hours)",
                labels,
                {
                    "label → PR p50": [t[0] for t in lead],
                    "label → PR p90": [t[1] for t in lead],
                    "label → merge p50": [t[2] for t in lead],
                    "label → merge p90": [t[3] for t in lead],
                },
            ),
        ),
        Figure(
            "first-pass",
            "First-pass rate (done with no failed gate and no change request)",
            ("Day", "Done", "First pass", "Rate"),
            [
                (label, (str(d.done), str(d.first_pass), percent(d.first_pass_rate)))
                for label, d in zip(labels, days, strict=True)
            ],
            partial(
                draw_line,
                "First-pass rate (%)",
                labels,
                {"first pass %": [_pct(d.first_pass_rate) for d in days]},
            ),
        ),
        Figure(
            "cost-per-ticket",
            "Cost per ticket done (USD, every run of the ticket)",
            ("Day", "Done", "Cost", "Per ticket"),
            [
                (label, (str(d.done), dollars(d.cost_usd), dollars(d.cost_per_ticket)))
                for label, d in zip(labels, days, strict=True)
            ],
            partial(
                draw_line,
                "Cost per ticket done (USD)",
                labels,
                {"cost per ticket": [d.cost_per_ticket for d in days]},
            ),
        ),
    ]


def run_figures(per_day: list[DayRuns], outcomes: list[tuple[str, int]]) -> list[Figure]:
    """Runs by outcome, and runs and their cost per day queued."""
    labels = [day.day.isoformat() for day in per_day]
    return [
        Figure(
            "outcomes",
            "Runs by outcome",
            ("Outcome", "Runs"),
            [(name, (str(count),)) for name, count in outcomes],
            partial(
                draw_bar,
                "Runs by outcome",
                [name for name, _ in outcomes],
                {"runs": [count for _, count in outcomes]},
            ),
        ),
        Figure(
            "cost-per-day",
            "Cost per day (USD)",
            ("Day", "Runs", "Cost"),
            [
                (label, (str(d.runs), dollars(d.cost_usd)))
                for label, d in zip(labels, per_day, strict=True)
            ],
            partial(
                draw_bar, "Cost per day (USD)", labels, {"cost": [d.cost_usd for d in per_day]}
            ),
        ),
    ]


def gate_figures(gates: list[tuple[str, int]]) -> list[Figure]:
    """Blocking gate failures per hook."""
    return [
        Figure(
            "gates",
            "Gate failures per hook",
            ("Hook", "Failures"),
            [(name, (str(count),)) for name, count in gates],
            partial(
                draw_bar,
                "Gate failures per hook",
                [name for name, _ in gates],
                {"failures": [count for _, count in gates]},
            ),
        ),
    ]


async def _done(session: AsyncSession, filters: Filters) -> list[Figure]:
    days, _ = await done_tickets(session, filters)
    return done_figures(days)


async def _runs(session: AsyncSession, filters: Filters) -> list[Figure]:
    return run_figures(*await runs_in_range(session, filters))


async def _gates(session: AsyncSession, filters: Filters) -> list[Figure]:
    return gate_figures(await gate_failures(session, filters))


Source = Callable[[AsyncSession, Filters], Awaitable[list[Figure]]]

# Each chart, in the page's order, with the query it is drawn from.
SOURCES: dict[str, Source] = {
    "done": _done,
    "lead-time": _done,
    "first-pass": _done,
    "gates": _gates,
    "outcomes": _runs,
    "cost-per-day": _runs,
    "cost-per-ticket": _done,
}


def _pct(rate: float | None) -> float | None:
    return None if rate is None else rate * 100
