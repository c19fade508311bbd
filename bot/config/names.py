"""Names people type on command lines and in config: a GitHub repository as OWNER/REPO."""

from __future__ import annotations

import re

# GitHub's rules: owner 1-39 alphanumerics or single hyphens, repository name up to 100
# characters of letters, digits, '.', '-', '_'.
_REPO = re.compile(
    r"^(?P<owner>[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38})/(?P<name>[A-Za-z0-9._-]{1,100})$"
)


def is_repository(value: str) -> bool:
    """Whether `value` is a repository's OWNER/REPO as GitHub allows it."""
    match = _REPO.match(value)
    return match is not None and match["name"] not in (".", "..")
