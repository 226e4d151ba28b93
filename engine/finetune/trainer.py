"""The trainer seam and its sentence-transformers implementation: mining, bi-encoder, cross-encoder."""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import gc
import shutil
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from engine.embed import quiet_offline_transformers
from engine.errors import ModelError, check_cancel
from engine.finetune.options import TrainOptions, TrainRow, TrainSettings
from engine.rerank import CrossEncoderReranker, Reranker
from engine.search import RERANK_MAX_TOKENS

MINING_RANGE = 30               # candidates per query mine_hard_negatives looks at (and rescores)
# The closest candidates are skipped (mine_hard_negatives' range_min): with a user's sparse opens
# the passages ranked right after the opened one are the likeliest unopened relevant ones.
MINING_SKIP_TOP = 3
MINING_RELATIVE_MARGIN = 0.05   # NV-Retriever's TopK-PercPos: 95% of the positive's score at most
# Batches: 32 on a CPU (memory and speed), 128 on a GPU (as for embedding, bench/gpu_check.py).
CPU_BATCH, GPU_BATCH = 32, 128
# Rows one forward pass takes, at most: a bigger batch is cut into passes of this size (the
# bi-encoder by the gradient-cached loss, the cross-encoder by gradient accumulation), so the
# batch the loss sees stays the same while the activations held shrink. On a CPU with batches of
# 32 (bench/finetune_lift.py --finetune, Cranfield): peak RSS 5,629 MiB at 32 rows a pass,
# the bi-encoder's training alone +3.2 GB, the reranker's +1.1 GB more; see bench/README.md.
ROWS_PER_PASS = {"cpu": 8, "mps": 64, "cuda": 256}

Report = Callable[[int, int], None]   # (steps done, steps in all)


def _fit(trainer: Any, model: Any, target: Path, cancel: threading.Event) -> None:
    """Train (progress through our callback only), then save the model to `target` unless Stop
    was pressed meanwhile."""
    _no_printing(trainer)
    trainer.train()
    check_cancel(cancel)
    model.save(str(target), create_model_card=False, safe_serialization=True)


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

    def interpolate(self, *, base: Path, trained: Path, alpha: float, target: Path) -> None:
        """A model folder whose weights are alpha·trained + (1 − alpha)·base."""
        ...

    def reranker(self, folder: Path, *, device: str) -> Reranker: ...


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


# Freed blocks of at least this size go back to the system at once (glibc's mmap threshold).
# By default glibc raises the threshold to the largest block freed so far, so after the first
# training steps torch's activations come from the heap, which keeps what it freed: a
# bi-encoder's training on a CPU left 1.3 GB resident after it ended and peaked 0.5 GB higher
# (bench/README.md, "Learning from opens"). Once set, it stays for the process: glibc has no
# way back to the moving threshold, and only blocks this large pay a system call each.
MMAP_THRESHOLD = 256 * 1024
_M_MMAP_THRESHOLD = -3   # mallopt's parameter number (malloc.h)


@functools.cache
def _glibc() -> Any:
    """glibc, where this process runs on it; None elsewhere (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def _memory_returned_after(train: Callable[..., None]) -> Callable[..., None]:
    """A training method that hands freed memory back to the system: large blocks as soon as
    they are freed while it runs, and once it is done the trainer, its optimizer state and the
    model (which hold cycles) collected and the heap trimmed, before the next stage."""
    @functools.wraps(train)
    def run(*args: Any, **kwargs: Any) -> None:
        libc = _glibc()
        if libc is not None:
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        try:
            train(*args, **kwargs)
        finally:
            gc.collect()
            if libc is not None:
                libc.malloc_trim(0)
    return run


class SentenceTransformersTrainer:
    """Mining and training with sentence-transformers' own tools, on the device given."""

    def mine_negatives(self, *, model: Path, pairs: Sequence[tuple[str, str]], corpus: Sequence[str],
                       cross_encoder: Path | None, count: int, settings: TrainSettings,
                       vectors: Mapping[str, np.ndarray] | None = None) -> dict[tuple[str, str], list[str]]:
        quiet_offline_transformers()
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
        count = max(1, min(count, MINING_RANGE - MINING_SKIP_TOP))
        cache = settings.workdir / "mining"
        _seed_mining_cache(cache, st, corpus, [p for _, p in pairs], vectors)
        mined = mine_hard_negatives(dataset, st, corpus=corpus, cross_encoder=ce, range_min=MINING_SKIP_TOP,
                                    range_max=MINING_RANGE,
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

    @_memory_returned_after
    def train_embedder(self, *, base: Path, rows: Sequence[TrainRow], target: Path, settings: TrainSettings,
                       report: Report, cancel: threading.Event) -> None:
        quiet_offline_transformers()
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
        per_pass = rows_per_pass(settings)
        if settings.batch_size > per_pass:
            loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=per_pass)
        else:
            loss = MultipleNegativesRankingLoss(model)
        args = self._args(SentenceTransformerTrainingArguments, settings, batch_sampler=BatchSamplers.NO_DUPLICATES)
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_dict(columns),
                                             loss=loss, callbacks=[_progress_callback(report, cancel)])
        _fit(trainer, model, target, cancel)

    @_memory_returned_after
    def train_reranker(self, *, base: Path, fresh_head: bool, rows: Sequence[TrainRow], target: Path,
                       settings: TrainSettings, report: Report, cancel: threading.Event) -> None:
        quiet_offline_transformers()
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
        # The same batch in passes of at most rows_per_pass rows, their gradients added up.
        per_pass = min(rows_per_pass(settings), settings.batch_size)
        steps = max(1, settings.batch_size // per_pass)
        args = self._args(CrossEncoderTrainingArguments, dataclasses.replace(settings, batch_size=settings.batch_size // steps),
                          gradient_accumulation_steps=steps)
        dataset = Dataset.from_dict({"query": queries, "passage": passages, "label": labels})
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss,
                                      callbacks=[_progress_callback(report, cancel)])
        _fit(trainer, model, target, cancel)

    def interpolate(self, *, base: Path, trained: Path, alpha: float, target: Path) -> None:
        interpolate_weights(base=base, trained=trained, alpha=alpha, target=target)

    def reranker(self, folder: Path, *, device: str) -> Reranker:
        return CrossEncoderReranker(folder, device=device, max_tokens=RERANK_MAX_TOKENS)


def interpolate_weights(*, base: Path, trained: Path, alpha: float, target: Path) -> None:
    """`target`: the `trained` folder with each floating-point weight that the base model holds
    too (same name and shape) replaced by alpha·trained + (1 − alpha)·base; everything else (the
    tokenizer, the configuration, integer buffers) as trained. Raises ModelError when no weight
    matches (the trained model is not of the base model's architecture)."""
    import torch
    from safetensors.torch import load_file, save_file

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"the share of the trained weights must be between 0 and 1, not {alpha}")
    shutil.copytree(trained, target, ignore=shutil.ignore_patterns("*.safetensors"), dirs_exist_ok=True)
    base_files = sorted(base.rglob("*.safetensors"))
    mixed = 0
    for path in sorted(trained.rglob("*.safetensors")):
        rel = path.relative_to(trained)
        base_path = base / rel if (base / rel).is_file() else (base_files[0] if len(base_files) == 1 else None)
        weights = load_file(str(path))
        base_weights = load_file(str(base_path)) if base_path is not None else {}
        out: dict[str, torch.Tensor] = {}
        for name, t in weights.items():
            b = base_weights.get(name)
            if b is not None and b.shape == t.shape and t.is_floating_point() and b.is_floating_point():
                out[name] = (alpha * t.float() + (1.0 - alpha) * b.float()).to(t.dtype).contiguous()
                mixed += 1
            else:
                out[name] = t.contiguous()
        del weights, base_weights
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        save_file(out, str(target / rel), metadata={"format": "pt"})
    if not mixed:
        raise ModelError(f"The trained model in {trained} shares no weights with its base model in {base}, "
                         "so the two cannot be mixed.")


def rows_per_pass(settings: TrainSettings) -> int:
    return ROWS_PER_PASS.get(settings.device.split(":")[0], ROWS_PER_PASS["cpu"])


def resolve_settings(options: TrainOptions, device: str, workdir: Path) -> TrainSettings:
    batch = options.batch_size or (CPU_BATCH if device == "cpu" else GPU_BATCH)
    return TrainSettings(epochs=options.epochs, learning_rate=options.learning_rate,
                         warmup_ratio=options.warmup_ratio, batch_size=batch, hard_negatives=options.hard_negatives,
                         seed=options.seed, device=device, workdir=workdir)

