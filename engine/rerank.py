"""Stage-2 rerankers: the protocol, a sentence-transformers CrossEncoder folder, importing one."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from engine.embed import pick_device, weights_fingerprint
from engine.errors import ModelError


@runtime_checkable
class Reranker(Protocol):
    """Scores (query, passage) pairs; higher is more relevant. Implementations must be thread-safe."""

    @property
    def model_id(self) -> str: ...

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray: ...


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder model folder, loaded on first use."""

    def __init__(self, folder: str | os.PathLike, *, device: str = "auto", max_tokens: int = 128,
                 batch_size: int = 16) -> None:
        self.folder = Path(folder).expanduser().resolve()
        if not self.folder.is_dir():
            raise ModelError(f"The reranker folder {self.folder} does not exist. Import a cross-encoder "
                             "model folder in settings, or turn the reranker off.")
        self._model_id = f"{self.folder.name}@{weights_fingerprint(self.folder)}"
        self._device_pref = device
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def model(self):
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                try:
                    import transformers
                    from sentence_transformers import CrossEncoder

                    transformers.logging.set_verbosity_error()
                    transformers.logging.disable_progress_bar()
                    self._model = CrossEncoder(str(self.folder), device=pick_device(self._device_pref),
                                               max_length=self.max_tokens, local_files_only=True,
                                               trust_remote_code=False)
                except Exception as exc:
                    raise ModelError(f"The reranker in {self.folder} could not be loaded ({exc}). "
                                     "Import another cross-encoder folder, or turn the reranker off.") from exc
            return self._model

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        if not passages:
            return np.zeros(0, dtype=np.float32)
        model = self.model
        from torch import nn

        with self._lock:
            # Raw logits whatever activation the folder declares; the engine maps them to (0, 1).
            scores = model.predict([(query, p) for p in passages], batch_size=self.batch_size,
                                   activation_fn=nn.Identity(), show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(scores, dtype=np.float32).reshape(len(passages))


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
