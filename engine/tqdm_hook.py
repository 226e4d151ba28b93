"""tqdm bars that libraries draw in this thread become progress reports and cancel points, not stderr."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from engine.errors import Cancelled

# sentence-transformers' bars, in a person's words (others keep their own description).
BAR_WORDS = {
    "batches": "Embedding passages",
    "rescoring with crossencoder": "Rescoring candidates with the reranker",
    "computing similarity scores": "Comparing the searches with every passage",
    "querying faiss index": "Comparing the searches with every passage",
}


class _Nowhere:
    """A file that drops what it is given: the bar is drawn for nobody."""

    def write(self, _text: str) -> None:
        pass

    def flush(self) -> None:
        pass


def bar_words(description: str) -> str:
    text = (description or "").strip().rstrip(":")
    return BAR_WORDS.get(text.casefold(), text or "Working")


@contextlib.contextmanager
def tqdm_progress(report: Callable[[str, int, int], None],
                  cancel: threading.Event | None = None) -> Iterator[None]:
    """While inside, every tqdm bar made on this thread calls `report(words, done, total)` at each step,
    and raises Cancelled at its next step once `cancel` is set: a long library call (a corpus
    embedded batch by batch) stops between two batches.

    Bars on other threads (a search embedding its query meanwhile) are left alone; bars the
    library asked to be disabled are drawn too, into nowhere, so that their steps are seen.
    """
    try:
        from tqdm import std
    except ImportError:  # no tqdm, no bars to follow
        yield
        return
    thread = threading.get_ident()
    cls = std.tqdm
    original_init, original_update = cls.__init__, cls.update
    saved = {name: vars(cls)[name] for name in ("__init__", "update")}  # descriptors as they are, to put back

    def init(self, *args, **kwargs):
        ours = threading.get_ident() == thread
        if ours:
            kwargs.update(file=_Nowhere(), disable=False, mininterval=0, miniters=1, delay=0)
        original_init(self, *args, **kwargs)
        self._sift_ours = ours
        if ours:
            report(bar_words(self.desc), 0, int(self.total or 0))

    def update(self, n=1):
        shown = original_update(self, n)
        if getattr(self, "_sift_ours", False):
            report(bar_words(self.desc), int(self.n), int(self.total or 0))
            if cancel is not None and cancel.is_set():
                raise Cancelled()
        return shown

    interval = cls.monitor_interval
    cls.monitor_interval = 0  # no tqdm monitor thread for bars nobody sees (it would outlive the run)
    cls.__init__, cls.update = init, update
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(cls, name, value)
        cls.monitor_interval = interval
