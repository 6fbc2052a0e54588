"""Links between generated pages: feature ids on figure pages become links only where a page exists, and a
crawler finds every local link (href/src) in a tree of pages that points at nothing.

Figure pages (TSEA scatter and Manhattan) mark each feature id as `<td data-feature="N">`. Where they are
written (the TSEA directory) no feature page exists, so the ids are plain text; `link_features` turns them into
links when the pages are copied into a dashboard site (to the pages that were built) or served by `browse` (to
every feature, rendered on demand).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

_FEATURE_CELL = re.compile(r'<td data-feature="(\d+)">(?:<a href="[^"]*">)?(#\d+)(?:</a>)?</td>')
_EXTERNAL = ("data:", "http:", "https:", "mailto:", "javascript:", "blob:", "about:")


def link_features(html: str, href: Callable[[int], str | None]) -> str:
    """`html` with every marked feature id linked to `href(id)`, or left as plain text where that is None."""
    def cell(m: re.Match) -> str:
        target = href(int(m.group(1)))
        text = m.group(2)
        inner = f'<a href="{target}">{text}</a>' if target else text
        return f'<td data-feature="{m.group(1)}">{inner}</td>'
    return _FEATURE_CELL.sub(cell, html)


def copy_figure_pages(src: str | Path, dst: str | Path, href: Callable[[int], str | None], *,
                      back: tuple[str, str] | None = None) -> list[str]:
    """Copy the HTML pages of `src` (e.g. a TSEA directory; their figures are embedded) into `dst` with feature
    ids linked by `href`, and `back` = (label, href) added to each header; returns the copied names."""
    from babelscope.files import write_text_atomic

    dst = Path(dst)
    names = []
    for page in sorted(Path(src).glob("*.html")):
        html = link_features(page.read_text(encoding="utf-8"), href)
        if back is not None:
            html = add_header_link(html, *back)
        write_text_atomic(dst / page.name, html)
        names.append(page.name)
    return names


def add_header_link(html: str, label: str, href: str) -> str:
    """A link added after the page's <h1> (the header of babelscope's page templates)."""
    from html import escape

    return html.replace("</h1>", f'</h1><a href="{escape(href)}">{escape(label)}</a>', 1)


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[str] = []
        self._script_id: str | None = None
        self.data: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("href", "src"):
            if a.get(key) is not None and not (tag == "script" and key == "src" and a[key] == ""):
                self.refs.append(a[key])
        self._script_id = a.get("id") if tag == "script" and a.get("type") == "application/json" else None

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script_id = None

    def handle_data(self, data: str) -> None:
        if self._script_id == "data":
            self.data.append(data)


def page_links(html: str) -> list[str]:
    """Every local href/src of a page, plus the feature pages its index data links to (the index builds those
    links in the browser from `rows`)."""
    p = _Refs()
    p.feed(html)
    refs = [r for r in p.refs if r and not r.startswith("#") and not r.lower().startswith(_EXTERNAL)]
    if p.data:
        try:
            rows = json.loads("".join(p.data)).get("rows", [])
        except (json.JSONDecodeError, AttributeError):
            rows = []
        refs += [f"feature-{int(r['feature'])}.html" for r in rows if isinstance(r, dict) and "feature" in r]
    return refs


def dead_links(pages: Iterable[str | Path] | str | Path) -> list[tuple[Path, str]]:
    """(page, link) for every local link of the pages (or of every .html under a directory) whose target file
    does not exist."""
    if isinstance(pages, str | Path):
        root = Path(pages)
        pages = sorted(root.rglob("*.html")) if root.is_dir() else [root]
    dead = []
    for page in map(Path, pages):
        for ref in page_links(page.read_text(encoding="utf-8")):
            path = unquote(urlsplit(ref).path)
            if not path:
                continue
            target = page.parent / path  # a directory counts: a browser lists it, a server serves its index
            if not target.exists():
                dead.append((page, ref))
    return dead


def page_title(page: str | Path) -> str:
    """A page's <title> without the " · babelscope" suffix (its file name when it has none)."""
    from html import unescape

    m = re.search(r"<title>(.*?)</title>", Path(page).read_text(encoding="utf-8"), re.S)
    return unescape(m.group(1)).removesuffix(" · babelscope").strip() if m else Path(page).stem


if __name__ == "__main__":  # python -m babelscope.report.links DIR...: list dead links, exit 1 if any
    import sys

    found = [d for arg in sys.argv[1:] for d in dead_links(arg)]
    for page, ref in found:
        print(f"{page}: {ref}")
    sys.exit(1 if found else 0)
