"""The GitHub App client: every call the bot makes to GitHub, typed (STYLE practice 14).

`GitHubApp` is the code host (adapters.base.CodeHost). Its endpoints are grouped by what
they are about, one module each beside this one: issues.py (labels, comments, reactions),
checks.py, pulls.py, access.py (permissions, teams), projects.py (Projects v2 boards,
GraphQL) and changes.py (what changed since a time); the repository endpoints are here.
transport.py sends the requests (tokens, paging, rate limits), auth.py holds the App's
credentials.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncGenerator
from urllib.parse import quote

from adapters.base import (
    CachedPage,
    CodeHost,
    EtagStore,
    InstallationInfo,
    Json,
    Page,
    PayloadError,
    PullRequestChanged,
    RepoFile,
    RepoInfo,
    TicketUpserted,
)
from adapters.errors import BranchMissing, RequestRejected
from adapters.github.access import AccessEndpoints
from adapters.github.changes import ChangeEndpoints
from adapters.github.checks import CheckEndpoints
from adapters.github.deliveries import DeliveryEndpoints
from adapters.github.issues import IssueEndpoints
from adapters.github.objects import (
    installation_from_api,
    pull_request_changed,
    pull_request_from_api,
    repo_from_api,
    ticket_from_issue,
)
from adapters.github.projects import ProjectEndpoints
from adapters.github.pulls import PullRequestEndpoints
from adapters.github.transport import checked_full_name, json_body, json_object

# The client and the types of its answers that are not records (bot/registry.py takes the
# paging types here).
__all__ = ["CachedPage", "EtagStore", "GitHubApp", "Page", "RepoFile"]

_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1, or SHA-256 repositories


class GitHubApp(
    IssueEndpoints,
    CheckEndpoints,
    PullRequestEndpoints,
    AccessEndpoints,
    ProjectEndpoints,
    DeliveryEndpoints,
    ChangeEndpoints,
):
    """A GitHub App against one API base URL: as the App, and as each of its installations."""

    async def repo_installation(self, full_name: str) -> InstallationInfo:
        """The installation of this App that covers `full_name` (asked as the App)."""
        try:
            response = await self.request(
                "GET", f"/repos/{checked_full_name(full_name)}/installation", installation_id=None
            )
        except RequestRejected as exc:
            if exc.status != 404:
                raise
            raise RequestRejected(
                404, f"the GitHub App is not installed on {full_name}, or it does not exist"
            ) from exc
        return installation_from_api(json_object(response))

    async def repository(self, full_name: str, installation_id: int) -> RepoInfo:
        """The repository as the installation sees it."""
        response = await self.request(
            "GET", f"/repos/{checked_full_name(full_name)}", installation_id=installation_id
        )
        return repo_from_api(json_object(response))

    def open_issues(
        self, repo: RepoInfo, installation_id: int, etags: EtagStore | None = None
    ) -> AsyncGenerator[Page[TicketUpserted], None]:
        """Open issues as ticket events; PRs, which this endpoint also lists, are skipped."""

        def convert(item: Json) -> TicketUpserted | None:
            if "pull_request" in item:
                return None
            return TicketUpserted(ticket=ticket_from_issue(item, repo), action="backfill")

        return self.pages(
            f"/repos/{repo.full_name}/issues",
            installation_id=installation_id,
            params={"state": "open"},
            convert=convert,
            etags=etags,
        )

    def open_pull_requests(
        self, repo: RepoInfo, installation_id: int, etags: EtagStore | None = None
    ) -> AsyncGenerator[Page[PullRequestChanged], None]:
        """Open pull requests, with the issues their bodies close."""

        def convert(item: Json) -> PullRequestChanged:
            return pull_request_changed("backfill", pull_request_from_api(item, repo))

        return self.pages(
            f"/repos/{repo.full_name}/pulls",
            installation_id=installation_id,
            params={"state": "open"},
            convert=convert,
            etags=etags,
        )

    # --- files at a commit (the workflow config; issue #4) -----------------------------

    async def branch_head_sha(
        self, full_name: str, branch: str, installation_id: int
    ) -> str | None:
        """The commit a branch points at; None when the repository has no commit at all.
        BranchMissing when it has commits but no such branch (renamed, or deleted)."""
        path = f"/repos/{checked_full_name(full_name)}/git/ref/heads/{quote(branch, safe='/')}"
        try:
            response = await self.request("GET", path, installation_id=installation_id)
        except RequestRejected as exc:
            if exc.status == 409:  # "Git Repository is empty."
                return None
            if exc.status == 404:
                raise BranchMissing(f"{full_name} has no branch {branch!r}") from exc
            raise
        target = json_object(response).get("object")
        sha = target.get("sha") if isinstance(target, dict) else None
        if not isinstance(sha, str) or not _SHA.fullmatch(sha):
            raise PayloadError(f"GET {path}: the ref carries no commit sha")
        return sha

    async def file_at(
        self, full_name: str, path: str, ref: str, installation_id: int
    ) -> RepoFile | None:
        """A file as stored at `ref` (give a commit sha); None when nothing is at `path`."""
        url = f"/repos/{checked_full_name(full_name)}/contents/{quote(path.strip('/'), safe='/')}"
        try:
            response = await self.request(
                "GET", url, installation_id=installation_id, params={"ref": ref}
            )
        except RequestRejected as exc:
            if exc.status == 404:
                return None
            raise
        body = json_body(response)
        if isinstance(body, list):
            return RepoFile(path=path, kind="dir", size=0, sha=None, content=None)
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            raise PayloadError(f"GET {url}: expected a content object")
        size = body.get("size")
        content = None
        # Files over 1 MB come with encoding "none" and no content: their size says enough.
        if body["type"] == "file" and body.get("encoding") == "base64":
            try:
                content = base64.b64decode(str(body.get("content", "")))
            except ValueError:
                raise PayloadError(f"GET {url}: content is not base64") from None
        return RepoFile(
            path=path,
            kind=body["type"],
            size=size if isinstance(size, int) else len(content or b""),
            sha=body.get("sha") if isinstance(body.get("sha"), str) else None,
            content=content,
        )


# mypy holds the client to its role: a method that drifts from CodeHost fails here.
_ROLE: type[CodeHost] = GitHubApp
