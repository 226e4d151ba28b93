"""Live watching and the background service: batches, moves, lost events, offline folders, storms."""

from __future__ import annotations

import _thread
import json
import logging
import os
import shutil
import signal
import sys
import threading

import pytest

from bench.event_storm import storm
from engine import cli
from engine.engine import Engine
from engine.errors import DiskFullError
from engine.indexer import Indexer, offline_roots, scan
from engine.paths import resolve_paths
from engine.service import start_service
from engine.watch import DirtyQueue
from tests.helpers import bump_mtime, wait_for, write

# Short debounce and checks, so tests spend their time indexing, not waiting.
FAST = dict(quiet_s=0.1, max_wait_s=1.0, root_check_s=0.2, retry_s=0.2)


def on_disk(engine: Engine) -> set[str]:
    """What a full scan finds now: the file set the catalog must converge to."""
    found, _ = scan(engine.roots(), exclude=engine.config.exclude, include_hidden=engine.config.include_hidden)
    return set(found)


def in_sync(engine: Engine) -> bool:
    return set(engine.catalog.files()) == on_disk(engine)


def consistent(engine: Engine) -> bool:
    """Every catalog chunk has a vector in the index and nothing else does."""
    return set(engine.vectors().keys().tolist()) == set(engine.catalog.chunk_ids().tolist())


@pytest.fixture
def watched(make_engine, docs):
    """An engine over docs with the background service running (fast settings)."""
    engine = make_engine()
    engine.add_folder(docs)

    def start(**options):
        service = start_service(engine, **{**FAST, **options})
        assert service.wait_idle(30), "the first full pass did not finish"
        return service

    yield engine, start
    engine.stop_service()


# -- the debouncer -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_dirty_queue_coalesces_a_burst_into_one_batch():
    clock = Clock()
    q = DirtyQueue(quiet_s=0.5, max_wait_s=5.0, clock=clock)
    assert q.take() is None and q.due_at() is None
    for i in range(3):  # an editor's save: temp file written, renamed over the original
        q.add_many([f"/d/.note.txt.{i}.tmp", "/d/note.txt"])
        clock.now += 0.2
    assert q.take() is None, "still busy: wait for quiet"
    clock.now += 0.4
    batch = q.take()
    assert not batch.full and "/d/note.txt" in batch.paths and len(batch.paths) == 4
    assert q.take() is None and q.pending == 0


def test_dirty_queue_releases_a_long_storm_in_slices():
    clock = Clock()
    q = DirtyQueue(quiet_s=0.5, max_wait_s=2.0, clock=clock)
    for i in range(30):  # never quiet for 0.5 s
        q.add(f"/d/{i}.txt")
        clock.now += 0.1
    assert q.take() is not None, "the oldest change waited max_wait_s: a batch is due"


def test_dirty_queue_overflow_asks_for_a_full_rescan_and_put_back_keeps_work():
    q = DirtyQueue(quiet_s=0, max_pending=10)
    q.add_many(f"/d/{i}.txt" for i in range(11))
    assert q.full_pending and q.pending == 1
    batch = q.take()
    assert batch.full and batch.paths == () and "more than 10" in batch.reasons[0]
    q.put_back(batch)
    assert q.take().full
    q.add("/d/a.txt")
    q.put_back(q.take())
    assert q.take().paths == ("/d/a.txt",)


# -- indexing a set of changed paths ---------------------------------------------------------------


def test_changed_paths_give_the_same_catalog_as_a_full_run(make_engine, docs, tmp_path, fake_embedder):
    outside = write(tmp_path / "outside" / "secret.txt", "never read: outside the chosen folders")
    write(docs / "keep.txt", "espresso descaling")
    write(docs / "a" / "b" / "deep.txt", "a deeply nested note about glaciers")
    write(docs / "a" / "sibling.txt", "a sibling note about harbours")
    write(docs / "moving" / "one.txt", "the first file of a folder that moves")
    write(docs / "moving" / "two.txt", "the second file of a folder that moves")
    write(docs / "doomed" / "x.txt", "a folder that will be deleted")
    write(docs / "rename-me.txt", "a file about magnets that gets a new name")
    engine = make_engine()
    engine.add_folder(docs)
    engine.index()
    embedded = fake_embedder.texts_embedded

    changed = []
    changed += [str(write(docs / "new" / "deeper" / "fresh.txt", "a brand new note about sonnets"))]
    write(docs / "keep.txt", "espresso descaling with citric acid")
    bump_mtime(docs / "keep.txt")
    changed += [str(docs / "keep.txt")]
    os.rename(docs / "moving", docs / "a" / "moved")
    changed += [str(docs / "moving"), str(docs / "a" / "moved")]
    shutil.rmtree(docs / "doomed")
    changed += [str(docs / "doomed")]
    os.rename(docs / "rename-me.txt", docs / "a" / "renamed.txt")
    changed += [str(docs / "rename-me.txt"), str(docs / "a" / "renamed.txt")]
    changed += [str(write(docs / "node_modules" / "pkg" / "README.md", "excluded by default"))]
    changed += [str(write(docs / ".hidden.txt", "hidden files are skipped"))]
    os.symlink(outside, docs / "link-out.txt")
    os.symlink(docs / "keep.txt", docs / "link-in.txt")
    changed += [str(docs / "link-out.txt"), str(docs / "link-in.txt"), str(outside), str(docs / "never-existed.txt")]

    report = engine.index(paths=changed)
    assert set(engine.catalog.files()) == on_disk(engine)
    assert (report.added, report.updated, report.moved, report.removed) == (1, 1, 3, 1)
    assert fake_embedder.texts_embedded - embedded == report.chunks_embedded == 2, "moves reuse their vectors"
    assert consistent(engine)
    assert engine.index().added == 0, "a full run afterwards finds nothing left to do"


def test_a_folder_path_covers_everything_below_it(make_engine, docs):
    engine = make_engine()
    engine.add_folder(docs)
    engine.index()
    for i in range(5):
        write(docs / "burst" / f"n{i}" / f"f{i}.txt", f"burst file {i} about rivers")
    report = engine.index(paths=[str(docs / "burst"), str(docs / "burst" / "n1" / "f1.txt")])
    assert report.added == 5 and in_sync(engine)
    report = engine.index(paths=[str(docs)])  # the root itself: a full pass over it
    assert report.added == 0 and report.unchanged == 5


def test_a_rename_split_across_two_batches_still_reuses_its_vectors(make_engine, docs, fake_embedder):
    note = write(docs / "note.txt", "a note about quartz harbours and ledgers")
    engine = make_engine()
    engine.add_folder(docs)
    engine.index()
    embedded = fake_embedder.texts_embedded
    os.rename(note, docs / "renamed.txt")
    assert engine.index(paths=[str(note)]).removed == 1          # the old name, in one batch
    assert engine.index(paths=[str(docs / "renamed.txt")]).added == 1  # the new one, in the next
    assert fake_embedder.texts_embedded == embedded
    engine.index()  # a full run prunes vectors no chunk uses any more
    assert engine.catalog.vector_count() == engine.catalog.chunk_count()


# -- the service -----------------------------------------------------------------------------------


def test_watcher_follows_new_changed_renamed_and_deleted_files(watched, docs, fake_embedder):
    engine, start = watched
    write(docs / "start.txt", "one file before the service starts")
    service = start()
    assert in_sync(engine) and service.progress().watching
    assert engine.progress().phase == "watching", "the engine's snapshot is the service's while it runs"

    note = write(docs / "notes" / "today.txt", "the kettle needs descaling")
    assert wait_for(lambda: str(note) in engine.catalog.files())

    note.write_text("the kettle needs descaling with citric acid", encoding="utf-8")
    assert wait_for(lambda: "citric" in " ".join(h.snippet for h in engine.search("citric acid kettle")))

    embedded = fake_embedder.texts_embedded
    renamed = docs / "archive" / "kettle.txt"
    renamed.parent.mkdir()
    os.rename(note, renamed)
    assert wait_for(lambda: set(engine.catalog.files()) == {str(docs / "start.txt"), str(renamed)})
    assert fake_embedder.texts_embedded == embedded, "a rename reuses the file's vectors"

    os.rename(docs / "archive", docs / "old")  # a whole folder moves
    assert wait_for(lambda: str(docs / "old" / "kettle.txt") in engine.catalog.files())
    shutil.rmtree(docs / "old")
    assert wait_for(lambda: set(engine.catalog.files()) == {str(docs / "start.txt")})
    assert service.wait_idle(30) and consistent(engine)


def test_event_storm_with_the_watcher_running(watched, docs):
    engine, start = watched
    service = start()
    counts = storm(docs, create=2000, rename=500, delete=300, seed=3)
    assert counts.renamed == 500 and counts.deleted == 300 and counts.folders_moved and counts.folders_deleted
    assert wait_for(lambda: in_sync(engine), timeout=120, interval=0.2)
    assert service.wait_idle(60)
    assert in_sync(engine) and consistent(engine)
    assert engine.catalog.counts_by_status() == {"indexed": len(on_disk(engine))}


def test_event_storm_while_paused_loses_events_and_still_converges(watched, docs):
    engine, start = watched
    service = start(max_pending=300)  # the storm overflows what a paused service remembers
    before = set(engine.catalog.files())
    service.pause()
    storm(docs, create=2000, rename=500, delete=300, seed=4)
    assert wait_for(lambda: service.queue.full_pending), "events were dropped: a full rescan is queued"
    p = service.progress()
    assert p.paused and p.phase == "paused" and p.files_queued >= 1
    assert set(engine.catalog.files()) == before, "nothing is indexed while paused"
    service.resume()
    assert wait_for(lambda: in_sync(engine), timeout=120, interval=0.2)
    assert service.wait_idle(60) and in_sync(engine) and consistent(engine)


def test_changes_made_while_sift_was_not_running_are_found_at_start(make_engine, docs):
    engine = make_engine()
    engine.add_folder(docs)
    write(docs / "old.txt", "indexed before the app closed")
    engine.index()
    storm(docs / "meanwhile", create=200, rename=50, delete=30, seed=5)
    (docs / "old.txt").unlink()
    service = start_service(engine, **FAST)
    assert wait_for(lambda: service.full_runs >= 1 and in_sync(engine), timeout=60)
    engine.stop_service()


def test_a_watchdog_overflow_warning_triggers_a_full_rescan(watched, docs):
    engine, start = watched
    service = start(root_check_s=60)  # nothing re-watches the folder behind the test's back
    service.watcher.unwatch(str(docs))  # from here on, changes make no events: they are lost
    for i in range(20):
        write(docs / "lost" / f"{i}.txt", f"a change nobody was told about {i}")
    runs = service.full_runs
    # What watchdog logs when the kernel's inotify queue overflows.
    logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed; filesystem events were lost")
    assert service.queue.full_pending or service.full_runs > runs
    assert wait_for(lambda: service.full_runs > runs and in_sync(engine), timeout=30)


def test_pause_holds_work_and_resume_does_it(watched, docs):
    engine, start = watched
    service = start()
    service.pause()
    note = write(docs / "while-paused.txt", "written while indexing was paused")
    assert wait_for(lambda: service.progress().files_queued >= 1)
    assert service.progress().phase == "paused" and str(note) not in engine.catalog.files()
    service.resume()
    assert wait_for(lambda: str(note) in engine.catalog.files())
    assert not service.progress().paused


def test_an_offline_folder_keeps_its_files_and_comes_back(watched, docs, tmp_path):
    engine, start = watched
    for i in range(3):
        write(docs / f"{i}.txt", f"file {i} on a drive that gets unplugged")
    service = start()
    files = set(engine.catalog.files())
    away = tmp_path / "unplugged"
    os.rename(docs, away)
    assert wait_for(lambda: service.progress().offline == (str(docs),))
    assert engine.status().offline == (str(docs),)
    assert service.wait_idle(30) and set(engine.catalog.files()) == files, "offline, not deleted"
    # Changed while away (on another machine, say); found when the folder returns.
    (away / "0.txt").unlink()
    write(away / "new.txt", "added while the drive was elsewhere")
    os.rename(away, docs)
    assert wait_for(lambda: service.progress().offline == () and in_sync(engine), timeout=30)
    assert str(docs) in service.watcher.watched
    write(docs / "after.txt", "events flow again once it is back")
    assert wait_for(lambda: str(docs / "after.txt") in engine.catalog.files())


def test_an_empty_mount_point_is_offline_but_an_emptied_folder_is_not(make_engine, docs, tmp_path):
    write(docs / "a.txt", "a file on a drive")
    engine = make_engine()
    engine.add_folder(docs)
    engine.index()
    shutil.move(docs / "a.txt", tmp_path / "a.txt")  # the folder is now empty
    key = "root_device:" + str(docs)
    real = engine.catalog.get_meta(key)
    with engine.catalog.transaction() as conn:  # as if it had been indexed on another device
        engine.catalog.set_meta(conn, key, str(int(real) + 1))
    assert offline_roots([str(docs)], engine.catalog) == [str(docs)]
    assert engine.index().removed == 0 and len(engine.catalog.files()) == 1
    with engine.catalog.transaction() as conn:  # same device: the user emptied it
        engine.catalog.set_meta(conn, key, real)
    assert engine.index().removed == 1 and engine.catalog.files() == {}


def test_the_service_waits_out_a_full_disk_and_resumes(watched, docs, monkeypatch):
    engine, start = watched
    service = start()
    full = threading.Event()
    full.set()
    real_commit = Indexer._commit

    def commit(self, *args, **kwargs):
        if full.is_set():
            raise DiskFullError(engine.paths.data, "save its catalog")
        return real_commit(self, *args, **kwargs)

    monkeypatch.setattr(Indexer, "_commit", commit)
    note = write(docs / "waiting.txt", "written while the disk was full")
    assert wait_for(lambda: "is full" in service.progress().error)
    assert service.progress().phase == "error" and str(note) not in engine.catalog.files()
    full.clear()  # space freed
    assert wait_for(lambda: str(note) in engine.catalog.files())
    assert wait_for(lambda: service.progress().error == "")


def test_folders_added_and_removed_while_the_service_runs(watched, docs, tmp_path):
    engine, start = watched
    service = start()
    other = tmp_path / "other"
    write(other / "b.txt", "a second folder's note about bicycles")
    engine.add_folder(other)
    assert wait_for(lambda: str(other / "b.txt") in engine.catalog.files())
    assert wait_for(lambda: str(other) in service.watcher.watched)
    write(other / "c.txt", "watched live once added")
    assert wait_for(lambda: str(other / "c.txt") in engine.catalog.files())
    engine.remove_folder(other)
    assert wait_for(lambda: str(other) not in service.watcher.watched)
    write(other / "d.txt", "no longer watched")
    assert service.wait_idle(30)
    assert not any(p.startswith(str(other)) for p in engine.catalog.files())


def test_progress_has_rate_eta_and_queue(make_engine, docs, monkeypatch):
    import engine.indexer as indexer

    monkeypatch.setattr(indexer, "BATCH_FILES", 4)
    for i in range(20):
        write(docs / f"{i}.txt", f"note {i}")
    engine = make_engine()
    engine.add_folder(docs)
    seen = []
    engine.index(on_progress=seen.append)
    midway = [p for p in seen if p.phase == "indexing" and 0 < p.files_done < p.files_total]
    # Seconds into a run, the rate says little about the rest: no estimate is given yet.
    assert midway and all(p.eta_s is None and p.rate > 0 for p in midway)

    monkeypatch.setattr(indexer, "ETA_AFTER_S", 0.0)  # as if the run were well under way
    for i in range(20, 40):
        write(docs / f"{i}.txt", f"note {i}")
    seen.clear()
    engine.index(on_progress=seen.append)
    midway = [p for p in seen if p.phase == "indexing" and 0 < p.files_done < p.files_total]
    assert midway and all(p.eta_s is not None and p.eta_s >= 0 and p.rate > 0 for p in midway)
    assert all(p.files_read >= p.files_done for p in seen)
    assert seen[-1].phase == "done" and seen[-1].eta_s is None


def test_the_service_keeps_its_parse_workers_between_batches_at_low_priority(make_engine, docs):
    engine = make_engine()
    engine.update_config(parse_workers=1)
    engine.add_folder(docs)
    base = os.getpriority(os.PRIO_PROCESS, 0)
    service = start_service(engine, low_priority=True, **FAST)
    try:
        # HTML: parsed in a worker (small plain text is read in the indexing process)
        write(docs / "one.html", "<p>first batch</p>")
        assert wait_for(lambda: str(docs / "one.html") in engine.catalog.files(), timeout=60)
        runner = service._runner
        write(docs / "two.html", "<p>second batch</p>")
        assert wait_for(lambda: str(docs / "two.html") in engine.catalog.files(), timeout=60)
        assert runner is not None and service._runner is runner
        if sys.platform.startswith("linux"):
            # The indexing thread and the workers it started yield the CPU; the caller's thread does not.
            assert os.getpriority(os.PRIO_PROCESS, service._thread.native_id) == min(19, base + 10)
            [worker] = runner._idle
            assert os.getpriority(os.PRIO_PROCESS, worker.process.pid) == min(19, base + 10)
            assert os.getpriority(os.PRIO_PROCESS, 0) == base
    finally:
        engine.stop_service()
    assert service._runner is None and not service.running


def test_sift_status_shows_an_offline_folder(monkeypatch, fake_embedder, docs, tmp_path, capsys):
    monkeypatch.setattr(Engine, "open", staticmethod(lambda home=None, **kw: Engine(resolve_paths(),
                                                                                  embedder=fake_embedder)))
    write(docs / "a.txt", "a note on a drive")
    assert cli.main(["add-folder", str(docs)]) == 0
    os.rename(docs, tmp_path / "elsewhere")
    capsys.readouterr()
    assert cli.main(["status"]) == 0
    assert f"{docs}  (offline: not there now; its files are kept)" in capsys.readouterr().out
    assert cli.main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["offline"] == [str(docs)]


def test_sift_watch_runs_in_the_foreground_until_ctrl_c(monkeypatch, fake_embedder, docs, capsys, request):
    # A process started in the background by a non-interactive shell (as CI may be) inherits
    # SIGINT ignored, and then Ctrl+C, real or simulated, never reaches Python: restore it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    real_open = Engine.open
    opened = []

    def open_with_fake(home=None, **kw):
        engine = real_open(home, embedder=fake_embedder)
        engine.update_config(parse_workers=0)
        opened.append(engine)
        return engine

    monkeypatch.setattr(Engine, "open", staticmethod(open_with_fake))
    assert cli.main(["add-folder", str(docs)]) == 0
    note = docs / "live.txt"

    def user():
        wait_for(lambda: len(opened) == 2, timeout=30)  # the engine `sift watch` opened
        engine = opened[-1]
        if wait_for(lambda: engine.service is not None and engine.service.wait_idle(0.1), timeout=30):
            write(note, "a note written while sift watch runs")
            wait_for(lambda: str(note) in engine.catalog.files(), timeout=30)
        _thread.interrupt_main()  # Ctrl+C

    threading.Thread(target=user, daemon=True).start()
    assert cli.main(["watch", "-q"]) == 0
    err = capsys.readouterr().err
    assert "Press Ctrl+C to stop" in err and "Up to date · watching 1 folder" in err
    assert "Stopped watching" in err
    check = real_open(None, embedder=fake_embedder)
    assert str(note) in check.catalog.files()
    check.close()
