"""Hostile files that change between the scan and the read: links, FIFOs, folders swapped, huge texts."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from engine import indexer
from engine.types import FileStatus
from tests.helpers import write

SECRET = "zebracrypt privatekeymaterial"

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="links and FIFOs as on POSIX")


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder the user never chose, holding a secret."""
    folder = tmp_path / "outside"
    folder.mkdir()
    write(folder / "id_key.txt", SECRET)
    write(folder / "notes.txt", SECRET)
    return folder


def after_scan(monkeypatch, swap) -> None:
    """Run swap() once, right after the indexer's scan: the race window, made deterministic."""
    real_scan, real_scan_paths = indexer.scan, indexer.scan_paths

    def scan(*args, **kwargs):
        result = real_scan(*args, **kwargs)
        swap()
        return result

    def scan_paths(*args, **kwargs):
        result = real_scan_paths(*args, **kwargs)
        swap()
        return result

    monkeypatch.setattr(indexer, "scan", scan)
    monkeypatch.setattr(indexer, "scan_paths", scan_paths)


def stored_chunks(engine) -> list:
    return list(engine.catalog.chunks_by_id(engine.catalog.chunk_ids().tolist()).values())


def stored_text(engine) -> str:
    return "\n".join(row.text for row in stored_chunks(engine))


def index_within(engine, seconds: float, **kwargs):
    """engine.index(), failing (not hanging) when it does not end in time."""
    out: dict = {}

    def run():
        try:
            out["report"] = engine.index(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return thread, out


@posix_only
@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("watcher", [False, True])
def test_a_link_swapped_in_after_the_scan_is_not_followed(make_engine, docs, outside, monkeypatch, workers, watcher):
    write(docs / "notes.txt", "harmless shopping list")
    write(docs / "other.txt", "espresso descaling guide")
    engine = make_engine(parse_workers=workers)
    engine.add_folder(docs)

    def swap():
        os.unlink(docs / "notes.txt")
        os.symlink(outside / "id_key.txt", docs / "notes.txt")

    after_scan(monkeypatch, swap)
    report = engine.index(paths=[str(docs / "notes.txt"), str(docs / "other.txt")] if watcher else None)
    assert "zebracrypt" not in stored_text(engine)
    assert all(h.path != str(docs / "notes.txt") for h in engine.search("zebracrypt privatekeymaterial"))
    assert report.added == 1  # other.txt
    assert engine.catalog.file(str(docs / "notes.txt")) is None  # replaced while indexing: read again next scan


@posix_only
@pytest.mark.parametrize("workers", [0, 1])
def test_a_folder_swapped_for_a_link_after_the_scan_leads_nowhere(make_engine, docs, outside, monkeypatch, workers):
    sub = docs / "sub"
    write(sub / "notes.txt", "harmless shopping list")
    engine = make_engine(parse_workers=workers)
    engine.add_folder(docs)

    def swap():  # the file the scan saw is still there, but the path now leads outside
        os.rename(sub, docs / "moved-away")
        os.symlink(outside, sub)

    after_scan(monkeypatch, swap)
    engine.index()
    assert "zebracrypt" not in stored_text(engine)


@posix_only
def test_a_folder_swapped_for_a_link_while_scanning_is_not_listed(make_engine, docs, outside, monkeypatch):
    sub = docs / "sub"
    write(sub / "plain.txt", "harmless shopping list")
    engine = make_engine()
    engine.add_folder(docs)
    real_list = indexer._list_folder
    swapped = []

    def list_folder(folder, **kwargs):
        entries = real_list(folder, **kwargs)
        if folder == str(docs) and not swapped:  # sub is listed as a folder; now it becomes a link
            swapped.append(True)
            os.rename(sub, docs / "moved-away")
            os.symlink(outside, sub)
        return entries

    monkeypatch.setattr(indexer, "_list_folder", list_folder)
    engine.index()
    assert "zebracrypt" not in stored_text(engine)
    assert str(sub / "id_key.txt") not in engine.catalog.files()


@posix_only
@pytest.mark.parametrize("workers", [0, 1])
def test_a_fifo_swapped_in_after_the_scan_never_blocks(make_engine, docs, monkeypatch, workers):
    for i in range(5):
        write(docs / f"note-{i}.txt", f"note {i} about descaling")
    write(docs / "pipe.txt", "soon a pipe")
    engine = make_engine(parse_workers=workers)
    engine.add_folder(docs)
    fifo = docs / "pipe.txt"

    def swap():
        os.unlink(fifo)
        os.mkfifo(fifo)

    after_scan(monkeypatch, swap)
    thread, out = index_within(engine, 30)
    if thread.is_alive():  # today's bug: open() waits for a writer; be that writer so the test ends
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(30)
        pytest.fail("indexing hung on a FIFO")
    assert "error" not in out, out.get("error")
    assert out["report"].added == 5
    row = engine.catalog.file(str(fifo))
    assert (row.status, row.reason) == (FileStatus.UNSUPPORTED, "not a regular file")


@posix_only
def test_a_fifo_in_place_of_a_moved_file_never_blocks_rename_detection(make_engine, docs, monkeypatch):
    write(docs / "a.txt", "the text of a file about to be renamed")
    engine = make_engine()
    engine.add_folder(docs)
    engine.index()
    os.rename(docs / "a.txt", docs / "b.txt")  # same size as a.txt: a rename candidate, hashed

    def swap():
        os.unlink(docs / "b.txt")
        os.mkfifo(docs / "b.txt")

    after_scan(monkeypatch, swap)
    thread, out = index_within(engine, 30)
    if thread.is_alive():
        os.close(os.open(docs / "b.txt", os.O_WRONLY | os.O_NONBLOCK))
        thread.join(30)
        pytest.fail("rename detection hung on a FIFO")
    assert "error" not in out, out.get("error")
    assert engine.catalog.file(str(docs / "a.txt")) is None


def test_a_touched_file_is_read_once(make_engine, docs, monkeypatch):
    """Same bytes, new mtime: the worker hashes what it opened and skips the parse."""
    write(docs / "a.txt", "unchanged words")
    engine = make_engine()
    engine.add_folder(docs)
    engine.index()
    os.utime(docs / "a.txt", ns=(1_000_000_000, 1_000_000_000))
    opened = []
    real_open = os.open

    def counting_open(path, *args, **kwargs):
        if os.fspath(path) == str(docs / "a.txt"):
            opened.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", counting_open)
    report = engine.index()
    assert (report.unchanged, report.updated) == (1, 0)
    assert len(opened) == 1
    assert engine.catalog.file(str(docs / "a.txt")).mtime_ns == 1_000_000_000


@pytest.mark.parametrize("workers", [0, 1])
def test_a_huge_text_is_capped_and_never_holds_up_the_others(make_engine, docs, workers):
    for i in range(6):
        write(docs / f"note-{i}.txt", f"note {i} about descaling espresso machines")
    sentence = "The amplification attack repeats this sentence forever and ever. "
    write(docs / "bomb.txt", sentence * (3 * 1024**2 // len(sentence)))  # 3 MB of text
    write(docs / "amp.html", "<p>" + "&amp; " * 400_000 + "</p>")          # 2.4 MB of entities
    engine = make_engine(parse_workers=workers, max_text_mb=1, max_chunks_per_file=400)
    engine.add_folder(docs)
    report = engine.index()
    assert report.added == 8 and report.failed == 0
    bomb = engine.catalog.file(str(docs / "bomb.txt"))
    assert bomb.status == FileStatus.INDEXED
    assert bomb.reason.startswith("too much text")
    counts = {path: len(engine.catalog.chunk_ids_of_file(row.id)) for path, row in engine.catalog.files().items()}
    assert max(counts.values()) <= 400
    chars = max(row.end for row in stored_chunks(engine))
    assert chars <= 1024**2
    assert any(p.path == str(docs / "bomb.txt") for p in engine.status().problems)  # shown, with why


def test_files_parsed_before_a_huge_text_commit_before_it_is_chunked(make_engine, docs, monkeypatch):
    write(docs / "a-small.txt", "a small note about descaling")
    write(docs / "b-huge.txt", "word " * 300_000)  # 1.5 M characters
    engine = make_engine()
    engine.add_folder(docs)
    small_committed = threading.Event()
    waited = []
    real_chunk, real_commit = indexer.Indexer._chunk, indexer.Indexer._commit

    def chunk(self, path, *args):
        if path.endswith("b-huge.txt"):  # the producer waits here: the small file must commit anyway
            waited.append(small_committed.wait(30))
        return real_chunk(self, path, *args)

    def commit(self, batch, *args):
        real_commit(self, batch, *args)
        if any(f.path.endswith("a-small.txt") for f in batch.files):
            small_committed.set()

    monkeypatch.setattr(indexer.Indexer, "_chunk", chunk)
    monkeypatch.setattr(indexer.Indexer, "_commit", commit)
    engine.index()
    assert waited == [True]
