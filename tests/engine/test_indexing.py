"""Reconcile and incremental indexing through the Engine, with the fake embedder."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from engine.engine import Engine
from engine.errors import Cancelled, FolderError
from engine.indexer import is_excluded, scan
from engine.types import FileStatus
from tests.filemaker import make_pdf
from tests.helpers import Engines, bump_mtime, write

ESPRESSO = "The espresso machine needs descaling every month to remove mineral deposits."
BIKE = "Road bike tyres should be inflated to the pressure printed on the sidewall."
BIRDS = "Migrating birds navigate using the magnetic field of the earth and the stars."


@pytest.fixture
def folder(docs):
    write(docs / "coffee.txt", ESPRESSO)
    write(docs / "bike" / "tyres.md", "# Tyres\n\n" + BIKE)
    write(docs / "birds.html", f"<html><script>var x = 'hidden';</script><body><p>{BIRDS}</p></body></html>")
    return docs


def indexed(engine: Engine) -> dict[str, FileStatus]:
    return {os.path.basename(p): r.status for p, r in engine.catalog.files().items()}


def test_index_then_search_finds_the_right_file(make_engine, folder):
    engine = make_engine()
    engine.add_folder(folder)
    report = engine.index()
    assert (report.added, report.failed) == (3, 0)
    assert indexed(engine) == {"coffee.txt": "indexed", "tyres.md": "indexed", "birds.html": "indexed"}
    [top, *_] = engine.search("espresso descaling mineral deposits")
    assert top.path == str(folder / "coffee.txt") and top.page is None and "descaling" in top.snippet
    assert engine.search("   ") == []


def test_second_run_with_nothing_changed_embeds_nothing(make_engine, folder, fake_embedder):
    engine = make_engine()
    engine.add_folder(folder)
    engine.index()
    before = fake_embedder.texts_embedded
    report = engine.index()
    assert (report.added, report.updated, report.removed, report.unchanged) == (0, 0, 0, 3)
    assert report.chunks_embedded == 0 and fake_embedder.texts_embedded == before


def test_changed_file_is_reindexed_alone(make_engine, folder, fake_embedder):
    engine = make_engine()
    engine.add_folder(folder)
    engine.index()
    before = fake_embedder.texts_embedded
    write(folder / "coffee.txt", ESPRESSO + " Use citric acid, never vinegar.")
    bump_mtime(folder / "coffee.txt")
    report = engine.index()
    assert (report.updated, report.unchanged) == (1, 2)
    assert fake_embedder.texts_embedded - before == report.chunks_embedded >= 1
    assert "citric" in engine.search("citric acid descaling")[0].snippet


def test_touched_file_with_same_bytes_is_not_reembedded(make_engine, folder, fake_embedder):
    engine = make_engine()
    engine.add_folder(folder)
    engine.index()
    before = fake_embedder.texts_embedded
    bump_mtime(folder / "coffee.txt")
    report = engine.index()
    assert report.updated == 0 and report.unchanged == 3 and fake_embedder.texts_embedded == before
    bump_mtime(folder / "coffee.txt")  # and the new stamp was recorded: still nothing to do
    assert engine.index().chunks_embedded == 0


def test_deleted_file_is_forgotten_with_its_vectors(make_engine, folder):
    engine = make_engine()
    engine.add_folder(folder)
    engine.index()
    (folder / "coffee.txt").unlink()
    report = engine.index()
    assert report.removed == 1 and "coffee.txt" not in indexed(engine)
    assert set(engine.vectors().keys().tolist()) == set(engine.catalog.chunk_ids().tolist())
    assert all(h.path != str(folder / "coffee.txt") for h in engine.search("espresso descaling"))


def test_renamed_and_moved_files_keep_their_chunks(make_engine, folder, fake_embedder):
    engine = make_engine()
    engine.add_folder(folder)
    engine.index()
    old_ids = set(engine.catalog.chunk_ids().tolist())
    before = fake_embedder.texts_embedded
    (folder / "archive").mkdir()
    os.rename(folder / "coffee.txt", folder / "archive" / "espresso-notes.txt")
    report = engine.index()
    assert (report.moved, report.added, report.removed) == (1, 0, 0)
    assert fake_embedder.texts_embedded == before
    assert set(engine.catalog.chunk_ids().tolist()) == old_ids
    assert engine.search("espresso descaling")[0].path == str(folder / "archive" / "espresso-notes.txt")


def test_duplicate_text_is_embedded_once(make_engine, folder, fake_embedder):
    engine = make_engine()
    write(folder / "copy-of-coffee.txt", ESPRESSO)
    engine.add_folder(folder)
    report = engine.index()
    assert report.added == 4
    assert fake_embedder.texts_embedded == 3, "the copy reused the original's vector"


def test_pdf_pages_are_kept(make_engine, docs):
    make_pdf(docs / "manual.pdf", ["Welcome to your machine.", "Cleaning the milk frother daily.",
                                   "Descaling removes mineral deposits from the boiler."])
    engine = make_engine()
    engine.add_folder(docs)
    engine.index()
    hit = engine.search("descaling mineral deposits boiler")[0]
    assert hit.page == 3 and hit.kind == "pdf"


def test_bad_files_get_a_status_and_never_stop_the_run(make_engine, docs):
    write(docs / "good.txt", ESPRESSO)
    (docs / "empty.txt").write_bytes(b"")
    (docs / "junk.pdf").write_bytes(os.urandom(4096))
    (docs / "truncated.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog")
    (docs / "binary.txt").write_bytes(bytes(range(256)) * 40)
    big = docs / "huge.txt"
    with open(big, "wb") as f:
        f.truncate(3 * 1024 * 1024)  # sparse: over the 2 MB cap below without using disk
    os.symlink(docs, docs / "loop")
    engine = make_engine(max_file_mb=2)
    engine.add_folder(docs)
    report = engine.index()
    got = indexed(engine)
    assert got == {"good.txt": "indexed", "empty.txt": "no-text", "junk.pdf": "corrupt", "truncated.pdf": "corrupt",
                   "binary.txt": "unsupported", "huge.txt": "too-large"}
    assert report.failed == 5
    reasons = {os.path.basename(p.path): p.reason for p in engine.status().problems}
    assert "2 MB limit" in reasons["huge.txt"] and reasons["empty.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(make_engine, docs):
    secret = write(docs / "secret.txt", ESPRESSO)
    secret.chmod(0)
    try:
        engine = make_engine()
        engine.add_folder(docs)
        engine.index()
        assert indexed(engine) == {"secret.txt": "unreadable"}
    finally:
        secret.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_failed_reparse_keeps_the_last_good_chunks(make_engine, docs):
    pdf = docs / "manual.pdf"
    make_pdf(pdf, ["Descaling removes mineral deposits."])
    engine = make_engine()
    engine.add_folder(docs)
    engine.index()
    pdf.write_bytes(b"%PDF-1.4 broken")
    bump_mtime(pdf)
    engine.index()
    row = engine.catalog.file(str(pdf))
    assert row.status == FileStatus.CORRUPT
    assert engine.search("descaling mineral deposits")[0].path == str(pdf), "old text still searchable"


def test_excludes_hidden_and_private_places(make_engine, docs):
    write(docs / "keep.txt", ESPRESSO)
    write(docs / ".hidden.txt", BIKE)
    write(docs / ".ssh" / "notes.txt", BIKE)
    write(docs / "node_modules" / "pkg" / "README.md", BIKE)
    write(docs / ".env", "SECRET=1")
    write(docs / "drafts" / "skip.md", BIRDS)
    engine = make_engine(exclude=("node_modules", ".ssh", ".env", "drafts/*"))
    engine.add_folder(docs)
    engine.index()
    assert set(indexed(engine)) == {"keep.txt"}
    engine.update_config(include_hidden=True)
    engine.index()
    assert set(indexed(engine)) == {"keep.txt", ".hidden.txt"}


def test_symlinks_never_lead_outside_the_roots_or_loop(tmp_path, make_engine, docs):
    outside = write(tmp_path / "outside" / "private.txt", BIRDS)
    write(docs / "inside" / "a.txt", ESPRESSO)
    os.symlink(outside, docs / "link-out.txt")
    os.symlink(outside.parent, docs / "dir-out")
    os.symlink(docs / "inside", docs / "again")  # its files are indexed once, under their own path
    os.symlink(docs, docs / "inside" / "up")     # a loop
    found, _ = scan([str(docs)], exclude=(), include_hidden=False)
    assert [os.path.basename(p) for p in found] == ["a.txt"]


def test_is_excluded_patterns():
    assert is_excluded(".git", ".git", [".git"])
    assert is_excluded("id_rsa.pub", "keys/id_rsa.pub", ["id_rsa*"])
    assert is_excluded("x.md", "drafts/x.md", ["drafts/*"])
    assert not is_excluded("x.md", "notes/drafts-x.md", ["drafts/*"])


def test_remove_folder_forgets_everything_from_it(make_engine, folder, tmp_path):
    other = tmp_path / "other"
    write(other / "b.txt", BIKE)
    engine = make_engine()
    engine.add_folder(folder)
    engine.add_folder(other)
    engine.index()
    assert engine.remove_folder(folder) == 3
    assert set(indexed(engine)) == {"b.txt"}
    assert set(engine.vectors().keys().tolist()) == set(engine.catalog.chunk_ids().tolist())
    with pytest.raises(FolderError):
        engine.remove_folder(folder)


def test_add_folder_rules(make_engine, folder):
    engine = make_engine()
    engine.add_folder(folder / "bike")
    with pytest.raises(FolderError, match="not a folder"):
        engine.add_folder(folder / "nope")
    engine.add_folder(folder)  # the parent replaces the child
    assert engine.config.folders == (str(folder),)
    with pytest.raises(FolderError, match="already"):
        engine.add_folder(folder / "bike")


def test_samples_are_searched_until_folders_are_chosen(make_engine, folder):
    engine = make_engine()
    assert engine.using_samples
    engine.index()
    assert any(p.endswith(".md") for p in engine.catalog.files())
    engine.add_folder(folder)
    assert set(indexed(engine)) == set(), "samples forgotten once the user picks a folder"


def test_offline_root_keeps_its_files(make_engine, folder, tmp_path):
    engine = make_engine()
    engine.add_folder(folder)
    engine.index()
    os.rename(folder, tmp_path / "unplugged")
    report = engine.index()
    assert report.removed == 0 and len(indexed(engine)) == 3


def test_cancel_keeps_committed_batches_and_the_next_run_finishes(make_engine, docs, monkeypatch):
    import engine.indexer as indexer

    monkeypatch.setattr(indexer, "BATCH_FILES", 5)
    for i in range(40):
        write(docs / f"note{i:02}.txt", f"Note number {i} about topic {i % 7}.")
    engine = make_engine()
    engine.add_folder(docs)

    def cancel_midway(p):
        if p.files_done >= 10:
            engine.cancel()

    with pytest.raises(Cancelled):
        engine.index(on_progress=cancel_midway)
    done = engine.catalog.counts_by_status().get("indexed", 0)
    assert 10 <= done < 40
    assert engine.progress().phase == "cancelled"
    assert set(engine.vectors().keys().tolist()) == set(engine.catalog.chunk_ids().tolist())
    report = engine.index()
    assert report.added == 40 - done and engine.catalog.counts_by_status() == {"indexed": 40}


def _flip(p, positions):
    data = bytearray(p.read_bytes())
    for i in positions:
        data[i % len(data)] ^= 0xFF
    p.write_bytes(bytes(data))


def _zero_middle(p):
    data = bytearray(p.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 4096] = bytes(len(data[mid:mid + 4096]))
    p.write_bytes(bytes(data))


def _forget_checksum(engine):
    with engine.catalog.transaction() as conn:  # saved, then killed before the checksum commit
        conn.execute("DELETE FROM meta WHERE key LIKE 'index_checksum:%'")


def test_vector_index_is_rebuilt_when_missing_or_damaged(make_engine, folder, home, caplog):
    for i in range(40):
        write(folder / "more" / f"n{i:02}.txt", f"Note {i} on topic{i % 9} with words{i} and a {BIRDS.split()[i % 9]}.")
    engine = make_engine()
    engine.add_folder(folder)
    engine.index()
    queries = ["espresso descaling", "topic3 words12", "bike tyre pressure", "magnetic stars"]

    def results(e):
        return [(h.path, h.chunk_id, round(h.score, 5)) for q in queries for h in e.search(q, limit=5)]

    expected = results(engine)
    engine.close()
    [index_file] = list((home / "data" / "index").glob("*.usearch"))
    rng = np.random.default_rng(4)
    damages = {
        "truncated to half": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
        "one byte short": lambda p: p.write_bytes(p.read_bytes()[:-1]),
        "zeroed, same size": lambda p: p.write_bytes(bytes(p.stat().st_size)),
        "a zeroed block": _zero_middle,
        "zeroed to 4 KB": lambda p: p.write_bytes(b"\0" * 4096),
        "one flipped byte in the header": lambda p: _flip(p, [7]),
        **{f"one flipped byte, try {k}": (lambda p, k=k: _flip(p, rng.integers(0, 1 << 30, 1))) for k in range(6)},
        "64 flipped bytes": lambda p: _flip(p, rng.integers(0, 1 << 30, 64)),
        "garbage appended": lambda p: p.write_bytes(p.read_bytes() + os.urandom(100)),
        "emptied": lambda p: p.write_bytes(b""),
        "deleted": lambda p: p.unlink(),
    }
    for name, damage in damages.items():
        damage(index_file)
        caplog.clear()
        again = make_engine()
        assert results(again) == expected, name
        assert "rebuilding the vector index" in caplog.text or name == "deleted", name
        again.close()
        caplog.clear()
        assert results(make_engine()) == expected and "rebuilding" not in caplog.text, f"{name}: saved once rebuilt"

    # A whole file without a checksum in the catalog is not trusted either (usearch trusts its input).
    last = make_engine()
    _forget_checksum(last)
    last.close()
    caplog.clear()
    assert results(make_engine()) == expected and "no recorded checksum" in caplog.text


def test_stale_index_file_is_brought_in_line(make_engine, folder):
    engine = make_engine()
    engine.add_folder(folder)
    engine.index()
    saved = engine.vectors()
    # Simulate a crash after a commit and before the index was saved: drop a key from memory.
    some = engine.catalog.chunk_ids()[:1]
    saved.remove(some)
    engine.drop_vectors()
    engine.store.save(saved, engine.embedder.model_id)
    fresh = make_engine()
    assert np.isin(some, fresh.vectors().keys()).all()


def test_status_report(make_engine, folder):
    engine = make_engine()
    engine.add_folder(folder)
    (folder / "bad.pdf").write_bytes(b"nope")
    engine.index()
    s = engine.status()
    assert s.files_by_status == {"indexed": 3, "corrupt": 1}
    assert s.chunks >= 3 and s.index_bytes > 0 and s.catalog_bytes > 0 and s.vector_dtype == "i8"
    assert [p.path for p in s.problems] == [str(folder / "bad.pdf")]


def test_clicks_are_recorded_and_removing_the_folder_forgets_them(make_engine, folder):
    engine = make_engine()
    engine.add_folder(folder)
    engine.index()
    hits = engine.search("espresso descaling")
    engine.record_click("espresso descaling", hits[0], rank=1, shown=hits)
    [click] = engine.catalog.clicks()
    assert click.chunk_id == hits[0].chunk_id and click.shown == tuple(h.chunk_id for h in hits)
    engine.remove_folder(folder)
    assert engine.catalog.clicks() == []


# -- the parse → embed → commit pipeline ---------------------------------------------------------


def test_pipeline_commits_whole_files_in_order(make_engine, docs, fake_embedder, monkeypatch):
    import engine.indexer as indexer
    from engine.indexer import Indexer

    monkeypatch.setattr(indexer, "BATCH_FILES", 3)
    for i in range(20):
        write(docs / f"n{i:02}.txt", " ".join(f"word{i}x{j}" for j in range(40 + i * 7)))
    committed: list[list[str]] = []
    real_commit = Indexer._commit

    def commit(self, batch, problems, known, disk):
        committed.append([f.path for f in batch.files])
        # every chunk of every file in the batch arrives embedded
        assert all(h in batch.vectors for f in batch.files for h in f.hashes)
        return real_commit(self, batch, problems, known, disk)

    monkeypatch.setattr(Indexer, "_commit", commit)
    engine = make_engine(chunk_tokens=16, chunk_overlap=2)  # parse_workers=0: files arrive in path order
    engine.add_folder(docs)
    report = engine.index()
    flat = [os.path.basename(p) for batch in committed for p in batch]
    assert flat == [f"n{i:02}.txt" for i in range(20)]
    assert all(0 < len(batch) <= 3 for batch in committed)
    assert report.added == 20 and report.chunks_embedded == engine.catalog.chunk_count()
    assert set(engine.vectors().keys().tolist()) == set(engine.catalog.chunk_ids().tolist())
    for path, row in engine.catalog.files().items():  # whole files: stored chunks = what chunking makes
        assert len(engine.catalog.chunk_ids_of_file(row.id)) > 1, path


def test_pipeline_parses_the_next_batch_while_the_model_embeds(make_engine, docs, fake_embedder, monkeypatch):
    import threading

    import engine.indexer as indexer
    from engine.indexer import Indexer

    monkeypatch.setattr(indexer, "BATCH_FILES", 2)
    for i in range(12):
        write(docs / f"n{i:02}.txt", f"note {i} about topic {i % 3}")
    produced = threading.Semaphore(0)
    real_produce = Indexer._produce

    def produce(self, *args):
        for item in real_produce(self, *args):
            produced.release()
            yield item

    monkeypatch.setattr(Indexer, "_produce", produce)
    overlapped = []
    real_embed = fake_embedder.embed_documents

    def embed(texts):
        if not overlapped:  # first call: batch 1 is embedding; batch 2 must get parsed meanwhile
            overlapped.append(produced.acquire(timeout=30) and produced.acquire(timeout=30))
        return real_embed(texts)

    monkeypatch.setattr(fake_embedder, "embed_documents", embed)
    engine = make_engine()
    engine.add_folder(docs)
    assert engine.index().added == 12
    assert overlapped == [True]


def test_pipeline_cancel_while_embedding_leaves_no_half_batch(make_engine, docs, fake_embedder, monkeypatch):
    import engine.indexer as indexer

    monkeypatch.setattr(indexer, "BATCH_FILES", 4)
    for i in range(30):
        write(docs / f"n{i:02}.txt", f"note {i} about topic {i % 5}")
    engine = make_engine()
    engine.add_folder(docs)
    real_embed = fake_embedder.embed_documents
    calls = []

    def embed(texts):
        calls.append(len(texts))
        if len(calls) == 3:
            engine.cancel()
        return real_embed(texts)

    monkeypatch.setattr(fake_embedder, "embed_documents", embed)
    with pytest.raises(Cancelled):
        engine.index()
    done = engine.catalog.counts_by_status().get("indexed", 0)
    assert done % 4 == 0 and done < 30  # whole batches only
    assert set(engine.vectors().keys().tolist()) == set(engine.catalog.chunk_ids().tolist())
    monkeypatch.setattr(fake_embedder, "embed_documents", real_embed)
    assert engine.index().added == 30 - done


def test_pipeline_embedder_failure_surfaces_and_commits_nothing_after_it(make_engine, docs, fake_embedder,
                                                                         monkeypatch):
    import engine.indexer as indexer
    from engine.errors import ModelError

    monkeypatch.setattr(indexer, "BATCH_FILES", 5)
    for i in range(20):
        write(docs / f"n{i:02}.txt", f"note {i}")
    real_embed = fake_embedder.embed_documents
    calls = []

    def embed(texts):
        calls.append(1)
        if len(calls) == 2:
            raise ModelError("the model broke")
        return real_embed(texts)

    monkeypatch.setattr(fake_embedder, "embed_documents", embed)
    engine = make_engine()
    engine.add_folder(docs)
    with pytest.raises(ModelError):
        engine.index()
    assert engine.catalog.counts_by_status().get("indexed", 0) == 5
    monkeypatch.setattr(fake_embedder, "embed_documents", real_embed)
    assert engine.index().added == 15


def test_pipeline_with_parse_workers_stops_them_on_cancel(make_engine, docs, fake_embedder, monkeypatch):
    import engine.indexer as indexer

    monkeypatch.setattr(indexer, "BATCH_FILES", 3)
    for i in range(24):
        write(docs / f"n{i:02}.txt", f"note {i} about topic {i % 5}")
    engine = make_engine()
    engine.update_config(parse_workers=2)
    engine.add_folder(docs)

    def cancel_midway(p):
        if p.files_done >= 6:
            engine.cancel()

    with pytest.raises(Cancelled):
        engine.index(on_progress=cancel_midway)
    done = engine.catalog.counts_by_status().get("indexed", 0)
    assert 6 <= done < 24 and done % 3 == 0
    assert set(engine.vectors().keys().tolist()) == set(engine.catalog.chunk_ids().tolist())
    assert engine.index().added == 24 - done and engine.catalog.counts_by_status() == {"indexed": 24}


def test_progress_counts_move_before_the_first_commit(home, docs, monkeypatch):
    """Files are counted as they are read and chunks as they leave the model, while the first
    batch (every file here) is still embedding: `sift index` once sat at 0 files · 0 chunks
    until a 64-file batch had committed."""
    import time

    import engine.indexer as indexer
    from engine.embed import FakeEmbedder

    class SlowEmbedder(FakeEmbedder):
        def embed_documents(self, texts):
            time.sleep(0.1)  # a real model's pace: the committing thread polls meanwhile
            return super().embed_documents(texts)

    monkeypatch.setattr(indexer, "EMBED_SLICE", 4)
    for i in range(30):
        write(docs / f"note{i:02}.txt", f"Note {i}: {ESPRESSO}")
    engines = Engines(home, embedder=SlowEmbedder())
    engine = engines()
    engine.add_folder(docs)
    seen = []
    report = engine.index(on_progress=seen.append)
    assert report.added == 30 and report.chunks_embedded == 30
    before_commit = [p for p in seen if p.phase == "indexing" and p.files_done == 0]
    assert any(p.files_read == 30 for p in before_commit), "files read are counted before the commit"
    embedded = [p.chunks_embedded for p in before_commit]
    assert any(0 < n < 30 for n in embedded) and embedded == sorted(embedded), embedded
    assert seen[-1].chunks_embedded == 30
    engines.close()
