"""Dollar budgets, as the engine keeps them (issue #17, item 4).

A run's own budget (`limits.budget_usd`) is enforced by its runner, which stops the agent
at most one model turn over it; when a run ends so, the `budget_exceeded` notification
goes out (`run_ended`). A ticket's budget (`limits.ticket_budget_usd`, the workflow's within
its provider's cap) counts what all its runs cost — every attempt and every relay stage,
as `ticket_states.cost_usd` sums them — and is checked before each run is dispatched
(`refuse_if_spent`): once spent, no further attempt starts.

The ticket then fails rather than being held, as a CI system's quota would fail the job:
a held ticket would start again on `/unhold` and spend past the budget at once, while a
failed one shows in every list of failed work, tells the channels (`ticket_failed` and
`budget_exceeded`), and says once, in one comment, what was spent against what budget and
how to go on — raise the budget, then `/retry`.
"""

from __future__ import annotations

from bot.config.control import Provider, ticket_budget
from bot.config.repo import RepoConfig
from bot.config.states import State
from bot.config.workflow import Workflow
from bot.engine.context import Decided, Engine, Followups, load
from bot.engine.decision import Decision
from runner.contract import RunResult, RunStatus

BUDGET_KEY = "limits.ticket_budget_usd"


def spent_text(spent: float, budget: float) -> str:
    return f"${spent:,.2f} of its ${budget:,.2f} budget"


async def refuse_if_spent(
    engine: Engine,
    ticket_id: int,
    config: RepoConfig,
    workflow: Workflow,
    provider: Provider,
    *,
    spent: float,
    not_pickup: frozenset[str],
) -> Decided | None:
    """Fail the ticket instead of dispatching its next run when what it has spent (`spent`,
    as dispatch read it; read again under the row's lock) has reached its budget
    (`Decided("over_budget")`); None when it may run."""
    budget = ticket_budget(workflow, provider)
    if budget is None or spent < budget:
        return None
    followups = Followups()
    async with engine.deps.sessions() as session, session.begin():
        loaded = await load(session, ticket_id)  # its state row locked: one worker decides
        row = loaded.state if loaded is not None else None
        if loaded is None or row is None or row.gates_only:
            return None  # a gates-only run starts no agent: it costs nothing
        spent = row.cost_usd or 0.0
        if spent < budget:
            return None
        if row.state in not_pickup:
            return Decided("over_budget", followups)  # another worker just decided it
        decision = Decision(session, engine, loaded, config, followups)
        why = f"the ticket has spent {spent_text(spent, budget)}"
        await decision.transition(
            State.FAILED,
            reason=f"{why} (`{BUDGET_KEY}` of the {workflow.name} workflow); no further run",
            run_id=None,
            last_failure=f"Stopped: {why}.",
            next_attempt_at=None,
            waiting=None,
        )
        await decision.comment(
            key=f"comment:{ticket_id}:budget:{row.version}",
            body=(
                f"💸 **OpenASE stopped this ticket:** it has spent {spent_text(spent, budget)} "
                f"(`{BUDGET_KEY}` of the `{workflow.name}` workflow) across its runs, so no "
                "further run starts.\n\n"
                f"To go on, raise `{BUDGET_KEY}` in `.github/openase.yml` (a provider's "
                "`limits.ticket_budget_usd` in the control config caps it), then comment "
                "`/retry`."
            ),
        )
        await decision.notify("budget_exceeded", f"{why}; no further run starts")
    return Decided("over_budget", followups)


async def run_ended(decision: Decision, result: RunResult | None) -> None:
    """A run its runner stopped at its own budget tells the channels `budget_exceeded`."""
    if result is None or result.status is not RunStatus.OVER_BUDGET:
        return
    await decision.notify("budget_exceeded", f"run {result.run_id} stopped: {result.error}")
