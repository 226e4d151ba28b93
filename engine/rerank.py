"""Stage-2 rerankers: the protocol, a sentence-transformers CrossEncoder folder, importing one."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from engine.atomic import write_json
from engine.device import cpu_supports_bf16, pick_device
from engine.embed import quiet_offline_transformers, torch_threads, weights_fingerprint
from engine.errors import ModelError

log = logging.getLogger(__name__)

# The rerank budget. The whole search should answer within 1 s (p95) on a 2-core CPU; stage 1
# and grouping take tens of milliseconds, so the cross-encoder gets this much. Depth and passage
# truncation are chosen from the device's measured speed: the first plan that fits, best first.
# Chunks hold up to 200 tokens, so 256 keeps them whole with the query; 128 keeps the passage's
# first ~110 tokens, where the snippet and most matches are.
DEFAULT_BUDGET_MS = 700.0
RERANK_PLANS = ((30, 256), (30, 192), (30, 128), (20, 128), (20, 96), (15, 64), (10, 64))
# Token lengths the calibration batch times (a pair's cost is close to linear between them).
CALIBRATION_TOKENS = (64, 256)
CALIBRATION_PAIRS = 8
# How much one observed rerank moves the speed estimate (so load on the machine is followed).
SPEED_SMOOTHING = 0.3
# bf16 autocast for the cross-encoder on CPUs with native bf16 (see bench/query_latency.py).
CPU_BF16 = True
# torch intra-op threads for a rerank on the CPU. Searches run while indexing keeps the cores
# busy, and spare intra-op threads then spin against it: measured here under load (load
# average 13 on 2 cores), 30 pairs × 128 tokens took 3.0 s with 1 thread and 11.5 s with 2.
RERANK_CPU_THREADS = 1


@dataclass(frozen=True, slots=True)
class RerankPlan:
    """How much stage 2 does: the top `depth` candidates, each pair cut to `max_tokens`."""

    depth: int
    max_tokens: int
    predicted_ms: float = 0.0


def pair_ms(speed: tuple[float, float], tokens: int) -> float:
    """Milliseconds per (query, passage) pair at this truncation, from the two calibrated points."""
    (t_lo, t_hi), (ms_lo, ms_hi) = CALIBRATION_TOKENS, speed
    slope = max(0.0, (ms_hi - ms_lo) / (t_hi - t_lo))
    return max(1e-3, ms_lo + slope * (tokens - t_lo))


def plan_for(speed: tuple[float, float], budget_ms: float, *, plans: Sequence[tuple[int, int]] = RERANK_PLANS,
             ) -> RerankPlan:
    """The first (deepest, longest) plan predicted to fit the budget; the cheapest one if none does."""
    for depth, tokens in plans:
        predicted = depth * pair_ms(speed, tokens)
        if predicted <= budget_ms:
            return RerankPlan(depth, tokens, predicted)
    depth, tokens = plans[-1]
    return RerankPlan(depth, tokens, depth * pair_ms(speed, tokens))


@runtime_checkable
class Reranker(Protocol):
    """Scores (query, passage) pairs; higher is more relevant. Implementations must be thread-safe."""

    @property
    def model_id(self) -> str: ...

    def plan(self) -> RerankPlan:
        """How many candidates the next rerank scores, and the truncation (0: its own setting)."""
        ...

    def score(self, query: str, passages: Sequence[str], *, max_tokens: int | None = None) -> np.ndarray:
        """Scores for (query, passage) pairs, each cut to max_tokens (None: its own setting)."""
        ...


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder model folder, loaded on first use.

    With a budget (milliseconds), `plan()` times one small calibration batch (once; the result
    is kept in `speed_cache`, a JSON file, per model, device, precision and thread count) and
    picks the rerank depth and passage truncation that fit; every rerank then refines the speed.
    """

    def __init__(self, folder: str | os.PathLike, *, device: str = "auto", max_tokens: int = 128,
                 batch_size: int = 16, budget_ms: float | None = None, speed_cache: Path | None = None,
                 precision: str = "auto") -> None:
        self.folder = Path(folder).expanduser().resolve()
        if not self.folder.is_dir():
            raise ModelError(f"The reranker folder {self.folder} does not exist. Import a cross-encoder "
                             "model folder in settings, or turn the reranker off.")
        self._model_id = f"{self.folder.name}@{weights_fingerprint(self.folder)}"
        self._device_pref = device
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.budget_ms = budget_ms
        self.speed_cache = Path(speed_cache) if speed_cache is not None else None
        if precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16, not {precision!r}")
        self._precision_pref = precision
        self._speed: tuple[float, float] | None = None  # ms per pair at CALIBRATION_TOKENS
        self._max_model_tokens = 10**6
        self._model = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def model(self):
        with self._lock:
            if self._model is None:
                try:
                    quiet_offline_transformers()
                    from sentence_transformers import CrossEncoder

                    model = CrossEncoder(str(self.folder), device=pick_device(self._device_pref),
                                         max_length=self.max_tokens, local_files_only=True,
                                         trust_remote_code=False)
                    # Cap at what the model's positions allow (512 for MiniLM/BERT).
                    config = getattr(model, "config", None) or getattr(getattr(model, "model", None), "config", None)
                    limit = getattr(config, "max_position_embeddings", None)
                    self._max_model_tokens = int(limit) if isinstance(limit, int) else 10**6
                    self._model = model
                except Exception as exc:
                    raise ModelError(f"The reranker in {self.folder} could not be loaded ({exc}). "
                                     "Import another cross-encoder folder, or turn the reranker off.") from exc
            return self._model

    @property
    def precision(self) -> str:
        """fp32, or bf16 (autocast) on a CPU with native bf16 when allowed."""
        if self._precision_pref == "fp32":
            return "fp32"
        if pick_device(self._device_pref) != "cpu" or not cpu_supports_bf16():
            return "fp32"
        return "bf16" if self._precision_pref == "bf16" or CPU_BF16 else "fp32"

    def _threads(self):
        """RERANK_CPU_THREADS intra-op threads for the duration, on the CPU; nothing on a GPU."""
        if pick_device(self._device_pref) != "cpu":
            return contextlib.nullcontext()
        return torch_threads(RERANK_CPU_THREADS)

    def _autocast(self):
        if self.precision != "bf16":
            return contextlib.nullcontext()
        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16)

    def score(self, query: str, passages: Sequence[str], *, max_tokens: int | None = None) -> np.ndarray:
        """Raw logits for (query, passage) pairs, each pair cut to max_tokens (default: self.max_tokens)."""
        if not passages:
            return np.zeros(0, dtype=np.float32)
        model = self.model
        from torch import nn

        tokens = min(int(max_tokens or self.max_tokens), self._max_model_tokens)
        with self._lock:
            model.max_seq_length = tokens
            started = time.perf_counter()
            with self._threads(), self._autocast():
                # Raw logits whatever activation the folder declares; the engine maps them to (0, 1).
                scores = model.predict([(query, p) for p in passages], batch_size=self.batch_size,
                                       activation_fn=nn.Identity(), show_progress_bar=False, convert_to_numpy=True)
            self._observe(len(passages), tokens, (time.perf_counter() - started) * 1000)
        return np.asarray(scores, dtype=np.float32).reshape(len(passages))

    # -- the budget ------------------------------------------------------------------------------

    def _speed_key(self) -> str:
        device = pick_device(self._device_pref)
        threads = RERANK_CPU_THREADS if device == "cpu" else 0
        return f"{self.model_id}|{device}|{self.precision}|{threads}"

    def _observe(self, pairs: int, tokens: int, elapsed_ms: float) -> None:
        """Fold a real rerank's speed into the estimate (caller holds the lock)."""
        if self._speed is None or pairs < 4:
            return
        ratio = elapsed_ms / (pairs * pair_ms(self._speed, tokens))
        factor = 1.0 + SPEED_SMOOTHING * (min(max(ratio, 0.1), 10.0) - 1.0)
        self._speed = (self._speed[0] * factor, self._speed[1] * factor)

    def speed(self) -> tuple[float, float]:
        """Milliseconds per pair at CALIBRATION_TOKENS: cached, or timed once on a calibration batch."""
        if self._speed is not None:
            return self._speed
        key = self._speed_key()
        cached = _read_speed_cache(self.speed_cache).get(key)
        if cached is not None:
            self._speed = (float(cached[0]), float(cached[1]))
            return self._speed
        model = self.model
        from torch import nn

        text = " ".join(["calibration passage about measuring the speed of this reranker"] * 60)
        measured = []
        with self._lock:
            for tokens in CALIBRATION_TOKENS:
                model.max_seq_length = min(tokens, self._max_model_tokens)
                pairs = [("a short query", text)] * CALIBRATION_PAIRS
                with self._threads(), self._autocast():
                    model.predict(pairs[:2], batch_size=self.batch_size, activation_fn=nn.Identity(),
                                  show_progress_bar=False)  # warm-up: first calls allocate
                    started = time.perf_counter()
                    model.predict(pairs, batch_size=self.batch_size, activation_fn=nn.Identity(),
                                  show_progress_bar=False)
                measured.append((time.perf_counter() - started) * 1000 / CALIBRATION_PAIRS)
            self._speed = (measured[0], measured[1])
        _write_speed_cache(self.speed_cache, key, self._speed)
        return self._speed

    def plan(self) -> RerankPlan:
        """The depth and truncation for the next rerank: fixed without a budget, else fitted to it."""
        if self.budget_ms is None or self.budget_ms <= 0:
            return RerankPlan(RERANK_PLANS[0][0], self.max_tokens)
        plans = [(d, min(t, self.max_tokens)) for d, t in RERANK_PLANS]
        return plan_for(self.speed(), self.budget_ms, plans=plans)


def _read_speed_cache(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # missing or damaged: calibrate again
    return {k: v for k, v in data.items() if isinstance(v, list) and len(v) == 2
            and all(isinstance(x, int | float) and x > 0 for x in v)} if isinstance(data, dict) else {}


def _write_speed_cache(path: Path | None, key: str, speed: tuple[float, float]) -> None:
    if path is None:
        return
    data = _read_speed_cache(path)
    data[key] = [round(speed[0], 4), round(speed[1], 4)]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, data, indent=1)
    except OSError as exc:  # a read-only or full disk: calibrate again next start
        log.warning("could not save the reranker's speed to %s: %s", path, exc)


def import_reranker(source: str | os.PathLike, models_dir: Path) -> Path:
    """Copy a cross-encoder folder into Sift's own models folder; returns the copy's path."""
    source = Path(source).expanduser().resolve()
    if not (source / "config.json").is_file():
        raise ModelError(f"{source} is not a model folder (no config.json). Choose the folder that holds "
                         "a sentence-transformers CrossEncoder (config.json, weights, tokenizer).")
    weights_fingerprint(source)  # refuses folders without safetensors weights
    target = models_dir / "rerankers" / source.name
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.bin", "*.pt", "*.h5", ".git"))
    return target


DEFAULT_RERANKER = "cross-encoder/ms-marco-MiniLM-L6-v2"
# What a cross-encoder folder needs: safetensors weights, configs, tokenizer files; never pickles.
_DOWNLOAD_PATTERNS = ("*.safetensors", "*.json", "*.txt", "*.model")


def _hub_error(name: str, exc: Exception) -> ModelError:
    return ModelError(f"Could not reach the model hub for {name!r} ({exc}). Check the network connection, or "
                      "import a cross-encoder folder you already have with `sift reranker import FOLDER`.")


def reranker_download_size(name: str) -> int:
    """Bytes `download_reranker` would fetch. This asks the hub, so call it only when the user asks."""
    from fnmatch import fnmatch

    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(name, files_metadata=True)
    except Exception as exc:
        raise _hub_error(name, exc) from exc
    return sum(f.size or 0 for f in info.siblings or ()
               if any(fnmatch(f.rfilename, p) for p in _DOWNLOAD_PATTERNS))


def download_reranker(name: str, models_dir: Path) -> Path:
    """Fetch a cross-encoder from the hub into Sift's models folder. Only ever on the user's request."""
    target = models_dir / "rerankers" / name.replace("/", "--")
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(repo_id=name, local_dir=target, allow_patterns=list(_DOWNLOAD_PATTERNS))
    except Exception as exc:
        raise _hub_error(name, exc) from exc
    weights_fingerprint(target)  # refuses a download without safetensors weights
    return target
