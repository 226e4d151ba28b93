"""Hostile conditions: a full disk, privacy at rest, no network, file names that are not UTF-8."""

from __future__ import annotations

import io
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine import cli
from engine.engine import Engine
from engine.errors import DiskFullError
from engine.service import start_service
from engine.vectors import checksum_file
from tests.helpers import wait_for, write

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def notes(docs):
    for i in range(12):
        write(docs / f"note-{i:02}.txt", f"Note {i} on descaling espresso machines, topic{i} and token{i}x.")
    return docs


def top(engine: Engine, queries) -> list[tuple[str, float]]:
    return [(h.path, round(h.score, 5)) for q in queries for h in engine.search(q, limit=3)]


QUERIES = ["topic3 token3x", "descaling espresso", "topic10 token10x"]


# -- a full disk ---------------------------------------------------------------------------------


def test_a_full_catalog_stops_indexing_with_a_clear_error_and_resumes(make_engine, notes):
    engine = make_engine()
    engine.add_folder(notes)
    engine.index()
    before, files_before = top(engine, QUERIES), engine.catalog.files()
    for i in range(200):
        write(notes / "more" / f"m{i:03}.txt", f"Another note {i} about harbours and ledgers, word{i}z. " * 20)
    # SQLite's own disk-full path: the database may not grow past this many pages.
    with engine.catalog.transaction() as conn:  # the connection this thread writes with
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages + 8}")
    with pytest.raises(DiskFullError) as caught:
        engine.index()
    message = str(caught.value)
    assert str(engine.paths.data) in message and "is full" in message and "Free some space" in message
    assert caught.value.folder == str(engine.paths.data)
    assert engine.catalog.check() == "ok"
    assert {p: r.id for p, r in engine.catalog.files().items() if p in files_before} == \
        {p: r.id for p, r in files_before.items()}, "what was indexed before is untouched"
    engine.close()

    reopened = make_engine()  # a fresh start on the still-full disk opens and searches as before
    assert top(reopened, QUERIES) == before
    assert set(reopened.vectors().keys().tolist()) == set(reopened.catalog.chunk_ids().tolist())
    with reopened.catalog.transaction() as conn:
        conn.execute("PRAGMA max_page_count = 1073741823")  # space freed
    report = reopened.index()
    # the batches that committed before the disk filled count as unchanged now
    assert report.added + report.unchanged == len(reopened.catalog.files()) == 212 and report.failed == 0
    assert set(reopened.vectors().keys().tolist()) == set(reopened.catalog.chunk_ids().tolist())


def test_a_full_disk_while_saving_the_vector_index_keeps_the_old_file(make_engine, notes, monkeypatch):
    from usearch.index import Index

    import engine.errors as errors

    engine = make_engine()
    engine.add_folder(notes)
    engine.index()
    before = top(engine, QUERIES)
    [index_file] = engine.paths.index_dir.glob("*.usearch")
    old_checksum = checksum_file(index_file)

    def failing_save(self, path, *args, **kwargs):  # what usearch does when the disk fills up
        Path(path).write_bytes(b"\0" * 100)
        raise RuntimeError("Failed to serialize into stream")

    monkeypatch.setattr(Index, "save", failing_save)
    monkeypatch.setattr(errors.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
    write(notes / "new.txt", "A new note about glaciers and sonnets.")
    with pytest.raises(DiskFullError, match="save its vector index"):
        engine.index()
    assert checksum_file(index_file) == old_checksum, "the previous index file is untouched"
    assert not list(engine.paths.index_dir.glob(".*.tmp")), "no half-written temporary file is left"
    monkeypatch.undo()
    engine.close()
    again = make_engine()
    assert top(again, QUERIES) == before
    assert str(notes / "new.txt") in again.catalog.files(), "the catalog committed; the index catches up"
    assert set(again.vectors().keys().tolist()) == set(again.catalog.chunk_ids().tolist())


def _unshare_works() -> bool:
    if sys.platform != "linux" or not shutil.which("unshare"):
        return False
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not _unshare_works(), reason="needs `unshare -rm` (user and mount namespaces) for a real tmpfs")
@pytest.mark.parametrize("left_kb", [256, 1200], ids=["catalog-fills-it", "index-save-fills-it"])
def test_a_really_full_disk_on_a_small_tmpfs(tmp_path, left_kb):
    import json

    docs, mount = tmp_path / "docs", tmp_path / "mnt"
    docs.mkdir()
    mount.mkdir()
    script = 'mount -t tmpfs -o size=16m tmpfs "$1" && exec "$2" -m tests.diskfull_child "$3" "$1" "$4"'
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(mount), sys.executable, str(docs),
                             str(left_kb)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["error"] and "is full" in out["error"] and str(mount) in out["error"], out
    assert out["integrity"] == "ok" and out["baseline_kept"] and out["keys_match"] and out["same_results"], out
    assert out["after_free"] == {"added": 400 - out["indexed_while_full"], "files": 440, "keys_match": True}


def test_temporary_index_files_left_by_a_kill_are_cleaned_up(make_engine, notes):
    engine = make_engine()
    engine.add_folder(notes)
    engine.index()
    [index_file] = engine.paths.index_dir.glob("*.usearch")
    old = index_file.with_name(f".{index_file.name}.abc123.tmp")
    young = index_file.with_name(f".{index_file.name}.def456.tmp")
    for leftover in (old, young):
        leftover.write_bytes(b"half a saved index")
    os.utime(old, (0, 0))  # left long ago; the young one may be another process's save in progress
    engine.close()
    make_engine().vectors()
    assert not old.exists() and young.exists()


# -- privacy at rest -------------------------------------------------------------------------------


def test_data_folders_and_files_are_private(make_engine, notes, home):
    old = os.umask(0o022)  # a typical umask: without care, files would be world-readable
    try:
        engine = make_engine()
        engine.add_folder(notes)
        engine.index()
        engine.search("descaling")
    finally:
        os.umask(old)
    paths = engine.paths
    for folder in (paths.data, paths.cache, paths.config, paths.logs, paths.index_dir):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    made = [p for p in home.rglob("*") if p.is_file()]
    names = {p.name for p in made}
    assert {"catalog.sqlite3", "catalog.sqlite3-wal", "catalog.sqlite3-shm", "settings.json",
            "indexing.lock"} <= names and any(n.endswith(".usearch") for n in names)
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in made} == {p.name: "0o600" for p in made}


def test_an_old_world_readable_catalog_is_made_private(make_engine, home):
    engine = make_engine()
    engine.close()
    catalog = engine.paths.catalog
    catalog.chmod(0o644)
    make_engine().catalog.chunk_count()
    assert stat.S_IMODE(catalog.stat().st_mode) == 0o600


SECRET_WORDS = ["zanzibarquokka", "xylophonist", "Quetzalcoatlus"]


def _signature(vector: np.ndarray, width: int = 6) -> bytes:
    """The bytes of the run of `width` floats with the most non-zero values (fake vectors are sparse)."""
    start = max(range(len(vector) - width + 1), key=lambda i: np.count_nonzero(vector[i:i + width]))
    assert np.count_nonzero(vector[start:start + width]) >= 2
    return vector[start:start + width].tobytes()


def test_removing_a_folder_leaves_no_trace_of_its_text(make_engine, docs, tmp_path, fake_embedder):
    secret = docs / "confidential-dossier"
    text = f"The {SECRET_WORDS[0]} met a {SECRET_WORDS[1]} beside a {SECRET_WORDS[2]} fossil. " * 4
    write(secret / "diary-of-zanzibarquokka.txt", text)
    write(secret / "sub" / "second.txt", f"More about the {SECRET_WORDS[0]} and the {SECRET_WORDS[1]}.")
    keep = tmp_path / "keep"
    write(keep / "ordinary.txt", "An ordinary note about descaling an espresso machine.")
    engine = make_engine(vector_dtype="f32")  # exact float bytes, so the vectors can be grepped too
    engine.add_folder(secret)
    engine.add_folder(keep)
    engine.index()
    hits = engine.search(SECRET_WORDS[0])
    engine.record_click(SECRET_WORDS[0], hits[0], rank=1, shown=hits)
    secret_vectors = [fake_embedder.embed_documents([r.text])[0] for r in
                      engine.catalog.chunks_by_id(engine.catalog.chunk_ids().tolist()).values()
                      if SECRET_WORDS[0] in r.text]
    assert secret_vectors

    def raw() -> bytes:
        files = [p for p in engine.paths.data.rglob("*") if p.is_file()]
        return b"".join(p.read_bytes() for p in files)

    assert SECRET_WORDS[0].encode() in raw(), "the test would prove nothing otherwise"
    assert all(_signature(v.astype(np.float32)) in raw() for v in secret_vectors)
    assert engine.remove_folder(secret) == 2
    # Checked while the engine is still open: the WAL and the shm file count too.
    data = raw()
    for word in SECRET_WORDS + ["confidential-dossier", "diary-of"]:
        for form in {word, word.lower()}:
            assert form.encode() not in data, f"{form!r} is still in Sift's data files"
    for vector in secret_vectors:
        for exact in (vector.astype(np.float32), vector.astype(np.float16).astype(np.float32)):
            assert _signature(exact) not in data, "a removed vector is still in the index file"
    assert engine.catalog.clicks() == []
    assert [h.path for h in engine.search("descaling espresso")] == [str(keep / "ordinary.txt")]


# -- no network ------------------------------------------------------------------------------------


def test_the_network_guard_refuses_connections_beyond_this_machine():
    from tests.conftest import _Network

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("192.0.2.1", 80), timeout=0.5)  # TEST-NET-1: never routed
    with pytest.raises(ConnectionRefusedError):
        socket.getaddrinfo("example.com", 443)
    assert len(_Network.violations) == 2
    _Network.violations.clear()  # seen and expected: do not fail this test for them
    server = socket.create_server(("127.0.0.1", 0))
    socket.create_connection(server.getsockname(), timeout=5).close()  # loopback is fine
    server.close()


def test_indexing_and_search_open_no_socket(make_engine, notes, socket_events):
    engine = make_engine()
    engine.add_folder(notes)
    engine.index()
    assert engine.search("descaling espresso")
    engine.status()
    assert socket_events == []


def test_parse_workers_talk_over_local_pipes_only(make_engine, notes, socket_events):
    engine = make_engine()
    engine.update_config(parse_workers=1)
    engine.add_folder(notes)
    engine.index()
    assert engine.search("descaling espresso")
    families = {args[0] for event, args in socket_events if event == "socket.__new__"}
    assert families <= {socket.AF_UNIX}, socket_events
    assert not [e for e in socket_events if e[0] in ("socket.connect", "socket.getaddrinfo", "socket.bind")]


# -- file names that are not UTF-8 -------------------------------------------------------------------


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="these file systems only take Unicode names")
def test_file_names_that_are_not_utf8_work_end_to_end(make_engine, docs, monkeypatch):
    raw_name = b"caf\xe9-r\xe9sum\xe9.txt"  # Latin-1 bytes: invalid as UTF-8
    raw_path = os.fsencode(docs) + b"/" + raw_name
    with open(raw_path, "wb") as f:
        f.write("Latin-1 named notes about descaling an espresso machine.".encode())
    name = os.fsdecode(raw_path)
    engine = make_engine()
    engine.add_folder(docs)
    engine.index()
    assert engine.catalog.file(name).status == "indexed"
    [hit] = engine.search("descaling espresso machine", limit=1)
    assert hit.path == name and os.fsencode(hit.path) == raw_path

    # Printed by the CLI as the file's own bytes, not an error.
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(Engine, "open", staticmethod(lambda home=None, **kw: engine))
    monkeypatch.setattr(engine, "close", lambda: None)
    assert cli.main(["search", "descaling"]) == 0
    out.flush()
    assert raw_name in out.buffer.getvalue()

    # Renamed and then deleted while the watcher runs.
    service = start_service(engine, quiet_s=0.1, max_wait_s=1.0, root_check_s=0.2)
    try:
        assert service.wait_idle(30)
        renamed = os.fsencode(docs) + b"/na\xefve.txt"
        os.rename(raw_path, renamed)
        assert wait_for(lambda: set(engine.catalog.files()) == {os.fsdecode(renamed)})
        os.unlink(renamed)
        assert wait_for(lambda: engine.catalog.files() == {})
    finally:
        engine.stop_service()
