"""The held-out gate: measure models through the real pipeline on held-out searches, and decide."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from engine.errors import check_cancel
from engine.finetune.options import Metrics
from engine.finetune import pairs as _pairs  # its minimums read at call time (tests lower them)
from engine.finetune.pairs import Pair
from engine.metrics import score_run
from engine.types import Hit

# The gate (see `gate`): the full pipeline's nDCG@10 must rise by at least GATE_MIN_GAIN, and
# no other held-out metric (dense or pipeline) may fall by more than GATE_MAX_LOSS, absolute.
GATE_MIN_GAIN = 0.005
GATE_MAX_LOSS = 0.02
METRIC_KEYS = ("ndcg@10", "recall@5", "recall@10", "mrr@10")
EVAL_DEPTH = 10                 # documents asked per held-out query: the deepest cut-off scored

SearchFn = Callable[[str, str], Sequence[Hit]]   # (query, mode) → hits, best first


def hits_to_paths(hits: Sequence[Hit]) -> list[str]:
    """Documents in rank order; a hit standing for identical files counts each of them."""
    return list(dict.fromkeys(p for h in hits for p in (h.path, *h.duplicates)))


def heldout_relevance(pairs: Sequence[Pair]) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """(key → the query as typed, key → {opened document: 1}) for the held-out queries."""
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for p in pairs:
        queries.setdefault(p.key, p.raw)
        qrels.setdefault(p.key, {})[p.path] = 1
    return queries, qrels


def measure(search: SearchFn, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]], *,
            on_query: Callable[[int, int], None] | None = None,
            cancel: threading.Event | None = None) -> Metrics:
    """Held-out nDCG@10, Recall@5/10 and MRR@10 of dense search and of the full pipeline ("auto")."""
    out: dict[str, dict[str, float]] = {}
    total, done = 2 * len(queries), 0
    if on_query is not None:
        on_query(0, total)
    for stage, mode in (("dense", "dense"), ("pipeline", "auto")):
        run: dict[str, list[str]] = {}
        for key, raw in queries.items():
            check_cancel(cancel)
            run[key] = hits_to_paths(search(raw, mode))
            done += 1
            if on_query is not None:
                on_query(done, total)
        scores = score_run(run, qrels) if qrels else {}
        out[stage] = {k: round(float(scores.get(k, 0.0)), 4) for k in METRIC_KEYS}
    return Metrics(dense=out["dense"], pipeline=out["pipeline"])


_LABELS = {"ndcg@10": "nDCG@10", "recall@5": "Recall@5", "recall@10": "Recall@10", "mrr@10": "MRR@10"}


def _delta(before: float, after: float) -> str:
    return f"{before:.3f} → {after:.3f} ({after - before:+.3f})"


def gate(before: Metrics, after: Metrics, *, stages: Sequence[str] = ("dense", "pipeline")) -> tuple[bool, str]:
    """Whether `after` is better enough to offer, and why, in one sentence.

    The rule: the full pipeline's held-out nDCG@10 must rise by at least GATE_MIN_GAIN, and none
    of the other metrics of `stages` (nDCG@10, Recall@5, Recall@10, MRR@10 of dense search and of
    the pipeline) may fall by more than GATE_MAX_LOSS. A reranker changes only the pipeline, so
    its gate looks at ("pipeline",).
    """
    b, a = before.pipeline["ndcg@10"], after.pipeline["ndcg@10"]
    worse = []
    for stage in stages:
        for key in METRIC_KEYS:
            if stage == "pipeline" and key == "ndcg@10":
                continue
            was, now = getattr(before, stage)[key], getattr(after, stage)[key]
            if now < was - GATE_MAX_LOSS:
                worse.append(f"{stage} {_LABELS[key]} {_delta(was, now)}")
    gain = a - b
    if gain >= GATE_MIN_GAIN and not worse:
        return True, f"better: nDCG@10 {_delta(b, a)}"
    reasons = []
    if gain < GATE_MIN_GAIN:
        reasons.append(f"nDCG@10 {_delta(b, a)}, short of the +{GATE_MIN_GAIN:.3f} needed")
    if worse:
        reasons.append("worse on " + ", ".join(worse))
    return False, "not better: " + "; ".join(reasons)


def empty_metrics() -> Metrics:
    return Metrics(dense={k: 0.0 for k in METRIC_KEYS}, pipeline={k: 0.0 for k in METRIC_KEYS})


def verdict(*, measurable: bool, heldout: int, emb: tuple[bool, str], rr: tuple[bool, str] | None) -> str:
    if not measurable:
        what = ("no search with an opened result" if not heldout else
                f"only {heldout} held-out searches (at least {_pairs.MIN_HELDOUT_QUERIES} are needed)")
        return (f"Nothing could be measured: there is {what} to check the new models against, so they are not "
                "offered, and the models in use stay.")
    parts = [f"Search model {'offered' if emb[0] else 'refused'}: {emb[1]} on {heldout} held-out searches"]
    if rr is not None:
        parts.append(f"reranker {'offered' if rr[0] else 'refused'}: {rr[1]}")
    ending = " The models in use stay until you adopt." if emb[0] or (rr and rr[0]) else " The models in use stay."
    return "; ".join(parts) + "." + ending

