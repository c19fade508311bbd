"""The GitHub App registered through the setup page (GitHub's manifest flow), kept in the
data dir as `github-app.json` (mode 0600) and read at start by every process that acts as
the App.

Settings from the environment win: the stored App fills only what the environment leaves
unset, group by group (id and key; OAuth client id and secret; webhook secret), so an App
configured by `OPENASE_GITHUB_APP_ID` is never mixed with a stored one's key.

Nothing here logs a secret: the file's contents go into `SecretStr` settings, and the
record's secrets are kept out of its repr.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bot.errors import ConfigError
from bot.registry import RegisteredApp
from bot.servers.services import SECRET_FILE
from bot.settings import Settings

APP_FILE = "github-app.json"


def app_file(settings: Settings) -> Path:
    return settings.data_dir / APP_FILE


def save_app(settings: Settings, app: RegisteredApp) -> Path:
    """Keep `app` for this deployment: written aside, then renamed into place, so a reader
    sees the old file or the new one, never half of one; mode 0600 from the start."""
    path = app_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "id": app.id,
        "slug": app.slug,
        "name": app.name,
        "html_url": app.html_url,
        "owner": app.owner,
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "webhook_secret": app.webhook_secret,
        "pem": app.private_key,
        # The GitHub the App lives on: a stored App is not used against another one.
        "api_url": settings.api_url,
        "registered_at": datetime.now(UTC).isoformat(),
    }
    aside = path.with_name(f".{APP_FILE}.{os.getpid()}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(record, out, indent=2)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(aside, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            aside.unlink()
    return path


def stored_app(settings: Settings) -> RegisteredApp | None:
    """The App the setup page registered for this deployment's GitHub, or None.
    ConfigError (naming the file and what is wrong) when it cannot be used."""
    path = app_file(settings)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the stored GitHub App: {exc.strerror}") from exc
    try:
        data: Any = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("not an object")
        app = RegisteredApp(
            id=_int(data, "id"),
            slug=_str(data, "slug"),
            name=_str(data, "name"),
            html_url=_str(data, "html_url"),
            owner=_opt_str(data, "owner"),
            client_id=_str(data, "client_id"),
            private_key=_str(data, "pem"),
            webhook_secret=_opt_str(data, "webhook_secret"),
            client_secret=_str(data, "client_secret"),
        )
        api_url = _str(data, "api_url")
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(
            f"{path}: not a GitHub App record ({exc}); delete it and register the App again "
            "on the setup page (/setup)"
        ) from None
    if api_url.rstrip("/") != settings.api_url:
        return None  # an App of another GitHub (OPENASE_GITHUB_API_URL changed)
    return app


def with_stored_app(settings: Settings) -> Settings:
    """`settings` with the stored App's credentials wherever the environment set none."""
    app = stored_app(settings)
    if app is None:
        return settings
    return adopt_app(settings, app, previous=None)


def adopt_app(
    settings: Settings, app: RegisteredApp, *, previous: RegisteredApp | None
) -> Settings:
    """`settings` acting as `app`. Each group of credentials that is unset, or that came from
    the `previous` stored App (or, for the webhook secret, from `openase up`'s generated
    file), is replaced; whatever the environment set stays."""
    was = previous
    update: dict[str, object] = {}
    if (
        settings.github_private_key_path is None
        and _ours(settings.github_app_id, was.id if was else None)
        and _ours(_plain(settings.github_private_key), was.private_key if was else None)
    ):
        update["github_app_id"] = app.id
        update["github_private_key"] = SecretStr(app.private_key)
    if _ours(settings.github_client_id, was.client_id if was else None) and _ours(
        _plain(settings.github_client_secret), was.client_secret if was else None
    ):
        update["github_client_id"] = app.client_id
        update["github_client_secret"] = SecretStr(app.client_secret)
    if app.webhook_secret is not None and _ours(
        _plain(settings.github_webhook_secret),
        was.webhook_secret if was else None,
        _generated(settings),
    ):
        update["github_webhook_secret"] = SecretStr(app.webhook_secret)
    return settings.model_copy(update=update) if update else settings


def _ours(current: object, *set_by_us: object) -> bool:
    """Whether a setting is unset or holds a value we put there (not the environment)."""
    return current is None or any(value is not None and current == value for value in set_by_us)


def app_from_environment(settings: Settings) -> bool:
    """Whether the environment configures a GitHub App (the setup page then registers none:
    it would not be used)."""
    if settings.github_private_key_path is not None:
        return True
    if settings.github_app_id is None:
        return False
    try:
        stored = stored_app(settings)
    except ConfigError:
        return True  # a damaged record configures nothing: the id came from elsewhere
    return stored is None or stored.id != settings.github_app_id


def _generated(settings: Settings) -> str | None:
    """The webhook secret `openase up` generated before any App was registered."""
    try:
        return (settings.data_dir / SECRET_FILE).read_text().strip() or None
    except OSError:
        return None


def _plain(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()


def _int(data: dict[str, Any], key: str) -> int:
    value = data[key]
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{key!r} must be a positive integer")
    return value


def _str(data: dict[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key!r} must be a non-empty string")
    return value


def _opt_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string or null")
    return value
