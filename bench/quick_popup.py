"""Benchmark (not a test): from the key to the quick-search popup on screen, with Sift already running.

    .venv/bin/python bench/quick_popup.py [--runs 10]          # offscreen, or xvfb-run -a … for X11

A desktop binds `sift-desktop --quick` to a key; pressing it starts that command. This starts
the app in this process (its window hidden, as in the tray), then, RUNS times each, starts:

- the launcher (`python -m desktop.launch --quick`): no Qt, no engine import, one socket message;
- the old way (`python -m desktop.app --quick`): a whole Python + Qt process that sends the same
  message and exits;

and times from the moment the command is started (the key) to the popup's first paint. It
prints the median and the spread of each, and their ratio. It asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen" if not os.environ.get("DISPLAY") else "xcb")

from PySide6.QtCore import QEvent, QObject  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

COMMANDS = {
    "launcher (desktop.launch)": ["-m", "desktop.launch", "--quick"],
    "whole app process (desktop.app)": ["-m", "desktop.app", "--quick"],
}


class PaintWatch(QObject):
    """Notes the time of the popup's first paint after each show."""

    def __init__(self) -> None:
        super().__init__()
        self.painted: float | None = None

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.Paint and self.painted is None:
            self.painted = time.perf_counter()
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="sift-quick-bench-"))
    os.environ["SIFT_HOME"] = str(home)

    from desktop.app import SiftApp, SingleInstance
    from engine import Engine
    from engine.embed import FakeEmbedder  # the popup needs no model; a loaded one would not change this

    app = QApplication.instance() or QApplication([])
    engine = Engine.open(home, embedder=FakeEmbedder())
    sift = SiftApp(engine, use_tray=False, use_service=False)
    instance = SingleInstance(SingleInstance.key_for(engine.paths))
    assert instance.listen(), "another Sift listens on this home"
    instance.activated.connect(sift.activate)
    watch = PaintWatch()
    sift.quick.installEventFilter(watch)
    env = dict(os.environ, PYTHONPATH=str(ROOT), SIFT_HOME=str(home))
    results: dict[str, list[float]] = {name: [] for name in COMMANDS}
    try:
        for run in range(args.runs + 1):  # the first round warms the disk cache and is not counted
            for name, command in COMMANDS.items():
                sift.quick.dismiss()
                app.processEvents()
                watch.painted = None
                start = time.perf_counter()
                process = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=env,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                while watch.painted is None and time.perf_counter() - start < 30:
                    app.processEvents()
                    time.sleep(0.001)
                process.wait(timeout=30)
                if watch.painted is None:
                    print(f"{name}: no popup within 30 s", flush=True)
                elif run:
                    results[name].append((watch.painted - start) * 1000)
    finally:
        instance.close()
        sift.shutdown()
        engine.close()
    print(f"key to painted popup, {args.runs} runs each ({os.environ['QT_QPA_PLATFORM']}):")
    medians = {}
    for name, times in results.items():
        if times:
            medians[name] = statistics.median(times)
            print(f"  {name:34s} p50 {medians[name]:7.1f} ms   min {min(times):7.1f}   max {max(times):7.1f}")
    if len(medians) == 2:
        new, old = medians.values()
        print(f"  the launcher takes {new / old:.1%} of the whole-process time")
    sys.stdout.flush()
    os._exit(0)  # PySide6's final garbage collection can abort on Python 3.11 (see desktop.app.run)


if __name__ == "__main__":
    main()
