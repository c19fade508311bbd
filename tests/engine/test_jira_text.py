"""The bot's Markdown as Jira wiki markup: the status comment as bot.engine.status_comment
renders it, and replies to commands (which quote the command)."""

from __future__ import annotations

import pytest

from bot.config.states import State
from bot.engine.commands.parse import quote
from bot.engine.jira_text import to_wiki
from bot.engine.status_comment import StatusView, render

FAILURE = """\
FAILED tests/test_widget.py::test_size - assert `size` == 3
| not | a table |
> not a quote
**not bold**
```python
print("a fence inside the output")
```
2 failed, 40 passed"""


def test_the_status_comment_with_checks_links_and_a_failure() -> None:
    view = StatusView(
        state=State.IN_PROGRESS,
        workflow="coder",
        attempt=2,
        max_attempts=3,
        machine="gpu-1",
        harness="coder@3",
        cost_usd=1.5,
        pull_request_url="https://github.com/acme/api/pull/9",
        checks=(("tests", "failed"), ("lint", "passed")),
        run_url="https://openase.example/runs/12",
        last_failure=FAILURE,
    )

    assert to_wiki(render(view)) == (
        "*OpenASE* · 🛠️ The agent is working on it.\n"
        "\n"
        "|Workflow|{{coder}}|\n"
        "|Attempt|2 of 3|\n"
        "|Machine|{{gpu-1}}|\n"
        "|Harness|{{coder@3}}|\n"
        "|Cost so far|$1.50|\n"
        "|Pull request|https://github.com/acme/api/pull/9|\n"
        "|Checks|❌ {{tests}} · ✅ {{lint}}|\n"
        "|Live run|[follow the agent|https://openase.example/runs/12]|\n"
        "\n"
        "*Last failure*\n"
        "\n"
        "{noformat}\n" + FAILURE + "\n{noformat}\n"  # `</details>` has no wiki equivalent
    )


def test_a_failure_is_kept_verbatim_whatever_fence_it_needed() -> None:
    # The renderer fences output containing ``` with four backticks; a line of three inside
    # must not close it.
    wiki = to_wiki(render(StatusView(state=State.TODO, last_failure=FAILURE)))
    inside = wiki.split("{noformat}\n", 1)[1].rsplit("\n{noformat}", 1)[0]
    assert inside == FAILURE
    assert wiki.count("{noformat}") == 2
    assert "`" not in wiki.replace(FAILURE, "")


@pytest.mark.parametrize("state", [*State, "deploying"])
def test_no_markdown_is_left_in_any_status_comment(state: str) -> None:
    view = StatusView(
        state=state,
        workflow="coder",
        attempt=1,
        held=True,
        waiting_for=("acme/api#12",),
        note="No machine with label `gpu` is online.",
        pull_request_url="https://github.com/acme/api/pull/9",
        checks=(("tests", "passed"),),
        run_url="https://openase.example/runs/12",
        extra={"Blocked by": "**acme/api#12**"},
    )
    wiki = to_wiki(render(view))
    for markdown in ("**", "`", "|---", "| |", "](", "<details>", "</details>", "<summary>"):
        assert markdown not in wiki, (markdown, wiki)
    assert "*On hold* ({{/unhold}} to continue)." in wiki
    assert "No machine with label {{gpu}} is online." in wiki
    assert "|Blocked by|*acme/api#12*|" in wiki


def test_the_failed_headline_names_the_command() -> None:
    wiki = to_wiki(render(StatusView(state=State.FAILED)))
    assert wiki == (
        "*OpenASE* · ❌ Failed: every attempt is used up. A human decides what next ({{/retry}})."
    )


def test_a_reply_quotes_the_command_as_a_block_quote() -> None:
    body = f"{quote('/run coder')}\n\n@ada-gh Queued for **coder**: see `/status`."
    assert to_wiki(body) == "bq. /run coder\n\n@ada-gh Queued for *coder*: see {{/status}}."


def test_a_quote_of_several_lines_keeps_no_markdown_marker() -> None:
    body = quote("/ask why does `make` fail?\n\nand how to fix it")
    assert body.split("\n")[1] == ">"  # what quote() writes for a blank line
    assert to_wiki(body) == "bq. /ask why does {{make}} fail?\nbq. \nbq. and how to fix it"


def test_an_answer_with_code_keeps_the_code_verbatim() -> None:
    answer = "Use this:\n\n~~~sh\nmake **all** | tee `log`\n~~~\n\nThen [see the docs](https://docs.example/x)."
    assert to_wiki(answer) == (
        "Use this:\n\n{noformat}\nmake **all** | tee `log`\n{noformat}\n\n"
        "Then [see the docs|https://docs.example/x]."
    )


def test_an_unclosed_fence_is_closed() -> None:
    assert to_wiki("```\nTraceback (most recent call last):") == (
        "{noformat}\nTraceback (most recent call last):\n{noformat}"
    )


def test_plain_text_is_unchanged() -> None:
    text = "Nothing to convert here: a/b, 3 > 2, x_y and #12."
    assert to_wiki(text) == text


def test_a_noformat_tag_inside_output_cannot_close_the_block_early() -> None:
    wiki = to_wiki("```\nlog: {noformat} and {NOFORMAT}\n```")
    assert wiki.splitlines() == [
        "{noformat}",
        "log: \\{noformat} and \\{noformat}",
        "{noformat}",
    ]
