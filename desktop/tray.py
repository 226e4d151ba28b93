"""The system-tray icon and its menu: search, open, pause/resume indexing, status, quit."""

from __future__ import annotations

from PySide6.QtCore import QObject, QRect, Signal
from PySide6.QtGui import QAction, QIcon
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from desktop.indexing import Indexer, IndexState
from desktop.status import summary


def tray_available() -> bool:
    return QSystemTrayIcon.isSystemTrayAvailable()


class Tray(QObject):
    """Clicking the icon toggles the quick-search popup; the menu holds the rest."""

    searchRequested = Signal(object)  # QRect of the icon, to place the popup near it (may be invalid)
    showRequested = Signal()
    panelRequested = Signal()
    quitRequested = Signal()

    def __init__(self, icon: QIcon, indexer: Indexer, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.indexer = indexer
        self.icon = QSystemTrayIcon(icon, self)
        self.icon.setToolTip("Sift")
        self.menu = QMenu()
        self.search_action = QAction("Quick search…", self.menu)
        self.search_action.triggered.connect(lambda: self.searchRequested.emit(self.icon.geometry()))
        self.show_action = QAction("Open Sift", self.menu)
        self.show_action.triggered.connect(self.showRequested)
        self.pause_action = QAction("Pause indexing", self.menu)
        self.pause_action.triggered.connect(indexer.toggle_pause)
        self.status_action = QAction("Indexing status…", self.menu)
        self.status_action.triggered.connect(self.panelRequested)
        self.quit_action = QAction("Quit Sift", self.menu)
        self.quit_action.triggered.connect(self.quitRequested)
        self.menu.addAction(self.search_action)
        self.menu.addAction(self.show_action)
        self.menu.addSeparator()
        self.menu.addAction(self.pause_action)
        self.menu.addAction(self.status_action)
        self.menu.addSeparator()
        self.menu.addAction(self.quit_action)
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._activated)
        indexer.changed.connect(self._update)
        self._update(indexer.state)

    def show(self) -> None:
        self.icon.show()

    def hide(self) -> None:
        self.icon.hide()

    def geometry(self) -> QRect:
        return self.icon.geometry()

    def notify(self, title: str, text: str) -> None:
        self.icon.showMessage(title, text, self.icon.icon(), 5000)

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (QSystemTrayIcon.ActivationReason.Trigger, QSystemTrayIcon.ActivationReason.MiddleClick):
            self.searchRequested.emit(self.icon.geometry())
        elif reason == QSystemTrayIcon.ActivationReason.DoubleClick:
            self.showRequested.emit()

    def _update(self, state: IndexState) -> None:
        self.pause_action.setText("Resume indexing" if state.paused else "Pause indexing")
        self.pause_action.setEnabled(state.running or state.paused)
        self.icon.setToolTip(f"Sift — {summary(state)}")
