"""Harness templates to agent instructions: a pure function over ticket, repository, attempt.

Templates see `ticket` (key, number, title, body, url, labels), `repository` (full_name,
default_branch, clone_url), `attempt` (1 on the first run), `previous_failure` (None on the
first attempt, else what made the last attempt fail) and `extra` (anything the caller adds,
such as `extra.guidance` from `/retry GUIDANCE`). Anything else is an error naming the
variable. Every failure is a `RenderError` with the template line when known.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import TracebackType
from typing import Any

from jinja2 import Template, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, UndefinedError

from harness_store.budget import DEFAULT_LIMITS, TEMPLATE_FILENAME, Limits, check_size, rendering
from harness_store.errors import (
    RenderError,
    RenderLimitExceeded,
    TemplateSyntax,
    UnsafeTemplate,
)
from harness_store.sandbox import sandbox

__all__ = [
    "DEFAULT_LIMITS",
    "Limits",
    "RepositoryVars",
    "TicketVars",
    "check_template",
    "render_harness",
]

_NO_LOADING = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)


@dataclass(frozen=True)
class TicketVars:
    """`ticket` in a template."""

    key: str  # "octo/hello#12", "ENG-42"
    title: str = ""
    body: str = ""
    number: int | None = None
    url: str | None = None
    labels: Sequence[str] = field(default=())


@dataclass(frozen=True)
class RepositoryVars:
    """`repository` in a template."""

    full_name: str
    default_branch: str = "main"
    clone_url: str = ""


def check_template(source: str) -> None:
    """Raise `TemplateSyntax` (with its line) unless `source` compiles as a harness template."""
    _compile(source)


@lru_cache(maxsize=64)
def _compile(source: str) -> Template:
    env = sandbox()
    try:
        tree = env.parse(source)
        for node in tree.find_all(_NO_LOADING):
            raise TemplateSyntax(
                "harness templates cannot extend, include or import other templates",
                line=node.lineno,
            )
        return env.from_string(tree)
    except TemplateSyntaxError as error:
        message = error.message or "invalid template"
        if message.startswith("No filter named"):
            message += f" Harness templates offer: {', '.join(sorted(env.filters))}."
        raise TemplateSyntax(message, line=error.lineno) from None


def render_harness(
    source: str,
    *,
    ticket: TicketVars,
    repository: RepositoryVars,
    attempt: int = 1,
    previous_failure: str | None = None,
    extra: Mapping[str, Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> str:
    """Render a harness template; raise a `RenderError` saying what and where on any failure."""
    template = _compile(source)
    variables: dict[str, Any] = {
        "ticket": {
            "key": ticket.key,
            "number": ticket.number,
            "title": ticket.title,
            "body": ticket.body,
            "url": ticket.url,
            "labels": list(ticket.labels),
        },
        "repository": {
            "full_name": repository.full_name,
            "default_branch": repository.default_branch,
            "clone_url": repository.clone_url,
        },
        "attempt": attempt,
        "previous_failure": previous_failure,
        "extra": _plain(extra or {}),
    }
    names: dict[int, str] = {}
    for name, value in variables.items():
        _name_mappings(value, name, names)
    output: list[str] = []
    size = 0
    try:
        with rendering(limits, names):
            for name, value in variables.items():
                _check_variable(name, value, limits)
            for piece in template.generate(variables):
                size += len(piece)
                if size > limits.max_output:
                    raise RenderLimitExceeded(
                        f"the rendered harness is longer than {limits.max_output} characters"
                    )
                output.append(piece)
    except RenderError as error:
        raise error.at_line(_template_line(error.__traceback__)) from None
    except Exception as error:
        raise _as_render_error(error) from error
    return "".join(output)


def _plain(value: Any, depth: int = 0) -> Any:
    """Caller data as dicts, lists and scalars: nothing with methods a template could call."""
    if depth > 8:
        raise RenderError("extra is nested more than 8 levels deep")
    if isinstance(value, Mapping):
        return {str(key): _plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item, depth + 1) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _name_mappings(value: Any, path: str, names: dict[int, str]) -> None:
    if isinstance(value, dict):
        names[id(value)] = path
        for key, item in value.items():
            _name_mappings(item, f"{path}.{key}", names)


def _check_variable(name: str, value: Any, limits: Limits) -> None:
    try:
        check_size(value, f"variable {name!r}")
    except RenderLimitExceeded:
        raise RenderLimitExceeded(
            f"variable {name!r} is larger than {limits.max_value} characters"
        ) from None


def _template_line(tb: TracebackType | None) -> int | None:
    """The template line of the innermost template frame (Jinja rewrites these frames)."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _as_render_error(error: Exception) -> RenderError:
    line = _template_line(error.__traceback__)
    if isinstance(error, SecurityError):
        return UnsafeTemplate(str(error), line=line)
    if isinstance(error, RecursionError):
        return RenderLimitExceeded("macros or loops nest too deeply", line=line)
    if isinstance(error, OverflowError | MemoryError):
        return RenderLimitExceeded(f"a number or value is too large ({error})", line=line)
    if isinstance(error, UndefinedError):
        return RenderError(str(error), line=line)
    return RenderError(f"{type(error).__name__}: {error}", line=line)
