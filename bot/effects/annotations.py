"""Check-run annotations from tool output: `path:line[:col]: message` as ruff, mypy,
flake8, gcc, eslint, tsc and pytest print it, made relative to the repository."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

Json = dict[str, Any]
MAX_ANNOTATIONS = 250  # per check run: five requests; beyond that, the text has it all
_Location = tuple[str, int, int | None, str | None, str]  # path, line, column, level, message


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# path:line[:col]: message (ruff, mypy, flake8, gcc, eslint -f unix, pytest) or
# path(line,col): message (tsc). The path needs an extension, which keeps timestamps out.
_LOCATION = re.compile(
    r"^(?P<path>[^\s:()<>\"'|]+\.[A-Za-z0-9]+)"
    r"(?::(?P<line>\d+)(?::(?P<col>\d+))?|\((?P<pline>\d+),(?P<pcol>\d+)\))"
    r":\s*(?P<rest>.*?)\s*$"
)
# ruff's and rustc's full format: the message above, its place on an arrow line.
_ARROW = re.compile(r"^\s*-->\s*(?P<path>[^\s:]+\.[A-Za-z0-9]+):(?P<line>\d+)(?::(?P<col>\d+))?")
_PYTEST_E = re.compile(r"^E\s+(?P<text>.*)$")  # pytest's explanation lines
_PYTEST_FRAME = re.compile(r"^in \S+$")  # --tb=short: "path:line: in func", E lines follow
_SECTION = re.compile(r"^(?:_{3,}|={3,})")
_ESLINT_FILE = re.compile(r"^(?P<path>[^\s:]+\.[A-Za-z0-9]+)$")
_ESLINT_ROW = re.compile(
    r"^\s+(?P<line>\d+):(?P<col>\d+)\s+(?P<level>error|warning)\s+(?P<message>.+?)"
    r"(?:\s{2,}(?P<rule>[\w@/-]+))?\s*$"
)
_LEVEL_PREFIX = re.compile(
    r"^(?P<level>fatal error|error|warning|warn|note|notice|info|hint)"
    r"(?:\[[^\]]*\])?(?:\s+[A-Z]+\d+)?:\s*(?P<message>.+)$",
    re.IGNORECASE,
)
_LEVEL_SUFFIX = re.compile(r"\s*\[(?P<level>Error|Warning)/[^\]]*\]$")  # eslint -f unix
_LEVELS = {
    "fatal error": "failure",
    "error": "failure",
    "warning": "warning",
    "warn": "warning",
    "note": "notice",
    "notice": "notice",
    "info": "notice",
    "hint": "notice",
}


def _head(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 20] + "\n… (truncated)"


def annotations_from_output(
    text: str, *, root: str | None = None, level: str = "failure", limit: int = MAX_ANNOTATIONS
) -> list[Json]:
    """Check-run annotations for each file:line a tool's output names, in order, deduplicated.

    Reads ruff (concise and full), mypy, flake8, gcc-style compilers, eslint (stylish and
    unix), tsc and pytest tracebacks (long, short and line). Paths under `root` are made
    relative to it; other absolute paths, `..` and site-packages are dropped (GitHub only
    shows annotations on files of the repository). `level` is used where the tool says none.
    """
    found: list[Json] = []
    seen: set[tuple[str, int, str]] = set()
    for path, line, column, said, message in _locations(_ANSI.sub("", text)):
        relative = _relative(path, root)
        message = message.strip()
        if relative is None or line < 1 or not message or (relative, line, message) in seen:
            continue
        seen.add((relative, line, message))
        annotation: Json = {
            "path": relative,
            "start_line": line,
            "end_line": line,
            "annotation_level": said or level,
            "message": _head(message, 4000),
        }
        if column:
            annotation["start_column"] = annotation["end_column"] = column
        found.append(annotation)
        if len(found) >= limit:
            break
    return found


def _locations(text: str) -> Iterator[_Location]:
    eslint_file: str | None = None
    header: str | None = None  # the last unindented line: the message of an arrow line
    frame: tuple[str, int, int | None] | None = None  # a pytest --tb=short frame
    explanation: list[str] = []  # pytest's E lines since the last location
    for raw in text.splitlines():
        line = raw.rstrip()
        explained = _PYTEST_E.match(line)
        if explained:
            explanation.append(explained["text"].strip())
            continue
        if frame is not None and explanation and not line.startswith(" "):
            yield (*frame, None, "\n".join(explanation))
            frame, explanation = None, []
        if not line or _SECTION.match(line):
            eslint_file = None
            if _SECTION.match(line):
                frame, explanation = None, []
            continue
        row = _ESLINT_ROW.match(line)
        if row and eslint_file is not None:
            message = row["message"] + (f" ({row['rule']})" if row["rule"] else "")
            yield eslint_file, int(row["line"]), int(row["col"]), _LEVELS[row["level"]], message
            continue
        arrow = _ARROW.match(line)
        if arrow:
            said, message = _level(header or "")
            column = int(arrow["col"]) if arrow["col"] else None
            yield arrow["path"], int(arrow["line"]), column, said, message
            continue
        place = _LOCATION.match(line)
        if place is None:
            if _ESLINT_FILE.match(line):
                eslint_file = line
            elif not line.startswith((" ", "\t")):
                header = line
            continue
        number = int(place["line"] or place["pline"])
        column_text = place["col"] or place["pcol"]
        column = int(column_text) if column_text else None
        rest = place["rest"]
        if _PYTEST_FRAME.match(rest):
            frame, explanation = (place["path"], number, column), []
            continue
        if not rest:
            continue  # pytest --tb=long names each frame's place with nothing after it
        if explanation and re.fullmatch(r"[\w.]+", rest):
            # pytest --tb=long: "path:line: AssertionError" after the E lines explaining it.
            yield place["path"], number, column, None, "\n".join(explanation)
        else:
            said, message = _level(rest)
            yield place["path"], number, column, said, message
        explanation = []
    if frame is not None and explanation:
        yield (*frame, None, "\n".join(explanation))


def _level(message: str) -> tuple[str | None, str]:
    """The annotation level a message states (`error: ...`, `[Error/rule]`) and the rest."""
    suffix = _LEVEL_SUFFIX.search(message)
    if suffix:
        return _LEVELS[suffix["level"].lower()], message[: suffix.start()]
    prefix = _LEVEL_PREFIX.match(message)
    if prefix:
        return _LEVELS[prefix["level"].lower()], prefix["message"]
    return None, message


def _relative(path: str, root: str | None) -> str | None:
    path = path.replace("\\", "/")
    if root:
        prefix = root.replace("\\", "/").rstrip("/") + "/"
        path = path.removeprefix(prefix)
    while path.startswith("./"):
        path = path[2:]
    parts = path.split("/")
    if path.startswith("/") or ".." in parts or "site-packages" in parts or "://" in path:
        return None
    return path
