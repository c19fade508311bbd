"""What the roles answer with (adapters/base.py re-exports them): the records a code host
hands back for the decisions bot makes on them, its pages, and a tracker's comment."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

# An object as an API answered it, where a caller keeps it whole (see adapters/base.py).
Json = dict[str, Any]
T = TypeVar("T")


# --- what the code host answers -----------------------------------------------------------


@dataclass(frozen=True)
class AccessToken:
    """An installation access token and when GitHub expires it."""

    value: str = field(repr=False)  # a repr in a log or traceback must not show it
    expires_at: datetime


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


@dataclass(frozen=True)
class AppInfo:
    """The GitHub App itself, as GitHub knows it (`GET /app`)."""

    id: int
    slug: str
    name: str
    html_url: str
    owner: str | None  # the account that registered it


@dataclass(frozen=True)
class HookDelivery:
    """One attempt of GitHub to deliver one event (a redelivery is an attempt of its own,
    under the same `guid`, which is the `X-GitHub-Delivery` header we store)."""

    id: int
    guid: str
    delivered_at: datetime
    redelivery: bool
    status_code: int  # 0 when GitHub got no answer at all (timeout, refused connection)
    status: str  # "OK", "Invalid HTTP Response: 503", "timed out", ...
    event: str
    action: str | None
    installation_id: int | None

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status_code < 300


@dataclass(frozen=True)
class CheckRunInfo:
    """A check run on a commit, ours or another App's (CI)."""

    id: int
    name: str
    status: str | None  # queued | in_progress | completed (or GitHub's waiting states)
    conclusion: str | None  # success | failure | neutral | cancelled | skipped | ...
    external_id: str | None


@dataclass(frozen=True)
class CommitStatusInfo:
    """A commit status, the older way CI services report on a commit."""

    context: str
    state: str | None  # error | failure | pending | success


@dataclass(frozen=True)
class ReviewCommentInfo:
    """A review's comment on a line (or the whole file) of a pull request's diff."""

    path: str
    line: int | None  # None when on the whole file
    body: str


@dataclass(frozen=True)
class ProjectItems:
    """An issue's cards on project boards. Each card is the GraphQL object the query in
    adapters/github/projects.py asks for: `id`, `project { id title closed field }` and
    `fieldValueByName { name optionId }`."""

    items: list[Json]  # the cards on boards the App may read
    hidden: int  # cards GitHub answered null for: their board is out of the App's reach
    forbidden: list[Json]  # GitHub's FORBIDDEN errors, which say what it would not show


@dataclass(frozen=True)
class ProjectItemInfo:
    """A card on a board, as a `projects_v2_item` webhook's item id resolves."""

    item_id: str
    project_id: str | None
    repo: str | None  # OWNER/NAME of the issue on the card; None for PRs and drafts
    number: int | None  # the number; None for PRs and draft issues
    status: str | None  # the option of the asked single-select field; None when unset


# --- what an issue tracker answers ----------------------------------------------------------


@dataclass(frozen=True)
class TrackerComment:
    """A comment the bot posted or edited on a tracker's issue."""

    id: str
    url: str | None  # where a person reads it
