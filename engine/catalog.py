"""The SQLite catalog, Sift's source of truth: files, chunks, FTS5, cached vectors, migrations."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import CatalogDamagedError, CatalogError, DiskFullError, SiftError
from engine.types import Chunk, FileStatus

SCHEMA_VERSION = 3

# Each step takes the schema from version i to i + 1; the list index is the starting version.
_MIGRATIONS: list[str] = [
    # 0 → 1: the first schema.
    """
    CREATE TABLE files (
        id           INTEGER PRIMARY KEY,
        path         BLOB NOT NULL UNIQUE,   -- os.fsencode(path): exact even for non-UTF-8 names
        size         INTEGER NOT NULL,
        mtime_ns     INTEGER NOT NULL,
        content_hash TEXT,                   -- blake2b of the bytes; NULL when not read
        kind         TEXT,
        status       TEXT NOT NULL,
        reason       TEXT NOT NULL DEFAULT '',
        indexed_at   REAL
    );
    CREATE INDEX files_hash ON files(content_hash);
    CREATE INDEX files_status ON files(status);

    -- AUTOINCREMENT: a chunk id is never reused, so a USearch key always means one text.
    CREATE TABLE chunks (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        file_id     INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        ordinal     INTEGER NOT NULL,
        page        INTEGER,
        start       INTEGER NOT NULL,
        "end"       INTEGER NOT NULL,
        token_count INTEGER NOT NULL,
        text_hash   TEXT NOT NULL,
        text        TEXT NOT NULL
    );
    CREATE INDEX chunks_file ON chunks(file_id, ordinal);
    CREATE INDEX chunks_text_hash ON chunks(text_hash);

    -- The embedding cache and the vectors of every chunk: one row per (model, distinct text).
    CREATE TABLE embeddings (
        model_id  TEXT NOT NULL,
        text_hash TEXT NOT NULL,
        vector    BLOB NOT NULL,             -- float16, L2-normalized
        PRIMARY KEY (model_id, text_hash)
    ) WITHOUT ROWID;

    CREATE VIRTUAL TABLE chunks_fts USING fts5(
        text, content='chunks', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
        INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END;

    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 1 → 2: every opened result, the fine-tune wizard's training data. No foreign key: a click
    # outlives its chunk (the text hash and path say whether the pair is stale).
    """
    CREATE TABLE clicks (
        id        INTEGER PRIMARY KEY,
        at        REAL NOT NULL,
        query     TEXT NOT NULL,
        chunk_id  INTEGER NOT NULL,
        text_hash TEXT NOT NULL,
        path      BLOB NOT NULL,
        rank      INTEGER NOT NULL,          -- 1-based position of the opened result
        shown     TEXT NOT NULL              -- JSON list of the chunk ids shown, in order
    );
    CREATE INDEX clicks_path ON clicks(path);
    """,
    # 2 → 3: what opens teach at once (engine/learn.py): a passage (a file's chunk text, so a
    # re-index keeps what its unchanged passages learned) holds the queries it was opened for,
    # as words (learned_fts, beside chunks_fts rather than in it) and as vectors per model.
    # Deleting a file deletes its rows (cascade), their words (trigger) and vectors (cascade).
    # Opens from before this version are learned too (the query as typed, filters and all).
    """
    CREATE TABLE learned (
        id        INTEGER PRIMARY KEY,
        file_id   INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        text_hash TEXT NOT NULL,
        key       TEXT NOT NULL,             -- the query folded (case, spacing): one row per query
        query     TEXT NOT NULL,             -- the query's text, filters removed
        at        REAL NOT NULL,             -- the latest open: older opens weigh less
        UNIQUE (file_id, text_hash, key)
    );
    CREATE TABLE learned_vectors (
        learned_id INTEGER NOT NULL REFERENCES learned(id) ON DELETE CASCADE,
        model_id   TEXT NOT NULL,
        vector     BLOB NOT NULL,            -- float16, the query's embedding by that model
        PRIMARY KEY (model_id, learned_id)
    ) WITHOUT ROWID;
    CREATE INDEX learned_vectors_row ON learned_vectors(learned_id);
    CREATE VIRTUAL TABLE learned_fts USING fts5(
        query, content='learned', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER learned_ai AFTER INSERT ON learned BEGIN
        INSERT INTO learned_fts(rowid, query) VALUES (new.id, new.query);
    END;
    CREATE TRIGGER learned_ad AFTER DELETE ON learned BEGIN
        INSERT INTO learned_fts(learned_fts, rowid, query) VALUES ('delete', old.id, old.query);
    END;
    INSERT OR IGNORE INTO learned(file_id, text_hash, key, query, at)
        SELECT c.file_id, k.text_hash, lower(trim(k.query)), trim(k.query), max(k.at)
        FROM clicks k JOIN chunks c ON c.id = k.chunk_id AND c.text_hash = k.text_hash
        WHERE trim(k.query) != '' GROUP BY c.file_id, k.text_hash, lower(trim(k.query));
    """,
]


def _enc(path: str) -> bytes:
    return os.fsencode(path)


def _dec(blob: bytes) -> str:
    return os.fsdecode(blob)


@dataclass(frozen=True, slots=True)
class FileRow:
    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str | None
    kind: str | None
    status: FileStatus
    reason: str


@dataclass(frozen=True, slots=True)
class ChunkRow:
    id: int
    file_id: int
    path: str
    ordinal: int
    page: int | None
    start: int
    end: int
    text: str
    text_hash: str
    kind: str | None
    mtime_ns: int
    content_hash: str | None


@dataclass(frozen=True, slots=True)
class ChunkFilter:
    """Which chunks a search may return: by file kind, folder and modification time."""

    kinds: tuple[str, ...] = ()        # e.g. ("pdf", "docx"); empty means any
    folders: tuple[str, ...] = ()      # absolute folder paths; empty means any
    after_ns: int | None = None        # modified at or after
    before_ns: int | None = None       # modified before

    def __bool__(self) -> bool:
        return bool(self.kinds or self.folders or self.after_ns is not None or self.before_ns is not None)

    def sql(self) -> tuple[str, list]:
        """A WHERE clause over `files f` (always valid, '1' when empty) and its parameters."""
        clauses: list[str] = ["1"]
        params: list[object] = []
        if self.kinds:
            clauses.append(f"f.kind IN ({','.join('?' * len(self.kinds))})")
            params += list(self.kinds)
        if self.folders:
            # Paths are BLOBs: a folder's files lie between "folder/" and "folder0" ('0' follows '/').
            ors = []
            for folder in self.folders:
                prefix = _enc(folder.rstrip(os.sep) + os.sep)
                ors.append("(f.path >= ? AND f.path < ?)")
                params += [prefix, prefix[:-1] + bytes([prefix[-1] + 1])]
            clauses.append("(" + " OR ".join(ors) + ")")
        if self.after_ns is not None:
            clauses.append("f.mtime_ns >= ?")
            params.append(self.after_ns)
        if self.before_ns is not None:
            clauses.append("f.mtime_ns < ?")
            params.append(self.before_ns)
        return " AND ".join(clauses), params


@dataclass(frozen=True, slots=True)
class Click:
    id: int
    at: float
    query: str
    chunk_id: int
    text_hash: str
    path: str
    rank: int
    shown: tuple[int, ...]


def _file_row(r: sqlite3.Row) -> FileRow:
    return FileRow(r["id"], _dec(r["path"]), r["size"], r["mtime_ns"], r["content_hash"], r["kind"],
                   FileStatus(r["status"]), r["reason"])


class Catalog:
    """One SQLite database in WAL mode; one connection per thread, writes in explicit transactions."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._migrate()

    # -- connections and transactions ------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # Create the file private before SQLite opens it: SQLite gives the -wal and -shm files
        # the database file's mode, so they are born 0600 too (no window with the umask's 0644).
        try:
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as exc:
            if DiskFullError.caused(exc, self.path.parent):
                raise DiskFullError(self.path.parent, "create its catalog") from exc
            raise CatalogError(f"The catalog {self.path} cannot be created ({exc}). Check that its "
                               "folder exists and is writable.") from exc
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=True)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: a crash never corrupts, commits stay atomic
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA secure_delete=ON")   # deleted text is overwritten, not left in free pages
        except sqlite3.DatabaseError as exc:
            if DiskFullError.caused(exc, self.path.parent):
                raise DiskFullError(self.path.parent, "open its catalog") from exc
            if isinstance(catalog_error(exc, self.path), CatalogDamagedError):
                raise CatalogDamagedError(self.path, str(exc)) from exc
            raise CatalogError(
                f"The catalog {self.path} cannot be opened ({exc}). Move it aside and run `sift index` "
                "to build a new one."
            ) from exc
        _make_private(self.path)
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All or nothing: a crash inside leaves the catalog as it was before."""
        conn = self.conn
        with self._write_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    # SQLite has already rolled back after some errors (SQLITE_FULL among them);
                    # a second ROLLBACK would raise and hide the error that matters.
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if DiskFullError.caused(exc, self.path.parent):
                    raise DiskFullError(self.path.parent, "save its catalog") from exc
                raise

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _migrate(self) -> None:
        conn = self.conn
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise CatalogDamagedError(self.path, str(exc)) from exc
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"The catalog {self.path} was written by a newer Sift (schema {version}; this one knows "
                f"{SCHEMA_VERSION}). Update Sift, or point SIFT_HOME at another directory."
            )
        if version == SCHEMA_VERSION:
            return
        with self.transaction() as c:
            for step in range(version, SCHEMA_VERSION):
                for statement in _split_sql(_MIGRATIONS[step]):
                    c.execute(statement)
            c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- meta ----------------------------------------------------------------------------------

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                     (key, value))

    def meta_keys(self, prefix: str) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT key FROM meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))]

    def delete_meta(self, conn: sqlite3.Connection, key: str) -> None:
        conn.execute("DELETE FROM meta WHERE key = ?", (key,))

    # -- files ---------------------------------------------------------------------------------

    def files(self) -> dict[str, FileRow]:
        return {row.path: row for row in map(_file_row, self.conn.execute("SELECT * FROM files"))}

    def file(self, path: str) -> FileRow | None:
        r = self.conn.execute("SELECT * FROM files WHERE path = ?", (_enc(path),)).fetchone()
        return _file_row(r) if r else None

    def files_at_or_under(self, paths: Iterable[str]) -> dict[str, FileRow]:
        """Files at each path or below it (a folder): a range scan of the path index per path."""
        sep = os.fsencode(os.sep)
        after_sep = bytes([sep[0] + 1])  # every path below p sorts in [p + sep, p + after_sep)
        out: dict[str, FileRow] = {}
        for path in paths:
            p = _enc(path.rstrip(os.sep) or os.sep)
            rows = self.conn.execute("SELECT * FROM files WHERE path = ? OR (path >= ? AND path < ?)",
                                     (p, p.rstrip(sep) + sep, p.rstrip(sep) + after_sep))
            out.update((row.path, row) for row in map(_file_row, rows))
        return out

    def upsert_file(self, conn: sqlite3.Connection, *, path: str, size: int, mtime_ns: int,
                    content_hash: str | None, kind: str | None, status: FileStatus, reason: str = "") -> int:
        row = conn.execute(
            """INSERT INTO files(path, size, mtime_ns, content_hash, kind, status, reason, indexed_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns,
                   content_hash=excluded.content_hash, kind=excluded.kind, status=excluded.status,
                   reason=excluded.reason, indexed_at=excluded.indexed_at
               RETURNING id""",
            (_enc(path), size, mtime_ns, content_hash, kind, str(status), reason, time.time()),
        ).fetchone()
        return row[0]

    def set_file_problem(self, conn: sqlite3.Connection, file_id: int, *, size: int, mtime_ns: int,
                         status: FileStatus, reason: str) -> None:
        """Record a failure and keep the file's last good chunks: nothing indexed is lost."""
        conn.execute("UPDATE files SET status=?, reason=?, size=?, mtime_ns=?, indexed_at=? WHERE id=?",
                     (str(status), reason, size, mtime_ns, time.time(), file_id))

    def move_file(self, conn: sqlite3.Connection, file_id: int, *, new_path: str, size: int, mtime_ns: int) -> None:
        conn.execute("UPDATE files SET path=?, size=?, mtime_ns=? WHERE id=?", (_enc(new_path), size, mtime_ns, file_id))

    def touch_file(self, conn: sqlite3.Connection, file_id: int, *, size: int, mtime_ns: int) -> None:
        conn.execute("UPDATE files SET size=?, mtime_ns=? WHERE id=?", (size, mtime_ns, file_id))

    def delete_files(self, conn: sqlite3.Connection, file_ids: Sequence[int]) -> list[int]:
        """Delete files with their chunks (FTS rows go by trigger); return the removed chunk ids."""
        removed: list[int] = []
        for fid in file_ids:
            removed += [r[0] for r in conn.execute("DELETE FROM chunks WHERE file_id = ? RETURNING id", (fid,))]
            conn.execute("DELETE FROM files WHERE id = ?", (fid,))
        return removed

    def purge_deleted_text(self) -> None:
        """Leave none of the deleted text in the database files, for a removed folder.

        An FTS5 delete only adds a tombstone: the words stay in older index segments until they
        are merged, so merge them all ('optimize'). secure_delete zeroes the freed pages, but in
        WAL mode the database file keeps the old pages until a checkpoint copies the new ones
        in, and the WAL keeps old page images until it is reset: checkpoint and truncate it.
        Costs a rewrite of the keyword index, so it runs when a folder is removed, not per file.
        """
        with self.transaction() as conn:
            conn.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")
            conn.execute("INSERT INTO learned_fts(learned_fts) VALUES ('optimize')")
        busy, _, _ = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:  # a reader holds an old snapshot; SQLite checkpoints again when it is done
            logging.getLogger(__name__).warning("could not checkpoint the catalog yet: a reader is busy")

    # -- chunks and vectors ----------------------------------------------------------------------

    def replace_chunks(self, conn: sqlite3.Connection, file_id: int, chunks: Sequence[Chunk],
                       text_hashes: Sequence[str]) -> tuple[list[int], list[int]]:
        """Swap a file's chunks for new ones; return (removed chunk ids, added chunk ids)."""
        removed = [r[0] for r in conn.execute("DELETE FROM chunks WHERE file_id = ? RETURNING id", (file_id,))]
        added = []
        for chunk, text_hash in zip(chunks, text_hashes, strict=True):
            cur = conn.execute(
                """INSERT INTO chunks(file_id, ordinal, page, start, "end", token_count, text_hash, text)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
                (file_id, chunk.ordinal, chunk.page, chunk.start, chunk.end, chunk.token_count, text_hash, chunk.text),
            )
            added.append(cur.fetchone()[0])
        return removed, added

    def put_vectors(self, conn: sqlite3.Connection, model_id: str, text_hashes: Sequence[str],
                    vectors: np.ndarray) -> None:
        rows = ((model_id, h, v.astype(np.float16).tobytes()) for h, v in zip(text_hashes, vectors, strict=True))
        conn.executemany("INSERT OR IGNORE INTO embeddings(model_id, text_hash, vector) VALUES (?, ?, ?)", rows)

    def cached_vectors(self, model_id: str, text_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Vectors already computed for these texts by this model (float32)."""
        found: dict[str, np.ndarray] = {}
        hashes = list(set(text_hashes))
        for i in range(0, len(hashes), 500):
            part = hashes[i:i + 500]
            q = f"SELECT text_hash, vector FROM embeddings WHERE model_id = ? AND text_hash IN ({','.join('?' * len(part))})"
            for h, blob in self.conn.execute(q, (model_id, *part)):
                found[h] = np.frombuffer(blob, dtype=np.float16).astype(np.float32)
        return found

    def prune_embeddings(self, conn: sqlite3.Connection, *, keep_models: Sequence[str] | None = None) -> int:
        """Forget vectors of texts no chunk holds any more (privacy, and space).

        With `keep_models` (the active and the previous model after a switch), vectors of every
        other model go too; theirs are kept, so a rollback needs no embedding.
        """
        cur = conn.execute(
            "DELETE FROM embeddings WHERE NOT EXISTS (SELECT 1 FROM chunks WHERE chunks.text_hash = embeddings.text_hash)"
        )
        removed = cur.rowcount
        if keep_models is not None:
            keep = sorted(set(keep_models))
            cur = conn.execute(f"DELETE FROM embeddings WHERE model_id NOT IN ({','.join('?' * len(keep))})", keep)
            removed += cur.rowcount
        return removed

    def delete_vectors(self, conn: sqlite3.Connection, model_id: str) -> int:
        """Forget every vector of one model (a refused fine-tune candidate)."""
        return conn.execute("DELETE FROM embeddings WHERE model_id = ?", (model_id,)).rowcount

    def vector_count(self, model_id: str | None = None) -> int:
        """How many vectors the cache holds (of one model, or of all)."""
        if model_id is None:
            return self.conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM embeddings WHERE model_id = ?", (model_id,)).fetchone()[0]

    def model_ids(self) -> list[str]:
        """Every model that has vectors in the cache."""
        return [r[0] for r in self.conn.execute("SELECT DISTINCT model_id FROM embeddings ORDER BY model_id")]

    def count_texts_missing_vectors(self, model_id: str) -> int:
        """How many distinct chunk texts this model has no vector for."""
        return self.conn.execute(
            "SELECT COUNT(DISTINCT c.text_hash) FROM chunks c WHERE NOT EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.model_id = ? AND e.text_hash = c.text_hash)", (model_id,)).fetchone()[0]

    def iter_texts_missing_vectors(self, model_id: str, batch: int = 512) -> Iterator[list[tuple[str, str]]]:
        """(text hash, text) of chunk texts this model has no vector for, each text once, in batches.

        Pages by chunk id and queries afresh for each batch, so a caller may commit vectors
        between batches (and chunks may come and go meanwhile) without holding a cursor open;
        a text stored by the caller before it asks for the next batch does not come again.
        """
        after = -1
        while True:
            rows = self.conn.execute(
                "SELECT c.id, c.text_hash, c.text FROM chunks c WHERE c.id > ? AND NOT EXISTS "
                "(SELECT 1 FROM embeddings e WHERE e.model_id = ? AND e.text_hash = c.text_hash) "
                "ORDER BY c.id LIMIT ?", (after, model_id, batch)).fetchall()
            if not rows:
                return
            after = rows[-1][0]
            yield list({h: (h, text) for _, h, text in rows}.values())

    def chunks_missing_vectors(self, model_id: str) -> list[tuple[int, str, str]]:
        """(chunk id, text hash, text) of chunks this model has no vector for."""
        return [tuple(r) for r in self.conn.execute(
            "SELECT c.id, c.text_hash, c.text FROM chunks c WHERE NOT EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.model_id = ? AND e.text_hash = c.text_hash)", (model_id,))]

    def chunk_ids(self) -> np.ndarray:
        return np.fromiter((r[0] for r in self.conn.execute("SELECT id FROM chunks")), dtype=np.uint64)

    def iter_chunk_vectors(self, model_id: str, chunk_ids: Iterable[int] | None = None,
                           batch: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(chunk ids, float32 vectors) in batches, for building the vector index without embedding."""
        base = ("SELECT c.id, e.vector FROM chunks c JOIN embeddings e "
                "ON e.text_hash = c.text_hash AND e.model_id = ?")
        if chunk_ids is None:
            cursor = self.conn.execute(base, (model_id,))
            yield from _batched_vectors(cursor, batch)
            return
        ids = list(chunk_ids)
        # CROSS JOIN keeps chunks as the outer loop: without it SQLite's planner walks every
        # embedding of the model and probes the id list (measured 5.8 s against 0.04 s for 500
        # ids of 10k chunks), which made every search's rescoring scale with the collection.
        by_ids = base.replace(" JOIN ", " CROSS JOIN ", 1)
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            cursor = self.conn.execute(by_ids + f" WHERE c.id IN ({','.join('?' * len(part))})", (model_id, *part))
            yield from _batched_vectors(cursor, batch)

    def chunk_ids_with_texts(self, text_hashes: Iterable[str]) -> list[int]:
        """Ids of the chunks holding any of these texts (by hash), in id order."""
        hashes = sorted(set(text_hashes))
        ids: list[int] = []
        for i in range(0, len(hashes), 500):
            part = hashes[i:i + 500]
            ids += [r[0] for r in self.conn.execute(
                f"SELECT id FROM chunks WHERE text_hash IN ({','.join('?' * len(part))})", part)]
        return sorted(ids)

    def chunks_by_id(self, ids: Sequence[int]) -> dict[int, ChunkRow]:
        out: dict[int, ChunkRow] = {}
        for i in range(0, len(ids), 500):
            part = [int(x) for x in ids[i:i + 500]]
            q = f"""SELECT c.id, c.file_id, f.path, c.ordinal, c.page, c.start, c."end", c.text, c.text_hash, f.kind, f.mtime_ns, f.content_hash
                    FROM chunks c JOIN files f ON f.id = c.file_id WHERE c.id IN ({','.join('?' * len(part))})"""
            for r in self.conn.execute(q, part):
                out[r[0]] = ChunkRow(r[0], r[1], _dec(r[2]), *r[3:])
        return out

    # -- search --------------------------------------------------------------------------------

    def keyword_search(self, match: str, *, limit: int, where: ChunkFilter = ChunkFilter(),
                       budget_s: float | None = None) -> list[tuple[int, float]] | None:
        """(chunk id, BM25 score, higher is better) for an FTS5 MATCH expression, best first.

        budget_s: give up after this long and return None. A timer thread interrupts the
        statement (sqlite3_interrupt; a no-op once it has finished), so the query itself runs
        without calling back into Python and never waits for the GIL."""
        conn = self.conn
        if where:
            clause, params = where.sql()
            sql = f"""SELECT c.id, -bm25(chunks_fts) FROM chunks_fts
                      JOIN chunks c ON c.id = chunks_fts.rowid JOIN files f ON f.id = c.file_id
                      WHERE chunks_fts MATCH ? AND {clause} ORDER BY bm25(chunks_fts) LIMIT ?"""
        else:  # FTS5 sorts by its own rank, with no join per matching row: about 1.6× faster
            sql, params = "SELECT rowid, -rank FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?", []
        timer, finished = None, threading.Event()
        lock = threading.Lock()

        def interrupt() -> None:
            with lock:  # never once the statement is over: it would hit the next one
                if not finished.is_set():
                    conn.interrupt()

        if budget_s is not None:
            timer = threading.Timer(budget_s, interrupt)
            timer.daemon = True
            timer.start()
        try:
            rows = conn.execute(sql, (match, *params, limit)).fetchall()
        except sqlite3.OperationalError as exc:
            if timer is not None and "interrupted" in str(exc):
                return None
            raise
        finally:
            if timer is not None:
                with lock:
                    finished.set()
                timer.cancel()
        return [(r[0], r[1]) for r in rows]

    def count_matches(self, match: str, *, cap: int, among_last: int | None = None) -> int:
        """How many chunks match an FTS5 expression, counting no further than `cap`.

        among_last: count only among the newest this many chunk ids (a sample: FTS5 seeks to the
        first id, so the cost stays bounded however common the words are).
        Finding matches is cheap next to scoring them (about 20 ns against 1 µs a chunk here)."""
        params: tuple[object, ...]
        if among_last is None:
            sql, params = "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? LIMIT ?", (match, cap)
        else:
            sql = ("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? "
                   "AND rowid > (SELECT max(id) FROM chunks) - ? LIMIT ?")
            params = (match, among_last, cap)
        return self.conn.execute(f"SELECT count(*) FROM ({sql})", params).fetchone()[0]

    def matching_ids(self, match: str, *, among: Iterable[int]) -> set[int]:
        """Which of these chunk ids match an FTS5 expression. Listing the matches without scoring
        them and intersecting here is faster than asking FTS5 about each id (about 60× on CISI)."""
        among = set(among)
        if not among:
            return set()
        rows = self.conn.execute("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?", (match,))
        return {r[0] for r in rows if r[0] in among}

    def chunk_id_bound(self) -> int:
        """An upper bound on the number of chunks, in constant time: the largest chunk id ever given."""
        return self.conn.execute("SELECT coalesce(max(id), 0) FROM chunks").fetchone()[0]

    def chunk_ids_of_file(self, file_id: int) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT id FROM chunks WHERE file_id = ? ORDER BY ordinal", (file_id,))]

    def chunk_ids_where(self, where: ChunkFilter) -> np.ndarray:
        clause, params = where.sql()
        rows = self.conn.execute(f"SELECT c.id FROM chunks c JOIN files f ON f.id = c.file_id WHERE {clause}", params)
        return np.fromiter((r[0] for r in rows), dtype=np.uint64)

    def chunk_vectors(self, model_id: str, chunk_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float32 vectors) of these chunks, in no particular order; ids without a vector are left out."""
        parts = list(self.iter_chunk_vectors(model_id, [int(c) for c in chunk_ids]))
        if not parts:
            return np.empty(0, dtype=np.uint64), np.empty((0, 0), dtype=np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def recent_files(self, *, limit: int, where: ChunkFilter = ChunkFilter()) -> list[int]:
        """The first chunk of the most recently modified indexed files that match."""
        clause, params = where.sql()
        rows = self.conn.execute(
            f"""SELECT MIN(c.id) FROM chunks c JOIN files f ON f.id = c.file_id
                WHERE {clause} GROUP BY f.id ORDER BY f.mtime_ns DESC LIMIT ?""", (*params, limit))
        return [r[0] for r in rows]

    def paths_with_content(self, content_hash: str) -> list[str]:
        rows = self.conn.execute("SELECT path FROM files WHERE content_hash = ? AND status = ? ORDER BY path",
                                 (content_hash, str(FileStatus.INDEXED)))
        return [_dec(r[0]) for r in rows]

    # -- clicks --------------------------------------------------------------------------------

    def add_click(self, conn: sqlite3.Connection, *, query: str, chunk_id: int, text_hash: str, path: str,
                  rank: int, shown: Sequence[int]) -> int:
        cur = conn.execute(
            "INSERT INTO clicks(at, query, chunk_id, text_hash, path, rank, shown) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "RETURNING id", (time.time(), query, chunk_id, text_hash, _enc(path), rank, json.dumps([int(c) for c in shown])))
        return cur.fetchone()[0]

    def clicks(self) -> list[Click]:
        rows = self.conn.execute("SELECT id, at, query, chunk_id, text_hash, path, rank, shown FROM clicks ORDER BY id")
        return [Click(r[0], r[1], r[2], r[3], r[4], _dec(r[5]), r[6], tuple(json.loads(r[7]))) for r in rows]

    def delete_clicks(self, conn: sqlite3.Connection, *, query: str, path: str) -> int:
        """Forget the opens of one file for one query (the user said the result was wrong)."""
        return conn.execute("DELETE FROM clicks WHERE query = ? AND path = ?", (query, _enc(path))).rowcount

    def delete_clicks_outside(self, conn: sqlite3.Connection, roots: Sequence[str]) -> int:
        """Forget clicks on files no longer under any root (a removed folder leaves no trace)."""
        doomed = [r[0] for r in conn.execute("SELECT id, path FROM clicks")
                  if not any(_dec(r[1]).startswith(root.rstrip(os.sep) + os.sep) for root in roots)]
        conn.executemany("DELETE FROM clicks WHERE id = ?", ((i,) for i in doomed))
        return len(doomed)

    # -- reports -------------------------------------------------------------------------------

    def counts_by_status(self) -> dict[str, int]:
        return {s: n for s, n in self.conn.execute("SELECT status, COUNT(*) FROM files GROUP BY status")}

    def chunk_count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]

    def problems(self) -> list[FileRow]:
        """Files not indexed, and indexed ones with a reason (their text was cut at a cap)."""
        rows = self.conn.execute("SELECT * FROM files WHERE status != ? AND (status != ? OR reason != '') ORDER BY path",
                                 (str(FileStatus.PENDING), str(FileStatus.INDEXED)))
        return [_file_row(r) for r in rows]

    def check(self) -> str:
        """SQLite's own integrity check: 'ok' or a description of the damage."""
        return "; ".join(r[0] for r in self.conn.execute("PRAGMA integrity_check"))

    def quick_check(self) -> str:
        """SQLite's quick check (every page read, no index cross-checks): 'ok', or the damage it found."""
        try:
            found = [r[0] for r in self.conn.execute("PRAGMA quick_check(20)")]
        except sqlite3.DatabaseError as exc:
            return str(exc)
        return "ok" if found == ["ok"] else "; ".join(found)


_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def catalog_error(exc: sqlite3.Error, path: Path) -> SiftError:
    """The engine's error for an SQLite error escaping the catalog: damage, a full disk, or else."""
    if DiskFullError.caused(exc, path.parent):
        return DiskFullError(path.parent, "save its catalog")
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return CatalogDamagedError(path, str(exc))
    if code is None and str(exc) in ("database disk image is malformed", "file is not a database"):
        return CatalogDamagedError(path, str(exc))
    return CatalogError(f"The catalog {path} could not be used ({exc}). If this persists, `sift status` "
                        "checks it for damage.")


def _batched_vectors(cursor: sqlite3.Cursor, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    while rows := cursor.fetchmany(batch):
        ids = np.array([r[0] for r in rows], dtype=np.uint64)
        vecs = np.stack([np.frombuffer(r[1], dtype=np.float16) for r in rows]).astype(np.float32)
        yield ids, vecs


def _make_private(db: Path) -> None:
    """Readable by this user only: the catalog and its WAL hold the text of every document."""
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        try:
            if os.stat(path).st_mode & 0o077:
                os.chmod(path, 0o600)
        except OSError:
            pass  # not created yet (it will inherit the database's mode), or not ours to change


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit the open transaction)."""
    statements, current = [], []
    for line in script.splitlines():
        current.append(line)
        joined = "\n".join(current).strip()
        if joined and sqlite3.complete_statement(joined):
            statements.append(joined)
            current = []
    if "\n".join(current).strip():
        raise CatalogError("internal error: a migration has an unterminated statement")
    return statements
