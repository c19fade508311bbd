"""What the workspace accepts from a RunSpec before git sees it: a repository as two plain
path segments, a clone URL without credentials or command transports (and the one server
its token is for), a branch name git would take, and a safe directory name for it."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit

from runner.git import GitError, git, scrub

_SEGMENT = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


_TRANSPORT = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")  # `ext::cmd` and other remote helpers


class WorkspaceError(ValueError):
    """A name, URL or mirror the workspace refuses to work with."""


def repo_segments(full_name: str) -> tuple[str, str]:
    """("owner", "name") of "owner/name", refusing anything that is not two plain segments."""
    parts = full_name.split("/")
    if len(parts) != 2 or not all(
        _SEGMENT.match(part) and part not in (".", "..") for part in parts
    ):
        raise WorkspaceError(
            f"repository name {full_name!r} is not 'owner/name' of letters, digits, '.', '_', '-'"
        )
    # GitHub names are case-insensitive: one mirror per repository, however it is spelt.
    return parts[0].lower(), parts[1].lower()


def remote_url(url: str) -> str:
    """The clone URL as it may be stored and logged: no credentials, no command transports."""
    if not url or url != url.strip() or any(ord(c) < 32 for c in url) or url.startswith("-"):
        raise WorkspaceError(f"clone URL {scrub(url, None)!r} is empty or malformed")
    if _TRANSPORT.match(url):
        raise WorkspaceError(f"clone URL {scrub(url, None)!r} uses a transport helper (x::)")
    if "://" not in url:
        return url  # a local path or scp-like `git@host:owner/name`
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    if parts.password is not None:
        raise WorkspaceError(
            f"clone URL {scrub(url, None)!r} embeds credentials; pass the token separately"
        )
    if parts.scheme.lower() in ("http", "https"):
        # A bare username may itself be a token (GitHub accepts that); the token comes from
        # the credential helper, so drop it rather than write it into the mirror's config.
        return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return url  # ssh://git@host/...: the user name is part of the address


def token_scope(url: str) -> str | None:
    """`scheme://host[:port]` of an http(s) clone URL: the one server the token is for."""
    parts = urlsplit(url) if "://" in url else None
    if parts is None or parts.scheme.lower() not in ("http", "https"):
        return None  # ssh and local remotes never ask a credential helper
    return f"{parts.scheme.lower()}://{parts.netloc.rpartition('@')[2]}"


async def check_branch(branch: str) -> None:
    """Refuse a branch name git would refuse, or one that reads as an option or HEAD."""
    if not branch or branch.startswith("-") or branch == "HEAD" or len(branch) > 200:
        raise WorkspaceError(f"branch name {branch!r} is not allowed")
    try:
        await git("check-ref-format", f"refs/heads/{branch}", cwd=None, timeout=30)
    except GitError:
        raise WorkspaceError(f"branch name {branch!r} is not a valid git branch name") from None


def branch_slug(branch: str) -> str:
    """A single, safe directory name for a branch; distinct branches get distinct names."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", branch).strip(".-")[:80]
    return f"{readable}-{hashlib.sha256(branch.encode()).hexdigest()[:10]}"
