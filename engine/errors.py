"""The one exception tree of Sift's engine.

    SiftError                    base of everything the engine raises on purpose
    ├── ConfigError              the settings file or a setting's value is invalid
    ├── FolderError              a folder to add/remove does not exist, overlaps, or is not known
    ├── ModelError               an embedding model cannot be found or loaded
    ├── CatalogError             the catalog is unreadable or from a newer Sift
    │   └── CatalogDamagedError  its file is damaged: `sift rebuild` (Rebuild in the app) makes a new one
    ├── DiskFullError            the disk holding Sift's data is full; nothing committed is lost
    ├── ParseError               one file could not be turned into text (carries a FileStatus)
    └── IndexFileError           (engine/vectors.py) the saved vector index is missing or damaged;
                                 the engine rebuilds it from the catalog, so callers rarely see it

    Cancelled                    not an error: raised when the caller cancels long work; not a
                                 SiftError, so `except SiftError` never swallows a cancel.

Every message says what happened and what to do about it.
"""

from __future__ import annotations

import errno
import os
import shutil
from typing import TYPE_CHECKING

from engine.types import human_size

if TYPE_CHECKING:
    import threading


class SiftError(Exception):
    """Base class for errors the engine raises on purpose."""


class ConfigError(SiftError):
    """The settings file or one of its values is invalid."""


class FolderError(SiftError):
    """A folder cannot be added or removed."""


class ModelError(SiftError):
    """An embedding model cannot be found or loaded."""


class CatalogError(SiftError):
    """The catalog database cannot be used."""


class CatalogDamagedError(CatalogError):
    """The catalog file is damaged (SQLite found a malformed page); `detail` is SQLite's account."""

    def __init__(self, path: str | os.PathLike, detail: str) -> None:
        self.path = os.fspath(path)
        self.detail = detail
        super().__init__(
            f"The catalog {self.path} is damaged ({detail}). Run `sift rebuild` (or Rebuild when the app "
            "offers it): it indexes your folders again into a new catalog, keeping your opened results "
            "and settings, and keeps the damaged file aside."
        )

    def __reduce__(self):
        return (type(self), (self.path, self.detail))


class DiskFullError(SiftError):
    """The disk holding Sift's data filled up while writing; `folder` names where Sift writes.

    SQLite rolls the failed transaction back and the vector index file is replaced only after a
    whole new one is written, so what was committed before stays intact and usable.
    """

    def __init__(self, folder: str | os.PathLike, what: str = "save its index") -> None:
        self.folder = os.fspath(folder)
        free = _free_bytes(self.folder)
        mount = _mount_point(self.folder)
        where = f"the disk mounted at {mount}" if mount and mount != self.folder else "the disk"
        super().__init__(
            f"{where[0].upper()}{where[1:]} holding {self.folder} is full"
            f"{f' ({human_size(free)} free)' if free is not None else ''}, so Sift could not {what}. "
            "Everything indexed before is kept. Free some space on that disk and indexing resumes "
            "where it stopped."
        )

    @staticmethod
    def caused(exc: BaseException, folder: str | os.PathLike, *, needed: int = 0) -> bool:
        """True when `exc` (or an exception it came from) means the disk holding `folder` is full.

        ENOSPC/EDQUOT and SQLite's SQLITE_FULL say so outright. Some libraries (usearch) only say
        "failed to write", so when `needed` is given, too little free space also counts.
        """
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            if isinstance(current, OSError) and current.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
                return True
            if getattr(current, "sqlite_errorcode", None) == _SQLITE_FULL:
                return True
            current = current.__cause__ or current.__context__
        if needed:
            free = _free_bytes(folder)
            return free is not None and free < needed
        return False


_SQLITE_FULL = 13


def _free_bytes(folder: str | os.PathLike) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _mount_point(folder: str | os.PathLike) -> str | None:
    """The mount point of the file system holding folder, found where the device number changes."""
    try:
        path = os.path.realpath(folder)
        dev = os.stat(path).st_dev
        while (parent := os.path.dirname(path)) != path and os.stat(parent).st_dev == dev:
            path = parent
        return path
    except OSError:
        return None


class ParseError(SiftError):
    """One file could not be turned into text; `status` says why in one word."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    def __reduce__(self):  # keep status across process boundaries (parse workers)
        return (type(self), (self.status, self.reason))


class Cancelled(Exception):
    """Long work was cancelled by its caller. Not an error: UIs ignore it."""


def check_cancel(cancel: threading.Event | None) -> None:
    """Raise Cancelled when `cancel` is set: long work calls this between its steps."""
    if cancel is not None and cancel.is_set():
        raise Cancelled()
