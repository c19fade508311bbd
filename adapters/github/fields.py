"""Typed reads from a raw GitHub payload that fail with the JSON path of what is wrong."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from adapters.base import PayloadError

Json = dict[str, Any]


def obj(data: Json, key: str, path: str) -> Json:
    value = data.get(key)
    if not isinstance(value, dict):
        raise PayloadError(f"{path}.{key}: expected an object, got {_kind(value)}")
    return value


def opt_obj(data: Json, key: str, path: str) -> Json | None:
    if data.get(key) is None:
        return None
    return obj(data, key, path)


def integer(data: Json, key: str, path: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise PayloadError(f"{path}.{key}: expected an integer, got {_kind(value)}")
    return value


def opt_integer(data: Json, key: str, path: str) -> int | None:
    if data.get(key) is None:
        return None
    return integer(data, key, path)


def string(data: Json, key: str, path: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise PayloadError(f"{path}.{key}: expected a string, got {_kind(value)}")
    return value


def opt_string(data: Json, key: str, path: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{path}.{key}: expected a string or null, got {_kind(value)}")
    return value


def boolean(data: Json, key: str, path: str, default: bool = False) -> bool:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise PayloadError(f"{path}.{key}: expected true or false, got {_kind(value)}")
    return value


def array(data: Json, key: str, path: str) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise PayloadError(f"{path}.{key}: expected an array, got {_kind(value)}")
    return value


def objects(data: Json, key: str, path: str) -> list[Json]:
    """The array under `key`, each of its items an object (missing or null: empty)."""
    items = array(data, key, path)
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise PayloadError(f"{path}.{key}[{index}]: expected an object, got {_kind(item)}")
    return items


def timestamp(data: Json, key: str, path: str) -> datetime | None:
    """GitHub sends ISO 8601 strings, and epoch seconds in a few places (push payloads)."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise PayloadError(f"{path}.{key}: not an ISO 8601 timestamp: {value[:40]!r}") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise PayloadError(f"{path}.{key}: expected a timestamp, got {_kind(value)}")


def login(data: Json, key: str, path: str) -> str | None:
    """The `login` of a user object under `key` (null for ghost users)."""
    user = opt_obj(data, key, path)
    return opt_string(user, "login", f"{path}.{key}") if user else None


def user_type(data: Json, key: str, path: str) -> str | None:
    """The `type` of a user object under `key`: "User", "Bot", "Organization" (null: ghost)."""
    user = opt_obj(data, key, path)
    return opt_string(user, "type", f"{path}.{key}") if user else None


def names(items: list[Any], path: str, field: str = "name") -> tuple[str, ...]:
    """The `field` of each object in `items` (label names, assignee logins)."""
    out = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise PayloadError(f"{path}[{index}]: expected an object, got {_kind(item)}")
        out.append(string(item, field, f"{path}[{index}]"))
    return tuple(out)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
