"""The app around the window: folders and settings, indexing status, single instance, tray and quick search."""

from __future__ import annotations

import os
import threading
import uuid

import pytest
from PySide6.QtCore import QRect, Qt
from PySide6.QtWidgets import QDialog

from desktop.app import SingleInstance
from desktop.opener import open_commands, reveal_commands
from desktop.settings import index_size
from desktop.status import StatusLine
from engine.embed import FakeEmbedder
from tests.desktop.conftest import WAIT_MS, search
from tests.filemaker import make_encrypted_pdf
from tests.helpers import Engines, write

# -- folders and settings --------------------------------------------------------------------------


def test_settings_add_and_remove_a_folder_and_reindex_in_the_background(qtbot, sift, docs):
    write(docs / "harbour.txt", "The ferry to the island leaves the harbour at seven every morning.")
    engine, window = sift.engine, sift.window
    dialog = sift.show_settings()
    dialog.add_folder(str(docs))
    assert dialog.reindex_note.isVisibleTo(dialog)
    with qtbot.waitSignal(sift.indexer.finished, timeout=WAIT_MS):
        with qtbot.waitSignal(dialog.applied, timeout=WAIT_MS):
            dialog.buttons.button(dialog.buttons.StandardButton.Save).click()
    assert engine.config.folders == (str(docs),)
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert window.stack.currentWidget() is window.home_page  # no longer the samples' welcome
    hits = search(qtbot, window, "ferry harbour")
    assert [os.path.basename(h.path) for h in hits] == ["harbour.txt"]  # the samples are forgotten

    dialog = sift.show_settings()
    dialog.folder_list.setCurrentRow(0)
    dialog.remove_selected_folder()
    with qtbot.waitSignal(sift.indexer.finished, timeout=WAIT_MS):
        with qtbot.waitSignal(dialog.applied, timeout=WAIT_MS):
            dialog.save()
    assert engine.config.folders == () and engine.using_samples
    qtbot.waitUntil(sift.tasks.is_idle, timeout=WAIT_MS)


def test_settings_changes_are_applied_through_the_engine(qtbot, sift):
    engine = sift.engine
    dialog = sift.show_settings()
    dialog.max_mb.setValue(7)
    dialog.include_hidden.setChecked(True)
    dialog.exclude.setPlainText("*.log\nbuild")
    dialog.precision.setCurrentIndex(dialog.precision.findData("f16"))
    # (device and model are left alone: changing them makes the engine drop the injected fake embedder)
    dialog.theme_choice.setCurrentIndex(dialog.theme_choice.findData("dark"))
    assert set(dialog.changes()) == {"max_file_mb", "include_hidden", "exclude", "vector_dtype"}
    with qtbot.waitSignal(sift.indexer.finished, timeout=WAIT_MS):
        with qtbot.waitSignal(dialog.applied, timeout=WAIT_MS):
            dialog.save()
    c = engine.config
    assert (c.max_file_mb, c.include_hidden, c.exclude, c.vector_dtype) == (7, True, ("*.log", "build"), "f16")
    assert sift.prefs.theme == "dark"
    qtbot.waitUntil(sift.tasks.is_idle, timeout=WAIT_MS)
    assert search(qtbot, sift.window, "coffee machine")  # the f16 index was rebuilt and serves


def test_settings_refuse_a_missing_model_folder(qtbot, sift, tmp_path):
    dialog = sift.show_settings()
    dialog.model_choice.setCurrentIndex(1)
    dialog.model_folder.setText(str(tmp_path / "no-such-model"))
    dialog.save()
    assert dialog.isVisible() and "model folder" in dialog.error.text()
    assert sift.engine.config.model.startswith("bundled:")


def test_a_folder_that_cannot_be_added_is_explained(qtbot, sift, docs):
    sift.engine.add_folder(docs)
    dialog = sift.show_settings()
    dialog.add_folder(str(docs / "sub"))  # does not exist
    with qtbot.waitSignal(sift.indexer.statusChanged, timeout=WAIT_MS):
        dialog.save()
    assert dialog.isVisible() and "not a folder" in dialog.error.text()


def test_index_size_estimate_follows_precision():
    sizes = [index_size(10_000, 384, d) for d in ("b1", "i8", "f16", "f32")]
    assert sizes == sorted(sizes) and sizes[1] > 10_000 * 384


# -- indexing status ---------------------------------------------------------------------------------


class GatedEmbedder(FakeEmbedder):
    """Holds each embedding batch until the test lets it go, so progress can be seen mid-run."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def embed_documents(self, texts):
        self.waiting.set()
        assert self.gate.wait(WAIT_MS / 1000), "the test never opened the gate"
        return super().embed_documents(texts)


@pytest.mark.parametrize("use_service", [True, False], ids=["service", "task"])
def test_progress_advances_and_indexing_can_pause_and_resume(qtbot, home, docs, make_sift, use_service):
    for i in range(12):
        write(docs / f"note-{i:02d}.txt", f"Note {i}: the quarterly report for region {i} is due on Friday.")
    embedder = GatedEmbedder()
    engine = Engines(home, embedder=embedder)()
    engine.add_folder(docs)
    try:
        sift = make_sift(engine, index=False, use_service=use_service)
        line: StatusLine = sift.window.status_line
        sift.indexer.start()
        qtbot.waitUntil(embedder.waiting.is_set, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: "of 12 files" in line.label.text(), timeout=WAIT_MS)
        assert line.label.text().startswith("Indexing") and line.bar.isVisibleTo(line)

        sift.show_panel()
        assert sift.panel.pause_button.isEnabled() and sift.panel.pause_button.text() == "Pause"
        sift.panel.pause_button.click()                     # stops after the current batch
        assert sift.indexer.state.paused and sift.panel.pause_button.text() == "Resume"
        embedder.gate.set()  # the batch in hand still finishes: nothing done is thrown away
        qtbot.waitUntil(lambda: not sift.indexer.busy, timeout=WAIT_MS)
        assert line.label.text().startswith("Indexing paused")

        sift.panel.pause_button.click()                     # resume
        qtbot.waitUntil(lambda: line.label.text() == "12 files indexed", timeout=WAIT_MS)
        assert not line.bar.isVisibleTo(line) and sift.panel.headline.text() == "Up to date"
        assert not sift.panel.pause_button.isEnabled()      # nothing left to pause
        sift.shutdown()
    finally:
        engine.close()


def test_status_panel_lists_files_that_failed_with_the_reason_and_retries(qtbot, home, docs, make_engine, make_sift):
    write(docs / "fine.txt", "A perfectly ordinary note about the garden fence.")
    write(docs / "empty.txt", "   \n")
    (docs / "broken.docx").write_bytes(b"this is not a zip file at all")
    make_encrypted_pdf(docs / "payslip.pdf", "salary")
    engine = make_engine()
    engine.add_folder(docs)
    sift = make_sift(engine)
    sift.show_panel()
    panel = sift.panel
    qtbot.waitUntil(lambda: len(panel.problem_paths()) == 3, timeout=WAIT_MS)
    reasons = {os.path.basename(panel.problems.topLevelItem(i).data(0, Qt.ItemDataRole.UserRole)):
               panel.problems.topLevelItem(i).text(1) for i in range(panel.problems.topLevelItemCount())}
    assert set(reasons) == {"empty.txt", "broken.docx", "payslip.pdf"}
    assert reasons["empty.txt"] == "Skipped: no text in it"  # skipped, not a failure
    assert reasons["broken.docx"].startswith("Damaged")   # no parser library's internals
    assert "2 could not be read · 1 skipped (no text)" in sift.window.status_line.label.text()
    assert panel.problems_title.text() == "Files Sift could not read (2) and files skipped because they hold no text (1)"
    # The reason gets the room (shown whole), and what a wider panel adds.
    qtbot.waitUntil(lambda: panel.problems.isVisible(), timeout=WAIT_MS)
    metrics = panel.problems.fontMetrics()
    assert all(panel.problems.columnWidth(1) >= metrics.horizontalAdvance(why) + 8 for why in reasons.values())
    narrow = panel.problems.columnWidth(1)
    panel.resize(panel.width() - 120, panel.height())
    qtbot.waitUntil(lambda: panel.problems.columnWidth(1) <= narrow - 100, timeout=WAIT_MS)

    write(docs / "empty.txt", "Now the file has words in it about the garden gate.")
    os.utime(docs / "empty.txt", (1, 1))  # an mtime the catalog has seen cannot hide the change either
    with qtbot.waitSignal(sift.indexer.finished, timeout=WAIT_MS):
        panel.retry_all_button.click()
    qtbot.waitUntil(lambda: sorted(os.path.basename(p) for p in panel.problem_paths()) == ["broken.docx", "payslip.pdf"],
                    timeout=WAIT_MS)

    item = next(panel.problems.topLevelItem(i) for i in range(panel.problems.topLevelItemCount())
                if panel.problems.topLevelItem(i).text(0) == "broken.docx")
    item.setSelected(True)
    panel.reveal_button.click()
    qtbot.waitUntil(lambda: sift.actions.opener.revealed == [str(docs / "broken.docx")], timeout=WAIT_MS)


# -- single instance, tray, quick search ------------------------------------------------------------


def test_a_second_launch_focuses_the_first(qtbot, sift):
    key = f"sift-test-{uuid.uuid4().hex[:12]}"
    first = SingleInstance(key)
    assert not first.notify_running()  # nobody there yet
    assert first.listen()
    first.activated.connect(sift.activate)
    sift.window.hide()
    try:
        with qtbot.waitSignal(first.activated, timeout=WAIT_MS) as blocker:
            assert SingleInstance(key).notify_running("show")
        assert blocker.args == ["show"]
        assert sift.window.isVisible()
        with qtbot.waitSignal(first.activated, timeout=WAIT_MS):
            assert SingleInstance(key).notify_running("quick")
        assert sift.quick.isVisible()
    finally:
        first.close()


def test_quick_search_popup_opens_the_result_and_records_the_click(qtbot, sift, opener):
    quick = sift.quick
    sift.toggle_quick(None)
    assert quick.isVisible() and quick.windowFlags() & Qt.WindowType.FramelessWindowHint
    with qtbot.waitSignal(quick.resultsShown, timeout=WAIT_MS):
        qtbot.keyClicks(quick.field, "limescale")
    assert quick.model.rowCount() and quick.list.isVisibleTo(quick)
    top = quick.model.hits[0]
    with qtbot.waitSignal(sift.actions.opened, timeout=WAIT_MS):
        qtbot.keyClick(quick.field, Qt.Key.Key_Return)
    assert not quick.isVisible()
    assert opener.opened == [(top.path, top.page if top.kind == "pdf" else None)]
    assert [(c.query, c.rank) for c in sift.engine.catalog.clicks()] == [("limescale", 1)]

    sift.toggle_quick(QRect(500, 0, 24, 24))  # near a tray icon at the top of the screen
    assert quick.isVisible() and quick.field.text() == "limescale"
    qtbot.keyClick(quick.field, Qt.Key.Key_Escape)
    assert not quick.isVisible()


def test_quick_search_popup_shows_the_divider_and_the_good_count(qtbot, sift, opener):
    quick = sift.quick
    sift.toggle_quick(None)
    with qtbot.waitSignal(quick.resultsShown, timeout=WAIT_MS):
        qtbot.keyClicks(quick.field, "remove limescale from the coffee machine")
    model = quick.model
    good = len(model.good)
    assert good and model.weak and model.is_divider(good) and model.rowCount() == good + 1
    assert quick.hint.text().startswith(f"{good} good match")
    height = quick.list.height()
    quick._open(good)  # Enter on the divider: the loosely related ones appear, the popup grows
    assert model.rowCount() == good + 1 + len(model.weak) and quick.isVisible()
    assert quick.list.height() >= height
    with qtbot.waitSignal(quick.resultsShown, timeout=WAIT_MS):
        quick.field.setText("xyzzyqqq flurbgast")
    assert quick.hint.text() == "No good matches for \u201cxyzzyqqq flurbgast\u201d; the closest:"
    assert not model.good and model.rowCount() == len(model.weak) > 0
    with qtbot.waitSignal(quick.resultsShown, timeout=WAIT_MS):
        quick.field.setText("coffee type:epub")
    assert quick.hint.text() == "No documents match these filters."


def test_quick_search_enter_before_results_opens_the_best_one(qtbot, sift, opener):
    quick = sift.quick
    sift.toggle_quick(None)
    with qtbot.waitSignal(sift.actions.opened, timeout=WAIT_MS):
        quick.field.setText("sourdough starter")  # no pause for the debounce
        qtbot.keyClick(quick.field, Qt.Key.Key_Return)
    assert os.path.basename(opener.opened[0][0]) == "sourdough-bread.md"


def test_alt_enter_shows_all_results_in_the_main_window(qtbot, sift):
    quick, window = sift.quick, sift.window
    window.hide()
    sift.toggle_quick(None)
    quick.field.setText("compost")
    with qtbot.waitSignal(window.resultsShown, timeout=WAIT_MS, check_params_cb=lambda q, n: q == "compost"):
        qtbot.keyClick(quick.field, Qt.Key.Key_Return, Qt.KeyboardModifier.AltModifier)
    assert window.isVisible() and not quick.isVisible() and window.query.text() == "compost"


def test_tray_menu_searches_pauses_and_closing_keeps_running(qtbot, engine, make_sift):
    sift = make_sift(engine, use_tray=True)
    tray = sift.tray
    assert tray is not None and not sift.window.tray_note.isVisible()
    labels = [a.text() for a in tray.menu.actions() if a.text()]
    assert labels == ["Quick search…", "Open Sift", "Pause indexing", "Indexing status…", "Quit Sift"]
    tray.search_action.trigger()
    assert sift.quick.isVisible()
    tray.status_action.trigger()
    assert sift.panel is not None and sift.panel.isVisible()
    assert not tray.pause_action.isEnabled()  # nothing is indexing
    sift.prefs.told_about_tray = True  # no balloon message in a test
    sift.window.close()                 # keeps running in the tray, indexing goes on
    assert not sift.window.isVisible() and not sift.tasks._closed
    tray.show_action.trigger()
    assert sift.window.isVisible()


def test_without_a_tray_the_app_says_so_and_closing_quits(qtbot, sift, monkeypatch):
    assert sift.tray is None and sift.window.tray_note.isVisibleTo(sift.window)
    assert "No system tray" in sift.window.tray_note.text()
    dialog = sift.show_settings()
    assert not dialog.keep_in_tray.isEnabled()
    dialog.close()
    quits = []
    monkeypatch.setattr(sift, "quit", lambda: quits.append(True))
    sift.window.close()
    assert quits == [True]


# -- opening at the page ----------------------------------------------------------------------------


def _which(*found):
    return lambda name: f"/usr/bin/{name}" if name in found else None


def test_open_commands_open_pdfs_at_the_page_where_the_viewer_can():
    pdf = "/docs/manual.pdf"
    evince = open_commands(pdf, 3, platform="linux", which=_which("xdg-open", "evince"),
                           default_viewer=lambda: "evince")
    assert evince == [["evince", "--page-label=3", pdf], ["xdg-open", pdf]]
    okular = open_commands(pdf, 7, platform="linux", which=_which("xdg-open"), default_viewer=lambda: "okular")
    assert okular[0] == ["okular", "-p", "7", pdf]
    unknown = open_commands(pdf, 3, platform="linux", which=_which("xdg-open"), default_viewer=lambda: None)
    assert unknown == [["xdg-open", pdf]]  # falls back to the default application
    assert open_commands("/docs/notes.md", None, platform="linux", which=_which("xdg-open")) == [
        ["xdg-open", "/docs/notes.md"]]
    mac = open_commands(pdf, 2, platform="darwin", which=_which())
    assert mac[0][0] == "osascript" and mac[0][-2:] == [pdf, "2"] and mac[-1] == ["open", pdf]
    win = open_commands(pdf, 4, platform="win32", which=_which("SumatraPDF"))
    assert win == [["/usr/bin/SumatraPDF", "-reuse-instance", "-page", "4", pdf]]
    assert open_commands(pdf, 4, platform="win32", which=_which()) == []  # os.startfile then


def test_reveal_commands_select_the_file():
    assert reveal_commands("/a/b.pdf", platform="darwin") == [["open", "-R", "/a/b.pdf"]]
    assert reveal_commands("/a/b.pdf", platform="linux", which=_which("dbus-send"))[0][-2] == "array:string:file:///a/b.pdf"
