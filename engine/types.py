"""Frozen values that cross the engine boundary: statuses, hits, progress, status reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class FileStatus(StrEnum):
    """What happened to one file. Everything but INDEXED and PENDING is a problem to show."""

    PENDING = "pending"          # seen, not yet indexed
    INDEXED = "indexed"          # text chunked and embedded
    UNSUPPORTED = "unsupported"  # no parser for this kind of file
    ENCRYPTED = "encrypted"      # needs a password we do not have
    CORRUPT = "corrupt"          # the parser could not read it
    TOO_LARGE = "too-large"      # over the size cap in settings
    TIMEOUT = "timeout"          # parsing took longer than the per-file limit
    NO_TEXT = "no-text"          # readable but holds no text (empty, or scanned: needs OCR)
    UNREADABLE = "unreadable"    # the OS refused to read it (permissions, I/O error)
    VANISHED = "vanished"        # deleted or moved while being read

    @property
    def is_problem(self) -> bool:
        return self not in (FileStatus.PENDING, FileStatus.INDEXED)


@dataclass(frozen=True, slots=True)
class Page:
    """Text of one page (PDF, slide, sheet) or of a whole file when it has no pages."""

    number: int | None  # 1-based page/slide/sheet number; None for page-less formats
    text: str


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """What a parser returns: the file's text, page by page."""

    kind: str                   # family: "text", "pdf", "html", "docx", …
    pages: tuple[Page, ...]
    content_hash: str | None = None  # blake2b of the bytes parsed, when read from a file
    note: str = ""              # what a person should know though it was read (text cut at the cap)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A window of a file's text, small enough for the embedding model."""

    ordinal: int                # position in the file, from 0
    text: str
    page: int | None
    start: int                  # character offsets into the page's text
    end: int
    token_count: int


Span = tuple[int, int]  # [start, end) character offsets into a snippet


@dataclass(frozen=True, slots=True)
class Why:
    """How a passage came to rank where it did, for explanation and debugging."""

    dense_rank: int | None = None      # 1-based rank in the vector search, None if not found there
    keyword_rank: int | None = None    # 1-based rank in the BM25 search
    fused_score: float = 0.0           # the two sides' scores fused (engine/search.py, _fuse)
    rerank_score: float | None = None  # the cross-encoder's score, when a reranker ran
    learned_score: float | None = None  # likeness to queries this passage was opened for (engine/learn.py)


@dataclass(frozen=True, slots=True)
class Passage:
    """A further matching passage of a document already in the results."""

    chunk_id: int
    page: int | None
    snippet: str
    highlights: tuple[Span, ...] = ()
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class Hit:
    """One document found by a search, with its best passage."""

    path: str
    score: float
    page: int | None
    snippet: str
    chunk_id: int
    start: int                         # the best passage's offsets in its page's text
    end: int
    kind: str
    mtime: float
    highlights: tuple[Span, ...] = ()  # query terms in `snippet`
    why: Why | None = None
    passages: tuple[Passage, ...] = ()  # more matches in the same document, best first
    duplicates: tuple[str, ...] = ()    # other paths with the same content
    match: str = "good"                 # "good", or "weak": loosely related (engine/match.py)


@dataclass(frozen=True, slots=True)
class PassageContext:
    """A hit's passage with the text around it on its page, for a preview."""

    text: str
    focus: tuple[int, int]     # the hit's own passage within `text`
    page: int | None
    exact: bool = True         # False: only the snippet was available


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot of indexing progress, cheap to poll from any thread."""

    phase: str = "idle"          # idle | scanning | indexing | saving | done | cancelled
                                 # and, from the background service: watching | paused | error
    files_total: int = 0         # files that need work in this run
    files_done: int = 0          # files committed, the failed ones included
    files_failed: int = 0        # of files_done, those that could not be indexed
    chunks_embedded: int = 0
    chunks_reused: int = 0       # found in the embedding cache
    current_file: str = ""
    elapsed_s: float = 0.0
    eta_s: float | None = None   # seconds this run still needs at its rate so far; None: not yet reliable
    files_read: int = 0          # files parsed so far (ahead of files_done, which moves per committed batch)
    files_queued: int = 0        # changed paths waiting for the service's next batch
    paused: bool = False         # the background service is paused by the user
    watching: bool = False       # folders are watched live (False: only periodic rescans)
    offline: tuple[str, ...] = ()  # chosen folders not there now (unplugged?): their files are kept
    error: str = ""              # why the service is waiting (disk full, …); it retries by itself

    @property
    def files_seen(self) -> int:
        """Files read so far, however far their batch got: the count a person sees move."""
        return max(self.files_read, self.files_done)

    @property
    def rate(self) -> float:
        """Files per second so far."""
        return self.files_seen / self.elapsed_s if self.elapsed_s > 0 else 0.0


# How each problem reads to a person, before the engine's specific reason.
PROBLEM_LABELS = {
    "unsupported": "Not a kind of file Sift reads",
    "encrypted": "Encrypted",
    "corrupt": "Damaged, or in a form Sift cannot read",
    "too-large": "Larger than the size limit",
    "timeout": "Took too long to read",
    "no-text": "Skipped: no text in it",
    "unreadable": "Cannot be read",
    "vanished": "Moved or deleted while indexing",
}
# Where a reason goes on with a parser library's own message: a person is shown the part before
# it (the library's words, e.g. "The filter name /A85 is deprecated…", stay in `reason`).
LIBRARY_MESSAGE_AFTER = ("could not be read:", "is damaged:", "holds broken XML:", "the parser failed:",
                         "the parser's result was unusable:")


@dataclass(frozen=True, slots=True)
class Problem:
    """A file that is not searchable, and why: `reason` is the engine's whole message (with a
    parser library's words where it gave some), `plain_reason` what a person is shown."""

    path: str
    status: FileStatus
    reason: str

    @property
    def skipped(self) -> bool:
        """A file with no text (a scan, an empty file) is skipped, not a failure: nothing is wrong with it."""
        return str(self.status) == "no-text"

    @property
    def plain_reason(self) -> str:
        """The reason in a person's words: no parser library's internals, no word said twice."""
        status, reason = str(self.status), self.reason.strip()
        low = reason.lower()
        if self.skipped:
            if "scan" in low or "text layer" in low:
                return "Skipped: a scan with no text layer, needs OCR"
            if "empty" in low:
                return "Skipped: the file is empty"
            return PROBLEM_LABELS["no-text"]
        label = PROBLEM_LABELS.get(status, status.replace("-", " ").capitalize())
        if status == "encrypted" and "password" in low:
            return f"{label}: needs its password"
        if any(marker.lower() in low for marker in LIBRARY_MESSAGE_AFTER):
            return label
        reason = reason.removeprefix("this ").strip()
        if reason and reason.lower().rstrip(".") != label.lower() and not label.lower().startswith(reason.lower()):
            return f"{label}: {reason}"
        return label


@dataclass(frozen=True, slots=True)
class IndexReport:
    """What one `Engine.index()` run did."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    moved: int = 0
    unchanged: int = 0
    failed: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    elapsed_s: float = 0.0


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Everything `sift status` shows."""

    folders: tuple[str, ...]
    using_samples: bool
    files_by_status: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    model: str = ""
    reranker: str = ""           # the stage-2 model, or why there is none
    vector_dtype: str = ""
    index_bytes: int = 0
    catalog_bytes: int = 0
    problems: tuple[Problem, ...] = ()
    offline: tuple[str, ...] = ()  # folders not there now (unplugged drive?): their files are kept
    catalog_damage: str = ""     # what SQLite's quick check found wrong with the catalog; "" when sound


def human_size(n: float) -> str:
    """Bytes as a person reads them: "512 bytes", "100 MB", "12.3 GB"."""
    if n < 1024:
        return f"{n:.0f} bytes"
    value = float(n)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            break
    return f"{value:.0f} {unit}" if value.is_integer() or value >= 100 else f"{value:.1f} {unit}"
