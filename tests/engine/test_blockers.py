"""Blocked tickets and the backoff between attempts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.deps import Deps
from bot.engine.blockers import BACKOFF_CAP, IssueRef, backoff, blockers, open_blockers
from bot.tables.mirror import Repository, Ticket

OWN = "acme/api"


@pytest.mark.parametrize(
    ("body", "refs"),
    [
        ("Blocked by #12", [("acme/api", 12)]),
        (
            "blocked by: #12, #13 and octo/lib#4",
            [("acme/api", 12), ("acme/api", 13), ("octo/lib", 4)],
        ),
        ("Depends on Octo/Lib#4.\nWaits for #9", [("octo/lib", 4), ("acme/api", 9)]),
        ("blocked by #12\r\nblocked by #12", [("acme/api", 12)]),
        ("```\nblocked by #1\n```\nnot blocked", []),
        ("~~~md\nblocked by #1\n~~~", []),
        ("see `blocked by #1` syntax", []),
        ("<!-- blocked by #1 -->", []),
        ("fixes #3; relates to #4", []),
        ("", []),
    ],
)
def test_blockers_named_in_a_body(body: str, refs: list[tuple[str, int]]) -> None:
    assert blockers(body, OWN) == [IssueRef(name, number) for name, number in refs]


async def test_only_open_mirrored_issues_block(deps: Deps) -> None:
    async with deps.sessions() as session, session.begin():
        session.add(Repository(id=1, full_name="acme/api"))
        await session.flush()
        for number, state in ((12, "open"), (13, "closed")):
            session.add(
                Ticket(
                    source="github",
                    external_id=str(number),
                    key=f"acme/api#{number}",
                    number=number,
                    state=state,
                    repository_id=1,
                )
            )
    refs = [IssueRef("acme/api", 12), IssueRef("acme/api", 13), IssueRef("acme/api", 99)]
    async with deps.sessions() as session:
        assert await open_blockers(session, refs) == [IssueRef("acme/api", 12)]


def test_backoff_doubles_and_is_capped() -> None:
    base = timedelta(seconds=60)
    assert [backoff(n, base) for n in (1, 2, 3)] == [base, base * 2, base * 4]
    assert backoff(30, base) == BACKOFF_CAP
