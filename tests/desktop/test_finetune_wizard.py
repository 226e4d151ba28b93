"""The fine-tune wizard and Settings → Models over a real engine whose fine-tune calls are fakes."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWizard

from desktop import theme
from desktop.finetune_wizard import (
    ADOPT_PAGE,
    DATA_PAGE,
    OPTIONS_PAGE,
    RESULTS_PAGE,
    STAGES,
    TRAINING_PAGE,
    FinetuneWizard,
    MetricsTable,
    delta_color,
    delta_kind,
    delta_text,
    detail_text,
    eta_text,
)
from desktop.indexing import Indexer
from desktop.models_tab import describe_card
from desktop.prefs import Prefs
from desktop.settings import SettingsDialog
from desktop.tasks import Tasks
from engine import (
    BUNDLED_MODEL,
    Cancelled,
    DataSummary,
    Engine,
    FinetuneProgress,
    FinetuneResult,
    Metrics,
    ModelCard,
    ModelInfo,
    SiftError,
)
from engine.embed import FakeEmbedder
from tests.desktop.conftest import WAIT_MS

B = QWizard.WizardButton
BEFORE = {"ndcg@10": 0.400, "recall@5": 0.500, "recall@10": 0.600, "mrr@10": 0.380}
AFTER = {"ndcg@10": 0.450, "recall@5": 0.480, "recall@10": 0.600, "mrr@10": 0.420}


def summary(*, enough: bool, pairs: int = 300, queries: int = 120, clicks: int = 340) -> DataSummary:
    heldout = queries // 3
    return DataSummary(clicks=clicks, pairs=pairs, queries=queries, train_queries=queries - heldout,
                       heldout_queries=heldout, min_pairs=200, enough=enough,
                       message="" if enough else f"{pairs} pairs from {queries} searches; about 60 more searches "
                                                 "with an opened result are needed before training")


def cold_summary(*, enough: bool = True, queries: int = 0) -> DataSummary:
    return DataSummary(clicks=queries, pairs=2000 if enough else 0, queries=queries, train_queries=0,
                       heldout_queries=queries, min_pairs=200, enough=enough,
                       message="Up to 2,000 practice questions can be made from your 5,210 passages." if enough else
                       "Only 12 passages are indexed; adapting to your documents needs at least 50.")


def result(tmp_path, *, improved: bool = True, heldout: int = 40) -> FinetuneResult:
    folder = tmp_path / "models" / "embedders" / "sift-ft-20261127-2330"
    reranker = tmp_path / "models" / "rerankers" / "sift-ft-20261127-2330"
    return FinetuneResult(
        before=Metrics(dense=dict(BEFORE), pipeline=dict(BEFORE)),
        after=Metrics(dense=dict(AFTER), pipeline={k: v - 0.01 for k, v in BEFORE.items()}),
        improved=improved,
        verdict=("The new model is better: nDCG@10 0.400 → 0.450 (+0.050)." if improved else
                 "The new model is not better (nDCG@10 0.400 → 0.390); keeping the current one."),
        embedder=str(folder) if improved else None, reranker=str(reranker) if improved else None,
        pairs=300, heldout_queries=heldout, train_seconds=95.0)


class FakeFinetune:
    """Stands in for the engine's fine-tune and model calls; records what the wizard asked for."""

    def __init__(self, summary: DataSummary, result: FinetuneResult | None = None,
                 error: BaseException | None = None, cold: DataSummary | None = None) -> None:
        self._summary, self._result, self._error, self._cold = summary, result, error, cold
        self.summary_options: list = []
        self.train_options: list = []
        self.cancel: threading.Event | None = None
        self.proceed = threading.Event()      # the test lets training finish
        self.adopted: list[tuple[str, str]] = []
        self.threads: set[str] = set()
        self.rolled_back = 0

    def install(self, monkeypatch, engine, *, names=("finetune_summary", "finetune", "adopt_model",
                                                     "adopt_reranker", "rollback_model")) -> FakeFinetune:
        import desktop.finetune_wizard as wizard

        # Fine-tuning is module functions over the engine; the model calls are the engine's.
        as_functions = {"finetune_summary": "finetune_summary", "finetune": "run_finetune"}
        for name in names:
            if name in as_functions:
                method = getattr(self, name)
                monkeypatch.setattr(wizard, as_functions[name], lambda _engine, *a, _m=method, **kw: _m(*a, **kw))
            else:
                monkeypatch.setattr(engine, name, getattr(self, name))
        return self

    def finetune_summary(self, options=None) -> DataSummary:
        self.summary_options.append(options)
        return self._cold if options is not None and options.cold_start and self._cold else self._summary

    def finetune(self, options, *, on_progress=None, cancel=None) -> FinetuneResult:
        self.threads.add(threading.current_thread().name)
        self.train_options.append(options)
        self.cancel = cancel
        on_progress(FinetuneProgress(stage="baseline", done=0, total=0, eta_s=None, message="40 held-out searches"))
        on_progress(FinetuneProgress(stage="training", done=3, total=10, eta_s=130.0, message="step 3 of 10"))
        assert self.proceed.wait(WAIT_MS / 1000), "the test never let training finish"
        if cancel is not None and cancel.is_set():
            raise Cancelled("training cancelled")
        if self._error is not None:
            raise self._error
        on_progress(FinetuneProgress(stage="evaluating", done=1, total=1, eta_s=None, message=""))
        return self._result

    def adopt_model(self, value, *, on_progress=None, cancel=None) -> None:
        self.threads.add(threading.current_thread().name)
        on_progress(5, 10)
        on_progress(10, 10)
        self.adopted.append(("embedder", value))

    def adopt_reranker(self, value) -> None:
        self.adopted.append(("reranker", value))

    def rollback_model(self) -> str:
        self.threads.add(threading.current_thread().name)
        self.rolled_back += 1
        return BUNDLED_MODEL


@pytest.fixture
def make_wizard(qtbot, engine, tasks):
    def make() -> FinetuneWizard:
        wizard = FinetuneWizard(engine, tasks)
        qtbot.addWidget(wizard)
        wizard.show()
        qtbot.waitUntil(lambda: wizard.data_page.summary is not None, timeout=WAIT_MS)
        return wizard
    return make


def click(qtbot, wizard: FinetuneWizard, which) -> None:
    button = wizard.button(which)
    assert button.isVisible() and button.isEnabled(), f"{which} is not clickable"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def train(qtbot, wizard: FinetuneWizard, fake: FakeFinetune) -> None:
    """From the data page to the training page, with training paused at step 3 of 10."""
    click(qtbot, wizard, B.NextButton)
    assert wizard.currentId() == OPTIONS_PAGE
    click(qtbot, wizard, B.CommitButton)
    assert wizard.currentId() == TRAINING_PAGE
    qtbot.waitUntil(lambda: wizard.training_page.bar.value() == 3, timeout=WAIT_MS)


# -- the pages -----------------------------------------------------------------------------------------



@contextmanager
def settings_dialog(qtbot, engine):
    """The Settings dialog over `engine` with its own Tasks; closed and its workers joined after."""
    tasks = Tasks()
    dialog = SettingsDialog(engine, Indexer(engine, tasks, use_service=False), Prefs(engine.paths.config))
    qtbot.addWidget(dialog)
    try:
        yield dialog, tasks
    finally:
        dialog.close()
        tasks.shutdown()

def test_too_little_data_disables_next_and_says_how_many_more_searches(qtbot, monkeypatch, engine, make_wizard):
    fake = FakeFinetune(summary(enough=False, pairs=240, queries=90), cold=cold_summary(queries=90)).install(
        monkeypatch, engine)
    wizard = make_wizard()
    page = wizard.data_page
    assert wizard.currentId() == DATA_PAGE
    assert not wizard.button(B.NextButton).isEnabled()
    assert page.message.isVisible() and "about 60 more searches" in page.message.text()
    assert page.values["pairs"].text() == "240" and page.values["split"].text() == "30"
    # The cold start is offered; choosing it asks again with that option and allows going on.
    assert page.cold_start.isVisible() and not page.cold_start.isChecked()
    page.cold_start.setChecked(True)
    assert not wizard.button(B.NextButton).isEnabled()  # until the engine answers for this choice
    qtbot.waitUntil(lambda: wizard.button(B.NextButton).isEnabled(), timeout=WAIT_MS)
    assert len(fake.summary_options) == 2 and fake.summary_options[-1].cold_start
    assert page.names["pairs"].text() == "Practice questions from your passages"
    assert page.message.text().startswith("Up to 2,000 practice questions")
    page.cold_start.setChecked(False)
    qtbot.waitUntil(lambda: len(fake.summary_options) == 3 and not page.pending, timeout=WAIT_MS)
    assert not wizard.button(B.NextButton).isEnabled()


def test_a_cold_start_with_too_few_passages_is_refused_too(qtbot, monkeypatch, engine, make_wizard):
    FakeFinetune(summary(enough=False, pairs=0, queries=0, clicks=0), cold=cold_summary(enough=False)).install(
        monkeypatch, engine)
    wizard = make_wizard()
    wizard.data_page.cold_start.setChecked(True)
    qtbot.waitUntil(lambda: not wizard.data_page.pending, timeout=WAIT_MS)
    assert "at least 50" in wizard.data_page.message.text()
    assert not wizard.button(B.NextButton).isEnabled()


def test_with_the_real_engine_and_no_clicks_there_is_nothing_to_train_on(qtbot, make_wizard):
    wizard = make_wizard()
    page = wizard.data_page
    assert page.summary.pairs == 0 and not page.summary.enough
    assert "more searches with an opened result are needed" in page.message.text()
    assert not wizard.button(B.NextButton).isEnabled()
    page.cold_start.setChecked(True)  # nothing indexed either: the engine refuses the cold start too
    qtbot.waitUntil(lambda: not page.pending, timeout=WAIT_MS)
    assert page.summary.message and not wizard.button(B.NextButton).isEnabled()


def test_the_cold_start_says_it_is_unmeasured_without_clicks(qtbot, monkeypatch, engine, make_wizard):
    FakeFinetune(summary(enough=False, pairs=0, queries=0, clicks=0)).install(monkeypatch, engine)
    wizard = make_wizard()
    page = wizard.data_page
    assert page.values["split"].text() == "none"
    assert page.cold_note.text().startswith("Unmeasured")
    assert not wizard.button(B.NextButton).isEnabled()


def test_a_training_run_shows_progress_then_before_and_after_with_coloured_deltas(qtbot, monkeypatch, engine,
                                                                                   make_wizard, tmp_path):
    fake = FakeFinetune(summary(enough=True), result(tmp_path)).install(monkeypatch, engine)
    wizard = make_wizard()
    assert wizard.button(B.NextButton).isEnabled()
    wizard.options_page.epochs.setValue(3)
    wizard.options_page.batch_size.setValue(0)
    train(qtbot, wizard, fake)
    page = wizard.training_page
    assert fake.train_options[0].epochs == 3 and fake.train_options[0].batch_size == 0
    assert page.stage.text() == STAGES["training"] and page.bar.maximum() == 10
    assert page.eta.text() == "about 2 min left in this step" and page.detail.text() == "Step 3 of 10"
    assert STAGES["baseline"] in page.log.toPlainText()
    assert not wizard.button(B.BackButton).isEnabled()  # training was the commit point
    assert threading.main_thread().name not in fake.threads

    with qtbot.waitSignal(wizard.trainingFinished, timeout=WAIT_MS) as finished:
        fake.proceed.set()
    assert finished.args[0] is fake._result
    assert wizard.currentId() == RESULTS_PAGE
    results = wizard.results_page
    now, new, change = results.tables["dense"].cells["ndcg@10"]
    assert (now.text(), new.text(), change.text()) == ("0.400", "0.450", "+0.050")
    assert delta_color("better") in change.styleSheet()
    worse = results.tables["dense"].cells["recall@5"][2]
    assert worse.text() == "-0.020" and delta_color("worse") in worse.styleSheet()
    assert results.tables["dense"].cells["recall@10"][2].text() == "±0"
    assert results.tables["pipeline"].cells["ndcg@10"][2].text() == "-0.010"
    assert results.verdict.text() == fake._result.verdict
    assert results.headline.text() == "The new search model and reranker did better on your held-out searches."
    assert wizard.button(B.CustomButton1).isEnabled() and wizard.button(B.CustomButton2).isVisible()


def test_cancel_sets_the_event_and_keeps_the_old_model(qtbot, monkeypatch, engine, make_wizard, tmp_path):
    fake = FakeFinetune(summary(enough=True), result(tmp_path)).install(monkeypatch, engine)
    model = engine.config.model
    wizard = make_wizard()
    train(qtbot, wizard, fake)
    page = wizard.training_page
    qtbot.mouseClick(page.stop, Qt.MouseButton.LeftButton)
    assert fake.cancel is not None and fake.cancel.is_set()
    assert page.stage.text() == "Stopping…"
    with qtbot.waitSignal(wizard.trainingFinished, timeout=WAIT_MS) as finished:
        fake.proceed.set()
    assert finished.args[0] is None
    assert wizard.currentId() == TRAINING_PAGE and not wizard.training
    assert "current model is kept" in page.outcome.text() and page.outcome.isVisible()
    assert wizard.button(B.CancelButton).text() == "Close"
    assert fake.adopted == [] and engine.config.model == model


def test_closing_the_wizard_during_training_cancels_it(qtbot, monkeypatch, engine, make_wizard, tmp_path, tasks):
    fake = FakeFinetune(summary(enough=True), result(tmp_path)).install(monkeypatch, engine)
    wizard = make_wizard()
    train(qtbot, wizard, fake)
    wizard.reject()
    assert fake.cancel.is_set() and not wizard.isVisible()
    with qtbot.waitSignal(wizard.trainingFinished, timeout=WAIT_MS):
        fake.proceed.set()
    assert fake.adopted == [] and tasks.is_idle()


def test_a_training_error_is_shown_as_text(qtbot, monkeypatch, engine, make_wizard):
    fake = FakeFinetune(summary(enough=True), error=SiftError("The disk is full.")).install(monkeypatch, engine)
    wizard = make_wizard()
    train(qtbot, wizard, fake)
    with qtbot.waitSignal(wizard.trainingFinished, timeout=WAIT_MS):
        fake.proceed.set()
    page = wizard.training_page
    assert page.error.isVisible() and "The disk is full." in page.error.text()
    assert wizard.currentId() == TRAINING_PAGE and not wizard.button(B.NextButton).isEnabled()


def test_a_model_that_failed_the_gate_cannot_be_used(qtbot, monkeypatch, engine, make_wizard, tmp_path):
    fake = FakeFinetune(summary(enough=True), result(tmp_path, improved=False)).install(monkeypatch, engine)
    wizard = make_wizard()
    train(qtbot, wizard, fake)
    with qtbot.waitSignal(wizard.trainingFinished, timeout=WAIT_MS):
        fake.proceed.set()
    assert wizard.currentId() == RESULTS_PAGE
    use = wizard.button(B.CustomButton1)
    assert use.isVisible() and not use.isEnabled()
    assert wizard.results_page.headline.text() == "Sift keeps the models you have."
    assert wizard.results_page.verdict.text() == fake._result.verdict
    wizard.customButtonClicked.emit(B.CustomButton1.value)  # even if it were clicked somehow
    assert wizard.currentId() == RESULTS_PAGE and fake.adopted == []
    click(qtbot, wizard, B.CustomButton2)  # "Keep the current one"
    assert not wizard.isVisible() and fake.adopted == []


def test_an_unmeasured_cold_start_is_not_adopted(qtbot, monkeypatch, engine, make_wizard, tmp_path):
    unmeasured = FinetuneResult(before=Metrics(dense={}, pipeline={}), after=Metrics(dense={}, pipeline={}),
                                improved=False, verdict="Nothing could be measured.", embedder=None, reranker=None,
                                pairs=500, heldout_queries=0, train_seconds=60.0)
    fake = FakeFinetune(summary(enough=False, pairs=0, queries=0, clicks=0), unmeasured,
                        cold=cold_summary()).install(monkeypatch, engine)
    wizard = make_wizard()
    wizard.data_page.cold_start.setChecked(True)
    qtbot.waitUntil(lambda: wizard.button(B.NextButton).isEnabled(), timeout=WAIT_MS)
    train(qtbot, wizard, fake)
    assert fake.train_options[0].cold_start
    with qtbot.waitSignal(wizard.trainingFinished, timeout=WAIT_MS):
        fake.proceed.set()
    cells = wizard.results_page.tables["pipeline"].cells["ndcg@10"]
    assert [c.text() for c in cells] == ["—", "—", "not measured"]
    assert wizard.results_page.headline.text().startswith("Not measured")
    assert not wizard.button(B.CustomButton1).isEnabled()


def test_using_the_new_model_adopts_its_folder_in_the_background(qtbot, monkeypatch, engine, make_wizard, tmp_path):
    fake = FakeFinetune(summary(enough=True), result(tmp_path)).install(monkeypatch, engine)
    wizard = make_wizard()
    train(qtbot, wizard, fake)
    with qtbot.waitSignal(wizard.trainingFinished, timeout=WAIT_MS):
        fake.proceed.set()
    fake.threads.clear()
    with qtbot.waitSignal(wizard.modelChanged, timeout=WAIT_MS) as changed:
        click(qtbot, wizard, B.CustomButton1)
        assert wizard.currentId() == ADOPT_PAGE
    assert fake.adopted == [("embedder", fake._result.embedder), ("reranker", fake._result.reranker)]
    assert fake.threads and threading.main_thread().name not in fake.threads
    assert changed.args == ["search model and reranker"]
    page = wizard.adopt_page
    qtbot.waitUntil(lambda: page.isComplete(), timeout=WAIT_MS)
    assert "Roll back" in page.outcome.text() and page.bar.value() == page.bar.maximum()
    assert wizard.button(B.FinishButton).isEnabled()


def test_improve_search_in_the_main_window_opens_one_wizard(qtbot, monkeypatch, make_sift, engine):
    FakeFinetune(summary(enough=True)).install(monkeypatch, engine)
    sift = make_sift(engine, index=False)
    qtbot.mouseClick(sift.window.finetune_button, Qt.MouseButton.LeftButton)
    wizard = sift.finetune
    assert wizard is not None and wizard.isVisible()
    qtbot.waitUntil(lambda: wizard.button(B.NextButton).isEnabled(), timeout=WAIT_MS)
    assert sift.show_finetune() is wizard  # asked again while open: the same one comes forward


# -- Settings → Models -----------------------------------------------------------------------------------


def test_settings_models_tab_rolls_back_in_one_click(qtbot, monkeypatch, engine, tmp_path):
    fake = FakeFinetune(summary(enough=True)).install(monkeypatch, engine)
    folder = tmp_path / "sift-ft-20261127-2330"
    card = ModelCard(kind="embedder", base=BUNDLED_MODEL, created="2026-11-27T23:30:00", method="clicks", pairs=300,
                     train_seconds=95.0, before={"dense": BEFORE}, after={"dense": AFTER}, heldout_queries=40,
                     adopted=True)
    infos = [ModelInfo(kind="embedder", name=folder.name, value=str(folder), active=True, previous=False, card=card),
             ModelInfo(kind="embedder", name="all-MiniLM-L6-v2", value=BUNDLED_MODEL, active=False, previous=True)]
    monkeypatch.setattr(engine, "models", lambda: infos, raising=False)
    with settings_dialog(qtbot, engine) as (dialog, tasks):
        dialog.show()
        tab = dialog.models_tab
        with qtbot.waitSignal(tab.loaded, timeout=WAIT_MS):
            dialog.tabs.setCurrentWidget(tab)
        rows = tab.rows["embedder"]
        assert rows["active"].text() == f"In use: {folder.name}"
        assert "nDCG@10 went from 0.400 to 0.450" in rows["card"].text()
        assert "all-MiniLM-L6-v2 (bundled)" in rows["previous"].text()
        assert rows["rollback"].isVisible() and not tab.rows["reranker"]["rollback"].isVisible()
        with qtbot.waitSignal(tab.changed, timeout=WAIT_MS) as changed:
            qtbot.mouseClick(rows["rollback"], Qt.MouseButton.LeftButton)
        assert fake.rolled_back == 1 and changed.args == ["embedder", BUNDLED_MODEL]
        assert threading.main_thread().name not in fake.threads
        assert "model" not in dialog.changes()  # Save will not switch back to what was rolled back from
        qtbot.waitUntil(tasks.is_idle, timeout=WAIT_MS)


def test_adopt_then_roll_back_through_the_real_engine(qtbot, monkeypatch, home, tmp_path):
    """Only training is faked: the switch to the new model and the roll back are the engine's own."""
    folder = (tmp_path / "sift-ft-20261127-2330").resolve()
    folder.mkdir()
    embedders = {BUNDLED_MODEL: FakeEmbedder(model_id="fake@a"), str(folder): FakeEmbedder(model_id="fake@b", ndim=48)}
    engine = Engine.open(home, embedder_factory=lambda value: embedders[value])
    engine.update_config(parse_workers=0)
    engine.index()
    new = FinetuneResult(before=Metrics(dense=dict(BEFORE), pipeline=dict(BEFORE)),
                         after=Metrics(dense=dict(AFTER), pipeline=dict(AFTER)), improved=True,
                         verdict="Search model offered.", embedder=str(folder), reranker=None, pairs=300,
                         heldout_queries=40, train_seconds=9.0)
    fake = FakeFinetune(summary(enough=True), new).install(monkeypatch, engine, names=("finetune_summary", "finetune"))
    tasks = Tasks()
    wizard = FinetuneWizard(engine, tasks)
    qtbot.addWidget(wizard)
    indexer = Indexer(engine, tasks, use_service=False)
    try:
        wizard.show()
        qtbot.waitUntil(lambda: wizard.button(B.NextButton).isEnabled(), timeout=WAIT_MS)
        train(qtbot, wizard, fake)
        with qtbot.waitSignal(wizard.trainingFinished, timeout=WAIT_MS):
            fake.proceed.set()
        with qtbot.waitSignal(wizard.modelChanged, timeout=WAIT_MS):
            click(qtbot, wizard, B.CustomButton1)
        assert engine.config.model == str(folder) and engine.config.previous_model == BUNDLED_MODEL
        assert embedders[str(folder)].texts_embedded > 0 and engine.search("coffee machine")
        assert wizard.adopt_page.bar.value() == wizard.adopt_page.bar.maximum() > 0
        wizard.accept()

        dialog = SettingsDialog(engine, indexer, Prefs(engine.paths.config))
        qtbot.addWidget(dialog)
        dialog.show()
        tab = dialog.models_tab
        with qtbot.waitSignal(tab.loaded, timeout=WAIT_MS):
            dialog.tabs.setCurrentWidget(tab)
        assert tab.rows["embedder"]["active"].text() == f"In use: {folder.name}"
        with qtbot.waitSignal(tab.changed, timeout=WAIT_MS):
            qtbot.mouseClick(tab.rows["embedder"]["rollback"], Qt.MouseButton.LeftButton)
        assert engine.config.model == BUNDLED_MODEL and engine.search("coffee machine")
        assert "model" not in dialog.changes()
        qtbot.waitUntil(tasks.is_idle, timeout=WAIT_MS)
        assert tab.rows["embedder"]["active"].text() == "In use: all-MiniLM-L6-v2 (bundled)"
        dialog.close()
    finally:
        tasks.shutdown()
        engine.close()


def test_deltas_are_recoloured_when_the_theme_turns_dark(qtbot):
    table = MetricsTable("Search by meaning", "the bi-encoder alone")
    qtbot.addWidget(table)
    table.show()
    table.show_metrics(BEFORE, AFTER, measured=True)
    change = table.cells["ndcg@10"][2]
    light = change.styleSheet()
    try:
        theme.apply_theme("dark")
        qtbot.waitUntil(lambda: change.styleSheet() != light, timeout=WAIT_MS)
        assert delta_color("better") in change.styleSheet()  # the dark palette's green
    finally:
        theme.apply_theme("light")


# -- the words and colours ------------------------------------------------------------------------------


def test_small_helpers_read_well():
    assert eta_text(None) == "" and eta_text(12) == "about 10 s left" and eta_text(130) == "about 2 min left"
    assert eta_text(3 * 3600 + 5 * 60) == "about 3 h 05 min left"
    assert (delta_text(0.4, 0.45), delta_kind(0.4, 0.45)) == ("+0.050", "better")
    assert (delta_text(0.4, 0.38), delta_kind(0.4, 0.38)) == ("-0.020", "worse")
    assert (delta_text(0.4, 0.4002), delta_kind(0.4, 0.4002)) == ("±0", "same")
    assert delta_color("same") == "" and delta_color("better") != delta_color("worse")
    progress = FinetuneProgress(stage="training", done=3, total=10, eta_s=None,
                                message="Training the search model: step 3/10")
    assert detail_text(progress) == "Step 3/10"
    assert detail_text(FinetuneProgress(stage="mining", done=1, total=4, eta_s=None, message="Gathering: 1/4")) == \
        "Gathering: 1/4"
    card = ModelCard(kind="embedder", base=BUNDLED_MODEL, created="2026-11-27T23:30:00", method="cold-start",
                     pairs=0, train_seconds=10.0)
    text = describe_card(card)
    assert text.startswith("Trained 27 Nov 2026 from your documents' titles and headings")
    assert "Not measured" in text
    assert describe_card(None) == ""


def test_the_batch_size_steps_over_one(qtbot, monkeypatch, engine, make_wizard):
    FakeFinetune(summary(enough=True)).install(monkeypatch, engine)
    box = make_wizard().options_page.batch_size
    assert box.value() == 0 and box.text() == "Automatic"
    box.stepUp()
    assert box.value() == 2
    box.stepDown()
    assert box.value() == 0


# -- instant learning, first in the wizard ------------------------------------------------------------------


def test_the_wizard_leads_with_instant_learning_measured_and_undone_in_one_click(qtbot, make_engine, docs, tasks):
    from engine.learn import MIN_TUNE_QUERIES
    from tests.helpers import write

    topics = ["boiler pressure gauge", "espresso descaling limescale", "bike tyre pump", "tomato garden staking",
              "tax return receipts", "birds migrating stars"]
    for n, topic in enumerate(topics):
        write(docs / f"note{n}.txt", f"A note about {topic}, and little else.")
    engine = make_engine()
    engine.add_folder(docs)
    engine.index()
    wizard = FinetuneWizard(engine, tasks)
    qtbot.addWidget(wizard)
    wizard.show()
    box = wizard.data_page.learned
    qtbot.waitUntil(lambda: "Open a search result" in box.summary.text(), timeout=WAIT_MS)
    assert not box.measure.isVisible()
    for n in range(MIN_TUNE_QUERIES + 3):
        query = f"{topics[n % len(topics)]} question {n}"
        hits = engine.search(query)
        hit = next(h for h in hits if h.path.endswith(f"note{n % len(topics)}.txt"))
        engine.record_click(query, hit, rank=hits.index(hit) + 1, shown=hits)
    box.refresh()
    qtbot.waitUntil(lambda: "learned 15 searches" in box.summary.text(), timeout=WAIT_MS)
    assert box.measure.isVisible()
    assert not wizard.data_page.isComplete() or wizard.data_page.summary.enough  # the 200-open wall is training's only
    with qtbot.waitSignal(box.measured, timeout=WAIT_MS) as measured:
        qtbot.mouseClick(box.measure, Qt.MouseButton.LeftButton)
    report = measured.args[0]
    assert report.enough and box.table_box.isVisible()
    assert box.cells["refind success@1"][1].text() == f"{report.after['refind success@1']:.3f}"
    assert engine.learning_summary().weights == report.weights
    if box.undo.isVisible():
        with qtbot.waitSignal(box.undone, timeout=WAIT_MS):
            qtbot.mouseClick(box.undo, Qt.MouseButton.LeftButton)
        assert engine.learning_summary().weights == box.previous
    qtbot.waitUntil(tasks.is_idle, timeout=WAIT_MS)
    wizard.close()


def test_settings_forget_what_was_learned_in_one_click(qtbot, make_engine, docs):
    from tests.helpers import write

    write(docs / "note.txt", "The boiler pressure gauge reads low in winter.")
    engine = make_engine()
    engine.add_folder(docs)
    engine.index()
    hits = engine.search("boiler gauge")
    engine.record_click("boiler gauge", hits[0], rank=1, shown=hits)
    with settings_dialog(qtbot, engine) as (dialog, tasks):
        dialog.show()
        assert dialog.learn.isChecked()
        with qtbot.waitSignal(dialog.learningForgotten, timeout=WAIT_MS):
            qtbot.mouseClick(dialog.forget_button, Qt.MouseButton.LeftButton)
        assert engine.learning_summary().opens == 0 and engine.learning_summary().queries == 0
        dialog.learn.setChecked(False)
        assert dialog.changes() == {"learn_from_clicks": False}
        qtbot.waitUntil(tasks.is_idle, timeout=WAIT_MS)


# -- issue 19: what a new user tripped over -------------------------------------------------------------


def test_a_run_that_cannot_be_offered_says_so_beside_the_start_button(qtbot, monkeypatch, engine, make_wizard):
    """Item 3: with no searches to test on, the options page says the model will not be offered, at the button."""
    FakeFinetune(summary(enough=False, pairs=0, queries=0, clicks=0), cold=cold_summary()).install(monkeypatch, engine)
    wizard = make_wizard()
    wizard.data_page.cold_start.setChecked(True)
    qtbot.waitUntil(lambda: wizard.button(B.NextButton).isEnabled(), timeout=WAIT_MS)
    click(qtbot, wizard, B.NextButton)
    page = wizard.options_page
    assert page.unmeasured.isVisible() and "will not offer" in page.unmeasured.text()
    assert wizard.button(B.CommitButton).text() == "Train anyway"
    assert "a few minutes on most computers" not in page.plan.text()


def test_a_measurable_run_offers_plain_start_training(qtbot, monkeypatch, engine, make_wizard):
    FakeFinetune(summary(enough=True)).install(monkeypatch, engine)
    wizard = make_wizard()
    click(qtbot, wizard, B.NextButton)
    assert not wizard.options_page.unmeasured.isVisible()
    assert wizard.button(B.CommitButton).text() == "Start training"


def test_steps_are_stamped_when_they_start_on_the_worker(qtbot, monkeypatch, engine, make_wizard, tmp_path):
    """Item 4: the log's time is when the engine reported the step, not when the GUI got round to it."""
    import time as real_time

    from desktop import finetune_wizard

    clock = {"now": real_time.mktime((2026, 12, 3, 9, 15, 0, 0, 0, -1))}
    monkeypatch.setattr(finetune_wizard.time, "time", lambda: clock["now"])

    class Stamped(FakeFinetune):
        def finetune(self, options, *, on_progress=None, cancel=None):
            clock["now"] += 7 * 60  # the baseline starts seven minutes in
            return super().finetune(options, on_progress=on_progress, cancel=cancel)

    fake = Stamped(summary(enough=True), result(tmp_path)).install(monkeypatch, engine)
    wizard = make_wizard()
    train(qtbot, wizard, fake)
    log = wizard.training_page.log.toPlainText()
    assert f"09:22:00  {STAGES['baseline']}…" in log, log
    with qtbot.waitSignal(wizard.trainingFinished, timeout=WAIT_MS):
        fake.proceed.set()
