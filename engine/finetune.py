"""On-device fine-tuning: click pairs, hard negatives, training, the held-out gate.

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
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from engine.catalog import Catalog, ChunkRow
from engine.embed import (
    Embedder,
    bundled_model_dir,
    pick_device,
    resolve_model,
    text_hash,
)
from engine.errors import Cancelled, SiftError
from engine.metrics import score_run
from engine.models import (
    ModelCard,
    embedders_dir,
    new_model_name,
    rerankers_dir,
    save_card,
)
from engine.rerank import CrossEncoderReranker, Reranker
from engine.search import RERANK_MAX_TOKENS, Searcher, parse_query
from engine.tqdm_hook import tqdm_progress
from engine.types import Hit
from engine.vectors import VectorIndex

if TYPE_CHECKING:
    from engine.engine import Engine

log = logging.getLogger(__name__)

# -- the numbers that decide -------------------------------------------------------------------

# Fewer pairs than this and training is refused: with a few hundred pairs a MiniLM-sized model
# starts to learn a vocabulary instead of a handful of queries (seed guidance of the issue).
MIN_PAIRS = 200
# Fewer held-out queries than this and a difference in nDCG@10 is noise: nothing is offered.
MIN_HELDOUT_QUERIES = 10
# Results shown up to this many places below the opened one, and not opened, are negatives too.
NEAR_BELOW = 2
# The gate (see `gate`): the full pipeline's nDCG@10 must rise by at least GATE_MIN_GAIN, and
# no other held-out metric (dense or pipeline) may fall by more than GATE_MAX_LOSS, absolute.
GATE_MIN_GAIN = 0.005
GATE_MAX_LOSS = 0.02
METRIC_KEYS = ("ndcg@10", "recall@5", "recall@10", "mrr@10")
EVAL_DEPTH = 10                 # documents asked per held-out query: the deepest cut-off scored
# Mining: the corpus is the passages of the top documents of each training query (stage 1), so
# the cost grows with the user's searches, not with the size of the index.
MINING_POOL_DOCS = 10
MINING_RANGE = 30               # candidates per query mine_hard_negatives looks at (and rescores)
MINING_CANDIDATES = 8           # negatives asked per pair, before same-document ones are dropped
MINING_RELATIVE_MARGIN = 0.05   # NV-Retriever's TopK-PercPos: 95% of the positive's score at most
RERANKER_NEGATIVES = 2          # negatives per positive for the cross-encoder (at least hard_negatives)
# One search whose user opened dozens of results must not outweigh dozens of searches: at most
# this many of a query's pairs are trained on (the first opened); held-out ones are all measured.
MAX_PAIRS_PER_QUERY = 10
# Batches: 32 on a CPU (memory and speed), 128 on a GPU (as for embedding, bench/gpu_check.py).
CPU_BATCH, GPU_BATCH = 32, 128
# Above this many rows per batch the gradient-cached loss keeps memory flat (mini-batches of this size).
CACHED_LOSS_ABOVE = {"cpu": 32, "mps": 64, "cuda": 256}
COLD_START_MAX_PAIRS = 2000     # pseudo-queries made from the user's passages
COLD_START_MIN_CHUNKS = 50
TEACHER_KEEP = 0.5              # a pseudo-query is kept when the cross-encoder gives it ≥ this probability

STALE_SCRATCH_S = 24 * 3600     # a scratch folder this old belongs to no run in progress

STAGES = ("data", "baseline", "mining", "training", "reranker", "embedding", "evaluating")


# -- values crossing the boundary --------------------------------------------------------------


@dataclass(frozen=True)
class DataSummary:
    """What the click history holds for training, and whether it is enough."""

    clicks: int
    pairs: int
    queries: int
    train_queries: int
    heldout_queries: int
    min_pairs: int
    enough: bool
    message: str


@dataclass(frozen=True)
class TrainOptions:
    """How to train. batch_size 0 picks by device (32 on a CPU, 128 on a GPU)."""

    epochs: int = 1
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    batch_size: int = 0
    # 0: in-batch negatives only. Measured with bench/finetune_lift.py (full collections, held-out
    # dense nDCG@10): Cranfield 0.396 → 0.403 with 0 vs → 0.373 with 1; CISI 0.452 → 0.489 vs → 0.451.
    # Their sparse judgments make shown-but-unopened and look-alike passages often relevant; the
    # mined negatives still train the reranker (RERANKER_NEGATIVES). Users may raise it (advanced).
    hard_negatives: int = 0
    train_reranker: bool = True
    cold_start: bool = False
    seed: int = 42
    heldout_fraction: float = 1 / 3

    def validate(self) -> TrainOptions:
        problems = []
        if not 1 <= self.epochs <= 100:
            problems.append(f"epochs must be between 1 and 100, not {self.epochs}")
        if not 0 < self.learning_rate < 1:
            problems.append(f"the learning rate must be between 0 and 1, not {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            problems.append(f"the warm-up ratio must be at least 0 and below 1, not {self.warmup_ratio}")
        if self.batch_size < 0 or self.batch_size == 1:
            problems.append(f"the batch size must be 0 (by device) or at least 2, not {self.batch_size}")
        if not 0 <= self.hard_negatives <= 10:
            problems.append(f"hard negatives must be between 0 and 10, not {self.hard_negatives}")
        if not 0 < self.heldout_fraction < 1:
            problems.append(f"the held-out fraction must be between 0 and 1, not {self.heldout_fraction}")
        if problems:
            raise SiftError("Invalid fine-tune options: " + "; ".join(problems) + ".")
        return self


@dataclass(frozen=True)
class Metrics:
    """Held-out retrieval metrics of the bi-encoder alone ("dense") and of the full pipeline."""

    dense: dict[str, float]
    pipeline: dict[str, float]

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {"dense": dict(self.dense), "pipeline": dict(self.pipeline)}


@dataclass(frozen=True)
class FinetuneProgress:
    stage: str              # one of STAGES
    done: int
    total: int
    eta_s: float | None     # seconds left in this stage, once it can be estimated
    message: str


@dataclass(frozen=True)
class FinetuneResult:
    """What training gave. `after` is what Sift would adopt, the gates' choice: the new bi-encoder
    only where it passed its gate, the new reranker only where it passed its own ("unchanged":
    `after` equals `before`). `tried` is the system with every trained candidate, passed or not
    (what the new models measured, for showing). `candidates` holds each measurement the gates
    compared: "embedder" (new bi-encoder, current reranker) and "reranker" (the bi-encoder kept,
    new reranker). `embedder`/`reranker` are set only for what passed its gate."""

    before: Metrics
    after: Metrics
    improved: bool
    verdict: str
    embedder: str | None
    reranker: str | None
    pairs: int
    heldout_queries: int
    train_seconds: float
    method: str = "clicks"
    candidates: dict[str, Metrics] = field(default_factory=dict)
    tried: Metrics | None = None


# -- pairs from clicks --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pair:
    """One (query, opened passage) pair, with the passages shown near it and not opened."""

    raw: str                       # the query as typed (filters and all): what held-out search runs
    query: str                     # what the model sees: filters and exclusions removed
    key: str                       # normalized query: the unit of the train/held-out split
    chunk_id: int
    text: str
    text_hash: str
    path: str
    negatives: tuple[int, ...] = ()   # chunk ids


def normalize_query(text: str) -> str:
    """Case and spacing folded: "Rent  Due" and "rent due" are one query for the split."""
    return " ".join(text.casefold().split())


def _chunks_by_text_hash(catalog: Catalog, hashes: Iterable[str]) -> dict[str, list[ChunkRow]]:
    """Current chunks holding these texts (a re-indexed file gives its passages new ids)."""
    hashes = list(set(hashes))
    ids: list[int] = []
    for i in range(0, len(hashes), 500):
        part = hashes[i:i + 500]
        ids += [r[0] for r in catalog.conn.execute(
            f"SELECT id FROM chunks WHERE text_hash IN ({','.join('?' * len(part))}) ORDER BY id", part)]
    out: dict[str, list[ChunkRow]] = {}
    for row in catalog.chunks_by_id(ids).values():
        out.setdefault(row.text_hash, []).append(row)
    return out


def click_pairs(catalog: Catalog) -> tuple[list[Pair], int]:
    """Deduplicated pairs from the click history, and the number of clicks read.

    A click whose chunk is gone is matched to a current chunk with the same text (a re-indexed
    file); one whose text is nowhere any more is dropped. Negatives: chunks shown above the
    opened one or up to NEAR_BELOW places below it, that still exist, are not in a document
    opened for the same query, and do not hold an opened text.
    """
    clicks = catalog.clicks()
    ids = {c.chunk_id for c in clicks} | {s for c in clicks for s in c.shown}
    rows = catalog.chunks_by_id(sorted(ids))
    by_hash = _chunks_by_text_hash(catalog, {c.text_hash for c in clicks
                                              if c.chunk_id not in rows or rows[c.chunk_id].text_hash != c.text_hash})
    resolved: list[tuple[object, str, str, ChunkRow]] = []  # (click, model text, key, current chunk)
    for click in clicks:
        text = parse_query(click.query).text.strip()
        key = normalize_query(text)
        if not key:
            continue
        row = rows.get(click.chunk_id)
        if row is None or row.text_hash != click.text_hash:
            same = by_hash.get(click.text_hash, [])
            row = next((r for r in same if r.path == click.path), same[0] if same else None)
        if row is None:
            continue  # stale: the passage no longer exists anywhere
        resolved.append((click, text, key, row))
    opened_paths: dict[str, set[str]] = {}
    opened_hashes: dict[str, set[str]] = {}
    for _, _, key, row in resolved:
        opened_paths.setdefault(key, set()).add(row.path)
        opened_hashes.setdefault(key, set()).add(row.text_hash)
    pairs: dict[tuple[str, str], Pair] = {}
    negatives: dict[tuple[str, str], dict[str, int]] = {}
    for click, text, key, row in resolved:
        ident = (key, row.text_hash)
        if ident not in pairs:
            pairs[ident] = Pair(raw=click.query, query=text, key=key, chunk_id=row.id, text=row.text,
                                text_hash=row.text_hash, path=row.path)
            negatives[ident] = {}
        cut = max(click.rank, 1) + NEAR_BELOW
        for position, shown_id in enumerate(click.shown[:cut], 1):
            if position == click.rank or shown_id == click.chunk_id:
                continue
            shown = rows.get(shown_id)
            if shown is None or shown.path in opened_paths[key] or shown.text_hash in opened_hashes[key]:
                continue
            negatives[ident].setdefault(shown.text_hash, shown.id)
    return [dataclasses.replace(p, negatives=tuple(negatives[ident].values())) for ident, p in pairs.items()], len(clicks)


def split_by_query(pairs: Sequence[Pair], *, heldout_fraction: float = 1 / 3,
                   seed: int = 42) -> tuple[list[Pair], list[Pair]]:
    """(train, held-out): whole queries go to one side, chosen with a fixed seed.

    With two or more queries each side gets at least one; the held-out share is rounded.
    """
    keys = sorted({p.key for p in pairs})
    random.Random(seed).shuffle(keys)
    n = len(keys)
    held = round(n * heldout_fraction)
    if n >= 2:
        held = min(max(held, 1), n - 1)
    heldout_keys = set(keys[:held])
    train = [p for p in pairs if p.key not in heldout_keys]
    heldout = [p for p in pairs if p.key in heldout_keys]
    return train, heldout


def cap_per_query(pairs: Sequence[Pair], limit: int | None = None) -> list[Pair]:
    """The first `limit` (MAX_PAIRS_PER_QUERY) pairs of each query, in their order."""
    limit = MAX_PAIRS_PER_QUERY if limit is None else limit
    seen: dict[str, int] = {}
    out = []
    for p in pairs:
        seen[p.key] = seen.get(p.key, 0) + 1
        if seen[p.key] <= limit:
            out.append(p)
    return out


def _queries(pairs: Iterable[Pair]) -> int:
    return len({p.key for p in pairs})


def summarize(catalog: Catalog, options: TrainOptions | None = None) -> DataSummary:
    """What can be trained on now, in numbers and one sentence; reads the catalog only."""
    options = (options or TrainOptions()).validate()
    pairs, clicks = click_pairs(catalog)
    queries = _queries(pairs)
    if options.cold_start:
        chunks = catalog.chunk_count()
        possible = min(chunks, COLD_START_MAX_PAIRS)
        enough = chunks >= COLD_START_MIN_CHUNKS
        if not enough:
            message = (f"Only {chunks} passages are indexed; adapting to your documents needs at least "
                       f"{COLD_START_MIN_CHUNKS}. Add folders and index them first.")
        elif queries >= MIN_HELDOUT_QUERIES:
            message = (f"Up to {possible:,} practice questions can be made from your {chunks:,} passages; "
                       f"the {queries} searches with an opened result will check the new model.")
        elif queries:
            message = (f"Up to {possible:,} practice questions can be made from your {chunks:,} passages, but only "
                       f"{queries} searches with an opened result can check the new model (at least "
                       f"{MIN_HELDOUT_QUERIES} are needed), so it will not be offered for adoption.")
        else:
            message = (f"Up to {possible:,} practice questions can be made from your {chunks:,} passages, but no "
                       "search with an opened result exists yet to check the new model against, so it will not "
                       "be offered for adoption.")
        return DataSummary(clicks=clicks, pairs=possible, queries=queries, train_queries=0,
                           heldout_queries=queries, min_pairs=MIN_PAIRS, enough=enough, message=message)
    train, heldout = split_by_query(pairs, heldout_fraction=options.heldout_fraction, seed=options.seed)
    train_q, held_q = _queries(train), _queries(heldout)
    enough = len(pairs) >= MIN_PAIRS and held_q >= MIN_HELDOUT_QUERIES and train_q > 0
    if enough:
        message = (f"{len(pairs):,} pairs from {queries:,} searches: {train_q:,} searches to learn from, "
                   f"{held_q:,} held out to check the result.")
    else:
        per_search = len(pairs) / queries if queries else 1.0
        more_for_pairs = math.ceil(max(MIN_PAIRS - len(pairs), 0) / max(per_search, 1e-9))
        # Held-out queries are about heldout_fraction of all queries.
        more_for_heldout = math.ceil(max(MIN_HELDOUT_QUERIES / options.heldout_fraction - queries, 0))
        more = max(more_for_pairs, more_for_heldout, 1)
        message = (f"{len(pairs):,} pairs from {queries:,} searches; about {more:,} more searches with an opened "
                   f"result are needed before training (at least {MIN_PAIRS} pairs and "
                   f"{MIN_HELDOUT_QUERIES} held-out searches).")
    return DataSummary(clicks=clicks, pairs=len(pairs), queries=queries, train_queries=train_q,
                       heldout_queries=held_q, min_pairs=MIN_PAIRS, enough=enough, message=message)


# -- cold start: practice questions from the user's own passages --------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")


def _words(text: str) -> int:
    return len(text.split())


def pseudo_query(text: str, *, first_chunk: bool) -> tuple[str, str] | None:
    """A (question, passage) pair made from one passage: its document's title (the first line of
    a document), a heading, or its first sentence, with that line or sentence taken out of the
    passage so the model must match by meaning rather than by copy (the inverse cloze task)."""
    lines = text.splitlines()
    stripped = [ln.strip() for ln in lines]
    nonempty = [i for i, ln in enumerate(stripped) if ln]
    if not nonempty:
        return None
    candidates: list[int] = []
    if first_chunk:
        candidates.append(nonempty[0])
    candidates += [i for i in nonempty if _HEADING.match(lines[i])]
    for i in candidates:
        m = _HEADING.match(lines[i])
        title = (m.group(1) if m else stripped[i]).strip()
        rest = "\n".join(lines[i + 1:]).strip()
        if 2 <= _words(title) <= 20 and len(title) <= 200 and not title.endswith((".", ":")) and _words(rest) >= 20:
            return title, rest
    body = " ".join(text.split())
    parts = _SENTENCE_END.split(body, maxsplit=1)
    if len(parts) == 2 and 4 <= _words(parts[0]) <= 30 and _words(parts[1]) >= 20:
        return parts[0], parts[1]
    return None


def cold_start_pairs(catalog: Catalog, *, limit: int = COLD_START_MAX_PAIRS, seed: int = 42,
                     teacher: Reranker | None = None, min_pairs: int = MIN_PAIRS,
                     cancel: threading.Event | None = None) -> list[Pair]:
    """Pairs of practice questions and passages from a seeded sample of the index.

    With a `teacher` (the installed cross-encoder), pairs it finds unlikely (probability below
    TEACHER_KEEP) are dropped, keeping at least the `min_pairs` it rates best.
    """
    ids = catalog.chunk_ids().tolist()
    random.Random(seed).shuffle(ids)
    pairs: list[Pair] = []
    seen: set[str] = set()
    for start in range(0, len(ids), 1000):
        if len(pairs) >= limit:
            break
        _check(cancel)
        rows = catalog.chunks_by_id(ids[start:start + 1000])
        for cid in ids[start:start + 1000]:
            row = rows.get(cid)
            if row is None:
                continue
            made = pseudo_query(row.text, first_chunk=row.ordinal == 0)
            if made is None:
                continue
            question, passage = made
            key = normalize_query(question)
            if key in seen:
                continue
            seen.add(key)
            pairs.append(Pair(raw=question, query=question, key=key, chunk_id=row.id, text=passage,
                              text_hash=row.text_hash, path=row.path))
            if len(pairs) >= limit:
                break
    if teacher is None or not pairs:
        return pairs
    scores = []
    for p in pairs:
        _check(cancel)
        scores.append(float(teacher.score(p.query, [p.text])[0]))
    probability = 1 / (1 + np.exp(-np.asarray(scores)))
    order = np.argsort(-probability, kind="stable")
    keep = {int(i) for i in order if probability[i] >= TEACHER_KEEP}
    keep |= {int(i) for i in order[:min_pairs]}
    return [p for i, p in enumerate(pairs) if i in keep]


# -- measuring ----------------------------------------------------------------------------------

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
            _check(cancel)
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


# -- training: the seam and the sentence-transformers implementation ----------------------------


@dataclass(frozen=True)
class TrainRow:
    """One training example: the query, its positive passage, and its negatives (texts)."""

    query: str
    positive: str
    negatives: tuple[str, ...]


@dataclass(frozen=True)
class TrainSettings:
    """TrainOptions resolved for the device this run trains on."""

    epochs: int
    learning_rate: float
    warmup_ratio: float
    batch_size: int
    hard_negatives: int
    seed: int
    device: str
    workdir: Path


Report = Callable[[int, int], None]   # (steps done, steps in all)


class Trainer(Protocol):
    """What turns rows into model folders. Tests use a fake; `SentenceTransformersTrainer` is real."""

    def mine_negatives(self, *, model: Path, pairs: Sequence[tuple[str, str]], corpus: Sequence[str],
                       cross_encoder: Path | None, count: int, settings: TrainSettings,
                       vectors: Mapping[str, np.ndarray] | None = None) -> dict[tuple[str, str], list[str]]:
        """Negatives for each (query, positive), hardest first. `vectors`: the model's stored
        vectors of passages (text → vector), so they need not be embedded again."""
        ...

    def train_embedder(self, *, base: Path, rows: Sequence[TrainRow], target: Path, settings: TrainSettings,
                       report: Report, cancel: threading.Event) -> None: ...

    def train_reranker(self, *, base: Path, fresh_head: bool, rows: Sequence[TrainRow], target: Path,
                       settings: TrainSettings, report: Report, cancel: threading.Event) -> None: ...

    def reranker(self, folder: Path, *, device: str) -> Reranker: ...


def _quiet_transformers() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def _progress_callback(report: Report, cancel: threading.Event):
    from transformers import TrainerCallback

    class _Callback(TrainerCallback):
        """Reports each step and stops training at the next step once cancel is set."""

        def on_train_begin(self, args, state, control, **kwargs):
            report(0, state.max_steps)  # the ETA counts from here

        def on_step_end(self, args, state, control, **kwargs):
            report(state.global_step, state.max_steps)
            if cancel.is_set():
                control.should_training_stop = True
                control.should_epoch_stop = True
            return control

    return _Callback()


def _seed_mining_cache(cache: Path, model, corpus: Sequence[str], positives: Sequence[str],
                       vectors: Mapping[str, np.ndarray] | None) -> None:
    """Put the catalog's vectors of the mining corpus where `mine_hard_negatives(cache_folder=…)`
    looks for them, so the passages are not embedded a second time (minutes on a CPU).

    The file name follows sentence-transformers 6.2's cache key (model name, prompts, corpus as
    it de-duplicates it); should that key change, the file is simply not found and the corpus is
    embedded as usual.
    """
    import hashlib

    if not vectors:
        return
    full = list(dict.fromkeys(list(corpus) + list(positives)))
    if any(text not in vectors for text in full):
        return  # a passage without a stored vector (cold start): let the model embed them all
    model_name = model.model_card_data.base_model or ""
    key = hashlib.sha256(repr((model_name, None, None, full)).encode(), usedforsecurity=False).hexdigest()
    cache.mkdir(parents=True, exist_ok=True)
    np.save(cache / f"corpus_embeddings_{key}.npy", np.stack([vectors[t] for t in full]).astype(np.float32))


def _no_printing(trainer) -> None:
    """Progress goes through our callback; transformers' printer would write logs to stdout."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


class SentenceTransformersTrainer:
    """Mining and training with sentence-transformers' own tools, on the device given."""

    def mine_negatives(self, *, model: Path, pairs: Sequence[tuple[str, str]], corpus: Sequence[str],
                       cross_encoder: Path | None, count: int, settings: TrainSettings,
                       vectors: Mapping[str, np.ndarray] | None = None) -> dict[tuple[str, str], list[str]]:
        _quiet_transformers()
        import torch
        from datasets import Dataset
        from sentence_transformers import CrossEncoder, SentenceTransformer
        from sentence_transformers.util import mine_hard_negatives

        if not pairs:
            return {}
        st = SentenceTransformer(str(model), device=settings.device, local_files_only=True, trust_remote_code=False,
                                 model_kwargs={"use_safetensors": True, "dtype": torch.float32})
        ce = None
        if cross_encoder is not None:
            ce = CrossEncoder(str(cross_encoder), device=settings.device, max_length=RERANK_MAX_TOKENS,
                              local_files_only=True, trust_remote_code=False)
        dataset = Dataset.from_dict({"query": [q for q, _ in pairs], "positive": [p for _, p in pairs]})
        corpus = list(dict.fromkeys(corpus))
        count = max(1, min(count, MINING_RANGE))
        cache = settings.workdir / "mining"
        _seed_mining_cache(cache, st, corpus, [p for _, p in pairs], vectors)
        mined = mine_hard_negatives(dataset, st, corpus=corpus, cross_encoder=ce, range_max=MINING_RANGE,
                                    relative_margin=MINING_RELATIVE_MARGIN, num_negatives=count,
                                    sampling_strategy="top", output_format="labeled-list",
                                    batch_size=settings.batch_size, verbose=False, cache_folder=str(cache))
        out: dict[tuple[str, str], list[str]] = {}
        for row in mined:
            docs = row["positive"]
            out[(row["query"], docs[0])] = list(docs[1:])
        return out

    def _args(self, cls, settings: TrainSettings, **extra):
        from sentence_transformers.base.sampler import BatchSamplers

        return cls(output_dir=str(settings.workdir), num_train_epochs=settings.epochs,
                   per_device_train_batch_size=settings.batch_size, learning_rate=settings.learning_rate,
                   warmup_steps=settings.warmup_ratio, fp16=settings.device == "cuda",
                   use_cpu=settings.device == "cpu", seed=settings.seed, data_seed=settings.seed,
                   save_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
                   dataloader_num_workers=0, dataloader_pin_memory=False,
                   batch_sampler=extra.pop("batch_sampler", BatchSamplers.BATCH_SAMPLER), **extra)

    def train_embedder(self, *, base: Path, rows: Sequence[TrainRow], target: Path, settings: TrainSettings,
                       report: Report, cancel: threading.Event) -> None:
        _quiet_transformers()
        import torch
        from datasets import Dataset
        from sentence_transformers import (
            SentenceTransformer,
            SentenceTransformerTrainer,
            SentenceTransformerTrainingArguments,
        )
        from sentence_transformers.base.sampler import BatchSamplers
        from sentence_transformers.sentence_transformer.losses import (
            CachedMultipleNegativesRankingLoss,
            MultipleNegativesRankingLoss,
        )
        from transformers import set_seed

        set_seed(settings.seed)
        model = SentenceTransformer(str(base), device=settings.device, local_files_only=True, trust_remote_code=False,
                                    model_kwargs={"use_safetensors": True, "dtype": torch.float32})
        n = settings.hard_negatives
        columns = {"anchor": [r.query for r in rows], "positive": [r.positive for r in rows]}
        for i in range(n):
            columns[f"negative_{i + 1}"] = [r.negatives[i] for r in rows]
        cached_above = CACHED_LOSS_ABOVE.get(settings.device.split(":")[0], 32)
        if settings.batch_size > cached_above:
            loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=cached_above)
        else:
            loss = MultipleNegativesRankingLoss(model)
        args = self._args(SentenceTransformerTrainingArguments, settings, batch_sampler=BatchSamplers.NO_DUPLICATES)
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_dict(columns),
                                             loss=loss, callbacks=[_progress_callback(report, cancel)])
        _no_printing(trainer)
        trainer.train()
        _check(cancel)
        model.save(str(target), create_model_card=False, safe_serialization=True)

    def train_reranker(self, *, base: Path, fresh_head: bool, rows: Sequence[TrainRow], target: Path,
                       settings: TrainSettings, report: Report, cancel: threading.Event) -> None:
        _quiet_transformers()
        import torch
        from datasets import Dataset
        from sentence_transformers import (
            CrossEncoder,
            CrossEncoderTrainer,
            CrossEncoderTrainingArguments,
        )
        from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
        from transformers import set_seed

        set_seed(settings.seed)  # the fresh head's initial weights too
        model = CrossEncoder(str(base), num_labels=1 if fresh_head else None, max_length=RERANK_MAX_TOKENS,
                             device=settings.device, local_files_only=True, trust_remote_code=False)
        queries, passages, labels = [], [], []
        negatives = 0
        for r in rows:
            queries.append(r.query)
            passages.append(r.positive)
            labels.append(1.0)
            for neg in r.negatives:
                queries.append(r.query)
                passages.append(neg)
                labels.append(0.0)
                negatives += 1
        # Weigh the positives as much as the negatives in all.
        pos_weight = torch.tensor(max(negatives / max(len(rows), 1), 1.0))
        loss = BinaryCrossEntropyLoss(model, pos_weight=pos_weight)
        args = self._args(CrossEncoderTrainingArguments, settings)
        dataset = Dataset.from_dict({"query": queries, "passage": passages, "label": labels})
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss,
                                      callbacks=[_progress_callback(report, cancel)])
        _no_printing(trainer)
        trainer.train()
        _check(cancel)
        model.save(str(target), create_model_card=False, safe_serialization=True)

    def reranker(self, folder: Path, *, device: str) -> Reranker:
        return CrossEncoderReranker(folder, device=device, max_tokens=RERANK_MAX_TOKENS)


# -- the run ------------------------------------------------------------------------------------


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled()


class _Reporter:
    """Progress per stage, with an ETA from the stage's own pace."""

    def __init__(self, on_progress: Callable[[FinetuneProgress], None] | None) -> None:
        self._on_progress = on_progress
        self._stage = ""
        self._started = time.monotonic()

    def __call__(self, stage: str, done: int, total: int, message: str) -> None:
        if stage != self._stage or done == 0:
            self._stage, self._started = stage, time.monotonic()
        eta = None
        elapsed = time.monotonic() - self._started
        if 0 < done < total and elapsed > 0:
            eta = elapsed / done * (total - done)
        elif total and done >= total:
            eta = 0.0
        if self._on_progress is not None:
            self._on_progress(FinetuneProgress(stage=stage, done=done, total=total, eta_s=eta, message=message))


def resolve_settings(options: TrainOptions, device: str, workdir: Path) -> TrainSettings:
    batch = options.batch_size or (CPU_BATCH if device == "cpu" else GPU_BATCH)
    return TrainSettings(epochs=options.epochs, learning_rate=options.learning_rate,
                         warmup_ratio=options.warmup_ratio, batch_size=batch, hard_negatives=options.hard_negatives,
                         seed=options.seed, device=device, workdir=workdir)


def _mining_pool(engine: Engine, pairs: Sequence[Pair], cancel: threading.Event | None,
                 report: Callable[[int, int], None]) -> dict[str, ChunkRow]:
    """Text → chunk of the passages of the top stage-1 documents of each training query."""
    queries = list({p.key: p.raw for p in pairs}.items())
    ids: list[int] = []
    for n, (_, raw) in enumerate(queries, 1):
        _check(cancel)
        for hit in engine.search(raw, limit=MINING_POOL_DOCS, mode="hybrid"):
            ids.append(hit.chunk_id)
            ids += [p.chunk_id for p in hit.passages]
        report(n, len(queries))
    rows = engine.catalog.chunks_by_id(list(dict.fromkeys(ids)))
    return {row.text: row for row in rows.values()}


def _training_rows(pairs: Sequence[Pair], mined: Mapping[tuple[str, str], Sequence[str]],
                   pool: Mapping[str, ChunkRow], shown: Mapping[int, ChunkRow], *, count: int,
                   seed: int) -> list[TrainRow]:
    """Rows with exactly `count` negatives each: shown-not-opened first, then mined ones from other
    documents than those opened for the query; an easy (random) pool passage fills any gap."""
    opened_paths: dict[str, set[str]] = {}
    opened_texts: dict[str, set[str]] = {}
    for p in pairs:
        opened_paths.setdefault(p.key, set()).add(p.path)
        opened_texts.setdefault(p.key, set()).add(p.text)
    rng = random.Random(seed)
    pool_texts = sorted(pool)
    rows = []
    for p in pairs:
        negs: list[str] = []
        candidates = [(row.text, row.path) for cid in p.negatives if (row := shown.get(cid)) is not None]
        candidates += [(text, pool[text].path if text in pool else None) for text in mined.get((p.query, p.text), ())]
        if pool_texts:
            candidates += [(text, pool[text].path) for text in rng.choices(pool_texts, k=20)]
        for text, path in candidates:
            if len(negs) >= count:
                break
            if text not in negs and text not in opened_texts[p.key] and (path is None or path not in opened_paths[p.key]):
                negs.append(text)
        if len(negs) < count:
            continue  # nothing to contrast it with (a tiny index): leave the pair out
        rows.append(TrainRow(query=p.query, positive=p.text, negatives=tuple(negs)))
    return rows


def _stored_vectors(engine: Engine, chunks: Iterable[ChunkRow | Pair]) -> dict[str, np.ndarray]:
    """Text → the current model's stored vector, for the chunks that have one."""
    by_id = {c.chunk_id if isinstance(c, Pair) else c.id: c.text for c in chunks
             if not isinstance(c, Pair) or text_hash(c.text) == c.text_hash}  # a practice passage is cut
    found, vecs = engine.catalog.chunk_vectors(engine.embedder.model_id, list(by_id))
    return {by_id[int(cid)]: vec for cid, vec in zip(found.tolist(), vecs)}


class _Candidates:
    """Folders made by this run: removed on cancel, on error, or when refused by the gate."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.folders: list[Path] = []

    def partial(self, parent: Path, name: str) -> Path:
        parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = parent / f".{name}.partial"
        shutil.rmtree(path, ignore_errors=True)
        self.folders.append(path)
        return path

    def publish(self, partial: Path, card: ModelCard) -> Path:
        """The finished folder under its final name (its card written first, then one rename)."""
        save_card(partial, card)
        final = partial.parent / partial.name.removeprefix(".").removesuffix(".partial")
        os.replace(partial, final)
        self.folders[self.folders.index(partial)] = final
        return final

    def discard(self, folder: Path, embedder: Embedder | None = None) -> None:
        """Remove a candidate folder, and the vectors and index file made for it."""
        serving = {self.engine.embedder.model_id}
        if embedder is not None and embedder.model_id not in serving:
            try:
                self.engine.store.forget(embedder.model_id)
            except (SiftError, OSError) as exc:
                log.warning("could not forget the vectors of the refused model in %s: %s", folder, exc)
        shutil.rmtree(folder, ignore_errors=True)
        if folder in self.folders:
            self.folders.remove(folder)

    def discard_all(self) -> None:
        for folder in list(self.folders):
            embedder = None
            if folder.parent == embedders_dir(self.engine.paths) and folder.is_dir() and not folder.name.startswith("."):
                try:
                    embedder = self.engine.embedder_for(str(folder))
                except SiftError:
                    embedder = None
            self.discard(folder, embedder)


def _remove_stale_partials(engine: Engine) -> None:
    """Folders left by a run that was killed mid-save (never a finished model), and its scratch
    folder once it is old enough not to be another process's run in progress."""
    for parent in (embedders_dir(engine.paths), rerankers_dir(engine.paths)):
        for partial in parent.glob(".*.partial") if parent.is_dir() else ():
            shutil.rmtree(partial, ignore_errors=True)
    for scratch in engine.paths.cache.glob("sift-finetune-*"):
        try:
            if time.time() - scratch.stat().st_mtime > STALE_SCRATCH_S:
                shutil.rmtree(scratch, ignore_errors=True)
        except OSError:
            pass


def _searcher(engine: Engine, embedder: Embedder, index: VectorIndex, reranker: Reranker | None,
              learned=None) -> Searcher:
    """A pipeline over the engine's catalog with other models, leaving the engine's own untouched.

    learned: what opens taught (engine/learn.py), less the held-out queries; None: learning off."""
    return Searcher(catalog=engine.catalog, embedder=lambda: embedder, vectors=lambda: index,
                    reranker=lambda: reranker, roots=engine.roots,
                    precise_index=lambda: engine.config.vector_dtype in ("f16", "f32"),
                    learned=lambda: learned)


def _search_fn(searcher: Searcher) -> SearchFn:
    return lambda raw, mode: searcher.search(raw, limit=EVAL_DEPTH, mode=mode).hits


_RUN_LOCK = threading.Lock()


def run_finetune(engine: Engine, options: TrainOptions, *,
                 on_progress: Callable[[FinetuneProgress], None] | None = None,
                 cancel: threading.Event | None = None, trainer: Trainer | None = None) -> FinetuneResult:
    """data → baseline → mining → training → embedding → evaluating (→ reranker → evaluating).

    Raises Cancelled (the models in use untouched, every folder this run made removed) and
    SiftError when there is too little data. Never switches a model.
    """
    options = options.validate()
    cancel = cancel or threading.Event()
    trainer = trainer or SentenceTransformersTrainer()
    if not _RUN_LOCK.acquire(blocking=False):
        raise SiftError("A fine-tune is already running; wait for it to finish or cancel it.")
    candidates = _Candidates(engine)
    try:
        return _run(engine, options, on_progress=on_progress, cancel=cancel, trainer=trainer, candidates=candidates)
    except (Cancelled, SiftError, KeyboardInterrupt):
        candidates.discard_all()
        raise
    except Exception as exc:  # a library failing mid-training (out of memory, a bad model folder)
        candidates.discard_all()
        log.exception("fine-tuning failed")
        raise SiftError(f"Fine-tuning failed ({type(exc).__name__}: {exc}). The models in use are unchanged.") from exc
    finally:
        _RUN_LOCK.release()


def _run(engine: Engine, options: TrainOptions, *, on_progress, cancel: threading.Event, trainer: Trainer,
         candidates: _Candidates) -> FinetuneResult:
    report = _Reporter(on_progress)
    _remove_stale_partials(engine)
    config = engine.config
    method = "cold-start" if options.cold_start else "clicks"

    # data
    report("data", 0, 1, "Reading your search history …")
    summary = summarize(engine.catalog, options)
    if not summary.enough:
        raise SiftError(summary.message)
    pairs, _ = click_pairs(engine.catalog)
    if options.cold_start:
        heldout = pairs  # none of them is trained on
        train = cold_start_pairs(engine.catalog, seed=options.seed, teacher=engine.reranker(), cancel=cancel)
        if not train:
            raise SiftError("No practice questions could be made from your passages (they have no titles, headings "
                            "or sentences long enough). Train from your searches instead.")
    else:
        train, heldout = split_by_query(pairs, heldout_fraction=options.heldout_fraction, seed=options.seed)
        train = cap_per_query(train)
    queries, qrels = heldout_relevance(heldout)
    measurable = len(queries) >= MIN_HELDOUT_QUERIES
    report("data", 1, 1, summary.message)

    # baseline: what the held-out searches taught is left out, so they stay unseen
    _check(cancel)
    learned = engine.learned_view(exclude_keys=frozenset(queries))
    baseline = _searcher(engine, engine.embedder, engine.vectors(), engine.reranker(), learned)
    try:
        before = measure(_search_fn(baseline), queries, qrels,
                         on_query=lambda d, t: report("baseline", d, t, f"Measuring the current models: {d}/{t} searches"),
                         cancel=cancel) if queries else _empty_metrics()
    finally:
        baseline.close()

    # mining
    device = pick_device(config.device)
    base_folder, _ = resolve_model(config.model)
    workroot = Path(tempfile.mkdtemp(prefix="sift-finetune-", dir=engine.paths.cache))
    try:
        settings = resolve_settings(options, device, workroot)
        pool = _mining_pool(engine, train, cancel,
                            lambda d, t: report("mining", d, t, f"Gathering candidate passages: {d}/{t} searches"))
        _check(cancel)
        report("mining", 0, 1, "Mining hard negatives with the current model …")
        count = max(options.hard_negatives, RERANKER_NEGATIVES if options.train_reranker else 0)
        reranker_folder = Path(config.reranker) if engine.reranker_available else None
        stored = _stored_vectors(engine, [*pool.values(), *train])
        # sentence-transformers draws its own bars (batches embedded, candidates rescored): they
        # drive the wizard's bar, and Stop ends the mining between two of their steps.
        with tqdm_progress(lambda words, d, t: report("mining", d, t, f"{words}: {d:,} of {t:,}"), cancel):
            mined = trainer.mine_negatives(model=base_folder, pairs=[(p.query, p.text) for p in train],
                                           corpus=list(pool), cross_encoder=reranker_folder,
                                           count=MINING_CANDIDATES, settings=settings, vectors=stored) if count else {}
        _check(cancel)
        shown_ids = sorted({cid for p in train for cid in p.negatives})
        shown = engine.catalog.chunks_by_id(shown_ids)
        rows_all = _training_rows(train, mined, pool, shown, count=count, seed=options.seed)
        rows = [dataclasses.replace(r, negatives=r.negatives[:options.hard_negatives]) for r in rows_all]
        if not rows:
            raise SiftError("Not one training pair has a passage to contrast it with; index more documents first.")
        report("mining", 1, 1, f"{len(rows):,} training examples ready.")

        # training
        train_seconds = 0.0
        t0 = time.perf_counter()
        name = new_model_name(embedders_dir(engine.paths))
        partial = candidates.partial(embedders_dir(engine.paths), name)
        trainer.train_embedder(base=base_folder, rows=rows, target=partial,
                               settings=dataclasses.replace(settings, workdir=workroot / "embedder"),
                               report=lambda d, t: report("training", d, t, f"Training the search model: step {d}/{t}"),
                               cancel=cancel)
        _check(cancel)
        train_seconds += time.perf_counter() - t0
        created = datetime.now(UTC).isoformat(timespec="seconds")
        card = ModelCard(kind="embedder", base=config.model, created=created, method=method, pairs=len(train),
                         train_seconds=round(train_seconds, 1), before=before.as_dict(),
                         heldout_queries=len(queries))
        emb_folder = candidates.publish(partial, card)

        # embedding
        embedder = engine.embedder_for(str(emb_folder))
        index = engine.prepare_model(str(emb_folder), cancel=cancel,
                                     on_progress=lambda d, t: report("embedding", d, t,
                                                                     f"Embedding your passages with the new model: {d:,}/{t:,}"))
        _check(cancel)

        # evaluating the bi-encoder (with the current reranker, if any)
        current_reranker = engine.reranker()
        emb_metrics = measure(_search_fn(_searcher(engine, embedder, index, current_reranker, learned)), queries, qrels,
                              on_query=lambda d, t: report("evaluating", d, t, f"Measuring the new search model: {d}/{t}"),
                              cancel=cancel) if queries else _empty_metrics()
        emb_ok, emb_why = gate(before, emb_metrics) if measurable else (False, "")
        save_card(emb_folder, dataclasses.replace(card, after=emb_metrics.as_dict()))
        kept = (embedder, index) if emb_ok else (engine.embedder, engine.vectors())
        kept_metrics = emb_metrics if emb_ok else before
        result_candidates = {"embedder": emb_metrics}

        # reranker
        rr_folder: Path | None = None
        rr_ok, rr_why = False, ""
        after_pipeline = emb_metrics.pipeline
        if options.train_reranker:
            _check(cancel)
            fresh = not engine.reranker_available
            rr_base = bundled_model_dir() if fresh else Path(config.reranker)
            rr_name = name if not (rerankers_dir(engine.paths) / name).exists() else new_model_name(rerankers_dir(engine.paths))
            rr_partial = candidates.partial(rerankers_dir(engine.paths), rr_name)
            t0 = time.perf_counter()
            trainer.train_reranker(base=rr_base, fresh_head=fresh, rows=rows_all, target=rr_partial,
                                   settings=dataclasses.replace(settings, workdir=workroot / "reranker"),
                                   report=lambda d, t: report("reranker", d, t, f"Training the reranker: step {d}/{t}"),
                                   cancel=cancel)
            _check(cancel)
            rr_seconds = time.perf_counter() - t0
            train_seconds += rr_seconds
            rr_card = ModelCard(kind="reranker", base=config.reranker or "bundled:all-MiniLM-L6-v2 (fresh head)",
                                created=created, method=method, pairs=len(train), train_seconds=round(rr_seconds, 1),
                                before=kept_metrics.as_dict(), heldout_queries=len(queries))
            rr_folder = candidates.publish(rr_partial, rr_card)
            new_reranker = trainer.reranker(rr_folder, device=config.device)
            rr_metrics = measure(_search_fn(_searcher(engine, kept[0], kept[1], new_reranker, learned)), queries, qrels,
                                 on_query=lambda d, t: report("evaluating", d, t, f"Measuring the new reranker: {d}/{t}"),
                                 cancel=cancel) if queries else _empty_metrics()
            result_candidates["reranker"] = rr_metrics
            rr_ok, rr_why = gate(kept_metrics, rr_metrics, stages=("pipeline",)) if measurable else (False, "")
            save_card(rr_folder, dataclasses.replace(rr_card, after=rr_metrics.as_dict()))
            after_pipeline = rr_metrics.pipeline
    finally:
        shutil.rmtree(workroot, ignore_errors=True)

    # "after" is what would be adopted: a refused model (a reranker trained from a fresh head among
    # them) is scored in `candidates` only, and leaves "after" as it was.
    after = Metrics(dense=kept_metrics.dense, pipeline=after_pipeline if rr_ok else kept_metrics.pipeline)
    verdict = _verdict(measurable=measurable, heldout=len(queries), emb=(emb_ok, emb_why),
                       rr=(rr_ok, rr_why) if options.train_reranker else None)
    if not emb_ok:
        candidates.discard(emb_folder, embedder)
    if rr_folder is not None and not rr_ok:
        candidates.discard(rr_folder)
    candidates.folders.clear()  # what remains is the user's to adopt
    report("evaluating", 1, 1, verdict)
    return FinetuneResult(before=before, after=after, improved=emb_ok or rr_ok, verdict=verdict,
                          embedder=str(emb_folder) if emb_ok else None,
                          reranker=str(rr_folder) if rr_ok and rr_folder is not None else None,
                          pairs=len(train), heldout_queries=len(queries), train_seconds=round(train_seconds, 1),
                          method=method, candidates=result_candidates,
                          tried=Metrics(dense=emb_metrics.dense, pipeline=after_pipeline))


def _empty_metrics() -> Metrics:
    return Metrics(dense={k: 0.0 for k in METRIC_KEYS}, pipeline={k: 0.0 for k in METRIC_KEYS})


def _verdict(*, measurable: bool, heldout: int, emb: tuple[bool, str], rr: tuple[bool, str] | None) -> str:
    if not measurable:
        what = ("no search with an opened result" if not heldout else
                f"only {heldout} held-out searches (at least {MIN_HELDOUT_QUERIES} are needed)")
        return (f"Nothing could be measured: there is {what} to check the new models against, so they are not "
                "offered, and the models in use stay.")
    parts = [f"Search model {'offered' if emb[0] else 'refused'}: {emb[1]} on {heldout} held-out searches"]
    if rr is not None:
        parts.append(f"reranker {'offered' if rr[0] else 'refused'}: {rr[1]}")
    ending = " The models in use stay until you adopt." if emb[0] or (rr and rr[0]) else " The models in use stay."
    return "; ".join(parts) + "." + ending
