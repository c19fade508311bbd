"""app.yml: the permissions and events the product needs, in a form GitHub accepts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.config.manifest import ALWAYS_SENT_EVENTS, github_manifest, load_app_yml
from bot.errors import ConfigError

# The permission GitHub requires before an App may subscribe to each event.
EVENT_NEEDS = {
    "issues": "issues",
    "issue_comment": "issues",
    "pull_request": "pull_requests",
    "pull_request_review": "pull_requests",
    "pull_request_review_comment": "pull_requests",
    "check_run": "checks",
    "check_suite": "checks",
    "projects_v2_item": "organization_projects",
    "label": "metadata",
    "repository": "metadata",
}


@pytest.fixture
def app() -> dict[str, Any]:
    return load_app_yml()


def test_permissions_are_what_the_product_needs(app: dict[str, Any]) -> None:
    assert app["default_permissions"] == {
        "issues": "write",
        "pull_requests": "write",
        "checks": "write",
        "contents": "write",
        "metadata": "read",
        "organization_projects": "write",
        "members": "read",
        "statuses": "read",
    }


def test_events_are_subscribed_and_each_has_its_permission(app: dict[str, Any]) -> None:
    assert sorted(app["default_events"]) == sorted(EVENT_NEEDS)
    for event in app["default_events"]:
        assert EVENT_NEEDS[event] in app["default_permissions"], event


def test_installation_events_are_not_subscriptions(app: dict[str, Any]) -> None:
    # GitHub always sends them and rejects them in default_events.
    assert not ALWAYS_SENT_EVENTS & set(app["default_events"])


def test_identity(app: dict[str, Any]) -> None:
    assert app["name"] == "OpenASE"
    assert app["public"] is False
    assert app["description"]
    assert app["url"].startswith("http")


@pytest.mark.parametrize(
    ("base", "homepage", "webhook"),
    [
        ("https://bot.example.org", "https://bot.example.org/", "https://bot.example.org/webhooks/github"),
        ("https://bot.example.org/", "https://bot.example.org/", "https://bot.example.org/webhooks/github"),
        ("https://example.org/openase/", "https://example.org/openase/", "https://example.org/openase/webhooks/github"),
        ("http://127.0.0.1:2080", "http://127.0.0.1:2080/", "http://127.0.0.1:2080/webhooks/github"),
    ],
)  # fmt: skip
def test_base_url_points_homepage_and_webhook_at_the_bot(
    app: dict[str, Any], base: str, homepage: str, webhook: str
) -> None:
    manifest = github_manifest(app, base)
    assert manifest["url"] == homepage
    assert manifest["hook_attributes"] == {"url": webhook, "active": True}
    # Everything else is app.yml as written, and it all serialises for the form post.
    assert {k: v for k, v in manifest.items() if k not in ("url", "hook_attributes")} == {
        k: v for k, v in app.items() if k != "url"
    }
    assert json.loads(json.dumps(manifest)) == manifest


@pytest.mark.parametrize(
    "base", ["bot.example.org", "ftp://bot.example.org", "https://", "https://x.org/?a=1"]
)
def test_base_url_must_be_plain_http(app: dict[str, Any], base: str) -> None:
    with pytest.raises(ConfigError, match="--url"):
        github_manifest(app, base)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"default_event": ["issues"]}, "unknown manifest keys"),
        ({"name": ""}, "'name' is required"),
        ({"default_permissions": {"issues": "rw"}}, "read|write|admin"),
        ({"default_events": ["issues", "installation"]}, "always sends"),
        ({"default_events": "issues"}, "must be a list"),
    ],
)
def test_mistakes_in_app_yml_are_caught_before_github_sees_them(
    app: dict[str, Any], change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        github_manifest({**app, **change})
