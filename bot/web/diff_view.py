"""Diffs laid out for a page: per file, hunks of numbered rows, unified or side by side.

Built from difflib's opcodes rather than by parsing `store.diff_text`, so every row knows its
line numbers and which lines pair up. A changed line paired with its replacement carries
segments marking the characters that differ; the template escapes every segment.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

RowKind = Literal["ctx", "add", "del"]
CONTEXT_LINES = 3
# Character-level marking costs quadratic time; long lines are shown whole instead.
_INLINE_MAX = 400
_INLINE_MIN_RATIO = 0.4


@dataclass(frozen=True)
class Segment:
    text: str
    changed: bool


@dataclass
class Row:
    kind: RowKind
    old_no: int | None
    new_no: int | None
    text: str
    segments: list[Segment] = field(default_factory=list)

    @property
    def sign(self) -> str:
        return {"ctx": " ", "add": "+", "del": "-"}[self.kind]


@dataclass(frozen=True)
class Pair:
    """One line of the side-by-side view: the old line on the left, the new on the right."""

    left: Row | None
    right: Row | None


@dataclass
class Hunk:
    header: str
    rows: list[Row]

    @property
    def pairs(self) -> list[Pair]:
        return _pairs(self.rows)


@dataclass
class FileDiff:
    path: str
    status: Literal["added", "removed", "changed"]
    hunks: list[Hunk]
    # A file whose only change is its final newline has no visible rows of its own.
    note: str | None = None

    @property
    def added(self) -> int:
        return sum(row.kind == "add" for hunk in self.hunks for row in hunk.rows)

    @property
    def removed(self) -> int:
        return sum(row.kind == "del" for hunk in self.hunks for row in hunk.rows)


def diff_files(old: Mapping[str, str], new: Mapping[str, str]) -> list[FileDiff]:
    """Every file that differs between two `{path: text}` folders, by path."""
    changed = []
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path), new.get(path)
        if before == after:
            continue
        status: Literal["added", "removed", "changed"] = (
            "added" if before is None else "removed" if after is None else "changed"
        )
        changed.append(diff_file(path, before or "", after or "", status))
    return changed


def diff_file(
    path: str, old: str, new: str, status: Literal["added", "removed", "changed"] = "changed"
) -> FileDiff:
    """One file's hunks, with `CONTEXT_LINES` of context around each change."""
    old_lines, new_lines = _lines(old), _lines(new)
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    hunks = [
        _hunk(group, old_lines, new_lines)
        for group in matcher.get_grouped_opcodes(CONTEXT_LINES)
        if any(tag != "equal" for tag, *_ in group)
    ]
    note = None
    if old.endswith("\n") != new.endswith("\n") and old and new:
        note = (
            "The new version ends without a newline."
            if old.endswith("\n")
            else "The new version adds a newline at the end."
        )
    return FileDiff(path, status, hunks, note)


def _lines(text: str) -> list[str]:
    # Not splitlines(): it also breaks at \x0c and \u2028, and the numbers would stop
    # matching the source view's.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _hunk(
    group: list[tuple[str, int, int, int, int]], old_lines: list[str], new_lines: list[str]
) -> Hunk:
    first, last = group[0], group[-1]
    old_start, old_end = first[1], last[2]
    new_start, new_end = first[3], last[4]
    header = (
        f"@@ -{_range(old_start, old_end - old_start)} +{_range(new_start, new_end - new_start)} @@"
    )
    rows: list[Row] = []
    for tag, i1, i2, j1, j2 in group:
        if tag == "equal":
            for offset in range(i2 - i1):
                rows.append(Row("ctx", i1 + offset + 1, j1 + offset + 1, old_lines[i1 + offset]))
            continue
        removed = [Row("del", i + 1, None, old_lines[i]) for i in range(i1, i2)]
        added = [Row("add", None, j + 1, new_lines[j]) for j in range(j1, j2)]
        for left, right in zip(removed, added, strict=False):
            _mark(left, right)
        rows.extend(removed)
        rows.extend(added)
    return Hunk(header, rows)


def _range(start: int, length: int) -> str:
    # Unified diff convention: an empty range names the line before it.
    if length == 1:
        return str(start + 1)
    return f"{start + 1 if length else start},{length}"


def _mark(left: Row, right: Row) -> None:
    """Split a replaced line and its replacement into unchanged and changed segments."""
    if max(len(left.text), len(right.text)) > _INLINE_MAX:
        return
    matcher = difflib.SequenceMatcher(None, left.text, right.text, autojunk=False)
    if matcher.ratio() < _INLINE_MIN_RATIO:
        return
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        _append(left.segments, left.text[i1:i2], tag != "equal")
        _append(right.segments, right.text[j1:j2], tag != "equal")


def _append(segments: list[Segment], text: str, changed: bool) -> None:
    if not text:
        return
    if segments and segments[-1].changed == changed:
        segments[-1] = Segment(segments[-1].text + text, changed)
    else:
        segments.append(Segment(text, changed))


def _pairs(rows: list[Row]) -> list[Pair]:
    """Context lines face themselves; each run of removals faces the additions after it."""
    pairs: list[Pair] = []
    index = 0
    while index < len(rows):
        row = rows[index]
        if row.kind == "ctx":
            pairs.append(Pair(row, row))
            index += 1
            continue
        removed: list[Row] = []
        while index < len(rows) and rows[index].kind == "del":
            removed.append(rows[index])
            index += 1
        added: list[Row] = []
        while index < len(rows) and rows[index].kind == "add":
            added.append(rows[index])
            index += 1
        for offset in range(max(len(removed), len(added))):
            pairs.append(
                Pair(
                    removed[offset] if offset < len(removed) else None,
                    added[offset] if offset < len(added) else None,
                )
            )
    return pairs
