"""Test helpers: signed webhook sender, fixture payloads, a test App key."""

from __future__ import annotations

import functools
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.github.verify import sign

FIXTURES = Path(__file__).parents[1] / "fixtures"
TEST_WEBHOOK_SECRET = "test-webhook-secret-not-real"
# A GitHub Enterprise Server-style base URL proves OPENASE_GITHUB_API_URL is honoured.
TEST_API_URL = "https://ghe.example.test/api/v3"


@functools.cache
def test_private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@functools.cache
def _examples(event: str) -> list[dict[str, Any]]:
    path = FIXTURES / "github" / "webhooks" / f"{event}.json"
    examples: list[dict[str, Any]] = json.loads(path.read_text())
    return examples


def github_example(event: str, action: str | None = None, index: int = 0) -> dict[str, Any]:
    """A deep copy of a real example payload from @octokit/webhooks-examples."""
    matching = [e for e in _examples(event) if action is None or e.get("action") == action]
    if not matching:
        raise LookupError(f"no example for {event}.{action}")
    copy: dict[str, Any] = json.loads(json.dumps(matching[index]))
    return copy


def github_examples(event: str) -> list[dict[str, Any]]:
    return [json.loads(json.dumps(e)) for e in _examples(event)]


def github_event_names() -> list[str]:
    return sorted(p.stem for p in (FIXTURES / "github" / "webhooks").glob("*.json"))


class GitHubWebhookSender:
    """Posts payloads to /webhooks/github the way GitHub does (headers, HMAC signature)."""

    def __init__(self, client: httpx.AsyncClient, secret: str = TEST_WEBHOOK_SECRET) -> None:
        self.client = client
        self.secret = secret.encode()

    async def send(
        self,
        event: str,
        payload: dict[str, Any] | bytes,
        *,
        delivery_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        base = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/test",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(self.secret, body),
        }
        base.update(headers or {})
        return await self.client.post(
            "/webhooks/github", content=body, headers={k: v for k, v in base.items() if v}
        )
