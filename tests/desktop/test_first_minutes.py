"""What a new user trips over in the first minutes (issue 19): selection, jumping, states, layout, keys."""

from __future__ import annotations

import os
from dataclasses import replace

from PySide6.QtCore import Qt

from engine import Engine, indexer
from tests.desktop.conftest import WAIT_MS, search
from tests.helpers import write

LIBRARY = {
    "law-library.txt": "Law books classification: the law library shelves law books by jurisdiction. "
                       "Classification of law books follows the Dewey decimal classification at 340.",
    "dewey-decimal.txt": "The Dewey decimal classification divides knowledge into ten classes. "
                         "Dewey decimal classification numbers place every book on its shelf.",
    "decimal-numbers.txt": "Decimal numbers and Dewey decimal classification, the decimal point explained.",
    "melvil-dewey.txt": "Melvil Dewey wrote the Dewey decimal classification in 1876.",
    "shelving.txt": "Shelving books by the decimal classification of Dewey keeps libraries in order.",
}


def _library(home, docs, make_sift, **kw):
    for name, text in LIBRARY.items():
        write(docs / name, text)
    engine = Engine.open(home, embedder=kw.pop("embedder", None) or _fake())
    engine.update_config(parse_workers=0)
    engine.add_folder(docs)
    return engine, make_sift(engine, use_service=False, **kw)


def _fake():
    from engine.embed import FakeEmbedder

    return FakeEmbedder()


def test_a_new_query_selects_its_best_result_not_the_previous_document(qtbot, home, docs, make_sift):
    """Item 1: the previous query's selected document, further down the new results, is not selected."""
    engine, sift = _library(home, docs, make_sift)
    try:
        window = sift.window
        first = search(qtbot, window, "law books classification")
        assert os.path.basename(first[0].path) == "law-library.txt"
        assert window.results.currentIndex().row() == 0
        with qtbot.waitSignal(window.resultsShown, timeout=WAIT_MS,
                              check_params_cb=lambda q, n: q == "Dewey decimal classification"):
            window.query.selectAll()          # select all, paste: one change, never an empty box
            window.query.insert("Dewey decimal classification")
        second = window.model.hits
        rank = [h.path for h in second].index(first[0].path)
        assert rank > 0, "the test needs the old choice below the top of the new results"
        assert window.results.currentIndex().row() == 0
        assert window.current_hit().path == second[0].path
        assert window.results.verticalScrollBar().value() == 0
        assert window.preview.hit is not None and window.preview.hit.path == second[0].path
        sift.shutdown()
    finally:
        engine.close()


def test_better_results_never_follow_a_row_the_user_did_not_choose(qtbot, home, docs, make_sift, monkeypatch):
    """Item 2: the same query's new results keep row 0 unless the user moved; then the choice stays on its document."""
    engine, sift = _library(home, docs, make_sift)
    try:
        window = sift.window
        hits = search(qtbot, window, "Dewey decimal classification")
        real = engine.search_detailed

        def reversed_order(query, **kw):
            result = real(query, **kw)
            return replace(result, hits=tuple(reversed(result.hits)))

        monkeypatch.setattr(engine, "search_detailed", reversed_order)
        with qtbot.waitSignal(window.resultsShown, timeout=WAIT_MS):
            window.search.search_now()
        flipped = list(reversed(hits))  # shown good matches first, then the loosely related
        flipped = [h for h in flipped if h.match == "good"] + [h for h in flipped if h.match != "good"]
        assert [h.path for h in window.model.hits] == [h.path for h in flipped]
        assert window.results.currentIndex().row() == 0, "an automatic selection is not followed"

        qtbot.keyClick(window.query, Qt.Key.Key_Down)  # the user chooses row 1
        chosen = window.current_hit().path
        with qtbot.waitSignal(window.resultsShown, timeout=WAIT_MS):
            window.search.search_now()
        assert window.current_hit().path == chosen   # the user's choice stays on its document
        sift.shutdown()
    finally:
        engine.close()


def test_indexing_does_not_reorder_the_list_under_someone_moving_through_it(qtbot, home, docs, make_sift):
    """Item 2: a batch committing while the user moves through results leaves the list; F5 refreshes."""
    engine, sift = _library(home, docs, make_sift)
    try:
        window = sift.window
        search(qtbot, window, "Dewey decimal classification")
        qtbot.keyClick(window.query, Qt.Key.Key_Down)
        qtbot.keyClick(window.query, Qt.Key.Key_Down)
        shown = list(window.model.hits)
        chosen = window.current_hit()
        write(docs / "more-dewey.txt", "Dewey decimal classification Dewey decimal classification again.")
        with qtbot.waitSignal(sift.indexer.finished, timeout=WAIT_MS):
            sift.indexer.start()
        qtbot.waitUntil(sift.tasks.is_idle, timeout=WAIT_MS)
        assert window.model.hits == shown and window.current_hit() == chosen
        assert "F5" in window.count_label.text()
        with qtbot.waitSignal(window.resultsShown, timeout=WAIT_MS):
            qtbot.keyClick(window.query, Qt.Key.Key_F5)
        assert "more-dewey.txt" in {os.path.basename(h.path) for h in window.model.hits}
        assert window.current_hit().path == chosen.path
        sift.shutdown()
    finally:
        engine.close()


class FirstBatchEmbedder:
    """A fake embedder that lets the first `free` embedding calls through, then holds the rest at a gate."""

    def __init__(self, free: int = 1) -> None:
        import threading

        from engine.embed import FakeEmbedder

        self._fake = FakeEmbedder()
        self.free = free
        self.gate = threading.Event()
        self.held = threading.Event()

    def __getattr__(self, name):
        return getattr(self._fake, name)

    def embed_documents(self, texts):
        if self.free > 0:
            self.free -= 1
        else:
            self.held.set()
            assert self.gate.wait(WAIT_MS / 1000), "the test never opened the gate"
        return self._fake.embed_documents(texts)


def test_the_panel_and_status_bar_follow_a_run_live_and_agree(qtbot, home, docs, make_sift, monkeypatch):
    """Items 5, 6: problems appear in the open panel as their batch commits; the count moves per file read."""
    monkeypatch.setattr(indexer, "BATCH_FILES", 64)
    monkeypatch.setattr(indexer, "BATCH_SECONDS", 600.0)  # batches close by count only, however slow the machine
    monkeypatch.setattr(indexer, "FIRST_BATCH_CHUNKS", indexer.BATCH_CHUNKS)  # and the first one too
    (docs / "a-broken.docx").write_bytes(b"this is not a zip file at all")
    for i in range(70):
        write(docs / f"note-{i:02d}.txt", f"Note {i}: the quarterly report for region {i} is due on Friday.")
    embedder = FirstBatchEmbedder(free=1)
    engine = Engine.open(home, embedder=embedder)
    engine.update_config(parse_workers=0)
    engine.add_folder(docs)
    try:
        sift = make_sift(engine, index=False, use_service=False)
        sift.show_panel()
        panel, line = sift.panel, sift.window.status_line
        qtbot.waitUntil(lambda: panel.problems_title.text() == "Files Sift could not read (0)", timeout=WAIT_MS)
        sift.indexer.start()
        qtbot.waitUntil(embedder.held.is_set, timeout=WAIT_MS)  # batch 1 (64 files) committed, batch 2 held
        # the panel, left open, lists the failed file while the run goes on
        qtbot.waitUntil(lambda: panel.problem_paths() == [str(docs / "a-broken.docx")], timeout=WAIT_MS)
        assert sift.indexer.state.running
        assert panel.problems_title.text() == "Files Sift could not read (1)" and not panel.no_problems.isVisible()
        assert panel.failed_fig.value.text() == "1"
        # every file is read though only the first batch is committed: the count says so
        qtbot.waitUntil(lambda: line.label.text().startswith("Indexing 71 of 71 files"), timeout=WAIT_MS)
        assert sift.indexer.state.progress.files_done == 64
        assert panel.done_fig.value.text() == "71" and panel.queued_fig.value.text() == "0"
        assert "left" not in line.label.text()  # seconds into the run, no estimate is trusted yet
        with qtbot.waitSignal(sift.indexer.finished, timeout=WAIT_MS):
            embedder.gate.set()
        qtbot.waitUntil(lambda: line.label.text() == "70 files indexed · 1 could not be read", timeout=WAIT_MS)
        assert not panel.pause_button.isEnabled()  # nothing to pause now
        sift.shutdown()
    finally:
        engine.close()


def test_the_example_query_waits_for_the_samples_instead_of_finding_nothing(qtbot, home, make_sift):
    """Item 11: while the samples are read, an example query says so, then shows its results."""
    embedder = FirstBatchEmbedder(free=0)
    engine = Engine.open(home, embedder=embedder)
    engine.update_config(parse_workers=0)
    try:
        sift = make_sift(engine, index=False, use_service=False)
        window = sift.window
        assert engine.using_samples
        sift.indexer.start()
        qtbot.waitUntil(embedder.held.is_set, timeout=WAIT_MS)
        button = window.welcome_page.findChildren(type(window.settings_button))[1]
        with qtbot.waitSignal(window.resultsShown, timeout=WAIT_MS):
            button.click()
        assert window.stack.currentWidget() is window.empty_page
        assert window.empty_title.text().startswith("Sift is still reading its samples")
        assert "Nothing found" not in window.empty_title.text()
        qtbot.waitUntil(lambda: " of 14" in window.empty_title.text(), timeout=WAIT_MS)
        with qtbot.waitSignal(window.resultsShown, timeout=WAIT_MS, check_params_cb=lambda q, n: n > 0):
            embedder.gate.set()
        assert window.stack.currentWidget() is window.splitter
        sift.shutdown()
    finally:
        engine.close()


def test_problem_reasons_read_like_a_person_wrote_them():
    """Item 10: no parser library's internals, no doubled words; files without text are skipped, not failed."""
    from desktop.status import problems_text
    from engine import FileStatus, Problem

    pypdf = Problem("/d/a.pdf", FileStatus.CORRUPT, "this PDF could not be read: The filter name /A85 is "
                                                      "deprecated and has been removed in pypdf 7.0.0")
    scan = Problem("/d/scan.pdf", FileStatus.NO_TEXT, "no text layer: probably scanned, needs OCR")
    crashed = Problem("/d/b.pdf", FileStatus.CORRUPT, "the parser failed: KeyError('/Root')")
    locked = Problem("/d/c.pdf", FileStatus.ENCRYPTED, "this PDF is password-protected; Sift cannot read it "
                                                        "without the password")
    assert pypdf.plain_reason == "Damaged, or in a form Sift cannot read"
    assert crashed.plain_reason == "Damaged, or in a form Sift cannot read"
    assert scan.plain_reason == "Skipped: a scan with no text layer, needs OCR"
    assert locked.plain_reason == "Encrypted: needs its password"
    assert problems_text([pypdf, scan, crashed]) == " · 2 could not be read · 1 skipped, need OCR"
    assert problems_text([scan]) == " · 1 skipped, need OCR"


def test_the_window_fits_the_screen_and_remembers_its_layout(qtbot, engine, make_sift):
    """Item 7: never larger than the screen's free area; size, place and splitter come back; narrow stacks."""
    from PySide6.QtGui import QGuiApplication

    from desktop.app import SiftApp
    from desktop.prefs import Prefs

    sift = make_sift(engine)
    window = sift.window
    area = QGuiApplication.primaryScreen().availableGeometry()
    sift.show_window()
    search(qtbot, window, "coffee machine")   # the results and the preview are on screen
    assert area.contains(window.frameGeometry()), (window.frameGeometry(), area)
    assert window.width() <= area.width() and window.height() <= area.height()

    window.resize(min(area.width(), 780), min(area.height(), 520))  # narrow: the preview goes below the list
    assert window.splitter.orientation() == Qt.Orientation.Vertical
    window.splitter.setSizes([300, 200])
    sizes = window.splitter.sizes()
    sift.save_layout()
    again = SiftApp(engine, use_tray=False, prefs=Prefs(engine.paths.config))
    qtbot.addWidget(again.window)
    try:
        assert again.window.size() == window.size()
        again.window.stack.setCurrentWidget(again.window.splitter)
        again.window.show()
        qtbot.waitExposed(again.window)
        assert again.window.splitter.orientation() == Qt.Orientation.Vertical
        restored = again.window.splitter.sizes()  # (its banner, "getting the model ready", takes some height)
        assert abs(restored[0] / sum(restored) - sizes[0] / sum(sizes)) < 0.03, (restored, sizes)
    finally:
        again.shutdown()

    window.resize(1000, 520)
    assert window.splitter.orientation() == Qt.Orientation.Horizontal


def test_fit_rect_shrinks_and_moves_a_window_into_the_screen():
    from PySide6.QtCore import QRect

    from desktop.mainwindow import fit_rect

    area = QRect(0, 0, 800, 500)  # 1600x1000 at scale 2
    assert fit_rect(QRect(100, 100, 2200, 1440), area) == QRect(0, 0, 800, 500)
    assert fit_rect(QRect(700, 450, 400, 300), area) == QRect(400, 200, 400, 300)


def test_tab_reaches_every_control_in_screen_order_and_f1_lists_the_shortcuts(qtbot, sift):
    """Item 8: filters, both buttons and the preview's buttons take focus in order; F1 shows the keys."""
    window = sift.window
    search(qtbot, window, "coffee machine")
    sift.show_window()
    qtbot.waitUntil(lambda: window.isActiveWindow() or True)
    window.query.setFocus()
    expected = [window.finetune_button, window.settings_button, window.type_filter, window.date_filter,
                window.results, window.preview.open_button, window.preview.reveal_button,
                window.preview.copy_button, window.query]
    reached = []
    for _ in expected:
        window.focusNextChild()
        reached.append(window.focusWidget())
    assert reached == expected   # (the folder filter is hidden with fewer than two folders)
    dialog = window.show_shortcuts()
    assert dialog.isVisible() and "F1" in dialog.findChildren(type(window.count_label))[0].text()
    assert "Ctrl+I" in dialog.findChildren(type(window.count_label))[0].text()
    dialog.close()
    window.activateWindow()
    window.query.setFocus()
    with qtbot.waitSignal(window.panelRequested, timeout=WAIT_MS):   # the indexing panel from the keyboard
        qtbot.keyClick(window.query, Qt.Key.Key_I, Qt.KeyboardModifier.ControlModifier)
    with qtbot.waitSignal(window.settingsRequested, timeout=WAIT_MS):
        qtbot.keyClick(window.query, Qt.Key.Key_Comma, Qt.KeyboardModifier.ControlModifier)


def test_the_tiny_launcher_shows_the_running_apps_popup_without_importing_qt(qtbot, sift, home):
    """Item 9: `sift-desktop --quick` messages the running app over its socket; no Qt, no engine in the launcher."""
    import subprocess
    import sys

    from desktop.app import SingleInstance

    instance = SingleInstance(SingleInstance.key_for(sift.engine.paths))
    assert instance.listen()
    instance.activated.connect(sift.activate)
    code = ("import sys\nfrom desktop.launch import main\n"
            f"code = main(['sift-desktop', '--quick', '--home', {str(home)!r}])\n"
            "print(sorted(m for m in ('PySide6', 'engine', 'numpy', 'torch') if m in sys.modules))\n"
            "sys.exit(code)\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    try:
        launcher = subprocess.Popen([sys.executable, "-c", code], cwd=root, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        qtbot.waitUntil(sift.quick.isVisible, timeout=WAIT_MS)
        out, err = launcher.communicate(timeout=WAIT_MS / 1000)
        assert launcher.returncode == 0, err
        assert out.strip() == "[]", out
    finally:
        instance.close()
        sift.quick.dismiss()


def test_an_empty_phrase_is_an_empty_query(qtbot, sift):
    """Item 12: typing "" (an empty phrase) shows the start page, as an empty box does."""
    window = sift.window
    search(qtbot, window, "coffee")
    with qtbot.waitSignal(window.resultsShown, timeout=WAIT_MS, check_params_cb=lambda q, n: q == "" and n == 0):
        window.query.setText('""')
    assert window.stack.currentWidget() is window.welcome_page
    assert not window.search.busy


def test_more_results_than_shown_say_the_total_and_show_more(qtbot, home, docs, make_sift):
    """Item 12: the result cap says how many there are, and Show more shows the next ones."""
    for i in range(40):
        write(docs / f"boiler-{i:02d}.txt", f"Boiler note {i}: bleed the radiators and check the boiler pressure.")
    engine = Engine.open(home, embedder=_fake())
    engine.update_config(parse_workers=0)
    engine.add_folder(docs)
    try:
        sift = make_sift(engine, use_service=False)
        window = sift.window
        hits = search(qtbot, window, "boiler radiators")
        assert len(hits) == 30 and window.search.total == 40
        # the good-match count first (issue 15), then how many of the documents found are shown
        assert window.count_label.text().endswith(" · 30 of 40 documents") and window.more_button.isVisibleTo(window)
        with qtbot.waitSignal(window.resultsShown, timeout=WAIT_MS):
            window.more_button.click()
        assert len(window.model.hits) == 40 and " of " not in window.count_label.text()
        assert not window.more_button.isVisibleTo(window)
        search(qtbot, window, "boiler pressure")   # a new query starts at 30 again
        assert len(window.model.hits) == 30
        sift.shutdown()
    finally:
        engine.close()


def test_small_things_a_user_expects(qtbot, sift, engine, monkeypatch):
    """Item 12: no stale samples hint once folders exist; the tray says indexing goes on only when it does;
    stop words are not marked; the popup shows its sixth row whole."""
    from desktop.highlight import term_spans
    from desktop.quick import MAX_ROWS

    text = "What is the notice period to end the lease?"
    assert [text[s:e] for s, e in term_spans(text, "what is the notice period, not the end")] == \
        ["notice", "period", "end"]

    dialog = sift.show_settings()
    assert dialog.samples_note.text().startswith("Until you add a folder")
    dialog.add_folder(str(engine.paths.data.parent))
    assert not dialog.samples_note.text().startswith("Until you add a folder")
    dialog.close()

    notes = []

    class Tray:
        def notify(self, title, text):
            notes.append(text)

        def hide(self):
            pass

    monkeypatch.setattr(sift, "tray", Tray())
    sift.prefs.keep_in_tray = True
    sift.window.show()
    sift.window.close()
    assert notes and "Indexing goes on" not in notes[0]   # nothing is indexing

    quick = sift.quick
    quick.popup()
    with qtbot.waitSignal(quick.resultsShown, timeout=WAIT_MS):
        qtbot.keyClicks(quick.field, "the")
    assert quick.model.rowCount() == MAX_ROWS
    total = sum(quick.list.sizeHintForRow(i) for i in range(quick.model.rowCount()))
    assert quick.list.height() >= total, "the last row is cut off"
    quick.dismiss()


def test_the_welcome_page_shows_every_paragraph_whole_in_a_small_window(qtbot, sift):
    """At scale 2 on a 1600x1000 screen the window is about 800x500: the welcome's words wrap and
    scroll, never squeezed to one line each."""
    from PySide6.QtWidgets import QLabel

    window = sift.window
    sift.show_window()
    window.resize(window.minimumSize())
    qtbot.waitUntil(lambda: window.size() == window.minimumSize(), timeout=WAIT_MS)
    assert window.stack.currentWidget() is window.welcome_page
    labels = [label for label in window.welcome_page.findChildren(QLabel) if label.text()]
    assert len(labels) >= 3
    for label in labels:
        assert label.height() >= label.heightForWidth(label.width()), label.text()[:40]


def test_a_long_status_message_is_cut_to_the_window_and_kept_whole_in_its_tooltip(qtbot, sift):
    """A long reason (a damaged catalog's path, an error) neither widens the window nor runs off its edge."""
    from desktop.indexing import IndexState

    window = sift.window
    sift.show_window()
    window.resize(700, 500)
    error = ("The catalog at /home/someone/.local/share/sift/catalog.sqlite3 is damaged (database disk image "
             "is malformed); run `sift rebuild` to index your folders again into a new catalog")
    window.status_line.update_state(IndexState(error=error))
    qtbot.waitUntil(lambda: window.width() <= 700, timeout=WAIT_MS)
    assert window.minimumSizeHint().width() <= 700
    label = window.status_line.label
    assert label.text().endswith("new catalog") and error in label.toolTip()
    shown = label.shown_text()
    assert shown.endswith("…") and label.fontMetrics().horizontalAdvance(shown) <= label.contentsRect().width()
    assert label.geometry().right() <= window.statusBar().width()
    window.show_message("Could not open " + error)
    bar = window.statusBar()
    assert bar.currentMessage().endswith("…") and bar.toolTip() == "Could not open " + error
    assert bar.fontMetrics().horizontalAdvance(bar.currentMessage()) < bar.width()
    bar.clearMessage()
    assert bar.toolTip() == ""


def test_identical_files_are_one_result_that_says_also_at(qtbot, home, docs, make_sift):
    """Item 12: three copies of a manual in three folders are one row, whose second line names the others."""
    from PySide6.QtCore import Qt

    from desktop.results import copies_text
    from tests.filemaker import make_pdf

    for folder in ("manuals", "backup", "old"):
        (docs / folder).mkdir()
        make_pdf(docs / folder / "espresso.pdf", ["Descale the espresso machine with citric acid every month."])
    write(docs / "bike.txt", "Pump the road bike tyres to six bar.")
    engine = Engine.open(home, embedder=_fake())
    engine.update_config(parse_workers=0)
    engine.add_folder(docs)
    sift = make_sift(engine, use_service=False)
    try:
        window = sift.window
        hits = search(qtbot, window, "descale the espresso machine")
        manuals = [h for h in hits if h.path.endswith("espresso.pdf")]
        assert len(manuals) == 1 and len(manuals[0].duplicates) == 2
        row = [h.path for h in window.model.hits].index(manuals[0].path)
        text = copies_text(manuals[0])
        assert text.startswith("also at ") and text.endswith(" and 1 more")
        tip = window.model.data(window.model.index(row), Qt.ItemDataRole.ToolTipRole)
        assert all(f"also at {path}" in tip for path in manuals[0].duplicates)
        sift.shutdown()
    finally:
        engine.close()


def test_a_short_preview_scrolls_to_the_passage_not_the_text_before_it(qtbot, sift, monkeypatch):
    """At scale 2 the preview sits under the list, a few lines high: the matched passage is what shows,
    not the paragraph before it."""
    import desktop.preview
    from desktop.context import Context

    before = " ".join(f"Line {i} of the warranty terms covers ordinary wear and the usual exclusions." for i in range(8))
    passage = "To descale the espresso machine, dissolve citric acid in warm water and run it through twice."
    text = f"{before}\n\n{passage}\n\nAfterwards rinse the tank."
    start = text.index(passage)
    monkeypatch.setattr(desktop.preview, "passage_context",
                        lambda engine, hit: Context(text, (start, start + len(passage)), None, True))
    window = sift.window
    sift.show_window()
    body = window.preview.body
    body.setFixedHeight(4 * body.fontMetrics().lineSpacing())
    with qtbot.waitSignal(window.preview.contextShown, timeout=WAIT_MS):
        search(qtbot, window, "remove limescale from the coffee machine")
    cursor = body.document().find("To descale the espresso")
    assert not cursor.isNull()
    cursor.setPosition(cursor.selectionStart())
    qtbot.waitUntil(lambda: 0 <= body.cursorRect(cursor).top()
                    and body.cursorRect(cursor).bottom() <= body.viewport().height(), timeout=2000)
