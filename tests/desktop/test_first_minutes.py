"""What a new user trips over in the first minutes (issue 19): selection, jumping, states, layout, keys."""

from __future__ import annotations

import os
from dataclasses import replace

from PySide6.QtCore import Qt

from engine import Engine
from tests.desktop.conftest import WAIT_MS, search
from tests.helpers import write

LIBRARY = {
    "law-library.txt": "Law books classification: the law library shelves law books by jurisdiction. "
                       "Classification of law books follows the Dewey decimal classification at 340.",
    "dewey-decimal.txt": "The Dewey decimal classification divides knowledge into ten classes. "
                         "Dewey decimal classification numbers place every book on its shelf.",
    "decimal-numbers.txt": "Decimal numbers and Dewey decimal classification, the decimal point explained.",
    "melvil-dewey.txt": "Melvil Dewey wrote the Dewey decimal classification in 1876.",
    "shelving.txt": "Shelving books by the decimal classification of Dewey keeps libraries in order.",
}


def _library(home, docs, make_sift, **kw):
    for name, text in LIBRARY.items():
        write(docs / name, text)
    engine = Engine.open(home, embedder=kw.pop("embedder", None) or _fake())
    engine.update_config(parse_workers=0)
    engine.add_folder(docs)
    return engine, make_sift(engine, use_service=False, **kw)


def _fake():
    from engine.embed import FakeEmbedder

    return FakeEmbedder()


def test_a_new_query_selects_its_best_result_not_the_previous_document(qtbot, home, docs, make_sift):
    """Item 1: the previous query's selected document, further down the new results, is not selected."""
    engine, sift = _library(home, docs, make_sift)
    try:
        window = sift.window
        first = search(qtbot, window, "law books classification")
        assert os.path.basename(first[0].path) == "law-library.txt"
        assert window.results.currentIndex().row() == 0
        with qtbot.waitSignal(window.resultsShown, timeout=WAIT_MS,
                              check_params_cb=lambda q, n: q == "Dewey decimal classification"):
            window.query.selectAll()          # select all, paste: one change, never an empty box
            window.query.insert("Dewey decimal classification")
        second = window.model.hits
        rank = [h.path for h in second].index(first[0].path)
        assert rank > 0, "the test needs the old choice below the top of the new results"
        assert window.results.currentIndex().row() == 0
        assert window.current_hit().path == second[0].path
        assert window.results.verticalScrollBar().value() == 0
        assert window.preview.hit is not None and window.preview.hit.path == second[0].path
        sift.shutdown()
    finally:
        engine.close()


def test_better_results_never_follow_a_row_the_user_did_not_choose(qtbot, home, docs, make_sift, monkeypatch):
    """Item 2: the same query's new results keep row 0 unless the user moved; then the choice stays on its document."""
    engine, sift = _library(home, docs, make_sift)
    try:
        window = sift.window
        hits = search(qtbot, window, "Dewey decimal classification")
        real = engine.search_detailed

        def reversed_order(query, **kw):
            result = real(query, **kw)
            return replace(result, hits=tuple(reversed(result.hits)))

        monkeypatch.setattr(engine, "search_detailed", reversed_order)
        with qtbot.waitSignal(window.resultsShown, timeout=WAIT_MS):
            window.search.search_now()
        assert [h.path for h in window.model.hits] == [h.path for h in reversed(hits)]
        assert window.results.currentIndex().row() == 0, "an automatic selection is not followed"

        qtbot.keyClick(window.query, Qt.Key.Key_Down)  # the user chooses row 1
        chosen = window.current_hit().path
        with qtbot.waitSignal(window.resultsShown, timeout=WAIT_MS):
            window.search.search_now()
        assert window.current_hit().path == chosen   # the user's choice stays on its document
        sift.shutdown()
    finally:
        engine.close()


def test_indexing_does_not_reorder_the_list_under_someone_moving_through_it(qtbot, home, docs, make_sift):
    """Item 2: a batch committing while the user moves through results leaves the list; F5 refreshes."""
    engine, sift = _library(home, docs, make_sift)
    try:
        window = sift.window
        search(qtbot, window, "Dewey decimal classification")
        qtbot.keyClick(window.query, Qt.Key.Key_Down)
        qtbot.keyClick(window.query, Qt.Key.Key_Down)
        shown = list(window.model.hits)
        chosen = window.current_hit()
        write(docs / "more-dewey.txt", "Dewey decimal classification Dewey decimal classification again.")
        with qtbot.waitSignal(sift.indexer.finished, timeout=WAIT_MS):
            sift.indexer.start()
        qtbot.waitUntil(sift.tasks.is_idle, timeout=WAIT_MS)
        assert window.model.hits == shown and window.current_hit() == chosen
        assert "F5" in window.count_label.text()
        with qtbot.waitSignal(window.resultsShown, timeout=WAIT_MS):
            qtbot.keyClick(window.query, Qt.Key.Key_F5)
        assert "more-dewey.txt" in {os.path.basename(h.path) for h in window.model.hits}
        assert window.current_hit().path == chosen.path
        sift.shutdown()
    finally:
        engine.close()
