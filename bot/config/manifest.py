"""The GitHub App manifest: `app.yml` (Probot format) turned into the JSON of GitHub's
manifest flow (`POST https://github.com/settings/apps/new` with `manifest=<json>`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from bot.errors import ConfigError

WEBHOOK_PATH = "/webhooks/github"
# The parameters GitHub's manifest flow accepts; anything else in app.yml is a typo.
MANIFEST_KEYS = frozenset(
    {
        "name",
        "url",
        "hook_attributes",
        "redirect_url",
        "callback_urls",
        "setup_url",
        "description",
        "public",
        "default_events",
        "default_permissions",
        "request_oauth_on_install",
        "setup_on_update",
    }
)
# GitHub sends these to every App and refuses them as subscriptions.
ALWAYS_SENT_EVENTS = frozenset({"installation", "installation_repositories"})
ACCESS_LEVELS = frozenset({"read", "write", "admin"})


def app_yml_path() -> Path:
    """app.yml inside the `bot` package (a wheel bundles it there) or at the source tree's root."""
    here = Path(__file__).resolve().parent.parent  # bot/
    for candidate in (here / "app.yml", here.parent / "app.yml"):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"app.yml not found (looked in {here} and {here.parent})")


def load_app_yml(path: Path | None = None) -> dict[str, Any]:
    path = path or app_yml_path()
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a GitHub App manifest must be a mapping")
    return data


def normalise_base_url(base_url: str) -> str:
    """`https://bot.example.org/` -> `https://bot.example.org`; refuses anything not http(s)."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"--url must be an http(s) URL such as https://bot.example.org, not {base_url!r}"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"--url must not carry a query or fragment: {base_url!r}")
    return base_url.rstrip("/")


def github_manifest(app: dict[str, Any], base_url: str | None = None) -> dict[str, Any]:
    """The manifest GitHub expects; with `base_url`, homepage and webhook point at the bot."""
    _check(app)
    manifest = dict(app)
    if base_url is not None:
        base = normalise_base_url(base_url)
        manifest["url"] = base + "/"
        manifest["hook_attributes"] = {"url": base + WEBHOOK_PATH, "active": True}
    return manifest


def registration_manifest(
    app: dict[str, Any],
    *,
    base_url: str,
    redirect_url: str,
    webhook_url: str | None,
    name: str | None = None,
) -> dict[str, Any]:
    """The manifest the setup page posts to GitHub: the homepage and GitHub sign-in's callback
    at the bot, `redirect_url` where GitHub sends the browser back with the code, and the
    webhook at `webhook_url` (None: the App gets no webhook; GitHub refuses a
    `hook_attributes` without a URL, so the key is left out)."""
    manifest = github_manifest(app)
    base = normalise_base_url(base_url)
    manifest["url"] = base + "/"
    manifest["redirect_url"] = redirect_url
    manifest["callback_urls"] = [base + "/login/github/callback"]
    if webhook_url:
        manifest["hook_attributes"] = {"url": webhook_url, "active": True}
    else:
        manifest.pop("hook_attributes", None)
    if name:
        manifest["name"] = name
    return manifest


def _check(app: dict[str, Any]) -> None:
    """Catch in app.yml what GitHub would reject only after the user submitted the form."""
    unknown = sorted(set(app) - MANIFEST_KEYS)
    if unknown:
        raise ConfigError(f"app.yml: unknown manifest keys {unknown}")
    for key in ("name", "url"):
        if not isinstance(app.get(key), str) or not app[key]:
            raise ConfigError(f"app.yml: {key!r} is required and must be a string")
    permissions = app.get("default_permissions", {})
    if not isinstance(permissions, dict) or any(
        not isinstance(level, str) or level not in ACCESS_LEVELS for level in permissions.values()
    ):
        raise ConfigError("app.yml: default_permissions maps permission names to read|write|admin")
    events = app.get("default_events", [])
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ConfigError("app.yml: default_events must be a list of event names")
    refused = sorted(ALWAYS_SENT_EVENTS.intersection(events))
    if refused:
        raise ConfigError(
            f"app.yml: GitHub always sends {refused}; remove them from default_events"
        )
