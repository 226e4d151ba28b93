"""Indexing status: a line in the status bar and a panel with progress and the files that failed, and why."""

from __future__ import annotations

import os

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QGuiApplication, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop import theme
from desktop.indexing import Indexer, IndexState
from engine import Problem, Progress, StatusReport

def _count(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return "under a minute"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60:02d} min"


def eta_seconds(p: Progress) -> float | None:
    """The engine's estimate of the time left; None until it is reliable (the engine says when)."""
    eta = getattr(p, "eta_s", None)
    return eta if eta is not None and eta > 0 else None


def files_seen(p: Progress) -> int:
    """Files read so far in this run: the one count the status bar, the panel and the empty page show."""
    return max(getattr(p, "files_read", 0), p.files_done)


def reading_text(p: Progress) -> str:
    """'Indexing 330 of 652 files': the same words wherever indexing progress is mentioned."""
    return f"{files_seen(p):,} of {_count(p.files_total, 'file')}"


def problems_text(problems: tuple[Problem, ...] | list[Problem]) -> str:
    """' · 7 could not be read · 3 skipped (no text)' for the status bar; '' when there are none."""
    skipped = sum(1 for p in problems if p.skipped)
    failed = len(problems) - skipped
    text = f" · {failed:,} could not be read" if failed else ""
    if skipped:
        scans = sum(1 for p in problems if p.skipped and "scan" in p.plain_reason)
        text += f" · {skipped:,} skipped" + (", need OCR" if scans == skipped else " (no text)")
    return text


def summary(state: IndexState) -> str:
    """One line for the status bar."""
    p = state.progress
    if state.paused:
        queued = getattr(p, "files_queued", 0)
        return "Indexing paused" + (f" · {_count(queued, 'change')} waiting" if queued else "")
    if state.running:
        if p.phase == "scanning" or p.files_total == 0:
            return "Looking for new and changed files…"
        if p.phase == "saving":
            return "Saving the index…"
        text = f"Indexing {reading_text(p)}"
        if p.rate > 0:
            text += f" · {p.rate:.1f} files/s"
        eta = eta_seconds(p)
        if eta is not None:
            text += f" · {_duration(eta)} left"
        return text
    if state.error:
        return f"Indexing waits: {state.error}"
    status = state.status
    if status is None:
        return "Ready"
    indexed = status.files_by_status.get("indexed", 0)
    text = (f"Searching {_count(indexed, 'sample document')}" if status.using_samples
            else f"{_count(indexed, 'file')} indexed")
    text += problems_text(status.problems)
    offline = getattr(p, "offline", ())
    if offline:
        text += f" · {_count(len(offline), 'folder')} offline"
    return text


class _StatusText(QLabel):
    """The status bar's words, cut with … to the room there is (a long reason never widens the
    window or runs off its edge); the whole text is in the tooltip, and a click opens the panel."""

    clicked = Signal()

    def minimumSizeHint(self) -> QSize:
        return QSize(min(super().minimumSizeHint().width(), 120), super().minimumSizeHint().height())

    def shown_text(self) -> str:
        return self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, self.contentsRect().width())

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setPen(self.palette().color(self.foregroundRole()))
        painter.drawText(self.contentsRect(), int(self.alignment()), self.shown_text())

    def mouseReleaseEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit()
        super().mouseReleaseEvent(event)


class StatusLine(QWidget):
    """The status bar's indexing summary: text, a slim progress bar, and a click opens the panel."""

    clicked = Signal()

    def __init__(self, indexer: Indexer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = _StatusText()
        self.label.setCursor(Qt.CursorShape.PointingHandCursor)
        self.label.setContentsMargins(6, 2, 6, 2)
        self.label.clicked.connect(self.clicked)
        self.bar = QProgressBar()
        self.bar.setTextVisible(False)
        self.bar.setFixedSize(120, 6)
        self.bar.hide()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        layout.setSpacing(theme.GAP)
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        layout.addStretch(1)
        indexer.changed.connect(self.update_state)
        self.update_state(indexer.state)

    def update_state(self, state: IndexState) -> None:
        text = summary(state)
        self.label.setText(text)
        self.label.setToolTip(f"{text}\n\nClick for the indexing status and the files that could not be read")
        p = state.progress
        if state.running and p.files_total:
            self.bar.setRange(0, p.files_total)
            self.bar.setValue(files_seen(p))
            self.bar.show()
        elif state.running:
            self.bar.setRange(0, 0)  # busy: scanning
            self.bar.show()
        else:
            self.bar.hide()


class _Figure(QFrame):
    """A number with a caption under it."""

    def __init__(self, caption: str) -> None:
        super().__init__()
        self.value = QLabel("–")
        self.value.setFont(theme.scaled_font(self.font(), 1.35, bold=True))
        self.caption = QLabel(caption)
        theme.dim(self.caption)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.value)
        layout.addWidget(self.caption)

    def set(self, text: str) -> None:
        self.value.setText(text)


class IndexPanel(QDialog):
    """Queued/done/failed, rate, time left, the current file, pause/resume, and every problem file with its reason."""

    revealRequested = Signal(str)

    def __init__(self, indexer: Indexer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.indexer = indexer
        self.setWindowTitle("Indexing – Sift")
        self.setMinimumSize(640, 460)
        screen = QGuiApplication.primaryScreen()
        wanted = QSize(880, 560)
        self.resize(wanted.boundedTo(screen.availableGeometry().size()).expandedTo(self.minimumSize())
                    if screen is not None else wanted)

        self.headline = QLabel()
        self.headline.setFont(theme.scaled_font(self.font(), 1.15, bold=True))
        self.bar = QProgressBar()
        self.bar.setTextVisible(False)
        self.bar.setFixedHeight(8)
        self.queued_fig, self.done_fig, self.failed_fig = _Figure("to read"), _Figure("read"), _Figure("not searchable")
        self.rate_fig, self.eta_fig = _Figure("files per second"), _Figure("time left")
        self.figures = QWidget()
        figures = QGridLayout(self.figures)
        figures.setContentsMargins(0, 0, 0, 0)
        figures.setHorizontalSpacing(28)
        for col, fig in enumerate((self.queued_fig, self.done_fig, self.failed_fig, self.rate_fig, self.eta_fig)):
            figures.addWidget(fig, 0, col)
        figures.setColumnStretch(5, 1)
        self.current = QLabel()
        theme.dim(self.current)
        self.current.setTextFormat(Qt.TextFormat.PlainText)
        self.current.setMinimumWidth(100)
        self.totals = QLabel()
        self.totals.setWordWrap(True)
        self.watch_note = QLabel()
        self.watch_note.setWordWrap(True)
        theme.dim(self.watch_note)

        self.pause_button = QPushButton("Pause")
        self.pause_button.clicked.connect(indexer.toggle_pause)
        self.index_button = QPushButton("Index now")
        self.index_button.setToolTip("Look for new, changed and deleted files now")
        self.index_button.clicked.connect(indexer.start)
        controls = QHBoxLayout()
        controls.addWidget(self.pause_button)
        controls.addWidget(self.index_button)
        controls.addStretch(1)

        self.problems_title = QLabel()
        self.problems_title.setFont(theme.scaled_font(self.font(), 1.0, bold=True))
        self.problems_hint = QLabel("Sift cannot search these files. Fix the cause (for example, save a scan "
                                    "with its text recognised), then retry.")
        self.problems_hint.setWordWrap(True)
        theme.dim(self.problems_hint)
        self.problems = QTreeWidget()
        self.problems.setHeaderLabels(["File", "Why", "Folder"])
        self.problems.setRootIsDecorated(False)
        self.problems.setAlternatingRowColors(True)
        self.problems.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.problems.setUniformRowHeights(True)
        header = self.problems.header()
        # The reason is what a person needs to read: it gets the room; a long name is cut in its middle.
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(False)
        self.problems.setColumnWidth(0, 190)
        self.problems.setColumnWidth(2, 130)
        self.problems.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.problems.itemDoubleClicked.connect(lambda item, _: self.revealRequested.emit(item.data(0, Qt.ItemDataRole.UserRole)))
        self.no_problems = QLabel("Every file Sift found could be read.")
        theme.dim(self.no_problems)

        self.retry_button = QPushButton("Retry selected")
        self.retry_button.clicked.connect(self._retry_selected)
        self.retry_all_button = QPushButton("Retry all")
        self.retry_all_button.clicked.connect(self._retry_all)
        self.reveal_button = QPushButton("Show in folder")
        self.reveal_button.clicked.connect(self._reveal_selected)
        self.problems.itemSelectionChanged.connect(self._selection_changed)
        problem_buttons = QHBoxLayout()
        problem_buttons.addWidget(self.retry_button)
        problem_buttons.addWidget(self.retry_all_button)
        problem_buttons.addWidget(self.reveal_button)
        problem_buttons.addStretch(1)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.close)
        problem_buttons.addWidget(close)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(theme.MARGIN + 4, theme.MARGIN, theme.MARGIN + 4, theme.MARGIN)
        layout.setSpacing(10)
        layout.addWidget(self.headline)
        layout.addWidget(self.bar)
        layout.addWidget(self.figures)
        layout.addWidget(self.current)
        layout.addLayout(controls)
        layout.addWidget(self.totals)
        layout.addWidget(self.watch_note)
        layout.addSpacing(8)
        layout.addWidget(self.problems_title)
        layout.addWidget(self.problems_hint)
        layout.addWidget(self.problems, 1)
        layout.addWidget(self.no_problems)
        self.filler = QWidget()  # takes the problem list's room when there is none
        self.filler.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        layout.addWidget(self.filler, 1)
        layout.addLayout(problem_buttons)

        indexer.changed.connect(self.update_state)
        self.update_state(indexer.state)
        self._selection_changed()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.indexer.refresh_status()

    # -- updates --------------------------------------------------------------------------------

    def update_state(self, state: IndexState) -> None:
        p = state.progress
        idle = not (state.running or state.paused or state.error)
        self.headline.setText("Up to date" if idle and state.status is not None else summary(state))
        self.headline.setToolTip(state.error)
        active = state.running or state.paused
        self.figures.setVisible(active)
        left = max(0, p.files_total - files_seen(p))
        self.queued_fig.set(f"{left:,}" if active else "–")
        self.done_fig.set(f"{files_seen(p):,}" if active or p.files_total else "–")
        self.failed_fig.set(f"{p.files_failed:,}" if active or p.files_total else "–")
        self.rate_fig.set(f"{p.rate:.1f}" if state.running and p.rate else "–")
        eta = eta_seconds(p) if state.running else None
        self.eta_fig.set(_duration(eta) if eta is not None else "–")
        if state.running and p.files_total:
            self.bar.setRange(0, p.files_total)
            self.bar.setValue(files_seen(p))
        elif state.running:
            self.bar.setRange(0, 0)
        elif state.paused and p.files_total:
            self.bar.setRange(0, p.files_total)
            self.bar.setValue(files_seen(p))
        self.bar.setVisible(state.running or (state.paused and bool(p.files_total)))
        name = os.path.basename(p.current_file) if state.running and p.current_file else ""
        self.current.setText(f"Reading {name}" if name else "")
        self.current.setVisible(bool(name))
        self.pause_button.setText("Resume" if state.paused else "Pause")
        self.pause_button.setEnabled(state.running or state.paused)  # nothing to pause otherwise
        self.index_button.setEnabled(not state.running)
        notes = []
        if getattr(p, "watching", False) and not state.paused:
            notes.append("Sift watches your folders and indexes changes as they happen.")
        for folder in getattr(p, "offline", ()):
            notes.append(f"{folder} is not there now (unplugged?); its files stay searchable and are "
                         "checked again when it is back.")
        self.watch_note.setText("\n".join(notes))
        self.watch_note.setVisible(bool(notes))
        if state.status is not None:
            self._show_status(state.status)

    def _show_status(self, status: StatusReport) -> None:
        files = sum(status.files_by_status.values())
        size_mb = (status.index_bytes + status.catalog_bytes) / 1e6
        where = "the sample documents" if status.using_samples else _count(len(status.folders), "folder")
        self.totals.setText(f"{_count(files, 'file')} in {where} · {_count(status.chunks, 'passage')} · "
                            f"{size_mb:.1f} MB on disk · model {status.model}")
        skipped = sum(1 for p in status.problems if p.skipped)
        failed = len(status.problems) - skipped
        title = f"Files Sift could not read ({failed:,})"
        if skipped:
            title += f" and files skipped because they hold no text ({skipped:,})"
        self.problems_title.setText(title)
        selected = {item.data(0, Qt.ItemDataRole.UserRole) for item in self.problems.selectedItems()}
        self.problems.clear()
        for problem in status.problems:
            item = QTreeWidgetItem([os.path.basename(problem.path), problem.plain_reason,
                                    os.path.dirname(problem.path)])
            item.setData(0, Qt.ItemDataRole.UserRole, problem.path)
            item.setToolTip(0, problem.path)
            item.setToolTip(1, f"{problem.plain_reason}\n\n{problem.reason}" if problem.reason else problem.plain_reason)
            self.problems.addTopLevelItem(item)
            item.setSelected(problem.path in selected)
        has = bool(status.problems)
        self.problems.setVisible(has)
        self.problems_hint.setVisible(has)
        self.no_problems.setVisible(not has)
        self.filler.setVisible(not has)
        self.retry_all_button.setEnabled(has)
        self._selection_changed()

    def problem_paths(self) -> list[str]:
        return [self.problems.topLevelItem(i).data(0, Qt.ItemDataRole.UserRole)
                for i in range(self.problems.topLevelItemCount())]

    def _selected_paths(self) -> list[str]:
        return [item.data(0, Qt.ItemDataRole.UserRole) for item in self.problems.selectedItems()]

    def _selection_changed(self) -> None:
        some = bool(self.problems.selectedItems())
        self.retry_button.setEnabled(some)
        self.reveal_button.setEnabled(len(self.problems.selectedItems()) == 1)

    def _retry_selected(self) -> None:
        if paths := self._selected_paths():
            self.indexer.retry(paths)

    def _retry_all(self) -> None:
        if paths := self.problem_paths():
            self.indexer.retry(paths)

    def _reveal_selected(self) -> None:
        if paths := self._selected_paths():
            self.revealRequested.emit(paths[0])
