"""Charts for the metrics pages, drawn on the server as SVG by pygal: the metrics dashboard
serves each as an image of its own (bot/web/dashboard_page.py), a harness's impact page
embeds its one as a `data:` image. Either way the page needs no JavaScript (pygal's tooltip
script is left out), and the chart's own stylesheet applies inside the image while the page
keeps its strict CSP. Every chart comes with the same numbers as an HTML table, which is
what screen readers get."""

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
    svg: str  # the image's src: a data: URI, or the chart's own URL
    columns: Sequence[str]
    rows: Sequence[tuple[str, Sequence[str]]] = field(default_factory=tuple)


# Past a month of days a label every few days, past two weeks a line without dots: as
# readable, and pygal draws in a third of the time (each dot is a group with its tooltip).
MANY = 31
DOTS = 14


def _configure(chart: pygal.Graph, title: str, labels: Sequence[str]) -> None:
    chart.title = title
    chart.x_labels = list(labels)
    chart.x_label_rotation = 30 if len(labels) > 8 else 0
    chart.no_data_text = "No data in this range"
    if len(labels) > MANY:
        chart.x_labels_major_every = -(-len(labels) // 15)
        chart.show_minor_x_labels = False


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


def _svg(chart: pygal.Graph) -> str:
    """The chart as SVG, without pygal's scripts (its config and tooltips)."""
    tree = chart.render_tree()
    for parent in list(tree.iter()):
        for child in list(parent):
            if isinstance(child.tag, str) and child.tag.endswith("script"):
                parent.remove(child)
    return str(etree.tostring(tree, encoding="unicode"))


def data_uri(svg: str) -> str:
    return "data:image/svg+xml;charset=utf-8;base64," + base64.b64encode(svg.encode()).decode()


def draw_line(title: str, labels: Sequence[str], series: dict[str, Sequence[Number]]) -> str:
    """A line chart as SVG, one line per series (None: no point that day)."""
    chart = pygal.Line(allow_interruptions=True, show_dots=len(labels) <= DOTS, **_options())
    _configure(chart, title, labels)
    for name, values in series.items():
        chart.add(name, list(values))
    return _svg(chart)


def draw_bar(title: str, labels: Sequence[str], series: dict[str, Sequence[Number]]) -> str:
    """A bar chart as SVG, one bar per label and series."""
    chart = pygal.Bar(**_options())
    _configure(chart, title, labels)
    for name, values in series.items():
        chart.add(name, list(values))
    return _svg(chart)


def line(title: str, labels: Sequence[str], series: dict[str, Sequence[Number]]) -> str:
    """A line chart as a `data:` URI."""
    return data_uri(draw_line(title, labels, series))


def bar(title: str, labels: Sequence[str], series: dict[str, Sequence[Number]]) -> str:
    """A bar chart as a `data:` URI."""
    return data_uri(draw_bar(title, labels, series))


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
