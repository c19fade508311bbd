"""What a smee.io channel carries, and the GitHub delivery (headers, body bytes) it stands for.

What smee.io sends (probot/smee.io `lib/server.js`, `lib/keep-alive.js` at 922d925, Dec
2025; probot/smee-client `index.ts` at 1dd04b9):

- `GET /<channel>` with `Accept: text/event-stream` (that exact value) opens the stream.
  The server writes `id: <n>`, `event: ready`, `data: {}` at once, then `event: ping`,
  `data: {}` every 30 seconds. `id` counts from 0 on each connection and the server never
  reads `Last-Event-ID`: nothing is replayed, so a delivery posted while nobody listens is
  gone (the reconciliation cron catches up on what it changed).
- Each delivery POSTed to the channel becomes one event with no `event:` line ("message")
  whose `data` is `JSON.stringify({...req.headers, body: req.body, query: req.query,
  timestamp: Date.now()})`: the request's headers at the top level, names lower-cased by
  Node (`x-github-event`, `x-github-delivery`, `x-hub-signature-256`, `content-type`,
  `host`, ...); `body` the JSON body as *parsed* by the server; `query` the URL's query;
  `timestamp` in milliseconds. The raw body is not there: the Express-era server sent it as
  `rawdata` (probot/smee.io#55, 2024) and a later branch as `rawBody`, but the Fastify
  rewrite carries neither.
- smee-client re-posts `JSON.stringify(data.body)` with every other member as a header
  (but `host`) and `content-type: application/json`.

So the bytes GitHub signed are not on the channel; they are rebuilt. Because
`JSON.stringify(JSON.parse(text))` returns `text` for any text JSON.stringify wrote, the
`body` member's text inside `data`, cut out exactly as the server wrote it, is byte for
byte what smee-client would post. It is cut out, never re-serialized here: Python writes
numbers differently (`1e-07` for JavaScript's `1e-7`, `1e-05` for `0.00001`). That text is
GitHub's own when GitHub's JSON has JavaScript's form, which @octokit/webhooks relied on to
verify parsed payloads from 2019 to 2023 (`src/to-normalized-json-string.ts`): compact,
UTF-8 unescaped, the same escapes, except that GitHub writes `\\u001B` where JavaScript
writes `\\u001b`; that one difference is undone here. A payload that still differs (an
integer beyond 2**53, which JavaScript cannot hold) fails the signature check and is
refused like any forged delivery, never stored unverified. When a channel does carry the
raw body (`rawBody` or `rawdata`), that is used as it is. (Checked end to end against that
server run locally under node 20: a signed payload with non-ASCII text, U+2028 and control
characters came back byte for byte, signature valid.)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# Members of a message that are not request headers.
_RAW_BODY_MEMBERS = ("rawBody", "rawdata")
_NOT_HEADERS = frozenset({"body", "query", "timestamp", *_RAW_BODY_MEMBERS})
_SPACE = re.compile(r"[ \t\n\r]*")
# Every backslash in JSON text starts an escape, so scanning them in order never misreads one.
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)


class MalformedMessage(ValueError):
    """A channel message that is not smee's JSON object with a body."""


@dataclass(frozen=True)
class ChannelMessage:
    """One delivery as the channel relayed it."""

    headers: dict[str, str]  # lower-case names
    body: bytes  # the bytes the sender signed (see the module's docstring)


def parse_message(data: str) -> ChannelMessage:
    """The delivery a channel message carries (MalformedMessage when it carries none)."""
    members = _members(data)
    headers = {
        name.lower(): value
        for name, (value, _) in members.items()
        if name not in _NOT_HEADERS and isinstance(value, str)
    }
    # The body is JSON by construction (the server parsed it as such); smee-client says so.
    headers["content-type"] = "application/json"
    for name in _RAW_BODY_MEMBERS:
        raw = members.get(name, (None, ""))[0]
        if isinstance(raw, str) and raw:
            return ChannelMessage(headers, raw.encode())
    if "body" not in members:
        raise MalformedMessage("the message has no body")
    return ChannelMessage(headers, _as_github_writes(members["body"][1]).encode())


def _as_github_writes(text: str) -> str:
    """JavaScript's JSON text as GitHub writes it: `\\u` escapes in upper-case hex."""

    def upper(escape: re.Match[str]) -> str:
        seq = escape[1]
        return "\\u" + seq[1:].upper() if seq[0] == "u" else escape[0]

    return _ESCAPE.sub(upper, text)


def _refuse_constant(name: str) -> Any:
    raise MalformedMessage(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _members(text: str) -> dict[str, tuple[Any, str]]:
    """The members of the JSON object `text`, by name: (value, the value's text as written)."""
    try:
        return _scan_object(text)
    except json.JSONDecodeError as exc:
        raise MalformedMessage(f"not JSON: {exc}") from None


def _scan_object(text: str) -> dict[str, tuple[Any, str]]:
    members: dict[str, tuple[Any, str]] = {}
    at = _skip_space(text, 0)
    if not text.startswith("{", at):
        raise MalformedMessage("not a JSON object")
    at = _skip_space(text, at + 1)
    closed = text.startswith("}", at)
    while not closed:
        name, at = _DECODER.raw_decode(text, at)
        if not isinstance(name, str):
            raise MalformedMessage("a member name is not a string")
        at = _skip_space(text, at)
        if not text.startswith(":", at):
            raise MalformedMessage("expected ':' after a member name")
        start = _skip_space(text, at + 1)
        value, at = _DECODER.raw_decode(text, start)
        members[name] = (value, text[start:at])  # the last of a repeated name wins, as in JS
        at = _skip_space(text, at)
        if text.startswith(",", at):
            at = _skip_space(text, at + 1)
        elif text.startswith("}", at):
            closed = True
        else:
            raise MalformedMessage("expected ',' or '}' after a member")
    if _skip_space(text, at + 1) != len(text):
        raise MalformedMessage("text after the JSON object")
    return members


def _skip_space(text: str, at: int) -> int:
    match = _SPACE.match(text, at)
    assert match is not None  # the pattern matches the empty string
    return match.end()
