"""OpenDocument .odt/.ods/.odp: the paragraphs, headings and table rows of content.xml."""

from __future__ import annotations

import zipfile
from typing import BinaryIO
from xml.etree import ElementTree

from engine.errors import ParseError
from engine.types import FileStatus, Page

_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_PARAGRAPHS = frozenset({_TEXT + "p", _TEXT + "h"})
_SPACE, _TAB, _LINE_BREAK = _TEXT + "s", _TEXT + "tab", _TEXT + "line-break"
_ROW, _CELL = _TABLE + "table-row", _TABLE + "table-cell"


def read(f: BinaryIO) -> tuple[Page, ...]:
    with zipfile.ZipFile(f) as zf:
        if _is_encrypted(zf):
            raise ParseError(
                FileStatus.ENCRYPTED,
                "this OpenDocument file is password-protected; "
                "Sift cannot read it without the password",
            )
        with zf.open("content.xml") as member:
            root = ElementTree.parse(member).getroot()
    lines: list[str] = []
    _block(root, lines)
    return (Page(None, "\n".join(lines)),)


def _is_encrypted(zf: zipfile.ZipFile) -> bool:
    try:
        manifest = zf.read("META-INF/manifest.xml")
    except KeyError:
        return False
    return b"encryption-data" in manifest


def _block(element: ElementTree.Element, lines: list[str]) -> None:
    """Append the lines of `element`'s children: a paragraph or table row per line."""
    for child in element:
        if child.tag in _PARAGRAPHS:
            nested: list[str] = []
            lines.append("".join(_inline(child, nested)))
            lines.extend(nested)
        elif child.tag == _ROW:
            cells = []
            for cell in child:
                if cell.tag != _CELL:
                    continue
                cell_lines: list[str] = []
                _block(cell, cell_lines)
                cells.append(" ".join(line for line in cell_lines if line.strip()))
            while cells and not cells[-1]:
                cells.pop()
            lines.append("\t".join(cells))
        else:
            _block(child, lines)


def _inline(element: ElementTree.Element, nested: list[str]) -> list[str]:
    """The text of a paragraph; frames and notes inside it add their own lines to `nested`."""
    parts = [element.text or ""]
    for child in element:
        if child.tag == _SPACE:
            parts.append(" " * _count(child.get(_TEXT + "c")))
        elif child.tag == _TAB:
            parts.append("\t")
        elif child.tag == _LINE_BREAK:
            parts.append("\n")
        elif any(e.tag in _PARAGRAPHS for e in child.iter()):
            _block(child, nested)
        else:  # spans, links, fields: their text flows with the paragraph
            parts.extend(_inline(child, nested))
        parts.append(child.tail or "")
    return parts


def _count(value: str | None) -> int:
    # A hostile count could ask for billions of spaces; a few are as good for search.
    try:
        return max(1, min(int(value or 1), 100))
    except ValueError:
        return 1
