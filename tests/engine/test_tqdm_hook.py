"""Library progress bars (tqdm) as progress reports and cancel points, on the calling thread only."""

from __future__ import annotations

import threading

import pytest
from tqdm import tqdm, trange
from tqdm.autonotebook import tqdm as auto_tqdm

from engine.errors import Cancelled
from engine.tqdm_hook import tqdm_progress


def test_bars_report_each_step_and_print_nothing(capsys):
    from tqdm import std

    before = {name: vars(std.tqdm)[name] for name in ("__init__", "update", "monitor_interval")}
    seen = []
    with tqdm_progress(lambda words, done, total: seen.append((words, done, total))):
        for _ in trange(0, 12, 4, desc="Batches", disable=True):   # as encode(show_progress_bar=False) makes it
            pass
        for _ in auto_tqdm(range(2), desc="Rescoring with CrossEncoder", total=2):
            pass
    assert seen[:4] == [("Embedding passages", 0, 3), ("Embedding passages", 1, 3), ("Embedding passages", 2, 3),
                        ("Embedding passages", 3, 3)]
    assert seen[-1] == ("Rescoring candidates with the reranker", 2, 2)
    assert capsys.readouterr().err == ""
    for _ in tqdm(range(2), disable=True):  # outside: tqdm is itself again
        pass
    assert {name: vars(std.tqdm)[name] for name in before} == before


def test_cancel_stops_the_loop_at_its_next_step():
    cancel = threading.Event()
    steps = []
    with pytest.raises(Cancelled), tqdm_progress(lambda *_: None, cancel):
        for i in trange(100, desc="Batches"):
            steps.append(i)
            if i == 2:
                cancel.set()
    assert steps == [0, 1, 2]


def test_bars_on_other_threads_are_left_alone():
    seen = []
    cancel = threading.Event()
    cancel.set()

    def elsewhere():
        for _ in trange(3, disable=True):  # would raise Cancelled if it were followed
            pass
        seen.append("done")

    with tqdm_progress(lambda *a: seen.append(a), cancel):
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
    assert seen == ["done"]


def test_no_monitor_thread_is_left_behind():
    before = set(threading.enumerate())
    with tqdm_progress(lambda *_: None):
        for _ in trange(3):
            pass
    assert {t.name for t in set(threading.enumerate()) - before if t.is_alive()} == set()
