"""Charts for the metrics pages, drawn on the server as SVG by pygal and embedded as `data:`
images: the page needs no JavaScript (pygal's tooltip script is left out), and the chart's
own stylesheet applies inside the image while the page keeps its strict CSP. Every chart
comes with the same numbers as an HTML table, which is what screen readers get."""

from __future__ import annotations

import base64
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import pygal
from pygal.etree import etree
from pygal.style import Style

# On import pygal appends a finder of the old protocol (`find_module`) to sys.meta_path, for
# map plugins we do not use; on Python 3.11 every later import that reaches it warns
# (ImportWarning), which the tests treat as an error. Take it out again.
sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, pygal.PluginImportFixer)]

Number = float | int | None

_STYLE = Style(
    background="white",
    plot_background="white",
    foreground="#1f2328",
    foreground_strong="#1f2328",
    foreground_subtle="#59636e",
    colors=("#0969da", "#bf3989", "#1a7f37", "#9a6700", "#cf222e", "#8250df"),
    font_family="system-ui, sans-serif",
)


@dataclass(frozen=True)
class Chart:
    """A chart and its table: `rows` are (label, one cell per column after the first)."""

    key: str  # the figure's id
    title: str
    svg: str  # a data: URI
    columns: Sequence[str]
    rows: Sequence[tuple[str, Sequence[str]]] = field(default_factory=tuple)


def _configure(chart: pygal.Graph, title: str, labels: Sequence[str]) -> None:
    chart.title = title
    chart.x_labels = list(labels)
    chart.x_label_rotation = 30 if len(labels) > 8 else 0
    chart.no_data_text = "No data in this range"


def _options() -> dict[str, object]:
    return {
        "js": [],  # no tooltip script: the page works without JavaScript
        "style": _STYLE,
        "width": 800,
        "height": 360,
        "explicit_size": False,
        "show_legend": True,
        "legend_at_bottom": True,
        "truncate_legend": -1,
        "truncate_label": -1,
    }


def _data_uri(chart: pygal.Graph) -> str:
    """The chart as a `data:` URI, without pygal's scripts (its config and tooltips)."""
    tree = chart.render_tree()
    for parent in list(tree.iter()):
        for child in list(parent):
            if isinstance(child.tag, str) and child.tag.endswith("script"):
                parent.remove(child)
    svg = str(etree.tostring(tree, encoding="unicode"))
    return "data:image/svg+xml;charset=utf-8;base64," + base64.b64encode(svg.encode()).decode()


def line(title: str, labels: Sequence[str], series: dict[str, Sequence[Number]]) -> str:
    """A line chart, one line per series (None: no point that day)."""
    chart = pygal.Line(allow_interruptions=True, **_options())
    _configure(chart, title, labels)
    for name, values in series.items():
        chart.add(name, list(values))
    return _data_uri(chart)


def bar(title: str, labels: Sequence[str], series: dict[str, Sequence[Number]]) -> str:
    """A bar chart, one bar per label and series."""
    chart = pygal.Bar(**_options())
    _configure(chart, title, labels)
    for name, values in series.items():
        chart.add(name, list(values))
    return _data_uri(chart)


def number(value: Number, digits: int = 1) -> str:
    """A cell: the value rounded, or an em dash when there is none."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f} %"


def dollars(value: float | None) -> str:
    return "—" if value is None else f"${value:.2f}"
