"""The arguments of `openase harness|skill`, checked: names, versions, NAME@VERSION, a
ticket as OWNER/REPO#NUMBER; each malformed one is a `ConfigError` saying the form."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from bot.config.names import is_repository
from bot.errors import ConfigError
from harness_store.errors import InvalidName
from harness_store.names import Kind, validate_name

# Version numbers are Postgres integers: nine digits keep every accepted one in range.
_NUMBER = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class Ref:
    """NAME or NAME@VERSION as written on the command line."""

    name: str
    version: int | None = None


def parse_version(value: str, what: str = "VERSION") -> int:
    """A version number from the command line; `ConfigError` unless a whole number >= 1."""
    if not _NUMBER.fullmatch(value) or int(value) < 1:
        raise ConfigError(f"{what} must be a whole number from 1 (for example 3), got {value!r}")
    return int(value)


def parse_name(kind: Kind, value: str) -> str:
    """A harness or skill name from the command line; `ConfigError` when malformed."""
    try:
        return validate_name(kind, value)
    except InvalidName as error:
        raise ConfigError(str(error)) from None


def parse_ref(kind: Kind, value: str) -> Ref:
    """NAME or NAME@VERSION; `ConfigError` naming the expected form otherwise."""
    name, at, version = value.partition("@")
    if at and not (_NUMBER.fullmatch(version) and int(version) >= 1):
        raise ConfigError(
            f"expected NAME or NAME@VERSION with VERSION a whole number from 1 (for example "
            f"{'coder' if kind == 'harness' else 'run-tests'}@3), got {value!r}"
        )
    return Ref(parse_name(kind, name), int(version) if at else None)


def parse_ticket(value: str) -> tuple[str, int]:
    """OWNER/REPO#NUMBER as (full name, number)."""
    full_name, hash_, number = value.rpartition("#")
    if (
        not hash_
        or not _NUMBER.fullmatch(number)
        or int(number) < 1
        or not is_repository(full_name)
    ):
        raise ConfigError(
            f"expected OWNER/REPO#NUMBER (for example octocat/hello-world#12), got {value!r}"
        )
    return full_name, int(number)


def default_author() -> str:
    """Who a version is recorded as being by when --author is not given."""
    return os.environ.get("USER", "").strip() or "cli"
