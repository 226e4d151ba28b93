"""Watchdog observers over the chosen folders, feeding a debounced queue of changed paths."""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from engine.indexer import is_within
from engine.parse import SUPPORTED_SUFFIXES

log = logging.getLogger(__name__)

# watchdog 7 warns when a folder created during a burst is watched twice (harmless: it keeps
# one watch), and each warning prints its whole watch table, kilobytes per folder.
warnings.filterwarnings("ignore", message=r"Callback with id '.*' (already exists|does not exist)",
                        category=RuntimeWarning, module=r"watchdog\.")

# A batch goes to the indexer once events pause this long (an editor's save dance, one `cp`)…
QUIET_S = 0.5
# …or once its oldest event is this old, so an unzip of 10,000 files is indexed as it lands.
MAX_WAIT_S = 5.0
# More changed paths than this are not worth remembering one by one: a full rescan costs less
# than the memory, and it is also what a lost event needs.
MAX_PENDING = 200_000

# Opening and reading a file (as the indexer does) must not look like a change, and a folder's
# own "modified" event only repeats what the events of its entries say.
WATCHED_EVENTS = [FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileAttribEvent, FileDeletedEvent,
                  FileMovedEvent, DirCreatedEvent, DirDeletedEvent, DirMovedEvent]


@dataclass(frozen=True, slots=True)
class Batch:
    """Work for one indexing run: every folder (full) or the paths that changed."""

    full: bool
    paths: tuple[str, ...]
    reasons: tuple[str, ...] = ()


class DirtyQueue:
    """Changed paths, coalesced: a burst of events becomes one batch once things go quiet.

    Thread-safe: watchdog's threads add, the indexing service takes.
    """

    def __init__(self, *, quiet_s: float = QUIET_S, max_wait_s: float = MAX_WAIT_S,
                 max_pending: int = MAX_PENDING, clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet_s = quiet_s
        self.max_wait_s = max_wait_s
        self.max_pending = max_pending
        self._clock = clock
        self._cond = threading.Condition()
        self._paths: set[str] = set()
        self._full_reasons: list[str] = []
        self._first: float | None = None  # when the oldest pending change arrived
        self._last: float | None = None   # when the newest did

    def add(self, path: str) -> None:
        self.add_many((path,))

    def add_many(self, paths: Iterable[str]) -> None:
        with self._cond:
            if not self._full_reasons:
                self._paths.update(paths)
                if len(self._paths) > self.max_pending:
                    self._paths.clear()
                    self._full_reasons.append(f"more than {self.max_pending:,} changes at once")
            self._touch()

    def request_full(self, reason: str) -> None:
        """Ask for a rescan of every folder (events were lost, or it is time for one)."""
        with self._cond:
            self._paths.clear()  # the full rescan covers them
            self._full_reasons.append(reason)
            self._touch()

    def put_back(self, batch: Batch) -> None:
        """Return a batch that could not be finished (cancelled, disk full) for a later try."""
        if batch.full:
            for reason in batch.reasons or ("an earlier rescan did not finish",):
                self.request_full(reason)
        elif batch.paths:
            self.add_many(batch.paths)

    def _touch(self) -> None:
        now = self._clock()
        self._first = now if self._first is None else self._first
        self._last = now
        self._cond.notify_all()

    @property
    def pending(self) -> int:
        """Paths waiting (a pending full rescan counts as one)."""
        with self._cond:
            return len(self._paths) + bool(self._full_reasons)

    @property
    def full_pending(self) -> bool:
        with self._cond:
            return bool(self._full_reasons)

    def due_at(self) -> float | None:
        """When the pending changes become a batch (clock time), or None when nothing is pending."""
        with self._cond:
            return self._due_at()

    def _due_at(self) -> float | None:
        if self._first is None or self._last is None:
            return None
        return min(self._last + self.quiet_s, self._first + self.max_wait_s)

    def take(self, *, force: bool = False) -> Batch | None:
        """The pending changes as one batch when due (or at once with force), else None."""
        with self._cond:
            due = self._due_at()
            if due is None or (not force and self._clock() < due):
                return None
            batch = Batch(full=bool(self._full_reasons), paths=() if self._full_reasons else tuple(sorted(self._paths)),
                          reasons=tuple(dict.fromkeys(self._full_reasons)))
            self._paths.clear()
            self._full_reasons.clear()
            self._first = self._last = None
            return batch

    def wait(self, timeout: float) -> None:
        """Sleep until something is added or timeout passes (whichever first)."""
        with self._cond:
            self._cond.wait(max(0.0, timeout))

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class _Handler(FileSystemEventHandler):
    """Turns one folder's events into dirty paths, spelled as the user chose the folder."""

    def __init__(self, root: str, watched: str, queue: DirtyQueue, ignore: Sequence[str]) -> None:
        self.root = root
        self.watched = watched  # the folder's real path, which is what inotify reports
        self.queue = queue
        self.ignore = list(ignore)

    def dispatch(self, event: FileSystemEvent) -> None:
        paths = [event.src_path]
        if getattr(event, "dest_path", ""):
            paths.append(event.dest_path)
        dirty = []
        for raw in paths:
            path = os.fsdecode(raw)
            if self.watched != self.root:
                if not is_within(path, [self.watched]):
                    continue
                path = self.root + path[len(self.watched):]
            if self.ignore and is_within(path, self.ignore):
                continue  # Sift's own files (its data folder inside a chosen folder)
            if not event.is_directory and os.path.splitext(path)[1].lower() not in SUPPORTED_SUFFIXES:
                continue  # not a kind of file Sift reads: a temp file, a lock file, a download part
            dirty.append(path)
        if dirty:
            self.queue.add_many(dirty)


class _WatchdogAlarm(logging.Handler):
    """watchdog only logs when the kernel drops events (an inotify queue overflow) or when it
    cannot re-add watches; those records become a full rescan, since events were lost."""

    def __init__(self, on_alarm: Callable[[str], None]) -> None:
        super().__init__(level=logging.WARNING)
        self.on_alarm = on_alarm

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        if "overflow" in message.lower() or record.levelno >= logging.ERROR:
            self.on_alarm(f"the folder watcher lost events ({message})")


class FolderWatcher:
    """One watchdog observer per chosen folder, marking changed paths dirty in a DirtyQueue.

    Events are hints, not truth: the indexer looks at every path itself, and anything that
    means events were lost (an overflow, a failed observer) asks the queue for a full rescan.
    """

    def __init__(self, queue: DirtyQueue, *, ignore: Sequence[str | os.PathLike[str]] = ()) -> None:
        self.queue = queue
        self.ignore = [os.path.abspath(p) for p in ignore]
        self._observers: dict[str, Any] = {}  # root → watchdog Observer
        self._identity: dict[str, tuple[int, int]] = {}  # device and inode of each watched folder
        self._alarm = _WatchdogAlarm(queue.request_full)
        self._logger = logging.getLogger("watchdog")
        self._logger.addHandler(self._alarm)
        if self._logger.getEffectiveLevel() > logging.WARNING:
            self._logger.setLevel(logging.WARNING)  # else the overflow warning is never created
        self._lock = threading.Lock()

    @property
    def watched(self) -> list[str]:
        with self._lock:
            return sorted(self._observers)

    def watch(self, root: str) -> bool:
        """Start watching root (recursively); False, with the reason logged, when that fails."""
        with self._lock:
            if root in self._observers:
                return True
            try:
                real = os.path.realpath(root)
                st = os.stat(real)
                observer = Observer()
                # inotify does not follow a link it is pointed at: watch where the folder really is.
                observer.schedule(_Handler(root, real, self.queue, self.ignore), real, recursive=True,
                                  event_filter=WATCHED_EVENTS)
                observer.daemon = True
                observer.start()
            except OSError as exc:
                # Most often the system's limit on watches (fs.inotify.max_user_watches) is
                # reached; the periodic rescan still keeps this folder's index right.
                log.warning("cannot watch %s for changes (%s); it will be rescanned periodically instead. "
                            "On Linux, raising fs.inotify.max_user_watches lets Sift watch it live.", root, exc)
                return False
            self._observers[root] = observer
            self._identity[root] = (st.st_dev, st.st_ino)
            return True

    def unwatch(self, root: str) -> None:
        with self._lock:
            observer = self._observers.pop(root, None)
            self._identity.pop(root, None)
        if observer is not None:
            _stop(observer)

    def broken(self) -> list[str]:
        """Watched folders whose observer died or whose folder was replaced: re-watch and rescan these."""
        out = []
        with self._lock:
            items = list(self._observers.items())
        for root, observer in items:
            alive = observer.is_alive() and all(e.is_alive() for e in observer.emitters)
            try:
                st = os.stat(os.path.realpath(root))
                same = (st.st_dev, st.st_ino) == self._identity.get(root)
            except OSError:
                same = False
            if not alive or not same:
                out.append(root)
        return out

    def stop(self) -> None:
        # First, so that what watchdog logs while stopping does not ask for a rescan.
        self._logger.removeHandler(self._alarm)
        with self._lock:
            observers = list(self._observers.values())
            self._observers.clear()
            self._identity.clear()
        for observer in observers:
            _stop(observer)


def _stop(observer) -> None:
    try:
        observer.stop()
        observer.join(timeout=5)
    except Exception as exc:  # a dead or half-started observer: nothing more to stop
        log.debug("stopping a folder observer: %r", exc)
