"""A report page read back as a browser would: its elements, its text and its tables (stdlib parser)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Page:
    tags: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # every start tag, in order
    text: list[str] = field(default_factory=list)  # every piece of text, unescaped
    tables: list[list[list[str]]] = field(default_factory=list)  # table -> rows -> cell texts

    def table_with(self, header: str) -> list[list[str]]:
        """The first table one of whose cells is `header`."""
        return next(t for t in self.tables if any(header in row for row in t))

    def images(self) -> list[str]:
        return [attrs.get("src", "") for tag, attrs in self.tags if tag == "img"]


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.page.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag == "table":
            self.page.tables.append([])
        elif tag == "tr" and self.page.tables:
            self.page.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.page.tables:
            self.page.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.page.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def read_page(html: str) -> Page:
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return reader.page
