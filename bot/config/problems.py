"""What is wrong with a config file, said so its author can fix it: file, key, line, reason.

YAML is read through PyYAML's node tree so every key keeps its line; pydantic's errors are
turned into sentences ("must be a number of seconds, got 'ten'") with the dotted key path
(`workflows.coder.hooks.on_complete[0].timeout`). Nothing here raises for bad input.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

KeyPath = tuple[str | int, ...]

# Aliases can make a small file expand into billions of values ("billion laughs"); a config
# file has a few hundred at most.
MAX_VALUES = 20_000
_SHOWN_CHARS = 60


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file; `key` is the dotted path, "" for the whole file."""

    file: str
    key: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}, line {self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.reason}" if self.key else f"{where}: {self.reason}"


def by_line(problem: ConfigProblem) -> int:
    """Sort key: problems in the order of the file (whole-file ones first)."""
    return problem.line or 0


def dotted(path: KeyPath) -> str:
    """A key path as users read it: `workflows.coder.hooks.on_complete[0].timeout`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def without_extensions(data: dict[Any, Any]) -> dict[Any, Any]:
    """Top-level keys starting with `x-` hold YAML anchors for reuse (as in Compose files)."""
    return {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}


@dataclass(frozen=True)
class YamlDoc:
    """A parsed YAML document and the line of every key and list item in it."""

    file: str
    data: Any
    lines: Mapping[KeyPath, int]

    def line(self, path: KeyPath) -> int | None:
        """The line of `path`, or of its nearest ancestor present in the file."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None

    def problem(self, path: KeyPath, reason: str) -> ConfigProblem:
        return ConfigProblem(self.file, dotted(path), reason, self.line(path))


def read_yaml(text: str, file: str) -> YamlDoc | list[ConfigProblem]:
    """Parse one YAML document safely; syntax errors come back as problems with their line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            return YamlDoc(file, None, {})
        walk = _Walk(file)
        walk.visit(node, ())
        if walk.problems:
            return walk.problems
        data = SafeConstructor().construct_document(node)
    except yaml.MarkedYAMLError as error:  # syntax, or a tag such as !!python/object
        return [_syntax_problem(error, file)]
    except yaml.YAMLError as error:  # the reader's refusal of control characters
        return [ConfigProblem(file, "", f"is not valid YAML: {_first_line(error)}")]
    except RecursionError:  # PyYAML composes nested values recursively
        return [ConfigProblem(file, "", "is nested too deeply to read")]
    return YamlDoc(file, data, walk.lines)


def _syntax_problem(error: yaml.MarkedYAMLError, file: str) -> ConfigProblem:
    # Only the parser's own words and the position: its "snippet" would quote the file,
    # and a control-plane file may hold a secret on that line.
    mark = error.problem_mark or error.context_mark
    what = error.problem or error.context or "cannot be parsed"
    if error.context and error.problem:
        context, problem = error.context, error.problem
        what = f"{problem} ({context})" if context.startswith("while") else f"{context}, {problem}"
    column = f" at column {mark.column + 1}" if mark is not None else ""
    line = mark.line + 1 if mark is not None else None
    return ConfigProblem(file, "", f"is not valid YAML: {what}{column}", line)


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


class _Walk:
    """Records each key's line, finds duplicate keys and alias loops, bounds the size."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[KeyPath, int] = {}
        self.problems: list[ConfigProblem] = []
        self._sizes: dict[int, int] = {}
        self._open: set[int] = set()
        self._keys = SafeConstructor()

    def visit(self, node: Node, path: KeyPath) -> int:
        """Record lines under `node`; return how many values it expands to."""
        if id(node) in self._open:
            self._add(path, "an alias refers to a value containing itself", node)
            return 1
        if id(node) in self._sizes:  # an alias: counted again, walked once
            return self._sizes[id(node)]
        self._open.add(id(node))
        size = 1
        if isinstance(node, MappingNode):
            size += self._mapping(node, path)
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                self.lines.setdefault((*path, index), item.start_mark.line + 1)
                size += self.visit(item, (*path, index))
        self._open.discard(id(node))
        self._sizes[id(node)] = size
        if size > MAX_VALUES and not self.problems:
            self._add(path, f"expands to more than {MAX_VALUES} values (through aliases)", node)
        return size

    def _mapping(self, node: MappingNode, path: KeyPath) -> int:
        size = 0
        seen: dict[object, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` merges, keys stay put
                size += self.visit(value_node, path)
                continue
            key = self._key(key_node)
            if key in seen:
                self._add(
                    (*path, key),
                    f"appears twice (also on line {seen[key]}); YAML would keep only the last",
                    key_node,
                )
            seen.setdefault(key, line)
            self.lines.setdefault((*path, key), line)
            size += self.visit(value_node, (*path, key))
        return size

    def _key(self, node: Node) -> str | int:
        if isinstance(node, ScalarNode):
            try:
                key = self._keys.construct_object(node)
            except yaml.YAMLError:
                return str(node.value)
            return key if isinstance(key, str | int) and not isinstance(key, bool) else str(key)
        return f"<{type(node).__name__} key>"

    def _add(self, path: KeyPath, reason: str, node: Node) -> None:
        self.problems.append(
            ConfigProblem(self.file, dotted(path), reason, node.start_mark.line + 1)
        )


# --- pydantic errors as sentences ------------------------------------------------------


def problems_from(
    error: ValidationError,
    doc: YamlDoc,
    model: type[BaseModel],
    *,
    prefix: KeyPath = (),
    secret: Callable[[KeyPath], bool] = lambda path: False,
) -> list[ConfigProblem]:
    """One problem per pydantic error; inputs under a `secret` path are never shown."""
    problems = []
    for details in error.errors(include_url=False):
        loc = tuple(details["loc"])
        path: KeyPath = (*prefix, *(p for p in loc if p != "[key]"))
        reason = _reason(details, model, loc, hide=secret(path))
        if loc and loc[-1] == "[key]":
            reason = f"bad name: {reason}"
        problems.append(doc.problem(path, reason))
    return problems


def _reason(details: ErrorDetails, model: type[BaseModel], loc: KeyPath, *, hide: bool) -> str:
    kind = details["type"]
    ctx = details.get("ctx") or {}
    field = next((p for p in reversed(loc) if isinstance(p, str) and p != "[key]"), "")
    got = "" if hide else f", got {show(details.get('input'))}"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return _unknown_key(model, loc)
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", details["msg"]))
    if kind in ("float_type", "float_parsing", "finite_number"):
        return f"must be {_number_kind(field)}{got}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number{got}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        words = {
            "greater_than": ("more than", "gt"),
            "greater_than_equal": ("at least", "ge"),
            "less_than": ("less than", "lt"),
            "less_than_equal": ("at most", "le"),
        }[kind]
        bound = ctx.get(words[1])
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)  # "more than 0", not "more than 0.0"
        return f"must be {words[0]} {bound}{got}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}{got}"
    if kind in ("string_type", "string_sub_type"):
        return f"must be text{got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false{got}"
    if kind in ("list_type", "tuple_type", "set_type", "frozen_set_type"):
        return f"must be a list{got}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping of keys to values{got}"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"takes at most {ctx.get('max_length')} item(s)"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    return details["msg"] + got


def _number_kind(field: str) -> str:
    if field == "timeout" or field.endswith("_seconds"):
        return "a number of seconds"
    if field.endswith("_usd"):
        return "an amount in US dollars"
    return "a number"


def show(value: object) -> str:
    """A value as a reason quotes it: short, and never a whole structure."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing (null)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        text = value if len(value) <= _SHOWN_CHARS else value[:_SHOWN_CHARS] + "…"
        return repr(text)
    return repr(value)[:_SHOWN_CHARS]


def _unknown_key(model: type[BaseModel], loc: KeyPath) -> str:
    known = _fields_at(model, loc[:-1])
    if not known:
        return "is not a known key"
    key = str(loc[-1])
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"is not a known key ({hint}known keys: {', '.join(known)})"


def _fields_at(model: type[BaseModel], loc: KeyPath) -> list[str]:
    """The field names of the model found at `loc` below `model`, if it is a model."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return []
            current = field.annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        elif get_origin(current) in (tuple, list):
            current = get_args(current)[0]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        # Fields filled in from elsewhere (a workflow's name is its key) are not offered.
        return [
            name
            for name, field in current.model_fields.items()
            if not (
                isinstance(field.json_schema_extra, dict)
                and field.json_schema_extra.get("from_key")
            )
        ]
    return []


def _unwrap(annotation: Any) -> Any:
    """`Annotated[X, ...]` and `X | None` -> X."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


# --- for people -------------------------------------------------------------------------


def explain(problems: list[ConfigProblem] | tuple[ConfigProblem, ...]) -> str:
    """Markdown for an issue comment: one bullet per problem (file, line, key, reason)."""
    lines = ["OpenASE cannot use its configuration for this repository, so nothing runs:", ""]
    for problem in problems:
        where = f"`{_code(problem.file)}`" + (f" line {problem.line}" if problem.line else "")
        if problem.key:
            where += f", `{_code(problem.key)}`"
        lines.append(f"- {where}: {_text(problem.reason)}")
    lines += [
        "",
        "The configuration is read from the default branch, never from a pull request: "
        "fix it there.",
    ]
    return "\n".join(lines)


_MENTION = re.compile(r"(?<![\w@])@(?=\w)")


def _code(text: str) -> str:
    return text.replace("`", "'").replace("\n", " ")


def _text(text: str) -> str:
    """A reason is partly the file's own words: keep them from becoming markup or mentions."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = escaped.replace("`", "'").replace("\n", " ")
    # A word joiner after the @ of "@someone" in a quoted value keeps it from notifying anyone.
    return _MENTION.sub("@\u2060", escaped)
