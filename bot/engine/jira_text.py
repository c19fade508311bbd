"""The bot's Markdown as Jira wiki markup (REST v2 comment bodies).

Only what the bot itself writes needs converting: bold, inline code, links, two-column
tables, code fences, block quotes and the `<details>` of a failure's output.
"""

from __future__ import annotations

import re

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")
_SEPARATOR = re.compile(r"^\|(\s*:?-+:?\s*\|)+\s*$")
_FENCE = re.compile(r"^(`{3,}|~{3,})")
_SUMMARY = re.compile(r"<details><summary>(.*?)</summary>")


def to_wiki(markdown: str) -> str:
    """Markdown (as the bot writes it) -> Jira wiki markup."""
    out: list[str] = []
    fence: str | None = None
    for line in markdown.split("\n"):
        if fence is not None:
            if line.startswith(fence) and not line[len(fence) :].strip():
                out.append("{noformat}")
                fence = None
            else:
                # The only thing a noformat block cannot hold is its own closing tag.
                out.append(re.sub(r"\{noformat\}", r"\\{noformat}", line, flags=re.IGNORECASE))
            continue
        opened = _FENCE.match(line)
        if opened:
            fence = opened.group(1)
            out.append("{noformat}")
            continue
        summary = _SUMMARY.search(line)
        if summary:
            out.append(f"*{summary.group(1)}*")
            continue
        if line.strip() == "</details>":
            continue
        if _SEPARATOR.match(line) or line.replace(" ", "") == "|||":
            continue  # Jira tables need no separator row, and ours have empty headers
        if line.startswith("> ") or line == ">":  # quote() writes a blank line as ">"
            out.append("bq. " + _inline(line[2:]))
            continue
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            out.append("|" + "|".join(_inline(cell) or " " for cell in cells) + "|")
            continue
        out.append(_inline(line))
    if fence is not None:
        out.append("{noformat}")
    return "\n".join(out)


def _inline(text: str) -> str:
    text = _LINK.sub(lambda m: f"[{m.group(1)}|{m.group(2)}]", text)
    text = _CODE.sub(lambda m: "{{" + m.group(1) + "}}", text)
    return _BOLD.sub(lambda m: f"*{m.group(1)}*", text)
