"""On-device fine-tuning from the user's opened results: pairs, hard negatives, training, the held-out gate.

The user's opened results are the labels. Each (query, opened passage) is a pair; passages shown
above or just below it and not opened are its hard negatives, and more are mined with the
current model (sentence-transformers' `mine_hard_negatives`, a relative margin and, when a
reranker is installed, the cross-encoder's scores, so passages about as relevant as the opened
one are not used). Pairs are split by query into train and held-out (a fixed seed; one query,
normalized, never on both sides). The current models are measured on the held-out queries
through the real pipeline over the whole index, the candidates are trained
(`SentenceTransformerTrainer` + `MultipleNegativesRankingLoss` for the bi-encoder, the
cross-encoder trainer + `BinaryCrossEntropyLoss` for the reranker), measured the same way, and
each is offered only when it passes the gate (`gate`). Nothing here switches a model: the caller
adopts with `Engine.adopt_model` / `Engine.adopt_reranker`.

Relevance is document-level (search groups passages by document): for a held-out query, the
relevant documents are the files the user opened for it.

One module a job: options (the values in and out), pairs (clicks and cold start → pairs →
training rows), heldout (measuring on held-out searches and the gate), trainer (the seam and its
sentence-transformers implementation), run (the stages in order).
"""

from engine.finetune.heldout import (
    EVAL_DEPTH,
    GATE_MAX_LOSS,
    GATE_MIN_GAIN,
    METRIC_KEYS,
    SearchFn,
    gate,
    heldout_relevance,
    hits_to_paths,
    measure,
)
from engine.finetune.options import (
    STAGES,
    DataSummary,
    FinetuneProgress,
    FinetuneResult,
    Metrics,
    TrainOptions,
    TrainRow,
    TrainSettings,
)
from engine.finetune.pairs import (
    COLD_START_MAX_PAIRS,
    COLD_START_MIN_CHUNKS,
    MAX_PAIRS_PER_QUERY,
    MIN_HELDOUT_QUERIES,
    MIN_PAIRS,
    NEAR_BELOW,
    Pair,
    cap_per_query,
    click_pairs,
    cold_start_pairs,
    normalize_query,
    pseudo_query,
    split_by_query,
    summarize,
    training_rows,
)
from engine.finetune.run import RERANKER_NEGATIVES, finetune_summary, run_finetune
from engine.finetune.trainer import SentenceTransformersTrainer, Trainer, resolve_settings

__all__ = [
    "COLD_START_MAX_PAIRS",
    "COLD_START_MIN_CHUNKS",
    "EVAL_DEPTH",
    "GATE_MAX_LOSS",
    "GATE_MIN_GAIN",
    "MAX_PAIRS_PER_QUERY",
    "METRIC_KEYS",
    "MIN_HELDOUT_QUERIES",
    "MIN_PAIRS",
    "NEAR_BELOW",
    "RERANKER_NEGATIVES",
    "STAGES",
    "DataSummary",
    "FinetuneProgress",
    "FinetuneResult",
    "Metrics",
    "Pair",
    "SearchFn",
    "SentenceTransformersTrainer",
    "TrainOptions",
    "TrainRow",
    "TrainSettings",
    "Trainer",
    "cap_per_query",
    "click_pairs",
    "cold_start_pairs",
    "finetune_summary",
    "gate",
    "heldout_relevance",
    "hits_to_paths",
    "measure",
    "normalize_query",
    "pseudo_query",
    "resolve_settings",
    "run_finetune",
    "split_by_query",
    "summarize",
    "training_rows",
]
