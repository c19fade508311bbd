"""A Slack incoming webhook: the notification as a Block Kit message with its links."""

from __future__ import annotations

import json
from typing import Any

from adapters.notify.http import TIMEOUT_SECONDS, post


def escape(text: str) -> str:
    """Text as Slack's mrkdwn reads it literally (`&`, `<`, `>` are its markup)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, text: str) -> str:
    return f"<{url.replace('|', '%7C').replace('>', '%3E')}|{escape(text)}>"


def blocks(
    headline: str, details: str, context: str, buttons: list[tuple[str, str]]
) -> dict[str, Any]:
    """A message: a headline (mrkdwn), its details, a context line, link buttons
    (text, URL). `text` is the fallback notifications and screen readers show."""
    message_blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": headline[:3000]}},
    ]
    if details:
        message_blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": details[:3000]}}
        )
    message_blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    if buttons:
        message_blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": text[:75]},
                        "url": url,
                    }
                    for text, url in buttons[:5]
                ],
            }
        )
    return {"text": headline[:3000], "blocks": message_blocks}


async def send(url: str, message: dict[str, Any]) -> int:
    """POST the message to the incoming webhook; its status."""
    body = json.dumps(message).encode()
    return await post("Slack", url, body, {}, seconds=TIMEOUT_SECONDS)
