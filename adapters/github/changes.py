"""What changed in a repository since a time: its issues and pull requests by the time they
were last updated, for bringing the mirror back in step with what webhooks missed.

Both lists are asked conditionally (ETags), so a repository where nothing changed costs a
304, which GitHub does not count against the rate limit; the caller keeps `since` the same
while nothing changes, so the URLs (and their ETags) stay the same too. The issues
endpoint filters by `since` itself. The pulls endpoint cannot: it is read most recently
updated first, and paging stops after the first page that reaches back past `since`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import UTC, datetime

from adapters.base import EtagStore, Json, Page, PullRequestChanged, RepoInfo, TicketUpserted
from adapters.github.fields import timestamp
from adapters.github.objects import pull_request_changed, pull_request_from_api, ticket_from_issue
from adapters.github.transport import GitHubTransport, checked_full_name

# The action of the events these lists yield: what happened is for the caller to tell, by
# comparing each with what it knew before.
RECONCILE = "reconcile"


class ChangeEndpoints(GitHubTransport):
    def issues_changed_since(
        self,
        repo: RepoInfo,
        installation_id: int,
        since: datetime,
        etags: EtagStore | None = None,
    ) -> AsyncGenerator[Page[TicketUpserted], None]:
        """Issues, open and closed, updated at or after `since`, least recently updated
        first; the pull requests this endpoint lists too are left out."""

        def convert(item: Json) -> TicketUpserted | None:
            if "pull_request" in item:
                return None
            return TicketUpserted(ticket=ticket_from_issue(item, repo), action=RECONCILE)

        return self.pages(
            f"/repos/{checked_full_name(repo.full_name)}/issues",
            installation_id=installation_id,
            params={
                "state": "all",
                "sort": "updated",
                "direction": "asc",
                "since": github_time(since),
            },
            convert=convert,
            etags=etags,
        )

    def pull_requests_changed_since(
        self,
        repo: RepoInfo,
        installation_id: int,
        since: datetime,
        etags: EtagStore | None = None,
    ) -> AsyncGenerator[Page[PullRequestChanged], None]:
        """Pull requests, open and closed, updated at or after `since`, most recently
        updated first, with the issues their bodies close."""

        def convert(item: Json) -> PullRequestChanged | None:
            pr = pull_request_from_api(item, repo)
            if pr.updated_at is not None and pr.updated_at < since:
                return None
            return pull_request_changed(RECONCILE, pr)

        def reaches_back(items: list[Json]) -> bool:
            return any(_older(item, since) for item in items)

        return self.pages(
            f"/repos/{checked_full_name(repo.full_name)}/pulls",
            installation_id=installation_id,
            # Not `since`: the page URLs stay the same from pass to pass, so do their ETags.
            params={"state": "all", "sort": "updated", "direction": "desc"},
            convert=convert,
            etags=etags,
            last_page=reaches_back,
        )


def github_time(moment: datetime) -> str:
    """ISO 8601 as GitHub's `since` takes it: UTC, whole seconds (earlier, never later)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _older(item: Json, since: datetime) -> bool:
    updated = timestamp(item, "updated_at", "pull_request")
    return updated is not None and updated < since
