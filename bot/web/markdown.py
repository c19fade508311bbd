"""Harness and skill text shown as Markdown: rendered by markdown-it, then sanitised by nh3.

The text comes from whoever may publish a version, and it is shown to everyone who may read
the page, so the HTML that reaches a browser is cut down to plain document markup: no
scripts, styles, event handlers, ids (no DOM clobbering), frames or forms, and only http(s)
and mailto links, each with `rel="noopener noreferrer"`. Raw HTML in the Markdown is let
through markdown-it (so a `<details>` block still folds) precisely because nh3 runs after it.
"""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

_TAGS = {
    *("p", "br", "hr", "blockquote", "pre", "code", "kbd", "samp", "var"),
    *("h3", "h4", "h5", "h6", "ul", "ol", "li", "dl", "dt", "dd"),
    *("em", "strong", "b", "i", "u", "s", "del", "ins", "mark", "sub", "sup", "small"),
    *("a", "img", "table", "thead", "tbody", "tr", "th", "td", "caption"),
    *("details", "summary", "abbr", "span", "div"),
}
_CLEANER = nh3.Cleaner(
    tags=_TAGS,
    clean_content_tags={"script", "style", "iframe", "object", "embed", "template", "noscript"},
    attributes={
        "a": {"href", "title"},
        "img": {"src", "alt", "title"},
        "abbr": {"title"},
        "ol": {"start"},
        "th": {"colspan", "rowspan", "scope"},
        "td": {"colspan", "rowspan"},
    },
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer",
    strip_comments=True,
)
# The page's own h1/h2 frame the document, so its headings start one level below.
_HEADING_SHIFT = 2


def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": True, "linkify": False}).enable(
        ["table", "strikethrough"]
    )


_MD = _parser()


def render_markdown(text: str) -> Markup:
    """`text` as sanitised HTML, its headings moved below the page's own."""
    tokens = _MD.parse(text)
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            level = min(int(token.tag[1]) + _HEADING_SHIFT, 6)
            token.tag = f"h{level}"
    html = _MD.renderer.render(tokens, _MD.options, {})
    return Markup(_CLEANER.clean(html))  # noqa: S704 -- sanitised by nh3 just above
