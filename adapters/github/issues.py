"""An issue's (or pull request's) conversation: labels, comments, reactions, its state.

Issue numbers are shared by issues and pull requests, so these serve both. Writes answer
GitHub's object whole where the outbox keeps parts of it in an effect's result.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing

from adapters.base import Json
from adapters.errors import RequestRejected
from adapters.github.transport import (
    GitHubTransport,
    checked_full_name,
    json_body,
    json_object,
    segment,
)


class IssueEndpoints(GitHubTransport):
    # --- labels ------------------------------------------------------------------------

    async def issue_label_names(
        self, full_name: str, number: int, installation_id: int
    ) -> list[str]:
        """The names of the labels the issue carries (every page)."""
        pages = self.pages(
            f"/repos/{checked_full_name(full_name)}/issues/{number}/labels",
            installation_id=installation_id,
            params={},
            convert=lambda label: str(label["name"]),
        )
        async with aclosing(pages):
            return [name async for page in pages for name in page.items]

    async def add_issue_labels(
        self, full_name: str, number: int, labels: Sequence[str], installation_id: int
    ) -> None:
        """Add labels to the issue; GitHub creates a label the repository lacks (grey)."""
        await self.request(
            "POST",
            f"/repos/{checked_full_name(full_name)}/issues/{number}/labels",
            installation_id=installation_id,
            json={"labels": list(labels)},
        )

    async def remove_issue_label(
        self, full_name: str, number: int, name: str, installation_id: int
    ) -> None:
        """Take a label off the issue; RequestRejected(404) when it does not carry it."""
        await self.request(
            "DELETE",
            f"/repos/{checked_full_name(full_name)}/issues/{number}/labels/{segment(name)}",
            installation_id=installation_id,
        )

    async def has_repo_label(self, full_name: str, name: str, installation_id: int) -> bool:
        """Whether the repository has a label of that name (GitHub ignores its case)."""
        try:
            await self.request(
                "GET",
                f"/repos/{checked_full_name(full_name)}/labels/{segment(name)}",
                installation_id=installation_id,
            )
        except RequestRejected as exc:
            if exc.status != 404:
                raise
            return False
        return True

    async def create_repo_label(
        self,
        full_name: str,
        name: str,
        installation_id: int,
        *,
        color: str | None = None,
        description: str | None = None,
    ) -> None:
        """A new repository label; RequestRejected(422) when one of that name exists."""
        body: Json = {"name": name}
        if color is not None:
            body["color"] = color  # hex without '#'
        if description is not None:
            body["description"] = description
        await self.request(
            "POST",
            f"/repos/{checked_full_name(full_name)}/labels",
            installation_id=installation_id,
            json=body,
        )

    # --- comments ----------------------------------------------------------------------

    async def issue_comments(
        self, full_name: str, number: int, installation_id: int
    ) -> AsyncGenerator[Json, None]:
        """The issue's comments, oldest first; pages are fetched as the caller reads on."""
        pages = self.pages(
            f"/repos/{checked_full_name(full_name)}/issues/{number}/comments",
            installation_id=installation_id,
            params={},
            convert=lambda comment: comment,
        )
        async with aclosing(pages):
            async for page in pages:
                for comment in page.items:
                    yield comment

    async def create_issue_comment(
        self, full_name: str, number: int, body: str, installation_id: int
    ) -> Json:
        """A new comment on the issue, as GitHub answers it."""
        response = await self.request(
            "POST",
            f"/repos/{checked_full_name(full_name)}/issues/{number}/comments",
            installation_id=installation_id,
            json={"body": body},
        )
        return json_object(response)

    async def update_issue_comment(
        self, full_name: str, comment_id: int, body: str, installation_id: int
    ) -> Json:
        """Replace a comment's body; RequestRejected(404) when it was deleted."""
        response = await self.request(
            "PATCH",
            f"/repos/{checked_full_name(full_name)}/issues/comments/{comment_id}",
            installation_id=installation_id,
            json={"body": body},
        )
        return json_object(response)

    # --- reactions ---------------------------------------------------------------------
    # `content` is GitHub's name of a reaction: +1 -1 laugh confused heart hooray rocket
    # eyes. GitHub answers a reaction that is already there with it (200), not an error.

    async def react_to_issue(
        self, full_name: str, number: int, content: str, installation_id: int
    ) -> Json:
        """React to the issue itself."""
        return await self._react(
            f"/repos/{checked_full_name(full_name)}/issues/{number}/reactions",
            content,
            installation_id,
        )

    async def react_to_issue_comment(
        self, full_name: str, comment_id: int, content: str, installation_id: int
    ) -> Json:
        """React to a comment in an issue's or pull request's conversation."""
        return await self._react(
            f"/repos/{checked_full_name(full_name)}/issues/comments/{comment_id}/reactions",
            content,
            installation_id,
        )

    async def react_to_review_comment(
        self, full_name: str, comment_id: int, content: str, installation_id: int
    ) -> Json:
        """React to a pull request review's comment on the diff."""
        return await self._react(
            f"/repos/{checked_full_name(full_name)}/pulls/comments/{comment_id}/reactions",
            content,
            installation_id,
        )

    async def _react(self, path: str, content: str, installation_id: int) -> Json:
        response = await self.request(
            "POST", path, installation_id=installation_id, json={"content": content}
        )
        return json_object(response)

    # --- the issue ---------------------------------------------------------------------

    async def create_issue(
        self,
        full_name: str,
        installation_id: int,
        *,
        title: str,
        body: str,
        labels: Sequence[str] = (),
    ) -> Json:
        """Open an issue (`POST /repos/{owner}/{repo}/issues`); labels GitHub lacks are
        created with it. The issue as GitHub answers it."""
        response = await self.request(
            "POST",
            f"/repos/{checked_full_name(full_name)}/issues",
            installation_id=installation_id,
            json={"title": title, "body": body, "labels": list(labels)},
        )
        return json_object(response)

    async def recent_issues(
        self, full_name: str, installation_id: int, *, count: int = 30
    ) -> list[Json]:
        """The newest issues and pull requests, open or closed, newest first (one page)."""
        response = await self.request(
            "GET",
            f"/repos/{checked_full_name(full_name)}/issues",
            installation_id=installation_id,
            params={"state": "all", "sort": "created", "direction": "desc", "per_page": count},
        )
        items = json_body(response)
        return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []

    async def update_issue(
        self,
        full_name: str,
        number: int,
        installation_id: int,
        *,
        state: str | None = None,
        state_reason: str | None = None,
        title: str | None = None,
        body: str | None = None,
    ) -> Json:
        """Set what is given of the issue's state (open | closed), state_reason
        (completed | not_planned | reopened), title and body; the issue as it is then."""
        given = {"state": state, "state_reason": state_reason, "title": title, "body": body}
        response = await self.request(
            "PATCH",
            f"/repos/{checked_full_name(full_name)}/issues/{number}",
            installation_id=installation_id,
            json={key: value for key, value in given.items() if value is not None},
        )
        return json_object(response)
