"""The catalog: schema and migrations, transactions, FTS5 triggers, vectors, odd file names."""

from __future__ import annotations

import os
import sqlite3

import numpy as np
import pytest

from engine.catalog import SCHEMA_VERSION, Catalog
from engine.embed import text_hash
from engine.errors import CatalogError
from engine.types import Chunk, FileStatus


def chunks(*texts: str) -> list[Chunk]:
    return [Chunk(ordinal=i, text=t, page=None, start=0, end=len(t), token_count=len(t.split()))
            for i, t in enumerate(texts)]


def add_file(cat: Catalog, path: str, *texts: str, model="m@1") -> tuple[int, list[int]]:
    cs = chunks(*texts)
    hashes = [text_hash(t) for t in texts]
    with cat.transaction() as conn:
        fid = cat.upsert_file(conn, path=path, size=1, mtime_ns=1, content_hash="h", kind="text",
                              status=FileStatus.INDEXED)
        _, ids = cat.replace_chunks(conn, fid, cs, hashes)
        cat.put_vectors(conn, model, hashes, np.eye(len(texts), 4, dtype=np.float32))
    return fid, ids


def fts(cat: Catalog, query: str) -> list[int]:
    return [r[0] for r in cat.conn.execute("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?", (query,))]


def test_new_catalog_has_current_schema_and_wal(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    assert cat.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert cat.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert cat.check() == "ok"
    assert oct(os.stat(tmp_path / "c.db").st_mode & 0o777) == "0o600"


def test_migration_runs_once_and_reopen_keeps_data(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    add_file(cat, "/a.txt", "alpha")
    cat.close()
    again = Catalog(tmp_path / "c.db")
    assert list(again.files()) == ["/a.txt"]


def test_newer_schema_is_refused(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    cat.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    cat.close()
    with pytest.raises(CatalogError, match="newer Sift"):
        Catalog(tmp_path / "c.db")


def test_garbage_file_is_a_catalog_error(tmp_path):
    (tmp_path / "c.db").write_bytes(os.urandom(8192))
    with pytest.raises(CatalogError, match="sift rebuild"):
        Catalog(tmp_path / "c.db")


def test_fts_follows_inserts_and_deletes(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    fid, ids = add_file(cat, "/a.txt", "the espresso machine", "descaling with citric acid")
    assert fts(cat, "descaling") == [ids[1]]
    assert fts(cat, "machines") == [ids[0]], "porter stemming"
    with cat.transaction() as conn:
        cat.delete_files(conn, [fid])
    assert fts(cat, "descaling") == [] and cat.chunk_count() == 0


def test_failed_transaction_leaves_nothing(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    with pytest.raises(RuntimeError):
        with cat.transaction() as conn:
            fid = cat.upsert_file(conn, path="/a.txt", size=1, mtime_ns=1, content_hash=None, kind="text",
                                  status=FileStatus.INDEXED)
            cat.replace_chunks(conn, fid, chunks("half written"), [text_hash("half written")])
            raise RuntimeError("crash mid-batch")
    assert cat.files() == {} and cat.chunk_count() == 0 and fts(cat, "written") == []


def test_replace_chunks_reports_removed_and_added_ids_never_reused(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    fid, first = add_file(cat, "/a.txt", "one", "two")
    with cat.transaction() as conn:
        removed, added = cat.replace_chunks(conn, fid, chunks("three"), [text_hash("three")])
    assert removed == first and min(added) > max(first)


def test_vectors_are_cached_by_model_and_text(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    add_file(cat, "/a.txt", "same text", model="m@1")
    found = cat.cached_vectors("m@1", [text_hash("same text"), text_hash("other")])
    assert list(found) == [text_hash("same text")] and found[text_hash("same text")].dtype == np.float32
    assert cat.cached_vectors("m@2", [text_hash("same text")]) == {}
    assert [r[0] for r in cat.chunks_missing_vectors("m@2")] == cat.chunk_ids().tolist()


def test_iter_chunk_vectors_and_prune(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    fid, ids = add_file(cat, "/a.txt", "x", "y")
    got = {int(k): v for batch_ids, vecs in cat.iter_chunk_vectors("m@1") for k, v in zip(batch_ids, vecs)}
    assert sorted(got) == ids and got[ids[1]][1] == 1.0
    only = [int(k) for b, _ in cat.iter_chunk_vectors("m@1", [ids[0]]) for k in b]
    assert only == [ids[0]]
    with cat.transaction() as conn:
        cat.delete_files(conn, [fid])
        assert cat.prune_embeddings(conn) == 2


def test_non_utf8_file_names_round_trip(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    odd = os.fsdecode(b"/docs/caf\xe9-latin1.txt")
    add_file(cat, odd, "bonjour")
    assert cat.file(odd).path == odd
    assert cat.chunks_by_id(cat.chunk_ids().tolist())[int(cat.chunk_ids()[0])].path == odd


def test_problems_and_counts(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    add_file(cat, "/ok.txt", "fine")
    with cat.transaction() as conn:
        cat.upsert_file(conn, path="/bad.pdf", size=3, mtime_ns=1, content_hash=None, kind="pdf",
                        status=FileStatus.CORRUPT, reason="not a PDF")
    assert cat.counts_by_status() == {"indexed": 1, "corrupt": 1}
    [p] = cat.problems()
    assert (p.path, p.status, p.reason) == ("/bad.pdf", FileStatus.CORRUPT, "not a PDF")


def test_secure_delete_leaves_no_text_in_the_file(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    secret = "zanzibar-quokka-" * 20
    fid, _ = add_file(cat, "/secret.txt", secret)
    with cat.transaction() as conn:
        cat.delete_files(conn, [fid])
    cat.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cat.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"zanzibar-quokka" not in raw


def test_threads_get_their_own_connections(tmp_path):
    import threading

    cat = Catalog(tmp_path / "c.db")
    add_file(cat, "/a.txt", "a")
    seen = []
    t = threading.Thread(target=lambda: seen.append(cat.chunk_count()))
    t.start()
    t.join()
    assert seen == [1]
    assert isinstance(cat.conn, sqlite3.Connection)


def test_migrates_a_version_1_catalog_keeping_its_data(tmp_path):
    from engine import catalog as catalog_module

    path = tmp_path / "c.db"
    conn = sqlite3.connect(path)
    for statement in catalog_module._split_sql(catalog_module._MIGRATIONS[0]):
        conn.execute(statement)
    conn.execute("INSERT INTO files(path, size, mtime_ns, status) VALUES (?, 1, 1, 'indexed')", (b"/old.txt",))
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    cat = Catalog(path)
    assert cat.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert list(cat.files()) == ["/old.txt"] and cat.clicks() == []


def test_clicks_round_trip_and_are_forgotten_outside_roots(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    with cat.transaction() as conn:
        cat.add_click(conn, query="descale", chunk_id=7, text_hash="h", path="/a/x.pdf", rank=2, shown=[3, 7, 9])
        cat.add_click(conn, query="tyres", chunk_id=8, text_hash="h2", path="/b/y.txt", rank=1, shown=[8])
    [first, second] = cat.clicks()
    assert (first.query, first.chunk_id, first.rank, first.shown, first.path) == ("descale", 7, 2, (3, 7, 9), "/a/x.pdf")
    with cat.transaction() as conn:
        assert cat.delete_clicks_outside(conn, ["/b"]) == 1
    assert [c.query for c in cat.clicks()] == ["tyres"]
