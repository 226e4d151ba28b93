"""Search-as-you-type: debounced, run as a background task, stale results dropped.

With a reranker installed, a search runs in two steps: the first stage (keywords + meaning,
tens of milliseconds) is shown at once, then the reranked results replace it when they land.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal

from desktop.tasks import Tasks
from engine import Engine, SearchResult

DEBOUNCE_MS = 160   # long enough to skip searches for half-typed words, short enough to feel instant
LIMIT = 30
# While indexing, the model may be busy embedding a batch for seconds; a search by meaning
# that has not answered after this long gets keyword results (no model needed) shown meanwhile.
KEYWORDS_AFTER_MS = 350


def words_of(text: str) -> str:
    """The typed text, or "" when it holds no word: `""` (an empty phrase) is an empty query."""
    stripped = text.strip()
    return stripped if stripped.strip("\"“”„'‘’ \t") else ""


class SearchController(QObject):
    """Turns the text of a search box (plus filter words) into results on the GUI thread.

    Every search is a task with one key, so a newer search supersedes an older one: the older
    one's results are dropped even if it finishes last.
    """

    started = Signal(str)          # the full query, as it starts running
    results = Signal(str, list)    # the full query, its hits; only for the latest query
    failed = Signal(str, str)      # the full query, a message to show
    failed_rerank = Signal(str, str)  # the full query, why its first-stage results were not reranked
    cleared = Signal()             # nothing to search for

    def __init__(self, engine: Engine, tasks: Tasks, parent: QObject | None = None, *, key: str = "search",
                 limit: int = LIMIT, debounce_ms: int = DEBOUNCE_MS,
                 indexing: Callable[[], bool] | None = None) -> None:
        super().__init__(parent)
        self.engine, self.tasks, self.key, self.limit = engine, tasks, key, limit
        self.indexing = indexing or (lambda: False)
        self.partial = False      # the results shown are keyword matches standing in for a slow search
        self.refining = False     # the results shown are the first stage; the reranked ones follow
        self.text = ""
        self.filters = ""
        self.mode = ""            # the pipeline that ran the last search: hybrid, rerank, filter…
        self.note = ""            # the engine's remark on the last search, e.g. a reranker missing
        self.total = 0            # documents the last search found, of which `limit` at most are shown
        self.base_limit = limit
        self.running_query = ""   # the query in flight, "" when none
        self.shown_query = ""     # the query whose results are shown
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(debounce_ms)
        self._timer.timeout.connect(self.search_now)
        self._keywords_timer = QTimer(self)
        self._keywords_timer.setSingleShot(True)
        self._keywords_timer.setInterval(KEYWORDS_AFTER_MS)
        self._keywords_timer.timeout.connect(self._keywords_meanwhile)

    @property
    def query(self) -> str:
        return " ".join(part for part in (words_of(self.text), self.filters.strip()) if part)

    @property
    def busy(self) -> bool:
        """A search is waiting for typing to pause, or running."""
        return self._timer.isActive() or bool(self.running_query)

    def show_more(self, more: int = LIMIT) -> None:
        """The same search with `more` further results (a new query starts at the usual number again)."""
        self.limit += more
        self.search_now()

    def set_text(self, text: str) -> None:
        """Called on every keystroke: searches once typing pauses."""
        if words_of(text) != words_of(self.text):
            self.limit = self.base_limit
        self.text = text
        if not self.query:
            self._timer.stop()
            self._keywords_timer.stop()
            self.tasks.cancel(self.key)
            self.tasks.cancel(self.key + ":keywords")
            self.running_query = self.shown_query = ""
            self.refining = False
            self.cleared.emit()
            return
        self._timer.start()

    def set_filters(self, filters: str) -> None:
        self.filters = filters
        self.set_text(self.text)

    def search_now(self) -> None:
        self._timer.stop()
        query = self.query
        if self.tasks.closed:  # the app is quitting; a late signal asked for this
            return
        if not query:
            self.cleared.emit()
            return
        self.running_query = query
        self.started.emit(query)
        engine, limit = self.engine, self.limit
        if engine.reranker_available:
            # The first stage now; the rerank is started when it lands (they would share the CPU).
            self.tasks.run(lambda: engine.search_detailed(query, limit=limit, mode="hybrid"), key=self.key,
                           lane="search", name=f"first stage {query!r}",
                           done=lambda result: self._first_stage_done(query, result),
                           error=lambda exc: self._failed(query, exc))
        else:
            self.tasks.run(lambda: engine.search_detailed(query, limit=limit), key=self.key, lane="search",
                           name=f"search {query!r}", done=lambda result: self._done(query, result),
                           error=lambda exc: self._failed(query, exc))
        self._keywords_timer.start()

    def _first_stage_done(self, query: str, result: SearchResult) -> None:
        """Show the first stage's results, then rerank them (same key: a newer search supersedes it)."""
        if self.running_query != query or self.query != query:  # typed on: a newer search is due
            return
        self._keywords_timer.stop()
        self.partial, self.refining = False, True
        self._show(query, result)
        engine = self.engine
        self.tasks.run(lambda: engine.rerank(result), key=self.key,
                       lane="search", name=f"rerank {query!r}", done=lambda r: self._done(query, r),
                       error=lambda exc: self._rerank_failed(query, exc))

    def _show(self, query: str, result: SearchResult) -> None:
        self.shown_query = query
        self.note, self.mode, self.total = result.note, result.mode, result.total
        self.results.emit(query, list(result.hits))

    def _rerank_failed(self, query: str, exc: BaseException) -> None:
        """The first stage's results stay; the remark says why they were not reranked."""
        if self.running_query != query:
            return
        self.refining = False
        self.running_query = ""
        self.note = f"results are from the first stage alone: the reranker failed ({exc or type(exc).__name__})"
        self.failed_rerank.emit(query, self.note)

    def _keywords_meanwhile(self) -> None:
        """The search by meaning is slow (the model is busy indexing): show keyword matches until it answers."""
        query = self.running_query
        if not query or not self.indexing():
            return
        engine, limit = self.engine, self.limit

        def shown(result: SearchResult) -> None:
            if self.running_query == query and not self.refining:  # nothing better is shown yet
                self.partial = True
                self.note, self.mode, self.total = result.note, "bm25", result.total
                self.results.emit(query, list(result.hits))

        self.tasks.run(lambda: engine.search_detailed(query, limit=limit, mode="bm25"), key=self.key + ":keywords",
                       lane="keywords", name=f"keywords {query!r}", done=shown, error=lambda exc: None)

    def _done(self, query: str, result: SearchResult) -> None:
        if self.query != query:  # typed on since: the newer search, waiting for the pause, will show
            return
        self._keywords_timer.stop()
        self.partial = self.refining = False
        self.running_query = ""
        self._show(query, result)

    def _failed(self, query: str, exc: BaseException) -> None:
        self._keywords_timer.stop()
        self.partial = self.refining = False
        self.running_query = ""
        self.failed.emit(query, str(exc) or type(exc).__name__)
