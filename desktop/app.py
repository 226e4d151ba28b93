"""Sift's desktop app: QApplication, single instance, the engine, the tray, the windows and how they meet."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Sequence

from PySide6.QtCore import QObject, QRect, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtNetwork import QLocalServer, QLocalSocket
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox, QWidget

from desktop import theme
from desktop.finetune_wizard import FinetuneWizard
from desktop.icons import app_icon
from desktop.indexing import Indexer
from desktop.instance import socket_address
from desktop.mainwindow import MainWindow
from desktop.opener import ResultActions
from desktop.prefs import Prefs
from desktop.quick import QuickSearch
from desktop.settings import DEFAULT_NDIM, SettingsDialog
from desktop.status import IndexPanel
from desktop.tasks import Tasks
from desktop.tray import Tray, tray_available
from engine import (
    CatalogDamagedError,
    Engine,
    Paths,
    SiftError,
    model_name,
    resolve_paths,
    set_aside_catalog,
)

log = logging.getLogger(__name__)

WARM_UP_QUERY = "warm up"
CONNECT_TIMEOUT_MS = 500
# From quit, SIGTERM or logout to the process gone: a session's logout waits about 5 s before
# it kills what is left. Work still running then is abandoned: SQLite rolls back the batch in
# flight, the vector index file is replaced only whole, so nothing committed is lost.
SHUTDOWN_BUDGET_S = 4.0


class SingleInstance(QObject):
    """One Sift per user and Sift home. A second launch hands its wish ('show', 'quick') to the first, then exits."""

    activated = Signal(str)

    def __init__(self, key: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.key = key
        self.server: QLocalServer | None = None

    @staticmethod
    def key_for(paths: Paths) -> str:
        """The socket for this user and Sift home ("" if none is safe); desktop.launch finds it the same way."""
        return socket_address(paths.data)

    def notify_running(self, message: str = "show", *, timeout_ms: int = CONNECT_TIMEOUT_MS) -> bool:
        """True when another Sift took the message (this process should exit)."""
        if not self.key:
            return False
        socket = QLocalSocket()
        socket.connectToServer(self.key)
        if not socket.waitForConnected(timeout_ms):
            return False
        socket.write(message.encode() + b"\n")
        socket.waitForBytesWritten(timeout_ms)
        socket.disconnectFromServer()
        return True

    def listen(self) -> bool:
        if not self.key:
            log.warning("no private folder for the single-instance socket: a second launch starts a second Sift")
            return False
        self.server = QLocalServer(self)
        self.server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not self.server.listen(self.key):
            QLocalServer.removeServer(self.key)  # left behind by a crash: no one answered above
            if not self.server.listen(self.key):
                log.warning("single-instance socket unavailable: %s", self.server.errorString())
                return False
        self.server.newConnection.connect(self._connection)
        return True

    def _connection(self) -> None:
        while self.server is not None and (socket := self.server.nextPendingConnection()) is not None:
            socket.readyRead.connect(self._ready)
            socket.disconnected.connect(socket.deleteLater)
            self._read(socket)

    def _ready(self) -> None:
        socket = self.sender()
        if isinstance(socket, QLocalSocket):
            self._read(socket)

    def _read(self, socket: QLocalSocket) -> None:
        while socket.canReadLine():
            message = bytes(socket.readLine().data()).decode(errors="replace").strip()
            self.activated.emit(message or "show")

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


def exit_within(seconds: float) -> threading.Timer:
    """End this process `seconds` from now if it has not ended by then (parse workers killed first)."""
    def abandon() -> None:
        log.warning("Sift did not stop within %g s: leaving the work in flight (nothing committed is lost)", seconds)
        for child in multiprocessing.active_children():
            child.kill()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    timer = threading.Timer(seconds, abandon)
    timer.daemon = True
    timer.start()
    return timer


def present(window: QWidget) -> None:
    """Show a window on top with the keyboard in it (a dialog opened from the keyboard must take the keys)."""
    window.show()
    window.raise_()
    window.activateWindow()


class SiftApp(QObject):
    """Builds the windows over one engine and wires them together; `shutdown` stops all background work."""

    warmed = Signal(bool)  # the model is loaded (True) or could not be (False)

    def __init__(self, engine: Engine, *, opener=None, use_tray: bool | None = None, prefs: Prefs | None = None,
                 use_service: bool | None = None, service_options: dict | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.prefs = prefs or Prefs(engine.paths.config)
        theme.apply_theme(self.prefs.theme)
        self.tasks = Tasks(self)
        self.indexer = Indexer(engine, self.tasks, self, use_service=use_service, service_options=service_options)
        self.actions = ResultActions(engine, self.tasks, opener, self)
        self.ndim = DEFAULT_NDIM
        self.window = MainWindow(engine, self.tasks, self.indexer, self.actions)
        self.window.setWindowIcon(app_icon())
        self.window.restore_layout(self.prefs.geometry("main"), self.prefs.geometry("splitter"))
        self.quick = QuickSearch(engine, self.tasks, self.actions, indexing=lambda: self.indexer.busy)
        self.quick.showAllRequested.connect(self.show_search)
        self.panel: IndexPanel | None = None
        self.settings: SettingsDialog | None = None
        self.finetune: FinetuneWizard | None = None
        self.has_tray = tray_available() if use_tray is None else use_tray
        self.tray: Tray | None = None
        if self.has_tray:
            self.tray = Tray(app_icon(), self.indexer, self)
            self.tray.searchRequested.connect(self.toggle_quick)
            self.tray.showRequested.connect(self.show_window)
            self.tray.panelRequested.connect(self.show_panel)
            self.tray.quitRequested.connect(self.quit)
        else:
            self.window.set_tray_note("No system tray on this desktop: Sift runs while this window is open.")
        self.window.settingsRequested.connect(self.show_settings)
        self.window.finetuneRequested.connect(self.show_finetune)
        self.window.panelRequested.connect(self.show_panel)
        self.window.addFolderRequested.connect(self.choose_folder)
        self.window.closing.connect(self._window_closing)
        self.indexer.statusChanged.connect(self._catalog_status)
        self.indexer.changed.connect(self._indexing_error)
        self._last_error = ""
        self.damage_box: QMessageBox | None = None  # the offer to rebuild a damaged catalog, once shown
        self._quitting = False

    # -- start and stop ---------------------------------------------------------------------------

    def start(self, *, quick: bool = False, index: bool = True) -> None:
        """Show the window at once; load the model and bring the index up to date in the background."""
        if self.tray is not None:
            self.tray.show()
        if quick:
            self.toggle_quick(None)
        else:
            self.show_window()
        self.warm_up()
        self.indexer.refresh_status()
        if index:
            self.indexer.start()

    def warm_up(self) -> None:
        """Load the model (torch and all) on a worker, in the search lane, so the first search is quick."""
        engine = self.engine

        def warm() -> int:
            engine.search(WARM_UP_QUERY, limit=1)
            return engine.embedder.ndim

        self.window.set_warm("warming")
        self.tasks.run(warm, lane="search", key="warm", name="warm up", done=self._warm_done, error=self._warm_failed)

    def _warm_done(self, ndim: int) -> None:
        self.ndim = ndim
        self.window.set_warm("ready")
        self.warmed.emit(True)

    def _warm_failed(self, exc: BaseException) -> None:
        if isinstance(exc, CatalogDamagedError):
            # The catalog, not the model: no "model could not be loaded" banner; the status check
            # offers the rebuild, after which the model warms up again.
            self.window.set_warm("ready")
            self.indexer.refresh_status()
        else:
            self.window.set_warm("failed", str(exc))
        self.warmed.emit(False)

    def shutdown(self) -> None:
        """Stop indexing after its batch, drop pending work, and join every worker thread."""
        self._quitting = True
        for w in (self.quick, self.settings, self.panel, self.finetune):
            if w is not None:
                w.close()
        if self.tray is not None:
            self.tray.hide()
        self.save_layout()
        self.window.hide()
        self.indexer.stop()   # the background service: its batch in flight stops at its next step
        self.tasks.shutdown()
        self.indexer.stop()   # …and one that a task was starting meanwhile
        self.prefs.sync()

    def save_layout(self) -> None:
        """The window's size, place and split, for the next start."""
        geometry, splitter = self.window.save_layout()
        self.prefs.set_geometry("main", geometry)
        self.prefs.set_geometry("splitter", splitter)

    def quit(self) -> None:
        self.shutdown()
        app = QApplication.instance()
        if app is not None:
            app.quit()

    # -- windows ----------------------------------------------------------------------------------

    def activate(self, message: str = "show") -> None:
        """A second launch asked for us."""
        if message == "quick":
            self.toggle_quick(None)
        else:
            self.show_window()

    def show_window(self) -> None:
        w = self.window
        if w.isMinimized():
            w.showNormal()
        present(w)
        w.focus_search()

    def show_search(self, query: str) -> None:
        self.show_window()
        self.window.set_query(query)

    def toggle_quick(self, near: QRect | None) -> None:
        if self.quick.isVisible():
            self.quick.dismiss()
        else:
            self.quick.popup(near)

    def show_panel(self) -> None:
        if self.panel is None:
            self.panel = IndexPanel(self.indexer, self.window)
            self.panel.revealRequested.connect(self.actions.reveal)
        present(self.panel)

    def show_settings(self) -> SettingsDialog:
        if self.settings is not None and self.settings.isVisible():
            present(self.settings)
            return self.settings
        if self.settings is not None:
            self.settings.deleteLater()  # a closed one: start from the settings as they are now
        status = self.indexer.state.status
        self.settings = SettingsDialog(self.engine, self.indexer, self.prefs, chunks=status.chunks if status else 0,
                                       ndim=self.ndim, tray_available=self.has_tray, parent=self.window)
        self.settings.applied.connect(self._settings_applied)
        self.settings.models_tab.changed.connect(self._rolled_back)
        present(self.settings)
        return self.settings

    def show_finetune(self) -> FinetuneWizard:
        """The "Improve search" wizard; one at a time, and a run still going is shown again, not restarted."""
        wizard = self.finetune
        if wizard is not None and (wizard.isVisible() or wizard.training or wizard.adopting):
            present(wizard)
            return wizard
        if wizard is not None:
            wizard.deleteLater()
        self.finetune = wizard = FinetuneWizard(self.engine, self.tasks, self.window)
        wizard.modelChanged.connect(self._model_changed)
        present(wizard)
        return wizard

    def _model_changed(self, what: str) -> None:
        self.window.show_message(f"Sift now searches with the new {what}.")
        if self.window.search.shown_query:  # results on screen come from the new model too
            self.window.search.search_now()

    def _rolled_back(self, kind: str, value: str) -> None:
        what = "search model" if kind == "embedder" else "reranker"
        self.window.show_message(f"Rolled back: Sift searches with the previous {what} ({model_name(value, mark_bundled=True)}) again."
                                 if value else "Rolled back: Sift searches without a reranker again.")
        if self.window.search.shown_query:
            self.window.search.search_now()

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Choose a folder to search", os.path.expanduser("~"))
        if folder:
            self.add_folder(folder)

    def add_folder(self, folder: str) -> None:
        self.indexer.change(lambda: self.engine.add_folder(folder), done=lambda _: self._settings_applied(),
                            error=lambda exc: QMessageBox.warning(self.window, "Sift", str(exc)))

    def _settings_applied(self) -> None:
        self.window.folders_changed()

    # -- a damaged catalog -------------------------------------------------------------------------

    def _catalog_status(self, status) -> None:
        """The engine's quick check found damage: say so once, and offer the rebuild."""
        if not status.catalog_damage or self.damage_box is not None:
            return
        box = QMessageBox(QMessageBox.Icon.Warning, "Sift's catalog is damaged",
                          "Sift's catalog, where it keeps the text of your documents, is damaged "
                          f"({status.catalog_damage}). Searches and indexing may fail until it is rebuilt.\n\n"
                          "Rebuilding indexes your folders again into a new catalog. Your opened results and "
                          "settings are kept, and the damaged file is kept aside.", parent=self.window)
        rebuild = box.addButton("Rebuild the catalog", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Later", QMessageBox.ButtonRole.RejectRole)
        box.buttonClicked.connect(lambda button: self.rebuild_catalog() if button is rebuild else None)
        self.damage_box = box
        box.open()

    def _indexing_error(self, state) -> None:
        """A new indexing error may be damage met mid-run: the status check (quick_check) tells."""
        if state.error and state.error != self._last_error and self.damage_box is None:
            self.indexer.refresh_status()
        self._last_error = state.error

    def rebuild_catalog(self) -> None:
        """Set the damaged catalog aside and index the folders again into a new one (the Rebuild button)."""
        self.window.show_message("Rebuilding the catalog: Sift is indexing your folders again …")
        self.indexer.change(lambda: self.engine.rebuild_catalog(index=False), done=self._catalog_rebuilt,
                            error=lambda exc: QMessageBox.warning(self.window, "Sift", str(exc)))

    def _catalog_rebuilt(self, result) -> None:
        done, _ = result
        where = f"; the damaged one is kept as {done.damaged}" if done.damaged else ""
        self.window.show_message(f"Sift started a new catalog{where}.")
        self.damage_box = None  # damage found again later is offered again
        self.warm_up()

    def _window_closing(self, event: QCloseEvent) -> None:
        if self._quitting:
            event.accept()
            return
        if self.tray is not None and self.prefs.keep_in_tray:
            event.ignore()
            self.save_layout()
            self.window.hide()
            if not self.prefs.told_about_tray:
                self.prefs.told_about_tray = True
                busy = self.indexer.busy or self.indexer.state.running
                what = ("Indexing goes on in the background. " if busy else
                        "It keeps your folders up to date in the background. ")
                self.tray.notify("Sift is still running", what + "Click the tray icon to search, or choose Quit "
                                 "from its menu.")
            return
        event.accept()
        self.quit()


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sift-desktop", description="Sift: private search over your documents.")
    parser.add_argument("--quick", action="store_true",
                        help="show the quick-search popup (bind this to a keyboard shortcut in your desktop)")
    parser.add_argument("--home", metavar="DIR", help="keep all of Sift's data in DIR (like SIFT_HOME)")
    parser.add_argument("--search", metavar="QUERY", help="start with this search in the window")
    parser.add_argument("--self-test", action="store_true",
                        help="check this installation (index samples offline, search, check a known hit) and exit")
    args, _qt_args = parser.parse_known_args(list(argv)[1:])
    return args


def _quit_on_signals(sift: SiftApp) -> None:
    """Ctrl+C in a terminal, or a session's SIGTERM, quits within SHUTDOWN_BUDGET_S: indexing stops
    after its step, and whatever is still running then is abandoned."""
    def quit_now(*_) -> None:
        exit_within(SHUTDOWN_BUDGET_S)
        sift.quit()

    for name in ("SIGINT", "SIGTERM"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), quit_now)
    # Python runs signal handlers only between bytecodes; a slow tick lets it while Qt waits.
    tick = QTimer(sift)
    tick.timeout.connect(lambda: None)
    tick.start(500)


def main(argv: Sequence[str] | None = None) -> int:
    multiprocessing.freeze_support()  # parse workers in a frozen (PyInstaller) app
    argv = list(sys.argv if argv is None else argv)
    args = _parse_args(argv)
    if args.self_test:  # no window: installers and packaging/build.py run it to prove the install works
        from engine.selftest import main as self_test

        return self_test()
    logging.basicConfig(level=os.environ.get("SIFT_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    QApplication.setApplicationName("Sift")
    QApplication.setApplicationDisplayName("Sift")
    QApplication.setDesktopFileName("sift")
    app = QApplication.instance() or QApplication(argv)
    app.setWindowIcon(app_icon())
    app.setQuitOnLastWindowClosed(False)  # the tray keeps us; the window's close decides

    paths = resolve_paths({"SIFT_HOME": args.home} if args.home else None)
    instance = SingleInstance(SingleInstance.key_for(paths))
    if instance.notify_running("quick" if args.quick else "show"):
        return 0
    instance.listen()
    try:
        try:
            engine = Engine.open(args.home)
        except CatalogDamagedError as exc:  # too damaged to open at all: offer the rebuild now
            answer = QMessageBox.warning(None, "Sift's catalog is damaged", f"{exc}\n\nRebuild it now?",
                                         QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                return 1
            set_aside_catalog(paths)
            engine = Engine.open(args.home)  # empty: the service indexes the folders into it
    except SiftError as exc:
        QMessageBox.critical(None, "Sift cannot start", str(exc))
        return 1
    sift = SiftApp(engine)
    instance.activated.connect(sift.activate)
    return serve(app, sift, instance=instance, quick=args.quick, search=args.search)


def serve(app: QApplication, sift: SiftApp, *, instance: SingleInstance | None = None, quick: bool = False,
          search: str | None = None) -> int:
    """Run the app until it quits, then stop everything within SHUTDOWN_BUDGET_S."""
    _quit_on_signals(sift)
    sift.start(quick=quick)
    if search:
        sift.show_search(search)
    try:
        return app.exec()
    finally:
        exit_within(SHUTDOWN_BUDGET_S)  # quit from the tray or the window: the same promise
        sift.shutdown()
        if instance is not None:
            instance.close()
        sift.engine.close()


def run() -> None:
    """The `sift-desktop` command: main(), then exit without the interpreter's final teardown.

    PySide6 on Python 3.11 can abort in that last garbage collection ("Fatal Python error:
    bool_dealloc") after everything has been saved and closed; the exit code must say what
    main() said, not that."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
