"""The status comment's text."""

from __future__ import annotations

from bot.config.states import State
from bot.engine.status_comment import MAX_BODY, StatusView, render


def test_a_ticket_in_progress_shows_everything_known() -> None:
    body = render(
        StatusView(
            state=State.IN_PROGRESS,
            workflow="coder",
            attempt=2,
            max_attempts=3,
            machine="build-1",
            harness="coder@3",
            cost_usd=1.234,
            run_url="https://openase.example.test/runs/r-9",
            last_failure="tests: 2 failed\nFAILED test_a.py::test_x",
        )
    )
    assert body.startswith("**OpenASE** · 🛠️ The agent is working on it.")
    assert "| Attempt | 2 of 3 |" in body
    assert "| Machine | `build-1` |" in body
    assert "| Harness | `coder@3` |" in body
    assert "| Cost so far | $1.23 |" in body
    assert "[follow the agent](https://openase.example.test/runs/r-9)" in body
    assert "<summary>Last failure</summary>" in body
    assert "FAILED test_a.py::test_x" in body


def test_custom_stages_holds_and_blockers() -> None:
    body = render(StatusView(state="design", held=True, waiting_for=("acme/api#12",)))
    assert "In stage `design`" in body
    assert "On hold" in body
    assert "Waiting for acme/api#12 to close." in body
    assert "| |" not in body  # no table without rows


def test_failure_output_cannot_break_out_of_its_code_block() -> None:
    body = render(StatusView(state=State.TODO, last_failure="```\n</details>\n@everyone ``` x"))
    fence = body.split("<summary>Last failure</summary>\n\n")[1].split("\n")[0]
    assert fence == "````"
    assert body.rstrip().endswith("````\n\n</details>")


def test_a_huge_failure_keeps_its_tail_and_the_body_fits() -> None:
    failure = "\n".join(f"line {n}" for n in range(200_000))
    body = render(StatusView(state=State.TODO, last_failure=failure))
    assert len(body) < MAX_BODY
    assert "line 199999" in body
    assert "earlier output omitted" in body
    assert "line 0\n" not in body
