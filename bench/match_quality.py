"""Good/weak labels on two BEIR collections: in domain, out of domain, and gibberish.

For each collection (indexed through the real pipeline by `engine.evaluate`, kept under
--keep so reruns only search) at the chosen vector precision:
  * in domain: `sift eval`'s hybrid and default modes: nDCG@10 (labels never reorder, so it is
    the ranking's) and relevant_hidden (of the judged queries with a relevant document in the
    top 10, the share that see all of them marked weak);
  * out of domain: the other collection's queries over this corpus: the share with no good match;
  * gibberish: GIBBERISH random letter-string queries (two words of 4-10 letters): good matches.
Prints figures, asserts nothing.

    .venv/bin/python bench/match_quality.py ../shared/data/ir/cranfield ../shared/data/ir/cisi \
        --keep /tmp/sift-match --dtype i8
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import string
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config import Config
from engine.engine import Engine
from engine.evaluate import evaluate, load_beir

GIBBERISH = 20


def gibberish(n: int, seed: int = 2024) -> list[str]:
    rng = random.Random(seed)
    word = lambda: "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 10)))
    return [f"{word()} {word()}" for _ in range(n)]


def no_good_share(engine: Engine, queries: list[str]) -> tuple[float, list[int]]:
    goods = [engine.search_detailed(q, limit=10, literal=True).good_matches for q in queries]
    return sum(g == 0 for g in goods) / len(goods), goods


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("collections", nargs=2, metavar="DIR", help="two BEIR folders")
    ap.add_argument("--keep", metavar="DIR", required=True, help="keep each indexed collection under DIR/NAME-DTYPE")
    ap.add_argument("--dtype", default="i8", choices=("i8", "f16", "f32", "b1"), help="vector precision of the index")
    ap.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = ap.parse_args()
    names = [Path(c).resolve().name for c in args.collections]
    out: dict = {"dtype": args.dtype}
    for i, folder in enumerate(args.collections):
        keep = Path(args.keep) / f"{names[i]}-{args.dtype}"
        if not keep.exists():  # another precision's index: its catalog's vectors serve, nothing re-embedded
            for done in sorted(Path(args.keep).glob(f"{names[i]}-*")):
                shutil.copytree(done, keep)
                # The copy searches its own corpus folder; the files there read as moved, not new.
                settings = keep / "home" / "config" / "settings.json"
                settings.write_text(settings.read_text(encoding="utf-8").replace(
                    json.dumps(str(done / "corpus")), json.dumps(str(keep / "corpus"))), encoding="utf-8")
                break
        result = evaluate(folder, modes=["hybrid", "default"], keep=keep, settings=Config(vector_dtype=args.dtype),
                          log=lambda m: print(m, file=sys.stderr))
        other = load_beir(args.collections[1 - i])
        engine = Engine.open(keep / "home")
        try:
            ood, _ = no_good_share(engine, list(other.queries.values()))
            gib, goods = no_good_share(engine, gibberish(GIBBERISH))
            model = engine.embedder.model_id
        finally:
            engine.close()
        m = result["modes"]
        out[names[i]] = {"model": model, "hybrid_ndcg@10": m["hybrid"]["ndcg@10"],
                         "default_ndcg@10": m["default"]["ndcg@10"],
                         "relevant_hidden": m["default"]["relevant_hidden"],
                         "relevant_some_weak": m["default"]["relevant_some_weak"],
                         f"no_good_for_{names[1 - i]}_queries": round(ood, 4),
                         "gibberish_good_matches": goods}
        print(f"{names[i]} ({args.dtype}, {model}): nDCG@10 hybrid {m['hybrid']['ndcg@10']:.4f}, default "
              f"{m['default']['ndcg@10']:.4f}; relevant_hidden {m['default']['relevant_hidden']:.4f} "
              f"(some weak {m['default']['relevant_some_weak']:.4f}); {names[1 - i]}'s queries with no good "
              f"match {ood:.1%}; gibberish: {sum(g == 0 for g in goods)}/{len(goods)} with none "
              f"(good matches {goods})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
