"""Issue #17, item 1 on Linear: the agent's question is a comment and a label on the Linear
issue, a comment by someone the control config does not map is not an answer, and the
mapped writer's plain comment resumes the work (tests/engine/test_tracker_lifecycle.py's
world: signed Linear webhooks in, the recording fake Linear API out, real runners)."""

from __future__ import annotations

from typing import TypeVar

from bot.config.states import QUESTION_LABEL, State
from tests.conftest import OpenWorld
from tests.engine.test_tracker_lifecycle import (  # the fixture is used by its name
    CONTROL,
    Trackers,
    reach,
    row_of,
    settled,
    trackers,
)
from tests.support.git_repos import show

__all__ = ["trackers"]
T = TypeVar("T")


async def test_a_linear_ticket_asks_and_the_mapped_writers_reply_resumes_it(
    open_world: OpenWorld, trackers: Trackers
) -> None:
    linear = trackers.linear
    linear.add_team("ENG", "Engineering")
    async with open_world(control_extra=CONTROL, trackers=trackers.clients) as w:
        issue = linear.add_issue("ENG", "Colour the button", "[ask] Colour it.", labels=["openase"])
        await trackers.linear_event(linear.issue_webhook(issue["id"], action="create"))

        async def waiting() -> bool | None:
            row = await row_of(w, "ENG-1")
            return True if row is not None and row.needs_input else None

        await w.until(waiting, what="the agent's question")

        def labels() -> set[str]:
            return {linear.labels[i]["name"] for i in issue["labelIds"]}

        await settled(w, lambda: QUESTION_LABEL in labels(), "the needs-input label")
        await settled(
            w,
            lambda: any("The agent has a question" in c["body"] for c in linear.comments),
            "the question on the Linear issue",
        )
        # Our own comments come back as webhooks: never an answer.
        for echo in list(linear.outbound):
            await trackers.linear_event(echo)
        stranger = linear.add_user("Mallory", "mallory@example.com")
        guess = linear.add_comment(issue["id"], "Green!", user=stranger)
        await trackers.linear_event(linear.comment_webhook(guess["id"]))
        answer = linear.add_comment(issue["id"], "Blue, the brand colour.")  # Ada: a writer
        await trackers.linear_event(linear.comment_webhook(answer["id"]))

        row = await reach(w, "ENG-1", State.IN_REVIEW, within=90)
        answered = show(w.remote, str(row.head_sha), "ANSWER")
        assert "Blue, the brand colour." in answered
        assert "Green!" not in answered
        await settled(w, lambda: QUESTION_LABEL not in labels(), "the label gone")
