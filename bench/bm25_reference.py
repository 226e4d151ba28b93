"""Sift's keyword stage (`sift eval`'s bm25 mode) beside a reference BM25 on the same judgments.

The reference is the one ../shared/data/ir/README.md quotes: bm25s over whole documents (title
+ text), k1 1.5, b 0.75, its English stop words, Snowball (PyStemmer) stemming. Sift's side is
`engine.evaluate` in bm25 mode: the documents written out as files, indexed by the real
pipeline (chunks, FTS5), every judged query searched as plain text. Both are scored by the same
metric code. Needs the `bench` extra (`pip install -e ".[bench]"`). Prints figures, asserts nothing.

    .venv/bin/python bench/bm25_reference.py ../shared/data/ir/cranfield ../shared/data/ir/cisi \
        --keep /tmp/sift-bm25   # keeps each indexed collection, so a rerun only searches
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.evaluate import evaluate, load_beir, score_run


def reference_bm25(folder: str, *, depth: int = 100) -> dict[str, float]:
    """bm25s (k1 1.5, b 0.75, English stop words, Snowball stemming) over whole documents."""
    import bm25s
    import Stemmer

    collection = load_beir(folder)
    ids = list(collection.corpus)
    stemmer = Stemmer.Stemmer("english")
    texts = [collection.corpus[d].as_file_text() for d in ids]
    retriever = bm25s.BM25(k1=1.5, b=0.75)
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False),
                    show_progress=False)
    qids = list(collection.queries)
    tokens = bm25s.tokenize([collection.queries[q] for q in qids], stopwords="en", stemmer=stemmer,
                            show_progress=False)
    found, scores = retriever.retrieve(tokens, k=min(depth, len(ids)), show_progress=False)
    run = {q: [ids[i] for i, s in zip(row, srow) if s > 0] for q, row, srow in zip(qids, found, scores)}
    return score_run(run, collection.qrels)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("collections", nargs="+", metavar="DIR", help="BEIR folders")
    ap.add_argument("--keep", metavar="DIR", help="keep each collection's index under DIR/NAME (reruns only search)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = ap.parse_args()
    out = {}
    for folder in args.collections:
        name = Path(folder).resolve().name
        ref = reference_bm25(folder)
        keep = str(Path(args.keep) / name) if args.keep else None
        sift = evaluate(folder, modes=["bm25"], keep=keep, log=lambda m: print(m, file=sys.stderr))["modes"]["bm25"]
        out[name] = {"reference_bm25s": {k: round(v, 4) for k, v in ref.items()},
                     "sift_bm25": {k: v for k, v in sift.items()}}
        print(f"{name}: nDCG@10 reference {ref['ndcg@10']:.4f}, sift bm25 {sift['ndcg@10']:.4f} "
              f"({sift['ndcg@10'] - ref['ndcg@10']:+.4f}); Recall@100 {ref['recall@100']:.4f} vs "
              f"{sift['recall@100']:.4f}; sift's keyword stage p50 {sift['latency_ms']['p50']:.1f} ms, "
              f"p95 {sift['latency_ms']['p95']:.1f} ms", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
