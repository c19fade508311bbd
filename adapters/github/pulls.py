"""Pull requests: finding, opening, editing and merging them, and what reviews said.

Reads and writes answer GitHub's pull request object whole: the outbox keeps parts of it
(number, URL, head sha, mergeable state) in its effects' results.
"""

from __future__ import annotations

from adapters.base import Json, ReviewCommentInfo
from adapters.github.transport import GitHubTransport, checked_full_name, json_body, json_object

PULLS_PER_PAGE = 100  # GitHub's maximum; one head and base have one open PR at most


class PullRequestEndpoints(GitHubTransport):
    async def find_pull_request(
        self, full_name: str, head: str, base: str, installation_id: int
    ) -> Json | None:
        """The open pull request from `head` (a branch of the repository, or OWNER:BRANCH
        for a fork's) into `base`; None when there is none."""
        name = checked_full_name(full_name)
        owner = name.split("/")[0]
        label = head if ":" in head else f"{owner}:{head}"
        response = await self.request(
            "GET",
            f"/repos/{name}/pulls",
            installation_id=installation_id,
            params={"head": label, "base": base, "state": "open", "per_page": PULLS_PER_PAGE},
        )
        for pull in json_body(response) or []:
            if (pull.get("base") or {}).get("ref") == base:
                found: Json = pull
                return found
        return None

    async def create_pull_request(
        self,
        full_name: str,
        installation_id: int,
        *,
        title: str,
        head: str,
        base: str,
        body: str,
        draft: bool | None = None,
    ) -> Json:
        """Open a pull request; RequestRejected(422) when one is open already, when there
        is nothing between the branches, or when a branch is missing."""
        request: Json = {"title": title, "head": head, "base": base, "body": body}
        if draft is not None:
            request["draft"] = draft
        response = await self.request(
            "POST",
            f"/repos/{checked_full_name(full_name)}/pulls",
            installation_id=installation_id,
            json=request,
        )
        return json_object(response)

    async def pull_request(self, full_name: str, number: int, installation_id: int) -> Json:
        """The pull request as it is now (merged, mergeable_state, head, ...)."""
        response = await self.request(
            "GET",
            f"/repos/{checked_full_name(full_name)}/pulls/{number}",
            installation_id=installation_id,
        )
        return json_object(response)

    async def update_pull_request(
        self, full_name: str, number: int, installation_id: int, *, title: str, body: str
    ) -> Json:
        """Replace the pull request's title and body."""
        response = await self.request(
            "PATCH",
            f"/repos/{checked_full_name(full_name)}/pulls/{number}",
            installation_id=installation_id,
            json={"title": title, "body": body},
        )
        return json_object(response)

    async def merge_pull_request(
        self,
        full_name: str,
        number: int,
        installation_id: int,
        *,
        method: str,
        sha: str,
        commit_title: str | None = None,
        commit_message: str | None = None,
    ) -> str | None:
        """Merge (merge | squash | rebase) if the head is still `sha`; the merge commit's sha.

        GitHub refuses with RequestRejected: 409 when the head moved, 405 when it is not
        mergeable (conflicts, required reviews or checks), 422 for other reasons.
        """
        request: Json = {"merge_method": method, "sha": sha}
        if commit_title is not None:
            request["commit_title"] = commit_title
        if commit_message is not None:
            request["commit_message"] = commit_message
        response = await self.request(
            "PUT",
            f"/repos/{checked_full_name(full_name)}/pulls/{number}/merge",
            installation_id=installation_id,
            json=request,
        )
        merged = json_object(response).get("sha")
        return merged if isinstance(merged, str) else None

    async def review_comments(
        self, full_name: str, number: int, review_id: int, installation_id: int, *, limit: int
    ) -> list[ReviewCommentInfo]:
        """The comments one review left on the diff, at most `limit` (one page)."""
        response = await self.request(
            "GET",
            f"/repos/{checked_full_name(full_name)}/pulls/{number}/reviews/{review_id}/comments",
            installation_id=installation_id,
            params={"per_page": limit},
        )
        found = []
        for comment in json_body(response) or []:
            line = comment.get("line") or comment.get("original_line")
            found.append(
                ReviewCommentInfo(
                    path=str(comment.get("path") or ""),
                    line=line if isinstance(line, int) else None,
                    body=str(comment.get("body") or ""),
                )
            )
        return found
