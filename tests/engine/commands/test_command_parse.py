"""Slash commands in comment bodies: table-driven over bodies, as Prow's plugin tests are."""

from __future__ import annotations

import time

import pytest

from bot.engine.commands.parse import (
    MAX_ARGS_CHARS,
    MAX_COMMANDS,
    ParsedCommand,
    parse_commands,
    quote,
    split_args,
)

FENCE = "```"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # (name, args, line number) for each command found, in order.
        pytest.param("/run", [("run", "", 1)], id="plain command"),
        pytest.param("/run\n", [("run", "", 1)], id="trailing newline"),
        pytest.param("/run backend", [("run", "backend", 1)], id="one argument"),
        pytest.param(
            "/retry   mind the   flaky test  ",
            [("retry", "mind the   flaky test", 1)],
            id="arguments are the rest of the line, stripped",
        ),
        pytest.param("/cancel\t", [("cancel", "", 1)], id="trailing tab"),
        pytest.param(
            "/hold\n/status\n/harness coder@3",
            [("hold", "", 1), ("status", "", 2), ("harness", "coder@3", 3)],
            id="several commands",
        ),
        pytest.param(
            "Looks good to me.\n/approve\nThanks!",
            [("approve", "", 2)],
            id="command mid-text",
        ),
        pytest.param(
            "Some thoughts.\n\n/ask why the retry?\n\nMore thoughts.\n/hold",
            [("ask", "why the retry?", 3), ("hold", "", 6)],
            id="commands among paragraphs",
        ),
        pytest.param("/APPROVE", [("approve", "", 1)], id="name is case-insensitive"),
        pytest.param("/Run Backend", [("run", "Backend", 1)], id="args keep their case"),
        pytest.param("/approved", [("approved", "", 1)], id="approved is its own name"),
        pytest.param("/lh-assign me", [("lh-assign", "me", 1)], id="dash in name"),
        pytest.param("/approve.", [], id="punctuation after the name"),
        pytest.param("/approve, please", [], id="comma after the name"),
        pytest.param("/path/to/file", [], id="a path is not a command"),
        pytest.param("see /run", [], id="not at line start"),
        pytest.param("and/or /hold", [], id="slash in the middle of a word"),
        pytest.param("https://example.com/run", [], id="url"),
        pytest.param("/", [], id="bare slash"),
        pytest.param("/ run", [], id="space after slash"),
        pytest.param("\\/run", [], id="escaped slash"),
        pytest.param("/run_it", [], id="underscore is not a name character"),
        pytest.param(" /run", [("run", "", 1)], id="one leading space"),
        pytest.param("  /run", [("run", "", 1)], id="two leading spaces"),
        pytest.param("   /run", [("run", "", 1)], id="three leading spaces"),
        pytest.param("    /run", [], id="four leading spaces is indented code"),
        pytest.param("\t/run", [], id="tab-indented code"),
        pytest.param("  \t/run", [], id="spaces then tab is indented code"),
        pytest.param(
            "text\n    /run\n/hold",
            [("hold", "", 3)],
            id="indented line under a paragraph is still never a command",
        ),
        pytest.param(f"{FENCE}\n/run\n{FENCE}\n/hold", [("hold", "", 4)], id="backtick fence"),
        pytest.param(
            f"{FENCE}python\n/run\n{FENCE}\n/hold",
            [("hold", "", 4)],
            id="fence with language tag",
        ),
        pytest.param("~~~\n/run\n~~~\n/hold", [("hold", "", 4)], id="tilde fence"),
        pytest.param(
            "~~~\n/run\n```\n/cancel\n~~~\n/hold",
            [("hold", "", 6)],
            id="other fence character does not close",
        ),
        pytest.param(
            "````\n/run\n```\n/cancel\n`````\n/hold",
            [("hold", "", 6)],
            id="shorter closing fence does not close, longer one does",
        ),
        pytest.param(
            f"{FENCE}\n/run\n{FENCE} not a closer\n/cancel\n{FENCE}  \n/hold",
            [("hold", "", 6)],
            id="closing fence takes no info string but trailing spaces",
        ),
        pytest.param(
            f"{FENCE}\n/run\n    {FENCE}\n/cancel\n   {FENCE}\n/hold",
            [("hold", "", 6)],
            id="closing fence indented four spaces does not close",
        ),
        pytest.param(
            f"/hold\n{FENCE}\n/run\n\n/cancel",
            [("hold", "", 1)],
            id="unclosed fence runs to the end",
        ),
        pytest.param(
            f"- a list item\n\n  {FENCE}sh\n  /run\n  {FENCE}\n- /hold\n  /status",
            [("status", "", 7)],
            id="fence inside a list item",
        ),
        pytest.param(
            f"1. {FENCE}\n   /run\n   {FENCE}\n/hold",
            [("hold", "", 4)],
            id="fence opening a list item",
        ),
        pytest.param(
            "```a`b\n/run", [("run", "", 2)], id="backtick in the info string is no fence"
        ),
        pytest.param("~~~a`b\n/run\n~~~", [], id="tilde fence info string may hold a backtick"),
        pytest.param("``\n/run\n``", [("run", "", 2)], id="two backticks are no fence"),
        pytest.param("`/run`", [], id="inline code at line start"),
        pytest.param("``/run``", [], id="double-backtick inline code at line start"),
        pytest.param("/run `backend`", [("run", "`backend`", 1)], id="inline code in args"),
        pytest.param("> /run", [], id="block quote"),
        pytest.param(">/run", [], id="block quote without space"),
        pytest.param("  > /run", [], id="indented block quote"),
        pytest.param(">> /run", [], id="nested block quote"),
        pytest.param("> you said\n> /run\n\n/hold", [("hold", "", 4)], id="reply after a quote"),
        pytest.param("<!-- /run -->\n/hold", [("hold", "", 2)], id="single-line html comment"),
        pytest.param(
            "<!--\n/run\n  /cancel\n-->\n/hold",
            [("hold", "", 5)],
            id="multi-line html comment",
        ),
        pytest.param(
            "<!-- Describe the change.\n/run\n--> /cancel\n/hold",
            [("hold", "", 4)],
            id="line that closes a comment is no command",
        ),
        pytest.param("/hold\n<!--\n/run\n", [("hold", "", 1)], id="unclosed html comment"),
        pytest.param(
            "text <!-- hint\n/run\n-->\n/hold",
            [("hold", "", 4)],
            id="html comment opened mid-line",
        ),
        pytest.param(
            "<!-- a --> <!-- b\n/run\n-->\n/hold",
            [("hold", "", 4)],
            id="second comment on a line stays open",
        ),
        pytest.param(
            "<!-- a\n--> text <!-- b\n/run\n-->\n/hold",
            [("hold", "", 5)],
            id="comment reopened on its closing line",
        ),
        pytest.param(
            "<!---->\n/run\n<!-->\n/hold",
            [("run", "", 2), ("hold", "", 4)],
            id="empty and self-closing comments",
        ),
        pytest.param("> <!-- hint\n/run", [], id="html comment opened in a quote"),
        pytest.param(
            "/run backend <!-- why -->",
            [("run", "backend", 1)],
            id="comment left out of args",
        ),
        pytest.param(
            "/run backend <!-- why\n/hold\n-->",
            [("run", "backend", 1)],
            id="comment opened in args hides the next lines",
        ),
        pytest.param(
            "Write `<!--` to hide text.\n/run",
            [("run", "", 2)],
            id="comment opener inside inline code opens nothing",
        ),
        pytest.param(
            "/run `<!--` <!-- x -->",
            [("run", "`<!--`", 1)],
            id="inline code then comment in args",
        ),
        pytest.param(
            "`` ` `` <!-- `` \n/run\n-->\n/hold",
            [("hold", "", 4)],
            id="comment after a closed code span",
        ),
        pytest.param(
            "` <!--\n/run",
            [],
            id="unclosed backtick is literal so the comment opens",
        ),
        pytest.param(
            f"{FENCE}\n<!--\n{FENCE}\n/run",
            [("run", "", 4)],
            id="html comment inside a fence opens nothing",
        ),
        pytest.param(
            f"<!--\n{FENCE}\n-->\n/run",
            [("run", "", 4)],
            id="fence inside an html comment opens nothing",
        ),
        pytest.param(
            "    <!--\n/run", [("run", "", 2)], id="html comment in indented code opens nothing"
        ),
        pytest.param("/hold\r\n/run x\r\n", [("hold", "", 1), ("run", "x", 2)], id="crlf"),
        pytest.param("/hold\r/run x\r", [("hold", "", 1), ("run", "x", 2)], id="cr"),
        pytest.param(f"{FENCE}\r\n/run\r\n{FENCE}\r\n/hold", [("hold", "", 4)], id="crlf fence"),
        pytest.param(
            "/retry 修复 🚀 ünïcödé", [("retry", "修复 🚀 ünïcödé", 1)], id="unicode args"
        ),
        pytest.param("/ask 为什么\uff1f", [("ask", "为什么\uff1f", 1)], id="cjk args"),
        pytest.param("/rün", [], id="non-ascii name"),
        pytest.param("/run\u00a0backend", [("run", "backend", 1)], id="no-break space"),
        pytest.param("", [], id="empty"),
        pytest.param("\n\n  \n", [], id="blank lines"),
        pytest.param(None, [], id="none"),
    ],
)
def test_parse_commands(body: str | None, expected: list[tuple[str, str, int]]) -> None:
    got = [(c.name, c.args, c.line_number) for c in parse_commands(body)]
    assert got == expected


def test_line_is_the_original_line() -> None:
    body = "Hi\r\n  /Retry  Use the cache  \r\n"
    assert parse_commands(body) == [
        ParsedCommand(
            name="retry", args="Use the cache", line="  /Retry  Use the cache  ", line_number=2
        )
    ]


def test_parsed_command_is_frozen() -> None:
    command = parse_commands("/run")[0]
    with pytest.raises(AttributeError):
        command.name = "approve"  # type: ignore[misc]  # the point: it is frozen


def test_at_most_max_commands_are_returned() -> None:
    body = "\n".join(f"/cmd{i}" for i in range(MAX_COMMANDS + 5))
    commands = parse_commands(body)
    assert MAX_COMMANDS == 20
    assert [c.name for c in commands] == [f"cmd{i}" for i in range(MAX_COMMANDS)]


def test_arguments_are_truncated() -> None:
    args = "x" * (MAX_ARGS_CHARS - 1) + " " + "y" * 50
    [command] = parse_commands(f"/ask {args}")
    assert MAX_ARGS_CHARS == 1000
    assert command.args == "x" * (MAX_ARGS_CHARS - 1)
    [exact] = parse_commands("/ask " + "z" * MAX_ARGS_CHARS + "  ")
    assert exact.args == "z" * MAX_ARGS_CHARS


def test_split_args() -> None:
    assert split_args("") == []
    assert split_args("  coder@3 \t extra ") == ["coder@3", "extra"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("`" * 1_000_000, id="one line of backticks"),
        pytest.param("```\n" * 250_000, id="fence after fence"),
        pytest.param("~~~~ ~\n" * 140_000, id="tilde fences with info"),
        pytest.param("\n" * 1_000_000, id="empty lines"),
        pytest.param(" " * 1_000_000, id="spaces"),
        pytest.param("".join("`" * n + " " for n in range(1, 1400)) + "<!--", id="unmatched runs"),
        pytest.param("`a` " * 250_000 + "<!--", id="many code spans before a comment"),
        pytest.param("<!--" * 250_000, id="comment openers"),
        pytest.param("<!-- -->" * 125_000 + "\n/run", id="closed comments"),
        pytest.param("/run " + "<!--`-->" * 125_000, id="a command's long args"),
        pytest.param("/" + "a" * 1_000_000 + "/", id="a long name"),
        pytest.param("> " * 500_000, id="quote markers"),
    ],
)
def test_a_megabyte_comment_parses_quickly(body: str) -> None:
    # Not a benchmark: a generous bound that only a quadratic (or worse) scan would miss.
    started = time.monotonic()
    parse_commands(body)
    assert time.monotonic() - started < 5


def test_a_megabyte_comment_still_finds_its_commands() -> None:
    noise = f"{FENCE}\n" + "`x` ``y`` <!-- z --> /no\n" * 40_000 + f"{FENCE}\n"
    body = "/hold\n" + noise + "/run after the noise\n"
    assert len(body) > 1_000_000
    assert [(c.name, c.args) for c in parse_commands(body)] == [
        ("hold", ""),
        ("run", "after the noise"),
    ]


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        pytest.param("/run", 500, "> /run", id="one line"),
        pytest.param("/hold\r\nbecause\r\n", 500, "> /hold\n> because", id="crlf lines"),
        pytest.param("a\n\nb", 500, "> a\n>\n> b", id="blank line keeps the quote"),
        pytest.param("abcdef", 6, "> abcdef", id="exactly the limit"),
        pytest.param("abcdefg", 6, "> abcde…", id="past the limit"),
        pytest.param("ab\ncdefg", 5, "> ab\n> c…", id="cut across lines"),
        pytest.param("ab  cdefg", 5, "> ab…", id="cut drops trailing space"),
        pytest.param("", 500, ">", id="empty"),
        pytest.param("修复 🚀", 500, "> 修复 🚀", id="unicode"),
    ],
)
def test_quote(text: str, limit: int, expected: str) -> None:
    assert quote(text, limit) == expected


def test_quote_default_limit_and_quoted_commands() -> None:
    quoted = quote("/run " + "x" * 1000)
    assert len(quoted) == len("> ") + 500
    assert quoted.endswith("…")
    # A reply quoting the command does not itself hold one.
    assert parse_commands(quote("/approve\n```\n/run")) == []


def test_quote_rejects_a_limit_below_one() -> None:
    with pytest.raises(ValueError, match="limit"):
        quote("x", 0)
