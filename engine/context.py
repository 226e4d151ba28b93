"""The passage around a hit, for a preview: its chunk joined with its neighbours on the same page."""

from __future__ import annotations

from engine.catalog import Catalog
from engine.types import Hit, PassageContext

NEIGHBOURS = 1   # chunks before and after the hit's own


def passage_context(catalog: Catalog, hit: Hit, *, neighbours: int = NEIGHBOURS) -> PassageContext:
    """The hit's passage with the text around it. Raises LookupError when the passage was
    re-indexed or removed since the search.

    Chunks are exact slices of their page's text, so neighbours join at their offsets.
    """
    own = catalog.chunks_by_id([hit.chunk_id]).get(hit.chunk_id)
    if own is None:
        raise LookupError("the passage was re-indexed since the search")
    ids = catalog.chunk_ids_of_file(own.file_id)
    at = ids.index(own.id)
    around = catalog.chunks_by_id(ids[max(0, at - neighbours): at + neighbours + 1])
    rows = sorted((r for r in around.values() if r.page == own.page), key=lambda r: r.ordinal)
    text, end, focus = "", None, (0, 0)
    for row in rows:
        if end is not None and row.start <= end:  # overlapping windows: keep only what is new
            own_start = len(text) - (end - row.start)
            text += row.text[end - row.start:]
        else:
            if end is not None:                    # a gap between blocks: a paragraph break
                text += "\n\n"
            own_start = len(text)
            text += row.text
        if row.id == own.id:
            focus = (own_start, own_start + len(row.text))
        end = row.end if end is None else max(end, row.end)
    return PassageContext(text=text, focus=focus, page=own.page)
