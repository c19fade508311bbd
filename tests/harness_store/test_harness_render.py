"""Harness rendering: variables, precise errors, and a sandbox that gives nothing away."""

from __future__ import annotations

import sys
import time
import types
from typing import Any

import pytest

from harness_store.errors import (
    RenderError,
    RenderLimitExceeded,
    TemplateSyntax,
    UndefinedVariable,
    UnsafeTemplate,
    UntrustedVariable,
)
from harness_store.render import (
    WITHHELD,
    Limits,
    RepositoryVars,
    TicketVars,
    check_template,
    render_harness,
)

TICKET = TicketVars(
    key="octo/hello#12",
    number=12,
    url="https://github.com/octo/hello/issues/12",
    labels=("bug", "openase"),
)
REPO = RepositoryVars(
    full_name="octo/hello",
    default_branch="trunk",
    clone_url="https://github.com/octo/hello.git",
)


def render(source: str, **kwargs: Any) -> str:
    return render_harness(source, ticket=TICKET, repository=REPO, **kwargs)


def test_every_variable_reaches_the_template() -> None:
    source = (
        "{{ ticket.key }}|{{ ticket.number }}|"
        "{{ ticket.url }}|{{ ticket.labels | join(',') }}\n"
        "{{ repository.full_name }}|{{ repository.default_branch }}|{{ repository.clone_url }}\n"
        "{{ attempt }}|{{ extra.guidance }}|{{ extra.nested.deep }}\n"
    )

    out = render(source, attempt=2, extra={"guidance": "smaller", "nested": {"deep": 1}})

    assert out == (
        "octo/hello#12|12|"
        "https://github.com/octo/hello/issues/12|bug,openase\n"
        "octo/hello|trunk|https://github.com/octo/hello.git\n"
        "2|smaller|1\n"
    )


@pytest.mark.parametrize(
    ("source", "variable", "line"),
    [
        ("{{ ticket.title }}", "ticket.title", 1),
        ("Fix it.\n\n{{ ticket.body | trim }}", "ticket.body", 3),
        ("{% if previous_failure %}\n{{ previous_failure }}{% endif %}", "previous_failure", 1),
        ("{{ ticket['body'] }}", "ticket.body", 1),
        ("{% macro m(t) %}{{ t }}{% endmacro %}\n{{ m(ticket.title) }}", "ticket.title", 2),
    ],
)
def test_text_third_parties_write_is_refused_at_publishing_with_the_reason(
    source: str, variable: str, line: int
) -> None:
    with pytest.raises(UntrustedVariable) as caught:
        check_template(source)  # what publishing runs
    assert (caught.value.variable, caught.value.line) == (variable, line)
    assert str(caught.value).startswith(
        f"line {line}: {variable!r} is not available to harnesses: {WITHHELD[variable]}, so it "
        "reaches the agent only in its prompt, fenced as untrusted input"
    )
    with pytest.raises(UntrustedVariable):  # a version stored before: refused when rendered
        render(source)


def test_text_third_parties_write_is_refused_however_a_template_reaches_for_it() -> None:
    source = "ok\n{% set key = 'bo' ~ 'dy' %}{{ ticket[key] }}"
    check_template(source)  # nothing names it: only rendering finds it
    with pytest.raises(UntrustedVariable, match=r"^line 2: 'ticket.body' is not available"):
        render(source)


def test_asking_whether_withheld_text_exists_or_naming_ones_own_is_fine() -> None:
    assert render("{% if ticket.body is defined %}yes{% else %}no{% endif %}") == "no"
    assert render("{% set previous_failure = 'mine' %}{{ previous_failure }}") == "mine"
    assert render("{% for ticket in [{'title': 't'}] %}{{ ticket.title }}{% endfor %}") == "t"
    assert render("{{ ticket.get('body') is none }}") == "True"


def test_rendering_is_a_pure_function() -> None:
    source = "{% for label in ticket.labels %}{{ loop.index }}={{ label }} {% endfor %}"
    assert render(source) == render(source) == "1=bug 2=openase "
    assert render("{% if attempt > 1 %}again{% else %}first{% endif %}") == "first"


def test_the_ordinary_template_toolbox_works() -> None:
    source = (
        "{% macro item(name) %}- {{ name | upper }}{% endmacro %}"
        "{% for label in ticket.labels | sort %}{{ item(label) }} {% endfor %}|"
        "{% set ns = namespace(total=0) %}{% for i in range(4) %}{% set ns.total = ns.total + i %}"
        "{% endfor %}{{ ns.total }}|{% set c = cycler('a', 'b') %}{{ c.next() }}{{ c.next() }}|"
        "{{ '{}: {}'.format(ticket.key, repository.full_name.upper()) }}|"
        "{{ repository.full_name.replace('hello', 'world') }}|{{ ', '.join(ticket.labels) }}|"
        "{{ ticket.get('number') }}|{{ ticket.url | replace('/', ' ') | wordcount }}|"
        "{{ [1, 2] ~ (3,) ~ {'a': 1} }}|{{ 2 ** 10 }}|{{ 'ab' * 2 }}|{{ ticket.labels | tojson }}"
    )

    assert render(source) == (
        "- BUG - OPENASE |6|ab|octo/hello#12: OCTO/HELLO|octo/world|"
        'bug, openase|12|7|[1, 2](3,){\'a\': 1}|1024|abab|["bug", "openase"]'
    )


@pytest.mark.parametrize(
    ("source", "variable", "line"),
    [
        ("{{ nope }}", "nope", 1),
        ("line one\nline two\n{{ ticket.nope }}", "ticket.nope", 3),
        ("{{ repository.owner }}", "repository.owner", 1),
        ("\n{{ extra.guidance }}", "extra.guidance", 2),
        ("{{ extra.nested.missing }}", "extra.nested.missing", 1),
        ("{% if ticket.assignee %}x{% endif %}", "ticket.assignee", 1),
        ("{% for x in nope %}{% endfor %}", "nope", 1),
        ("{{ nope.attr }}", "nope", 1),
        ("{{ nope() }}", "nope", 1),
        ("{{ 'a' ~ nope }}", "nope", 1),
        ("{{ ticket.labels[5] }}", "ticket.labels", 1),
    ],
)
def test_an_undefined_variable_is_named_with_its_line(
    source: str, variable: str, line: int
) -> None:
    with pytest.raises(UndefinedVariable) as caught:
        render(source, extra={"nested": {}})
    if variable == "ticket.labels":  # an index, not a name: reported as written
        assert caught.value.variable == "list object[5]"
    else:
        assert caught.value.variable == variable
        assert str(caught.value) == f"line {line}: undefined variable {variable!r}"
    assert caught.value.line == line


def test_is_defined_lets_a_template_handle_optional_variables() -> None:
    source = "{% if extra.guidance is defined %}{{ extra.guidance }}{% else %}none{% endif %}"
    assert render(source) == "none"
    assert render(source, extra={"guidance": "go"}) == "go"


@pytest.mark.parametrize(
    ("source", "message", "line"),
    [
        ("ok\n{% for x in y %}", "Unexpected end of template", 2),
        ("{{ ticket.key }", "unexpected '}'", 1),
        ("a\nb\n{% endif %}", "Encountered unknown tag 'endif'", 3),
        ("{{ x | format('%s') }}", "No filter named 'format'. Harness templates offer: abs,", 1),
        ("{% include 'secrets.txt' %}", "cannot extend, include or import", 1),
        ("\n{% extends 'base' %}", "cannot extend, include or import", 2),
        ("{% import 'macros' as m %}", "cannot extend, include or import", 1),
        ("{% from 'macros' import m %}", "cannot extend, include or import", 1),
    ],
)
def test_syntax_errors_say_what_and_where(source: str, message: str, line: int) -> None:
    with pytest.raises(TemplateSyntax) as caught:
        check_template(source)
    assert message in caught.value.message
    assert caught.value.line == line
    with pytest.raises(TemplateSyntax):
        render(source)


# Each payload is a known way out of a Jinja sandbox or a way to exhaust the host.
ESCAPES = [
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", UnsafeTemplate),
    ("{{ ''.__class__ }}", UnsafeTemplate),
    ("{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}", UnsafeTemplate),
    ("{{ cycler.__init__.__globals__ }}", UnsafeTemplate),
    ("{{ joiner.__init__.__globals__.os }}", UnsafeTemplate),
    ("{{ namespace.__init__.__globals__ }}", UnsafeTemplate),
    ("{{ self._TemplateReference__context }}", UnsafeTemplate),
    ("{{ self.__dict__ }}", UnsafeTemplate),
    ("{{ lipsum.__globals__ }}", UndefinedVariable),  # not offered at all
    ("{{ config }}", UndefinedVariable),
    ("{{ config.items() }}", UndefinedVariable),
    ("{{ request.application.__globals__ }}", UndefinedVariable),
    ("{{ '{0.__class__}'.format(ticket) }}", UnsafeTemplate),
    ("{{ '{0.__class__.__base__.__subclasses__}'.format('') }}", UnsafeTemplate),
    ("{{ '{t.get.__self__}'.format_map({'t': ticket}) }}", UnsafeTemplate),
    ("{{ '%s' % ticket }}", UnsafeTemplate),
    ("{{ ticket | attr('__class__') }}", UnsafeTemplate),
    ("{{ ticket['__class__'] }}", UnsafeTemplate),
    ("{{ ticket.items.__self__ }}", UnsafeTemplate),
    ("{{ dict.mro() }}", UnsafeTemplate),
    ("{{ dict.fromkeys(range(3)) }}", UnsafeTemplate),
    ("{{ range.__globals__ }}", UnsafeTemplate),
    ("{{ range.__self__ }}", UndefinedVariable),
    ("{{ ticket.key.encode() }}", UnsafeTemplate),
    ("{{ ticket.key.translate({}) }}", UnsafeTemplate),
    ("{{ ticket.update(key='x') }}", UnsafeTemplate),
    ("{{ ticket.labels.append('x') }}", UnsafeTemplate),
    ("{{ ticket.labels.pop() }}", UnsafeTemplate),
    ("{{ ticket.labels | map('pprint') | list }}", RenderError),
    ("{{ (ticket.labels | map('upper')).gi_frame.f_globals }}", UnsafeTemplate),
    ("{{ (ticket.labels | map('upper')).send(None) }}", UnsafeTemplate),
    ("{{ loop.__class__ }}", UnsafeTemplate),
    ("{% for x in [1] %}{{ loop._iterator }}{% endfor %}", UnsafeTemplate),
    ("{{ range(10**10) | list }}", RenderLimitExceeded),
    ("{% for i in range(10**10) %}{% endfor %}", RenderLimitExceeded),
    (
        "{% for i in range(60000) %}{% endfor %}{% for i in range(60000) %}{% endfor %}",
        RenderLimitExceeded,
    ),
    ("{{ 'a' * 10**8 }}", RenderLimitExceeded),
    ("{{ [0] * 10**8 }}", RenderLimitExceeded),
    ("{{ 2 ** 100000 }}", RenderLimitExceeded),
    ("{{ (10 ** 1000) * (10 ** 1000) }}", RenderLimitExceeded),
    ("{{ ticket.key.ljust(10**9) }}", RenderLimitExceeded),
    ("{{ ticket.key.expandtabs(10**9) }}", UnsafeTemplate),
    ("{{ ('x' * 200000).replace('', 'y' * 200000) }}", RenderLimitExceeded),
    ("{{ ','.join(['x' * 200000] * 3) }}", RenderLimitExceeded),
    ("{{ range(1000) | join('x' * 1000) }}", RenderLimitExceeded),
    ("{{ ('x' * 1000).join(range(1000) | map('string')) }}", RenderLimitExceeded),
    ("{{ '{:>999999999}'.format(1) }}", RenderLimitExceeded),
    ("{{ '{0}{0}{0}{0}'.format('x' * 100000) }}", RenderLimitExceeded),
    ("{{ ('x' * 100000) | indent(300000) }}", RenderLimitExceeded),
    ("{{ ('x\\n' * 100000) | indent(10) }}", RenderLimitExceeded),
    ("{{ 'x' | center(10**9) }}", RenderLimitExceeded),
    (
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        RenderLimitExceeded,
    ),
    (
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s + ns.s %}{% endfor %}",
        RenderLimitExceeded,
    ),
    (
        "{% set ns = namespace(l=[1]) %}{% for i in range(60) %}"
        "{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l == ns.l }}",
        RenderLimitExceeded,
    ),
    (
        "{% set ns = namespace(d={}) %}{% for i in range(60) %}"
        "{% set ns.d = {'a': ns.d, 'b': ns.d} %}{% endfor %}",
        RenderLimitExceeded,
    ),
    (
        "{% set ns = namespace(n=ticket) %}{% for i in range(60) %}"
        "{% set ns.n = namespace(a=ns.n, b=ns.n) %}{% endfor %}{{ (ns.n,) }}",
        RenderLimitExceeded,
    ),
    (
        "{% set ns = namespace(s='x') %}{% for i in range(30) %}"
        "{% set ns.s %}{{ ns.s }}{{ ns.s }}{% endset %}{% endfor %}",
        RenderLimitExceeded,
    ),
    ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", RenderLimitExceeded),
    ("{{ 1 / 0 }}", RenderError),
]


@pytest.mark.parametrize(("source", "error"), ESCAPES, ids=[p for p, _ in ESCAPES])
def test_sandbox_escapes_and_resource_abuse_are_refused(
    source: str, error: type[RenderError]
) -> None:
    started = time.monotonic()
    with pytest.raises(error) as caught:
        render(source)
    assert caught.value.line == 1
    # Nothing of Python's insides comes back in the message.
    for leak in ("<class", "subprocess", "Popen", "os.environ", "<function", "<module"):
        assert leak not in str(caught.value)
    assert time.monotonic() - started < 2


def test_a_render_that_runs_too_long_is_stopped() -> None:
    source = "{% for i in range(300) %}{% for c in 'x' * 200000 %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(RenderLimitExceeded, match=r"line 1: rendering took longer than 0.2 s"):
        render(source, limits=Limits(seconds=0.2))
    assert time.monotonic() - started < 1.5


def test_output_is_capped() -> None:
    with pytest.raises(RenderLimitExceeded, match="longer than 1000 characters"):
        render(
            "{% for i in range(200) %}{{ ticket.key }}{% endfor %}",
            limits=Limits(max_output=1000),
        )
    assert len(render("{{ 'x' * 1000 }}", limits=Limits(max_output=1000))) == 1000


def test_oversized_variables_are_refused() -> None:
    huge = TicketVars(key="k", labels=("x" * 300_000,))
    with pytest.raises(RenderLimitExceeded, match="variable 'ticket' is larger than"):
        render_harness("{{ ticket.key }}", ticket=huge, repository=REPO)


def test_the_tracer_is_restored_and_chained() -> None:
    seen: list[str] = []

    def tracer(frame: types.FrameType, event: str, arg: object) -> None:
        seen.append(frame.f_code.co_name)

    before = sys.gettrace()
    sys.settrace(tracer)
    try:
        render("{{ ticket.key | upper }}")
        with pytest.raises(RenderError):
            render("{{ nope }}")
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(before)
    # Frames outside the template still reached the tracer that was there before.
    assert "do_upper" in seen
