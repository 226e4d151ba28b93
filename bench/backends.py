"""Embedding backends and precisions side by side, beside the machine's matmul peak, same run.

For each candidate (torch fp32, torch bf16 autocast, OpenVINO fp32, bf16 and int8, and auto/auto,
the default, as it runs here; those the machine cannot run are reported as skipped): chunks/s on 256-token chunks, query-encode
p50/p95, cosine to torch fp32 on the same chunks (mean, min), and, with --ndcg, nDCG@10 of dense
search on a BEIR collection through `sift eval`'s machinery (engine/evaluate.py). The peak is
torch GEMM GFLOP/s (fp32, bf16, int8 where torch has it) measured in this run; MiniLM-L6 costs
about 6.0 GFLOP per 256-token chunk, so chunks/s × 6.0 / peak = share of the compute limit.

    python bench/backends.py                                   # speed, latency, cosine
    python bench/backends.py --ndcg ../shared/data/ir/cranfield --out bench/backends.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CANDIDATES = (("torch", "fp32"), ("torch", "bf16"), ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8"),
              ("auto", "auto"))  # the default: what a plain install runs here (int8 from setup's prepared model on x86)
CHUNK_TOKENS = 254  # + [CLS] and [SEP] = 256
QUERIES = ("boundary layer transition on a flat plate", "heat transfer in supersonic flow",
           "buckling of thin cylindrical shells", "what is the effect of sweep on wing flutter",
           "similarity solutions of the laminar boundary layer equations", "shock wave interaction")


def gflop_per_chunk(tokens: int = 256, layers: int = 6, hidden: int = 384, ffn: int = 1536) -> float:
    """Multiply-adds ×2 of one MiniLM-L6 forward pass: projections, feed-forward, attention."""
    dense = layers * (4 * hidden * hidden + 2 * hidden * ffn) * tokens
    attention = layers * 2 * tokens * tokens * hidden
    return 2 * (dense + attention) / 1e9


def matmul_peak(seconds: float = 2.0) -> dict:
    """GEMM GFLOP/s of torch on this CPU with its current threads: fp32, bf16, int8."""
    import torch

    out = {}
    n = 1024
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("int8", torch.int8)):
        try:
            if dtype is torch.int8:
                a = torch.randint(-128, 127, (n, n), dtype=torch.int8)
                b = torch.randint(-128, 127, (n, n), dtype=torch.int8)
                mm = torch._int_mm
            else:
                a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
                mm = torch.mm
            mm(a, b)
            count, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                mm(a, b)
                count += 1
            out[name] = round(2 * n ** 3 * count / (time.perf_counter() - t0) / 1e9, 1)
        except (RuntimeError, AttributeError, NotImplementedError) as exc:
            out[name] = f"unavailable ({type(exc).__name__})"
    return out


def sample_chunks(embedder, count: int) -> list[str]:
    """count texts of CHUNK_TOKENS tokens each, cut from Cranfield-like technical prose."""
    import random

    from bench.indexing import WORDS

    rng = random.Random(3)
    texts = []
    for _ in range(count):
        text = " ".join(rng.choice(WORDS) for _ in range(400))
        offsets = embedder.token_offsets(text)
        texts.append(text[:offsets[CHUNK_TOKENS - 1][1]])
    return texts


def measure(backend: str, precision: str, texts: list[str], cache: Path, ndcg: str | None,
            limit_queries: int | None) -> tuple[dict, object]:
    import numpy as np

    from engine.embed import SentenceTransformerEmbedder

    e = SentenceTransformerEmbedder(backend=backend, precision=precision, cache_dir=cache)
    if backend != "auto" and (e.backend, e.precision) != (backend, precision):
        return {"skipped": f"runs as {e.backend}/{e.precision} here"}, None
    t0 = time.perf_counter()
    e.warm_up()
    load_s = time.perf_counter() - t0
    e.embed_documents(texts[:e.batch_size])
    t0 = time.perf_counter()
    vectors = e.embed_documents(texts)
    speed = len(texts) / (time.perf_counter() - t0)
    latencies = []
    for _ in range(5):
        for q in QUERIES:
            t0 = time.perf_counter()
            e.embed_query(q)
            latencies.append((time.perf_counter() - t0) * 1000)
    latencies.sort()
    row = {"model_id": e.model_id, "runs_as": f"{e.backend}/{e.precision}", "chunks_per_s": round(speed, 1), "load_s": round(load_s, 1),
           "query_ms_p50": round(statistics.median(latencies), 1),
           "query_ms_p95": round(latencies[int(0.95 * (len(latencies) - 1))], 1), "vectors": np.asarray(vectors)}
    if ndcg:
        from engine.evaluate import evaluate

        result = evaluate(ndcg, modes=["dense"], embedder=e, limit_queries=limit_queries, log=lambda m: None)
        dense = result["modes"]["dense"] if "modes" in result else result["dense"]
        row["ndcg@10"] = round(dense["ndcg@10"], 4)
    return row, e


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=96, help="256-token chunks timed per candidate")
    ap.add_argument("--ndcg", metavar="BEIR_DIR", help="also score dense nDCG@10 on this collection")
    ap.add_argument("--limit-queries", type=int)
    ap.add_argument("--only", nargs="*", help="candidates as backend/precision, e.g. torch/fp32 openvino/bf16")
    ap.add_argument("--out", help="write the JSON here")
    args = ap.parse_args()
    import torch

    from engine.embed import SentenceTransformerEmbedder

    candidates = [c for c in CANDIDATES if not args.only or f"{c[0]}/{c[1]}" in args.only]
    peak = matmul_peak()  # first, before any model or tokenizer has started threads of its own
    texts = sample_chunks(SentenceTransformerEmbedder(precision="fp32"), args.chunks)
    per_chunk = gflop_per_chunk()
    result = {"cpu_threads": torch.get_num_threads(), "cores": os.cpu_count(), "matmul_gflops": peak,
              "gflop_per_chunk": round(per_chunk, 2), "load_avg_1m": round(os.getloadavg()[0], 2), "candidates": {}}
    reference = None
    with tempfile.TemporaryDirectory(prefix="sift-backends-") as cache:
        for backend, precision in candidates:
            name = f"{backend}/{precision}"
            print(f"{name} …", file=sys.stderr, flush=True)
            try:
                row, _ = measure(backend, precision, texts, Path(cache), args.ndcg, args.limit_queries)
            except Exception as exc:  # noqa: BLE001 - a candidate that fails is reported, the others still run
                row = {"skipped": f"{type(exc).__name__}: {exc}"[:300]}
            vectors = row.pop("vectors", None)
            if vectors is not None:
                if name == "torch/fp32":
                    reference = vectors
                if reference is not None:
                    cos = (vectors * reference).sum(axis=1)
                    row["cosine_mean"], row["cosine_min"] = round(float(cos.mean()), 6), round(float(cos.min()), 6)
                gflops = row["chunks_per_s"] * per_chunk
                row["gflops"] = round(gflops, 1)
                for kind, value in peak.items():
                    if isinstance(value, float):
                        row[f"share_of_{kind}_peak"] = round(gflops / value, 3)
            result["candidates"][name] = row
            print(f"  {json.dumps(row)}", file=sys.stderr, flush=True)
    print(f"matmul peak (GFLOP/s, {result['cpu_threads']} threads): {peak}; MiniLM-L6 ≈ {per_chunk:.2f} GFLOP/chunk; "
          f"load avg {result['load_avg_1m']}")
    print(f"{'candidate':<16}{'chunks/s':>9}{'q p50':>8}{'q p95':>8}{'cos mean':>10}{'cos min':>10}{'nDCG@10':>9}")
    for name, row in result["candidates"].items():
        if "skipped" in row:
            print(f"{name:<16} skipped: {row['skipped']}")
            continue
        print(f"{name:<16}{row['chunks_per_s']:>9}{row['query_ms_p50']:>8}{row['query_ms_p95']:>8}"
              f"{row.get('cosine_mean', '-'):>10}{row.get('cosine_min', '-'):>10}{row.get('ndcg@10', '-'):>9}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
