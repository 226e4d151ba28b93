"""The keyword stage's latency (BM25 over FTS5 as search plans it) at 100k-1M chunks, for one or
more source trees in the same run, so a change is judged as a ratio against the old code.

The catalog holds text only (no vectors: BM25 needs none), made exactly as bench/query_latency.py
makes its texts (Cranfield and CISI chunks, then noisy mixtures of them), and is cached under
--cache. Each tree's engine runs in its own process, in alternating rounds over the same
queries (Cranfield's typed questions and CISI's pasted paragraphs). Also timed, where the tree
has it: the keyword weights of the good/weak label (engine/match.py), counted on the same
thread after BM25. Prints figures, asserts nothing.

    .venv/bin/python bench/keyword_latency.py --sizes 100k --code /path/to/main --code .
"""

from __future__ import annotations

import argparse
import inspect
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]


def build(code: str, home: Path, n: int, ir: str) -> None:
    """A Sift home whose catalog holds n synthetic chunks (text only), written by this tree's
    engine (the oldest compared: a newer one migrates its schema, an older one cannot read a newer)."""
    sys.path.insert(0, code)
    import engine.catalog  # noqa: F401  (this tree's, before query_latency puts ours first)

    sys.path.insert(1, str(HERE / "bench"))
    import query_latency as ql

    ql.IR = Path(ir)

    from engine.catalog import Catalog, FileStatus
    from engine.embed import text_hash
    from engine.paths import resolve_paths
    from engine.types import Chunk

    texts, _ = ql.load_ir()
    texts = ql.synthetic_texts(n, texts)
    paths = resolve_paths({"SIFT_HOME": str(home)}).ensure()
    catalog = Catalog(paths.catalog)
    t = time.perf_counter()
    per = ql.CHUNKS_PER_FILE
    for start in range(0, n, 20_000):
        with catalog.transaction() as conn:
            for f0 in range(start, min(n, start + 20_000), per):
                fid = catalog.upsert_file(conn, path=f"/synthetic/{f0 // per:07d}.txt", size=1000,
                                          mtime_ns=1_700_000_000_000_000_000 + f0, content_hash=None, kind="text",
                                          status=FileStatus.INDEXED)
                chunks = [Chunk(ordinal=j - f0, text=texts[j], page=None, start=0, end=len(texts[j]),
                                token_count=len(texts[j].split())) for j in range(f0, min(n, f0 + per))]
                catalog.replace_chunks(conn, fid, chunks, [text_hash(c.text) for c in chunks])
        print(f"\r  catalog {min(n, start + 20_000):,}/{n:,} chunks, {time.perf_counter() - t:.0f} s", end="",
              flush=True, file=sys.stderr)
    print(file=sys.stderr)
    catalog.close()
    (home / ".complete").touch()


def worker(code: str, home: str, rounds_from: int, rounds_to: int, ir: str) -> None:
    """In a fresh process: time this tree's keyword stage over the queries [from, to)."""
    sys.path.insert(0, code)
    from engine.catalog import Catalog  # this tree's engine, before query_latency puts ours first
    from engine.paths import resolve_paths
    from engine.search import Searcher, parse_query

    assert Path(sys.modules["engine"].__file__).resolve().is_relative_to(Path(code).resolve())
    sys.path.insert(1, str(HERE / "bench"))
    import query_latency as ql

    ql.IR = Path(ir)

    _, queries = ql.load_ir()
    kinds = ql.query_kinds(len(queries))
    catalog = Catalog(resolve_paths({"SIFT_HOME": home}).catalog)
    kw = {name: (catalog if name == "catalog" else (lambda: None))
          for name in inspect.signature(Searcher).parameters}
    searcher = Searcher(**kw)
    judge = getattr(searcher, "judge", None)
    searcher._keyword_search(parse_query("warm up the catalog"))
    out = []
    for i in range(rounds_from, rounds_to):
        query = parse_query(queries[i])
        t = time.perf_counter()
        found = searcher._keyword_search(query)
        bm25 = (time.perf_counter() - t) * 1000
        weights = None
        if judge is not None:
            t = time.perf_counter()
            judge.keyword_weights(query.keywords(), query.weights())
            weights = (time.perf_counter() - t) * 1000
        out.append({"kind": kinds[i], "bm25_ms": bm25, "weights_ms": weights, "found": len(found)})
    print(json.dumps(out))


def stats(ms: list[float]) -> dict:
    return {"p50": round(float(np.percentile(ms, 50)), 2), "p95": round(float(np.percentile(ms, 95)), 2),
            "n": len(ms)} if ms else {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100k", help="catalog sizes in chunks, e.g. 100k,1m")
    ap.add_argument("--code", action="append", help="a source tree to time (repeatable; default: this one)")
    ap.add_argument("--cache", default="/tmp/sift-bench-cache")
    ap.add_argument("--rounds", type=int, default=4, help="alternating rounds (each tree runs each query once)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--ir", help="the folder holding cranfield/ and cisi/ (default: ../shared/data/ir)")
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--build", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build:
        build(args.build[0], Path(args.build[1]), int(args.build[2]), args.build[3])
        return 0
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]), int(args.worker[3]), args.worker[4])
        return 0
    codes = [str(Path(c).resolve()) for c in (args.code or [str(HERE)])]
    sys.path.insert(0, str(HERE / "bench"))
    import query_latency as ql

    ir = args.ir or str(ql.IR)
    ql.IR = Path(ir)

    n_queries = len(ql.load_ir()[1])
    results = {}
    for n in ql._sizes(args.sizes):
        home = Path(args.cache) / f"keyword-home-{n}-{Path(codes[0]).name}"
        if not (home / ".complete").exists():
            print(f"building a {n:,}-chunk text catalog in {home} …", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, __file__, "--build", codes[0], str(home), str(n), ir], check=True)
        homes = {}
        for i, code in enumerate(codes):  # a copy each: opening it may migrate its schema
            homes[code] = home.with_name(f"{home.name}-copy{i}")
            shutil.rmtree(homes[code], ignore_errors=True)
            shutil.copytree(home, homes[code])
        rows: dict[str, list[dict]] = {c: [] for c in codes}
        step = -(-n_queries // args.rounds)
        for r in range(args.rounds):
            for code in (codes if r % 2 == 0 else codes[::-1]):
                lo, hi = r * step, min(n_queries, (r + 1) * step)
                done = subprocess.run([sys.executable, __file__, "--worker", code, str(homes[code]), str(lo), str(hi), ir],
                                      capture_output=True, text=True, check=True)
                rows[code] += json.loads(done.stdout.strip().splitlines()[-1])
        size = {}
        for code, found in rows.items():
            size[code] = {kind: {"bm25_ms": stats([f["bm25_ms"] for f in found if f["kind"] == kind]),
                                 "weights_ms": stats([f["weights_ms"] for f in found
                                                      if f["kind"] == kind and f["weights_ms"] is not None])}
                          for kind in ("typed", "paragraph")}
            size[code]["all"] = {"bm25_ms": stats([f["bm25_ms"] for f in found])}
            print(f"{n:,} chunks, {code}: BM25 p50/p95 typed {size[code]['typed']['bm25_ms']}, paragraph "
                  f"{size[code]['paragraph']['bm25_ms']}; label weights typed {size[code]['typed']['weights_ms']}, "
                  f"paragraph {size[code]['paragraph']['weights_ms']}", flush=True)
        if len(codes) > 1:
            base = size[codes[0]]["all"]["bm25_ms"]
            for code in codes[1:]:
                other = size[code]["all"]["bm25_ms"]
                print(f"  ratio {code} / {codes[0]}: p50 {other['p50'] / base['p50']:.2f}, "
                      f"p95 {other['p95'] / base['p95']:.2f}", flush=True)
        results[n] = size
        for copy in homes.values():
            shutil.rmtree(copy, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
