"""The built-in harness and skill texts, read from the data files under `builtin/`.

Kept apart from `seed` so that reading them (`openase try`) needs no database layer.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

from harness_store.skills import read_files


def _builtin() -> Traversable:
    return files("harness_store") / "builtin"


def builtin_harnesses() -> dict[str, str]:
    """Built-in harness texts by name."""
    folder = _builtin() / "harnesses"
    return {
        entry.name.removesuffix(".md"): entry.read_text(encoding="utf-8")
        for entry in sorted(folder.iterdir(), key=lambda item: item.name)
        if entry.is_file() and entry.name.endswith(".md")
    }


def builtin_skills() -> dict[str, dict[str, str]]:
    """Built-in skill folders by name."""
    folder = _builtin() / "skills"
    return {
        entry.name: read_files(entry)
        for entry in sorted(folder.iterdir(), key=lambda item: item.name)
        if entry.is_dir()
    }
