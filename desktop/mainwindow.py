"""The main window: search box, filters, results by document, preview, and designed empty/loading/error states."""

from __future__ import annotations

from datetime import date, timedelta

from PySide6.QtCore import QEvent, QObject, QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QGuiApplication, QKeyEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from desktop import theme
from desktop.indexing import Indexer
from desktop.opener import ResultActions
from desktop.preview import PreviewPane
from desktop.results import ResultsModel, ResultsView, count_text
from desktop.search import SearchController
from desktop.status import StatusLine, reading_text
from desktop.tasks import Tasks
from engine import Engine, Hit
from engine.search import nothing_found

SAMPLE_QUERIES = (
    "remove limescale from the coffee machine",
    "what tyre pressure for a road bike",
    "how do birds find their way",
    "notice period to end the lease",
)
TYPES = (("All types", ""), ("PDF", "pdf"), ("Word", "docx"), ("PowerPoint", "pptx"), ("Excel", "xlsx"),
         ("Text and Markdown", "text"), ("Web pages", "html"), ("Email", "email"), ("E-books", "epub"),
         ("OpenDocument", "odf"))
DATES = (("Any time", 0), ("Past week", 7), ("Past month", 31), ("Past year", 365))
LOADING_DELAY_MS = 250  # show "Searching…" only when a search is slow enough to notice
WINDOW_SIZE = QSize(1100, 720)   # the first start's size, when the screen has room for it
NARROW_PX = 900                  # narrower than this, the preview goes below the list
SCREEN_SHARE = 0.92              # a first window takes at most this share of the screen's free area
SHORTCUTS = (
    ("Type", "search as you type; the search box has the keyboard"),
    ("↑ ↓  Page Up/Down", "move through the results"),
    ("Enter", "open the document at the passage's page"),
    ("Ctrl+Enter", "show it in its folder"),
    ("Ctrl+C", "copy its path"),
    ("Esc", "clear the search"),
    ("Ctrl+L  Ctrl+F", "back to the search box"),
    ("F5", "search again (after new files were indexed)"),
    ("Tab  Shift+Tab", "buttons, filters, results, the preview's buttons"),
    ("Ctrl+,", "folders and settings"),
    ("Ctrl+I", "indexing status and the files that could not be read"),
    ("F1", "this list"),
)


def fit_rect(wanted: QRect, area: QRect) -> QRect:
    """`wanted`, shrunk to fit inside `area` and moved into it (a window never starts off-screen)."""
    size = wanted.size().boundedTo(area.size())
    rect = QRect(wanted.topLeft(), size)
    rect.moveLeft(max(area.left(), min(rect.left(), area.right() - size.width() + 1)))
    rect.moveTop(max(area.top(), min(rect.top(), area.bottom() - size.height() + 1)))
    return rect


def filter_words(kind: str, folder: str, days: int, *, today: date | None = None) -> str:
    """The engine's filter syntax for the filter bar's choices."""
    words = []
    if kind:
        words.append(f"type:{kind}")
    if folder:
        words.append(f'in:"{folder}"')
    if days:
        since = (today or date.today()) - timedelta(days=days)
        words.append(f"after:{since.isoformat()}")
    return " ".join(words)


def files_seen_of(p) -> str:
    """'3 of 14': files read of the run's total, as the status bar counts them."""
    return reading_text(p).removesuffix(" files").removesuffix(" file")


def _title(text: str) -> QLabel:
    label = QLabel(text)
    label.setFont(theme.scaled_font(label.font(), 1.45, bold=True))
    label.setWordWrap(True)
    return label


def _text(text: str, *, dim: bool = False) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText)
    if dim:
        theme.dim(label)
    return label


class StatePage(QScrollArea):
    """A centred message: title, text, optional buttons. Used for welcome, empty, loading and errors.
    It scrolls when the window is too short for it (scale 2 on a small screen), so no paragraph is
    ever squeezed to one line."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.box = QVBoxLayout()
        self.box.setSpacing(12)
        column = QWidget()
        column.setLayout(self.box)
        column.setMaximumWidth(560)
        page = QWidget()
        self.setWidget(page)
        outer = QVBoxLayout(page)
        outer.setContentsMargins(32, 48, 32, 32)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(column, 10)
        row.addStretch(1)
        outer.addLayout(row)
        outer.addStretch(1)


class MainWindow(QMainWindow):
    """Keyboard first: type, ↑/↓ to move, Enter opens, Ctrl+Enter shows the folder, Ctrl+C copies the path, Esc clears."""

    settingsRequested = Signal()
    finetuneRequested = Signal()      # "Improve search…": the fine-tune wizard
    panelRequested = Signal()
    addFolderRequested = Signal()
    resultsShown = Signal(str, int)   # query, number of hits: the list on screen changed
    closing = Signal(object)          # QCloseEvent: the app decides between hiding and quitting

    def __init__(self, engine: Engine, tasks: Tasks, indexer: Indexer, actions: ResultActions,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.engine, self.tasks, self.indexer, self.actions = engine, tasks, indexer, actions
        self.setWindowTitle("Sift")
        self._placed_before = False   # restore_layout placed it from saved geometry
        self._splitter_state = None   # the saved split, waiting for the first show
        self.resize(WINDOW_SIZE)
        self.setMinimumSize(640, 420)
        self.search = SearchController(engine, tasks, self, key="search", indexing=lambda: indexer.busy)
        self.search.started.connect(self._search_started)
        self.search.results.connect(self._show_results)
        self.search.failed.connect(self._show_error)
        self.search.failed_rerank.connect(self._rerank_failed)
        self._first_stage_shown = False  # the results on screen are a first stage the rerank will replace
        self._user_moved = False      # the user chose the selected row (keys, mouse): only then is it followed
        self._placing = False         # the window itself is setting the current row
        self._stale = False           # files were indexed since these results; F5 searches again
        self._empty_mark: tuple = ()  # (running, files done) when the empty page last searched again
        self.search.cleared.connect(self._show_idle)
        self.model = ResultsModel(self)
        self.warm = "warming"  # warming | ready | failed
        self._warm_message = ""
        self._loading_timer = QTimer(self)
        self._loading_timer.setSingleShot(True)
        self._loading_timer.setInterval(LOADING_DELAY_MS)
        self._loading_timer.timeout.connect(lambda: self.stack.setCurrentWidget(self.loading_page))

        self._example_buttons: list[QPushButton] = []
        self._build_header()
        self._build_pages()
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.header)
        layout.addWidget(self.banner)
        self.rule = QFrame()
        self.rule.setFrameShape(QFrame.Shape.HLine)
        self.rule.setFrameShadow(QFrame.Shadow.Plain)
        self.rule.setStyleSheet("color: palette(mid);")
        self.rule.setFixedHeight(1)
        layout.addWidget(self.rule)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        self.status_line = StatusLine(indexer)
        self.status_line.clicked.connect(self.panelRequested)
        self.statusBar().addWidget(self.status_line, 1)
        self.statusBar().setSizeGripEnabled(True)
        self.statusBar().messageChanged.connect(lambda text: text or self.statusBar().setToolTip(""))
        self.tray_note = QLabel()
        self.tray_note.hide()
        self.statusBar().addPermanentWidget(self.tray_note)
        indexer.finished.connect(self._index_finished)
        indexer.changed.connect(self._index_progressed)
        indexer.statusChanged.connect(lambda _: self._refresh_idle_texts())

        self._install_keys()
        actions.failed.connect(self.show_message)
        self._show_idle()

    # -- building ---------------------------------------------------------------------------------

    def _build_header(self) -> None:
        self.query = QLineEdit()
        self.query.setPlaceholderText("Search your documents — a question, some words, or a “phrase”")
        self.query.setClearButtonEnabled(True)
        self.query.setFont(theme.scaled_font(self.font(), 1.2))
        self.query.setMinimumHeight(40)
        self.query.setTextMargins(6, 0, 6, 0)
        self.query.setAccessibleName("Search")
        self.query.textChanged.connect(self.search.set_text)

        self.settings_button = QPushButton("Folders and settings")
        self.settings_button.setToolTip("Folders, model, appearance (Ctrl+,)")
        self.settings_button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.settings_button.clicked.connect(self.settingsRequested)
        self.settings_button.setMinimumHeight(40)
        self.finetune_button = QPushButton("Improve search…")
        self.finetune_button.setToolTip("Teach Sift your vocabulary from the results you open")
        self.finetune_button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.finetune_button.clicked.connect(self.finetuneRequested)
        self.finetune_button.setMinimumHeight(40)

        self.type_filter = QComboBox()
        self.type_filter.setAccessibleName("Type of document")
        for name, value in TYPES:
            self.type_filter.addItem(name, value)
        self.folder_filter = QComboBox()
        self.folder_filter.setAccessibleName("Folder")
        self.date_filter = QComboBox()
        self.date_filter.setAccessibleName("Date changed")
        for name, value in DATES:
            self.date_filter.addItem(name, value)
        for combo in (self.type_filter, self.folder_filter, self.date_filter):
            combo.setFocusPolicy(Qt.FocusPolicy.TabFocus)  # Tab reaches them; a mouse pick leaves the keyboard put
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
            combo.currentIndexChanged.connect(self._filters_changed)
        self.refresh_folders()
        self.count_label = QLabel()
        theme.dim(self.count_label)
        self.more_button = QPushButton("Show more")
        self.more_button.setToolTip("Show the next results of this search")
        self.more_button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.more_button.clicked.connect(lambda: self.search.show_more())
        self.more_button.hide()

        top = QHBoxLayout()
        top.setSpacing(theme.GAP)
        top.addWidget(self.query, 1)
        top.addWidget(self.finetune_button)
        top.addWidget(self.settings_button)
        filters = QHBoxLayout()
        filters.setSpacing(theme.GAP)
        filters.addWidget(self.type_filter)
        filters.addWidget(self.folder_filter)
        filters.addWidget(self.date_filter)
        filters.addStretch(1)
        filters.addWidget(self.count_label)
        filters.addWidget(self.more_button)
        self.header = QWidget()
        box = QVBoxLayout(self.header)
        box.setContentsMargins(theme.MARGIN, theme.MARGIN, theme.MARGIN, 10)
        box.setSpacing(10)
        box.addLayout(top)
        box.addLayout(filters)

        self.banner = QFrame()
        self.banner.setObjectName("banner")
        self.banner_text = QLabel()
        self.banner_text.setWordWrap(True)
        self.banner_bar = QProgressBar()
        self.banner_bar.setRange(0, 0)
        self.banner_bar.setTextVisible(False)
        self.banner_bar.setFixedSize(90, 6)
        self.banner_button = QPushButton("Settings")
        self.banner_button.clicked.connect(self.settingsRequested)
        self.banner_button.hide()
        row = QHBoxLayout(self.banner)
        row.setContentsMargins(theme.MARGIN, 6, theme.MARGIN, 6)
        row.addWidget(self.banner_bar)
        row.addWidget(self.banner_text, 1)
        row.addWidget(self.banner_button)
        self.set_warm("warming")

    def _build_pages(self) -> None:
        self.stack = QStackedWidget()

        # welcome: first run, the samples are searchable at once
        self.welcome_page = StatePage()
        box = self.welcome_page.box
        box.addWidget(_title("Welcome to Sift"))
        box.addWidget(_text("Sift finds passages in your own documents by what they mean, not only by their "
                            "words. It runs entirely on this computer: no document, search or click ever "
                            "leaves it."))
        add = QPushButton("Choose folders to search…")
        add.setDefault(True)
        add.clicked.connect(self.addFolderRequested)
        add_row = QHBoxLayout()
        add_row.addWidget(add)
        add_row.addStretch(1)
        box.addLayout(add_row)
        box.addSpacing(8)
        box.addWidget(_text("Until then you can search the sample documents that come with Sift — a coffee "
                            "machine manual, a lease, a bicycle guide, a budget and more. Try:", dim=True))
        for q in SAMPLE_QUERIES:
            box.addWidget(self._example_button(q))
        self.stack.addWidget(self.welcome_page)

        # home: folders chosen, nothing typed yet
        self.home_page = StatePage()
        self.home_title = _title("Search your documents")
        self.home_text = _text("", dim=True)
        self.home_page.box.addWidget(self.home_title)
        self.home_page.box.addWidget(self.home_text)
        self.home_page.box.addWidget(_text(
            "<table cellspacing='0' cellpadding='3'>"
            "<tr><td><b>↑ ↓</b></td><td>move through results</td></tr>"
            "<tr><td><b>Enter</b></td><td>open the document at the passage's page</td></tr>"
            "<tr><td><b>Ctrl+Enter</b>&nbsp;&nbsp;</td><td>show it in its folder</td></tr>"
            "<tr><td><b>Ctrl+C</b></td><td>copy its path</td></tr>"
            "<tr><td><b>Esc</b></td><td>clear the search</td></tr>"
            "<tr><td><b>F1</b></td><td>every keyboard shortcut</td></tr></table>", dim=True))
        self.home_page.box.addWidget(_text(
            "Put words in “quotes” to match them exactly, write -word to leave it out, or filter with "
            "type:pdf, in:folder, after:2024-01-01.", dim=True))
        self.stack.addWidget(self.home_page)

        # loading, empty, error
        self.loading_page = StatePage()
        self.loading_title = _title("Searching…")
        self.loading_text = _text("", dim=True)
        bar = QProgressBar()
        bar.setRange(0, 0)
        bar.setTextVisible(False)
        bar.setFixedSize(160, 6)
        self.loading_page.box.addWidget(self.loading_title)
        self.loading_page.box.addWidget(bar)
        self.loading_page.box.addWidget(self.loading_text)
        self.stack.addWidget(self.loading_page)

        self.empty_page = StatePage()
        self.empty_title = _title("")
        self.empty_text = _text("", dim=True)
        self.clear_filters_button = QPushButton("Clear filters")
        self.clear_filters_button.clicked.connect(self.clear_filters)
        row = QHBoxLayout()
        row.addWidget(self.clear_filters_button)
        row.addStretch(1)
        self.empty_page.box.addWidget(self.empty_title)
        self.empty_page.box.addWidget(self.empty_text)
        self.empty_page.box.addLayout(row)
        self.stack.addWidget(self.empty_page)

        self.error_page = StatePage()
        self.error_title = _title("The search did not work")
        self.error_text = _text("")
        self.error_text.setTextFormat(Qt.TextFormat.PlainText)
        self.error_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        retry = QPushButton("Try again")
        retry.clicked.connect(self.search.search_now)
        settings = QPushButton("Settings…")
        settings.clicked.connect(self.settingsRequested)
        row = QHBoxLayout()
        row.addWidget(retry)
        row.addWidget(settings)
        row.addStretch(1)
        self.error_page.box.addWidget(self.error_title)
        self.error_page.box.addWidget(self.error_text)
        self.error_page.box.addLayout(row)
        self.stack.addWidget(self.error_page)

        # results
        self.results = ResultsView()
        self.results.setModel(self.model)
        self.results.selectionModel().currentChanged.connect(self._current_changed)
        self.results.doubleClicked.connect(lambda index: self.model.is_divider(index.row()) or self.open_current())
        self.preview = PreviewPane(self.engine, self.tasks)
        self.preview.openRequested.connect(self.open_current)
        self.preview.revealRequested.connect(self.reveal_current)
        self.preview.copyRequested.connect(self.copy_current)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.results)
        self.splitter.addWidget(self.preview)
        self.splitter.setStretchFactor(0, 5)
        self.splitter.setStretchFactor(1, 4)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setHandleWidth(1)
        self.results.setMinimumWidth(320)
        self.preview.setMinimumWidth(280)
        self.stack.addWidget(self.splitter)

    def _example_button(self, query: str) -> QPushButton:
        button = QPushButton(f"“{query}”")
        button.setFlat(True)
        button.setCursor(Qt.CursorShape.PointingHandCursor)
        self._example_buttons.append(button)
        self._style_example(button)
        button.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
        button.clicked.connect(lambda: self.set_query(query))
        return button

    def _style_example(self, button: QPushButton) -> None:
        color = theme.accent(self.palette()).name()
        button.setStyleSheet(f"QPushButton {{ text-align: left; padding: 3px 0px; border: none; color: {color}; }}")

    def _install_keys(self) -> None:
        self.query.installEventFilter(self)
        self.results.installEventFilter(self)
        QShortcut(QKeySequence("Ctrl+L"), self, activated=self.focus_search)
        QShortcut(QKeySequence("Ctrl+F"), self, activated=self.focus_search)
        QShortcut(QKeySequence("Ctrl+,"), self, activated=self.settingsRequested.emit)
        QShortcut(QKeySequence("Ctrl+I"), self, activated=self.panelRequested.emit)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Refresh), self, activated=self.refresh)
        QShortcut(QKeySequence(Qt.Key.Key_F1), self, activated=self.show_shortcuts)
        # Tab follows the screen: search box, the two buttons beside it, the filters, the results,
        # the preview's buttons, and round again.
        order = [self.query, self.finetune_button, self.settings_button, self.type_filter, self.folder_filter,
                 self.date_filter, self.more_button, self.results, self.preview.open_button, self.preview.reveal_button,
                 self.preview.copy_button]
        for first, second in zip(order, order[1:]):
            QWidget.setTabOrder(first, second)
        self.shortcuts_dialog: QDialog | None = None

    # -- public -------------------------------------------------------------------------------------

    def show_shortcuts(self) -> QDialog:
        """F1: every keyboard shortcut in one small window (Esc closes it)."""
        if self.shortcuts_dialog is None:
            dialog = QDialog(self)
            dialog.setWindowTitle("Keyboard shortcuts – Sift")
            rows = "".join(f"<tr><td><b>{keys}</b>&nbsp;&nbsp;&nbsp;</td><td>{what}</td></tr>" for keys, what in SHORTCUTS)
            text = _text(f"<table cellspacing='0' cellpadding='4'>{rows}</table>")
            buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
            buttons.rejected.connect(dialog.reject)
            box = QVBoxLayout(dialog)
            box.addWidget(text)
            box.addWidget(buttons)
            self.shortcuts_dialog = dialog
        self.shortcuts_dialog.show()
        self.shortcuts_dialog.raise_()
        self.shortcuts_dialog.activateWindow()
        return self.shortcuts_dialog

    def restore_layout(self, geometry, splitter) -> None:
        """Size, place and split the window as last time (or at its first size), always inside the screen."""
        if geometry is not None and self.restoreGeometry(geometry):
            self._placed_before = True
        self._splitter_state = splitter  # applied once the window is laid out (sizes need its real size)
        self.fit_to_screen()

    def fit_to_screen(self) -> None:
        """Shrink and move the window into its screen's free area (a scale factor of 2 doubles 1100×720)."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is None:
            return
        area = screen.availableGeometry()
        self.setMinimumSize(QSize(640, 420).boundedTo(area.size()))
        frame = self.frameGeometry()
        extra = QSize(frame.width() - self.width(), frame.height() - self.height())  # title bar, borders
        room = QRect(area.topLeft(), area.size() - extra)
        wanted = QRect(self.geometry().topLeft(), self.size())
        if not self._placed_before:
            size = WINDOW_SIZE.boundedTo(QSize(int(room.width() * SCREEN_SHARE), int(room.height() * SCREEN_SHARE)))
            wanted = QRect(0, 0, size.width(), size.height())
            wanted.moveCenter(room.center())
        fitted = fit_rect(wanted, room)
        self.resize(fitted.size())
        self.move(fitted.topLeft() - (self.geometry().topLeft() - frame.topLeft()))
        self._placed_before = True

    def save_layout(self) -> tuple:
        """(geometry, splitter state) to keep in the preferences."""
        return self.saveGeometry(), self.splitter.saveState()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if hasattr(self, "splitter"):
            self._follow_width()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        state, self._splitter_state = self._splitter_state, None
        if state is not None:
            self.splitter.restoreState(state)
        self._follow_width(force=state is not None)

    def _follow_width(self, *, force: bool = False) -> None:
        """A narrow window puts the preview below the list; a wide one beside it."""
        narrow = self.width() < NARROW_PX
        orientation = Qt.Orientation.Vertical if narrow else Qt.Orientation.Horizontal
        if self.splitter.orientation() == orientation and not force:
            return
        sizes = self.splitter.sizes()
        self.splitter.setOrientation(orientation)
        self.results.setMinimumSize(QSize(0, 160) if narrow else QSize(320, 0))
        self.preview.setMinimumSize(QSize(0, 140) if narrow else QSize(280, 0))
        if force:
            self.splitter.setSizes(sizes)

    def set_query(self, text: str) -> None:
        self.query.setText(text)
        self.focus_search()
        self.search.search_now()

    def focus_search(self) -> None:
        self.query.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.query.selectAll()

    def show_message(self, text: str, ms: int = 6000) -> None:
        """A passing message in the status bar, cut with … to its width; the whole text is its tooltip."""
        bar = self.statusBar()
        bar.setToolTip(text)
        room = max(bar.width() - 2 * theme.GAP - 16, 80)
        bar.showMessage(bar.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, room), ms)

    def set_warm(self, state: str, message: str = "") -> None:
        """'warming' shows a calm banner (typing works already); 'failed' says what to do; 'ready' hides it."""
        self.warm, self._warm_message = state, message
        self.banner.setVisible(state != "ready")
        self.banner_bar.setVisible(state == "warming")
        self.banner_button.setVisible(state == "failed")
        fill = theme.accent(self.palette())
        fill.setAlpha(30)
        if state == "failed":
            self.banner.setStyleSheet("#banner { background: rgba(192, 57, 43, 40); }")
            self.banner_text.setText(f"The search model could not be loaded: {message}")
        else:
            self.banner.setStyleSheet(f"#banner {{ background: rgba({fill.red()}, {fill.green()}, {fill.blue()}, 30); }}")
            self.banner_text.setText("Getting the search model ready… you can type already; results follow in a moment.")

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.ApplicationPaletteChange and hasattr(self, "rule"):  # light ↔ dark
            self.rule.setStyleSheet("color: palette(mid);")
            for button in self._example_buttons:
                self._style_example(button)
            self.set_warm(self.warm, self._warm_message)

    def set_tray_note(self, text: str) -> None:
        self.tray_note.setText(text)
        self.tray_note.setVisible(bool(text))
        theme.dim(self.tray_note)
        self.tray_note.setContentsMargins(0, 0, 8, 0)

    def refresh_folders(self) -> None:
        """The folder filter lists the searched folders (the samples need no folder filter)."""
        current = self.folder_filter.currentData()
        self.folder_filter.blockSignals(True)
        self.folder_filter.clear()
        self.folder_filter.addItem("All folders", "")
        for folder in self.engine.config.folders:
            name = folder.rstrip("/\\").rsplit("/", 1)[-1].rsplit("\\", 1)[-1] or folder
            self.folder_filter.addItem(name, folder)
            self.folder_filter.setItemData(self.folder_filter.count() - 1, folder, Qt.ItemDataRole.ToolTipRole)
        index = self.folder_filter.findData(current)
        self.folder_filter.setCurrentIndex(max(0, index))
        self.folder_filter.setVisible(len(self.engine.config.folders) > 1)
        self.folder_filter.blockSignals(False)
        if current and index < 0:
            self._filters_changed()

    def folders_changed(self) -> None:
        """Folders were added or removed: the folder filter, and the welcome or home page, follow."""
        self.refresh_folders()
        self._refresh_idle_texts()
        if not self.search.query:
            self._show_idle()

    def clear_filters(self) -> None:
        for combo in (self.type_filter, self.folder_filter, self.date_filter):
            combo.blockSignals(True)
            combo.setCurrentIndex(0)
            combo.blockSignals(False)
        self._filters_changed()

    def current_hit(self) -> Hit | None:
        return self.results.current_hit()

    # -- actions on the current result -----------------------------------------------------------

    def open_current(self) -> None:
        index = self.results.currentIndex()
        if self.results.toggle_divider():  # Enter on "Loosely related": show or hide them
            return
        hit = self.current_hit()
        if hit is None:
            return
        self.actions.open(self.model.query, hit, rank=self.model.rank_of(index.row()), shown=self.model.hits)
        self.show_message(f"Opening {hit.path}" + (f" at page {hit.page}" if hit.page and hit.kind == "pdf" else ""), 3000)

    def reveal_current(self) -> None:
        if (hit := self.current_hit()) is not None:
            self.actions.reveal(hit)

    def copy_current(self) -> None:
        if (hit := self.current_hit()) is not None:
            self.actions.copy_path(hit)
            self.show_message(f"Copied {hit.path}", 3000)

    # -- keyboard -----------------------------------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() != QEvent.Type.KeyPress:
            return super().eventFilter(watched, event)
        key_event: QKeyEvent = event  # type: ignore[assignment]
        key, mods = key_event.key(), key_event.modifiers()
        ctrl = bool(mods & Qt.KeyboardModifier.ControlModifier)
        has_results = self.stack.currentWidget() is self.splitter and self.model.rowCount() > 0
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if not has_results:
                self.search.search_now()
                return True
            if not self.results.currentIndex().isValid():
                self.results.setCurrentIndex(self.model.index(0))
            self.reveal_current() if ctrl else self.open_current()
            return True
        if key == Qt.Key.Key_Escape:
            if self.query.text() or self.model.rowCount():
                self.query.clear()
            self.focus_search()
            return True
        if ctrl and key == Qt.Key.Key_C and has_results:
            if watched is self.query and self.query.hasSelectedText():
                return False  # copying typed text stays the line edit's job
            self.copy_current()
            return True
        if watched is self.query and has_results and key in (Qt.Key.Key_Down, Qt.Key.Key_Up, Qt.Key.Key_PageDown,
                                                             Qt.Key.Key_PageUp):
            self._move(key)
            return True
        if watched is self.results and key_event.text() and key_event.text().isprintable() and not ctrl:
            self.query.setFocus()  # typing in the list goes on in the search box
            self.query.insert(key_event.text())
            return True
        return super().eventFilter(watched, event)

    def _move(self, key: int) -> None:
        rows = self.model.rowCount()
        row = self.results.currentIndex().row() if self.results.currentIndex().isValid() else -1
        step = {Qt.Key.Key_Down: 1, Qt.Key.Key_Up: -1, Qt.Key.Key_PageDown: 5, Qt.Key.Key_PageUp: -5}[key]
        row = max(0, min(rows - 1, row + step))
        self.results.setCurrentIndex(self.model.index(row))
        self.results.scrollTo(self.model.index(row))

    # -- search results and states ----------------------------------------------------------------

    def _filters_changed(self) -> None:
        self.search.set_filters(filter_words(self.type_filter.currentData() or "",
                                             self.folder_filter.currentData() or "",
                                             self.date_filter.currentData() or 0))

    def _filters_active(self) -> bool:
        return bool(self.search.filters)

    def _search_started(self, query: str) -> None:
        if self.stack.currentWidget() is not self.splitter:
            self.loading_text.setText("The search model is still loading; this happens once per start."
                                      if self.warm == "warming" else "")
            self._loading_timer.start()

    def _show_results(self, query: str, hits: list) -> None:
        self._loading_timer.stop()
        previous = self.current_hit()
        # A new query starts at its best result. The same query's better results (meaning after
        # words, reranked after first stage, a refresh) keep a row only the user chose, on its
        # document; a row the window chose itself is never followed to a new rank.
        if query != self.model.query or not self._user_moved:
            previous = None
            self._user_moved = False
        self._first_stage_shown = self.search.refining
        self._stale = False
        self.model.set_results(query, hits, self.search.mode)
        n = len(hits)
        total = self.search.total
        count = count_text(hits, self.search.text or query)
        if total > n:
            count += f" · {n:,} of {total:,} documents"
        self.more_button.setVisible(bool(n) and total > n and not self.search.partial)
        if self.search.partial:
            count = ("Word matches while indexing keeps the model busy; results by meaning follow · "
                     + count).rstrip(" ·")
        elif self.search.refining and n:
            count += " · reranking…"
        self.count_label.setText(count)
        if not hits:
            self._show_empty(query)
        else:
            self.stack.setCurrentWidget(self.splitter)
            row = next((i for i in range(self.model.rowCount()) if previous is not None
                        and (h := self.model.hit_at(i)) is not None and h.path == previous.path), None)
            if row is None:
                self._user_moved = False
            self._place(row or 0)
        self.resultsShown.emit(query, n)

    def _place(self, row: int) -> None:
        """Make `row` current as the window's choice (not the user's), and show it; row 0 shows the top."""
        self._placing = True
        try:
            self.results.setCurrentIndex(self.model.index(row))
        finally:
            self._placing = False
        if row == 0:
            self.results.scrollToTop()
        else:
            self.results.scrollTo(self.model.index(row))

    def _rerank_failed(self, query: str, note: str) -> None:
        self._first_stage_shown = False
        self.count_label.setText(f"{count_text(self.model.good + self.model.weak, self.model.query)} · {note}")

    def _samples_not_ready(self) -> bool:
        """The first run: the sample documents are still being read, so an empty result means nothing yet."""
        if not self.engine.using_samples:
            return False
        status = self.indexer.state.status
        never_indexed = status is None or not status.files_by_status.get("indexed")
        return self.indexer.state.running or (self.indexer.busy and never_indexed)

    def _show_empty(self, query: str) -> None:
        words = self.search.text.strip()
        state = self.indexer.state
        if self._samples_not_ready():
            p = state.progress
            counted = f": {files_seen_of(p)}" if p.files_total else "…"
            self.empty_title.setText(f"Sift is still reading its samples{counted}")
            self.empty_text.setText("Results appear here as soon as the sample documents are read; "
                                    "this takes a moment on the first start.")
            self.clear_filters_button.hide()
            self.stack.setCurrentWidget(self.empty_page)
            self.preview.clear()
            return
        self.empty_title.setText(nothing_found(words, filters=self._filters_active() or not words))
        hints = ["Try other words, or describe what the passage is about."]
        if self._filters_active():
            hints.append("Filters are on; clearing them searches everything.")
        if state.running and state.progress.files_total:
            hints.append(f"Sift is still indexing ({reading_text(state.progress)}), so more may turn up.")
        elif state.running:
            hints.append("Sift is still looking for files, so more may turn up.")
        self.empty_text.setText(" ".join(hints))
        self.clear_filters_button.setVisible(self._filters_active())
        self.stack.setCurrentWidget(self.empty_page)
        self.preview.clear()

    def _show_error(self, query: str, message: str) -> None:
        self._loading_timer.stop()
        self.more_button.hide()
        self.error_text.setText(message)
        self.count_label.clear()
        self.stack.setCurrentWidget(self.error_page)
        self.resultsShown.emit(query, -1)

    def _show_idle(self) -> None:
        self._loading_timer.stop()
        self.more_button.hide()
        self.model.clear()
        self.preview.clear()
        self.count_label.clear()
        self._refresh_idle_texts()
        self.stack.setCurrentWidget(self.welcome_page if self.engine.using_samples else self.home_page)
        self.resultsShown.emit("", 0)

    def _refresh_idle_texts(self) -> None:
        status = self.indexer.state.status
        if status is not None and not status.using_samples:
            n = status.files_by_status.get("indexed", 0)
            folders = len(status.folders)
            self.home_text.setText(f"{n:,} documents in {folders} folder{'s' if folders != 1 else ''}, "
                                   "searched by meaning and by words.")
        if self.stack.currentWidget() in (self.welcome_page, self.home_page):
            self.stack.setCurrentWidget(self.welcome_page if self.engine.using_samples else self.home_page)

    def _current_changed(self, current, _previous) -> None:
        if not self._placing and current.isValid():
            self._user_moved = True
        hit = current.data(Qt.ItemDataRole.UserRole + 1) if current.isValid() else None
        if hit is None:
            self.preview.clear()
        else:
            self.preview.show_hit(self.model.query, hit)

    def _index_finished(self, _report) -> None:
        # New files may match what is on screen. Searching again would reorder the list under
        # someone moving through it: then the list stays, and F5 (or the next query) refreshes.
        if not (self.search.shown_query and self.search.shown_query == self.search.query):
            return
        if self._user_moved and self.stack.currentWidget() is self.splitter:
            self._stale = True
            self.count_label.setText(self.count_label.text().split(" · New files")[0]
                                     + " · New files were indexed: F5 searches again")
            return
        self.search.search_now()

    def _index_progressed(self, state) -> None:
        # "Still reading its samples: 3 of 14" counts up, and each committed batch may hold the answer.
        if not (self.stack.currentWidget() is self.empty_page and self.engine.using_samples and self.search.query):
            return
        mark = (state.running, state.progress.files_done)
        if mark != self._empty_mark:
            self._empty_mark = mark
            self.search.search_now()
        elif self._samples_not_ready() and state.progress.files_total:
            self.empty_title.setText(f"Sift is still reading its samples: {files_seen_of(state.progress)}")

    def refresh(self) -> None:
        """F5: the same search again, keeping the chosen row on its document."""
        if self.search.query:
            self.search.search_now()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.closing.emit(event)
