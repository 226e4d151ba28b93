"""The one way to run engine work off the GUI thread and get its result back on the main thread.

Every GUI action that touches the engine goes through `Tasks.run`: the function runs on a
worker thread, and its result (or error) is handed to a callback on the GUI thread, in the
order the work finished. Work belongs to a *lane*:

- ``"search"``: one thread, for searches, previews and model warm-up. A task given a ``key``
  supersedes the earlier task with the same key: if that one has not started it never runs, and
  if it is running its result is dropped. Typing fast therefore costs one search, not twenty,
  and a slow old search can never overwrite the results of a newer one.
- ``"keywords"``: one thread, for keyword-only searches that need no model (shown while a
  search by meaning waits for the model, which indexing may be using).
- ``"work"``: a few threads, for indexing, settings changes, clicks and opening files.

`engine.errors.Cancelled` is not an error: a cancelled task delivers nothing (Anki's rule).
Plain Python threads are used (not QThreadPool) so `shutdown` joins them all and tests can
check that none is left running.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal

from engine import Cancelled

log = logging.getLogger(__name__)

LANES = {"search": 1, "keywords": 1, "work": 3}


class Task:
    """A handle on one piece of background work."""

    def __init__(self, *, id: int, fn: Callable[[], Any], key: str | None, lane: str, name: str,
                 done: Callable[[Any], None] | None, error: Callable[[BaseException], None] | None,
                 on_cancel: Callable[[], None] | None) -> None:
        self.id, self.fn, self.key, self.lane, self.name = id, fn, key, lane, name or getattr(fn, "__name__", "task")
        self.done, self.error, self.on_cancel = done, error, on_cancel
        self._cancelled = threading.Event()
        self.started = threading.Event()
        self.finished = False  # set on the GUI thread once delivered (or dropped)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Drop this task's result; if it is running and has a cancel hook (engine.cancel), call it."""
        if self._cancelled.is_set():
            return
        self._cancelled.set()
        if self.started.is_set() and self.on_cancel is not None and not self.finished:
            try:
                self.on_cancel()
            except Exception:  # a cancel hook must never take the GUI down
                log.exception("cancel hook of %s failed", self.name)

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else "finished" if self.finished else "running" if self.started.is_set() else "queued"
        return f"<Task {self.id} {self.name} {state}>"


class Tasks(QObject):
    """Runs callables on worker threads and delivers their outcome on the GUI thread."""

    #: every task, once its callback has run or its result was dropped (tests wait on this)
    taskFinished = Signal(object)
    #: an uncaught error of a task without an error callback: (task, exception)
    taskFailed = Signal(object, object)
    _relay = Signal(object, object, object)  # task, result, exception; emitted on a worker thread

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ids = itertools.count(1)
        self._pools = {lane: ThreadPoolExecutor(max_workers=n, thread_name_prefix=f"sift-{lane}")
                       for lane, n in LANES.items()}
        self._latest: dict[str, Task] = {}
        self._pending: dict[int, Task] = {}
        self._closed = False
        self._relay.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    @property
    def closed(self) -> bool:
        """Shut down: no more work is taken (late signals at quit must not start any)."""
        return self._closed

    def run(self, fn: Callable[[], Any], *, done: Callable[[Any], None] | None = None,
            error: Callable[[BaseException], None] | None = None, key: str | None = None,
            lane: str = "work", name: str = "", on_cancel: Callable[[], None] | None = None) -> Task:
        """Run `fn()` on a worker; then `done(result)` or `error(exc)` on the GUI thread."""
        if self._closed:
            raise RuntimeError("Tasks.run after shutdown")
        task = Task(id=next(self._ids), fn=fn, key=key, lane=lane, name=name, done=done, error=error,
                    on_cancel=on_cancel)
        if key is not None:
            previous = self._latest.get(key)
            if previous is not None:
                previous.cancel()
            self._latest[key] = task
        self._pending[task.id] = task
        self._pools[lane].submit(self._work, task)
        return task

    def _work(self, task: Task) -> None:
        """On a worker thread."""
        if task.cancelled:  # superseded before it started: skip the work entirely
            self._relay.emit(task, None, None)
            return
        task.started.set()
        result: Any = None
        exc: BaseException | None = None
        try:
            result = task.fn()
        except BaseException as e:  # delivered to the GUI thread, never lost on a worker
            exc = e
        self._relay.emit(task, result, exc)

    def _deliver(self, task: Task, result: Any, exc: BaseException | None) -> None:
        """On the GUI thread."""
        task.finished = True
        self._pending.pop(task.id, None)
        if task.key is not None and self._latest.get(task.key) is task:
            del self._latest[task.key]
        try:
            if task.cancelled or self._closed or isinstance(exc, Cancelled):
                return  # stale or cancelled: nothing to deliver
            if exc is not None:
                if task.error is not None:
                    task.error(exc)
                else:
                    log.error("background task %s failed", task.name, exc_info=exc)
                    self.taskFailed.emit(task, exc)
            elif task.done is not None:
                task.done(result)
        finally:
            self.taskFinished.emit(task)

    # -- queries and shutdown -------------------------------------------------------------------

    def pending(self, lane: str | None = None) -> list[Task]:
        """Tasks queued or running whose outcome has not been delivered yet."""
        return [t for t in self._pending.values() if lane is None or t.lane == lane]

    def is_idle(self) -> bool:
        return not self._pending

    def cancel(self, key: str) -> None:
        task = self._latest.get(key)
        if task is not None:
            task.cancel()

    def shutdown(self) -> None:
        """Cancel everything, wait for running work to stop, and join every worker thread."""
        if self._closed:
            return
        for task in list(self._pending.values()):
            task.cancel()
        self._closed = True
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()
        self._latest.clear()
