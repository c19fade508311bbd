"""Backfill: page a repository's open issues and PRs into the mirror (filled in by issue #2 work)."""

from __future__ import annotations

from typing import Any


def backfill_functions() -> list[Any]:
    return []
