"""Query latency: stage 1 and the full two-stage search at 10k-1M chunks, per vector dtype.

Prints a table and writes JSON. Never a test; asserts nothing about speed.

How the larger collections are made (printed with the figures too):
  * base: the Cranfield and CISI documents of ../shared/data/ir (title + text, cut to 160 words:
    one chunk each), embedded by the engine's real embedder (all-MiniLM-L6-v2 by default);
  * vectors: a pool of POOL (100k) real embeddings: the base chunks, then texts of two sentences
    from two random base documents. Chunk i < POOL has pool vector i, so 10k and 100k are all
    real embeddings; chunk i ≥ POOL mixes pool vector i mod POOL with a random other one in a
    random proportion a ~ U(0.5, 1): normalize(a · v + (1 − a) · w + NOISE · ε ⊙ σ), ε standard
    normal, σ the pool's per-dimension standard deviation (at 1M, 10 such neighbours per pool
    vector, as overlapping chunks of one document would be).
  * texts, made apart from the vectors (they only load BM25 and the snippets): chunk i < B is
    base chunk i; chunk i ≥ B is base chunk i mod B with each word kept with probability 0.9,
    then the words of a random other base chunk each with probability 0.25, then a marker word,
    so BM25 posting lists grow with N as in one big collection on a single subject (pessimistic:
    a real collection's vocabulary grows with it).
  * (A first generator made noisy copies of the 2,858 base vectors alone: at 1M that is 350
    near-equidistant copies per base vector, clusters HNSW links badly: ANN recall@10 0.53-0.61
    where 100k gave 0.99, and 0.82 even at expansion 1,024, while an exact i8 scan gave 0.98.)
  * queries: the collections' real queries (Cranfield 225, CISI 112), embedded by the engine.

Recall@10 is of the dense stage against exact (brute-force f32) search over all N vectors:
"ann" asks the index for 10; "stage" is what search uses (DENSE_DEPTH × oversample candidates,
rescored with the catalog's f16 vectors), top 10.

Catalogs and indexes are cached under --cache (default /tmp/sift-bench-cache), so a rerun skips
building them. Example: `.venv/bin/python bench/query_latency.py --sizes 10k,100k --json out.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.catalog import Catalog, ChunkFilter, FileStatus
from engine.config import Config, save_config
from engine.embed import SentenceTransformerEmbedder, bundled_model_dir, text_hash
from engine.engine import Engine
from engine.paths import resolve_paths
from engine.search import DENSE_DEPTH, OVERSAMPLE_BY_DTYPE, RESCORE_OVERSAMPLE
from engine.types import Chunk
from engine.vectors import VectorIndex

IR = Path(__file__).resolve().parents[2] / "shared" / "data" / "ir"
NOISE = 0.3
POOL = 100_000
GENERATOR = "pool"  # part of the cache folder's name: a changed generator builds afresh
WORDS_PER_CHUNK = 160
CHUNKS_PER_FILE = 4


def _sizes(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        mult = 1_000_000 if part.endswith("m") else 1_000 if part.endswith("k") else 1
        out.append(int(float(part.rstrip("mk")) * mult))
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def stats(ms: list[float]) -> dict:
    return {"p50": round(pct(ms, 50), 2), "p95": round(pct(ms, 95), 2), "p99": round(pct(ms, 99), 2), "n": len(ms)}


def load_ir() -> tuple[list[str], list[str]]:
    texts, queries = [], []
    for name in ("cranfield", "cisi"):
        with open(IR / name / "corpus.jsonl", encoding="utf-8") as fh:
            for line in fh:
                doc = json.loads(line)
                words = f"{doc.get('title', '')} {doc.get('text', '')}".split()
                if len(words) >= 5:
                    texts.append(" ".join(words[:WORDS_PER_CHUNK]))
        with open(IR / name / "queries.jsonl", encoding="utf-8") as fh:
            queries += [json.loads(line)["text"] for line in fh]
    return texts, queries


def query_kinds(n: int) -> list[str]:
    """For the first n of load_ir's queries: 'typed' (Cranfield's) or 'paragraph' (CISI's)."""
    with open(IR / "cranfield" / "queries.jsonl", encoding="utf-8") as fh:
        typed = sum(1 for line in fh if line.strip())
    return ["typed" if i < typed else "paragraph" for i in range(n)]


def pool_texts(texts: list[str], size: int, seed: int = 11) -> list[str]:
    """The base chunks, then distinct texts of two sentences from two random documents, to `size`."""
    sentences = [x for t in texts for x in re.split(r"(?<=[.?!])\s+", t) if len(x.split()) >= 4]
    rng = random.Random(seed)
    out, seen = list(texts), set(texts)
    while len(out) < size:
        text = f"{rng.choice(sentences)} {rng.choice(sentences)}"
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def pool_vectors(cache: Path, embedder, texts: list[str]) -> np.ndarray:
    """Real embeddings of pool_texts (cached: POOL texts take minutes to embed)."""
    pool = pool_texts(texts, POOL)
    path = cache / f"pool-{text_hash(embedder.model_id + str(len(texts)) + str(POOL))[:12]}.npy"
    if path.exists():
        return np.load(path)
    print(f"embedding a pool of {len(pool):,} real texts with {embedder.model_id} (cached in {path}) …", flush=True)
    t = time.perf_counter()
    vecs = np.concatenate([embedder.embed_documents(pool[i:i + 256]) for i in range(0, len(pool), 256)])
    print(f"  {len(pool) / (time.perf_counter() - t):.1f} texts/s", flush=True)
    np.save(path, vecs.astype(np.float32))
    return vecs


def synthetic_vectors(n: int, pool: np.ndarray, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = len(pool)
    sigma = pool.std(axis=0).astype(np.float32)
    vecs = np.empty((n, pool.shape[1]), dtype=np.float32)
    vecs[:min(n, p)] = pool[:min(n, p)]
    for start in range(p, n, 65536):
        stop = min(n, start + 65536)
        mix = rng.uniform(0.5, 1.0, stop - start).astype(np.float32)[:, None]
        mixed = mix * pool[np.arange(start, stop) % p] + (1 - mix) * pool[rng.integers(0, p, stop - start)] + \
            NOISE * rng.standard_normal((stop - start, pool.shape[1]), dtype=np.float32) * sigma
        vecs[start:stop] = mixed / np.linalg.norm(mixed, axis=1, keepdims=True)
    return vecs


def synthetic_texts(n: int, texts: list[str], seed: int = 7) -> list[str]:
    """Only needed to build a collection (a million of them take a while to make)."""
    b = len(texts)
    out = list(texts[:n])
    pyrng = random.Random(seed)
    for i in range(b, n):
        s, o = i % b, pyrng.randrange(b)
        words = [w for w in texts[s].split() if pyrng.random() > 0.1]
        words += [w for w in texts[o].split() if pyrng.random() < 0.25]
        out.append(" ".join(words) + f" copy{i // b}")
    return out


def build_home(home: Path, n: int, texts: list[str], vecs: np.ndarray, model_id: str) -> None:
    """A Sift home whose catalog holds these chunks and f16 vectors (as the indexer writes them)."""
    paths = resolve_paths({"SIFT_HOME": str(home)}).ensure()
    catalog = Catalog(paths.catalog)
    t = time.perf_counter()
    for start in range(0, n, 20_000):
        with catalog.transaction() as conn:
            hashes, rows = [], []
            for f0 in range(start, min(n, start + 20_000), CHUNKS_PER_FILE):
                fid = catalog.upsert_file(conn, path=f"/synthetic/{f0 // CHUNKS_PER_FILE:07d}.txt", size=1000,
                                          mtime_ns=1_700_000_000_000_000_000 + f0, content_hash=None, kind="text",
                                          status=FileStatus.INDEXED)
                part = range(f0, min(n, f0 + CHUNKS_PER_FILE))
                chunks = [Chunk(ordinal=j - f0, text=texts[j], page=None, start=0, end=len(texts[j]),
                                token_count=len(texts[j].split())) for j in part]
                h = [text_hash(c.text) for c in chunks]
                catalog.replace_chunks(conn, fid, chunks, h)
                hashes += h
                rows += list(part)
            catalog.put_vectors(conn, model_id, hashes, vecs[rows])
        print(f"\r  catalog {min(n, start + 20_000):,}/{n:,} chunks, {time.perf_counter() - t:.0f} s", end="", flush=True)
    print(flush=True)
    catalog.close()


def collection(cache: Path, embedder, texts: list[str], pool: np.ndarray, n: int) -> tuple[Path, np.ndarray]:
    """The Sift home holding the size-n collection (built on first use) and its vectors."""
    home = cache / f"home-{GENERATOR}-{n}"
    vecs = synthetic_vectors(n, pool)
    if not (home / ".complete").exists():
        shutil.rmtree(home, ignore_errors=True)
        print(f"building a {n:,}-chunk catalog in {home} …", flush=True)
        build_home(home, n, synthetic_texts(n, texts), vecs, embedder.model_id)
        (home / ".complete").touch()
    return home, vecs


def open_engine(home: Path, embedder, dtype: str, reranker: str = "", budget_ms: int = 700) -> Engine:
    paths = resolve_paths({"SIFT_HOME": str(home)}).ensure()
    save_config(paths.settings, Config(folders=(str(home),), vector_dtype=dtype, reranker=reranker,
                                       use_reranker=bool(reranker), rerank_budget_ms=budget_ms))
    return Engine(paths, embedder=embedder)


def ensure_index(engine: Engine, vecs: np.ndarray) -> tuple[float, bool]:
    """Load the cached index (verified), or build it with usearch's multi-threaded add and save it."""
    if engine.store.is_saved(engine.embedder.model_id):
        t = time.perf_counter()
        index = engine.vectors()
        return (time.perf_counter() - t), index.is_view
    t = time.perf_counter()
    ids = engine.catalog.chunk_ids()
    index = VectorIndex(ndim=vecs.shape[1], dtype=engine.config.vector_dtype)
    # Catalog vectors are f16; add the same rounding the index would get from a rebuild.
    index.add(ids, vecs[: len(ids)].astype(np.float16).astype(np.float32))
    engine.store.save(index, engine.embedder.model_id)
    built = time.perf_counter() - t
    print(f"  built {engine.config.vector_dtype} index of {len(ids):,} in {built:.0f} s", flush=True)
    engine.drop_vectors()
    t = time.perf_counter()
    index = engine.vectors()
    return (time.perf_counter() - t), index.is_view


def exact_top10(vecs: np.ndarray, queries: np.ndarray) -> np.ndarray:
    best_s = np.full((len(queries), 10), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 10), dtype=np.int64)
    for start in range(0, len(vecs), 200_000):
        block = vecs[start:start + 200_000].astype(np.float16).astype(np.float32)
        sims = queries @ block.T
        idx = np.argpartition(-sims, 10, axis=1)[:, :10] if sims.shape[1] > 10 else np.tile(
            np.arange(sims.shape[1]), (len(queries), 1))
        s = np.take_along_axis(sims, idx, axis=1)
        all_s, all_i = np.concatenate([best_s, s], 1), np.concatenate([best_i, idx + start], 1)
        keep = np.argsort(-all_s, axis=1)[:, :10]
        best_s, best_i = np.take_along_axis(all_s, keep, 1), np.take_along_axis(all_i, keep, 1)
    return best_i + 1  # chunk ids start at 1, in insertion order


def measure_size(engine: Engine, queries: list[str], qvecs: np.ndarray, exact: np.ndarray, full: bool,
                 rerank_queries: int) -> dict:
    searcher = engine.searcher
    index = engine.vectors()
    oversample = 1 if index.dtype in ("f16", "f32") else max(1, OVERSAMPLE_BY_DTYPE.get(index.dtype,
                                                                                       RESCORE_OVERSAMPLE))
    ann_hits = stage_hits = 0
    ann_ms, stage_ms = [], []
    for q, e in zip(qvecs, exact):
        keys, _ = index.search(q, 10)
        ann_hits += len(set(keys.tolist()) & set(e.tolist()))
        t = time.perf_counter()
        index.search(q, DENSE_DEPTH * oversample)
        ann_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        ids, _ = searcher._ann(q, DENSE_DEPTH, ChunkFilter())
        stage_ms.append((time.perf_counter() - t) * 1000)
        stage_hits += len(set(ids[:10]) & set(e.tolist()))
    out = {"recall_at_10_ann": round(ann_hits / (10 * len(qvecs)), 4),
           "recall_at_10_stage": round(stage_hits / (10 * len(qvecs)), 4),
           "candidates": DENSE_DEPTH * oversample,
           "ann_ms": stats(ann_ms),            # the index alone, at the stage's candidate count
           "ann_rescored_ms": stats(stage_ms)}  # plus fetching f16 vectors from the catalog and rescoring
    engine.search_detailed("warm up the first stage", mode="hybrid")
    wall, dense, bm25 = [], [], []
    for q in queries:
        t = time.perf_counter()
        r = engine.search_detailed(q, limit=10, mode="hybrid")
        wall.append((time.perf_counter() - t) * 1000)
        dense.append(r.timings_ms.get("dense", 0.0))
        bm25.append(r.timings_ms.get("bm25", 0.0))
    out["stage1_ms"] = stats(wall)
    # Cranfield's are typed questions (~9 words); CISI's are mostly pasted paragraphs (up to ~140
    # words): the query encoder's time grows with length, and BM25 has more words to weigh.
    kinds = query_kinds(len(queries))
    out["stage1_ms_by_kind"] = {k: stats([w for w, kk in zip(wall, kinds) if kk == k]) for k in sorted(set(kinds))}
    out["dense_ms"] = stats(dense)  # query embedding + ANN + rescoring
    out["bm25_ms"] = stats(bm25)
    if full:
        engine.search_detailed("warm up the reranker", mode="auto")
        wall, depths, tokens = [], [], []
        for q in queries[:rerank_queries]:
            t = time.perf_counter()
            r = engine.search_detailed(q, limit=10, mode="auto")
            wall.append((time.perf_counter() - t) * 1000)
            depths.append(r.rerank_depth)
            tokens.append(r.rerank_tokens)
        out["full_ms"] = stats(wall)
        out["rerank_plans"] = sorted({f"{d}x{t}" for d, t in zip(depths, tokens)})
    return out


def encode_latency(embedder, queries: list[str], load_home: Path | None, docs: Path | None) -> dict:
    """Query-encode p50/p95 idle, then while another process indexes 3,000 files: `sift watch`
    (the background service the desktop runs, at low priority: the goal's case) and a
    foreground `sift index` at normal priority."""
    embedder.embed_query("warm up")
    idle = []
    for q in queries[:150]:
        t = time.perf_counter()
        embedder.embed_query(q)
        idle.append((time.perf_counter() - t) * 1000)
    out = {"idle_ms": stats(idle)}
    if load_home is None or docs is None:
        return out
    cwd = Path(__file__).resolve().parents[1]
    for name, command in (("under_background_indexing_ms", "watch"), ("under_foreground_index_ms", "index")):
        home = load_home.with_name(f"{load_home.name}-{command}")
        env = dict(os.environ, SIFT_HOME=str(home))
        subprocess.run([sys.executable, "-m", "engine.cli", "add-folder", str(docs)], env=env, check=True,
                       capture_output=True, cwd=cwd)
        proc = subprocess.Popen([sys.executable, "-m", "engine.cli", command], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd=cwd)
        try:
            time.sleep(20)  # past model loading: the indexer is embedding
            loaded = []
            for q in queries[:150]:  # the same queries as idle (the first 150 are typed questions)
                if proc.poll() is not None:
                    break
                t = time.perf_counter()
                embedder.embed_query(q)
                loaded.append((time.perf_counter() - t) * 1000)
        finally:
            proc.kill()
            proc.wait()
        out[name] = stats(loaded)
    return out


def cross_encoder_folder(cache: Path) -> Path:
    """A MiniLM-L6-sized cross-encoder: the bundled MiniLM weights with a fresh scoring head."""
    folder = cache / "minilm-fresh-head-cross-encoder"
    if not (folder / "config.json").exists():
        from sentence_transformers import CrossEncoder

        model = CrossEncoder(str(bundled_model_dir()), num_labels=1, local_files_only=True)
        model.save(str(folder), safe_serialization=True)
    return folder


def reranker_speed(folder: Path, texts: list[str], queries: list[str]) -> dict:
    """Cross-encoder time per rerank at several depth × truncation, fp32 and bf16, and bf16's agreement."""
    from engine.rerank import CrossEncoderReranker

    out = {}
    scores = {}
    for precision in ("fp32", "bf16"):
        r = CrossEncoderReranker(folder, device="cpu", precision=precision, max_tokens=512)
        if r.precision != precision:
            out[precision] = "not supported on this CPU"
            continue
        r.score("warm up", texts[:4], max_tokens=64)
        rows = {}
        for depth, tokens in ((100, 256), (30, 256), (30, 128), (20, 128), (100, 64)):
            t = time.perf_counter()
            s = r.score(queries[0], texts[:depth], max_tokens=tokens)
            rows[f"{depth}x{tokens}"] = round((time.perf_counter() - t) * 1000, 1)
            if (depth, tokens) == (30, 256):
                scores[precision] = s
        out[precision] = rows
    if len(scores) == 2:
        a, b = scores["fp32"], scores["bf16"]
        top = lambda s: set(np.argsort(-s)[:10].tolist())
        out["bf16_vs_fp32"] = {"pearson": round(float(np.corrcoef(a, b)[0, 1]), 4),
                               "top10_overlap": len(top(a) & top(b)) / 10,
                               "max_abs_diff": round(float(np.abs(a - b).max()), 4)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10k,100k,1m", help="collection sizes in chunks (10k,100k,1m)")
    ap.add_argument("--dtypes", default="i8,f16,b1")
    ap.add_argument("--cache", default="/tmp/sift-bench-cache", help="where built catalogs and indexes are kept")
    ap.add_argument("--queries", type=int, default=337, help="queries timed per size and dtype")
    ap.add_argument("--full-at", default="100k", help="sizes at which the full two-stage search is timed ('' = none)")
    ap.add_argument("--rerank-queries", type=int, default=60)
    ap.add_argument("--budget-ms", type=int, default=700, help="rerank budget (settings: rerank_budget_ms)")
    ap.add_argument("--keyword-budget-ms", type=float, default=None,
                    help="BM25's time budget before a query is narrowed to its rarer words "
                         "(engine.search.KEYWORD_BUDGET_MS; a huge value turns narrowing off, for a baseline)")
    ap.add_argument("--no-encode", action="store_true", help="skip the query-encode idle/under-load measurement")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if args.keyword_budget_ms is not None:
        import engine.search

        engine.search.KEYWORD_BUDGET_MS = args.keyword_budget_ms
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    embedder = SentenceTransformerEmbedder()
    texts, queries = load_ir()
    queries = queries[: args.queries]
    pool = pool_vectors(cache, embedder, texts)
    qvecs = np.stack([embedder.embed_query(q) for q in queries])
    result = {"machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
              "embedder": embedder.model_id, "base_chunks": len(texts), "noise": NOISE,
              "how": __doc__.split("How the larger collections are made (printed with the figures too):")[1]
              .split("Recall@10")[0].strip(), "sizes": {}}
    print(result["how"])
    full_at = set(_sizes(args.full_at)) if args.full_at else set()
    folder = cross_encoder_folder(cache) if full_at else None
    for n in _sizes(args.sizes) if args.sizes else []:
        home, vecs = collection(cache, embedder, texts, pool, n)
        exact = exact_top10(vecs, qvecs)
        for dtype in args.dtypes.split(","):
            engine = open_engine(home, embedder, dtype, str(folder) if n in full_at else "", args.budget_ms)
            try:
                load_s, viewed = ensure_index(engine, vecs)
                row = {"index_load_s": round(load_s, 2), "view": viewed}
                row.update(measure_size(engine, queries, qvecs, exact, n in full_at, args.rerank_queries))
            finally:
                engine.close()
            result["sizes"].setdefault(str(n), {})[dtype] = row
            full = f" full p50/p95 {row['full_ms']['p50']:.0f}/{row['full_ms']['p95']:.0f} ms {row['rerank_plans']}" \
                if "full_ms" in row else ""
            print(f"{n:>9,} {dtype:>4}: stage1 p50/p95/p99 {row['stage1_ms']['p50']:.1f}/"
                  f"{row['stage1_ms']['p95']:.1f}/{row['stage1_ms']['p99']:.1f} ms ("
                  + ", ".join(f"{k} p95 {v['p95']:.1f}" for k, v in row["stage1_ms_by_kind"].items())
                  + f"; dense p95 "
                  f"{row['dense_ms']['p95']:.1f} of which ann {row['ann_ms']['p95']:.1f} +rescore "
                  f"{row['ann_rescored_ms']['p95']:.1f}, bm25 p95 {row['bm25_ms']['p95']:.1f}); recall@10 ann "
                  f"{row['recall_at_10_ann']:.3f} stage {row['recall_at_10_stage']:.3f}; load {load_s:.2f} s"
                  f"{' (view)' if viewed else ''}{full}", flush=True)
    if folder is not None:
        result["cross_encoder_ms"] = reranker_speed(folder, texts, queries)
        print("cross-encoder ms (depth x tokens):", json.dumps(result["cross_encoder_ms"]), flush=True)
    if not args.no_encode:
        with tempfile.TemporaryDirectory(prefix="sift-load-") as tmp:
            docs = Path(tmp) / "docs"
            docs.mkdir()
            for i, t in enumerate(texts[:3000]):
                (docs / f"{i:05d}.txt").write_text(t, encoding="utf-8")
            result["query_encode"] = encode_latency(embedder, queries, Path(tmp) / "home", docs)
        enc = result["query_encode"]
        print(f"query encode p50/p95: idle {enc['idle_ms']['p50']:.1f}/{enc['idle_ms']['p95']:.1f} ms; "
              + "; ".join(f"{k.replace('_ms', '').replace('_', ' ')} {v['p50']:.1f}/{v['p95']:.1f} ms"
                          for k, v in enc.items() if k != "idle_ms"), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
