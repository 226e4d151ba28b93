"""Open a file the scan found, once: no link followed, never blocking, the inode the scan saw or nothing."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
from dataclasses import dataclass

from engine.errors import ParseError
from engine.types import FileStatus

Identity = tuple[int, int]  # (st_dev, st_ino) of the file the scan listed

# O_NONBLOCK: a FIFO swapped in after the scan must not hang open(); O_NOFOLLOW: nor may a link
# swapped in lead outside the chosen folders. Windows has neither (nor FIFOs that block open()).
OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
              | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0))
_LINK_ERRNOS = {errno.ELOOP, getattr(errno, "EMLINK", errno.ELOOP), getattr(errno, "EFTYPE", errno.ELOOP)}

VANISHED_REASON = "the file was deleted or moved while indexing"
REPLACED_REASON = "the file was replaced while indexing; Sift reads it again at the next scan"


@dataclass(frozen=True, slots=True)
class ParseJob:
    """One file for a parse worker: where, which inode, and the hash of the bytes already indexed."""

    path: str
    identity: Identity | None = None  # None: whatever regular file is there now (never a link)
    known_hash: str | None = None     # the same bytes again: reply Unchanged, skip the parse


@dataclass(frozen=True, slots=True)
class Unchanged:
    """A parse worker's reply when the file holds the bytes already indexed (a touch, a copy-back)."""

    content_hash: str


def open_scanned(path: str, identity: Identity | None) -> tuple[io.BufferedReader, os.stat_result]:
    """The open file and its fstat; ParseError unless it is a regular file with `identity`.

    Everything after this reads the descriptor, never the path again, so what is hashed and
    parsed is the file the scan listed under the chosen folders.
    """
    try:
        fd = os.open(path, OPEN_FLAGS)
    except FileNotFoundError:
        raise ParseError(FileStatus.VANISHED, VANISHED_REASON) from None
    except PermissionError:
        raise ParseError(FileStatus.UNREADABLE, "permission denied: Sift may not read this file") from None
    except OSError as exc:
        if exc.errno in _LINK_ERRNOS:
            raise ParseError(FileStatus.VANISHED, REPLACED_REASON) from None
        raise ParseError(FileStatus.UNREADABLE, f"the system could not read it: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ParseError(FileStatus.UNSUPPORTED, "not a regular file")
        if identity is not None and (info.st_dev, info.st_ino) != tuple(identity):
            raise ParseError(FileStatus.VANISHED, REPLACED_REASON)
        return os.fdopen(fd, "rb"), info
    except BaseException:
        os.close(fd)
        raise


def file_digest(f: io.BufferedReader) -> str:
    """The content hash the catalog keeps, of an open file from its current position."""
    return hashlib.file_digest(f, lambda: hashlib.blake2b(digest_size=20)).hexdigest()
