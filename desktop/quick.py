"""The quick-search popup: a compact frameless box near the tray or the screen's centre; Enter opens, Esc hides."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPoint, QRect, Qt, Signal
from PySide6.QtGui import QGuiApplication, QKeyEvent
from PySide6.QtWidgets import QFrame, QLabel, QLineEdit, QVBoxLayout, QWidget

from desktop import theme
from desktop.opener import ResultActions
from desktop.results import ResultsModel, ResultsView, count_text
from desktop.search import SearchController
from desktop.tasks import Tasks
from engine import Engine
from engine.search import nothing_found

WIDTH = 620
MAX_ROWS = 6


class QuickSearch(QFrame):
    """Type and press Enter: the best (or chosen) result opens and the popup goes away."""

    showAllRequested = Signal(str)   # Alt+Enter: the same search in the main window
    resultsShown = Signal(str, int)

    def __init__(self, engine: Engine, tasks: Tasks, actions: ResultActions, parent: QWidget | None = None, *,
                 indexing=None) -> None:
        super().__init__(parent, Qt.WindowType.Tool | Qt.WindowType.FramelessWindowHint
                         | Qt.WindowType.WindowStaysOnTopHint)
        self.setObjectName("quick")
        self.setWindowTitle("Sift quick search")
        self.actions = actions
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self._restyle()
        self.search = SearchController(engine, tasks, self, key="quick", limit=MAX_ROWS, indexing=indexing)
        self.model = ResultsModel(self)
        self.field = QLineEdit()
        self.field.setPlaceholderText("Search with Sift")
        self.field.setFont(theme.scaled_font(self.font(), 1.25))
        self.field.setMinimumHeight(40)
        self.field.setFrame(False)
        self.field.textChanged.connect(self.search.set_text)
        self.field.installEventFilter(self)
        self.list = ResultsView(compact=True)
        self.list.setModel(self.model)
        self.list.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        # A click on the divider shows or hides the weak ones (ResultsView does it); elsewhere it opens.
        self.list.clicked.connect(lambda index: self.model.is_divider(index.row()) or self._open(index.row()))
        self.list.hide()
        self.hint = QLabel("Enter opens · Ctrl+Enter shows in folder · Alt+Enter shows all results · Esc closes")
        theme.dim(self.hint)
        self.hint.setFont(theme.scaled_font(self.font(), 0.9))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 10, 14, 10)
        layout.setSpacing(6)
        layout.addWidget(self.field)
        layout.addWidget(self.list)
        layout.addWidget(self.hint)
        self.setFixedWidth(WIDTH)
        self.search.results.connect(self._results)
        self.search.failed.connect(lambda q, msg: self._message(msg))
        self.search.cleared.connect(self._cleared)
        self._open_pending = ""

    # -- showing ---------------------------------------------------------------------------------

    def popup(self, near: QRect | None = None) -> None:
        """Show near the tray icon's rectangle when known, else a little above the screen's centre."""
        self.adjustSize()
        screen = (QGuiApplication.screenAt(near.center()) if near is not None and near.isValid() else None) \
            or QGuiApplication.primaryScreen()
        area = screen.availableGeometry()
        if near is not None and near.isValid():
            x = min(max(area.left() + 8, near.center().x() - self.width() // 2), area.right() - self.width() - 8)
            below = near.bottom() + 8
            y = below if near.center().y() < area.center().y() else near.top() - self.height() - 8
            self.move(QPoint(x, max(area.top() + 8, y)))
        else:
            self.move(QPoint(area.center().x() - self.width() // 2, area.top() + area.height() // 4))
        self.show()
        self.raise_()
        self.activateWindow()
        self.field.setFocus(Qt.FocusReason.PopupFocusReason)
        self.field.selectAll()

    def dismiss(self) -> None:
        self.hide()

    # -- results -----------------------------------------------------------------------------------

    def _results(self, query: str, hits: list) -> None:
        self.model.set_results(query, hits[:MAX_ROWS], self.search.mode)
        pending = self._open_pending
        if pending and hits and not self.search.partial:  # Enter opens the best result of the full search
            self._open_pending = ""
            self.resultsShown.emit(query, len(hits))
            self._open(0, reveal=pending == "reveal")
            return
        if hits:
            self.list.setCurrentIndex(self.model.index(0))
            self._fit()
            self.list.show()
            keys = "Enter opens · Ctrl+Enter shows in folder · Alt+Enter shows all results · Esc closes"
            self.hint.setText(f"{count_text(hits, self.search.text)} · {keys}" if self.model.good
                              else count_text(hits, self.search.text))
        else:
            self.list.hide()
            self._message(nothing_found(self.search.text) + ".")
        self.adjustSize()
        self.resultsShown.emit(query, len(hits))

    def _fit(self) -> None:
        # Every row whole (a fixed cap clipped the sixth); only a short screen makes the list scroll.
        rows = sum(self.list.sizeHintForRow(i) for i in range(self.model.rowCount()))
        screen = self.screen() or QGuiApplication.primaryScreen()
        room = int(screen.availableGeometry().height() * 0.7) if screen is not None else rows
        self.list.setFixedHeight(min(rows + 2 * self.list.frameWidth(), room))
        self.adjustSize()

    def _cleared(self) -> None:
        self.model.clear()
        self.list.hide()
        self.hint.setText("Enter opens · Ctrl+Enter shows in folder · Alt+Enter shows all results · Esc closes")
        self.adjustSize()

    def _message(self, text: str) -> None:
        self.hint.setText(text)

    def _open(self, row: int, *, reveal: bool = False) -> None:
        if self.model.is_divider(row):  # "Loosely related": show or hide them
            self.model.set_expanded(not self.model.expanded)
            self._fit()
            return
        hit = self.model.hit_at(row)
        if hit is None:
            return
        if reveal:
            self.actions.reveal(hit)
        else:
            self.actions.open(self.model.query, hit, rank=self.model.rank_of(row), shown=self.model.hits)
        self.dismiss()

    # -- keys and focus ----------------------------------------------------------------------------

    def eventFilter(self, watched, event) -> bool:
        if watched is self.field and event.type() == QEvent.Type.KeyPress:
            key_event: QKeyEvent = event
            key, mods = key_event.key(), key_event.modifiers()
            if key == Qt.Key.Key_Escape:
                self.dismiss()
                return True
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                if mods & Qt.KeyboardModifier.AltModifier:
                    self.showAllRequested.emit(self.field.text())
                    self.dismiss()
                    return True
                if self.search.busy:  # Enter before the results: open the best one when it lands
                    self._open_pending = "reveal" if mods & Qt.KeyboardModifier.ControlModifier else "open"
                    if not self.search.running_query:
                        self.search.search_now()
                    return True
                row = self.list.currentIndex().row() if self.list.currentIndex().isValid() else 0
                self._open(row, reveal=bool(mods & Qt.KeyboardModifier.ControlModifier))
                return True
            if key in (Qt.Key.Key_Down, Qt.Key.Key_Up) and self.model.rowCount():
                row = self.list.currentIndex().row() + (1 if key == Qt.Key.Key_Down else -1)
                row = max(0, min(self.model.rowCount() - 1, row))
                self.list.setCurrentIndex(self.model.index(row))
                return True
        return super().eventFilter(watched, event)

    def _restyle(self) -> None:
        self.setStyleSheet("#quick { border: 1px solid palette(mid); border-radius: 10px; background: palette(window); }")

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.ApplicationPaletteChange:
            self._restyle()
        # Like a menu: clicking elsewhere puts it away.
        if event.type() == QEvent.Type.ActivationChange and self.isVisible() and not self.isActiveWindow() \
                and QGuiApplication.applicationState() != Qt.ApplicationState.ApplicationActive:
            self.dismiss()
