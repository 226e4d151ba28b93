"""A damaged catalog: a clear error at the engine boundary, reported by status, and a rebuild that restores search."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.engine import Engine
from engine.errors import CatalogDamagedError
from tests.helpers import write

MARKER = "zanzibarquokka"


def write_notes(docs) -> None:
    """40 notes about descaling; note-17 alone holds MARKER (the page a test corrupts)."""
    for i in range(40):
        extra = f" {MARKER} " if i == 17 else " "
        write(docs / f"note-{i:02}.txt", f"Note {i} about descaling espresso machines{extra}topic{i}. " * 20)


@pytest.fixture
def indexed(make_engine, docs, home):
    """40 indexed notes (one with MARKER), two opened results; the engine closed again."""
    write_notes(docs)
    engine = make_engine()
    engine.add_folder(docs)
    engine.index()
    hits = engine.search("descaling espresso", limit=5)
    for rank, hit in enumerate(hits[:2], 1):
        engine.record_click("descaling espresso", hit, rank=rank, shown=hits)
    engine.close()
    return home / "data" / "catalog.sqlite3"


def corrupt_page_holding(catalog: Path, needle: bytes) -> int:
    """Overwrite the database page that holds `needle` with garbage; return its number."""
    data = bytearray(catalog.read_bytes())
    page_size = int.from_bytes(data[16:18], "big") or 65536
    at = data.find(needle)
    assert at > 0, "the catalog must be checkpointed (engine closed) before this"
    page = at // page_size
    data[page * page_size:(page + 1) * page_size] = b"\xa5" * page_size
    catalog.write_bytes(bytes(data))
    return page


def test_a_damaged_page_is_a_clear_error_reported_by_status_and_rebuild_restores_search(
        indexed, home, fake_embedder, docs, run_cli):
    corrupt_page_holding(indexed, MARKER.encode())
    engine = Engine.open(home, embedder=fake_embedder)
    try:
        with pytest.raises(CatalogDamagedError, match="sift rebuild"):
            engine.search(MARKER)
        status = engine.status()
        assert status.catalog_damage and status.catalog_damage != "ok"
    finally:
        engine.close()

    code, out, err = run_cli("search", MARKER)
    assert code == 1 and "Traceback" not in err and "is damaged" in err
    code, out, err = run_cli("status")
    assert code == 1 and "Catalog: DAMAGED" in out
    code, out, err = run_cli("remove-folder", str(docs / "elsewhere"))
    assert "Traceback" not in err

    code, out, err = run_cli("rebuild", "-q")
    assert code == 0, err
    assert "carried over 2 opened results" in out
    assert list(indexed.parent.glob("catalog.damaged-*.sqlite3"))  # kept aside, not deleted
    code, out, err = run_cli("status")
    assert code == 0 and "DAMAGED" not in out and "40 indexed" in out
    code, out, err = run_cli("search", MARKER)
    assert code == 0 and "note-17.txt" in out.splitlines()[0]
    rebuilt = sqlite3.connect(indexed)
    try:  # what the two opens taught is learned again, on the passages' new ids
        assert rebuilt.execute("SELECT COUNT(*) FROM learned").fetchone()[0] == 2
    finally:
        rebuilt.close()


def test_a_catalog_too_damaged_to_open_is_rebuilt_too(indexed, home, fake_embedder, run_cli):
    data = bytearray(indexed.read_bytes())
    data[:100] = b"\x00" * 100  # the header: not a database any more
    indexed.write_bytes(bytes(data))
    with pytest.raises(CatalogDamagedError):
        Engine.open(home, embedder=fake_embedder)
    code, out, err = run_cli("search", MARKER)
    assert code == 1 and "sift rebuild" in err and "Traceback" not in err
    code, out, err = run_cli("rebuild", "-q")
    assert code == 0, err
    code, out, err = run_cli("search", MARKER)
    assert code == 0 and "note-17.txt" in out.splitlines()[0]


def test_sqlite_errors_never_leave_the_engine_raw(make_engine, docs, monkeypatch):
    engine = make_engine()

    def broken(*args, **kwargs):
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(engine.catalog, "counts_by_status", broken)
    monkeypatch.setattr(engine.catalog, "quick_check", lambda: "ok")
    with pytest.raises(CatalogDamagedError):
        engine.status()
