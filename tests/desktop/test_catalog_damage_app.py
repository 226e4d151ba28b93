"""The app says when its catalog is damaged, and its Rebuild button brings search back."""

from __future__ import annotations

import os

from tests.desktop.conftest import WAIT_MS, search
from tests.engine.test_catalog_damage import MARKER, corrupt_page_holding
from tests.helpers import write


def test_the_app_reports_a_damaged_catalog_and_rebuilds_it(qtbot, make_sift, make_engine, docs, home):
    for i in range(40):
        extra = f" {MARKER} " if i == 17 else " "
        write(docs / f"note-{i:02}.txt", f"Note {i} about descaling espresso machines{extra}topic{i}. " * 20)
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
