"""A secret planted where a runner user's SSH keys and cloud credentials live (its home), for
tests proving that a sandboxed run cannot read it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def home_canary(text: str) -> Iterator[Path]:
    """A file with `text` in this user's home, removed afterwards."""
    path = Path.home() / f".openase-canary-{uuid.uuid4().hex}"
    path.write_text(text)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
