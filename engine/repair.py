"""A damaged catalog: set it aside, start a new one, and carry over the clicks and vectors it still yields."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from engine.catalog import Catalog
from engine.paths import Paths

log = logging.getLogger(__name__)

# What a rebuild cannot get back from the folders: the searches the user opened results for
# (the fine-tune wizard and what clicks teach), and the embedding cache (saves re-embedding).
SALVAGED_TABLES = ("clicks", "embeddings")
_SIDE_FILES = ("", "-wal", "-shm")


@dataclass(frozen=True, slots=True)
class SetAside:
    """What `set_aside_catalog` did: where the damaged file went, and how many rows it carried over."""

    damaged: str               # the old catalog's new name ("" when there was none)
    rows: dict[str, int]       # table → rows copied into the new catalog


def set_aside_catalog(paths: Paths) -> SetAside:
    """Rename the catalog (and its -wal/-shm) to catalog.damaged-TIME.sqlite3, create a new one,
    copy what can still be read of SALVAGED_TABLES, and delete the vector index files (their
    keys are the old catalog's chunk ids). Call with no connection to the catalog open."""
    old = paths.catalog
    aside = old.with_name(f"{old.stem}.damaged-{time.strftime('%Y%m%d-%H%M%S')}{old.suffix}")
    n = 1
    while aside.exists():
        aside = old.with_name(f"{old.stem}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{n}{old.suffix}")
        n += 1
    moved = False
    for side in _SIDE_FILES:
        source = Path(f"{old}{side}")
        if source.exists():
            os.replace(source, f"{aside}{side}")
            moved = moved or side == ""
    for index_file in paths.index_dir.glob("*.usearch*"):
        index_file.unlink(missing_ok=True)
    catalog = Catalog(old)
    rows: dict[str, int] = {}
    try:
        if moved:
            rows = _salvage(aside, catalog)
    finally:
        catalog.close()
    return SetAside(damaged=str(aside) if moved else "", rows=rows)


def _salvage(damaged: Path, catalog: Catalog) -> dict[str, int]:
    """Copy the readable rows of each salvaged table, reading forward then backward from the damage."""
    copied: dict[str, int] = {}
    try:
        source = sqlite3.connect(f"file:{damaged}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        log.warning("cannot open the damaged catalog %s to salvage it: %s", damaged, exc)
        return copied
    try:
        for table in SALVAGED_TABLES:
            columns = _common_columns(source, catalog, table)
            if not columns:
                continue
            rows = _readable_rows(source, table, columns)
            names = ", ".join(f'"{c}"' for c in columns)
            marks = ", ".join("?" for _ in columns)
            with catalog.transaction() as conn:
                before = conn.total_changes
                conn.executemany(f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({marks})", rows)
                copied[table] = conn.total_changes - before
    finally:
        source.close()
    return copied


def _common_columns(source: sqlite3.Connection, catalog: Catalog, table: str) -> list[str]:
    try:
        old = [r[1] for r in source.execute(f"PRAGMA table_info({table})")]
    except sqlite3.Error:
        return []
    new = {r[1] for r in catalog.conn.execute(f"PRAGMA table_info({table})")}
    return [c for c in old if c in new]


def _readable_rows(source: sqlite3.Connection, table: str, columns: list[str]) -> list[tuple]:
    """Rows up to the first damaged page, then (by rowid, from the end) those after it."""
    names = ", ".join(f'"{c}"' for c in columns)
    rows: dict[object, tuple] = {}
    try:
        source.execute(f"SELECT rowid FROM {table} LIMIT 0")
        orders: tuple[str, ...] = (f"SELECT rowid, {names} FROM {table} ORDER BY rowid",
                  f"SELECT rowid, {names} FROM {table} ORDER BY rowid DESC")
    except sqlite3.Error:  # WITHOUT ROWID: one pass in key order
        orders = (f"SELECT NULL, {names} FROM {table}",)
    for number, query in enumerate(orders):
        try:
            for row in source.execute(query):
                rows[row[0] if row[0] is not None else (number, len(rows))] = tuple(row[1:])
        except sqlite3.Error as exc:
            log.warning("salvaging %s stopped at damage: %s", table, exc)
    return list(rows.values())


def relearn_from_clicks(catalog: Catalog) -> int:
    """After a rebuild has indexed again: what the carried-over opens teach (engine/learn.py), found
    by path and passage text, since chunk and file ids are new. Returns the passages learned on."""
    tables = {r[0] for r in catalog.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "learned" not in tables:
        return 0
    with catalog.transaction() as conn:
        before = conn.total_changes
        conn.execute(
            """INSERT OR IGNORE INTO learned(file_id, text_hash, key, query, at)
               SELECT f.id, k.text_hash, lower(trim(k.query)), trim(k.query), max(k.at)
               FROM clicks k JOIN files f ON f.path = k.path
               JOIN chunks c ON c.file_id = f.id AND c.text_hash = k.text_hash
               WHERE trim(k.query) != '' GROUP BY f.id, k.text_hash, lower(trim(k.query))""")
        return conn.total_changes - before
