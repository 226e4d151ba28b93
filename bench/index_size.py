"""Index size: bytes per chunk on disk, for the vector index per dtype and for the catalog.

Uses the collections bench/query_latency.py builds (same cache folder, built here if missing):
real Cranfield + CISI chunks and MiniLM vectors, perturbed copies for the larger sizes. The
catalog is split by SQLite's dbstat into chunk text (+ its indexes), the FTS5 keyword index,
the f16 vectors (embeddings table) and the rest (files, meta). Prints a table, writes JSON.

Example: `.venv/bin/python bench/index_size.py --sizes 10k,100k --json out.json`.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import query_latency as ql

from engine.embed import SentenceTransformerEmbedder

DTYPES = ("i8", "f16", "b1", "f32")
GROUPS = {"text": ("chunks", "chunks_file", "chunks_text_hash", "sqlite_autoindex_chunks_1"),
          "fts5": ("chunks_fts",), "vectors_f16": ("embeddings",)}


def catalog_parts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        sizes = dict(conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
    finally:
        conn.close()
    out = {"text": 0, "fts5": 0, "vectors_f16": 0, "other": 0}
    for name, size in sizes.items():
        group = next((g for g, names in GROUPS.items()
                      if name in names or (g == "fts5" and name.startswith("chunks_fts"))), "other")
        out[group] += int(size)
    out["total"] = sum(out.values())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10k,100k")
    ap.add_argument("--cache", default="/tmp/sift-bench-cache")
    ap.add_argument("--json")
    args = ap.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    embedder = SentenceTransformerEmbedder()
    texts, _ = ql.load_ir()
    pool = ql.pool_vectors(cache, embedder, texts)
    result = {"embedder": embedder.model_id, "ndim": int(pool.shape[1]), "sizes": {}}
    print(f"{'chunks':>9} {'part':>12} {'bytes/chunk':>12}")
    for n in ql._sizes(args.sizes):
        home, vecs = ql.collection(cache, embedder, texts, pool, n)
        row: dict[str, float] = {}
        for dtype in DTYPES:
            engine = ql.open_engine(home, embedder, dtype)
            try:
                ql.ensure_index(engine, vecs)
                row[f"index_{dtype}"] = round(engine.store.path(engine.embedder.model_id).stat().st_size / n, 1)
            finally:
                engine.close()
        catalog = home / "data" / "catalog.sqlite3"
        for part, size in catalog_parts(catalog).items():
            row[f"catalog_{part}"] = round(size / n, 1)
        result["sizes"][str(n)] = row
        for key, value in row.items():
            print(f"{n:>9,} {key:>20} {value:>10,.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
