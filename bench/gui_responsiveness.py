"""Benchmark (not a test): is the GUI thread ever blocked while the model loads, while indexing, while searching?

    xvfb-run -a .venv/bin/python bench/gui_responsiveness.py [--docs 1400] [--work DIR]

Makes DOCS text documents from the sample documents' paragraphs, starts the real app (real
model) over them, and runs a QTimer heartbeat every 5 ms on the GUI thread the whole time. It
measures three phases: the model warming up; the first index of every document while a person
types queries (one key every 90 ms); and a re-index of a quarter of the documents (rewritten)
while typing again. For each phase it prints the longest gap between heartbeats beyond the
timer's own interval (the longest the GUI thread was blocked), the 99th percentile, and the time
from the last keystroke of each query to its results. It asserts nothing.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

HEARTBEAT_MS = 5
KEY_MS = 90
QUERIES = ("remove limescale from the coffee machine", "tyre pressure for a road bike",
           "how do birds navigate when migrating", "notice period to end the lease",
           "what goes into the compost heap", "packing list for a hut trek")


class Heartbeat:
    def __init__(self, trace=None) -> None:
        self.trace = trace  # a file: when a beat is 100 ms late, every thread's stack is written there
        self.timer = QTimer()
        self.timer.setInterval(HEARTBEAT_MS)
        self.timer.timeout.connect(self._beat)
        self.last = time.perf_counter()
        self.gaps: list[float] = []

    def start(self) -> None:
        self.last = time.perf_counter()
        self.timer.start()

    def _beat(self) -> None:
        now = time.perf_counter()
        self.gaps.append((now - self.last) * 1000 - HEARTBEAT_MS)
        self.last = now
        if self.trace is not None:
            # faulthandler's watchdog needs no GIL, so it sees who holds it while the GUI waits.
            faulthandler.dump_traceback_later(0.1, file=self.trace)

    def take(self) -> list[float]:
        gaps, self.gaps = self.gaps, []
        self.last = time.perf_counter()
        return gaps


def report(name: str, gaps: list[float], latencies: list[float] | None = None,
           final: list[float] | None = None) -> None:
    if not gaps:
        print(f"{name}: no heartbeats")
        return
    gaps_sorted = sorted(gaps)
    p99 = gaps_sorted[int(len(gaps_sorted) * 0.99) - 1] if len(gaps_sorted) >= 100 else gaps_sorted[-1]
    over = sum(1 for g in gaps if g > 100)
    line = (f"{name}: {len(gaps)} beats, GUI thread blocked at most {max(gaps):.0f} ms "
            f"(p99 {p99:.0f} ms, median {statistics.median(gaps):.1f} ms, {over} gaps over 100 ms)")
    if latencies:
        line += (f"; last keystroke → results: median {statistics.median(latencies):.0f} ms, "
                 f"max {max(latencies):.0f} ms over {len(latencies)} queries")
    if final and final != latencies:
        line += f"; → results by meaning: median {statistics.median(final):.0f} ms, max {max(final):.0f} ms"
    print(line, flush=True)


def make_documents(folder: Path, n: int, seed: int, samples: Path) -> None:
    """n text documents of shuffled sample paragraphs, each with a few unique words (so each embeds)."""
    paragraphs = []
    for path in samples.rglob("*"):
        if path.suffix in (".md", ".txt", ".html", ".eml"):
            text = re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8", errors="replace"))
            paragraphs += [p.strip() for p in text.split("\n\n") if len(p.strip()) > 80]
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        body = "\n\n".join(rng.sample(paragraphs, k=min(len(paragraphs), rng.randint(3, 7))))
        tag = f"Document {i} of batch {seed}, reference {rng.randrange(10**9):09d}."
        (folder / f"doc-{i:04d}.txt").write_text(f"{tag}\n\n{body}\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=1400)
    parser.add_argument("--trace-stalls", type=Path, help="write every thread's stack here when the GUI stalls 100 ms")
    parser.add_argument("--work", help="folder for the documents and the Sift home (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="sift-bench-"))
    docs, home = work / "docs", work / "home"
    os.environ["SIFT_HOME"] = str(home)

    app = QApplication(sys.argv[:1])  # noqa: F841 (kept alive for the run)
    from desktop.app import SiftApp
    from engine import Engine
    from engine.paths import samples_dir

    make_documents(docs, args.docs, seed=1, samples=samples_dir())
    engine = Engine.open(home)
    if str(docs) not in engine.config.folders:
        engine.add_folder(docs)
    print(f"{args.docs} documents in {docs}; {os.cpu_count()} CPUs", flush=True)

    class NoOpener:
        def open(self, path, page=None): ...
        def reveal(self, path): ...

    heart = Heartbeat(open(args.trace_stalls, "w") if args.trace_stalls else None)
    heart.start()
    t0 = time.perf_counter()
    sift = SiftApp(engine, opener=NoOpener(), use_tray=False)
    sift.start(index=False)
    print(f"window shown {1000 * (time.perf_counter() - t0):.0f} ms after start", flush=True)
    loop = QEventLoop()
    sift.warmed.connect(loop.quit)
    loop.exec()
    print(f"model warm after {time.perf_counter() - t0:.1f} s", flush=True)
    report("model warm-up", heart.take())

    window = sift.window
    latencies: list[float] = []   # last keystroke → first results (keyword matches, if the model is busy)
    final: list[float] = []       # last keystroke → results by meaning

    def type_queries(until) -> None:
        """Type each query a key at a time, wait for its results, repeat until `until()`."""
        i = 0
        while not until():
            query = QUERIES[i % len(QUERIES)]
            i += 1
            window.query.clear()
            for ch in query:
                window.query.insert(ch)
                pause = QEventLoop()
                QTimer.singleShot(KEY_MS, pause.quit)
                pause.exec()
            typed = time.perf_counter()
            done = QEventLoop()
            first: list[float] = []

            def shown(q, n, done=done, query=query, first=first, typed=typed):
                if q == query:
                    if not first:
                        first.append((time.perf_counter() - typed) * 1000)
                    if not window.search.partial:
                        done.quit()

            window.resultsShown.connect(shown)
            QTimer.singleShot(60_000, done.quit)
            done.exec()
            window.resultsShown.disconnect(shown)
            latencies.append(first[0] if first else float("nan"))
            final.append((time.perf_counter() - typed) * 1000)

    def index_while_typing(name: str) -> None:
        latencies.clear()
        final.clear()
        t = time.perf_counter()
        ended: list[bool] = []
        sift.indexer.finished.connect(lambda _: ended.append(True))
        sift.indexer.start()
        type_queries(lambda: bool(ended))
        counts = engine.status().files_by_status
        print(f"{name}: took {time.perf_counter() - t:.1f} s; catalog now {counts}", flush=True)
        report(name, heart.take(), latencies, final)

    index_while_typing(f"first index of {args.docs} documents while typing")
    make_documents_subset = args.docs // 4
    rng = random.Random(2)
    for i in rng.sample(range(args.docs), make_documents_subset):
        path = docs / f"doc-{i:04d}.txt"
        path.write_text(path.read_text(encoding="utf-8") + f"\n\nAddendum {rng.random()}: checked again.\n",
                        encoding="utf-8")
    heart.take()  # the benchmark's own file writes above ran on the GUI thread: not Sift's stall
    index_while_typing(f"re-index of {make_documents_subset} changed documents while typing")

    latencies.clear()
    final.clear()
    type_queries(lambda: len(latencies) >= len(QUERIES))
    report("typing with no indexing", heart.take(), latencies, final)
    sift.shutdown()
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
