"""Reconcile folders with the catalog, then parse → chunk → embed → commit, in cancellable batches."""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import itertools
import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from engine.catalog import Catalog, FileRow
from engine.chunk import iter_chunks
from engine.config import Config
from engine.embed import SPECIAL_TOKENS, Embedder, text_hash
from engine.errors import Cancelled, ParseError
from engine.parse import SUPPORTED_SUFFIXES, kind_for
from engine.parse.runner import INLINE_MAX_BYTES, ParseRunner
from engine.parse.source import (
    VANISHED_REASON,
    Identity,
    ParseJob,
    Unchanged,
    file_digest,
    open_scanned,
)
from engine.types import (
    Chunk,
    FileStatus,
    IndexReport,
    ParsedFile,
    Progress,
    human_size,
)
from engine.vectors import VectorIndex

log = logging.getLogger(__name__)

# Commit after this many chunks, or files, or seconds since the batch began: small enough
# that a crash loses little and files become searchable soon, large enough that the embedder sees
# full batches and the per-commit work is spread over many short files (bench/indexing.py
# --short: 3,000 one-chunk notes, 47 commits at 64 files, 6 at 512 by chunks).
BATCH_FILES = 512
BATCH_CHUNKS = 512
BATCH_SECONDS = 2.0
# A run's first batch commits at this many chunks and each next one at twice as many, up to
# BATCH_CHUNKS: the model starts on the first few files instead of waiting for 512 chunks of them.
FIRST_BATCH_CHUNKS = 32
# Parsed batches waiting for the model: enough that the parsers never stall it, few enough that
# a cancel discards little work.
PREFETCH_BATCHES = 2
# Chunks handed to the embedder at once (it batches them further): the first slice of a run,
# then as many as it embeds in EMBED_SLICE_S at the pace measured, so a cancel waits about that
# long, and a fast model is not drained every few batches (the end of a slice leaves cores idle
# while its last batches finish: 3,000 short notes, OpenVINO, 128 chunks a slice 0.80 of the raw
# model's speed, 512 chunks 0.93).
EMBED_SLICE = 128
EMBED_SLICE_S = 1.0
EMBED_SLICE_MIN = 16
# An estimate of the time left is given only once it can be trusted: a while into the reading,
# and a share of the files read (the first files' rate says little about the rest).
ETA_AFTER_S = 20.0
ETA_AFTER_SHARE = 0.05
PROGRESS_POLL_S = 0.2  # how often the committing thread looks at cancel and the file being parsed
# A text this long (characters) is chunked in a batch of its own, so the files parsed before it
# commit without waiting for its tokenizing and embedding.
BIG_TEXT_CHARS = 1_000_000
# Folders are opened without following a link swapped in after their parent was listed.
_DIR_FLAGS = (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
              | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
_SCANDIR_FD = os.scandir in os.supports_fd


@dataclass(frozen=True, slots=True)
class DiskFile:
    size: int
    mtime_ns: int
    dev: int = 0
    ino: int = 0

    @property
    def identity(self) -> Identity | None:
        """(device, inode) as the scan saw it: what a later open must find (None: not known)."""
        return (self.dev, self.ino) if self.ino else None


def _disk_file(st: os.stat_result) -> DiskFile:
    return DiskFile(st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)


# -- scanning ------------------------------------------------------------------------------------


def is_excluded(name: str, rel_path: str, patterns: Sequence[str]) -> bool:
    """A pattern without '/' matches a file or folder name; one with '/' the path below the root."""
    for pattern in patterns:
        if "/" in pattern:
            if fnmatch.fnmatchcase(rel_path, pattern.strip("/")):
                return True
        elif fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def _is_hidden(name: str, st: os.stat_result | None) -> bool:
    if name.startswith("."):
        return True
    attrs = getattr(st, "st_file_attributes", 0) if st is not None else 0
    return bool(attrs & getattr(stat, "FILE_ATTRIBUTE_HIDDEN", 0))


def is_within(path: str, roots: Sequence[str]) -> bool:
    """True when path is one of the roots or lies below one."""
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def scan(roots: Sequence[str], *, exclude: Sequence[str], include_hidden: bool,
         cancel: threading.Event | None = None, never: Sequence[str] = ()) -> tuple[dict[str, DiskFile], list[str]]:
    """Every supported file under the roots, and the folders that could not be listed.

    Symbolic links are never followed: one pointing outside the roots would read what the user
    did not choose, and one pointing inside names a file the walk reaches by its real path
    anyway. Not following them also makes the result independent of the order of the walk, so
    a scan of one changed folder (`scan_paths`) agrees with a scan of everything. Every folder
    is visited once (by device and inode), so bind-mount loops end the walk.
    """
    found: dict[str, DiskFile] = {}
    unreadable: list[str] = []
    seen: set[tuple[int, int]] = set()
    for root in roots:
        _walk(root, root, exclude=exclude, include_hidden=include_hidden, found=found, unreadable=unreadable,
              seen=seen, cancel=cancel, never=frozenset(never))
    return found, unreadable


def scan_paths(roots: Sequence[str], paths: Iterable[str], *, exclude: Sequence[str], include_hidden: bool,
               cancel: threading.Event | None = None, never: Sequence[str] = ()
               ) -> tuple[dict[str, DiskFile], list[str], list[str]]:
    """What `scan` would find at or below each of `paths` (files or folders, present or gone).

    Returns (found, folders that could not be listed, scope): scope is the paths, under the
    roots, that the result speaks for, together with everything below them.
    """
    found: dict[str, DiskFile] = {}
    unreadable: list[str] = []
    seen: set[tuple[int, int]] = set()
    visible: dict[str, bool] = {}  # folders on the way, looked at once per call
    walked: set[str] = set()
    scope: list[str] = []
    # Sorted, a folder comes before everything below it, so its walk covers them.
    for path in sorted({os.path.abspath(p) for p in paths}):
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        root = next((r for r in roots if is_within(path, [r])), None)
        if root is None:
            continue  # outside the chosen folders (or under one that is offline)
        if _below_any(path, root, walked):
            continue
        scope.append(path)
        if never and is_within(path, never):
            continue  # Sift's own folders: what it finds there is gone from the catalog
        st = _reachable(root, path, exclude=exclude, include_hidden=include_hidden, visible=visible)
        if st is None:
            continue
        if stat.S_ISDIR(st.st_mode):
            walked.add(path)
            _walk(root, path, exclude=exclude, include_hidden=include_hidden, found=found, unreadable=unreadable,
                  seen=seen, cancel=cancel, start_identity=None if path == root else (st.st_dev, st.st_ino),
                  never=frozenset(never))
        elif stat.S_ISREG(st.st_mode) and os.path.splitext(path)[1].lower() in SUPPORTED_SUFFIXES:
            found[path] = _disk_file(st)
    return found, unreadable, scope


def _walk(root: str, start: str, *, exclude: Sequence[str], include_hidden: bool, found: dict[str, DiskFile],
          unreadable: list[str], seen: set[tuple[int, int]], cancel: threading.Event | None,
          start_identity: Identity | None = None, never: frozenset[str] = frozenset()) -> None:
    """Add the supported files at and below `start` to `found`.

    Each folder is opened once, without following a link (but for `start` when it is a chosen
    folder: the user may pick a link), and listed from that descriptor; it must be the folder
    its parent listed (same device and inode), so swapping a folder for a link to elsewhere
    between the listing and the visit reads nothing from elsewhere.
    """
    stack: list[tuple[str, Identity | None]] = [(start, start_identity)]
    while stack:
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        folder, expected = stack.pop()
        follow = folder == start and start_identity is None
        try:
            entries = _list_folder(folder, expected=expected, follow=follow, seen=seen)
        except FileNotFoundError:
            if folder == start:  # a folder unplugged mid-scan must not read as emptied: keep its files
                unreadable.append(folder)
            continue  # a subfolder deleted since its parent was listed: nothing there to keep
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR) and not follow:
                continue  # replaced by a link or a file since its parent was listed: not ours to read
            log.warning("cannot list %s: %s", folder, exc)
            unreadable.append(folder)
            continue
        for name, est in sorted(entries, key=lambda e: e[0], reverse=True):
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if is_excluded(name, rel, exclude):
                continue
            if not include_hidden and _is_hidden(name, est):
                continue
            if stat.S_ISDIR(est.st_mode):
                if path not in never:  # Sift's own folders: its settings, catalog and models
                    stack.append((path, (est.st_dev, est.st_ino)))
            elif stat.S_ISREG(est.st_mode) and os.path.splitext(name)[1].lower() in SUPPORTED_SUFFIXES:
                found[path] = _disk_file(est)


def _list_folder(folder: str, *, expected: Identity | None, follow: bool,
                 seen: set[tuple[int, int]]) -> list[tuple[str, os.stat_result]]:
    """(name, lstat) of the entries of one folder, links left out; [] when already visited or
    no longer the folder that was listed (`expected`)."""
    if not _SCANDIR_FD:  # Windows: no descriptors for folders (nor O_NOFOLLOW)
        st = os.stat(folder) if follow else os.lstat(folder)
        if not stat.S_ISDIR(st.st_mode) or (st.st_dev, st.st_ino) in seen:
            return []
        seen.add((st.st_dev, st.st_ino))
        with os.scandir(folder) as it:
            return _entries(it)
    fd = os.open(folder, _DIR_FLAGS & ~(0 if not follow else getattr(os, "O_NOFOLLOW", 0)))
    try:
        st = os.fstat(fd)
        if expected is not None and (st.st_dev, st.st_ino) != tuple(expected):
            return []
        if (st.st_dev, st.st_ino) in seen:
            return []
        seen.add((st.st_dev, st.st_ino))
        with os.scandir(fd) as it:
            return _entries(it)  # stat'ed now: an entry of a descriptor's listing needs it open
    finally:
        os.close(fd)


def _entries(it: Iterable[os.DirEntry]) -> list[tuple[str, os.stat_result]]:
    out = []
    for entry in it:
        try:
            if entry.is_symlink():
                continue  # see scan()
            out.append((entry.name, entry.stat(follow_symlinks=False)))
        except OSError:
            continue  # vanished since the listing
    return out


def _below_any(path: str, root: str, folders: set[str]) -> bool:
    """True when a folder strictly above path (up to root) is in folders."""
    parent = os.path.dirname(path)
    while folders and len(parent) >= len(root):
        if parent in folders:
            return True
        if parent == root:
            break
        parent = os.path.dirname(parent)
    return False


def _reachable(root: str, path: str, *, exclude: Sequence[str], include_hidden: bool,
               visible: dict[str, bool]) -> os.stat_result | None:
    """path's stat when a walk from root would reach it (nothing on the way excluded, hidden or a
    link), else None."""
    if path == root:
        try:
            return os.stat(root)  # the chosen folder itself may be a link the user picked
        except OSError:
            return None
    parts = os.path.relpath(path, root).split(os.sep)
    current = root
    st: os.stat_result | None = None
    for i, name in enumerate(parts):
        current = os.path.join(current, name)
        last = i == len(parts) - 1
        if not last and current in visible:
            if not visible[current]:
                return None
            continue
        st = None
        if not is_excluded(name, "/".join(parts[: i + 1]), exclude):
            try:
                st = os.lstat(current)
            except OSError:
                st = None
        ok = (st is not None and not stat.S_ISLNK(st.st_mode) and (include_hidden or not _is_hidden(name, st))
              and (last or stat.S_ISDIR(st.st_mode)))
        if not last:
            visible[current] = ok
        if not ok:
            return None
    return st


def offline_roots(roots: Sequence[str], catalog: Catalog) -> list[str]:
    """Chosen folders that are not there now: their files are kept until they come back.

    A folder is offline when it is missing or cannot be listed, or when it is empty and lives on
    another device than when it was last indexed: the mount point of an unplugged drive or an
    unmounted share, which would otherwise look like a folder whose files were all deleted.
    """
    offline = []
    for root in roots:
        try:
            device = os.stat(root).st_dev
            with os.scandir(root) as entries:
                empty = next(entries, None) is None
        except OSError:
            offline.append(root)
            continue
        if empty and catalog.get_meta(_ROOT_DEVICE + root) not in (None, str(device)):
            offline.append(root)
    return offline


_ROOT_DEVICE = "root_device:"  # meta key prefix: the device a folder was on when last indexed
UNLISTABLE = "unlistable:"      # meta key prefix: a folder the last scan could not list → why


def unlistable_folders(catalog: Catalog) -> dict[str, str]:
    """Folders under the chosen ones that the last scan could not list, and why: their files are kept."""
    return {key[len(UNLISTABLE):]: catalog.get_meta(key) or "" for key in catalog.meta_keys(UNLISTABLE)}


def forget_root_devices(catalog: Catalog, conn, roots: Sequence[str]) -> None:
    """Drop what offline_roots remembers of folders no longer chosen (their paths are private too)."""
    for key in catalog.meta_keys(_ROOT_DEVICE):
        if key[len(_ROOT_DEVICE):] not in roots:
            catalog.delete_meta(conn, key)


def content_hash(path: str, identity: Identity | None) -> str | None:
    """The hash of the file the scan saw at path, read without following a link or blocking;
    None when it is not that regular file any more, or cannot be read."""
    try:
        f, _ = open_scanned(path, identity)
    except ParseError:
        return None
    with f:
        try:
            return file_digest(f)
        except OSError:
            return None


# -- the run -------------------------------------------------------------------------------------


@dataclass
class _Reading:
    """The file being parsed and how many were parsed or skipped (the producer writes them), and
    what was last reported of them."""

    path: str = ""
    count: int = 0
    reported_path: str = ""
    reported_count: int = 0


@dataclass
class _Pending:
    """A parsed file waiting in the current batch."""

    path: str
    disk: DiskFile
    digest: str | None
    kind: str | None
    chunks: list[Chunk]
    hashes: list[str]
    note: str = ""  # kept as the file's reason: its text was cut at a cap


@dataclass
class _Batch:
    files: list[_Pending] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)              # same bytes as indexed: new stamp only
    chunks: int = 0
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # text hash → vector, once embedded
    fresh: list[str] = field(default_factory=list)                # hashes embedded for this batch
    reused: int = 0                                               # chunks whose vector was cached
    started: float = field(default_factory=time.monotonic)        # when the producer began filling it


@dataclass(frozen=True, slots=True)
class _Failure:
    """An exception raised in a pipeline stage, handed downstream to be raised in order."""

    error: BaseException


_DONE = object()  # a pipeline stage's last item
_IDLE = object()  # no item yet, and the batch in flight is embedded: commit it meanwhile


class Indexer:
    """One indexing run over the effective roots. Not reusable: make one per run."""

    def __init__(self, *, catalog: Catalog, embedder: Embedder, config: Config, roots: Sequence[str],
                 vectors: VectorIndex, cancel: threading.Event,
                 on_progress: Callable[[Progress], None] | None = None,
                 parse_runner: ParseRunner | None = None, never: Sequence[str] = ()) -> None:
        self.catalog = catalog
        self.parse_runner = parse_runner  # a caller's long-lived one, reused and left open; else one per run
        self.embedder = embedder
        self.config = config
        self.roots = [os.path.abspath(r) for r in roots]
        self.never = [os.path.abspath(p) for p in never]  # folders never indexed (Sift's own data)
        self.vectors = vectors
        self.cancel = cancel
        self._on_progress = on_progress
        self.progress = Progress()
        self._progress_lock = threading.RLock()
        self._embed_slice = EMBED_SLICE  # chunks of the next slice (the embedding thread's)
        self._t0 = time.monotonic()
        self._t_indexing: float | None = None  # when the reading began (after the scan)
        self._counts = dict(added=0, updated=0, removed=0, moved=0, unchanged=0, failed=0)

    # progress -------------------------------------------------------------------------------

    def _report(self, **changes) -> None:
        with self._progress_lock:  # the committing thread and the embedding thread both report
            self._report_locked(**changes)

    def _count_embedded(self, n: int) -> None:
        """Chunks embedded as each slice leaves the model, not when its batch commits: a long
        first batch still shows the count move."""
        with self._progress_lock:
            self._report_locked(chunks_embedded=self.progress.chunks_embedded + n)

    def _report_locked(self, **changes) -> None:
        now = time.monotonic()
        p = replace(self.progress, elapsed_s=now - self._t0, **changes)
        if p.phase == "indexing" and self._t_indexing is None:
            self._t_indexing = now
        eta = None
        reading = now - self._t_indexing if self._t_indexing is not None else 0.0
        seen = p.files_seen
        if (p.phase == "indexing" and reading >= ETA_AFTER_S and seen
                and seen >= ETA_AFTER_SHARE * p.files_total):
            eta = max(0.0, (p.files_total - seen) * reading / seen)
        self.progress = replace(p, eta_s=eta)
        if self._on_progress is not None:
            self._on_progress(self.progress)

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    # the run --------------------------------------------------------------------------------

    def run(self, paths: Iterable[str] | None = None) -> IndexReport:
        """Bring the catalog in line with the roots; given `paths`, with those paths only.

        `paths` are hints, from a folder watcher: files or folders, new, changed, moved or gone.
        Each is looked at the way a full scan would (excludes, hidden files, links), and goes
        through the same rename detection and commits, so a run over the paths that changed
        ends where a full run would, without listing everything else.
        """
        self._report(phase="scanning")
        offline = offline_roots(self.roots, self.catalog)
        present_roots = [r for r in self.roots if r not in offline]
        for r in offline:
            log.warning("folder %s is not there (unplugged or removed?): its files are kept", r)
        exclude, hidden = self.config.exclude, self.config.include_hidden
        if paths is None:
            disk, unreadable = scan(present_roots, exclude=exclude, include_hidden=hidden, cancel=self.cancel,
                                    never=self.never)
            known = self.catalog.files()
            self._remember_devices(present_roots)
            self._remember_unlistable(unreadable, None)
        else:
            disk, unreadable, scope = scan_paths(present_roots, paths, exclude=exclude, include_hidden=hidden,
                                                 cancel=self.cancel, never=self.never)
            known = self.catalog.files_at_or_under(scope)
            self._remember_unlistable(unreadable, scope)
        if unplugged := offline_roots(present_roots, self.catalog):  # during the scan
            present_roots = [r for r in present_roots if r not in unplugged]

        # Files the catalog knows that are gone from disk, or no longer under a chosen folder.
        # Files under a folder that is offline, or that could not be listed, are kept: they may
        # come back.
        gone = [row for path, row in known.items() if path not in disk
                and (not is_within(path, self.roots) or is_within(path, present_roots))
                and not (unreadable and is_within(path, unreadable))]
        new = sorted(p for p in disk if p not in known)
        changed = sorted(p for p, d in disk.items() if p in known and self._changed(known[p], d))
        self._counts["unchanged"] = len(disk) - len(new) - len(changed)

        new, moved = self._detect_moves(new, gone, disk)
        moved_ids = {row.id for row, _ in moved}
        self._apply_moves_and_removals(moved, [row for row in gone if row.id not in moved_ids], disk)

        work = changed + new
        self._report(phase="indexing", files_total=len(work))
        if paths is None:  # a model switch or an old interruption; once per full run is enough
            self._embed_missing_vectors()
        self._index_files(work, known, disk)
        # Not after a watcher's batch: a rename whose two halves land in different batches would
        # lose the vectors it is about to reuse. The next full run (at start, periodically) prunes.
        if paths is None:
            with self.catalog.transaction() as conn:
                self.catalog.prune_embeddings(conn)
        self._report(phase="done", current_file="")
        return IndexReport(**self._counts, chunks_embedded=self.progress.chunks_embedded,
                           chunks_reused=self.progress.chunks_reused, elapsed_s=self.progress.elapsed_s)

    def _remember_devices(self, roots: Sequence[str]) -> None:
        """Note each folder's device, so an empty mount point later reads as offline (offline_roots)."""
        changes = {}
        for root in roots:
            try:
                device = str(os.stat(root).st_dev)
            except OSError:
                continue
            if self.catalog.get_meta(_ROOT_DEVICE + root) != device:
                changes[_ROOT_DEVICE + root] = device
        if changes:
            with self.catalog.transaction() as conn:
                for key, value in changes.items():
                    self.catalog.set_meta(conn, key, value)

    def _remember_unlistable(self, unreadable: Sequence[str], scope: Sequence[str] | None) -> None:
        """Note the folders the scan could not list (shown by `sift status`), and forget those
        it now could; `scope`: the paths a partial scan spoke for (None: everything)."""
        now = {}
        for folder in unreadable:
            if folder in self.roots:
                continue  # a chosen folder that is not there is offline, reported as such
            try:
                _list_folder(folder, expected=None, follow=False, seen=set())
                continue  # listable again already
            except OSError as exc:
                now[folder] = exc.strerror or str(exc)
        keys = {key[len(UNLISTABLE):]: key for key in self.catalog.meta_keys(UNLISTABLE)}
        stale = [key for folder, key in keys.items() if folder not in now
                 and (scope is None or is_within(folder, scope))]
        fresh = {f: r for f, r in now.items() if self.catalog.get_meta(UNLISTABLE + f) != r}
        if stale or fresh:
            with self.catalog.transaction() as conn:
                for key in stale:
                    self.catalog.delete_meta(conn, key)
                for folder, reason in fresh.items():
                    self.catalog.set_meta(conn, UNLISTABLE + folder, reason)

    @staticmethod
    def _changed(row: FileRow, d: DiskFile) -> bool:
        return row.status == FileStatus.PENDING or (row.size, row.mtime_ns) != (d.size, d.mtime_ns)

    def _detect_moves(self, new: list[str], gone: list[FileRow],
                      disk: dict[str, DiskFile]) -> tuple[list[str], list[tuple[FileRow, str]]]:
        """Pair new paths with vanished files of the same size and content: a rename keeps its chunks."""
        by_size: dict[int, list[FileRow]] = {}
        for row in gone:
            if row.content_hash and row.status == FileStatus.INDEXED:
                by_size.setdefault(row.size, []).append(row)
        if not by_size:
            return new, []
        still_new, moved = [], []
        for path in new:
            candidates = by_size.get(disk[path].size)
            if candidates:
                digest = content_hash(path, disk[path].identity)
                match = next((r for r in candidates if r.content_hash == digest), None)
                if match is not None:
                    candidates.remove(match)
                    moved.append((match, path))
                    continue
            still_new.append(path)
        return still_new, moved

    def _apply_moves_and_removals(self, moved: list[tuple[FileRow, str]], removed: list[FileRow],
                                  disk: dict[str, DiskFile]) -> None:
        if not moved and not removed:
            return
        with self.catalog.transaction() as conn:
            dropped = self.catalog.delete_files(conn, [r.id for r in removed])
            for row, path in moved:
                # The stamp from the scan, not a fresh one: a change after the scan then still
                # shows as a change next time (and a file gone meanwhile cannot fail the batch).
                d = disk[path]
                self.catalog.move_file(conn, row.id, new_path=path, size=d.size, mtime_ns=d.mtime_ns)
        self.vectors.remove(dropped)
        self._counts["removed"] += len(removed)
        self._counts["moved"] += len(moved)

    def _embed_missing_vectors(self) -> None:
        """Chunks with no vector from the current model (a model switch, an interrupted run)."""
        model_id = self.embedder.model_id
        missing = self.catalog.chunks_missing_vectors(model_id)
        for i in range(0, len(missing), BATCH_CHUNKS):
            self._check_cancel()
            part = missing[i:i + BATCH_CHUNKS]
            vectors = self.embedder.embed_documents([text for _, _, text in part])
            with self.catalog.transaction() as conn:
                self.catalog.put_vectors(conn, model_id, [h for _, h, _ in part], vectors)
            self.vectors.add(np.array([cid for cid, _, _ in part], dtype=np.uint64), vectors)
            self._count_embedded(len(part))

    def _index_files(self, work: list[str], known: dict[str, FileRow], disk: dict[str, DiskFile]) -> None:
        """A three-stage pipeline, so the model never waits for the parsers nor for the disk.

        A producer thread parses (in the worker processes), chunks and hashes files into batches;
        an embedding thread embeds each batch's chunks that the cache lacks; this thread looks in
        the cache, writes each embedded batch in one transaction (while the next one embeds),
        reports progress and watches for cancellation. Batches stay in order and at most a few
        are in flight, so every commit still holds whole files, and a cancel or a crash loses
        only batches not yet committed. Only this thread touches the catalog.
        """
        if not work:
            return
        stop = threading.Event()
        parsed: queue.Queue = queue.Queue(maxsize=PREFETCH_BATCHES)
        # [file being parsed, file last reported, files read, files read last reported]: the
        # producer writes the first and third, this thread the others.
        current = _Reading()
        producer = threading.Thread(target=self._stage, args=(self._produce, (work, known, disk, current, stop), parsed, stop),
                                    name="sift-parse-feed", daemon=True)
        embedding = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sift-embed")
        producer.start()
        in_flight: tuple[_Batch, list, Future] | None = None
        try:
            while True:
                # A batch whose vectors are ready commits even while the producer is busy (a
                # huge text being chunked, a slow parse), so finished files never wait for it.
                item = self._next(parsed, current, ready=in_flight[2].done if in_flight is not None else None)
                if item is _IDLE and in_flight is not None:  # (_IDLE comes only while a batch is in flight)
                    self._finish(*in_flight, known, disk, current)
                    in_flight = None
                    self._check_cancel()
                    continue
                if isinstance(item, _Failure):
                    raise item.error
                if item is not _DONE:
                    batch, problems = item
                    # Looked up before the previous batch commits: a text shared with it is
                    # embedded twice (the catalog keeps one), a small price for never waiting.
                    todo = self._look_up_cache(batch)
                    ahead = (batch, problems, embedding.submit(self._embed, todo, stop))
                if in_flight is not None:  # commit the previous batch while this one embeds
                    self._finish(*in_flight, known, disk, current)
                    in_flight = None
                    self._check_cancel()
                if item is _DONE:
                    break
                in_flight = ahead
        finally:
            stop.set()
            with contextlib.suppress(queue.Empty):
                while True:  # unblock the producer should it wait to put
                    parsed.get_nowait()
            embedding.shutdown(wait=True, cancel_futures=True)
            producer.join()

    def _next(self, parsed: queue.Queue, current: _Reading, ready: Callable[[], bool] | None = None):
        """The producer's next item, reporting the file being parsed and watching for cancel meanwhile;
        _IDLE when none is there yet and `ready()` says the batch in flight can commit."""
        while True:
            try:
                return parsed.get(timeout=PROGRESS_POLL_S)
            except queue.Empty:
                self._check_cancel()
                self._report_reading(current)
                if ready is not None and ready():
                    return _IDLE

    def _report_reading(self, current: _Reading) -> None:
        if current.path != current.reported_path or current.count != current.reported_count:
            current.reported_path, current.reported_count = current.path, current.count
            self._report(current_file=current.path, files_read=max(current.count, self.progress.files_done))

    def _finish(self, batch: _Batch, problems: list, job: Future, known: dict[str, FileRow], disk: dict[str, DiskFile], current: _Reading) -> None:
        """Wait for a batch's vectors (watching for cancel), then commit it."""
        while True:
            try:
                fresh = job.result(timeout=PROGRESS_POLL_S)
                break
            except FutureTimeout:
                self._check_cancel()
                self._report_reading(current)
        batch.vectors.update(fresh)
        self._commit(batch, problems, known, disk)

    def _look_up_cache(self, batch: _Batch) -> dict[str, str]:
        """Fill the batch with the vectors already known; return the texts still to embed, by hash."""
        all_hashes = [h for f in batch.files for h in f.hashes]
        vectors = self.catalog.cached_vectors(self.embedder.model_id, all_hashes) if all_hashes else {}
        todo: dict[str, str] = {}
        for f in batch.files:
            for c, h in zip(f.chunks, f.hashes):
                if h not in vectors:
                    todo.setdefault(h, c.text)
        batch.vectors, batch.fresh = vectors, list(todo)  # first-seen order, as committed
        batch.reused = sum(1 for h in all_hashes if h in vectors)
        return todo

    def _embed(self, todo: dict[str, str], stop: threading.Event) -> dict[str, np.ndarray]:
        """Vectors for the texts (the embedding thread): longest first across the whole batch, so
        the embedder's batches pad little, in slices of about EMBED_SLICE_S, so a cancel waits
        for one slice only."""
        fresh: dict[str, np.ndarray] = {}
        ordered = sorted(todo, key=lambda h: len(todo[h]), reverse=True)
        i = 0
        while i < len(ordered) and not stop.is_set():
            part = ordered[i:i + self._embed_slice]
            started = time.perf_counter()
            fresh.update(zip(part, self.embedder.embed_documents([todo[h] for h in part])))
            took = time.perf_counter() - started
            self._count_embedded(len(part))
            i += len(part)
            if took > 0:
                self._embed_slice = max(EMBED_SLICE_MIN, int(len(part) / took * EMBED_SLICE_S))
        return fresh

    @staticmethod
    def _stage(body: Callable, args: tuple, out: queue.Queue, stop: threading.Event) -> None:
        """Run one pipeline stage in its thread: what it yields goes to `out`, then _DONE, or the
        exception it raised (as a _Failure), so the committing thread sees it in order."""
        def put(item) -> bool:
            while not stop.is_set():
                try:
                    out.put(item, timeout=PROGRESS_POLL_S)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            for item in body(*args):
                if not put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the committing thread, which raises it
            put(_Failure(exc))
            return
        put(_DONE)

    def _produce(self, work: list[str], known: dict[str, FileRow], disk: dict[str, DiskFile], current: _Reading,
                 stop: threading.Event) -> Iterator[tuple[_Batch, list[tuple[str, FileStatus, str]]]]:
        """Parse, chunk and hash files into batches of whole files (the producer thread).

        This thread never opens a file: a worker opens each one once, as the scan saw it, and
        hashes and parses that descriptor (engine.parse.source). A file whose bytes are the ones
        already indexed comes back Unchanged (a touch, a copy-back) and only gets its new stamp.
        """
        max_tokens = min(self.config.chunk_tokens, self.embedder.max_tokens - SPECIAL_TOKENS)
        overlap = min(self.config.chunk_overlap, max_tokens // 2 - 1)
        problems: list[tuple[str, FileStatus, str]] = []
        skipped = [0]  # files that failed before parsing (too large, gone): read as far as they go

        def jobs() -> Iterator[ParseJob]:
            for path in work:
                if stop.is_set():
                    return
                self._check_cancel()
                d = disk[path]
                if d.size > self.config.max_file_bytes:
                    problems.append((path, FileStatus.TOO_LARGE,
                                     f"{human_size(d.size)} is over the {self.config.max_file_mb} MB limit set in settings"))
                    skipped[0] += 1
                    continue
                row = known.get(path)
                same = row is not None and row.status == FileStatus.INDEXED and row.size == d.size
                yield ParseJob(path, d.identity, row.content_hash if same and row is not None else None)

        batch = _Batch()
        chunk_limit = FIRST_BATCH_CHUNKS
        own = self.parse_runner is None
        runner = self.parse_runner or ParseRunner(workers=self.config.parse_workers,
                                                  timeout_s=self.config.parse_timeout_s,
                                                  max_bytes=self.config.max_file_bytes,
                                                  max_text_bytes=self.config.max_text_bytes)
        with runner if own else contextlib.nullcontext(runner):
            results = runner.map(jobs(), stop=stop, inline=lambda job: _parses_inline(job, disk))
            parsed_count = 0
            try:
                for path, result in results:
                    current.path = path
                    parsed_count += 1
                    current.count = parsed_count + skipped[0]
                    if isinstance(result, ParseError):
                        status, reason = FileStatus(result.status), result.reason
                        if not os.path.lexists(path):  # deleted while parsing: nothing to report
                            status, reason = FileStatus.VANISHED, VANISHED_REASON
                        problems.append((path, status, reason))
                    elif isinstance(result, Unchanged):
                        batch.touched.append(path)
                    else:
                        if sum(len(p.text) for p in result.pages) > BIG_TEXT_CHARS and (batch.files or problems):
                            yield batch, list(problems)  # the files before it need not wait for it
                            batch = _Batch()
                            problems.clear()
                        pending = self._chunk(path, disk[path], result, max_tokens, overlap, stop)
                        if pending is None:
                            problems.append((path, FileStatus.NO_TEXT, "no text found in this file"))
                        else:
                            batch.files.append(pending)
                            batch.chunks += len(pending.chunks)
                    if (len(batch.files) + len(batch.touched) + len(problems) >= BATCH_FILES
                            or batch.chunks >= chunk_limit or time.monotonic() - batch.started >= BATCH_SECONDS):
                        yield batch, list(problems)
                        batch = _Batch()
                        problems.clear()
                        chunk_limit = min(BATCH_CHUNKS, 2 * chunk_limit)
            finally:
                close = getattr(results, "close", None)
                if close is not None:  # a caller's runner stays open: stop only this map's workers
                    close()
            if batch.files or batch.touched or problems:
                yield batch, list(problems)

    def _chunk(self, path: str, d: DiskFile, parsed: ParsedFile, max_tokens: int, overlap: int,
               stop: threading.Event | None = None) -> _Pending | None:
        """The file's chunks, at most max_chunks_per_file; a cancel (Ctrl+C, quit) stops a long text
        between two chunks rather than after all of them."""
        cap = self.config.max_chunks_per_file
        chunks: list[Chunk] = []
        for chunk in itertools.islice(iter_chunks(parsed.pages, token_offsets=self.embedder.token_offsets,
                                                  max_tokens=max_tokens, overlap=overlap), cap + 1):
            chunks.append(chunk)
            if self.cancel.is_set() or (stop is not None and stop.is_set()):
                raise Cancelled()
        if not chunks:
            return None
        note = parsed.note
        if len(chunks) > cap:
            del chunks[cap:]
            end = chunks[-1]
            where = f"page {end.page}" if end.page is not None else f"character {end.end:,}"
            note = (f"too much text: only its first {cap:,} passages (up to {where}) are searchable "
                    "(the limit is in settings)")
        return _Pending(path, d, parsed.content_hash, parsed.kind, chunks, [text_hash(c.text) for c in chunks], note)

    def _commit(self, batch: _Batch, problems: list[tuple[str, FileStatus, str]], known: dict[str, FileRow],
                disk: dict[str, DiskFile]) -> None:
        """Write a whole embedded batch in one transaction, then add its vectors to the index."""
        if not batch.files and not batch.touched and not problems:
            return
        model_id = self.embedder.model_id
        vectors, todo, reused = batch.vectors, batch.fresh, batch.reused
        removed: list[int] = []
        added_ids: list[int] = []
        added_vecs: list[np.ndarray] = []
        vanished: list[int] = []
        with self.catalog.transaction() as conn:
            if todo:
                self.catalog.put_vectors(conn, model_id, todo, np.stack([vectors[h] for h in todo]))
            for f in batch.files:
                old = known.get(f.path)
                fid = self.catalog.upsert_file(conn, path=f.path, size=f.disk.size, mtime_ns=f.disk.mtime_ns,
                                               content_hash=f.digest, kind=f.kind, status=FileStatus.INDEXED,
                                               reason=f.note)
                gone, ids = self.catalog.replace_chunks(conn, fid, f.chunks, f.hashes)
                removed += gone
                added_ids += ids
                added_vecs += [vectors[h] for h in f.hashes]
                self._counts["updated" if old else "added"] += 1
            for path in batch.touched:
                d = disk[path]
                self.catalog.touch_file(conn, known[path].id, size=d.size, mtime_ns=d.mtime_ns)
                self._counts["unchanged"] += 1
            for path, status, reason in problems:
                old = known.get(path)
                self._counts["failed"] += status != FileStatus.VANISHED
                if status == FileStatus.VANISHED:
                    if old is not None:
                        vanished.append(old.id)
                    continue
                d = disk[path]
                if old is not None:
                    self.catalog.set_file_problem(conn, old.id, size=d.size, mtime_ns=d.mtime_ns,
                                                  status=status, reason=reason)
                else:
                    self.catalog.upsert_file(conn, path=path, size=d.size, mtime_ns=d.mtime_ns, content_hash=None,
                                             kind=kind_for(path), status=status, reason=reason)
            removed += self.catalog.delete_files(conn, vanished)
        # The catalog is committed; the in-memory index follows (a crash here is repaired on open).
        self.vectors.remove(removed)
        if added_ids:
            self.vectors.add(np.array(added_ids, dtype=np.uint64), np.stack(added_vecs))
        done = self.progress.files_done + len(batch.files) + len(batch.touched) + len(problems)
        self._report(files_done=done, files_read=max(self.progress.files_read, done),
                     files_failed=self.progress.files_failed + sum(1 for p in problems if p[1] != FileStatus.VANISHED),
                     chunks_reused=self.progress.chunks_reused + reused)


def _parses_inline(job, disk: dict[str, DiskFile]) -> bool:
    """Small plain-text files are read in the indexing process: decoding a few kilobytes costs far
    less than a parse worker's round trip (bench/indexing.py --short: the notes indexed at 0.82 of
    the model's speed through the workers). Opened and read the same way (engine.parse.source),
    never past INLINE_MAX_BYTES: a file grown since the scan goes to a worker."""
    path = job.path if isinstance(job, ParseJob) else job
    d = disk.get(path)
    return d is not None and d.size <= INLINE_MAX_BYTES and kind_for(path) == "text"


def iter_paths(paths: Iterable[str | Path]) -> list[str]:
    return [os.path.abspath(os.fspath(p)) for p in paths]
