"""engine.parse.runner: worker processes with timeouts survive hanging and crashing parsers."""

from __future__ import annotations

import itertools
import multiprocessing
import sys
import time

import pytest

from engine.errors import ParseError
from engine.parse.runner import ParseRunner
from engine.types import FileStatus, ParsedFile
from tests.filemaker import make_docx, make_pdf

HOSTILE = "tests.filemaker:hostile_parse"
MAX = 10 * 1024**2


@pytest.fixture
def children():
    """Pids of the child processes started since the test began."""
    before = {p.pid for p in multiprocessing.active_children()}
    return lambda: {p.pid for p in multiprocessing.active_children()} - before


def status(result: ParsedFile | ParseError) -> str:
    return result.status if isinstance(result, ParseError) else "indexed"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "note.txt").write_text("plain words")
    (tmp_path / "empty.txt").touch()
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    (tmp_path / "stuck.hang").touch()
    (tmp_path / "boom.crash").touch()
    return {
        "good_pdf": str(make_pdf(tmp_path / "good.pdf", ["page one", "page two"])),
        "good_docx": str(make_docx(tmp_path / "good.docx", ["a paragraph"])),
        "note": str(tmp_path / "note.txt"),
        "empty": str(tmp_path / "empty.txt"),
        "broken": str(tmp_path / "broken.pdf"),
        "missing": str(tmp_path / "missing.txt"),
        "hang": str(tmp_path / "stuck.hang"),
        "crash": str(tmp_path / "boom.crash"),
    }


EXPECTED = {
    "good_pdf": "indexed",
    "good_docx": "indexed",
    "note": "indexed",
    "empty": FileStatus.NO_TEXT,
    "broken": FileStatus.CORRUPT,
    "missing": FileStatus.VANISHED,
    "hang": FileStatus.TIMEOUT,
    "crash": FileStatus.CORRUPT,
}


def test_workers_survive_hangs_and_crashes(files, children):
    by_path = {path: name for name, path in files.items()}
    with ParseRunner(workers=2, timeout_s=1.0, max_bytes=MAX, parse_fn=HOSTILE) as runner:
        results = list(runner.map(files.values()))
    assert sorted(path for path, _ in results) == sorted(files.values())  # each exactly once
    statuses = {by_path[path]: status(result) for path, result in results}
    assert statuses == EXPECTED
    reasons = {by_path[path]: result.reason for path, result in results
               if isinstance(result, ParseError)}
    assert reasons["hang"] == "parsing stopped making progress for 2 s (tried twice)"
    assert reasons["crash"] == "the parser crashed on this file"
    parsed = dict(results)[files["good_pdf"]]
    assert [p.number for p in parsed.pages] == [1, 2]
    assert not children()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a worker's processor time is read from /proc")
def test_a_busy_loop_times_out_on_processor_time_after_a_second_try(tmp_path, files):
    spin = tmp_path / "loop.spin"
    spin.touch()
    with ParseRunner(workers=1, timeout_s=0.5, max_bytes=MAX, parse_fn=HOSTILE) as runner:
        results = list(runner.map([str(spin), files["note"]]))
    # The note is not kept waiting behind the second try: the loop is tried again after it.
    assert [path for path, _ in results] == [files["note"], str(spin)]
    error = results[1][1]
    assert isinstance(error, ParseError) and error.status == FileStatus.TIMEOUT
    assert error.reason == "parsing took longer than 1 s of processor time (tried twice)"


def test_a_file_over_the_limit_once_gets_a_longer_second_try(tmp_path, files):
    slow = tmp_path / "burn-1.2.txt"
    slow.write_text("plain words")
    with ParseRunner(workers=1, timeout_s=1.0, max_bytes=MAX, parse_fn=HOSTILE) as runner:
        results = dict(runner.map([str(slow), files["note"]]))
    assert status(results[str(slow)]) == "indexed"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a worker's processor time is read from /proc")
def test_a_busy_machine_does_not_time_a_file_out(tmp_path, children):
    """A file needing 0.6 s of processor time, its worker given a quarter of a CPU (stopped
    three quarters of the time, as a loaded machine would): it takes about 2.4 s, past the 1 s
    limit, and is indexed; a wall-clock limit timed it out."""
    import os
    import signal
    import threading

    work = tmp_path / "burn-0.6.txt"
    work.write_text("plain words")
    done = threading.Event()

    def starve() -> None:
        while not done.is_set():
            pids = children()
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            time.sleep(0.15)
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
            time.sleep(0.05)

    with ParseRunner(workers=1, timeout_s=1.0, max_bytes=MAX, parse_fn=HOSTILE) as runner:
        throttle = threading.Thread(target=starve)
        throttle.start()
        try:
            started = time.monotonic()
            results = dict(runner.map([str(work)]))
            took = time.monotonic() - started
        finally:
            done.set()
            throttle.join()
    assert status(results[str(work)]) == "indexed"
    assert took > 1.0  # it really was slowed past the limit


def test_in_process_when_no_workers(files, children):
    safe = {name: path for name, path in files.items() if name not in ("hang", "crash")}
    with ParseRunner(workers=0, timeout_s=1.0, max_bytes=MAX) as runner:
        results = dict(runner.map(safe.values()))
        assert not children()
    assert {name: status(results[path]) for name, path in safe.items()} == {
        name: EXPECTED[name] for name in safe
    }


def test_workers_are_reused_across_maps(files, children):
    with ParseRunner(workers=2, timeout_s=5.0, max_bytes=MAX) as runner:
        first = list(runner.map([files["good_pdf"], files["note"]]))
        pids = children()
        second = list(runner.map([files["good_docx"], files["broken"], files["note"]]))
        assert children() == pids
        assert len(pids) == 2
    assert [status(r) for _, r in first] == ["indexed", "indexed"]
    assert sorted(status(r) for _, r in second) == sorted(["indexed", "indexed", "corrupt"])
    assert not children()


def test_feeds_paths_lazily(files, children):
    pulled = 0

    def endless():
        nonlocal pulled
        for _ in itertools.count():
            pulled += 1
            yield files["note"]

    with ParseRunner(workers=2, timeout_s=5.0, max_bytes=MAX) as runner:
        taken = list(itertools.islice(runner.map(endless()), 5))
    assert len(taken) == 5
    assert pulled <= 5 + 2  # never more than `workers` files in flight
    assert not children()


def test_stopping_early_stops_busy_workers(files, children):
    with ParseRunner(workers=2, timeout_s=30.0, max_bytes=MAX, parse_fn=HOSTILE) as runner:
        results = runner.map([files["note"], files["hang"], files["hang"]])
        path, result = next(results)
        assert (path, status(result)) == (files["note"], "indexed")
        results.close()  # one worker still hangs on a file: it must be stopped, not awaited
        assert len(children()) == 1  # the idle one, kept for reuse
    assert not children()


def test_close_ends_a_map_left_suspended(files, children):
    runner = ParseRunner(workers=2, timeout_s=30.0, max_bytes=MAX, parse_fn=HOSTILE)
    results = runner.map([files["note"], files["hang"]])
    next(results)
    runner.close()
    runner.close()  # idempotent
    assert not children()
    with pytest.raises(StopIteration):
        next(results)
    with pytest.raises(RuntimeError, match="closed"):
        runner.map([files["note"]])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is enforced on Linux")
def test_memory_bomb_hits_the_memory_limit(tmp_path, files):
    bomb = tmp_path / "huge.oom"
    bomb.touch()
    with ParseRunner(workers=1, timeout_s=10.0, max_bytes=MAX, memory_mb=1024,
                     parse_fn=HOSTILE) as runner:
        results = dict(runner.map([str(bomb), files["note"]]))
    error = results[str(bomb)]
    assert isinstance(error, ParseError)
    assert (error.status, error.reason) == (
        FileStatus.CORRUPT, "needs more than 1024 MB of memory to read"
    )
    assert status(results[files["note"]]) == "indexed"  # the same worker carried on


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        ParseRunner(workers=-1, timeout_s=1.0, max_bytes=MAX)
    with pytest.raises(ValueError):
        ParseRunner(workers=1, timeout_s=0, max_bytes=MAX)
    with pytest.raises(ModuleNotFoundError):
        ParseRunner(workers=1, timeout_s=1.0, max_bytes=MAX, parse_fn="no.such.module:parse")


def test_files_parsed_inline_start_no_worker_and_a_grown_one_goes_to_a_worker(tmp_path, children):
    from engine.parse.runner import INLINE_MAX_BYTES

    small = [tmp_path / f"note{i}.txt" for i in range(5)]
    for i, path in enumerate(small):
        path.write_text(f"note number {i}")
    with ParseRunner(workers=2, timeout_s=30, max_bytes=MAX) as runner:
        results = dict(runner.map([str(p) for p in small], inline=lambda job: True))
        assert not children() and not runner._idle, "no worker started for files read here"
        assert [results[str(p)].pages[0].text for p in small] == [f"note number {i}" for i in range(5)]
        # listed small, grown since: read no further than INLINE_MAX_BYTES here, then by a worker
        grown = tmp_path / "grown.txt"
        grown.write_text("word " * (INLINE_MAX_BYTES // 4))
        [(path, result)] = list(runner.map([str(grown)], inline=lambda job: True))
        assert path == str(grown) and status(result) == "indexed" and len(runner._idle) == 1
        # inline files keep coming while a worker is busy with a slow one
        order = [p for p, _ in runner.map([str(grown), *map(str, small)], inline=lambda job: job.endswith("0.txt"))]
        assert order[0] == str(small[0]) and sorted(order) == sorted([str(grown), *map(str, small)])
