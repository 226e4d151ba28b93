"""Check the CUDA path: device auto-selection, fp16 accuracy against CPU fp32, batch size, end to end.

    # on a CPU machine: make reference embeddings of the first N chunk texts with fp32 weights
    python bench/gpu_check.py reference --corpus ../shared/data/ir/cranfield --n 600 --out ref.npz
    # on the GPU machine
    python bench/gpu_check.py check --corpus DIR --reference ref.npz [--model FOLDER] [--json out.json]

Prints figures and ratios; asserts nothing. Chunk texts come from Sift's own chunker over the
corpus documents, so batches have the lengths real indexing sees.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.chunk import chunk_pages  # noqa: E402
from engine.config import BUNDLED_MODEL  # noqa: E402
from engine.device import pick_device  # noqa: E402
from engine.embed import SPECIAL_TOKENS, SentenceTransformerEmbedder  # noqa: E402
from engine.types import Page  # noqa: E402


def corpus_docs(corpus: Path, limit: int | None = None) -> list[tuple[str, str]]:
    docs = []
    with open(corpus / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs.append((d["_id"], (d.get("title", "") + "\n\n" + d.get("text", "")).strip()))
            if limit and len(docs) >= limit:
                break
    return docs


def chunk_texts(embedder: SentenceTransformerEmbedder, docs: list[tuple[str, str]]) -> list[str]:
    texts = []
    for _, text in docs:
        chunks = chunk_pages([Page(None, text)], token_offsets=embedder.token_offsets,
                             max_tokens=min(200, embedder.max_tokens - SPECIAL_TOKENS), overlap=32)
        texts += [c.text for c in chunks]
    return texts


def cmd_reference(args) -> None:
    emb = SentenceTransformerEmbedder(args.model, device="cpu")
    texts = chunk_texts(emb, corpus_docs(args.corpus))[: args.n]
    t = time.perf_counter()
    vecs = emb.embed_documents(texts)
    print(f"{len(texts)} reference vectors on CPU fp32 in {time.perf_counter() - t:.1f} s")
    np.savez_compressed(args.out, vectors=vecs, texts=np.array(texts, dtype=object))


def _timed(fn, *a, repeat: int = 2) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn(*a)
        best = min(best, time.perf_counter() - t)
    return best


def cmd_check(args) -> None:
    import torch

    results: dict = {"torch": torch.__version__, "cuda": torch.version.cuda,
                     "auto_device": pick_device("auto")}
    if torch.cuda.is_available():
        results["gpu"] = torch.cuda.get_device_name(0)
    print(json.dumps(results))

    emb = SentenceTransformerEmbedder(args.model, device="auto")
    model = emb.model
    results["embedder_device"] = emb.device
    results["param_dtype"] = str(next(model.parameters()).dtype)
    print(f"embedder on {emb.device}, weights {results['param_dtype']}")

    texts = chunk_texts(emb, corpus_docs(args.corpus, args.docs))
    results["chunks"] = len(texts)
    print(f"{len(texts)} chunk texts")

    if args.reference:
        ref = np.load(args.reference, allow_pickle=True)
        ref_texts = list(ref["texts"])[: len(texts)]
        assert ref_texts == texts[: len(ref_texts)], "reference texts differ: same corpus and chunker?"
        got = emb.embed_documents(ref_texts)
        cos = np.sum(got * ref["vectors"][: len(got)], axis=1)
        results["fp16_vs_cpu_fp32_cosine"] = {"min": float(cos.min()), "mean": float(cos.mean())}
        print(f"GPU fp16 vs CPU fp32 cosine over {len(cos)}: min {cos.min():.5f}, mean {cos.mean():.6f}")

    sweep = {}
    for bs in (16, 32, 64, 128, 256, 512):
        emb.batch_size = bs
        emb.embed_documents(texts[:512])  # warm up kernels for this shape range
        seconds = _timed(emb.embed_documents, texts)
        sweep[bs] = len(texts) / seconds
        print(f"fp16 batch {bs:>3}: {sweep[bs]:8.0f} chunks/s")
    results["fp16_chunks_per_s"] = sweep

    best_bs = max(sweep, key=sweep.get)
    emb.batch_size = best_bs
    model.float()
    fp32 = len(texts) / _timed(emb.embed_documents, texts)
    model.half()
    fp16_vecs = emb.embed_documents(texts[:2000])
    model.float()
    fp32_vecs = emb.embed_documents(texts[:2000])
    model.half()
    cos = np.sum(fp16_vecs * fp32_vecs, axis=1)
    results["fp32_chunks_per_s_at_best_batch"] = fp32
    results["fp16_vs_gpu_fp32_cosine"] = {"min": float(cos.min()), "mean": float(cos.mean())}
    print(f"fp32 batch {best_bs}: {fp32:8.0f} chunks/s; fp16 is {sweep[best_bs] / fp32:.2f}× faster; "
          f"fp16 vs fp32 cosine min {cos.min():.5f}")

    # End to end: the real indexer on the corpus written out as files, device auto.
    from engine.engine import Engine

    with tempfile.TemporaryDirectory() as tmp:
        docs_dir = Path(tmp) / "docs"
        docs_dir.mkdir()
        for doc_id, text in corpus_docs(args.corpus, args.docs):
            (docs_dir / f"{doc_id}.txt").write_text(text, encoding="utf-8")
        emb.batch_size = args.engine_batch or best_bs
        engine = Engine.open(Path(tmp) / "home", embedder=emb)
        engine.update_config(parse_workers=args.workers)
        engine.add_folder(docs_dir)
        t = time.perf_counter()
        report = engine.index()
        wall = time.perf_counter() - t
        raw = len(texts) / _timed(emb.embed_documents, texts, repeat=1)
        hits = engine.search("boundary layer transition at supersonic speeds", limit=3)
        results["engine"] = {"files": report.added, "chunks_embedded": report.chunks_embedded, "wall_s": wall,
                             "chunks_per_s": report.chunks_embedded / wall, "raw_encode_chunks_per_s": raw,
                             "ratio_to_raw": report.chunks_embedded / wall / raw, "batch_size": emb.batch_size,
                             "top_hit": os.path.basename(hits[0].path) if hits else None}
        print(f"engine: {report.added} files, {report.chunks_embedded} chunks in {wall:.1f} s = "
              f"{report.chunks_embedded / wall:.0f} chunks/s; raw encode {raw:.0f}/s; ratio "
              f"{report.chunks_embedded / wall / raw:.2f}")
        engine.close()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reference")
    r.add_argument("--corpus", type=Path, required=True)
    r.add_argument("--n", type=int, default=600)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--model", default=BUNDLED_MODEL)
    c = sub.add_parser("check")
    c.add_argument("--corpus", type=Path, required=True)
    c.add_argument("--reference", type=Path)
    c.add_argument("--model", default=BUNDLED_MODEL)
    c.add_argument("--workers", type=int, default=4)
    c.add_argument("--docs", type=int, help="use only the first N documents (a quick dry run)")
    c.add_argument("--engine-batch", type=int)
    c.add_argument("--json")
    args = ap.parse_args()
    cmd_reference(args) if args.cmd == "reference" else cmd_check(args)


if __name__ == "__main__":
    main()
