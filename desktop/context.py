"""The passage around a hit, for the preview: its chunk joined with its neighbours on the same page."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from engine import Engine, Hit

log = logging.getLogger(__name__)

NEIGHBOURS = 1   # chunks before and after the hit's own


@dataclass(frozen=True, slots=True)
class Context:
    text: str
    focus: tuple[int, int]     # the hit's own passage within `text`
    page: int | None
    exact: bool = True         # False: only the snippet was available


def passage_context(engine: Engine, hit: Hit, *, neighbours: int = NEIGHBOURS) -> Context:
    """The hit's passage with the text around it. Runs on a worker thread.

    The engine has no public call for this yet, so it reads the catalog (chunks are exact
    slices of their page's text, so neighbours join at their offsets); anything unexpected
    falls back to the snippet.
    """
    try:
        catalog = engine.catalog
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
        return Context(text=text, focus=focus, page=own.page)
    except Exception as exc:  # never let the preview break a search
        log.debug("no context for %s: %s", hit.path, exc)
        return Context(text=hit.snippet, focus=(0, len(hit.snippet)), page=hit.page, exact=False)
