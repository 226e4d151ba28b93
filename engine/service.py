"""Continuous background indexing for the GUI and `sift watch`: watch, debounce, index, rescan."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from engine.errors import Cancelled, SiftError
from engine.indexer import offline_roots
from engine.parse.runner import ParseRunner
from engine.types import Progress
from engine.watch import MAX_PENDING, MAX_WAIT_S, QUIET_S, Batch, DirtyQueue, FolderWatcher

if TYPE_CHECKING:
    from engine.engine import Engine

log = logging.getLogger(__name__)

ROOT_CHECK_S = 2.0   # how often to look for folders that went offline, came back, or were added
RETRY_S = 10.0       # after an error (disk full, another Sift indexing): try again this much later
RUNNER_IDLE_S = 60.0  # parse workers idle this long are stopped (they hold parser libraries' memory)
NICE = 10            # added to the indexing thread's niceness with the low_priority setting


def start_service(engine: Engine, **options) -> IndexService:
    """Index the engine's folders continuously in the background: a full pass now, then whatever changes.

    Folders are watched live (when the `watch` setting is on), rescanned every
    `reconcile_interval_min`, and followed when they go offline and come back. Progress,
    pause and resume go through the returned service; `engine.progress()` shows its snapshot
    and `engine.close()` stops it. Options go to IndexService (for tests and tools). Calling it
    again returns the running one.
    """
    running = engine.service
    if isinstance(running, IndexService):
        return running
    service = IndexService(engine, **options)
    service.start()
    return service


class IndexService:
    """Indexes one Engine's folders continuously on a background thread.

    It starts with a full pass (changes made while Sift was not running), then indexes what the
    folder watcher reports, in debounced batches, and rescans everything every
    `reconcile_interval_min` and whenever events were lost. Folders that disappear are marked
    offline (their files are kept) and rescanned when they return. Errors such as a full disk
    are shown in `progress().error` and retried every `retry_s` seconds: nothing is dropped.
    """

    def __init__(self, engine: Engine, *, watch: bool | None = None, low_priority: bool | None = None,
                 reconcile_interval_s: float | None = None, quiet_s: float = QUIET_S,
                 max_wait_s: float = MAX_WAIT_S, max_pending: int = MAX_PENDING,
                 root_check_s: float = ROOT_CHECK_S, retry_s: float = RETRY_S) -> None:
        config = engine.config
        self.engine = engine
        self.watch_enabled = config.watch if watch is None else watch
        self.low_priority = config.low_priority if low_priority is None else low_priority
        if reconcile_interval_s is None:
            reconcile_interval_s = config.reconcile_interval_min * 60.0
        self.reconcile_interval_s = reconcile_interval_s  # 0: never (only at start and when needed)
        self.root_check_s = root_check_s
        self.retry_s = retry_s
        self.queue = DirtyQueue(quiet_s=quiet_s, max_wait_s=max_wait_s, max_pending=max_pending)
        paths = engine.paths
        self.watcher = FolderWatcher(self.queue, ignore=[paths.data, paths.cache, paths.config, paths.logs])
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = False
        self._paused = False
        self._holds = 0
        self._busy = False
        self._idle = threading.Condition(self._lock)
        self._run_progress: Progress | None = None  # the indexer's latest, while a run is going
        self._offline: tuple[str, ...] = ()
        self._error = ""
        self._retry_at = 0.0
        self._next_reconcile = 0.0
        self._roots: list[str] = []
        self._runner: ParseRunner | None = None
        self._runner_key: tuple | None = None
        self._runner_used = 0.0
        self.runs = 0            # indexing runs finished (for tests and the curious)
        self.full_runs = 0

    # -- control -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("this IndexService was already started")
        self.engine.attach_service(self)
        self.queue.request_full("Sift started: changes made while it was not running")
        self._thread = threading.Thread(target=self._main, name="sift-index-service", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop watching and indexing; the batch in flight is cancelled at its next step."""
        self.engine.detach_service(self)
        with self._lock:
            self._stopping = True
            busy = self._busy
        if busy:
            self.engine.cancel()
        self.queue.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the indexing service did not stop within %g s", timeout)
        self.watcher.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def pause(self) -> None:
        """Stop indexing soon (after the file in hand); changes keep being noted meanwhile."""
        with self._lock:
            self._paused = True
            busy = self._busy
        if busy:
            self.engine.cancel()

    def resume(self) -> None:
        with self._lock:
            self._paused = False
        self.queue.wake()

    @property
    def paused(self) -> bool:
        return self._paused

    def rescan(self, reason: str = "asked for") -> None:
        """Look at every folder again soon (the "Index now" button)."""
        self.queue.request_full(reason)

    @contextmanager
    def held(self, timeout: float = 60.0) -> Iterator[None]:
        """No indexing inside this block (the run in flight is cancelled and waited for)."""
        with self._lock:
            self._holds += 1
            busy = self._busy
        if busy:
            self.engine.cancel()
        try:
            with self._idle:
                self._idle.wait_for(lambda: not self._busy, timeout)
            yield
        finally:
            with self._lock:
                self._holds -= 1
            self.queue.wake()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or being indexed; False if that did not happen in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._idle:
                self._idle.wait_for(lambda: not self._busy, max(0.0, deadline - time.monotonic()))
                if not self._busy and self.queue.pending == 0:
                    return True
            time.sleep(0.05)  # polling the queue, which watchdog threads fill without this lock
        return False

    # -- the snapshot ------------------------------------------------------------------------

    def progress(self) -> Progress:
        """What the service is doing now; cheap, callable from any thread."""
        with self._lock:
            run, paused, error = self._run_progress, self._paused, self._error
            busy, offline = self._busy, self._offline
        watching = bool(self.watcher.watched)
        base = run if (busy and run is not None) else Progress(phase="watching" if watching else "idle")
        phase = base.phase
        if not busy:
            phase = "paused" if paused else "error" if error else phase
        return dataclasses.replace(base, phase=phase, files_queued=self.queue.pending, paused=paused,
                                   watching=watching, offline=offline, error=error)

    # -- the thread --------------------------------------------------------------------------

    def _main(self) -> None:
        if self.low_priority:
            _lower_priority()
        next_root_check = 0.0
        try:
            while not self._stopping:
                now = time.monotonic()
                if now >= next_root_check:
                    self._check_roots()
                    next_root_check = now + self.root_check_s
                if self.reconcile_interval_s and self._next_reconcile and now >= self._next_reconcile:
                    self.queue.request_full("the periodic rescan")
                    self._next_reconcile = 0.0
                batch = None
                with self._lock:  # taking a batch and becoming busy is one step for wait_idle()
                    if not (self._paused or self._holds or now < self._retry_at or self._stopping):
                        batch = self.queue.take()
                        self._busy = batch is not None
                        self._run_progress = None
                if batch is None:
                    if self._runner is not None and now - self._runner_used > RUNNER_IDLE_S:
                        self._close_runner()
                    with self._idle:
                        self._idle.notify_all()
                    wake = [next_root_check]
                    if not (self._paused or self._holds):
                        wake += [self.queue.due_at() or next_root_check, self._retry_at or next_root_check]
                    if self._next_reconcile:
                        wake.append(self._next_reconcile)
                    self.queue.wait(min(wake) - time.monotonic())
                    continue
                self._index(batch)
        except Exception:
            log.exception("the indexing service stopped on an unexpected error")
            with self._lock:
                self._error = "Background indexing stopped on an unexpected error; restart Sift (details in its log)."
        finally:
            self._close_runner()
            with self._idle:
                self._busy = False
                self._idle.notify_all()
            self.engine.catalog.close()  # this thread's connection

    def _index(self, batch: Batch) -> None:
        if batch.full:
            log.info("rescanning every folder: %s", "; ".join(batch.reasons))
        try:
            if self.low_priority:
                _fewer_torch_threads()  # torch may have loaded since the last run
            self.engine.index(paths=None if batch.full else batch.paths, on_progress=self._on_progress,
                              parse_runner=self._parse_runner())
        except Cancelled:
            self.queue.put_back(batch)  # paused, held or stopping: the work waits
        except SiftError as exc:
            # A full disk, another Sift indexing the same home, a model that will not load:
            # keep the work, say why, and try again later (a freed disk resumes by itself).
            log.warning("indexing paused: %s", exc)
            self.queue.put_back(batch)
            with self._lock:
                self._error = str(exc)
            self._retry_at = time.monotonic() + self.retry_s
        except Exception as exc:
            log.exception("indexing failed; everything will be rescanned in %g s", self.retry_s)
            self.queue.request_full("the last run failed")
            with self._lock:
                self._error = f"Indexing failed unexpectedly ({exc!r}); retrying. Details are in Sift's log."
            self._retry_at = time.monotonic() + self.retry_s
        else:
            with self._lock:
                self._error = ""
            self._retry_at = 0.0
            self.runs += 1
            if batch.full:
                self.full_runs += 1
                if self.reconcile_interval_s:
                    self._next_reconcile = time.monotonic() + self.reconcile_interval_s
        finally:
            self._runner_used = time.monotonic()
            with self._idle:
                self._busy = False
                self._idle.notify_all()

    def _parse_runner(self) -> ParseRunner | None:
        """The service's parse workers, kept between batches: starting them costs a second each."""
        config = self.engine.config
        key = (config.parse_workers, config.parse_timeout_s, config.max_file_bytes, config.max_text_bytes)
        if config.parse_workers == 0:
            return None
        if self._runner is None or self._runner_key != key:
            self._close_runner()
            self._runner = ParseRunner(workers=config.parse_workers, timeout_s=config.parse_timeout_s,
                                       max_bytes=config.max_file_bytes, max_text_bytes=config.max_text_bytes)
            self._runner_key = key
        return self._runner

    def _close_runner(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.close()

    def _on_progress(self, p: Progress) -> None:
        with self._lock:
            self._run_progress = p
            stop = self._stopping or self._paused or self._holds
        if stop:
            # pause() may have come just before the run began (which clears the cancel flag).
            self.engine.cancel()

    def _check_roots(self) -> None:
        """Follow folders going offline and coming back, added and removed, and dead observers."""
        roots = self.engine.roots()
        offline = offline_roots(roots, self.engine.catalog)
        watchable = [r for r in self.engine.config.folders if r not in offline] if self.watch_enabled else []
        for root in self.watcher.broken():
            log.info("the watch on %s was lost; watching it again and rescanning it", root)
            self.watcher.unwatch(root)
            if root not in offline:
                self.queue.add(root)
        for root in set(self.watcher.watched) - set(watchable):
            self.watcher.unwatch(root)
        for root in watchable:
            if root not in self.watcher.watched:
                self.watcher.watch(root)
        previous_roots, previous_offline = self._roots, self._offline
        back = [r for r in previous_offline if r in roots and r not in offline]
        added = [r for r in roots if r not in previous_roots] if previous_roots else []
        for root in back:
            log.info("folder %s is back: rescanning it", root)
        if back or added:
            self.queue.add_many(back + added)
        for root in offline:
            if root not in previous_offline:
                log.warning("folder %s is not there (unplugged or unmounted?): its files are kept", root)
        with self._lock:
            self._roots = roots
            self._offline = tuple(offline)


def _lower_priority() -> None:
    """Make indexing yield to everything else: this thread (and the parse workers it starts)
    gets a higher niceness, and torch, if loaded, fewer threads."""
    if sys.platform.startswith("linux"):
        # Linux keeps a niceness per thread, and a process started from this thread inherits
        # it; elsewhere setpriority would slow the whole app, the GUI included.
        try:
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + NICE))
        except (OSError, AttributeError) as exc:
            log.info("could not lower the indexing priority: %s", exc)
    _fewer_torch_threads()


def _fewer_torch_threads() -> None:
    """Half the cores for torch (shared with search, whose queries are small), if it is loaded."""
    # While another thread is still importing torch, sys.modules holds a half-made module: leave
    # it, the next run applies this.
    get_threads = getattr(sys.modules.get("torch"), "get_num_threads", None)
    set_threads = getattr(sys.modules.get("torch"), "set_num_threads", None)
    if get_threads is None or set_threads is None:
        return
    wanted = max(1, (os.cpu_count() or 2) // 2)
    if get_threads() > wanted:
        set_threads(wanted)
