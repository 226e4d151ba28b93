"""PowerPoint .pptx via python-pptx: one page per slide, with tables, groups and notes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

import pptx
from pptx.shapes.group import GroupShape

from engine.types import Page


def read(f: BinaryIO) -> tuple[Page, ...]:
    presentation = pptx.Presentation(f)
    pages = []
    for number, slide in enumerate(presentation.slides, start=1):
        lines = list(_shape_lines(slide.shapes))
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            lines.append(slide.notes_slide.notes_text_frame.text)
        pages.append(Page(number, "\n".join(lines)))
    return tuple(pages)


def _shape_lines(shapes: Iterable) -> Iterator[str]:
    for shape in shapes:
        if isinstance(shape, GroupShape):
            yield from _shape_lines(shape.shapes)
        elif shape.has_text_frame:
            yield shape.text_frame.text
        elif shape.has_table:
            for row in shape.table.rows:
                yield "\t".join(cell.text for cell in row.cells)
