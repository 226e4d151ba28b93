"""Opening results: the system viewer at the right page, the containing folder, and click recording."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QObject, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication

from desktop.tasks import Tasks
from engine import Engine, Hit

log = logging.getLogger(__name__)

Which = Callable[[str], str | None]

# Linux PDF viewers that can open at a page, by the executable of the default application:
# (executable, arguments before the path given the page number).
_PAGE_ARGS: dict[str, Callable[[int], list[str]]] = {
    "evince": lambda n: [f"--page-label={n}"],
    "atril": lambda n: [f"--page-label={n}"],
    "xreader": lambda n: [f"--page-label={n}"],
    "okular": lambda n: ["-p", str(n)],
    "zathura": lambda n: ["-P", str(n)],
    "qpdfview": lambda n: [],  # takes path#page instead; handled below
    "SumatraPDF": lambda n: ["-page", str(n)],
}
# Guesses from a .desktop file name (xdg-mime's answer) to an executable.
_DESKTOP_HINTS = (("evince", "evince"), ("papers", "evince"), ("atril", "atril"), ("xreader", "xreader"),
                  ("okular", "okular"), ("zathura", "zathura"), ("qpdfview", "qpdfview"))


def _run_quiet(args: Sequence[str], *, timeout: float = 2.0) -> str:
    try:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _default_pdf_viewer_linux(which: Which) -> str | None:
    """The executable of the user's default PDF application, when it is one that takes a page."""
    if not which("xdg-mime"):
        return None
    desktop = _run_quiet(["xdg-mime", "query", "default", "application/pdf"]).lower()
    for hint, exe in _DESKTOP_HINTS:
        if hint in desktop and which(exe):
            return exe
    return None


def open_commands(path: str, page: int | None, *, platform: str = sys.platform, which: Which = shutil.which,
                  default_viewer: Callable[[], str | None] | None = None) -> list[list[str]]:
    """Commands to try, best first, to open `path` (at `page` for a PDF). Empty: use the desktop's default."""
    is_pdf = path.lower().endswith(".pdf")
    commands: list[list[str]] = []
    if platform.startswith("linux") or "bsd" in platform:
        if is_pdf and page:
            exe = (default_viewer or (lambda: _default_pdf_viewer_linux(which)))()
            if exe == "qpdfview":
                commands.append([exe, "--unique", f"{path}#{page}"])
            elif exe:
                commands.append([exe, *_PAGE_ARGS[exe](page), path])
        if which("xdg-open"):
            commands.append(["xdg-open", path])
    elif platform == "darwin":
        if is_pdf and page:
            # Preview has no page argument; open the file, then ask it to go to the page.
            script = ('on run argv\n tell application "Preview" to open POSIX file (item 1 of argv)\n'
                      ' delay 0.5\n tell application "System Events" to tell process "Preview"\n'
                      '  keystroke "g" using {option down, command down}\n'
                      '  keystroke (item 2 of argv)\n  keystroke return\n end tell\nend run')
            commands.append(["osascript", "-e", script, path, str(page)])
        commands.append(["open", path])
    elif platform == "win32":
        sumatra = which("SumatraPDF") or which("SumatraPDF.exe")
        if not sumatra:
            for base in (os.environ.get("LOCALAPPDATA", ""), os.environ.get("ProgramFiles", "")):
                candidate = Path(base) / "SumatraPDF" / "SumatraPDF.exe"
                if base and candidate.is_file():
                    sumatra = str(candidate)
                    break
        if is_pdf and page and sumatra:
            commands.append([sumatra, "-reuse-instance", "-page", str(page), path])
    return commands


def reveal_commands(path: str, *, platform: str = sys.platform, which: Which = shutil.which) -> list[list[str]]:
    """Commands to show `path` selected in the file manager (else its folder opens by URL)."""
    if platform == "darwin":
        return [["open", "-R", path]]
    if platform == "win32":
        return [["explorer", f"/select,{os.path.normpath(path)}"]]
    commands = []
    if which("dbus-send"):  # Nautilus, Dolphin, Nemo, Caja… select the file via FileManager1
        commands.append(["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.FileManager1",
                         "/org/freedesktop/FileManager1", "org.freedesktop.FileManager1.ShowItems",
                         f"array:string:{QUrl.fromLocalFile(path).toString()}", "string:"])
    return commands


class SystemOpener:
    """Opens files and folders with the desktop's applications. Tests pass a fake with the same methods."""

    def open(self, path: str, page: int | None = None) -> None:
        for command in open_commands(path, page):
            if self._spawn(command):
                return
        self._open_url(path)

    def reveal(self, path: str) -> None:
        for command in reveal_commands(path):
            if self._spawn(command, wait=command[0] == "dbus-send"):
                return
        self._open_url(os.path.dirname(path))

    @staticmethod
    def _spawn(command: list[str], *, wait: bool = False) -> bool:
        try:
            if wait:  # dbus-send answers at once; its status says whether a file manager took it
                return subprocess.run(command, capture_output=True, timeout=3, check=False).returncode == 0
            subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
            return True
        except (OSError, subprocess.SubprocessError) as exc:
            log.info("could not run %s: %s", command[0], exc)
            return False

    @staticmethod
    def _open_url(path: str) -> None:
        if sys.platform == "win32":
            os.startfile(path)  # noqa: S606 - the shell's default application, as Explorer would
            return
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(path)):
            raise OSError(f"No application is set up to open {path}. Open it from your file manager.")


class ResultActions(QObject):
    """What a person can do with a result: open it (recording the click), show its folder, copy its path."""

    opened = Signal(str, object)   # query, Hit: after the viewer was asked to open it
    failed = Signal(str)           # a message to show

    def __init__(self, engine: Engine, tasks: Tasks, opener=None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine, self.tasks = engine, tasks
        self.opener = opener if opener is not None else SystemOpener()

    def open(self, query: str, hit: Hit, *, rank: int, shown: Sequence[Hit]) -> None:
        """Open at the hit's page and record the click (the fine-tune wizard's training data)."""
        shown = tuple(shown)
        page = hit.page if hit.kind == "pdf" or hit.path.lower().endswith(".pdf") else None

        def work() -> None:
            self.opener.open(hit.path, page)
            if query.strip():
                self.engine.record_click(query, hit, rank=rank, shown=shown)

        self.tasks.run(work, done=lambda _: self.opened.emit(query, hit), error=self._error, name="open")

    def reveal(self, target: Hit | str) -> None:
        """Show a result (or any path) selected in the file manager."""
        path = target if isinstance(target, str) else target.path
        self.tasks.run(lambda: self.opener.reveal(path), error=self._error, name="reveal")

    def copy_path(self, hit: Hit) -> None:
        QGuiApplication.clipboard().setText(hit.path)

    def _error(self, exc: BaseException) -> None:
        self.failed.emit(str(exc))
