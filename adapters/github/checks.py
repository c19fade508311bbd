"""What is reported on a commit: check runs (ours and other CI's) and commit statuses."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing

from adapters.base import CheckRunInfo, CommitStatusInfo, Json
from adapters.github.transport import GitHubTransport, checked_full_name, json_object

CHECK_RUNS_PER_PAGE = 100  # GitHub's maximum


class CheckEndpoints(GitHubTransport):
    async def check_runs(
        self, full_name: str, ref: str, installation_id: int
    ) -> list[CheckRunInfo]:
        """The newest check run of each name on the commit `ref`, of every App."""
        return [
            run
            async for run in self._check_runs(
                full_name,
                ref,
                installation_id,
                lambda page: {"per_page": CHECK_RUNS_PER_PAGE, "page": page, "filter": "latest"},
            )
        ]

    async def find_check_run(
        self, full_name: str, ref: str, installation_id: int, *, name: str, external_id: str
    ) -> int | None:
        """The id of this App's check run of that name and external id on the commit."""
        params: dict[str, str | int] = {"check_name": name, "filter": "all", "app_id": self.app_id}
        runs = self._check_runs(
            full_name,
            ref,
            installation_id,
            lambda page: {**params, "per_page": CHECK_RUNS_PER_PAGE, "page": page},
        )
        async with aclosing(runs):  # once found, the later pages are not asked for
            async for run in runs:
                if run.external_id == external_id:
                    return run.id
        return None

    async def _check_runs(
        self,
        full_name: str,
        ref: str,
        installation_id: int,
        params: Callable[[int], Mapping[str, str | int]],
    ) -> AsyncGenerator[CheckRunInfo, None]:
        # This endpoint wraps its list in an object ({"total_count", "check_runs"}), which
        # `pages` does not read: it is paged by number until a short or the last page.
        page = 1
        while True:
            response = await self.request(
                "GET",
                f"/repos/{checked_full_name(full_name)}/commits/{ref}/check-runs",
                installation_id=installation_id,
                params=params(page),
            )
            answer = json_object(response)
            runs = answer.get("check_runs") or []
            for run in runs:
                yield _check_run(run)
            total = int(answer.get("total_count") or 0)
            if len(runs) < CHECK_RUNS_PER_PAGE or page * CHECK_RUNS_PER_PAGE >= total:
                return
            page += 1

    async def create_check_run(
        self, full_name: str, head_sha: str, fields: Json, installation_id: int
    ) -> Json:
        """A new check run on `head_sha`. `fields` are the create request's other fields
        (name, external_id, status, output, ...), sent as they are; the run as answered."""
        response = await self.request(
            "POST",
            f"/repos/{checked_full_name(full_name)}/check-runs",
            installation_id=installation_id,
            json={"head_sha": head_sha, **fields},
        )
        return json_object(response)

    async def update_check_run(
        self, full_name: str, check_run_id: int, fields: Json, installation_id: int
    ) -> Json:
        """Change a check run; GitHub appends `output.annotations` to those it has."""
        response = await self.request(
            "PATCH",
            f"/repos/{checked_full_name(full_name)}/check-runs/{check_run_id}",
            installation_id=installation_id,
            json=fields,
        )
        return json_object(response)

    async def commit_statuses(
        self, full_name: str, ref: str, installation_id: int
    ) -> list[CommitStatusInfo]:
        """The newest status of each context on the commit (the combined status)."""
        response = await self.request(
            "GET",
            f"/repos/{checked_full_name(full_name)}/commits/{ref}/status",
            installation_id=installation_id,
        )
        return [
            CommitStatusInfo(context=str(status.get("context")), state=_text(status.get("state")))
            for status in json_object(response).get("statuses") or []
        ]


def _check_run(run: Json) -> CheckRunInfo:
    return CheckRunInfo(
        id=int(run["id"]),
        name=str(run.get("name")),
        status=_text(run.get("status")),
        conclusion=_text(run.get("conclusion")),
        external_id=_text(run.get("external_id")),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
