"""Workflow states, their status labels, and who may move a ticket where (DESIGN §4).

The engine keeps exactly one status label on a ticket. Humans steer by moving that label
(or the Projects column); the states the engine alone can vouch for (a run in progress,
a merge under way) are not theirs to set: the engine puts its own label back.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping


class State(enum.StrEnum):
    BACKLOG = "backlog"
    TODO = "todo"
    IN_PROGRESS = "in_progress"
    IN_REVIEW = "in_review"
    MERGING = "merging"
    DONE = "done"
    CANCELED = "canceled"
    FAILED = "failed"  # attempts exhausted; a human decides what next


LABEL_PREFIX = "openase/"
# Carried while the agent waits for a person's answer (bot.engine.questions), beside the
# state's status label.
QUESTION_LABEL = f"{LABEL_PREFIX}needs-input"
QUESTION_COLOR = "d876e3"

TERMINAL: frozenset[str] = frozenset({State.DONE, State.CANCELED})
# Only the engine enters these: each stands for something it started (a run, a merge).
ENGINE_ONLY: frozenset[str] = frozenset({State.IN_PROGRESS, State.MERGING})

# Colours GitHub shows for the labels the bot creates (hex without '#').
LABEL_COLORS: Mapping[str, str] = {
    State.BACKLOG: "c5def5",
    State.TODO: "0e8a16",
    State.IN_PROGRESS: "fbca04",
    State.IN_REVIEW: "1d76db",
    State.MERGING: "5319e7",
    State.DONE: "0e8a16",
    State.CANCELED: "cccccc",
    State.FAILED: "b60205",
}
STAGE_COLOR = "bfdadc"


def default_label(state: str) -> str:
    """`in_progress` -> `openase/in-progress`; custom stages the same way."""
    return LABEL_PREFIX + state.replace("_", "-")


def status_labels(
    stages: Iterable[str] = (), overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Every state's status label: canonical states, then custom stages; config overrides."""
    labels = {state.value: default_label(state.value) for state in State}
    labels.update({stage: default_label(stage) for stage in stages})
    labels.update(overrides or {})
    return labels


def state_of_label(label: str, labels: Mapping[str, str]) -> str | None:
    """The state a status label stands for (case-insensitive, as GitHub compares labels)."""
    wanted = label.casefold()
    for state, name in labels.items():
        if name.casefold() == wanted:
            return state
    return None


def status_labels_on(ticket_labels: Iterable[str], labels: Mapping[str, str]) -> list[str]:
    """The status labels a ticket carries (normally one; a human may have added another)."""
    known = {name.casefold() for name in labels.values()}
    return [label for label in ticket_labels if label.casefold() in known]


def human_may_set(state: str) -> bool:
    """Whether a human moving the label (or the column) to `state` is obeyed."""
    return state not in ENGINE_ONLY


def label_color(state: str) -> str:
    return LABEL_COLORS.get(state, STAGE_COLOR)
