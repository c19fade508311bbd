"""Slash commands in a comment body, for any tracker (DESIGN §5; Prow's grammar).

A command is a line that starts with `/name` (up to three spaces before the slash) followed
by whitespace or the end of the line; the rest of the line, stripped, is its arguments.
`/approved` is a command named `approved` (the caller ignores names it does not know);
`/approve.`, `/approve,` and `/path/to/file` are not commands at all, as in Prow, whose
`^/([a-zA-Z0-9-]+)(\\s|$)` wants whitespace or the end of the line after the name.

Lines a reader does not see as prose never hold a command:
- fenced code (``` or ~~~, three or more, also right after a list marker); it ends at a
  line of the same character at least as long, or at the end of the comment;
- indented code: any line indented by four or more spaces or a tab. Unlike CommonMark we do
  not ask whether the line continues a paragraph: such a line is never a command;
- block quotes (`>` after up to three spaces, so `>>` too);
- HTML comments (`<!-- ... -->`, across lines, also when opened in a quote; an unclosed one
  runs to the end), where issue templates keep their hints. A `<!--` inside an inline code
  span on the same line opens nothing; a comment on a command's own line is left out of its
  arguments;
- a line starting with a backtick (inline code) is not a command anyway.
Code spans that run over several lines of a paragraph are not tracked.

At most MAX_COMMANDS commands are returned per comment (the rest are ignored) and arguments
are cut at MAX_ARGS_CHARS characters. The work is linear in the size of the comment.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

MAX_COMMANDS = 20
MAX_ARGS_CHARS = 1000

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_COMMAND = re.compile(r"/([A-Za-z0-9-]+)(?:\s|$)")
# A fence may open a list item's content ("- ```"); the marker is at most 9 digits.
_FENCE_OPEN = re.compile(r"(?:(?:[-+*]|[0-9]{1,9}[.)]) {1,4})?(`{3,}|~{3,})")
_BACKTICKS = re.compile(r"`+")
# First characters of a line that may be a command, code, a quote or a fence's list marker.
_MAY_START_SOMETHING = frozenset(" \t/`~>-+*0123456789")


@dataclass(frozen=True)
class ParsedCommand:
    name: str  # lower case, without the slash
    args: str  # the rest of the line, stripped ("" when none)
    line: str  # the line as written, without its line ending (for quoting in replies)
    line_number: int  # 1-based, in the original text


def parse_commands(text: str | None) -> list[ParsedCommand]:
    """The slash commands in a comment, in order, at most MAX_COMMANDS."""
    found: list[ParsedCommand] = []
    if not text:
        return found
    fence: tuple[str, int] | None = None  # (fence character, length) while inside one
    in_comment = False
    for number, line in enumerate(_LINE_BREAK.split(text), start=1):
        if not line:
            continue  # opens, closes and holds nothing
        if fence is not None:
            if _closes_fence(line, *fence):
                fence = None
            continue
        if in_comment:
            end = line.find("-->")
            if end >= 0:
                _, in_comment = _without_html_comments(line, end + 3)
            continue
        if line[0] not in _MAY_START_SOMETHING and "<!--" not in line:
            continue  # plain prose: the common case, kept cheap for long comments
        indent = len(line) - len(line.lstrip(" "))
        if indent >= 4 or line[indent : indent + 1] == "\t":
            continue  # indented code
        rest = line[indent:]
        opened = _FENCE_OPEN.match(rest)
        # A backtick fence's info string may not hold a backtick ("```a`b" is inline code).
        if opened and not (opened[1][0] == "`" and "`" in rest[opened.end() :]):
            fence = (opened[1][0], len(opened[1]))
            continue
        command = None if rest.startswith(">") else _COMMAND.match(rest)
        if command is None:
            if "<!--" in rest:  # quotes too: conservative, a hidden hint stays hidden
                _, in_comment = _without_html_comments(rest, 0)
            continue
        args, in_comment = _without_html_comments(rest, command.end(1))
        found.append(
            ParsedCommand(
                name=command[1].lower(),
                args=args.strip()[:MAX_ARGS_CHARS].rstrip(),
                line=line,
                line_number=number,
            )
        )
        if len(found) == MAX_COMMANDS:
            break
    return found


def split_args(args: str) -> list[str]:
    """A command's arguments split on whitespace."""
    return args.split()


def quote(text: str, limit: int = 500) -> str:
    """`text` as a Markdown block quote, cut to `limit` characters (the "…" included)."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    body = "\n".join(_LINE_BREAK.split(text)).rstrip()
    if len(body) > limit:
        body = body[: limit - 1].rstrip() + "…"
    return "\n".join(f"> {line}" if line else ">" for line in body.split("\n"))


def _closes_fence(line: str, char: str, length: int) -> bool:
    rest = line.lstrip(" ")
    if len(line) - len(rest) > 3:
        return False
    rest = rest.rstrip(" \t")
    return len(rest) >= length and rest.count(char) == len(rest)


def _without_html_comments(line: str, start: int) -> tuple[str, bool]:
    """`line[start:]` without its HTML comments, and whether one is still open at the end.

    A backtick code span (closed on this line) hides a `<!--` inside it, as in CommonMark.
    """
    if "<!--" not in line:
        return line[start:], False
    runs: _BacktickRuns | None = None
    kept: list[str] = []
    pos = start
    opener = -1
    while True:
        if opener < pos:  # found once per comment: a rescan per code span would be quadratic
            opener = line.find("<!--", pos)
        if opener < 0:
            kept.append(line[pos:])
            return "".join(kept), False
        tick = line.find("`", pos, opener)
        if tick >= 0:
            if runs is None:
                runs = _BacktickRuns(line)
            after = runs.span_end(tick)
            kept.append(line[pos:after])
            pos = after
            continue
        kept.append(line[pos:opener])
        # From opener + 2: "<!-->" and "<!--->" close themselves, as browsers read them.
        closer = line.find("-->", opener + 2)
        if closer < 0:
            return "".join(kept), True
        pos = closer + 3


class _BacktickRuns:
    """The backtick runs of one line, to find where a code span ends without rescanning the
    line for each opener (a line of many unmatched runs would otherwise be quadratic)."""

    def __init__(self, line: str) -> None:
        self._length_at: dict[int, int] = {}
        self._starts_by_length: dict[int, list[int]] = {}
        for run in _BACKTICKS.finditer(line):
            length = run.end() - run.start()
            self._length_at[run.start()] = length
            self._starts_by_length.setdefault(length, []).append(run.start())

    def span_end(self, start: int) -> int:
        """Where the code span opened by the run at `start` ends; just past the run when
        nothing closes it (the backticks are then literal)."""
        length = self._length_at[start]
        starts = self._starts_by_length[length]
        following = bisect.bisect_right(starts, start)
        if following < len(starts):
            return starts[following] + length
        return start + length
