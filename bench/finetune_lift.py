"""What learning from opened results gains on a BEIR collection, measured with a realistic simulated user.

    python bench/finetune_lift.py ../shared/data/ir/cranfield [--json] [--keep DIR]
        [--clicks realistic|oracle] [--finetune [--epochs N] [--no-reranker]]

The collection's documents are written out as text files and indexed with the real pipeline in
a Sift home of its own (never the user's). Its judged queries are split by query with a fixed
seed (42): two thirds are the user's searches, the other third is held out and never searched
before the end.

The user (`--clicks realistic`, the headline protocol) runs each of its searches through the
current pipeline (mode auto, learning on, so what was learned from earlier searches counts),
looks at the 10 documents shown, and opens each judged relevant one with probability 0.9 at
ranks 1-3 and 0.6 at ranks 4-10, at most 3 a search; with probability 0.2 it also opens one
non-relevant document from the top 5 (a wrong open, never marked wrong). Each search draws from
its own generator, seeded by (42, query id). `--clicks oracle` is the old simulation, for
comparison only: every judged relevant document is opened, the hit when it was shown, else the
document's passage closest to the query (a document the search never showed). Every open goes
through `Engine.record_click` with what was shown.

Then `Engine.tune_learning` chooses the learning weights on held-out searches of the click
history alone (its own splits and rewrites, seed 7, see engine/learn.py); the test queries are
never seen. Two measures, both through the real search pipeline, before (learning off, which is
exactly the unlearned ranking) and after (what Sift would adopt):

- new queries: the held-out third, judged by the collection's relevance judgments: nDCG@10 and
  Recall@5 of the pipeline ("pipeline", hybrid, reranked when a reranker exists) and of the
  bi-encoder alone ("dense", which learning from opens leaves as it is);
- re-finding: each searched query that led to an open, asked again in another form: stop words
  left out, a third of its content words (rounded down) dropped at random and the rest shuffled
  (engine/learn.py's rewrite_query, seed 42), scored by MRR@10 and success@1 of the documents
  opened for it.

With `--finetune` the bi-encoder fine-tune then runs on the same click history (the wizard's
engine path, `run_finetune`, seed 42, its own held-out third); "after" includes its model only
when its gate offered it. Peak memory (RSS, this process and its parse workers) is printed too.
Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import resource
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import learn
from engine.device import pick_device
from engine.engine import Engine
from engine.evaluate import hits_to_ids, load_beir, open_collection
from engine.metrics import score_run
from engine.search import STOPWORDS
from engine.types import Hit

SEED = 42
SHOWN = 10            # results a search shows the simulated user
OPEN_TOP = 0.9        # chance to open a relevant result at ranks 1-3
OPEN_LOWER = 0.6      # … at ranks 4-10
MAX_OPENS = 3         # relevant results opened per search, at most
WRONG_OPEN = 0.2      # chance of also opening one non-relevant result of the top 5
HELDOUT_FRACTION = 1 / 3


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def realistic_opens(ranked_docs: Sequence[str | None], relevant: set[str], rng: random.Random) -> list[int]:
    """The 1-based ranks the realistic user opens, in the order opened, for the documents shown."""
    opens: list[int] = []
    for rank, doc in enumerate(ranked_docs[:SHOWN], 1):
        if doc in relevant and len(opens) < MAX_OPENS and rng.random() < (OPEN_TOP if rank <= 3 else OPEN_LOWER):
            opens.append(rank)
    wrong = [rank for rank, doc in enumerate(ranked_docs[:5], 1) if doc is not None and doc not in relevant]
    if wrong and rng.random() < WRONG_OPEN:
        opens.append(rng.choice(wrong))
    return opens


def _hit_for_best_chunk(engine: Engine, path: str, query: str) -> Hit | None:
    """A hit for the passage of `path` closest to the query (what the oracle user would have opened)."""
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


def simulate(engine: Engine, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]],
             by_name: Mapping[str, str], paths_by_doc: Mapping[str, str], *, protocol: str) -> tuple[dict, int, int]:
    """Run the user's searches and record its opens; returns ({query id: doc ids opened}, opens, wrong opens)."""
    engine.clear_history()  # a kept home: start from no history
    opened: dict[str, set[str]] = {}
    clicks = wrong = 0
    last = time.perf_counter()
    for n, qid in enumerate(sorted(queries), 1):
        text = queries[qid]
        hits = engine.search(text, limit=SHOWN, mode="auto")
        relevant = {d for d, g in qrels[qid].items() if g > 0}
        docs = [by_name.get(os.path.basename(h.path)) for h in hits]
        chosen: list[tuple[int, Hit]] = []
        if protocol == "realistic":
            chosen = [(rank, hits[rank - 1]) for rank in realistic_opens(docs, relevant, random.Random(f"{SEED}:{qid}"))]
        else:
            for doc_id in sorted(relevant):
                path = paths_by_doc.get(doc_id)
                if path is None:
                    continue
                rank = next((i for i, h in enumerate(hits, 1) if path in (h.path, *h.duplicates)), None)
                hit = hits[rank - 1] if rank is not None else _hit_for_best_chunk(engine, path, text)
                if hit is not None:  # None: the document could not be indexed (empty)
                    chosen.append((rank or len(hits) + 1, hit))
        for rank, hit in chosen:
            engine.record_click(text, hit, rank=rank, shown=hits)
            doc = by_name.get(os.path.basename(hit.path))
            opened.setdefault(qid, set()).add(doc)
            clicks += 1
            wrong += doc not in relevant
        if time.perf_counter() - last > 15:
            last = time.perf_counter()
            log(f"  simulated searches: {n}/{len(queries)}")
    return opened, clicks, wrong


def _metrics(engine: Engine, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]],
             by_name: Mapping[str, str], mode: str) -> dict[str, float]:
    run = {qid: hits_to_ids(engine.search(text, limit=10, mode=mode), by_name) for qid, text in queries.items()}
    scores = score_run(run, qrels)
    success = [1.0 if run[q][:1] and qrels[q].get(run[q][0], 0) > 0 else 0.0 for q in qrels]
    return {"ndcg@10": round(scores["ndcg@10"], 4), "recall@5": round(scores["recall@5"], 4),
            "mrr@10": round(scores["mrr@10"], 4), "success@1": round(float(np.mean(success)), 4)}


def measure(engine: Engine, heldout: Mapping[str, str], heldout_qrels, refind: Mapping[str, str], refind_qrels,
            by_name: Mapping[str, str]) -> dict:
    """Both measures with the engine as it is now."""
    out = {}
    for stage, mode in (("pipeline", "auto"), ("dense", "dense")):
        m = _metrics(engine, heldout, heldout_qrels, by_name, mode)
        out[stage] = {"ndcg@10": m["ndcg@10"], "recall@5": m["recall@5"]}
    m = _metrics(engine, refind, refind_qrels, by_name, "auto")
    out["refind"] = {"mrr@10": m["mrr@10"], "success@1": m["success@1"]}
    return out


def move_passage_vectors(engine: Engine) -> None:
    """`--learned-dense moved`: the variant of the learned dense side that moves each learned
    passage's vector toward its queries, normalize(p + mean of its learned query vectors), instead
    of keeping one vector per learned query. Measured against the kept memory; not in the engine."""
    original = learn.Learned._load
    moved: dict[tuple, learn._Memory] = {}

    def load(self: learn.Learned, embedder):
        memory = original(self, embedder)
        key = (embedder.model_id, memory.stamp)
        if key not in moved:
            vectors = memory.vectors.copy()
            rows: dict[tuple[int, str], list[int]] = {}
            for n, passage in enumerate(memory.passages):
                rows.setdefault(passage, []).append(n)
            for (file_id, text_hash), members in rows.items():
                ids = [c for c, row in engine.catalog.chunks_by_id(engine.catalog.chunk_ids_of_file(file_id)).items()
                       if row.text_hash == text_hash]
                found, vecs = engine.catalog.chunk_vectors(embedder.model_id, ids[:1])
                if not len(found) or vecs.shape[1] != vectors.shape[1]:
                    continue
                target = vecs[0] + memory.vectors[members].mean(axis=0)
                vectors[members] = target / max(float(np.linalg.norm(target)), 1e-9)
            moved[key] = dataclasses.replace(memory, vectors=vectors)
        return moved[key]

    learn.Learned._load = load  # type: ignore[method-assign]


def peak_rss_mb() -> float:
    """This process's and its (finished) children's peak resident memory, MiB (Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 1024 / 1024
    return round(max(own, children) * scale, 1)


def run(folder: str, *, keep: str | None, protocol: str, finetune: bool, epochs: int | None,
        train_reranker: bool, limit_queries: int | None, learned_dense: str = "memory") -> dict:
    started = time.perf_counter()
    collection = load_beir(folder, limit_queries=limit_queries)
    log(f"{collection.name}: {len(collection.corpus):,} documents, {len(collection.queries):,} judged queries.")
    with ExitStack() as stack:
        engine, _, by_name = open_collection(stack, collection, keep=keep, prefix="sift-ft-bench-")
        corpus_dir = Path(engine.config.folders[0])
        paths_by_doc = {doc_id: os.path.abspath(corpus_dir / name) for name, doc_id in by_name.items()}
        if learned_dense == "moved":
            move_passage_vectors(engine)
        engine.update_config(learn_from_clicks=True)
        engine.set_learning(learn.LearnWeights())
        t = time.perf_counter()
        report = engine.index()
        index_s = time.perf_counter() - t
        log(f"Indexed {report.added + report.updated + report.moved:,} files in {index_s:.1f} s.")

        qids = sorted(collection.queries)
        random.Random(SEED).shuffle(qids)
        held = round(len(qids) * HELDOUT_FRACTION)
        heldout_ids, user_ids = sorted(qids[:held]), sorted(qids[held:])
        heldout = {q: collection.queries[q] for q in heldout_ids}
        heldout_qrels = {q: collection.qrels[q] for q in heldout_ids}

        t = time.perf_counter()
        opened, clicks, wrong = simulate(engine, {q: collection.queries[q] for q in user_ids}, collection.qrels,
                                         by_name, paths_by_doc, protocol=protocol)
        log(f"{protocol} user: {clicks:,} opens ({wrong} wrong) on {len(opened)} of {len(user_ids)} searches "
            f"in {time.perf_counter() - t:.1f} s.")
        refind = {q: learn.rewrite_query(collection.queries[q], seed=SEED, stopwords=STOPWORDS) for q in opened}
        refind = {q: text for q, text in refind.items() if text.strip()}
        refind_qrels = {q: {d: 1 for d in opened[q]} for q in refind}

        engine.update_config(learn_from_clicks=False)   # exactly the unlearned ranking
        before = measure(engine, heldout, heldout_qrels, refind, refind_qrels, by_name)
        engine.update_config(learn_from_clicks=True)
        t = time.perf_counter()
        tuned = engine.tune_learning()
        tune_s = time.perf_counter() - t
        log(f"{tuned.message} ({tune_s:.0f} s; weights {tuned.weights})")
        after = measure(engine, heldout, heldout_qrels, refind, refind_qrels, by_name)
        method = "instant" if engine.learning_summary().weights.weight > 0 else "unchanged"

        result: dict = {
            "protocol": protocol, "learned_dense": learned_dense, "collection": collection.name, "docs": len(collection.corpus),
            "queries": len(collection.queries), "user_queries": len(user_ids), "heldout_queries": len(heldout),
            "refind_queries": len(refind), "clicks": clicks, "wrong_opens": wrong,
            "pairs": engine.learning_summary().pairs,
            "train_seconds": 0.0, "method": method,
            "weights": {"weight": tuned.weights.weight, "threshold": tuned.weights.threshold,
                        "keyword_share": tuned.weights.keyword_share, "floor": tuned.weights.floor,
                        "feedback": tuned.weights.feedback, "chosen_on": tuned.weights.chosen_on},
            "tuning": {"before": dict(tuned.before), "after": dict(tuned.after)},
            "before": {"pipeline": before["pipeline"], "dense": before["dense"]},
            "after": {"pipeline": after["pipeline"], "dense": after["dense"]},
            "refind": {"before": before["refind"], "after": after["refind"]},
            "device": pick_device(engine.config.device),
        }
        if finetune:
            result["finetune"] = _finetune(engine, epochs=epochs, train_reranker=train_reranker)
            if result["finetune"]["offered"]:
                if result["finetune"]["embedder"]:
                    engine.adopt_model(result["finetune"]["embedder"])
                if result["finetune"]["reranker"]:
                    engine.adopt_reranker(result["finetune"]["reranker"])
                adopted = measure(engine, heldout, heldout_qrels, refind, refind_qrels, by_name)
                result["after"] = {"pipeline": adopted["pipeline"], "dense": adopted["dense"]}
                result["refind"]["after"] = adopted["refind"]
                result["method"] = method + "+finetune"
            result["pairs"] = result["finetune"]["pairs"]
            result["train_seconds"] = result["finetune"]["train_seconds"]
        result.update(tune_seconds=round(tune_s, 1), index_seconds=round(index_s, 1),
                      total_seconds=round(time.perf_counter() - started, 1), peak_rss_mb=peak_rss_mb())
        return result


def _finetune(engine: Engine, *, epochs: int | None, train_reranker: bool) -> dict:
    from engine.finetune import TrainOptions, finetune_summary, run_finetune

    options = TrainOptions(seed=SEED, heldout_fraction=1 / 3, train_reranker=train_reranker,
                           **({"epochs": epochs} if epochs is not None else {}))
    summary = finetune_summary(engine, options)
    log(summary.message)
    if not summary.enough:
        return {"offered": False, "verdict": summary.message, "pairs": summary.pairs, "train_seconds": 0.0,
                "embedder": None, "reranker": None}
    t = time.perf_counter()
    last = [0.0]
    stages: list[tuple[str, float]] = []   # (stage, peak RSS so far when it began), in order

    def progress(p) -> None:
        if not stages or stages[-1][0] != p.stage:
            stages.append((p.stage, peak_rss_mb()))
        if time.perf_counter() - last[0] > 20:
            last[0] = time.perf_counter()
            eta = f", about {math.ceil(p.eta_s)} s left" if p.eta_s else ""
            log(f"  [{p.stage}] {p.message}{eta}")

    r = run_finetune(engine, options, on_progress=progress)
    log(r.verdict)
    # The peak while a stage ran is the peak at the start of the next one (ru_maxrss only rises).
    ends = [*(peak for _, peak in stages[1:]), peak_rss_mb()]
    by_stage = [[stage, end] for (stage, _), end in zip(stages, ends, strict=True)]
    log(f"peak RSS (MiB) at the end of each stage: {by_stage}")
    return {"offered": r.improved, "peak_rss_mb_by_stage": by_stage, "verdict": r.verdict, "pairs": r.pairs, "train_seconds": r.train_seconds,
            "seconds": round(time.perf_counter() - t, 1), "embedder": r.embedder, "reranker": r.reranker,
            "mix": r.mix, "mixes": {f"{a:g}": m.as_dict() for a, m in r.mixes.items()},
            "heldout_before": r.before.as_dict(), "candidates": {k: m.as_dict() for k, m in r.candidates.items()}}


def format_table(r: dict) -> str:
    lines = [(f"{r['collection']} ({r['protocol']} user): {r['docs']:,} documents; {r['user_queries']} searches, "
              f"{r['clicks']:,} opens ({r['wrong_opens']} wrong); {r['heldout_queries']} held-out new queries, "
              f"{r['refind_queries']} re-found; method {r['method']}, weights {r['weights']}"), ""]
    rows = [("pipeline", "ndcg@10"), ("pipeline", "recall@5"), ("dense", "ndcg@10"), ("dense", "recall@5")]
    lines.append(f"{'':<26}{'before':>9}{'after':>9}{'change':>9}")
    for stage, key in rows:
        b, a = r["before"][stage][key], r["after"][stage][key]
        lines.append(f"{'new ' + stage + ' ' + key:<26}{b:>9.4f}{a:>9.4f}{a - b:>+9.4f}")
    for key in ("mrr@10", "success@1"):
        b, a = r["refind"]["before"][key], r["refind"]["after"][key]
        lines.append(f"{'refind ' + key:<26}{b:>9.4f}{a:>9.4f}{a - b:>+9.4f}")
    if "finetune" in r:
        lines += ["", f"fine-tune: {r['finetune']['verdict']}"]
    lines += ["", f"tuning {r['tune_seconds']:.0f} s; indexing {r['index_seconds']:.0f} s; total "
                  f"{r['total_seconds']:.0f} s; peak RSS {r['peak_rss_mb']:.0f} MiB"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", metavar="DIR", help="a BEIR folder: corpus.jsonl, queries.jsonl, qrels.tsv")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--keep", metavar="DIR", help="keep the written corpus and index in DIR for a re-run")
    parser.add_argument("--clicks", choices=("realistic", "oracle"), default="realistic",
                        help="the simulated user (oracle: opens every judged relevant document; comparison only)")
    parser.add_argument("--finetune", action="store_true", help="also run the bi-encoder fine-tune and its gate")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--no-reranker", action="store_true", help="with --finetune: train the bi-encoder only")
    parser.add_argument("--learned-dense", choices=("memory", "moved"), default="memory",
                        help="the learned dense side: a vector per learned query (Sift's) or, for comparison, "
                             "the passage's vector moved toward its queries")
    parser.add_argument("--limit-queries", type=int, metavar="N", help="only the first N judged queries")
    args = parser.parse_args()
    result = run(args.dir, keep=args.keep, protocol=args.clicks, finetune=args.finetune, epochs=args.epochs,
                 train_reranker=not args.no_reranker, limit_queries=args.limit_queries,
                 learned_dense=args.learned_dense)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
