"""Word .docx via python-docx: paragraphs and table cells in document order, as one page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import docx
from docx.table import Table

from engine.types import Page


def read(f: BinaryIO) -> tuple[Page, ...]:
    document = docx.Document(f)
    return (Page(None, "\n".join(_lines(document))),)


def _lines(container) -> Iterator[str]:
    """Lines of a document or table cell; tables become one tab-separated line per row."""
    for block in container.iter_inner_content():
        if isinstance(block, Table):
            yield from _table_lines(block)
        else:
            yield block.text


def _table_lines(table: Table) -> Iterator[str]:
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            # A merged cell is returned once per grid column it spans.
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(line for line in _lines(cell) if line.strip()))
        yield "\t".join(cells)
