"""Progressive results: the first stage is shown at once, the reranked results replace it."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from desktop.search import SearchController
from engine.rerank import RerankPlan
from engine.engine import Engine
from tests.desktop.conftest import WAIT_MS
from tests.helpers import write


class SlowReranker:
    """Waits for the test to open its gate, then ranks passages by length, longest first."""

    model_id = "slow-fake@1"

    def __init__(self, *, fail: bool = False) -> None:
        self.gate = threading.Event()
        self.calls = 0
        self.fail = fail

    def plan(self) -> RerankPlan:
        return RerankPlan(depth=30, max_tokens=0)

    def score(self, query: str, passages, *, max_tokens=None) -> np.ndarray:
        self.calls += 1
        if not self.gate.wait(WAIT_MS / 1000):
            raise TimeoutError("the test never opened the gate")
        if self.fail:
            raise RuntimeError("out of memory")
        return np.array([float(len(p)) for p in passages], dtype=np.float32)


@pytest.fixture
def indexed(make_engine, docs, monkeypatch):
    def make(reranker) -> Engine:
        write(docs / "short.txt", "espresso")
        write(docs / "medium.txt", "espresso machine descaling guide")
        write(docs / "long.txt", "espresso machine descaling removes mineral deposits from the boiler every month")
        engine = make_engine()
        engine.add_folder(docs)
        engine.index()
        monkeypatch.setattr(Engine, "reranker_available", property(lambda self: reranker is not None))
        monkeypatch.setattr(engine, "reranker", lambda: reranker)
        return engine
    return make


def names(hits) -> list[str]:
    return [h.path.rsplit("/", 1)[-1] for h in hits]


def test_first_stage_shows_at_once_and_the_rerank_replaces_it(qtbot, indexed, tasks):
    reranker = SlowReranker()
    engine = indexed(reranker)
    search = SearchController(engine, tasks, debounce_ms=0)
    with qtbot.waitSignal(search.results, timeout=WAIT_MS) as first:
        search.set_text("espresso")
    query, hits = first.args
    assert query == "espresso" and hits
    assert search.refining and search.mode == "hybrid" and search.busy
    assert search.shown_query == "espresso" and search.running_query == "espresso"
    first_order = names(hits)

    with qtbot.waitSignal(search.results, timeout=WAIT_MS) as second:
        reranker.gate.set()
    _, reranked = second.args
    assert not search.refining and search.mode == "rerank" and not search.busy
    assert names(reranked) == ["long.txt", "medium.txt", "short.txt"]  # the fake's order: longest first
    assert sorted(names(reranked)) == sorted(first_order)
    assert all(h.why.rerank_score is not None for h in reranked)
    assert all(h.why.rerank_score is None for h in hits)


def test_a_newer_query_supersedes_a_rerank_in_flight(qtbot, indexed, tasks):
    reranker = SlowReranker()
    engine = indexed(reranker)
    search = SearchController(engine, tasks, debounce_ms=0)
    shown: list[tuple[str, str]] = []
    search.results.connect(lambda q, _hits: shown.append((q, search.mode)))
    with qtbot.waitSignal(search.results, timeout=WAIT_MS):
        search.set_text("espresso")
    search.set_text("descaling")  # while "espresso" is being reranked
    reranker.gate.set()
    qtbot.waitUntil(lambda: ("descaling", "rerank") in shown, timeout=WAIT_MS)
    assert ("espresso", "rerank") not in shown, "a superseded rerank must never replace newer results"
    assert search.shown_query == "descaling" and not search.refining


def test_a_failing_reranker_leaves_the_first_stage_results(qtbot, indexed, tasks):
    reranker = SlowReranker(fail=True)
    engine = indexed(reranker)
    search = SearchController(engine, tasks, debounce_ms=0)
    failures = []
    search.failed.connect(lambda q, msg: failures.append(msg))
    with qtbot.waitSignal(search.results, timeout=WAIT_MS):
        search.set_text("espresso")
    with qtbot.waitSignal(search.failed_rerank, timeout=WAIT_MS) as blocker:
        reranker.gate.set()
    assert "out of memory" in blocker.args[1]
    assert not failures and not search.refining and not search.busy
    assert search.shown_query == "espresso" and search.mode == "hybrid"


def test_without_a_reranker_one_search_runs(qtbot, indexed, tasks):
    engine = indexed(None)
    search = SearchController(engine, tasks, debounce_ms=0)
    shown = []
    search.results.connect(lambda q, hits: shown.append(search.mode))
    with qtbot.waitSignal(search.results, timeout=WAIT_MS):
        search.set_text("espresso")
    qtbot.wait(100)
    assert shown == ["hybrid"] and not search.refining and not search.busy


def test_the_rerank_scores_the_first_stage_without_running_it_again(qtbot, indexed, tasks, monkeypatch):
    reranker = SlowReranker()
    reranker.gate.set()
    engine = indexed(reranker)
    engine.search("espresso machine", mode="hybrid")  # the match calibration embeds its sentences once
    embedder = engine.embedder
    real = embedder.embed_query
    embedded: list[str] = []
    monkeypatch.setattr(embedder, "embed_query", lambda text: embedded.append(text) or real(text))
    search = SearchController(engine, tasks, debounce_ms=0)
    modes: list[str] = []
    search.results.connect(lambda q, hits: modes.append(search.mode))
    search.set_text("espresso")
    qtbot.waitUntil(lambda: not search.busy, timeout=WAIT_MS)
    assert modes == ["hybrid", "rerank"]
    assert embedded.count("espresso") == 1, "stage 1 runs once; the rerank takes its candidates"
