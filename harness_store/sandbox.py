"""The Jinja environment harness templates run in: no Python internals, and bounded work.

Jinja's `ImmutableSandboxedEnvironment` already refuses `_private` attributes, internal
attributes of functions, frames and types, and mutation of lists and dicts. A harness is
edited by users, not by us, so on top of that:

- calls: only an allow-list (template macros, Jinja's loop helpers, the globals below and
  text-only `str`/`dict` methods); everything else is refused, whatever attribute led to it;
- size: every value a template builds (`~`, `+`, `*`, list and dict literals, call and
  filter results, buffered blocks) is weighed before it exists, and nothing may pass
  `Limits.max_value` characters or items, so no value can blow up memory or make a
  comparison or `str()` run for ever; `**` and `*` on integers are capped in bits;
- iteration: all `range()` calls of a render share one item budget;
- time: a trace function confined to template frames stops a render past its deadline.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache, wraps
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import UndefinedError
from jinja2.filters import FILTERS
from jinja2.runtime import BlockReference, Context, LoopContext, Macro, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from jinja2.utils import Cycler, Joiner, Namespace, missing, object_type_repr

from harness_store.budget import (
    budgeted_range,
    check_size,
    check_total,
    current_limits,
    render_state,
    weight,
)
from harness_store.errors import RenderLimitExceeded, UndefinedVariable, UnsafeTemplate


class _HarnessUndefined(StrictUndefined):
    """Strict: any use but `is defined` fails, naming the variable as the template wrote it."""

    __slots__ = ()

    def __init__(
        self,
        hint: str | None = None,
        obj: Any = missing,
        name: str | None = None,
        exc: type[Exception] = UndefinedError,
    ) -> None:
        if exc is UndefinedError and hint is None:
            exc = UndefinedVariable
        super().__init__(hint, obj, name, exc)  # type: ignore[arg-type]  # Jinja types it as TemplateRuntimeError

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        name = self._undefined_name
        if self._undefined_obj is missing:
            return str(name)
        state = render_state()
        owner = None if state is None else state.names.get(id(self._undefined_obj))
        if owner is None:
            owner = object_type_repr(self._undefined_obj)
        return f"{owner}.{name}" if isinstance(name, str) else f"{owner}[{name!r}]"


# str methods that never return more than they were given (or a bounded count of it).
_STR_METHOD_NAMES = """
    capitalize casefold count endswith find index isalnum isalpha isascii isdecimal
    isdigit isidentifier islower isnumeric isprintable isspace istitle isupper lower
    lstrip partition removeprefix removesuffix rfind rindex rpartition rsplit rstrip
    split splitlines startswith strip swapcase title upper ljust rjust center zfill
    replace join
"""
_STR_METHODS = frozenset(_STR_METHOD_NAMES.split())
_PADDING = frozenset({"ljust", "rjust", "center", "zfill"})
_DICT_METHODS = frozenset({"get", "items", "keys", "values"})
_SEQUENCE_METHODS = frozenset({"count", "index"})
_HELPER_METHODS: Mapping[type, frozenset[str]] = {
    Cycler: frozenset({"next", "reset"}),
    LoopContext: frozenset({"cycle", "changed"}),
}
_CALLABLE_GLOBALS: tuple[object, ...] = (budgeted_range, dict, Namespace, Cycler, Joiner)
_CALLABLE_INSTANCES = (Macro, BlockReference, LoopContext, Joiner)


def _describe(obj: object) -> str:
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    owner = getattr(obj, "__self__", None)
    if name and owner is not None and not isinstance(owner, types.ModuleType):
        return f"{type(owner).__name__}.{getattr(obj, '__name__', name)}()"
    return f"{name}()" if name else f"a {type(obj).__name__} object"


def _replaced_size(text: str, old: str, new: str, count: int) -> int:
    found = len(text) + 1 if old == "" else text.count(old)
    if count >= 0:
        found = min(found, count)
    return len(text) + found * (len(new) - len(old))


def _str_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    text: str = method.__self__
    name: str = method.__name__
    if name in _PADDING and args and isinstance(args[0], int):
        check_total(args[0], f"str.{name}()")
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str):
        count = args[2] if len(args) > 2 and isinstance(args[2], int) else -1
        check_total(_replaced_size(text, args[0], str(args[1]), count), "str.replace()")
    elif name == "join" and len(args) == 1 and not kwargs:
        parts = list(args[0])
        sizes = sum(len(part) if isinstance(part, str) else 0 for part in parts)
        check_total(sizes + len(text) * max(len(parts) - 1, 0), "str.join()")
        return text.join(parts)
    return method(*args, **kwargs)


class _BoundedFormatter(SandboxedFormatter):
    """`str.format` with Jinja's attribute checks, plus caps on widths and total length."""

    produced = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        limit = current_limits().max_value
        if any(int(number) > limit for number in re.findall(r"\d+", format_spec)):
            raise RenderLimitExceeded(f"format width or precision above {limit}")
        check_size(value, "a formatted value")
        text = super().format_field(value, format_spec)
        self.produced += len(text)
        check_total(self.produced, "str.format()")
        return text


class _BoundedFormat:
    """What `'...'.format` and `.format_map` become inside a template."""

    def __init__(self, env: HarnessSandbox, text: str, is_map: bool) -> None:
        self.env = env
        self.text = text
        self.is_map = is_map

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        formatter = _BoundedFormatter(self.env)
        if not self.is_map:
            return str(formatter.vformat(self.text, args, kwargs))
        if kwargs or len(args) != 1:
            raise TypeError("format_map() takes exactly one argument")
        return str(formatter.vformat(self.text, (), args[0]))


def _allowed_call(obj: Any) -> bool:
    if any(obj is allowed for allowed in _CALLABLE_GLOBALS):
        return True
    if isinstance(obj, (*_CALLABLE_INSTANCES, _BoundedFormat)):
        return True
    owner = getattr(obj, "__self__", None)
    if isinstance(obj, types.BuiltinMethodType) and owner is not None:
        name = obj.__name__
        if isinstance(owner, str):
            return name in _STR_METHODS
        if isinstance(owner, dict):
            return name in _DICT_METHODS
        if isinstance(owner, list | tuple):
            return name in _SEQUENCE_METHODS
        return False
    if isinstance(obj, types.MethodType):
        allowed = _HELPER_METHODS.get(type(owner), frozenset())
        return obj.__func__.__name__ in allowed
    return False


def _guarded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(function)  # keeps Jinja's pass_context / pass_eval_context marker
    def guarded(*args: Any, **kwargs: Any) -> Any:
        for value in (*args, *kwargs.values()):
            check_size(value, f"the input of the {name!r} filter")
        return check_size(function(*args, **kwargs), f"the result of the {name!r} filter")

    return guarded


def _bounded_join(join: Callable[..., str]) -> Callable[..., str]:
    def join_filter(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
        items = list(value)
        size = sum(len(str(item)) for item in items) + len(str(d)) * max(len(items) - 1, 0)
        check_total(size, "the 'join' filter")
        return join(eval_ctx, items, d, attribute)

    return join_filter


def _bounded_replace(replace: Callable[..., str]) -> Callable[..., str]:
    def replace_filter(eval_ctx: Any, s: Any, old: Any, new: Any, count: int | None = None) -> str:
        size = _replaced_size(str(s), str(old), str(new), -1 if count is None else count)
        check_total(size, "the 'replace' filter")
        return replace(eval_ctx, s, old, new, count)

    return replace_filter


def _bounded_indent(indent: Callable[..., str]) -> Callable[..., str]:
    def indent_filter(
        s: Any, width: int | str = 4, first: bool = False, blank: bool = False
    ) -> str:
        text = str(s)
        step = width if isinstance(width, int) else len(str(width))
        check_total(len(text) + (text.count("\n") + 1) * max(step, 0), "the 'indent' filter")
        return indent(s, width, first, blank)

    return indent_filter


def _bounded_center(center: Callable[..., str]) -> Callable[..., str]:
    def center_filter(value: Any, width: int = 80) -> str:
        check_total(max(len(str(value)), width), "the 'center' filter")
        return center(value, width)

    return center_filter


# Filters that only reshape what they are given. Left out: `format` (printf widths),
# `random` (a render must be repeatable), markup and URL helpers a prompt has no use for,
# and `batch`/`slice`, whose fill values can multiply one value without building it.
_PLAIN_FILTER_NAMES = """
    abs attr capitalize count d default dictsort filesizeformat first float groupby int
    items last length list lower map max min reject rejectattr reverse round select
    selectattr sort string striptags sum title tojson trim truncate unique upper
    wordcount wordwrap
"""
_BOUNDED_FILTERS: Mapping[str, Callable[[Callable[..., str]], Callable[..., str]]] = {
    "join": _bounded_join,
    "replace": _bounded_replace,
    "indent": _bounded_indent,
    "center": _bounded_center,
}


def _filters() -> dict[str, Callable[..., Any]]:
    table = {name: FILTERS[name] for name in _PLAIN_FILTER_NAMES.split()}
    for name, bound in _BOUNDED_FILTERS.items():
        # The bounded version keeps the original's pass-through marker (eval context or not).
        table[name] = wraps(FILTERS[name])(bound(FILTERS[name]))
    return {name: _guarded_filter(name, function) for name, function in table.items()}


class _BoundedCodeGenerator(CodeGenerator):
    """Routes `~` and list, tuple and dict literals through size checks."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.concat_values((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def _checked(self, visit: Callable[[], None]) -> None:
        self.write("environment.checked_literal(")
        visit()
        self.write(")")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self._checked(lambda: super(_BoundedCodeGenerator, self).visit_List(node, frame))

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self._checked(lambda: super(_BoundedCodeGenerator, self).visit_Dict(node, frame))

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx != "load":  # an assignment target (`for a, b in ...`) stays as it is
            super().visit_Tuple(node, frame)
            return
        self._checked(lambda: super(_BoundedCodeGenerator, self).visit_Tuple(node, frame))


def _finalize(value: Any) -> Any:
    return check_size(value, "an output value")


class HarnessSandbox(ImmutableSandboxedEnvironment):
    """The environment harness templates are compiled and rendered in."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})
    code_generator_class = _BoundedCodeGenerator

    def __init__(self) -> None:
        super().__init__(
            undefined=_HarnessUndefined,
            autoescape=False,  # the output is a prompt, not HTML
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            finalize=_finalize,
            auto_reload=False,
        )
        # No `lipsum`: nothing a harness needs, one more function object to poke at.
        self.globals = {
            "range": budgeted_range,
            "dict": dict,
            "namespace": Namespace,
            "cycler": Cycler,
            "joiner": Joiner,
        }
        self.filters = _filters()

    # Buffered output ({% set %} blocks, macro bodies) is joined here.
    def concat(self, pieces: Iterable[str]) -> str:
        parts = list(pieces)
        limit = current_limits().max_output
        size = sum(len(part) for part in parts)
        if size > limit:
            raise RenderLimitExceeded(
                f"a block's output would be {size} characters; the limit is {limit}"
            )
        return "".join(parts)

    def concat_values(self, values: Sequence[Any]) -> str:
        """The `~` operator."""
        parts = [str(check_size(value, "a value joined with '~'")) for value in values]
        check_total(sum(len(part) for part in parts), "'~'")
        return "".join(parts)

    def checked_literal(self, value: Any) -> Any:
        return check_size(value, "a list or mapping")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        limits = current_limits()
        if operator == "%" and isinstance(left, str):
            raise UnsafeTemplate(
                "printf-style '%' formatting is not available in harness templates;"
                " use '~' or '{}'.format(...)"
            )
        ints = isinstance(left, int) and isinstance(right, int)
        if operator == "**" and ints and abs(left) > 1 and right > 0:
            if left.bit_length() * right > limits.max_int_bits:
                raise RenderLimitExceeded(
                    f"{left} ** {right} is larger than {limits.max_int_bits} bits"
                )
        elif operator == "*" and ints:
            if left.bit_length() + right.bit_length() > limits.max_int_bits:
                raise RenderLimitExceeded(f"a product larger than {limits.max_int_bits} bits")
        elif operator == "*" and (isinstance(left, int) or isinstance(right, int)):
            times, value = (left, right) if isinstance(left, int) else (right, left)
            if times > 0:
                check_total(weight(value, limits.max_value + 1) * times, "a repetition ('*')")
        elif operator == "+" and not ints:
            total = weight(left, limits.max_value + 1) + weight(right, limits.max_value + 1)
            check_total(total, "a sum ('+')")
        return self.binop_table[operator](left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        if (
            isinstance(value, types.BuiltinMethodType)
            and value.__name__ in ("format", "format_map")
            and isinstance(value.__self__, str)
        ):
            return _BoundedFormat(self, value.__self__, value.__name__ == "format_map")
        return None

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        if isinstance(obj, Undefined):
            obj._fail_with_undefined_error()
        if not _allowed_call(obj):
            raise UnsafeTemplate(f"calling {_describe(obj)} is not allowed in a harness template")
        for key, value in kwargs.items():
            if key not in ("_loop_vars", "_block_vars"):  # Jinja's own bookkeeping
                check_size(value, "an argument")
        for value in args:
            check_size(value, "an argument")
        if isinstance(obj, types.BuiltinMethodType) and isinstance(obj.__self__, str):
            kwargs.pop("_loop_vars", None)
            kwargs.pop("_block_vars", None)
            result = _str_method(obj, args, kwargs)
        else:
            result = context.call(obj, *args, **kwargs)
        return check_size(result, "a call's result")


@cache
def sandbox() -> HarnessSandbox:
    """The one environment (built on first use, never at import)."""
    return HarnessSandbox()
