"""Status labels and who may move a ticket where."""

from __future__ import annotations

import pytest

from bot.config.states import (
    State,
    default_label,
    human_may_set,
    label_color,
    state_of_label,
    status_labels,
    status_labels_on,
)


def test_every_canonical_state_has_a_status_label() -> None:
    labels = status_labels()
    assert labels == {
        "backlog": "openase/backlog",
        "todo": "openase/todo",
        "in_progress": "openase/in-progress",
        "in_review": "openase/in-review",
        "merging": "openase/merging",
        "done": "openase/done",
        "canceled": "openase/canceled",
        "failed": "openase/failed",
    }


def test_stages_and_overrides() -> None:
    labels = status_labels(["design", "backend_tests"], {"in_review": "needs review"})
    assert labels["design"] == "openase/design"
    assert labels["backend_tests"] == "openase/backend-tests"
    assert labels["in_review"] == "needs review"
    assert state_of_label("Needs Review", labels) == "in_review"
    assert state_of_label("OPENASE/DESIGN", labels) == "design"
    assert state_of_label("bug", labels) is None


def test_status_labels_on_a_ticket() -> None:
    labels = status_labels()
    on = status_labels_on(["bug", "openase/todo", "OpenASE/Done", "openase"], labels)
    assert on == ["openase/todo", "OpenASE/Done"]


@pytest.mark.parametrize(
    ("state", "allowed"),
    [
        (State.TODO, True),
        (State.BACKLOG, True),
        (State.DONE, True),
        (State.CANCELED, True),
        (State.IN_REVIEW, True),
        (State.IN_PROGRESS, False),
        (State.MERGING, False),
        ("design", True),
    ],
)
def test_humans_may_not_claim_what_only_the_engine_can_vouch_for(state: str, allowed: bool) -> None:
    assert human_may_set(state) is allowed


def test_label_colors() -> None:
    assert label_color(State.FAILED) == "b60205"
    assert label_color("design") == "bfdadc"
    assert default_label("in_review") == "openase/in-review"
