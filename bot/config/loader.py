"""Reads a repository's `.github/openase.yml` from GitHub, at the head of its default branch.

The ref is always the default branch's head commit, never a pull request's branch: a PR
must not change the hooks or the provider its own gates run with. Results are cached by
(repository, commit sha), so a config is fetched and validated once per push.

It fails closed: the default workflow stands in only when the repository has no commit at
all, or no such file at a known commit. A default branch GitHub does not know is looked up
again (the repository may have renamed it); when there is still none, `ConfigUnavailable`
says why, and GitHub's own failures (rate limits, 5xx) propagate as adapter errors: the
caller waits and retries, and never runs gates the repository did not choose.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

import structlog

from adapters.base import CodeHost
from adapters.errors import BranchMissing, RequestRejected
from bot.config.control import ControlConfig, load_control_config
from bot.config.problems import ConfigProblem
from bot.config.repo import RepoConfig, default_repo_config, parse_repo_config
from bot.config.workflow import REPO_CONFIG_PATH
from bot.errors import ConfigUnavailable

log = structlog.get_logger(__name__)

MAX_REPO_CONFIG_BYTES = 64 * 1024
CACHE_ENTRIES = 512

__all__ = [
    "CACHE_ENTRIES",
    "MAX_REPO_CONFIG_BYTES",
    "ConfigCache",
    "RepoConfigResult",
    "load_control_config",
    "repo_config",
]


@dataclass(frozen=True)
class RepoConfigResult:
    """A repository's config at one commit: `config`, or the `problems` that stop it running."""

    full_name: str
    sha: str | None  # the default branch's head it was read at; None: the repo has no commit
    config: RepoConfig | None
    problems: tuple[ConfigProblem, ...] = ()
    found: bool = False  # the repository has the file (False: the default config)
    branch: str | None = None  # the default branch read (another, if it was renamed)

    @property
    def ok(self) -> bool:
        return self.config is not None


class ConfigCache:
    """A bounded LRU of results by (repository, commit sha), for one control config."""

    def __init__(self, entries: int = CACHE_ENTRIES) -> None:
        self.entries = entries
        self._results: OrderedDict[tuple[str, str], tuple[ControlConfig, RepoConfigResult]] = (
            OrderedDict()
        )

    def get(self, full_name: str, sha: str, control: ControlConfig) -> RepoConfigResult | None:
        key = (full_name.lower(), sha)
        found = self._results.get(key)
        # Validity depends on the control config too (providers, defaults): another one,
        # as tests build, means validating again.
        if found is None or found[0] is not control:
            return None
        self._results.move_to_end(key)
        return found[1]

    def put(self, result: RepoConfigResult, control: ControlConfig) -> None:
        if result.sha is None:
            return
        key = (result.full_name.lower(), result.sha)
        self._results[key] = (control, result)
        self._results.move_to_end(key)
        while len(self._results) > self.entries:
            self._results.popitem(last=False)

    def clear(self) -> None:
        self._results.clear()

    def __len__(self) -> int:
        return len(self._results)


_cache = ConfigCache()


async def repo_config(
    github: CodeHost,
    installation_id: int,
    full_name: str,
    default_branch: str,
    control: ControlConfig,
    *,
    cache: ConfigCache | None = None,
) -> RepoConfigResult:
    """The config at the head of `default_branch`: cached per commit, default when absent.

    GitHub failures (rate limits, 5xx) propagate as adapter errors for the caller to retry;
    everything wrong with the file itself comes back as `problems`.
    """
    cache = _cache if cache is None else cache
    branch, sha = await _head(github, installation_id, full_name, default_branch)
    if sha is None:  # an empty repository: nothing to read, nothing to cache
        return RepoConfigResult(full_name, None, default_repo_config(control), branch=branch)
    cached = cache.get(full_name, sha, control)
    if cached is not None:
        return cached if cached.branch == branch else replace(cached, branch=branch)
    result = replace(await _read(github, installation_id, full_name, sha, control), branch=branch)
    cache.put(result, control)
    log.info(
        "repo_config_read",
        repo=full_name,
        sha=sha,
        found=result.found,
        problems=len(result.problems),
    )
    return result


async def _head(
    github: CodeHost, installation_id: int, full_name: str, branch: str
) -> tuple[str, str | None]:
    """The default branch and its head commit (None: the repository has no commit)."""
    try:
        return branch, await github.branch_head_sha(full_name, branch, installation_id)
    except BranchMissing:
        pass
    # Renamed (`main` -> `trunk`) before a webhook told us: ask what it is called now.
    try:
        current = (await github.repository(full_name, installation_id)).default_branch
    except RequestRejected as exc:
        raise ConfigUnavailable(
            f"GitHub does not show {full_name} to the App (HTTP {exc.status})"
        ) from exc
    if not current or current == branch:
        raise ConfigUnavailable(f"{full_name} has no default branch `{branch}` to read it from")
    try:
        return current, await github.branch_head_sha(full_name, current, installation_id)
    except BranchMissing as exc:
        raise ConfigUnavailable(
            f"{full_name} has no default branch `{current}` to read it from"
        ) from exc


async def _read(
    github: CodeHost, installation_id: int, full_name: str, sha: str, control: ControlConfig
) -> RepoConfigResult:
    file = await github.file_at(full_name, REPO_CONFIG_PATH, sha, installation_id)
    if file is None:
        return RepoConfigResult(full_name, sha, default_repo_config(control))

    def refused(reason: str) -> RepoConfigResult:
        problem = ConfigProblem(REPO_CONFIG_PATH, "", reason)
        return RepoConfigResult(full_name, sha, None, (problem,), found=True)

    if file.kind != "file":
        return refused(f"is a {file.kind}, not a file")
    size = max(file.size, len(file.content or b""))
    if size > MAX_REPO_CONFIG_BYTES:
        return refused(f"is {size} bytes; the limit is {MAX_REPO_CONFIG_BYTES}")
    if file.content is None:
        return refused("could not be read: GitHub sent no content for it")
    try:
        text = file.content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return refused(f"is not UTF-8 text (byte {error.start} cannot be decoded)")
    parsed = parse_repo_config(text, control)
    if isinstance(parsed, RepoConfig):
        return RepoConfigResult(full_name, sha, parsed, found=True)
    return RepoConfigResult(full_name, sha, None, tuple(parsed), found=True)
