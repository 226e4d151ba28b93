"""Turn one file into text, page by page, with every failure mapped to a FileStatus."""

from __future__ import annotations

import importlib
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from xml.etree.ElementTree import ParseError as XMLParseError

from engine.errors import ParseError
from engine.parse import guard, text
from engine.parse.source import ParseJob, Unchanged, file_digest, open_scanned
from engine.types import FileStatus, Page, ParsedFile, human_size

__all__ = ["SUPPORTED_SUFFIXES", "ParseJob", "Unchanged", "kind_for", "parse"]


@dataclass(frozen=True, slots=True)
class _Format:
    kind: str                                   # family name stored with the file
    label: str                                  # how reasons name it to a person
    module: str                                 # engine.parse.<module>.read reads it
    suffixes: frozenset[str]
    zipped: bool = False                        # a zip container: bomb-check it first

    def read(self, f: BinaryIO) -> tuple[Page, ...]:
        # Imported at the first file of its kind: a parse worker starts without the libraries of
        # kinds it never meets (python-pptx, openpyxl, … cost ~0.3 s of processor time a worker).
        reader: Callable[[BinaryIO], tuple[Page, ...]] = importlib.import_module(f"engine.parse.{self.module}").read
        return reader(f)


_FORMATS = (
    _Format("text", "text file", "text", text.SUFFIXES),
    _Format("html", "HTML page", "htmltext", frozenset({".html", ".htm", ".xhtml"})),
    _Format("pdf", "PDF", "pdf", frozenset({".pdf"})),
    _Format("docx", "Word document", "word", frozenset({".docx"}), zipped=True),
    _Format("pptx", "PowerPoint presentation", "powerpoint", frozenset({".pptx"}), zipped=True),
    _Format("xlsx", "Excel workbook", "excel", frozenset({".xlsx", ".xlsm"}), zipped=True),
    _Format("odf", "OpenDocument file", "opendocument", frozenset({".odt", ".ods", ".odp"}), zipped=True),
    _Format("epub", "EPUB e-book", "epub", frozenset({".epub"}), zipped=True),
    _Format("email", "email", "mail", frozenset({".eml"})),
)
_REGISTRY: dict[str, _Format] = {suffix: f for f in _FORMATS for suffix in f.suffixes}

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_REGISTRY)


def kind_for(path: str | os.PathLike[str]) -> str | None:
    """The format family of `path` by its suffix, or None when Sift cannot read it."""
    fmt = _REGISTRY.get(Path(path).suffix.lower())
    return fmt.kind if fmt else None


def parse(job: ParseJob | str | os.PathLike[str], *, max_bytes: int,
          max_text_bytes: int | None = None) -> ParsedFile | Unchanged:
    """Read one file in this process. Raises ParseError, and only ParseError, when it cannot.

    The file is opened once (no link followed, never blocking, the inode the scan saw: see
    source.open_scanned); it is hashed and parsed from that descriptor. When its bytes hash to
    `job.known_hash` the reply is Unchanged and nothing is parsed. Text past `max_text_bytes`
    (UTF-8) is dropped, and the ParsedFile's `note` says so.
    """
    if not isinstance(job, ParseJob):
        job = ParseJob(os.fspath(job))
    path = Path(job.path)
    suffix = path.suffix.lower()
    fmt = _REGISTRY.get(suffix)
    if fmt is None:
        what = f"{suffix} files" if suffix else "files without a suffix"
        raise ParseError(FileStatus.UNSUPPORTED, f"Sift cannot read {what}")
    f, info = open_scanned(job.path, job.identity)
    with f:
        if info.st_size > max_bytes:
            size, limit = human_size(info.st_size), human_size(max_bytes)
            raise ParseError(FileStatus.TOO_LARGE, f"{size} is over the {limit} limit set in settings")
        try:
            digest = file_digest(f)
        except OSError as exc:
            raise _failure(exc, fmt.label) from exc
        if job.known_hash is not None and digest == job.known_hash:
            return Unchanged(digest)
        if info.st_size == 0:
            raise ParseError(FileStatus.NO_TEXT, "empty file")
        try:
            f.seek(0)
            if fmt.zipped:
                guard.check_zip(f, label=fmt.label, max_bytes=max_bytes)
            pages = fmt.read(f)
        except ParseError:
            raise
        except Exception as exc:  # parser libraries raise anything on hostile input
            raise _failure(exc, fmt.label) from exc

    pages, note = _clean_and_cap(pages, max_text_bytes)
    if not pages:
        if fmt.kind == "pdf":
            raise ParseError(FileStatus.NO_TEXT, "no text layer: probably scanned, needs OCR")
        raise ParseError(FileStatus.NO_TEXT, "no text found in this file")
    return ParsedFile(kind=fmt.kind, pages=pages, content_hash=digest, note=note)


def _clean_and_cap(pages: tuple[Page, ...], max_text_bytes: int | None) -> tuple[tuple[Page, ...], str]:
    """The pages with text, cleaned, up to `max_text_bytes` of UTF-8 in all; and a note when cut."""
    kept: list[Page] = []
    left = max_text_bytes if max_text_bytes is not None else -1
    total = 0
    for p in pages:
        text, size = _clean(p.text)
        total += size
        if left == 0 or not text.strip():
            continue
        if 0 < left < size:
            text = text.encode("utf-8")[:left].decode("utf-8", "ignore")
            size = left
        if left > 0:
            left -= size
        kept.append(Page(p.number, text))
    note = ""
    if max_text_bytes is not None and total > max_text_bytes:
        note = (f"too much text ({human_size(total)}): only the first {human_size(max_text_bytes)} "
                "is searchable (the limit is in settings)")
    return tuple(kept), note


def _failure(exc: Exception, label: str) -> ParseError:
    """The status and reason a person should see for an exception raised while reading."""
    if isinstance(exc, FileNotFoundError):
        return ParseError(FileStatus.VANISHED, "the file was deleted or moved before Sift read it")
    if isinstance(exc, PermissionError):
        return ParseError(FileStatus.UNREADABLE, "permission denied: Sift may not read this file")
    # Only the operating system sets errno; other OSErrors are libraries judging content.
    if isinstance(exc, OSError) and exc.errno is not None:
        reason = f"the system could not read it: {exc.strerror or _describe(exc)}"
        return ParseError(FileStatus.UNREADABLE, reason)
    if isinstance(exc, MemoryError):
        # The parse runner rewrites this reason with its memory limit, finding it by the cause.
        what = "needs too much memory to read"
    elif isinstance(exc, RecursionError):
        what = "is nested too deeply to read"
    elif isinstance(exc, zipfile.BadZipFile):
        what = f"is damaged: {_describe(exc)}"
    elif isinstance(exc, XMLParseError):
        what = f"holds broken XML: {_describe(exc)}"
    else:
        what = f"could not be read: {_describe(exc)}"
    return ParseError(FileStatus.CORRUPT, f"this {label} {what}")


def _clean(page_text: str) -> tuple[str, int]:
    """Drop NULs and lone surrogates, which parsers can emit and SQLite cannot store; and the
    text's size in UTF-8."""
    page_text = page_text.replace("\x00", "")
    try:
        size = len(page_text.encode("utf-8"))
    except UnicodeEncodeError:
        page_text = page_text.encode("utf-8", "replace").decode("utf-8")
        size = len(page_text.encode("utf-8"))
    return page_text, size


def _describe(exc: BaseException) -> str:
    """A short one-line account of a library exception for a person to read."""
    # KeyError's str() wraps its message in quotes.
    raw = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    message = raw.strip().splitlines()[0] if raw.strip() else type(exc).__name__
    return message if len(message) <= 160 else message[:157] + "…"
