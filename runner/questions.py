"""The agent's way to ask a person (issue 17): the run gives it a file, named in
`OPENASE_QUESTION_FILE` and in the built-in `ask-a-human` skill; an agent blocked on a
decision only a person can make writes its question there and stops. The runner then
reports the run as `needs_input` with the question instead of judging the work.

The file lives in the run's private HOME (the one place outside the worktree the agent
may write, in the sandbox too), so the question is never committed, and it is removed
before each run so an old question is never asked twice.
"""

from __future__ import annotations

from pathlib import Path

from runner.agents.base import Outcome
from runner.contract import QUESTION_LIMIT, RunStatus

_MARK = "\n[... the question was cut here]"


def question_file(home: Path) -> Path:
    return home / ".openase" / "question.md"


def prepare(path: Path) -> None:
    """An empty slate: the directory exists, no question from an earlier run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)


def read_question(path: Path) -> str | None:
    """The question the agent left, as text (undecodable bytes replaced), at most
    QUESTION_LIMIT characters; None when it asked nothing (no file, or only whitespace)."""
    try:
        if not path.is_file():
            return None
        with path.open("rb") as file:
            raw = file.read(QUESTION_LIMIT * 4 + 1)
    except OSError:
        return None
    text = raw.decode("utf-8", errors="replace").replace("\x00", "").strip()
    if not text:
        return None
    if len(text) > QUESTION_LIMIT:
        text = text[: QUESTION_LIMIT - len(_MARK)].rstrip() + _MARK
    return text


def with_question(outcome: Outcome, question: str | None) -> Outcome:
    """An agent that left a question and ended on its own (finished or gave up) waits for
    its answer; one stopped by a limit or a cancel keeps that outcome (its question may be
    half written, and the limit is what the person must hear about)."""
    if question is None or outcome.status not in (RunStatus.SUCCEEDED, RunStatus.AGENT_ERROR):
        return outcome
    return Outcome(
        RunStatus.NEEDS_INPUT,
        summary=outcome.summary,
        error="the agent asked a question and waits for the answer",
        error_class="needs_input",
        question=question,
    )
