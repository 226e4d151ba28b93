"""The automatic backend: OpenVINO int8 where a checked int8 model is prepared, torch whenever
that model is missing, refused, altered or does not run (nothing here converts a model)."""

from __future__ import annotations

import importlib.util
import json
import logging

import pytest

from engine import embed
from engine.config import Config, config_from_dict
from engine.embed import INT8_CHECK, SentenceTransformerEmbedder, int8_check_problem

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="OpenVINO is not installed")


@pytest.fixture
def x86(monkeypatch):
    """A CPU where int8 is the automatic choice (OpenVINO and NNCF installed, x86)."""
    monkeypatch.setattr(embed, "pick_device", lambda preference: "cpu")
    monkeypatch.setattr(embed, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(embed, "int8_runs_here", lambda: True)


def _prepared(embedder: SentenceTransformerEmbedder, *, xml: bytes = b"<net/>", passed: bool = True):
    """A prepared folder as setup writes it, for files of our choosing."""
    folder = embed.prepared_dir() / embed._safe_name(embedder._base_id)
    folder.mkdir(parents=True)
    (folder / "model-int8.xml").write_bytes(xml)
    (folder / "model-int8.bin").write_bytes(b"\0" * 64)
    check = {"model": embedder._base_id, "files": embed._int8_digests(folder), "texts": 162,
             "cosine_mean": 0.998 if passed else 0.71, "cosine_min": 0.993 if passed else 0.2, "passed": passed}
    (folder / INT8_CHECK).write_text(json.dumps(check))
    return folder


def test_auto_is_the_default_and_runs_torch_without_a_prepared_model(x86):
    e = SentenceTransformerEmbedder()
    assert Config().backend == "auto" and e._backend_pref == "auto"
    assert e.int8_pending()
    assert (e.backend, e.precision) == ("torch", "bf16") and not e.model_id.endswith("+int8")


def test_auto_is_torch_on_a_gpu_and_off_x86(monkeypatch):
    monkeypatch.setattr(embed, "pick_device", lambda preference: "cuda")
    monkeypatch.setattr(embed, "int8_runs_here", lambda: True)
    e = SentenceTransformerEmbedder()
    assert (e.backend, e.precision) == ("torch", "fp16") and not e.int8_pending()
    monkeypatch.setattr(embed, "pick_device", lambda preference: "cpu")
    monkeypatch.setattr(embed, "int8_runs_here", lambda: False)
    assert SentenceTransformerEmbedder().backend == "torch" and not SentenceTransformerEmbedder().int8_pending()
    # asked for torch, or another precision, it is not int8's business
    monkeypatch.setattr(embed, "int8_runs_here", lambda: True)
    assert not SentenceTransformerEmbedder(backend="torch").int8_pending()
    assert not SentenceTransformerEmbedder(precision="fp32").int8_pending()


@pytest.mark.parametrize("damage", ["altered", "refused", "other weights", "unreadable"])
def test_a_wrong_prepared_model_is_not_used(x86, caplog, damage):
    e = SentenceTransformerEmbedder()
    folder = _prepared(e, passed=damage != "refused")
    if damage == "altered":
        (folder / "model-int8.bin").write_bytes(b"\1" * 64)
    elif damage == "other weights":
        check = json.loads((folder / INT8_CHECK).read_text())
        (folder / INT8_CHECK).write_text(json.dumps({**check, "model": "all-MiniLM-L6-v2@0000"}))
    elif damage == "unreadable":
        (folder / INT8_CHECK).write_text("{not json")
    expected = {"altered": "not the ones that were checked", "refused": "failed its check against torch",
                "other weights": "for other weights", "unreadable": "cannot be read"}[damage]
    assert expected in int8_check_problem(folder, e._base_id)
    with caplog.at_level(logging.WARNING, logger="engine.embed"):
        assert (e.backend, e.precision) == ("torch", "bf16")
    assert expected in caplog.text and "using torch" in caplog.text
    assert e.int8_pending(), "prepare_int8 would put it right"


@needs_openvino
def test_a_checked_model_that_does_not_run_falls_back_to_torch(x86, caplog):
    e = SentenceTransformerEmbedder()
    _prepared(e, xml=b"<net name='garbage'><layers>")  # the check matches these very files
    with caplog.at_level(logging.WARNING, logger="engine.embed"):
        assert (e.backend, e.precision) == ("torch", "bf16")
        assert not e.model_id.endswith("+int8"), "decided before any vector is made: an index never mixes them"
    assert "does not run here" in caplog.text


def test_a_passed_unchanged_model_is_chosen(x86, monkeypatch):
    compiled = []

    class Compiled:
        def __init__(self, xml, *, precision):
            compiled.append((xml.name, precision))

    monkeypatch.setattr(embed, "_OpenVINOModel", Compiled)
    e = SentenceTransformerEmbedder()
    _prepared(e)
    assert not e.int8_pending()
    assert (e.backend, e.precision) == ("openvino", "int8") and e.model_id.endswith("+int8")
    assert compiled == [("model-int8.xml", "int8")]


def test_settings_saved_with_the_old_default_move_to_auto():
    assert config_from_dict({"schema_version": 2, "backend": "torch"}).backend == "auto"
    assert config_from_dict({"schema_version": 2, "backend": "openvino"}).backend == "openvino"
    assert config_from_dict({"schema_version": 3, "backend": "torch"}).backend == "torch"  # chosen since

