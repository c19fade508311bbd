"""Harness templates to agent instructions: a pure function over ticket, repository, attempt.

Templates see `ticket` (key, number, url, labels), `repository` (full_name, default_branch,
clone_url), `attempt` (1 on the first run) and `extra` (anything trusted the caller adds,
such as `extra.guidance`). Anything else is an error naming the variable. Text third parties
write (the ticket's title and description, the previous attempt's gate output) is never
given: the agent gets it in its prompt, fenced as untrusted input, so a template that reads
it (`WITHHELD`) is refused with the reason, when it is published already. Every failure is
a `RenderError` with the template line when known.
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
    UndefinedVariable,
    UnsafeTemplate,
    UntrustedVariable,
)
from harness_store.sandbox import sandbox

__all__ = [
    "DEFAULT_LIMITS",
    "WITHHELD",
    "Limits",
    "RepositoryVars",
    "TicketVars",
    "check_template",
    "render_harness",
]

_NO_LOADING = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)
# What harnesses no longer get (issue #15), and why: anyone can write it.
WITHHELD: Mapping[str, str] = {
    "ticket.title": "anyone who can open an issue writes its title",
    "ticket.body": "anyone who can open an issue writes its description",
    "previous_failure": "it is what the repository's own code (its gates) printed",
}
_DEFINED_TESTS = frozenset({"defined", "undefined"})


@dataclass(frozen=True)
class TicketVars:
    """`ticket` in a template."""

    key: str  # "octo/hello#12", "ENG-42"
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
        _refuse_withheld(tree)
        return env.from_string(tree)
    except TemplateSyntaxError as error:
        message = error.message or "invalid template"
        if message.startswith("No filter named"):
            message += f" Harness templates offer: {', '.join(sorted(env.filters))}."
        raise TemplateSyntax(message, line=error.lineno) from None


def _refuse_withheld(tree: nodes.Template) -> None:
    """Raise `UntrustedVariable` for the first read of a `WITHHELD` variable (`is defined`
    tests and names the template assigns itself are fine)."""
    assigned = {node.name for node in tree.find_all(nodes.Name) if node.ctx != "load"}
    tested = {id(test.node) for test in tree.find_all(nodes.Test) if test.name in _DEFINED_TESTS}
    for node in tree.find_all((nodes.Name, nodes.Getattr, nodes.Getitem)):
        name = _withheld_name(node)
        if name is not None and id(node) not in tested and name.split(".")[0] not in assigned:
            raise UntrustedVariable(name, WITHHELD[name], line=node.lineno)


def _withheld_name(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Name):
        name = node.name if node.ctx == "load" else None
    elif isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name):
        name = f"{node.node.name}.{node.attr}"
    elif (
        isinstance(node, nodes.Getitem)
        and isinstance(node.node, nodes.Name)
        and isinstance(node.arg, nodes.Const)
        and isinstance(node.arg.value, str)
    ):
        name = f"{node.node.name}.{node.arg.value}"
    else:
        name = None
    return name if name in WITHHELD else None


def render_harness(
    source: str,
    *,
    ticket: TicketVars,
    repository: RepositoryVars,
    attempt: int = 1,
    extra: Mapping[str, Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> str:
    """Render a harness template; raise a `RenderError` saying what and where on any failure."""
    template = _compile(source)
    variables: dict[str, Any] = {
        "ticket": {
            "key": ticket.key,
            "number": ticket.number,
            "url": ticket.url,
            "labels": list(ticket.labels),
        },
        "repository": {
            "full_name": repository.full_name,
            "default_branch": repository.default_branch,
            "clone_url": repository.clone_url,
        },
        "attempt": attempt,
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
    except UndefinedVariable as error:
        line = error.line or _template_line(error.__traceback__)
        if error.variable in WITHHELD:  # read in a way only rendering finds (`ticket[key]`)
            raise UntrustedVariable(error.variable, WITHHELD[error.variable], line=line) from None
        raise error.at_line(line) from None
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
