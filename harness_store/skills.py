"""Skill folders as data: `{relative path: text}`, checked before anything stores or writes them.

A skill is what Claude Code, Codex and Gemini CLI load from `<cli>/skills/<name>/`: a
`SKILL.md` whose YAML front matter gives `name` (the folder's name) and `description`, plus
any other text files. Paths are checked here once so that no stored skill can later write
outside its folder when a runner materialises it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from harness_store.errors import (
    InvalidFrontMatter,
    InvalidSkill,
    InvalidSkillPath,
    SkillTooLarge,
)
from harness_store.names import validate_name

SKILL_FILE = "SKILL.md"
MAX_FILES = 64
MAX_FILE_BYTES = 128 * 1024
MAX_TOTAL_BYTES = 512 * 1024
MAX_PATH = 200
MAX_SEGMENT = 100
MAX_DESCRIPTION = 1024  # the Agent Skills limit; longer ones are cut off by some CLIs
# Left out when reading a folder from disk: never part of what a skill means.
IGNORED_NAMES = frozenset({".git", "__pycache__", ".DS_Store"})

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"[A-Za-z]:")


@dataclass(frozen=True)
class FrontMatter:
    """SKILL.md's front matter: the two fields every CLI needs, and all fields as written."""

    name: str
    description: str
    fields: Mapping[str, Any]


def validate_path(path: object) -> str:
    """Return `path` if it is a safe relative path inside a skill folder, else raise."""
    if not isinstance(path, str) or not path:
        raise InvalidSkillPath("a skill file needs a non-empty relative path")
    shown = repr(path[:120])
    if "\\" in path:
        raise InvalidSkillPath(f"{shown}: use '/' to separate folders, not '\\'", path=path)
    if path.startswith("/") or _DRIVE.match(path):
        raise InvalidSkillPath(f"{shown}: absolute paths are not allowed", path=path)
    if _CONTROL.search(path):
        raise InvalidSkillPath(f"{shown}: control characters are not allowed", path=path)
    if len(path) > MAX_PATH:
        raise InvalidSkillPath(f"{shown}: longer than {MAX_PATH} characters", path=path)
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidSkillPath(
                f"{shown}: empty, '.' and '..' path segments are not allowed", path=path
            )
        if len(segment) > MAX_SEGMENT:
            raise InvalidSkillPath(
                f"{shown}: a folder or file name is longer than {MAX_SEGMENT} characters",
                path=path,
            )
    return path


def _normalize_text(path: str, text: object) -> str:
    if not isinstance(text, str):
        raise InvalidSkill(f"{path!r}: content must be text", path=path)
    if "\x00" in text:
        raise InvalidSkill(f"{path!r}: contains a NUL byte; skills hold text files only", path=path)
    # Line endings from a browser form or a Windows checkout are not a change.
    return text.replace("\r\n", "\n")


def parse_front_matter(text: str) -> FrontMatter:
    """Read SKILL.md's YAML front matter; raise `InvalidFrontMatter` saying what is missing."""
    lines = text.removeprefix("\ufeff").split("\n")
    if not lines or lines[0].rstrip() != "---":
        raise InvalidFrontMatter(
            f"{SKILL_FILE} must start with YAML front matter: a '---' line, 'name:' and"
            " 'description:', then a closing '---' line",
            path=SKILL_FILE,
        )
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].rstrip() == "---")
    except StopIteration:
        raise InvalidFrontMatter(
            f"{SKILL_FILE}: the front matter has no closing '---' line", path=SKILL_FILE
        ) from None
    try:
        fields = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark is not None else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise InvalidFrontMatter(
            f"{SKILL_FILE}: front matter{where}: {problem}", path=SKILL_FILE
        ) from None
    if not isinstance(fields, dict):
        raise InvalidFrontMatter(
            f"{SKILL_FILE}: front matter must be a mapping with 'name' and 'description'",
            path=SKILL_FILE,
        )
    for key in ("name", "description"):
        value = fields.get(key)
        if not isinstance(value, str) or not value.strip():
            raise InvalidFrontMatter(
                f"{SKILL_FILE}: front matter needs a non-empty text '{key}'", path=SKILL_FILE
            )
    description = fields["description"].strip()
    if len(description) > MAX_DESCRIPTION:
        raise InvalidFrontMatter(
            f"{SKILL_FILE}: 'description' is {len(description)} characters; the limit is"
            f" {MAX_DESCRIPTION}",
            path=SKILL_FILE,
        )
    return FrontMatter(name=fields["name"].strip(), description=description, fields=fields)


def validate_skill(name: str, files: Mapping[str, str]) -> dict[str, str]:
    """Check a skill folder and return it normalised (LF line endings, paths sorted)."""
    validate_name("skill", name)
    if not isinstance(files, Mapping) or not files:
        raise InvalidSkill(f"skill {name!r} has no files; it needs at least {SKILL_FILE}")
    if len(files) > MAX_FILES:
        raise SkillTooLarge(f"skill {name!r} has {len(files)} files; the limit is {MAX_FILES}")
    normalized: dict[str, str] = {}
    seen: dict[str, str] = {}
    total = 0
    for path in sorted(files):
        validate_path(path)
        text = _normalize_text(path, files[path])
        size = len(text.encode())
        if size > MAX_FILE_BYTES:
            raise SkillTooLarge(
                f"{path!r} is {size} bytes; a skill file may have at most {MAX_FILE_BYTES}",
                path=path,
            )
        total += size
        # Two paths one case-insensitive file system (macOS, Windows) would merge.
        folded = path.casefold()
        if folded in seen:
            raise InvalidSkillPath(
                f"{path!r} and {seen[folded]!r} differ only in letter case", path=path
            )
        seen[folded] = path
        normalized[path] = text
    if total > MAX_TOTAL_BYTES:
        raise SkillTooLarge(f"skill {name!r} holds {total} bytes; the limit is {MAX_TOTAL_BYTES}")
    for path in normalized:
        parent = path.rpartition("/")[0]
        while parent:
            if parent in normalized:
                raise InvalidSkillPath(
                    f"{parent!r} is a file and also the folder of {path!r}", path=path
                )
            parent = parent.rpartition("/")[0]
    if SKILL_FILE not in normalized:
        raise InvalidSkill(
            f"skill {name!r} has no {SKILL_FILE} at the top of its folder", path=SKILL_FILE
        )
    front = parse_front_matter(normalized[SKILL_FILE])
    if front.name != name:
        raise InvalidFrontMatter(
            f"{SKILL_FILE}: front matter name {front.name!r} must equal the skill's name"
            f" {name!r} (its folder name)",
            path=SKILL_FILE,
        )
    return normalized


def files_hash(files: Mapping[str, str]) -> str:
    """sha256 over the sorted paths and their contents (canonical JSON, so unambiguous)."""
    canonical = json.dumps(dict(sorted(files.items())), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def read_files(root: Traversable) -> dict[str, str]:
    """Every text file under `root` by relative path (a folder on disk or package data)."""
    files: dict[str, str] = {}
    _collect(root, "", files)
    return files


def _collect(folder: Traversable, prefix: str, files: dict[str, str]) -> None:
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if entry.name in IGNORED_NAMES:
            continue
        path = f"{prefix}{entry.name}"
        if isinstance(entry, Path) and entry.is_symlink():
            raise InvalidSkillPath(f"{path!r}: symbolic links are not allowed", path=path)
        if entry.is_dir():
            _collect(entry, f"{path}/", files)
            continue
        if len(files) >= MAX_FILES:
            raise SkillTooLarge(f"more than {MAX_FILES} files in the skill folder")
        if isinstance(entry, Path) and entry.stat().st_size > MAX_FILE_BYTES:
            raise SkillTooLarge(f"{path!r} is larger than {MAX_FILE_BYTES} bytes", path=path)
        try:
            files[path] = entry.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidSkill(
                f"{path!r} is not UTF-8 text; skills hold text files only", path=path
            ) from None


def read_skill_dir(folder: Path) -> tuple[str, dict[str, str]]:
    """(name, files) of a skill folder on disk; the folder's name is the skill's name."""
    if not folder.is_dir():
        raise InvalidSkill(f"{str(folder)!r} is not a folder")
    name = folder.resolve().name
    return name, validate_skill(name, read_files(folder))


def write_skill_dir(files: Mapping[str, str], folder: Path) -> list[Path]:
    """Write a skill's files under `folder`; never overwrites (FileExistsError instead)."""
    written = []
    root = folder.resolve()
    for path, text in sorted(files.items()):
        target = root / validate_path(path)
        if not target.resolve().is_relative_to(root):
            # A symlinked folder already on disk could otherwise lead outside.
            raise InvalidSkillPath(f"{path!r} would be written outside {str(root)!r}", path=path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("x", encoding="utf-8", newline="") as handle:
            handle.write(text)
        written.append(target)
    return written
