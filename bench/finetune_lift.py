"""What the on-device fine-tune gains, on a BEIR collection, with a simulated user.

    python bench/finetune_lift.py ../shared/data/ir/cranfield [--json] [--keep DIR] [--epochs N]

The collection's documents are written out as text files and indexed with the real pipeline in
a Sift home of its own (never the user's). The simulated user then searches every judged query
(mode auto, 10 results, so what is "shown" is real) and opens each judged relevant document:
the hit itself when it was shown, else the document's passage closest to the query, ranked just
below the results shown. Each open goes through `Engine.record_click`. Then the wizard's engine
path runs (`Engine.finetune`, seed 42): it splits the clicked queries by query, two thirds to
learn from and the remaining third held out, and measures the current and the new models on
the held-out third through the full pipeline. The figures printed are those held-out ones:
nDCG@10 and Recall@5 (and Recall@10, MRR@10) of the bi-encoder alone ("dense") and of the full
pipeline ("pipeline": hybrid, reranked when a reranker exists), before and after, with the
training time and the number of training pairs. Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.embed import pick_device
from engine.engine import Engine
from engine.evaluate import _configure, _prepare_keep, load_beir, write_corpus
from engine.finetune import METRIC_KEYS, FinetuneProgress, TrainOptions
from engine.types import Hit

SEED = 42
SHOWN = 10          # results a search shows the simulated user


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _hit_for_best_chunk(engine: Engine, path: str, query: str) -> Hit | None:
    """A hit for the passage of `path` closest to the query (what the user would have opened)."""
    row = engine.catalog.file(path)
    if row is None:
        return None
    ids = engine.catalog.chunk_ids_of_file(row.id)
    found, vecs = engine.catalog.chunk_vectors(engine.embedder.model_id, ids)
    if not len(found):
        return None
    best = int(found[int(np.argmax(vecs @ engine.embedder.embed_query(query)))])
    chunk = engine.catalog.chunks_by_id([best])[best]
    return Hit(path=chunk.path, score=0.0, page=chunk.page, snippet="", chunk_id=chunk.id, start=chunk.start,
               end=chunk.end, kind=chunk.kind or "", mtime=chunk.mtime_ns / 1e9)


def record_clicks(engine: Engine, collection, paths_by_doc: dict[str, str]) -> int:
    """Search each judged query and open each of its relevant documents; returns clicks recorded."""
    with engine.catalog.transaction() as conn:  # a kept home: start from no history
        conn.execute("DELETE FROM clicks")
    clicks = 0
    last = time.perf_counter()
    for n, (qid, text) in enumerate(collection.queries.items(), 1):
        hits = engine.search(text, limit=SHOWN, mode="auto")
        for doc_id in collection.qrels[qid]:
            path = paths_by_doc.get(doc_id)
            if path is None:
                continue
            rank = next((i for i, h in enumerate(hits, 1) if path in (h.path, *h.duplicates)), None)
            hit = hits[rank - 1] if rank is not None else _hit_for_best_chunk(engine, path, text)
            if hit is None:
                continue  # the document could not be indexed (empty)
            engine.record_click(text, hit, rank=rank or len(hits) + 1, shown=hits)
            clicks += 1
        if time.perf_counter() - last > 15:
            last = time.perf_counter()
            log(f"  simulated searches: {n}/{len(collection.queries)}")
    return clicks


class _ProgressLog:
    def __init__(self) -> None:
        self.stage, self.last = "", 0.0

    def __call__(self, p: FinetuneProgress) -> None:
        now = time.perf_counter()
        if p.stage != self.stage or now - self.last > 20 or (p.total and p.done >= p.total):
            if p.stage == self.stage and now - self.last < 2:
                return
            self.stage, self.last = p.stage, now
            eta = f", about {math.ceil(p.eta_s)} s left" if p.eta_s else ""
            log(f"  [{p.stage}] {p.message}{eta}")


def run(folder: str, *, keep: str | None, epochs: int, train_reranker: bool, limit_queries: int | None,
        hard_negatives: int = TrainOptions.hard_negatives) -> dict:
    started = time.perf_counter()
    collection = load_beir(folder, limit_queries=limit_queries)
    log(f"{collection.name}: {len(collection.corpus):,} documents, {len(collection.queries):,} judged queries.")
    with ExitStack() as stack:
        if keep is not None:
            work = Path(keep).expanduser().resolve()
            _prepare_keep(work, collection.name)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sift-ft-bench-")))
        corpus_dir = work / "corpus"
        by_name = write_corpus(collection.corpus, corpus_dir)
        paths_by_doc = {doc_id: os.path.abspath(corpus_dir / name) for name, doc_id in by_name.items()}
        engine = Engine.open(work / "home")
        stack.callback(engine.close)
        _configure(engine, corpus_dir, None)
        t = time.perf_counter()
        report = engine.index()
        index_s = time.perf_counter() - t
        log(f"Indexed {report.added + report.updated + report.moved:,} files in {index_s:.1f} s.")

        t = time.perf_counter()
        clicks = record_clicks(engine, collection, paths_by_doc)
        log(f"Recorded {clicks:,} opened results in {time.perf_counter() - t:.1f} s.")
        options = TrainOptions(epochs=epochs, seed=SEED, heldout_fraction=1 / 3, train_reranker=train_reranker,
                               hard_negatives=hard_negatives)
        summary = engine.finetune_summary(options)
        log(summary.message)
        t = time.perf_counter()
        result = engine.finetune(options, on_progress=_ProgressLog())
        finetune_s = time.perf_counter() - t
        return {
            "collection": collection.name,
            "docs": len(collection.corpus),
            "queries": len(collection.queries),
            "clicks": clicks,
            "pairs": result.pairs,
            "pairs_all": summary.pairs,
            "train_queries": summary.train_queries,
            "heldout_queries": result.heldout_queries,
            "device": pick_device(engine.config.device),
            "before": result.before.as_dict(),
            "after": result.after.as_dict(),
            "candidates": {k: m.as_dict() for k, m in result.candidates.items()},
            "embedder_offered": result.embedder is not None,
            "reranker_offered": result.reranker is not None,
            "verdict": result.verdict,
            "train_seconds": result.train_seconds,
            "finetune_seconds": round(finetune_s, 1),
            "index_seconds": round(index_s, 1),
            "total_seconds": round(time.perf_counter() - started, 1),
        }


def format_table(r: dict) -> str:
    lines = [(f"{r['collection']}: {r['docs']:,} documents, {r['queries']:,} judged queries, {r['clicks']:,} opened "
              f"results; {r['pairs']:,} training pairs from {r['train_queries']} queries, "
              f"{r['heldout_queries']} held-out queries ({r['device']})"), ""]
    header = f"{'':<18}" + "".join(f"{k:>11}" for k in METRIC_KEYS)
    lines += [header, "-" * len(header)]
    for stage in ("dense", "pipeline"):
        for when in ("before", "after"):
            m = r[when][stage]
            lines.append(f"{stage + ' ' + when:<18}" + "".join(f"{m[k]:>11.4f}" for k in METRIC_KEYS))
    lines += ["", r["verdict"],
              (f"training {r['train_seconds']:.0f} s; whole fine-tune {r['finetune_seconds']:.0f} s; "
               f"indexing {r['index_seconds']:.0f} s; total {r['total_seconds']:.0f} s")]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", metavar="DIR", help="a BEIR folder: corpus.jsonl, queries.jsonl, qrels.tsv")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--keep", metavar="DIR", help="keep the written corpus and index in DIR for a re-run")
    parser.add_argument("--epochs", type=int, default=TrainOptions.epochs)
    parser.add_argument("--hard-negatives", type=int, default=TrainOptions.hard_negatives,
                        help="hard negatives per pair for the search model (0: in-batch negatives only)")
    parser.add_argument("--no-reranker", action="store_true", help="train the bi-encoder only")
    parser.add_argument("--limit-queries", type=int, metavar="N", help="only the first N judged queries")
    args = parser.parse_args()
    result = run(args.dir, keep=args.keep, epochs=args.epochs, train_reranker=not args.no_reranker,
                 limit_queries=args.limit_queries, hard_negatives=args.hard_negatives)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
