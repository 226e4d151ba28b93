"""Fine-tuning's values: the options asked, the progress and results returned, the rows trained on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import SiftError

STAGES = ("data", "baseline", "mining", "training", "reranker", "embedding", "evaluating")


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
    new reranker). `embedder`/`reranker` are set only for what passed its gate. `mix`: the share of
    the trained weights in the bi-encoder measured as "embedder" (the rest the base model's),
    chosen on the held-out searches among `mixes` (share → what it measured)."""

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
    mix: float = 1.0
    mixes: dict[float, Metrics] = field(default_factory=dict)


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

