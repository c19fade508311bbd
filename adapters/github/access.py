"""Who may do what: a user's permission on a repository, a user's membership of a team."""

from __future__ import annotations

from typing import Any

from adapters.errors import RequestRejected
from adapters.github.transport import GitHubTransport, checked_full_name, json_body, segment


class AccessEndpoints(GitHubTransport):
    async def collaborator_permission(
        self, full_name: str, login: str, installation_id: int
    ) -> str | None:
        """The user's base role on the repository: admin, write, read or none (maintain
        counts as write, triage as read, a custom role as the role it builds on). None when
        GitHub names none, or does not know the user."""
        answer = await self._found(
            f"/repos/{checked_full_name(full_name)}/collaborators/{segment(login)}/permission",
            installation_id,
        )
        # Not `role_name`: that may be a custom role's name, which says nothing of access.
        permission = answer.get("permission") if isinstance(answer, dict) else None
        return str(permission) if permission else None

    async def team_membership_state(
        self, org: str, team_slug: str, login: str, installation_id: int
    ) -> str | None:
        """`active`, or `pending` for an invitation not yet accepted; None when the user is
        not a member (or there is no such team). Needs the App's `members: read`: without
        it GitHub answers 403, raised as RequestRejected."""
        answer = await self._found(
            f"/orgs/{segment(org)}/teams/{segment(team_slug)}/memberships/{segment(login)}",
            installation_id,
        )
        state = answer.get("state") if isinstance(answer, dict) else None
        return str(state) if state else None

    async def _found(self, path: str, installation_id: int) -> Any:
        """The JSON at `path`, or None on 404."""
        try:
            response = await self.request("GET", path, installation_id=installation_id)
        except RequestRejected as exc:
            if exc.status == 404:
                return None
            raise
        return json_body(response)
