"""Pure ranking metrics over document ids: nDCG@k, Recall@k, MRR@k, success@k, and their means.

They follow trec_eval / pytrec_eval (what BEIR reports): nDCG uses the judged grades as linear
gains with a log2(rank + 1) discount and the ideal ranking of all judged documents; Recall@k is
the share of a query's relevant documents in its top k; MRR@k is the reciprocal rank of the
first relevant document in the top k, 0 when there is none; success@k is 1 when any relevant
document is in the top k. Every mean is over judged queries (those with at least one document
scored > 0). No maintained metric library is a dependency of Sift, so tests/engine/test_evaluate.py
checks these against hand-computed values, sentence-transformers' InformationRetrievalEvaluator
and scikit-learn's ndcg_score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

NDCG_AT = 10
RECALL_AT = (5, 10, 100)
MRR_AT = 10


def dcg(gains: Sequence[float]) -> float:
    """Discounted cumulative gain: gain at rank r (from 1) counts gain / log2(r + 1)."""
    return sum(g / math.log2(r + 2) for r, g in enumerate(gains))


def ndcg_at_k(ranking: Sequence[str], grades: Mapping[str, float], k: int) -> float:
    """nDCG@k of one ranking of distinct ids, judged grades as gains; 0 when nothing is relevant."""
    ideal = dcg(sorted((g for g in grades.values() if g > 0), reverse=True)[:k])
    if ideal <= 0:
        return 0.0
    return dcg([max(grades.get(d, 0), 0) for d in ranking[:k]]) / ideal


def recall_at_k(ranking: Sequence[str], grades: Mapping[str, float], k: int) -> float:
    relevant = {d for d, g in grades.items() if g > 0}
    return len(relevant.intersection(ranking[:k])) / len(relevant) if relevant else 0.0


def mrr_at_k(ranking: Sequence[str], grades: Mapping[str, float], k: int) -> float:
    for rank, d in enumerate(ranking[:k], 1):
        if grades.get(d, 0) > 0:
            return 1.0 / rank
    return 0.0


def success_at_k(ranking: Sequence[str], grades: Mapping[str, float], k: int) -> float:
    """1.0 when a relevant document is in the top k (a re-found document), else 0.0."""
    return 1.0 if any(grades.get(d, 0) > 0 for d in ranking[:k]) else 0.0


def distinct(ranking: Sequence[str]) -> list[str]:
    """The ranking with repeats removed, first place kept."""
    return list(dict.fromkeys(ranking))


def per_query_metrics(ranking: Sequence[str], grades: Mapping[str, float]) -> dict[str, float]:
    ranking = distinct(ranking)
    metrics = {f"ndcg@{NDCG_AT}": ndcg_at_k(ranking, grades, NDCG_AT)}
    metrics.update({f"recall@{k}": recall_at_k(ranking, grades, k) for k in RECALL_AT})
    metrics[f"mrr@{MRR_AT}"] = mrr_at_k(ranking, grades, MRR_AT)
    return metrics


def judged_queries(qrels: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The queries with at least one document judged relevant (scored > 0), in qrels' order."""
    return [q for q, grades in qrels.items() if any(g > 0 for g in grades.values())]


def score_run(run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over the judged queries of `qrels`; a query missing from `run` scores 0."""
    judged = judged_queries(qrels)
    if not judged:
        raise ValueError("no judged query: every query's judgments are ≤ 0")
    rows = [per_query_metrics(run.get(q, ()), qrels[q]) for q in judged]
    return {name: float(np.mean([r[name] for r in rows])) for name in rows[0]}
