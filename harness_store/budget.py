"""What one harness render may use (`Limits`), and the bookkeeping that enforces it: the
render's budgets and deadline (`rendering`), the weight of any value a template builds,
and the shared `range()` budget. The sandbox (harness_store/sandbox.py) asks these before
it lets a value exist."""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Environment, nodes
from jinja2.runtime import Context
from jinja2.utils import Namespace

from harness_store.errors import RenderLimitExceeded

# Jinja's file name for code compiled from a string: how the tracer knows a template frame.
TEMPLATE_FILENAME = "<template>"


@dataclass(frozen=True)
class Limits:
    """What one render may use."""

    max_output: int = 256 * 1024  # characters of rendered text
    max_value: int = 256 * 1024  # characters (or items) of any one value a template builds
    max_range: int = 100_000  # items all range() calls of one render may produce together
    max_int_bits: int = 4096
    seconds: float = 2.0


DEFAULT_LIMITS = Limits()


@dataclass
class RenderState:
    """The budgets and names of the render in progress."""

    limits: Limits
    range_left: int
    names: Mapping[int, str]  # id(value) -> variable path, to name undefined attributes
    # id -> (value, weight) of lists, tuples and dicts already weighed; the value is kept
    # so that its id cannot be reused by another object during the render.
    weights: dict[int, tuple[object, int]] = field(default_factory=dict)


_render: ContextVar[RenderState | None] = ContextVar("harness_render", default=None)


def render_state() -> RenderState | None:
    """The render in progress (None outside `rendering`)."""
    return _render.get()


def current_limits() -> Limits:
    state = _render.get()
    return DEFAULT_LIMITS if state is None else state.limits


@contextmanager
def rendering(limits: Limits, names: Mapping[int, str]) -> Iterator[None]:
    """Budgets and deadline for one render; wrap the whole `generate()` loop in it."""
    token = _render.set(RenderState(limits=limits, range_left=limits.max_range, names=names))
    deadline = time.monotonic() + limits.seconds
    previous = sys.gettrace()

    def in_template(frame: types.FrameType, event: Any, arg: Any) -> Any:
        if time.monotonic() > deadline:
            raise RenderLimitExceeded(f"rendering took longer than {limits.seconds:g} s")
        return in_template

    def on_call(frame: types.FrameType, event: Any, arg: Any) -> Any:
        if frame.f_code.co_filename == TEMPLATE_FILENAME:
            return in_template(frame, event, arg)
        # Leave a debugger's or coverage's tracer working everywhere else.
        return None if previous is None else previous(frame, event, arg)

    sys.settrace(on_call)
    try:
        yield
    finally:
        sys.settrace(previous)
        _render.reset(token)


MAX_DEPTH = 100  # nesting of lists and mappings a template may hand around


def weight(value: object, budget: int) -> int:
    """Characters plus items of a value, counting shared parts each time they would print.

    Lists, tuples and dicts cannot change inside the sandbox, so their weight is remembered
    for the render: weighing a literal built from checked parts costs one step per part.
    Gives up (returning more than `budget`) as soon as the budget is passed.
    """
    state = _render.get()
    memo: dict[int, tuple[object, int]] = {} if state is None else state.weights
    return _measure(value, budget, memo, 0)


def _measure(item: object, budget: int, memo: dict[int, tuple[object, int]], depth: int) -> int:
    if isinstance(item, str):
        return len(item)
    if isinstance(item, int):  # bool included
        return item.bit_length() // 3 + 1
    if item is None or isinstance(item, float | Context | nodes.EvalContext | Environment):
        return 1  # scalars, and Jinja's plumbing that it hands to filters
    known = memo.get(id(item))
    if known is not None and known[0] is item:
        return known[1]
    children: Iterable[object]
    if isinstance(item, Namespace):  # mutable: weighed afresh each time
        attrs: dict[str, object] = object.__getattribute__(item, "_Namespace__attrs")
        children, remember = [*attrs.keys(), *attrs.values()], False
    elif isinstance(item, Mapping):
        children, remember = [*item.keys(), *item.values()], type(item) is dict
    elif isinstance(item, list | tuple | set | frozenset):
        children, remember = item, True
    else:
        return 1  # macros, loop helpers, undefined, generators: their str() is short
    if depth > MAX_DEPTH:
        raise RenderLimitExceeded(f"values nested more than {MAX_DEPTH} levels deep")
    total = 1
    for child in children:
        total += _measure(child, budget - total, memo, depth + 1)
        if total > budget:
            return total
    if remember:
        memo[id(item)] = (item, total)
    return total


def check_size(value: object, what: str) -> object:
    """Return `value` if it is within `max_value`, else refuse."""
    limit = current_limits().max_value
    if weight(value, limit) > limit:
        raise RenderLimitExceeded(f"{what} would be larger than {limit} characters or items")
    return value


def check_total(size: int, what: str) -> None:
    limit = current_limits().max_value
    if size > limit:
        raise RenderLimitExceeded(f"{what} would be {size} characters; the limit is {limit}")


def budgeted_range(*args: int) -> range:
    """`range()` drawing on the render's shared item budget."""
    items = range(*args)
    try:
        count = len(items)
    except OverflowError:
        count = sys.maxsize
    state = _render.get()
    budget = DEFAULT_LIMITS.max_range if state is None else state.range_left
    if count > budget:
        total = DEFAULT_LIMITS.max_range if state is None else state.limits.max_range
        raise RenderLimitExceeded(
            f"range() would produce {count} items; a render may iterate at most {total}"
            " range items in all"
        )
    if state is not None:
        state.range_left -= count
    return items
