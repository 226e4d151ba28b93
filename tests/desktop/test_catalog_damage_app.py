"""The app says when its catalog is damaged, and its Rebuild button brings search back."""

from __future__ import annotations

import os
import sqlite3

from engine import CatalogDamagedError
from tests.desktop.conftest import WAIT_MS, search
from tests.engine.test_catalog_damage import MARKER, corrupt_page_holding, write_notes
from tests.helpers import write


def test_the_app_reports_a_damaged_catalog_and_rebuilds_it(qtbot, make_sift, make_engine, docs, home):
    write_notes(docs)
    engine = make_engine()
    engine.add_folder(docs)
    engine.index()
    engine.close()
    corrupt_page_holding(home / "data" / "catalog.sqlite3", MARKER.encode())

    engine = make_engine()
    sift = make_sift(engine, index=False, use_service=False)
    qtbot.waitUntil(lambda: sift.damage_box is not None and sift.damage_box.isVisible(), timeout=WAIT_MS)
    assert "damaged" in sift.damage_box.text()
    rebuild = next(b for b in sift.damage_box.buttons() if b.text() == "Rebuild the catalog")
    with qtbot.waitSignal(sift.indexer.finished, timeout=WAIT_MS):
        rebuild.click()
    qtbot.waitUntil(sift.tasks.is_idle, timeout=WAIT_MS)
    assert engine.check_catalog() == "ok"
    hits = search(qtbot, sift.window, MARKER)
    assert os.path.basename(hits[0].path) == "note-17.txt"
    assert list((home / "data").glob("catalog.damaged-*.sqlite3"))


def test_damage_met_while_indexing_brings_the_offer(qtbot, make_sift, make_engine, docs, monkeypatch):
    write(docs / "a.txt", "a note about descaling")
    engine = make_engine()
    engine.add_folder(docs)
    sift = make_sift(engine, index=False, use_service=False)
    qtbot.waitUntil(lambda: sift.indexer.state.status is not None, timeout=WAIT_MS)
    assert sift.damage_box is None  # sound at start

    def malformed(*args, **kwargs):
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(engine.catalog, "files", malformed)  # a page goes bad under a running app
    monkeypatch.setattr(engine.catalog, "quick_check", lambda: "Page 7: btreeInitPage() returns error code 11")
    sift.indexer.start()
    qtbot.waitUntil(lambda: sift.damage_box is not None and sift.damage_box.isVisible(), timeout=WAIT_MS)
    assert "error code 11" in sift.damage_box.text()
    qtbot.waitUntil(sift.tasks.is_idle, timeout=WAIT_MS)


def test_damage_met_by_the_warm_up_is_not_called_a_model_failure(qtbot, make_sift, make_engine, docs, monkeypatch):
    """The warm-up search meets the damage first: the window offers the rebuild, not "the search
    model could not be loaded", and the model warms up again once the catalog is rebuilt."""
    write(docs / "a.txt", "a note about descaling the espresso machine")
    engine = make_engine()
    engine.add_folder(docs)
    engine.index()
    real_search = engine.search

    def damaged(*args, **kwargs):
        raise CatalogDamagedError(engine.catalog.path, "database disk image is malformed")

    monkeypatch.setattr(engine, "search", damaged)
    monkeypatch.setattr(engine.catalog, "quick_check", lambda: "Page 7: btreeInitPage() returns error code 11")
    sift = make_sift(engine, index=False, use_service=False)
    assert sift.window.warm != "failed" and "could not be loaded" not in sift.window.banner_text.text()
    qtbot.waitUntil(lambda: sift.damage_box is not None and sift.damage_box.isVisible(), timeout=WAIT_MS)
    monkeypatch.setattr(engine, "search", real_search)
    monkeypatch.undo()  # the rebuilt catalog is sound
    rebuild = next(b for b in sift.damage_box.buttons() if b.text() == "Rebuild the catalog")
    with qtbot.waitSignal(sift.warmed, timeout=WAIT_MS * 3) as warmed:
        rebuild.click()
    assert warmed.args == [True] and sift.window.warm == "ready"
    qtbot.waitUntil(sift.tasks.is_idle, timeout=WAIT_MS)
