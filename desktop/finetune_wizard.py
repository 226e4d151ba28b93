"""The "Improve search" wizard: learn from this person's opened results, show before/after, adopt or keep.

Every step that touches the engine runs through `Tasks` (training takes minutes); progress comes
back from the worker as a queued signal, cancel is a `threading.Event` the engine checks. The
wizard never switches models by itself: only "Use the new model", enabled when the held-out gate
passed, does (`Engine.adopt_model` re-embeds in the background while the current model serves).
"""

from __future__ import annotations

import logging
import threading
import time

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QPalette, QValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from desktop import theme
from desktop.tasks import Task, Tasks
from engine import (
    Cancelled,
    DataSummary,
    Engine,
    FinetuneProgress,
    FinetuneResult,
    LearnedSummary,
    LearnWeights,
    Metrics,
    TrainOptions,
    TuneReport,
    finetune_summary,
    run_finetune,
)

log = logging.getLogger(__name__)

DATA_PAGE, OPTIONS_PAGE, TRAINING_PAGE, RESULTS_PAGE, ADOPT_PAGE = range(5)

METRICS = (("ndcg@10", "nDCG@10", "How well the right passages are ranked near the top (1 is perfect)"),
           ("recall@5", "Recall@5", "Share of the right passages found in the first 5 results"),
           ("recall@10", "Recall@10", "Share of the right passages found in the first 10 results"),
           ("mrr@10", "MRR@10", "How high the first right passage comes, on average (1 = always first)"))
PIPELINES = (("dense", "Search by meaning", "the bi-encoder alone"),
             ("pipeline", "Full search", "keywords, meaning and reranking together"))
STAGES = {
    "data": "Gathering your searches and the results you opened",
    "baseline": "Measuring the current model on the held-out searches",
    "mining": "Finding look-alike passages to learn the difference (hard negatives)",
    "training": "Training the search model",
    "reranker": "Training the reranker",
    "embedding": "Embedding your passages with the new model, to test it",
    "evaluating": "Measuring the new model on the held-out searches",
}
SAME = 0.0005  # deltas smaller than the three decimals shown read as "no change"
CANCELLED = object()  # what a cancelled engine call returns to its callback (Tasks drops Cancelled)


# -- small pure helpers (tested without a window) ----------------------------------------------------


def eta_text(seconds: float | None) -> str:
    """'about 3 min left' from the engine's estimate; '' when it has none yet."""
    if seconds is None or seconds <= 0:
        return ""
    if seconds < 60:
        return f"about {max(5, round(seconds / 5) * 5):.0f} s left"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min left"
    return f"about {minutes // 60} h {minutes % 60:02d} min left"


def stage_text(progress: FinetuneProgress) -> str:
    """The stage in words."""
    return STAGES.get(progress.stage, progress.stage.capitalize())


def detail_text(progress: FinetuneProgress) -> str:
    """The engine's message under the stage, without repeating the stage's own words."""
    message, stage = progress.message.strip(), stage_text(progress)
    if message.casefold().startswith(stage.casefold()):
        message = message[len(stage):].lstrip(" :…").strip()
    return message[:1].upper() + message[1:]


def delta_text(before: float, after: float) -> str:
    delta = after - before
    return "±0" if abs(delta) < SAME else f"{delta:+.3f}"


def delta_kind(before: float, after: float) -> str:
    """'better', 'worse' or 'same': what colour a change is drawn in."""
    delta = after - before
    return "same" if abs(delta) < SAME else "better" if delta > 0 else "worse"


def delta_color(kind: str, palette: QPalette | None = None) -> str:
    """Green for better, red for worse, legible on light and dark backgrounds; '' for the text colour."""
    dark = theme.is_dark(palette)
    if kind == "better":
        return "#6fd08c" if dark else "#1e7d3c"
    if kind == "worse":
        return "#ff8a80" if dark else "#c0392b"
    return ""


class ScientificSpinBox(QDoubleSpinBox):
    """A learning rate reads as 2e-05, not 0.000020; steps multiply rather than add."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDecimals(10)
        self.setRange(1e-7, 1e-2)

    def textFromValue(self, value: float) -> str:
        mantissa, exponent = f"{value:.1e}".split("e")
        return f"{mantissa.removesuffix('.0')}e{exponent}"

    def valueFromText(self, text: str) -> float:
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        stripped = text.strip()
        try:
            value = float(stripped)
        except ValueError:
            ok = stripped == "" or all(c in "0123456789.eE-+" for c in stripped)
            return (QValidator.State.Intermediate if ok else QValidator.State.Invalid), text, pos
        if self.minimum() <= value <= self.maximum():
            return QValidator.State.Acceptable, text, pos
        return QValidator.State.Intermediate, text, pos

    def stepBy(self, steps: int) -> None:
        self.setValue(min(self.maximum(), max(self.minimum(), self.value() * (2.0 ** steps))))


# -- pages --------------------------------------------------------------------------------------------


_LEARN_ROWS = (("new ndcg@10", "New searches: nDCG@10"), ("new recall@5", "New searches: found in the top 5"),
               ("refind success@1", "Searching again: right at the top"), ("refind mrr@10", "Searching again: MRR@10"))


class LearnedBox(QWidget):
    """What opens already taught, with no training: counts, a before/after on held-out searches, undo."""

    measured = Signal(object)   # TuneReport (tests wait on it)
    undone = Signal()

    def __init__(self, wizard: FinetuneWizard) -> None:
        super().__init__()
        self.w = wizard
        self.previous: LearnWeights | None = None
        self.title = theme.label("Already working: Sift learns from every result you open", wrap=False)
        self.title.setFont(theme.scaled_font(self.title.font(), 1.0, bold=True))
        self.summary = theme.label("", dim=True)
        self.measure = QPushButton("Measure what it learned")
        self.measure.clicked.connect(self.start_measuring)
        self.undo = QPushButton("Undo")
        self.undo.clicked.connect(self.undo_change)
        self.undo.hide()
        self.table = QGridLayout()
        self.table.setContentsMargins(0, 0, 0, 0)
        self.table.setHorizontalSpacing(18)
        self.cells: dict[str, tuple[QLabel, QLabel]] = {}
        for col, text in ((1, "before"), (2, "after")):
            self.table.addWidget(theme.label(text, dim=True, wrap=False), 0, col)
        for row, (key, text) in enumerate(_LEARN_ROWS, 1):
            self.table.addWidget(theme.label(text, wrap=False), row, 0)
            before, after = theme.label("", wrap=False), theme.label("", wrap=False)
            self.table.addWidget(before, row, 1)
            self.table.addWidget(after, row, 2)
            self.cells[key] = (before, after)
        self.table.setColumnStretch(3, 1)
        self.table_box = QWidget()
        self.table_box.setLayout(self.table)
        self.table_box.hide()
        self.message = theme.label()
        self.message.hide()
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addWidget(self.measure)
        buttons.addWidget(self.undo)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 8)
        layout.setSpacing(6)
        layout.addWidget(self.title)
        layout.addWidget(self.summary)
        layout.addLayout(buttons)
        layout.addWidget(self.table_box)
        layout.addWidget(self.message)

    def refresh(self) -> None:
        engine = self.w.engine
        self.w.tasks.run(engine.learning_summary, done=self.show_summary, key="learning-summary",
                         name="learning summary")

    def show_summary(self, s: LearnedSummary) -> None:
        if not s.opens:
            self.summary.setText("Open a search result and Sift ties your words to it at once: searching for "
                                 "it again, in these or other words, brings it to the top. No training needed.")
        else:
            self.summary.setText(f"From your {s.opens:,} opened results Sift has learned {s.queries:,} searches "
                                 f"on {s.passages:,} passages; they come first when you search for them again."
                                 + (f" How much this counts was measured on {s.weights.chosen_on} held-out searches."
                                    if s.weights.chosen_on else ""))
        self.measure.setVisible(s.queries > 0)

    def start_measuring(self) -> None:
        engine = self.w.engine

        def measure() -> tuple[LearnWeights, TuneReport]:  # the catalog is read on the worker, not here
            return engine.learning_summary().weights, engine.tune_learning(adopt=True)

        self.measure.setEnabled(False)
        self.message.setText("Measuring on searches kept aside…")
        self.message.show()
        self.w.tasks.run(measure, done=self._measured, error=self._failed, name="measure learning")

    def _measured(self, result: tuple[LearnWeights, TuneReport]) -> None:
        self.previous, report = result
        self.show_report(report)

    def show_report(self, report: TuneReport) -> None:
        self.measure.setEnabled(True)
        self.message.setText(report.message)
        self.table_box.setVisible(report.enough)
        for key, (before, after) in self.cells.items():
            if report.enough:
                before.setText(f"{report.before[key]:.3f}")
                after.setText(f"{report.after[key]:.3f}")
        self.undo.setVisible(report.enough and self.previous is not None and self.previous != report.weights)
        self.refresh()
        self.measured.emit(report)

    def undo_change(self) -> None:
        if self.previous is None:
            return
        previous, engine = self.previous, self.w.engine

        def done(_result) -> None:
            self.undo.hide()
            self.message.setText("Back to how much learning counted before.")
            self.refresh()
            self.undone.emit()

        self.w.tasks.run(lambda: engine.set_learning(previous), done=done, error=self._failed, name="undo learning")

    def _failed(self, exc: BaseException) -> None:
        self.measure.setEnabled(True)
        self.message.setText(f"Sift could not measure what it learned: {exc}")
        self.message.show()


class DataPage(QWizardPage):
    """What Sift would learn from; Next only when there is enough (or the cold start is chosen)."""

    def __init__(self, wizard: FinetuneWizard) -> None:
        super().__init__()
        self.w = wizard
        self.summary: DataSummary | None = None
        self.pending = False  # a summary for the options now chosen is on its way
        self.setTitle("What Sift learns from")
        self.setSubTitle("Each time you open a search result, Sift notes which passage answered which words, "
                         "on this computer; nothing leaves it. Later, it can also train its search model on them.")
        self.learned = LearnedBox(wizard)
        self.training_title = theme.label("Later, optional: train the search model on your searches", wrap=False)
        self.training_title.setFont(theme.scaled_font(self.training_title.font(), 1.0, bold=True))
        self.loading = theme.label("Reading your search history…", dim=True)
        self.figures = QGridLayout()
        self.figures.setContentsMargins(0, 0, 0, 0)
        self.figures.setHorizontalSpacing(24)
        self.figures.setVerticalSpacing(6)
        self.values: dict[str, QLabel] = {}
        rows = (("clicks", "Results opened"), ("pairs", "Search–passage pairs to learn from"),
                ("queries", "Searches with an opened result"),
                ("split", "Searches kept aside to test on"))
        self.names: dict[str, QLabel] = {}
        for row, (key, text) in enumerate(rows):
            name = theme.label(text, wrap=False)
            self.names[key] = name
            value = theme.label("", wrap=False)
            value.setFont(theme.scaled_font(value.font(), 1.0, bold=True))
            value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.figures.addWidget(name, row, 0)
            self.figures.addWidget(value, row, 1)
            self.values[key] = value
        self.figures.setColumnStretch(2, 1)
        self.figures_box = QWidget()
        self.figures_box.setLayout(self.figures)
        self.figures_box.hide()
        self.split_note = theme.label("Searches kept aside are never trained on: they show honestly whether the new "
                                 "model finds what you opened better than the current one.", dim=True)
        self.split_note.hide()
        self.message = theme.label()
        self.message.hide()
        self.cold_start = QCheckBox("Learn from your documents' own titles and headings instead")
        self.cold_start.toggled.connect(self._cold_start_toggled)
        self.cold_note = theme.label("", dim=True)
        self.cold_box = QWidget()
        cold = QVBoxLayout(self.cold_box)
        cold.setContentsMargins(0, 8, 0, 0)
        cold.setSpacing(4)
        cold.addWidget(self.cold_start)
        cold.addWidget(self.cold_note)
        self.cold_box.hide()
        self.error = theme.error_label()

        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        layout.addWidget(self.learned)
        layout.addWidget(self.training_title)
        layout.addWidget(self.loading)
        layout.addWidget(self.figures_box)
        layout.addWidget(self.split_note)
        layout.addWidget(self.message)
        layout.addWidget(self.cold_box)
        layout.addWidget(self.error)
        layout.addStretch(1)

    def initializePage(self) -> None:
        self.learned.refresh()
        self.refresh()

    def refresh(self) -> None:
        """Ask the engine (on a worker) what there is to learn from, for the options chosen so far."""
        self.loading.show()
        self.error.hide()
        self.pending = True
        self.completeChanged.emit()
        options = self.w.options()
        engine = self.w.engine
        self.w.tasks.run(lambda: finetune_summary(engine, options), done=self.show_summary, error=self._failed,
                         key="finetune-summary", name="fine-tune summary")

    def show_summary(self, summary: DataSummary) -> None:
        self.summary = summary
        self.pending = False
        self.loading.hide()
        cold = self.cold_start.isChecked()
        self.names["pairs"].setText("Practice questions from your passages" if cold
                                    else "Search–passage pairs to learn from")
        self.names["split"].setText("Searches that check the new model" if cold else "Searches kept aside to test on")
        self.figures_box.show()
        self.values["clicks"].setText(f"{summary.clicks:,}")
        self.values["pairs"].setText(f"{summary.pairs:,}")
        self.values["queries"].setText(f"{summary.queries:,}")
        self.values["split"].setText(f"{summary.heldout_queries:,}" if summary.queries else "none")
        self.split_note.setVisible(summary.heldout_queries > 0 and not cold)
        self.message.setText(summary.message)
        self.message.setVisible(bool(summary.message))
        # Too little data is the one thing this page must get across.
        self.message.setFont(theme.scaled_font(self.font(), 1.0, bold=not summary.enough))
        offer_cold = not summary.enough or self.cold_start.isChecked()
        self.cold_box.setVisible(offer_cold)
        if summary.queries == 0:
            self.cold_note.setText("Unmeasured: with no opened results to test on yet, Sift cannot tell whether "
                                   "this helps. It will say so, and will not offer the new model unless a test "
                                   "shows it is better.")
        else:
            self.cold_note.setText("No opened results are needed to train: Sift makes practice questions from your "
                                   f"passages. Your {summary.queries:,} searches with an opened result then check "
                                   "whether the new model is better before you can use it.")
        self.completeChanged.emit()

    def _failed(self, exc: BaseException) -> None:
        self.pending = False
        self.loading.hide()
        self.error.setText(f"Sift could not read what it has learned from: {exc}")
        self.error.show()
        self.completeChanged.emit()

    def _cold_start_toggled(self, _checked: bool) -> None:
        self.refresh()  # the engine says whether there is enough for this choice

    def isComplete(self) -> bool:
        return self.summary is not None and not self.pending and self.summary.enough


class OptionsPage(QWizardPage):
    """Sensible defaults in a sentence; the knobs under "Advanced", closed until asked for."""

    def __init__(self, wizard: FinetuneWizard) -> None:
        super().__init__()
        self.w = wizard
        defaults = TrainOptions()
        self.setTitle("Training")
        self.setSubTitle("Sift trains a copy of the current model; the model you search with now stays in use "
                         "until you choose to switch.")
        self.setCommitPage(True)
        self.setButtonText(QWizard.WizardButton.CommitButton, "Start training")
        self.plan = theme.label("")
        # Beside the Start button: a run with nothing to test it on can never be offered, and the
        # person must read that before pressing it, not after minutes of training.
        self.unmeasured = theme.label("")
        self.unmeasured.setFont(theme.scaled_font(self.unmeasured.font(), 1.0, bold=True))
        self.unmeasured.hide()

        self.epochs = QSpinBox()
        self.epochs.setRange(1, 20)
        self.epochs.setValue(defaults.epochs)
        self.learning_rate = ScientificSpinBox()
        self.learning_rate.setValue(defaults.learning_rate)
        self.warmup = QSpinBox()
        self.warmup.setRange(0, 50)
        self.warmup.setSuffix(" % of the steps")
        self.warmup.setValue(round(defaults.warmup_ratio * 100))
        self.batch_size = QSpinBox()
        self.batch_size.setRange(0, 1024)
        self.batch_size.setSpecialValueText("Automatic")
        self.batch_size.setValue(defaults.batch_size)
        self._batch = defaults.batch_size
        self.batch_size.valueChanged.connect(self._skip_batch_of_one)
        self.hard_negatives = QSpinBox()
        self.hard_negatives.setRange(0, 10)
        self.hard_negatives.setValue(defaults.hard_negatives)
        self.hard_negatives.setSuffix(" per pair")
        self.train_reranker = QCheckBox("Train the reranker too, from the same searches")
        self.train_reranker.setChecked(defaults.train_reranker)
        for box in (self.epochs, self.learning_rate, self.warmup, self.batch_size, self.hard_negatives):
            box.setMinimumWidth(box.fontMetrics().horizontalAdvance("10 % of the steps") + 40)
            box.valueChanged.connect(self._update_plan)
        self.train_reranker.toggled.connect(self._update_plan)

        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        form.setVerticalSpacing(8)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.addRow("Passes over the data (epochs)", self.epochs)
        form.addRow("Learning rate", self.learning_rate)
        form.addRow("Warm-up", self.warmup)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Hard negatives", self.hard_negatives)
        form.addRow("", self.train_reranker)
        self.advanced = QWidget()
        advanced = QVBoxLayout(self.advanced)
        advanced.setContentsMargins(0, 0, 0, 0)
        advanced.setSpacing(10)
        advanced.addLayout(form)
        advanced.addWidget(theme.label("Automatic batch size picks what fits this computer's memory: larger on a GPU. "
                                  "Hard negatives are results you were shown but did not open, and look-alike "
                                  "passages; they teach the model fine differences.", dim=True))
        self.advanced.hide()
        self.toggle = QToolButton()  # a disclosure arrow, not a pressed-in button, so not checkable
        self.toggle.setText("Advanced options")
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setAutoRaise(True)
        self.toggle.clicked.connect(lambda: self.show_advanced(not self.advanced.isVisibleTo(self)))
        self.reset = QPushButton("Restore defaults")
        self.reset.clicked.connect(self.restore_defaults)
        self.reset.hide()
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.toggle)
        row.addStretch(1)
        row.addWidget(self.reset)

        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        layout.addWidget(self.plan)
        layout.addSpacing(6)
        layout.addLayout(row)
        layout.addWidget(self.advanced)
        layout.addStretch(1)
        layout.addWidget(self.unmeasured)

    def initializePage(self) -> None:
        self._update_plan()

    def _skip_batch_of_one(self, value: int) -> None:
        """A batch of one has no in-batch negatives to learn from: step over it, up or down."""
        if value == 1:
            self.batch_size.setValue(2 if self._batch == 0 else 0)
            return
        self._batch = value

    def show_advanced(self, shown: bool) -> None:
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.advanced.setVisible(shown)
        self.reset.setVisible(shown)

    def restore_defaults(self) -> None:
        d = TrainOptions()
        self.epochs.setValue(d.epochs)
        self.learning_rate.setValue(d.learning_rate)
        self.warmup.setValue(round(d.warmup_ratio * 100))
        self.batch_size.setValue(d.batch_size)
        self.hard_negatives.setValue(d.hard_negatives)
        self.train_reranker.setChecked(d.train_reranker)

    def _update_plan(self) -> None:
        summary = self.w.data_page.summary
        cold = self.w.data_page.cold_start.isChecked()
        source = ("pseudo-searches made from your documents' titles and headings" if cold or summary is None
                  else f"{summary.pairs:,} search–passage pairs")
        what = "the search model and the reranker" if self.train_reranker.isChecked() else "the search model"
        held = summary.heldout_queries if summary is not None else 0
        test = (f"then tests both the current and the new model on the {held:,} searches kept aside."
                if held else "there are no searches to test on, so the result cannot be measured.")
        epochs = self.epochs.value()
        self.plan.setText(f"Sift will train {what} on {source}, {epochs} pass{'es' if epochs != 1 else ''} over "
                          f"the data, and {test} This takes a few minutes with a graphics card and ten minutes "
                          "or more without one; you can go on searching meanwhile, and Stop ends it at any time.")
        self.unmeasured.setText("" if held else
                                "Sift will not offer the model this trains: there are no searches with an opened "
                                "result to test it on, so nothing can show that it is better. Open results of your "
                                "own searches first, then train again.")
        self.unmeasured.setVisible(not held)
        self.setButtonText(QWizard.WizardButton.CommitButton, "Start training" if held else "Train anyway")

    def values(self) -> dict:
        """The chosen options as TrainOptions keywords."""
        return {"epochs": self.epochs.value(), "learning_rate": self.learning_rate.value(),
                "warmup_ratio": self.warmup.value() / 100, "batch_size": self.batch_size.value(),
                "hard_negatives": self.hard_negatives.value(), "train_reranker": self.train_reranker.isChecked()}


class TrainingPage(QWizardPage):
    """Stage, progress, ETA and a log; Stop sets the cancel event and the current model stays."""

    def __init__(self, wizard: FinetuneWizard) -> None:
        super().__init__()
        self.w = wizard
        self.result: FinetuneResult | None = None
        self.setTitle("Training")
        self.setSubTitle("Search keeps working with the current model while Sift trains.")
        self.stage = theme.label("Starting…")
        self.stage.setFont(theme.scaled_font(self.stage.font(), 1.1, bold=True))
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)
        self.bar.setTextVisible(False)
        self.bar.setFixedHeight(8)
        self.detail = theme.label("", dim=True)
        self.eta = theme.label("", dim=True, wrap=False)
        self.eta.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop)
        details = QHBoxLayout()
        details.addWidget(self.detail, 1)
        details.addWidget(self.eta)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMinimumHeight(110)
        self.log.setMaximumBlockCount(500)
        self.log.setFrameShape(QFrame.Shape.StyledPanel)
        self.outcome = theme.label()
        self.outcome.hide()
        self.error = theme.error_label()
        self.stop = QPushButton("Stop training")
        self.stop.clicked.connect(self.w.stop_training)
        stop_row = QHBoxLayout()
        stop_row.addWidget(self.stop)
        stop_row.addStretch(1)

        layout = QVBoxLayout(self)
        layout.setSpacing(8)
        layout.addWidget(self.stage)
        layout.addWidget(self.bar)
        layout.addLayout(details)
        layout.addSpacing(4)
        layout.addWidget(theme.label("What happened so far", dim=True))
        layout.addWidget(self.log, 1)
        layout.addWidget(self.outcome)
        layout.addWidget(self.error)
        layout.addLayout(stop_row)
        self._last_stage = ""

    def initializePage(self) -> None:
        self.result = None
        self._last_stage = ""
        self.log.clear()
        self.outcome.hide()
        self.error.hide()
        self.stop.setEnabled(True)
        self.stop.show()
        self.stage.setText("Starting…")
        self.bar.setRange(0, 0)
        self.detail.clear()
        self.eta.clear()
        self.setButtonText(QWizard.WizardButton.CancelButton, "Cancel")
        self.w.start_training()

    def add_log(self, text: str, at: float | None = None) -> None:
        """A line of the log, stamped with `at` (when it happened on the worker) or now."""
        stamp = time.strftime("%H:%M:%S", time.localtime(time.time() if at is None else at))
        self.log.appendPlainText(f"{stamp}  {text}")

    def show_progress(self, p: FinetuneProgress, at: float | None = None) -> None:
        if not self.w.training or self.w.stopping:
            return  # a late report from a run that has ended or is being stopped
        stage = stage_text(p)
        if p.stage != self._last_stage:
            self._last_stage = p.stage
            self.add_log(stage + "…", at)
        self.stage.setText(stage)
        if p.total > 0:
            self.bar.setRange(0, p.total)
            self.bar.setValue(min(p.done, p.total))
        else:
            self.bar.setRange(0, 0)
        self.detail.setText(detail_text(p))
        eta = eta_text(p.eta_s)
        self.eta.setText(f"{eta} in this step" if eta else "")

    def finished(self, result: FinetuneResult) -> None:
        self.result = result
        self.add_log(f"Done in {result.train_seconds / 60:.1f} min of training. {result.verdict}".strip())
        self.stop.hide()
        self.completeChanged.emit()

    def stopping(self) -> None:
        self.stop.setEnabled(False)
        self.stage.setText("Stopping…")
        self.detail.setText("Sift stops at its next step and removes what it had trained so far.")
        self.eta.clear()
        self.add_log("Asked to stop.")

    def stopped(self) -> None:
        self._end("Training stopped. Your current model is kept and search works as before.")
        self.add_log("Stopped; nothing was changed.")

    def failed(self, exc: BaseException) -> None:
        self._end("")
        self.error.setText(f"Training did not finish: {exc}\nYour current model is kept and search works as before.")
        self.error.show()
        self.add_log(f"Failed: {exc}")

    def _end(self, outcome: str) -> None:
        self.stop.hide()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.stage.setText("Not finished")
        self.detail.clear()
        self.eta.clear()
        if outcome:
            self.outcome.setText(outcome)
            self.outcome.show()
        self.setButtonText(QWizard.WizardButton.CancelButton, "Close")
        self.w.button(QWizard.WizardButton.CancelButton).setText("Close")

    def isComplete(self) -> bool:
        return self.result is not None


class MetricsTable(QFrame):
    """One pipeline's before/after figures: measure, now, new, change (coloured)."""

    def __init__(self, title: str, subtitle: str) -> None:
        super().__init__()
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Maximum)
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(12, 10, 12, 10)
        self.grid.setHorizontalSpacing(14)
        self.grid.setVerticalSpacing(6)
        heading = theme.label(title, wrap=False)
        heading.setFont(theme.scaled_font(heading.font(), 1.0, bold=True))
        self.grid.addWidget(heading, 0, 0, 1, 4)
        self.grid.addWidget(theme.label(subtitle, dim=True), 1, 0, 1, 4)
        for col, text in enumerate(("", "Now", "New", "Change")):
            head = theme.label(text, dim=True, wrap=False)
            head.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.grid.addWidget(head, 2, col)
        self.cells: dict[str, tuple[QLabel, QLabel, QLabel]] = {}
        for row, (key, name, tip) in enumerate(METRICS, start=3):
            label = theme.label(name, wrap=False)
            label.setToolTip(tip)
            self.grid.addWidget(label, row, 0)
            cells = []
            for col in (1, 2, 3):
                cell = theme.label("", wrap=False)
                cell.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                cell.setMinimumWidth(cell.fontMetrics().horizontalAdvance("+0.000") + 4)
                self.grid.addWidget(cell, row, col)
                cells.append(cell)
            self.cells[key] = (cells[0], cells[1], cells[2])
        self.grid.setColumnStretch(0, 1)
        self._shown: tuple[dict[str, float], dict[str, float], bool] | None = None

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and self._shown is not None:  # light ↔ dark
            before, after, measured = self._shown
            self.show_metrics(before, after, measured=measured)

    def show_metrics(self, before: dict[str, float], after: dict[str, float], *, measured: bool) -> None:
        self._shown = (before, after, measured)
        for key, (now, new, change) in self.cells.items():
            b, a = before.get(key), after.get(key)
            if not measured or b is None or a is None:
                now.setText("—")
                new.setText("—")
                change.setText("not measured")
                change.setStyleSheet("")
                theme.dim(change)
                continue
            now.setText(f"{b:.3f}")
            new.setText(f"{a:.3f}")
            change.setText(delta_text(b, a))
            kind = delta_kind(b, a)
            change.setProperty("delta", kind)
            color = delta_color(kind, self.palette())
            change.setStyleSheet(f"color:{color}; font-weight:600" if color else "")
            if not color:
                theme.dim(change)


class ResultsPage(QWizardPage):
    """Before and after, side by side, the verdict, and the choice (use only when the gate passed)."""

    def __init__(self, wizard: FinetuneWizard) -> None:
        super().__init__()
        self.w = wizard
        self.setTitle("Results")
        self.setSubTitle("Both models were tested on searches they never trained on, through your whole index.")
        self.tables = {key: MetricsTable(title, sub) for key, title, sub in PIPELINES}
        side = QHBoxLayout()
        side.setSpacing(12)
        for table in self.tables.values():
            side.addWidget(table, 1)
        self.headline = theme.label()
        self.headline.setFont(theme.scaled_font(self.headline.font(), 1.1, bold=True))
        self.verdict = theme.label()  # the engine's own sentence: which gate passed, by how much
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note = theme.label("", dim=True)
        self.facts = theme.label("", dim=True)
        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        layout.addLayout(side)
        layout.addSpacing(4)
        layout.addWidget(self.headline)
        layout.addWidget(self.verdict)
        layout.addWidget(self.note)
        layout.addWidget(self.facts)
        layout.addStretch(1)

    def initializePage(self) -> None:
        result = self.w.result
        if result is None:
            return
        self.show_result(result)

    def show_result(self, result: FinetuneResult) -> None:
        measured = result.heldout_queries > 0
        for key, table in self.tables.items():
            before: Metrics = result.before
            table.show_metrics(getattr(before, key), getattr(result.tried or result.after, key), measured=measured)
        self.verdict.setText(result.verdict)
        if self.w.can_adopt():
            parts = [p for p, v in (("search model", result.embedder), ("reranker", result.reranker)) if v]
            self.headline.setText(f"The new {' and '.join(parts)} did better on your held-out searches.")
            it = "them" if len(parts) > 1 else "it"
            switch = (f"Using {it} re-embeds your passages in the background while the current model keeps serving"
                      if result.embedder else f"Using {it} takes effect at once")
            self.note.setText(f"{switch}; you can roll back at any time in Folders and settings → Models.")
        elif not measured:
            self.headline.setText("Not measured: there were no searches to test on.")
            self.note.setText("Sift keeps the models you have. Open the results you search for, and try again "
                              "later: each one becomes something to learn from and to test on.")
        else:
            self.headline.setText("Sift keeps the models you have.")
            self.note.setText("More searches with opened results usually help; try again later.")
        self.facts.setText(f"Learned from {result.pairs:,} pairs; tested on {result.heldout_queries:,} held-out "
                           f"searches; training took {result.train_seconds / 60:.1f} min.")
        self.w.button(QWizard.WizardButton.CustomButton1).setEnabled(self.w.can_adopt())


class AdoptPage(QWizardPage):
    """The switch: re-embedding progress while the current model serves, then done."""

    def __init__(self, wizard: FinetuneWizard) -> None:
        super().__init__()
        self.w = wizard
        self.done = False
        self.setTitle("Switching to the new model")
        self.setSubTitle("Search keeps working with the current model meanwhile.")
        self.stage = theme.label("Embedding your passages with the new model…")
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)
        self.bar.setFixedHeight(8)
        self.bar.setTextVisible(False)
        self.count = theme.label("", dim=True)
        self.note = theme.label("You can close this window: the switch finishes in the background and happens at "
                           "once, when every passage is ready.", dim=True)
        self.outcome = theme.label()
        self.outcome.hide()
        self.error = theme.error_label()
        layout = QVBoxLayout(self)
        layout.setSpacing(8)
        layout.addWidget(self.stage)
        layout.addWidget(self.bar)
        layout.addWidget(self.count)
        layout.addWidget(self.note)
        layout.addSpacing(8)
        layout.addWidget(self.outcome)
        layout.addWidget(self.error)
        layout.addStretch(1)

    def initializePage(self) -> None:
        self.done = False
        self.setButtonText(QWizard.WizardButton.CancelButton, "Close")
        self.w.start_adopting()

    def show_progress(self, done: int, total: int) -> None:
        if self.done:
            return
        if total > 0:
            self.bar.setRange(0, total)
            self.bar.setValue(min(done, total))
            self.count.setText(f"{done:,} of {total:,} passages")
        else:
            self.bar.setRange(0, 0)

    def finished(self, adopted: list[str]) -> None:
        self.done = True
        self.bar.setRange(0, 1)
        self.bar.setValue(1)
        self.stage.setText("Done")
        self.count.clear()
        self.note.hide()
        self.outcome.setText(f"Sift now searches with the new {' and the new '.join(adopted)}. The previous one is "
                             "kept: if results seem worse, choose Roll back in Folders and settings → Models.")
        self.outcome.show()
        self.w.setButtonLayout([QWizard.WizardButton.Stretch, QWizard.WizardButton.FinishButton])
        self.completeChanged.emit()

    def failed(self, exc: BaseException) -> None:
        self.done = True
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.stage.setText("The switch did not happen")
        self.note.hide()
        self.error.setText(f"{exc}\nSift keeps searching with the current model.")
        self.error.show()
        self.w.setButtonLayout([QWizard.WizardButton.Stretch, QWizard.WizardButton.CancelButton])

    def isComplete(self) -> bool:
        return self.done


# -- the wizard ---------------------------------------------------------------------------------------


class FinetuneWizard(QWizard):
    """Improve search: data → options → training → results → adopting. Engine work runs through Tasks."""

    trainingProgressed = Signal(object, float)  # FinetuneProgress and when the worker reported it (queued)
    adoptProgressed = Signal(int, int)     # passages embedded, of how many (queued)
    trainingFinished = Signal(object)      # FinetuneResult, None when stopped or failed (tests wait on it)
    modelChanged = Signal(str)             # the new model is in use: what was adopted, in words

    def __init__(self, engine: Engine, tasks: Tasks, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.engine, self.tasks = engine, tasks
        self.result: FinetuneResult | None = None
        self.cancel_event: threading.Event | None = None
        self.training_task: Task | None = None
        self.adopt_task: Task | None = None
        self.setWindowTitle("Improve search – Sift")
        self.setWizardStyle(QWizard.WizardStyle.ClassicStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.setOption(QWizard.WizardOption.HaveCustomButton1, True)
        self.setOption(QWizard.WizardOption.HaveCustomButton2, True)
        self.setButtonText(QWizard.WizardButton.CustomButton1, "Use the new model")
        self.setButtonText(QWizard.WizardButton.CustomButton2, "Keep the current one")
        self.customButtonClicked.connect(self._custom_button)
        self.setMinimumSize(640, 500)
        self.resize(760, 560)

        self.data_page = DataPage(self)
        self.options_page = OptionsPage(self)
        self.training_page = TrainingPage(self)
        self.results_page = ResultsPage(self)
        self.adopt_page = AdoptPage(self)
        for page_id, page in ((DATA_PAGE, self.data_page), (OPTIONS_PAGE, self.options_page),
                              (TRAINING_PAGE, self.training_page), (RESULTS_PAGE, self.results_page),
                              (ADOPT_PAGE, self.adopt_page)):
            self.setPage(page_id, page)
        self.setStartId(DATA_PAGE)
        self.trainingProgressed.connect(self.training_page.show_progress)
        self.adoptProgressed.connect(self.adopt_page.show_progress)
        self.currentIdChanged.connect(self._page_changed)
        self._page_changed(DATA_PAGE)

    # -- navigation ---------------------------------------------------------------------------------

    def nextId(self) -> int:
        current = self.currentId()
        if current == RESULTS_PAGE:
            return ADOPT_PAGE if self.can_adopt() else -1
        if current == ADOPT_PAGE:
            return -1
        return current + 1

    def _page_changed(self, page_id: int) -> None:
        B = QWizard.WizardButton
        if page_id == RESULTS_PAGE:
            self.setButtonLayout([B.Stretch, B.CustomButton2, B.CustomButton1])
            self.button(B.CustomButton1).setEnabled(self.can_adopt())
            self.button(B.CustomButton1 if self.can_adopt() else B.CustomButton2).setDefault(True)
        elif page_id == ADOPT_PAGE:
            self.setButtonLayout([B.Stretch, B.CancelButton, B.FinishButton])
        else:
            self.setButtonLayout([B.Stretch, B.BackButton, B.NextButton, B.CommitButton, B.FinishButton,
                                  B.CancelButton])

    def _custom_button(self, which: int) -> None:
        if which == QWizard.WizardButton.CustomButton1.value and self.can_adopt():
            self.next()
        elif which == QWizard.WizardButton.CustomButton2.value:
            self.reject()

    def can_adopt(self) -> bool:
        r = self.result
        return r is not None and r.improved and bool(r.embedder or r.reranker)

    def options(self) -> TrainOptions:
        values = self.options_page.values() if hasattr(self, "options_page") else {}
        return TrainOptions(cold_start=self.data_page.cold_start.isChecked(), **values)

    @property
    def training(self) -> bool:
        return self.training_task is not None

    @property
    def stopping(self) -> bool:
        return self.training and self.cancel_event is not None and self.cancel_event.is_set()

    @property
    def adopting(self) -> bool:
        return self.adopt_task is not None

    # -- training -----------------------------------------------------------------------------------

    def start_training(self) -> None:
        """Run Engine.finetune on a worker; progress comes back as a queued signal."""
        if self.training_task is not None:
            return
        engine, options = self.engine, self.options()
        cancel = self.cancel_event = threading.Event()
        self.result = None

        def progressed(p: FinetuneProgress) -> None:  # worker thread
            try:
                # stamped here, as the step starts: the GUI may show it a while later
                self.trainingProgressed.emit(p, time.time())
            except RuntimeError:  # the wizard is gone (the app is closing); the cancel event stops the run
                pass

        def work():
            try:
                return run_finetune(engine, options, on_progress=progressed, cancel=cancel)
            except Cancelled:
                return CANCELLED

        self.training_page.add_log("Started" + (" (from your documents' titles and headings)."
                                                if options.cold_start else "."))
        self.training_task = self.tasks.run(work, done=self._trained, error=self._training_failed,
                                            name="fine-tune", on_cancel=cancel.set)

    def stop_training(self) -> None:
        """Set the cancel event: the engine stops at its next step and keeps the current model."""
        if self.cancel_event is not None and self.training:
            self.cancel_event.set()
            self.training_page.stopping()

    def _trained(self, result) -> None:
        self.training_task = None
        if result is CANCELLED:
            self.training_page.stopped()
            self.trainingFinished.emit(None)
            return
        self.result = result
        self.training_page.finished(result)
        self.trainingFinished.emit(result)
        if self.currentId() == TRAINING_PAGE:
            self.next()

    def _training_failed(self, exc: BaseException) -> None:
        self.training_task = None
        log.warning("fine-tuning failed: %s", exc, exc_info=exc)
        self.training_page.failed(exc)
        self.trainingFinished.emit(None)

    # -- adopting -----------------------------------------------------------------------------------

    def start_adopting(self) -> None:
        """Adopt what passed the gate, on a worker: the bi-encoder re-embeds while the current one serves."""
        result = self.result
        if result is None or self.adopt_task is not None or not self.can_adopt():
            return
        engine = self.engine
        cancel = threading.Event()

        def progressed(done: int, total: int) -> None:  # worker thread
            try:
                self.adoptProgressed.emit(done, total)
            except RuntimeError:
                pass

        def work() -> list[str]:
            adopted = []
            if result.embedder:
                engine.adopt_model(result.embedder, on_progress=progressed, cancel=cancel)
                adopted.append("search model")
            if result.reranker:
                engine.adopt_reranker(result.reranker)
                adopted.append("reranker")
            return adopted

        if not result.embedder:
            self.adopt_page.stage.setText("Switching the reranker…")
        self.adopt_task = self.tasks.run(work, done=self._adopted, error=self._adopt_failed, name="adopt model",
                                         on_cancel=cancel.set)

    def _adopted(self, adopted: list[str]) -> None:
        self.adopt_task = None
        self.adopt_page.finished(adopted)
        self.modelChanged.emit(" and ".join(adopted))

    def _adopt_failed(self, exc: BaseException) -> None:
        self.adopt_task = None
        log.warning("adopting the fine-tuned model failed: %s", exc, exc_info=exc)
        self.adopt_page.failed(exc)

    # -- closing ------------------------------------------------------------------------------------

    def reject(self) -> None:
        """Closing stops a training run (the current model stays); a switch under way goes on in the background."""
        if self.training:
            self.stop_training()
        super().reject()
