"""First-stage quality per vector precision: `sift eval` nDCG@10 / Recall@100 of dense and hybrid.

Each collection is indexed once (the catalog keeps the f16 vectors); every precision then only
rebuilds the vector index from them. "i8-no-rescore" is the calibrated i8 index alone (no
oversampling, no rescoring with the catalog's f16 vectors), to show what the rescoring adds.
Prints a table, writes JSON. Example:
`.venv/bin/python bench/precision_quality.py ../shared/data/ir/cranfield ../shared/data/ir/cisi`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import search
from engine.config import Config
from engine.evaluate import evaluate

VARIANTS = (("f32", "f32"), ("f16", "f16"), ("i8", "i8"), ("i8-no-rescore", "i8"), ("b1", "b1"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("collections", nargs="+", help="BEIR folders (corpus.jsonl, queries.jsonl, qrels)")
    ap.add_argument("--keep", default="/tmp/sift-bench-cache/eval", help="indexed collections are kept here")
    ap.add_argument("--json")
    args = ap.parse_args()
    out: dict = {}
    for folder in args.collections:
        name = Path(folder).name
        for label, dtype in VARIANTS:
            saved = dict(search.OVERSAMPLE_BY_DTYPE)
            if label == "i8-no-rescore":
                search.OVERSAMPLE_BY_DTYPE["i8"] = 0  # search then ranks by the index's own similarities
            try:
                result = evaluate(folder, modes=["dense", "hybrid"], keep=Path(args.keep) / name,
                                  settings=Config(vector_dtype=dtype), log=lambda m: None)
            finally:
                search.OVERSAMPLE_BY_DTYPE.clear()
                search.OVERSAMPLE_BY_DTYPE.update(saved)
            row = {mode: {k: r[k] for k in ("ndcg@10", "recall@100") if k in r}
                   for mode, r in result["modes"].items()}
            out.setdefault(name, {})[label] = row
            print(f"{name:>10} {label:>14}: " + "  ".join(
                f"{mode} nDCG@10 {r.get('ndcg@10', float('nan')):.4f} R@100 {r.get('recall@100', float('nan')):.4f}"
                for mode, r in row.items()), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
