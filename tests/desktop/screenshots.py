"""Screenshots of the real app on the sample documents, with the real model, for looking at (not a test).

    xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python tests/desktop/screenshots.py OUT_DIR [--home DIR]

Starts Sift over a fresh (or given) Sift home, which searches the bundled samples; waits for the
model and the first index; runs a search; and saves PNGs of the main window with results and
preview (light and dark), the welcome, the settings, the indexing panel and the quick-search popup.
Nothing is opened: the opener is a no-op.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402

QUERY = "remove limescale from the coffee machine"


class NoOpener:
    def open(self, path, page=None):
        print(f"(would open {path} at page {page})")

    def reveal(self, path):
        print(f"(would show {path})")


def wait(signal, timeout_s: float, what: str) -> list:
    """Run the event loop until `signal` fires; its arguments."""
    got: list = []
    loop = QEventLoop()

    def fired(*args):
        got.append(args)
        loop.quit()

    signal.connect(fired)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    signal.disconnect(fired)
    if not got:
        raise SystemExit(f"timed out waiting for {what}")
    return list(got[0])


def settle(ms: int = 150) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def save(widget: QWidget, out: Path, name: str) -> None:
    settle()
    path = out / f"{name}.png"
    widget.grab().save(str(path))
    print(f"saved {path} ({path.stat().st_size // 1024} KB)")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--home", help="a Sift home to use (default: a fresh temporary one)")
    parser.add_argument("--query", default=QUERY)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    home = args.home or tempfile.mkdtemp(prefix="sift-shots-")
    os.environ["SIFT_HOME"] = home

    app = QApplication(sys.argv[:1])
    app.setApplicationName("Sift")
    from desktop import theme
    from desktop.app import SiftApp
    from engine import Engine

    engine = Engine.open(home)
    sift = SiftApp(engine, opener=NoOpener(), use_tray=False)
    sift.window.set_tray_note("")  # a real desktop has a tray; the note would only distract here
    sift.window.resize(1180, 760)
    t0 = time.perf_counter()
    sift.start()
    print(f"window shown after {time.perf_counter() - t0:.2f} s")
    save(sift.window, args.out, "warming")
    if sift.window.warm != "ready":
        ok = wait(sift.warmed, 300, "the model")
        print(f"model ready after {time.perf_counter() - t0:.1f} s: {ok}")
    if sift.indexer.busy:
        wait(sift.indexer.finished, 600, "indexing")
        print(f"indexed after {time.perf_counter() - t0:.1f} s")
    QTimer.singleShot(0, sift.indexer.refresh_status)
    wait(sift.indexer.statusChanged, 30, "status")
    save(sift.window, args.out, "welcome")

    window = sift.window
    window.query.setText(args.query)
    query, n = wait(window.resultsShown, 60, "results")
    print(f"{n} results for {query!r}")
    if window.preview.context is None:
        wait(window.preview.contextShown, 30, "the preview")
    for i, hit in enumerate(window.model.hits[:5], 1):
        print(f"  {i}. {os.path.basename(hit.path)} p.{hit.page} score {hit.score:.2f}")
    save(window, args.out, "main")

    QTimer.singleShot(0, sift.show_panel)  # showing it asks for a fresh status
    wait(sift.indexer.statusChanged, 30, "status")
    sift.panel.resize(700, 480)
    save(sift.panel, args.out, "indexing")
    sift.panel.close()

    dialog = sift.show_settings()
    save(dialog, args.out, "settings-folders")
    dialog.tabs.setCurrentIndex(1)
    save(dialog, args.out, "settings-search")
    dialog.close()

    sift.quick.popup(None)
    sift.quick.field.setText("tyre pressure")
    wait(sift.quick.resultsShown, 60, "quick results")
    save(sift.quick, args.out, "quick")
    sift.quick.dismiss()

    theme.apply_theme("dark")
    settle(300)
    sift.window.query.setText("")
    sift.window.query.setText(args.query)
    wait(window.resultsShown, 60, "results (dark)")
    if window.preview.context is None:
        wait(window.preview.contextShown, 30, "the preview (dark)")
    save(window, args.out, "main-dark")

    sift.shutdown()
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
