"""Background indexing for the GUI: start, pause, resume, settings changes, and progress polled from the engine.

Two ways to index, one interface:

- the engine's background service (`engine.start_service`): a thread that indexes, watches the
  folders live and rescans them; the GUI polls `engine.progress()` and asks it to pause,
  resume, rescan or hold still;
- without a service (tests that ask for it): `engine.index()` as a
  background task; pausing cancels the run after its batch, resuming starts a new run, which
  skips what is already done.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from PySide6.QtCore import QObject, QTimer, Signal

from desktop.tasks import Task, Tasks
from engine import Engine, IndexReport, Progress, StatusReport, start_service

log = logging.getLogger(__name__)

POLL_MS = 250
RUNNING_PHASES = ("scanning", "indexing", "saving")


@dataclass(frozen=True, slots=True)
class IndexState:
    """What the status bar and the indexing panel show."""

    running: bool = False
    paused: bool = False
    progress: Progress = Progress()
    report: IndexReport | None = None     # of the last finished run (task mode only)
    error: str = ""                       # why indexing stopped or waits, if it does
    status: StatusReport | None = None    # counts and problem files, refreshed after each run


class Indexer(QObject):
    """Keeps the index up to date in the background and reports on the GUI thread."""

    changed = Signal(object)         # IndexState, on every poll and transition
    finished = Signal(object)        # a run completed: its IndexReport, or None from the service
    statusChanged = Signal(object)   # StatusReport

    def __init__(self, engine: Engine, tasks: Tasks, parent: QObject | None = None, *,
                 use_service: bool | None = None, service_options: dict | None = None) -> None:
        super().__init__(parent)
        self.engine, self.tasks = engine, tasks
        self.use_service = True if use_service is None else use_service
        self.service_options = service_options or {}
        self.service = None
        self._service_starting = False
        self._runs_seen = 0
        self._task: Task | None = None
        self._again = False              # task mode: run once more when this run ends
        self._changes: list[tuple] = []  # settings changes waiting for indexing to stop
        self._changing = False
        self._resume_after_change = False
        self.state = IndexState()
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)

    # -- control --------------------------------------------------------------------------------

    def start(self) -> None:
        """Index now (the service: start it, or rescan every folder; task mode: run, or run again after)."""
        if self.use_service:
            if self.service is not None:
                self.service.rescan("asked for")
                self._poll()
            elif not self._service_starting:
                self._service_starting = True
                self._set(running=True, progress=Progress(phase="scanning"))
                engine, options = self.engine, self.service_options
                # Starting it sets up folder watches, which can take a while on big trees.
                self.tasks.run(lambda: start_service(engine, **options), done=self._service_started,
                               error=self._service_failed, name="start indexing service")
            return
        if self._task is not None or self._changing:
            self._again = True
            return
        self._again = False
        self._set(running=True, paused=False, error="", progress=Progress(phase="scanning"))
        self._task = self.tasks.run(self.engine.index, done=self._done, error=self._failed, name="index",
                                    on_cancel=self.engine.cancel)
        self.tasks.taskFinished.connect(self._task_finished)
        self._timer.start()

    def pause(self) -> None:
        if self.service is not None:
            self.service.pause()
            self._poll()
            return
        if self._task is None:
            return
        self._again = False
        self._task.cancel()   # engine.cancel(): stops after the current batch, nothing committed is lost
        self._set(running=False, paused=True, progress=self.engine.progress())

    def resume(self) -> None:
        if self.service is not None:
            self.service.resume()
            self._poll()
        elif self.state.paused and self._task is None:
            self.start()
        elif self.state.paused:
            self._again = True  # the paused run is still winding down; go on right after it
            self._set(paused=False)

    def toggle_pause(self) -> None:
        self.resume() if self.state.paused else self.pause()

    def stop(self) -> None:
        """Stop the background service (at quit); waits for its batch in flight to stop."""
        self._timer.stop()
        self.service = None
        if self.use_service:
            self.engine.stop_service()  # also one whose start was still being delivered

    def change(self, fn, *, done=None, error=None, reindex: bool = True) -> None:
        """Run a change of folders or settings on a worker while indexing holds still, then index again.

        Folders must not be removed under a running index, so a run in progress is stopped
        first (it keeps what it committed) and the change runs once it has wound down.
        """
        self._changes.append((fn, done, error, reindex))
        if self._task is not None:
            self._resume_after_change = not self.state.paused
            self._again = False
            self._task.cancel()
        elif not self._changing:
            self._run_changes()

    def _run_changes(self) -> None:
        batch, self._changes = self._changes, []
        self._changing = True
        service = self.service

        def work() -> list[tuple[bool, object]]:
            outcomes = []
            for fn, *_ in batch:
                try:
                    if service is not None:
                        with service.held():  # the service's run in flight is cancelled and waited for
                            outcomes.append((True, fn()))
                    else:
                        outcomes.append((True, fn()))
                except Exception as exc:  # each change reports its own error; the others still apply
                    outcomes.append((False, exc))
            if service is not None and any(ok and b[3] for (ok, _), b in zip(outcomes, batch)):
                service.rescan("settings or folders changed")
            return outcomes

        def finished(outcomes) -> None:
            self._changing = False
            wants_index = False
            for (_fn, done, error, reindex), (ok, value) in zip(batch, outcomes):
                callback = done if ok else error
                if callback is not None:
                    callback(value)
                elif not ok:
                    log.warning("settings change failed: %s", value)
                wants_index = wants_index or (ok and reindex)
            if self._changes:
                self._run_changes()
                return
            if self.use_service:
                if self.service is None and wants_index and not self._service_starting:
                    self.start()   # (a running service was asked to rescan by the worker)
            elif wants_index or self._resume_after_change:
                self._resume_after_change = False
                self._set(paused=False)
                self.start()
            self._poll()
            self.refresh_status()

        self.tasks.run(work, done=finished, name="apply settings")

    def retry(self, paths: list[str]) -> None:
        """Index these problem files again, then the rest as usual."""
        engine = self.engine
        self.change(lambda: engine.retry(paths), error=self._failed)

    @property
    def busy(self) -> bool:
        """Indexing (or about to): a run is going, or a settings change is being applied."""
        if self.use_service:
            return self._service_starting or self._changing or self.state.running
        return self._task is not None or self._changing

    def refresh_status(self) -> None:
        """Ask the engine for counts and problem files (off the GUI thread)."""
        self.tasks.run(self.engine.status, done=self._status, key="status", name="status")

    # -- callbacks on the GUI thread --------------------------------------------------------------

    def _service_started(self, service) -> None:
        self._service_starting = False
        self.service = service
        self._runs_seen = 0  # its first run (the start-up pass) counts as finished too
        self._timer.start()
        self._poll()

    def _service_failed(self, exc: BaseException) -> None:
        self._service_starting = False
        self._failed(exc)
        self._set(running=False)

    def _poll(self) -> None:
        service = self.service
        if service is not None:
            p = self.engine.progress()
            # Until its first pass is done the service is at work even between progress reports.
            first_pass = service.runs == 0 and not p.paused and not p.error
            running = p.phase in RUNNING_PHASES or first_pass
            self._set(progress=p, running=running, paused=p.paused, error=p.error)
            if service.runs != self._runs_seen:
                self._runs_seen = service.runs
                self.finished.emit(None)
                self.refresh_status()
        elif self._task is not None and not self.state.paused:
            self._set(progress=self.engine.progress())

    def _done(self, report: IndexReport) -> None:
        self._set(report=report, progress=self.engine.progress())
        self.finished.emit(report)

    def _failed(self, exc: BaseException) -> None:
        log.warning("indexing failed: %s", exc)
        self._set(error=str(exc))

    def _task_finished(self, task: Task) -> None:
        if task is not self._task:
            return
        self.tasks.taskFinished.disconnect(self._task_finished)
        self._task = None
        self._timer.stop()
        self._set(running=False, progress=self.engine.progress())
        if self._changes:
            self._run_changes()
            return
        self.refresh_status()
        if self._again:
            self.start()

    def _status(self, status: StatusReport) -> None:
        self._set(status=status)
        self.statusChanged.emit(status)

    def _set(self, **changes) -> None:
        new = replace(self.state, **changes)
        if new != self.state:
            old, self.state = self.state, new
            self.changed.emit(new)
            # A batch with files that could not be read was committed: the problem list follows
            # at once, so the panel never shows "3 failed" over an empty list of problem files.
            if new.progress.files_failed != old.progress.files_failed and new.progress.files_failed:
                self.refresh_status()

