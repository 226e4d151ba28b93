"""Screenshots of the real app on the sample documents, with the real model, for looking at (not a test).

    xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python tests/desktop/screenshots.py OUT_DIR [--home DIR]

Starts Sift over a fresh (or given) Sift home, which searches the bundled samples; waits for the
model and the first index; runs a search; and saves PNGs of the main window with results and
preview (light and dark), the welcome, the settings, the indexing panel and the quick-search popup.
Nothing is opened: the opener is a no-op. Then the "Improve search" wizard's pages, light and dark,
driven by scripted fine-tune calls (`ScriptedFinetune`: made-up figures, no training) so every
page can be seen in seconds; `--wizard-only` skips the rest.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
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


def wait_until(condition, timeout_s: float, what: str) -> None:
    """Run the event loop until `condition()` holds (for reports that may come before anyone listens)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        settle(50)


def save(widget: QWidget, out: Path, name: str) -> None:
    settle()
    path = out / f"{name}.png"
    widget.grab().save(str(path))
    print(f"saved {path} ({path.stat().st_size // 1024} KB)")


# Made-up held-out figures for the wizard's screenshots (dense before/after, pipeline before/after).
SHOT_DENSE = ({"ndcg@10": 0.412, "recall@5": 0.468, "recall@10": 0.571, "mrr@10": 0.389},
              {"ndcg@10": 0.479, "recall@5": 0.534, "recall@10": 0.626, "mrr@10": 0.455})
SHOT_PIPELINE = ({"ndcg@10": 0.463, "recall@5": 0.512, "recall@10": 0.608, "mrr@10": 0.441},
                 {"ndcg@10": 0.497, "recall@5": 0.509, "recall@10": 0.640, "mrr@10": 0.473})


class ScriptedFinetune:
    """Fine-tune and adopt calls that report plausible progress and figures, for looking at the wizard.

    Each call stops at a named point until `go(name)` lets it on, so a screenshot catches it mid-way.
    """

    def __init__(self, engine, *, enough: bool = True) -> None:
        self.engine, self.enough = engine, enough
        self.gates = {name: threading.Event() for name in ("trained", "adopted")}
        self.cancel = threading.Event()

    def go(self, name: str) -> None:
        self.gates[name].set()

    def install(self) -> ScriptedFinetune:
        import desktop.finetune_wizard as wizard

        # Fine-tuning is module functions over the engine; the model calls are the engine's.
        wizard.finetune_summary = lambda _engine, *a, **kw: self.finetune_summary(*a, **kw)
        wizard.run_finetune = lambda _engine, *a, **kw: self.finetune(*a, **kw)
        for name in ("adopt_model", "adopt_reranker"):
            setattr(self.engine, name, getattr(self, name))
        return self

    def finetune_summary(self, options=None):
        from engine import DataSummary

        if self.enough:
            return DataSummary(clicks=412, pairs=356, queries=141, train_queries=94, heldout_queries=47,
                               min_pairs=200, enough=True, message="356 pairs from 141 searches: enough to train.")
        return DataSummary(clicks=97, pairs=88, queries=36, train_queries=24, heldout_queries=12, min_pairs=200,
                           enough=False, message="88 pairs from 36 searches; about 80 more searches with an "
                                                 "opened result are needed before training.")

    def finetune(self, options, *, on_progress=None, cancel=None):
        from engine import Cancelled, FinetuneProgress, FinetuneResult, Metrics

        self.cancel = cancel or self.cancel
        for stage, done, total, message in (("data", 1, 1, "356 pairs, 47 searches kept aside"),
                                             ("baseline", 47, 47, "47 held-out searches"),
                                             ("mining", 356, 356, "1 hard negative per pair"),
                                             ("training", 26, 45, "Training the search model: step 26/45")):
            on_progress(FinetuneProgress(stage=stage, done=done, total=total, eta_s=190.0, message=message))
        while not self.gates["trained"].wait(0.05):
            if self.cancel.is_set():
                raise Cancelled("stopped")
        root = self.engine.paths.data / "models"
        return FinetuneResult(
            before=Metrics(dense=SHOT_DENSE[0], pipeline=SHOT_PIPELINE[0]),
            after=Metrics(dense=SHOT_DENSE[1], pipeline=SHOT_PIPELINE[1]), improved=True,
            verdict=("Search model offered: better: nDCG@10 0.463 → 0.488 (+0.025) on 47 held-out searches; "
                     "reranker offered: better: nDCG@10 0.488 → 0.497 (+0.009). The models in use stay until "
                     "you adopt."),
            embedder=str(root / "embedders" / "sift-ft-20261127-2330"),
            reranker=str(root / "rerankers" / "sift-ft-20261127-2330"),
            pairs=356, heldout_queries=47, train_seconds=412.0)

    def adopt_model(self, value, *, on_progress=None, cancel=None):
        on_progress(2_340, 5_210)
        self.gates["adopted"].wait(60)
        on_progress(5_210, 5_210)

    def adopt_reranker(self, value):
        pass


def wizard_shots(sift, out: Path, *, suffix: str = "") -> None:
    """Every page of the wizard with scripted figures; the app's own engine calls are put back after."""
    from PySide6.QtWidgets import QWizard

    engine = sift.engine
    try:
        ScriptedFinetune(engine, enough=False).install()
        wizard = sift.show_finetune()
        wait(wizard.data_page.completeChanged, 30, "the data summary")
        save(wizard, out, f"wizard-1-not-enough{suffix}")
        wizard.reject()
        sift.finetune = None
        wizard.deleteLater()

        script = ScriptedFinetune(engine).install()
        wizard = sift.show_finetune()
        wait(wizard.data_page.completeChanged, 30, "the data summary")
        save(wizard, out, f"wizard-1-data{suffix}")
        wizard.next()
        wizard.options_page.show_advanced(True)
        save(wizard, out, f"wizard-2-options{suffix}")
        wizard.button(QWizard.WizardButton.CommitButton).click()
        wait_until(lambda: wizard.training_page.bar.value() == 26, 30, "training progress")
        save(wizard, out, f"wizard-3-training{suffix}")
        script.go("trained")
        wait(wizard.trainingFinished, 30, "the training result")
        save(wizard, out, f"wizard-4-results{suffix}")
        wizard.button(QWizard.WizardButton.CustomButton1).click()
        wait_until(lambda: wizard.adopt_page.bar.value() == 2_340, 30, "re-embedding progress")
        save(wizard, out, f"wizard-5-adopting{suffix}")
        script.go("adopted")
        wait(wizard.modelChanged, 30, "the switch")
        save(wizard, out, f"wizard-6-done{suffix}")
        wizard.close()
        dialog = sift.show_settings()
        dialog.tabs.setCurrentWidget(dialog.models_tab)
        wait_until(lambda: bool(dialog.models_tab.infos) or dialog.models_tab.error.isVisible(), 30, "the models")
        save(dialog, out, f"settings-models{suffix}")
        dialog.close()
    finally:
        import desktop.finetune_wizard as wizard
        import engine as engine_package

        wizard.finetune_summary, wizard.run_finetune = engine_package.finetune_summary, engine_package.run_finetune
        for name in ("adopt_model", "adopt_reranker"):
            vars(engine).pop(name, None)  # the stand-ins go; the engine's own methods are back


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--home", help="a Sift home to use (default: a fresh temporary one)")
    parser.add_argument("--query", default=QUERY)
    parser.add_argument("--wizard-only", action="store_true", help="only the Improve search wizard's pages")
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
    if args.wizard_only:
        wizard_shots(sift, args.out)
        theme.apply_theme("dark")
        settle(300)
        wizard_shots(sift, args.out, suffix="-dark")
        sift.shutdown()
        engine.close()
        return 0
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
    wizard_shots(sift, args.out, suffix="-dark")
    theme.apply_theme("light")
    settle(300)
    wizard_shots(sift, args.out)

    sift.shutdown()
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
