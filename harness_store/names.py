"""Names of harnesses and skills: what they may be called (no database layer needed)."""

from __future__ import annotations

import re
from typing import Literal

from harness_store.errors import InvalidName

Kind = Literal["harness", "skill"]

NAME_MAX = 64
# The Agent Skills rule (lowercase, digits, single hyphens), used for harnesses too so that
# `/harness NAME@VERSION` and skill folder names never need quoting.
_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def validate_name(kind: Kind, name: str) -> str:
    """Return `name` if a harness or skill may be called that, else raise `InvalidName`."""
    if not isinstance(name, str) or not name:
        raise InvalidName(f"a {kind} needs a name")
    if len(name) > NAME_MAX or not _NAME.fullmatch(name):
        raise InvalidName(
            f"invalid {kind} name {name[:80]!r}: use lowercase letters, digits and single"
            f" hyphens, at most {NAME_MAX} characters (for example 'run-tests')"
        )
    return name
