"""The one status comment per ticket (DESIGN §5): what it says, rendered from the engine's
view of the ticket. `bot.effects.github` adds the hidden marker and edits it in place."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.config.states import State
from bot.engine.untrusted import fence

_HEADLINES: dict[str, str] = {
    State.BACKLOG: "📋 In the backlog: not picked up yet.",
    State.TODO: "⏳ Queued: waiting for a machine.",
    State.IN_PROGRESS: "🛠️ The agent is working on it.",
    State.IN_REVIEW: "👀 Ready for review.",
    State.MERGING: "🔀 Approved and green: merging.",
    State.DONE: "✅ Done.",
    State.CANCELED: "🚫 Canceled.",
    State.FAILED: "❌ Failed: every attempt is used up. A human decides what next (`/retry`).",
}
QUESTION_SHOWN = 4000  # characters of the question (the runner caps it at as many)
ANSWER_HOW = (
    "Reply with a comment to answer (someone with write access), or `/answer` and the "
    "answer; the agent's session then goes on."
)
_MENTION = re.compile(r"@(?=[A-Za-z0-9])")
# GitHub renders at most 65536 characters of a comment; the failure gets what is left.
MAX_BODY = 60_000
FAILURE_TAIL = 6_000


@dataclass(frozen=True)
class StatusView:
    state: str
    workflow: str | None = None
    attempt: int = 0
    max_attempts: int | None = None
    machine: str | None = None
    harness: str | None = None  # "coder@3"
    cost_usd: float = 0.0
    budget_usd: float | None = None  # the ticket's budget (limits.ticket_budget_usd)
    run_url: str | None = None  # the live run page
    pull_request_url: str | None = None
    last_failure: str | None = None
    held: bool = False
    waiting_for: tuple[str, ...] = ()  # "acme/api#12": open blockers
    note: str | None = None  # e.g. why no machine took it
    checks: tuple[tuple[str, str], ...] = ()  # (check name, "passed" | "failed"), last run
    question: str | None = None  # the agent's open question (it waits for the answer)
    extra: dict[str, str] = field(default_factory=dict)


def _tail(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[-limit:]
    newline = cut.find("\n")
    return "… (earlier output omitted)\n" + (cut[newline + 1 :] if newline >= 0 else cut)


def quoted(text: str) -> str:
    """The agent's words as a Markdown quote that pings no one (an agent steered by a
    ticket into mentioning strangers must not get to)."""
    safe = _MENTION.sub("@\u200b", text.strip())
    return "\n".join(f"> {line}" if line.strip() else ">" for line in safe.splitlines())


def render(view: StatusView) -> str:
    """Markdown for the status comment (without its marker)."""
    headline = _HEADLINES.get(view.state, f"➡️ In stage `{view.state}`.")
    if view.question is not None:
        headline = "❓ The agent asked a question and waits for the answer."
    lines = [f"**OpenASE** · {headline}"]
    if view.question is not None:
        lines += ["", quoted(view.question[:QUESTION_SHOWN]), "", ANSWER_HOW]
    if view.held:
        lines.append("")
        lines.append("⏸️ **On hold** (`/unhold` to continue).")
    if view.waiting_for:
        lines.append("")
        lines.append("Waiting for " + ", ".join(view.waiting_for) + " to close.")
    if view.note:
        lines.append("")
        lines.append(view.note)
    rows = []
    if view.workflow:
        rows.append(("Workflow", f"`{view.workflow}`"))
    if view.attempt:
        limit = f" of {view.max_attempts}" if view.max_attempts else ""
        rows.append(("Attempt", f"{view.attempt}{limit}"))
    if view.machine:
        rows.append(("Machine", f"`{view.machine}`"))
    if view.harness:
        rows.append(("Harness", f"`{view.harness}`"))
    if view.cost_usd or view.budget_usd:
        budget = f" of its ${view.budget_usd:,.2f} budget" if view.budget_usd else ""
        rows.append(("Cost so far", f"${view.cost_usd:,.2f}{budget}"))
    if view.pull_request_url:
        rows.append(("Pull request", view.pull_request_url))
    if view.checks:
        marks = {"passed": "✅", "failed": "❌"}
        rows.append(
            ("Checks", " · ".join(f"{marks.get(how, '•')} `{name}`" for name, how in view.checks))
        )
    if view.run_url:
        rows.append(("Live run", f"[follow the agent]({view.run_url})"))
    rows.extend(view.extra.items())
    if rows:
        lines += ["", "| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    body = "\n".join(lines)
    if view.last_failure:
        room = max(0, min(FAILURE_TAIL, MAX_BODY - len(body) - 200))
        failure = _tail(view.last_failure.strip(), room)
        mark = fence(failure)
        body += (
            "\n\n<details><summary>Last failure</summary>\n\n"
            f"{mark}\n{failure}\n{mark}\n\n</details>"
        )
    return body
