"""The passage around a hit, for the preview, with the snippet as the fallback."""

from __future__ import annotations

import logging

from engine import Engine, Hit
from engine import PassageContext as Context

log = logging.getLogger(__name__)

NEIGHBOURS = 1   # chunks before and after the hit's own

__all__ = ["Context", "passage_context"]


def passage_context(engine: Engine, hit: Hit, *, neighbours: int = NEIGHBOURS) -> Context:
    """The hit's passage with the text around it (`Engine.passage_context`). Runs on a worker
    thread; anything unexpected falls back to the snippet."""
    try:
        return engine.passage_context(hit, neighbours=neighbours)
    except Exception as exc:  # never let the preview break a search
        log.debug("no context for %s: %s", hit.path, exc)
        return Context(text=hit.snippet, focus=(0, len(hit.snippet)), page=hit.page, exact=False)
