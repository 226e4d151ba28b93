"""Known-item search: a document searched for by words it holds, and how often it comes first.

    python bench/known_items.py ../shared/data/ir/cisi [--keep DIR] [--n 150] [--json]

The collection is indexed as in `sift eval` (learning off). For n documents drawn with a fixed
seed (1) among those holding a word no other document holds and two words 2 to 5 documents
hold (words of 5 letters or more, as written), three searches each:

- unique: the one word only it holds;
- rare2: two of its rare words (in 2 to 5 documents);
- unique+common: its unique word and two of its words found in more than 50 documents.

Each search runs in hybrid mode twice: with Sift's fusion (engine/search.py's _fuse) and, for
comparison, the reciprocal-rank fusion Sift used before (k 30, dense weight 1.2, written out
here). Prints how often the document is first, and in the top 10. Asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import re
import sys
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import engine.search as search
from engine.config import Config
from engine.evaluate import load_beir, open_collection

SEED = 1
KINDS = ("unique", "rare2", "unique+common")


def rank_fusion(cands, rows, learned_weight: float = 0.0, *, sure=None) -> None:
    """Reciprocal-rank fusion over documents, as Sift fused before (comparison only)."""
    k, dense_w, keyword_w = 30, 1.2, 1.0
    doc_rank: dict[str, dict[int, int]] = {"dense": {}, "keyword": {}}
    for side, attr in (("dense", "dense_rank"), ("keyword", "keyword_rank")):
        for c in sorted((c for c in cands if getattr(c, attr)), key=lambda c: getattr(c, attr)):
            doc_rank[side].setdefault(rows[c.chunk_id].file_id, len(doc_rank[side]) + 1)
    for c in cands:
        fid = rows[c.chunk_id].file_id
        d, kw = doc_rank["dense"].get(fid), doc_rank["keyword"].get(fid)
        own = (dense_w / (k + c.dense_rank) if c.dense_rank else 0.0) + (
            keyword_w / (k + c.keyword_rank) if c.keyword_rank else 0.0)
        c.fused = (dense_w / (k + d) if d else 0.0) + (keyword_w / (k + kw) if kw else 0.0) + 1e-3 * own


def searches(corpus, n: int) -> dict[str, list[tuple[str, str]]]:
    words = {d: set(re.findall(r"[a-z]{5,}", doc.as_file_text().lower())) for d, doc in corpus.items()}
    df = collections.Counter(w for ws in words.values() for w in ws)
    eligible = [d for d in sorted(words) if any(df[w] == 1 for w in words[d])
                and sum(2 <= df[w] <= 5 for w in words[d]) >= 2]
    out: dict[str, list[tuple[str, str]]] = {kind: [] for kind in KINDS}
    for d in random.Random(SEED).sample(eligible, min(n, len(eligible))):
        rng = random.Random(d)
        unique = rng.choice(sorted(w for w in words[d] if df[w] == 1))
        rare = rng.sample(sorted(w for w in words[d] if 2 <= df[w] <= 5), 2)
        common = sorted(w for w in words[d] if df[w] > 50)
        out["unique"].append((d, unique))
        out["rare2"].append((d, " ".join(rare)))
        out["unique+common"].append((d, " ".join([unique, *rng.sample(common, min(2, len(common)))])))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", metavar="DIR", help="a BEIR folder: corpus.jsonl, queries.jsonl, qrels.tsv")
    parser.add_argument("--keep", metavar="DIR", help="keep the written corpus and index in DIR for a re-run")
    parser.add_argument("--n", type=int, default=150, help="documents searched for (default 150)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    collection = load_beir(args.dir)
    result: dict = {"collection": collection.name, "documents": 0, "fusion": {}}
    sift_fusion = search._fuse
    with ExitStack() as stack:
        engine, _, by_name = open_collection(stack, collection, keep=args.keep, settings=Config(learn_from_clicks=False))
        engine.index()
        plan = searches(collection.corpus, args.n)
        result["documents"] = len(plan["unique"])
        for label, fuse in (("sift", sift_fusion), ("reciprocal rank", rank_fusion)):
            search._fuse = fuse
            try:
                for kind, items in plan.items():
                    ranks = []
                    for doc, text in items:
                        found = [by_name.get(Path(h.path).name) for h in engine.search(text, limit=10, mode="hybrid")]
                        ranks.append(found.index(doc) + 1 if doc in found else None)
                    result["fusion"].setdefault(label, {})[kind] = {
                        "first": sum(r == 1 for r in ranks), "top10": sum(r is not None for r in ranks)}
            finally:
                search._fuse = sift_fusion
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['collection']}: {result['documents']} documents searched for, hybrid mode")
        for label, kinds in result["fusion"].items():
            print(f"  {label:<16}" + "   ".join(f"{k}: first {v['first']}, top 10 {v['top10']}" for k, v in kinds.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
