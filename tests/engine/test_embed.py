"""SentenceTransformerEmbedder's choices: backend, precision, model id, batching, the CUDA path.

The model itself is replaced by a small fake where loading it would need a GPU; nothing here
downloads anything or times anything.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from engine import device, embed
from engine.config import Config
from engine.embed import (
    SentenceTransformerEmbedder,
    length_sorted_batches,
    resolve_precision,
)
from engine.errors import ConfigError, ModelError

ROOT = Path(__file__).resolve().parents[2]


def test_auto_precision_per_device():
    assert resolve_precision("auto", "cuda", bf16_supported=False) == "fp16"
    assert resolve_precision("auto", "cpu", bf16_supported=True) == ("bf16" if embed.AUTO_CPU_BF16 else "fp32")
    assert resolve_precision("auto", "cpu", bf16_supported=False) == "fp32"
    assert resolve_precision("auto", "mps", bf16_supported=False) == "fp32"


def test_precisions_a_device_cannot_run_fall_back_to_fp32(caplog):
    with caplog.at_level(logging.WARNING, logger="engine.embed"):
        assert resolve_precision("bf16", "cpu", bf16_supported=False) == "fp32"
        assert resolve_precision("fp16", "cpu", bf16_supported=True) == "fp32"
    assert "no native bf16" in caplog.text and "fp16 is slow" in caplog.text
    assert resolve_precision("bf16", "cpu", bf16_supported=True) == "bf16"
    assert resolve_precision("fp32", "cuda", bf16_supported=False) == "fp32"


def _embedder(monkeypatch, *, device="cpu", bf16=True, openvino=True, **kwargs) -> SentenceTransformerEmbedder:
    monkeypatch.setattr(embed, "pick_device", lambda preference: device)
    monkeypatch.setattr(embed, "cpu_supports_bf16", lambda: bf16)
    monkeypatch.setattr(embed, "openvino_available", lambda: openvino)
    e = SentenceTransformerEmbedder(**kwargs)
    assert e.precision  # decided now, under this device
    return e


def test_model_id_differs_where_vectors_differ(monkeypatch):
    fp32 = _embedder(monkeypatch, precision="fp32")
    bf16 = _embedder(monkeypatch, precision="bf16")
    cuda = _embedder(monkeypatch, device="cuda", precision="auto")
    openvino = _embedder(monkeypatch, precision="fp32", backend="openvino")
    assert fp32.model_id.startswith("all-MiniLM-L6-v2@") and "+" not in fp32.model_id
    assert bf16.model_id == fp32.model_id + "+bf16"
    # fp16 on CUDA and OpenVINO fp32 stay within rounding noise of fp32 (cosine ≥ 0.9995): one id
    assert cuda.precision == "fp16" and cuda.model_id == fp32.model_id
    assert openvino.backend == "openvino" and openvino.model_id == fp32.model_id
    # a CPU without bf16 asked for auto runs fp32, under the fp32 id
    assert _embedder(monkeypatch, bf16=False, precision="auto").model_id == fp32.model_id


def test_missing_openvino_falls_back_to_torch_with_a_clear_message(monkeypatch, caplog):
    with caplog.at_level(logging.WARNING, logger="engine.embed"):
        e = _embedder(monkeypatch, openvino=False, backend="openvino", precision="fp32")
        assert e.backend == "torch"
    assert "pip install 'sift[openvino]'" in caplog.text
    assert _embedder(monkeypatch, device="cuda", backend="openvino").backend == "torch"  # OpenVINO here is CPU only


def test_unknown_backend_or_precision_is_refused():
    with pytest.raises(ModelError, match="Unknown backend"):
        SentenceTransformerEmbedder(backend="tensorrt")
    with pytest.raises(ModelError, match="Unknown precision"):
        SentenceTransformerEmbedder(precision="int4")
    with pytest.raises(ConfigError, match="backend must be one of"):
        Config(backend="tensorrt").validate()
    with pytest.raises(ConfigError, match="precision must be one of"):
        Config(precision="int4").validate()


def test_length_sorted_batches_cover_every_text_once_longest_first():
    texts = ["a" * n for n in (5, 50, 1, 30, 30, 7, 100)]
    batches = length_sorted_batches(texts, 3)
    assert [len(b) for b in batches] == [3, 3, 1]
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(texts)))
    lengths = [len(texts[i]) for i in flat]
    assert lengths == sorted(lengths, reverse=True)
    assert length_sorted_batches([], 4) == []
    assert length_sorted_batches(["x", "y"], 0) == [[0], [1]]  # a batch size of 0 still makes progress


class _FakeST:
    """Stands in for sentence_transformers.SentenceTransformer: records how it was loaded and used."""

    instances: ClassVar[list[_FakeST]] = []

    def __init__(self, folder, *, device, **kwargs):
        self.device, self.halved, self.batches = device, False, []
        self.max_seq_length = 256
        _FakeST.instances.append(self)

    def half(self):
        self.halved = True
        return self

    def eval(self):
        return self

    def get_embedding_dimension(self):
        return 4

    def encode_document(self, texts, *, batch_size, **kwargs):
        self.batches.append(list(texts))
        return np.tile(np.eye(4, dtype=np.float32)[0], (len(texts), 1))

    def encode_query(self, text, **kwargs):
        return np.eye(4, dtype=np.float32)[1]


def test_cuda_path_with_the_device_mocked(monkeypatch):
    import sentence_transformers
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", _FakeST)
    _FakeST.instances.clear()
    e = SentenceTransformerEmbedder(device="auto")
    assert device.pick_device("auto") == "cuda"
    texts = [f"text {'x' * (i % 9)} {i}" for i in range(300)]
    vectors = e.embed_documents(texts)
    model = _FakeST.instances[-1]
    assert model.device == "cuda" and model.halved and e.precision == "fp16"
    assert e.batch_size == embed.GPU_BATCH
    assert [len(b) for b in model.batches] == [128, 128, 44]
    assert vectors.shape == (300, 4)
    # the query path never changes torch's threads on a GPU
    threads = torch.get_num_threads()
    assert e.embed_query("q").shape == (4,) and torch.get_num_threads() == threads


def test_cpu_path_picks_the_cpu_batch_and_restores_threads_after_a_query(monkeypatch):
    import sentence_transformers
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", _FakeST)
    monkeypatch.setattr(embed, "cpu_supports_bf16", lambda: False)
    _FakeST.instances.clear()
    e = SentenceTransformerEmbedder(device="cpu")
    e.embed_documents(["one", "two"])
    assert e.batch_size == embed.CPU_BATCH and e.precision == "fp32" and not _FakeST.instances[-1].halved
    threads = torch.get_num_threads()
    e.embed_query("short query")
    assert torch.get_num_threads() == threads


def test_embed_documents_returns_rows_in_input_order(monkeypatch):
    import sentence_transformers

    class Echo(_FakeST):
        def encode_document(self, texts, *, batch_size, **kwargs):
            return np.array([[len(t), 0, 0, 0] for t in texts], dtype=np.float32)

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", Echo)
    e = SentenceTransformerEmbedder(device="cpu", batch_size=2)
    texts = ["aaa", "a", "aaaaa", "aa", "aaaa"]
    assert e.embed_documents(texts)[:, 0].tolist() == [3, 1, 5, 2, 4]


def test_loading_the_model_pauses_the_garbage_collector_and_freezes_what_loaded(monkeypatch):
    """A full collection over torch's millions of objects held the GIL for a few hundred ms,
    freezing the desktop's GUI thread while the model warmed up on a worker thread. Only the
    first load freezes: frozen cycles are never freed, and later loads import nothing new."""
    monkeypatch.setattr(embed, "_FROZEN", False)  # this process's first load
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    try:
        with embed._no_collector_pauses():
            assert not gc.isenabled()
            loaded = [[i] for i in range(1000)]  # stands in for what the imports create
        assert gc.isenabled(), "collection is back on afterwards"
        assert gc.get_freeze_count() >= frozen + len(loaded), "and never scans what loaded again"
        frozen = gc.get_freeze_count()
        with embed._no_collector_pauses():
            assert not gc.isenabled()
            later = [[i] for i in range(1000)]
        assert gc.isenabled() and gc.get_freeze_count() == frozen, "a later load freezes nothing"
        assert len(later) == 1000
    finally:
        gc.unfreeze()
        gc.enable()


def test_int8_is_openvino_with_nncf_only(monkeypatch, caplog):
    monkeypatch.setattr(embed, "nncf_available", lambda: True)
    int8 = _embedder(monkeypatch, backend="openvino", precision="int8")
    fp32 = _embedder(monkeypatch, precision="fp32")
    assert (int8.backend, int8.precision) == ("openvino", "int8")
    assert int8.model_id == fp32.model_id + "+int8", "its vectors differ: an index never mixes them"
    with caplog.at_level(logging.WARNING, logger="engine.embed"):
        torch_int8 = _embedder(monkeypatch, backend="torch", precision="int8")
        assert (torch_int8.backend, torch_int8.precision) == ("torch", "bf16"), "torch: the automatic precision"
        monkeypatch.setattr(embed, "nncf_available", lambda: False)
        assert _embedder(monkeypatch, backend="openvino", precision="int8").precision == "bf16"
    assert caplog.text.count("int8 runs on the OpenVINO backend with NNCF") == 2


def test_openvino_and_nncf_cannot_report_usage():
    """OpenVINO's converter and NNCF send usage events to Google Analytics unless a consent file
    says no (the converter counts a missing file as yes); Sift connects to nothing."""
    converter = embed.CONVERTER.read_text(encoding="utf-8")  # the converting subprocess's script
    blocked = converter.index('sys.modules["openvino_telemetry"] = None')
    assert blocked < converter.index("\n    import openvino") and blocked < converter.index("\n    import nncf")
    code = ("from engine import embed; embed.block_openvino_telemetry()\n"
            "try:\n    import openvino_telemetry\nexcept ImportError:\n    raise SystemExit(0)\nraise SystemExit(3)\n")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False).returncode == 0
    if importlib.util.find_spec("openvino") is None:
        return  # the optional extra is not installed: nothing would report anything
    code = ("from engine import embed; embed.preload_openvino()\n"
            "from openvino.tools.ovc import telemetry_utils\n"
            "assert telemetry_utils.tm.__name__.endswith('telemetry_stub'), telemetry_utils.tm\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
