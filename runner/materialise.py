"""Skills written into a worktree for one run, kept out of commits, removed afterwards.

Each skill goes to `<worktree>/<skills_dir>/<name>/`, beside the repository's own skills and
never over them: when the repository already has `<name>`, ours becomes `openase-<name>`, and
when that exists too the skill is refused (reported, not raised). Every directory we create
is listed in the worktree's exclude file inside a block marked with a per-run id, so cleanup
removes exactly our lines even while other worktrees of the same mirror (which share that
file) add and remove theirs.

Synchronous on purpose: a few small files and one `git rev-parse`, done before the agent
starts; async callers may wrap it in `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from runner.contract import SkillSpec
from runner.git import common_dir, git_sync

_FALLBACK_PREFIX = "openase-"


class MaterialiseError(ValueError):
    """A path we will not write to; becomes the reason a skill is refused."""


@dataclass(frozen=True)
class PlacedSkill:
    name: str
    version: int
    directory: str  # relative to the worktree, e.g. ".claude/skills/openase-tests"
    renamed: bool  # the repository has its own skill of that name


@dataclass(frozen=True)
class RefusedSkill:
    name: str
    reason: str


@dataclass(frozen=True)
class Materialised:
    worktree: Path
    exclude_file: Path
    block_id: str
    placed: tuple[PlacedSkill, ...]
    refused: tuple[RefusedSkill, ...]
    created_parents: tuple[Path, ...]  # parts of skills_dir we made, deepest first


def _safe_parts(relative: str, what: str) -> tuple[str, ...]:
    """Components of a relative forward-slash path that stays where it is put."""
    if "\\" in relative or "\0" in relative:
        raise MaterialiseError(f"{what} {relative!r} contains a backslash or NUL")
    path = PurePosixPath(relative)
    if path.is_absolute() or not path.parts or any(p in (".", "..") for p in path.parts):
        raise MaterialiseError(f"{what} {relative!r} is not a plain relative path")
    # PurePosixPath drops "." and doubled slashes silently; require the caller wrote none.
    if "/".join(path.parts) != relative.rstrip("/"):
        raise MaterialiseError(f"{what} {relative!r} is not a plain relative path")
    return path.parts


def _ensure_dirs(base: Path, parts: Sequence[str]) -> list[Path]:
    """mkdir each component under `base`, refusing symlinks and files; returns what we made."""
    made: list[Path] = []
    current = base
    for part in parts:
        current = current / part
        if current.is_symlink():
            raise MaterialiseError(f"{current} is a symlink; skills are never written through one")
        if current.exists() and not current.is_dir():
            raise MaterialiseError(f"{current} exists and is not a directory")
        if not current.exists():
            current.mkdir()
            made.append(current)
    return made


def _write_skill(target: Path, skill: SkillSpec) -> None:
    """Write a skill's files into the new directory `target`; on any problem remove it."""
    files = [
        (_safe_parts(f.path, f"file path of skill {skill.name}"), f.content) for f in skill.files
    ]
    target.mkdir()
    try:
        for parts, content in files:
            _ensure_dirs(target, parts[:-1])
            # O_EXCL + O_NOFOLLOW: never through a symlink, never over a file (duplicates).
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            # The contract carries no file mode: a script with a shebang is meant to be run.
            mode = 0o755 if content.startswith("#!") else 0o644
            fd = os.open(target.joinpath(*parts), flags, mode)
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
                out.write(content)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def exclude_file(worktree: Path) -> Path:
    """The exclude file git reads for this worktree (shared by all worktrees of a mirror)."""
    common = common_dir(worktree)
    if common is not None:
        return common / "info" / "exclude"
    out = git_sync(
        "rev-parse", "--path-format=absolute", "--git-path", "info/exclude", cwd=worktree
    )
    return Path(out.strip())


@contextlib.contextmanager
def _editing(path: Path) -> Iterator[list[str]]:
    """The file's lines, to edit in place; written back atomically under an exclusive lock
    (other runs of the same mirror edit the same file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(path.with_name(f".{path.name}.openase-lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lines = path.read_text().splitlines() if path.exists() else []
        yield lines
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        partial.write_text("".join(f"{line}\n" for line in lines))
        partial.replace(path)
    finally:
        os.close(lock)


def _markers(block_id: str) -> tuple[str, str]:
    return f"# >>> openase skills {block_id}", f"# <<< openase skills {block_id}"


def materialise_skills(
    worktree: Path, skills_dir: str, skills: Sequence[SkillSpec]
) -> Materialised:
    """Write `skills` under `<worktree>/<skills_dir>/` and exclude them from commits."""
    worktree = worktree.resolve()
    block_id = uuid.uuid4().hex
    exclude = exclude_file(worktree)
    placed: list[PlacedSkill] = []
    refused: list[RefusedSkill] = []
    try:
        skills_parts = _safe_parts(skills_dir, "skills directory")
        created_parents = _ensure_dirs(worktree, skills_parts)
    except (MaterialiseError, OSError) as error:
        refused = [RefusedSkill(skill.name, str(error)) for skill in skills]
        return Materialised(worktree, exclude, block_id, (), tuple(refused), ())
    base = worktree.joinpath(*skills_parts)
    seen: set[str] = set()
    for skill in skills:
        if skill.name in seen:
            refused.append(RefusedSkill(skill.name, "listed twice"))
            continue
        seen.add(skill.name)
        directory = next(
            (
                d
                for d in (skill.name, _FALLBACK_PREFIX + skill.name)
                if not os.path.lexists(base / d)
            ),
            None,
        )
        if directory is None:
            refused.append(
                RefusedSkill(
                    skill.name,
                    f"the repository already has {skills_dir}/{skill.name} and "
                    f"{skills_dir}/{_FALLBACK_PREFIX}{skill.name}; neither is overwritten",
                )
            )
            continue
        try:
            _write_skill(base / directory, skill)
        except (MaterialiseError, OSError) as error:
            refused.append(RefusedSkill(skill.name, str(error)))
            continue
        placed.append(
            PlacedSkill(
                name=skill.name,
                version=skill.version,
                directory=f"{'/'.join(skills_parts)}/{directory}",
                renamed=directory != skill.name,
            )
        )
    if placed:
        start, end = _markers(block_id)
        with _editing(exclude) as lines:
            lines += [start, *(f"/{skill.directory}/" for skill in placed), end]
    return Materialised(
        worktree=worktree,
        exclude_file=exclude,
        block_id=block_id,
        placed=tuple(placed),
        refused=tuple(refused),
        created_parents=tuple(reversed(created_parents)),
    )


def cleanup(m: Materialised) -> None:
    """Remove our skill directories, the skills folders we made if now empty, and our exclude
    lines. Safe to call twice."""
    for skill in m.placed:
        path = m.worktree / skill.directory
        if path.is_symlink():  # replaced during the run: remove the link, not its target
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)
    for parent in m.created_parents:
        with contextlib.suppress(OSError):  # not empty: the agent put something there
            parent.rmdir()
    start, end = _markers(m.block_id)
    if not m.exclude_file.exists():
        return
    with _editing(m.exclude_file) as lines:
        if start in lines and end in lines[lines.index(start) :]:
            first = lines.index(start)
            del lines[first : lines.index(end, first) + 1]
