"""The roles an adapter plays (STYLE practice 4) and the types the roles speak in.

A `WebhookParser` turns one delivery into normalized events.

The tracker-neutral records and normalized events are defined in adapters/normalized.py
and re-exported here: `adapters.base` is the one import of everything tracker-neutral.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from adapters.normalized import (
    CheckRunRequested,
    ChecksCompleted,
    CommentCreated,
    CommentDeleted,
    CommentEdited,
    CommentInfo,
    InstallationChanged,
    InstallationInfo,
    IssueRef,
    LabelChanged,
    LabelsChanged,
    NormalizedEvent,
    ParsedDelivery,
    PayloadError,
    ProjectItemChanged,
    PullRequestChanged,
    PullRequestInfo,
    PullRequestReviewed,
    RepoInfo,
    RepositoriesChanged,
    RepositoryChanged,
    ReviewCommented,
    StatusChanged,
    TicketInfo,
    TicketRemoved,
    TicketUpserted,
    TrackerLabelChanged,
)

__all__ = [
    "CachedPage",
    "CheckRunRequested",
    "ChecksCompleted",
    "CommentCreated",
    "CommentDeleted",
    "CommentEdited",
    "CommentInfo",
    "EtagStore",
    "InstallationChanged",
    "InstallationInfo",
    "IssueRef",
    "Json",
    "LabelChanged",
    "LabelsChanged",
    "NormalizedEvent",
    "Page",
    "ParsedDelivery",
    "PayloadError",
    "ProjectItemChanged",
    "PullRequestChanged",
    "PullRequestInfo",
    "PullRequestReviewed",
    "RepoFile",
    "RepoInfo",
    "RepositoriesChanged",
    "RepositoryChanged",
    "ReviewCommented",
    "StatusChanged",
    "TicketInfo",
    "TicketRemoved",
    "TicketUpserted",
    "TrackerLabelChanged",
    "WebhookParser",
]

# An object as an API answered it. Where a caller keeps parts of an answer in its own
# records (an effect's result) the object is handed on whole rather than re-typed here.
Json = dict[str, Any]
T = TypeVar("T")


# --- what the code host answers -----------------------------------------------------------


@dataclass(frozen=True)
class CachedPage:
    """What we remember of a page: its ETag and the next page's URL at that time."""

    etag: str
    next_url: str | None


class EtagStore(Protocol):
    """Remembers ETags per page URL, so a re-sync asks "changed since?" (304s are free)."""

    async def get(self, url: str) -> CachedPage | None: ...

    async def put(self, url: str, page: CachedPage) -> None: ...


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list endpoint; `not_modified` pages (304) carry no items."""

    url: str
    items: tuple[T, ...]
    not_modified: bool
    next_url: str | None


@dataclass(frozen=True)
class RepoFile:
    """What the contents API says is at a path: a file (with its bytes) or something else."""

    path: str
    kind: str  # "file", "dir", "symlink" (pointing outside the repository) or "submodule"
    size: int
    sha: str | None  # the blob's sha
    content: bytes | None = field(repr=False)  # None unless a file of at most 1 MB


# --- the roles --------------------------------------------------------------------------------


class WebhookParser(Protocol):
    """Turns one webhook delivery of a tracker into normalized events."""

    def __call__(self, event: str, payload: dict[str, object]) -> ParsedDelivery: ...
