"""How an agent process's end becomes the run's `Outcome`: a sandbox limit it hit, an API it
gave up on, its own exit (the CLI's parser classifies it), or a limit the runner enforced."""

from __future__ import annotations

from runner.agents.base import Outcome, StreamParser
from runner.contract import Limits, RunStatus
from runner.process import ProcessOutcome, StopReason

_STOPPED = {
    StopReason.TIMEOUT: (RunStatus.TIMEOUT, "wall-time limit of {wall:g} s reached"),
    StopReason.STALLED: (RunStatus.STALLED, "no output for {stall:g} s"),
    StopReason.OVER_BUDGET: (RunStatus.OVER_BUDGET, "budget spent: {spent}"),
    StopReason.CANCELED: (RunStatus.CANCELED, "{cancel}"),
}


def judge(
    process: ProcessOutcome,
    parser: StreamParser,
    limits: Limits,
    *,
    limit_hit: str | None,
    canceled: bool,
    cancel_reason: str,
    cancel_class: str,
) -> Outcome:
    """The outcome of an agent process that has ended, for whatever reason."""
    if limit_hit is not None and process.stop_reason is StopReason.EXITED:
        outcome = Outcome(
            RunStatus.AGENT_ERROR,
            summary=parser.state.final_text,
            error=f"the agent hit the sandbox's {limit_hit}",
            error_class="sandbox_limit",
        )
    elif parser.state.gave_up is not None and not canceled:
        outcome = Outcome(
            RunStatus.API_ERROR,
            summary=parser.state.final_text,
            error=parser.state.gave_up,
            error_class="api_unreachable",
        )
    elif process.stop_reason is StopReason.EXITED:
        code = process.exit_code
        if code is None or code < 0:
            signal_name = f"signal {-code}" if code is not None else "an unknown cause"
            outcome = Outcome(
                RunStatus.AGENT_ERROR,
                summary=parser.state.final_text,
                error=f"the agent was killed by {signal_name}",
                error_class="killed",
            )
        else:
            outcome = parser.finish(code, process.stderr_tail)
    else:
        status, template = _STOPPED[process.stop_reason]
        spent = _spent(parser, limits)
        outcome = Outcome(
            status,
            summary=parser.state.final_text,
            error=template.format(
                wall=limits.wall_seconds,
                stall=limits.stall_seconds,
                spent=spent,
                cancel=cancel_reason,
            ),
            error_class=(cancel_class if status is RunStatus.CANCELED else status.value),
        )
    return outcome


def _spent(parser: StreamParser, limits: Limits) -> str:
    """What a run stopped over budget had spent, against the limit it reached: dollars when
    the budget is in dollars and the usage could be priced, else tokens."""
    state = parser.state
    cost, budget = state.cost_usd, limits.budget_usd
    if budget is not None and cost is not None and cost >= budget:
        return f"${cost:.4f} of the ${budget:g} budget"
    tokens = state.usage.total_tokens
    if limits.max_tokens is not None and tokens >= limits.max_tokens:
        return f"{tokens} tokens of the {limits.max_tokens} allowed"
    return f"${cost:.4f}" if cost is not None else f"{tokens} tokens"
