"""HTML and XHTML: the text a reader sees, one line per block, without scripts or styles."""

from __future__ import annotations

import codecs
import re
from html.parser import HTMLParser
from typing import BinaryIO

from engine.parse import text
from engine.types import Page

# Elements whose content is never shown as text.
_HIDDEN = frozenset({"script", "style", "template", "noscript", "svg", "math"})
# Elements that start a new line; <title> is one, so a page's title becomes its first line.
_BLOCK = frozenset(
    "address article aside blockquote body caption dd details dialog div dl dt fieldset "
    "figcaption figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr li main nav ol p pre "
    "section summary table tbody tfoot thead title tr ul".split()
)
_CELLS = frozenset({"td", "th"})
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([-\w.:]+)""", re.IGNORECASE)


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in _CELLS:
            self.parts.append("\t")
        elif tag in _BLOCK:
            self.parts.append("\n")
            if tag == "pre":
                self._pre += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # "<script/>" never opens a hidden section in html.parser, so must not count as one.
        if tag not in _HIDDEN:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCK:
            self.parts.append("\n")
            if tag == "pre":
                self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        self.parts.append(data if self._pre else re.sub(r"\s+", " ", data))


def html_to_text(markup: str) -> str:
    """The visible text of an HTML document, blocks on their own lines, entities decoded."""
    extractor = _TextExtractor()
    extractor.feed(markup)
    extractor.close()
    lines = []
    for line in "".join(extractor.parts).split("\n"):
        line = re.sub(r"[ \t\r\f\v]*\t[ \t\r\f\v]*", "\t", line)
        lines.append(re.sub(r"[ \r\f\v]{2,}", " ", line).strip(" \t\r\f\v"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def decode_html(data: bytes) -> str:
    """Bytes of an HTML document as str: BOM, then <meta charset>, then text detection."""
    if not data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        declared = _META_CHARSET.search(data[:4096])
        if declared:
            try:
                encoding = codecs.lookup(declared.group(1).decode("ascii")).name
            except LookupError:
                encoding = None
            # An ASCII-compatible page cannot really be UTF-16; browsers ignore that claim too.
            if encoding and not encoding.startswith("utf-16") and not encoding.startswith("utf-32"):
                return data.decode(encoding, errors="replace")
    return text.decode(data)


def read(f: BinaryIO) -> tuple[Page, ...]:
    return (Page(None, html_to_text(decode_html(f.read()))),)
