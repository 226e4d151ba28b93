"""The one exception tree of Sift's engine.

    SiftError                    base of everything the engine raises on purpose
    ├── ConfigError              the settings file or a setting's value is invalid
    ├── FolderError              a folder to add/remove does not exist, overlaps, or is not known
    ├── ModelError               an embedding model cannot be found or loaded
    ├── CatalogError             the catalog is unreadable or from a newer Sift
    └── ParseError               one file could not be turned into text (carries a FileStatus)

    Cancelled                    not an error: raised when the caller cancels long work; not a
                                 SiftError, so `except SiftError` never swallows a cancel.

Every message says what happened and what to do about it.
"""

from __future__ import annotations


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
