"""Excel .xlsx/.xlsm via openpyxl: one page per sheet, its name then tab-separated rows."""

from __future__ import annotations

from typing import BinaryIO

import openpyxl

from engine.types import Page

# Cells visited per workbook, empty ones included: reading stops here, keeping time bounded.
MAX_CELLS = 1_000_000


def read(f: BinaryIO) -> tuple[Page, ...]:
    workbook = openpyxl.load_workbook(f, read_only=True, data_only=True)
    try:
        pages = []
        budget = MAX_CELLS
        for number, sheet in enumerate(workbook.worksheets, start=1):
            if budget <= 0:
                break
            # A stored dimension can claim a million columns; without it openpyxl pads each
            # row only to its own last cell.
            sheet.reset_dimensions()
            lines = [sheet.title]
            for row in sheet.iter_rows(values_only=True):
                budget -= len(row)
                values = [_cell_text(v) for v in row]
                while values and not values[-1]:
                    values.pop()
                if values:
                    lines.append("\t".join(values))
                if budget <= 0:
                    break
            pages.append(Page(number, "\n".join(lines) if len(lines) > 1 else ""))
        return tuple(pages)
    finally:
        workbook.close()


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
