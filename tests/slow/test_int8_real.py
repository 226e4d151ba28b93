"""The int8 model that setup prepared: the automatic backend's choice on x86, close to torch fp32."""

from __future__ import annotations

import numpy as np
import pytest

from engine.embed import SentenceTransformerEmbedder
from engine.engine import Engine
from tests.helpers import write

pytestmark = pytest.mark.slow


def test_the_prepared_int8_model_is_the_default_and_searches(prepared_int8, home, docs):
    e = SentenceTransformerEmbedder(device="cpu")
    assert (e.backend, e.precision) == ("openvino", "int8") and e.model_id.endswith("+int8")
    fp32 = SentenceTransformerEmbedder(device="cpu", backend="torch", precision="fp32")
    texts = ["The boundary layer thickens downstream of the leading edge.", "rent is due on the first"]
    cosine = np.sum(e.embed_documents(texts) * fp32.embed_documents(texts), axis=1)
    assert (cosine > 0.98).all(), cosine
    assert float(e.embed_query(texts[1]) @ fp32.embed_query(texts[1])) > 0.98

    write(docs / "lease.txt", "The rent is due on the first day of every month, paid to the landlord.")
    write(docs / "wing.txt", "Laminar flow over the wing separates where the pressure gradient turns adverse.")
    engine = Engine.open(home)
    try:
        engine.update_config(parse_workers=0, folders=(str(docs),))
        engine.index()
        assert engine.embedder.model_id == e.model_id
        assert engine.search("when do I pay the landlord", limit=1)[0].path.endswith("lease.txt")
    finally:
        engine.close()


def test_padding_to_a_multiple_of_eight_leaves_the_vectors_as_each_text_alone(prepared_int8):
    e = SentenceTransformerEmbedder(device="cpu")
    e.warm_up()  # also prepares the query model at each padded length
    texts = ["short", "a somewhat longer passage about supersonic flow over a flat plate", "x " * 40]
    together = e.embed_documents(texts)
    alone = np.stack([e.embed_documents([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-4)
    assert float(e.embed_query(texts[1]) @ together[1]) > 0.98


def test_the_self_test_says_the_prepared_int8_model_runs_and_fails_when_it_cannot(prepared_int8, monkeypatch):
    """The frozen app once lacked OpenVINO's CPU plugin: the self-test passed on torch, silently."""
    from engine import embed, selftest

    lines: list[str] = []
    assert selftest.run_self_test(embedder=SentenceTransformerEmbedder(device="cpu"), out=lines.append).ok, lines
    assert "ok   the prepared int8 model runs (OpenVINO)" in lines

    def no_cpu_plugin(*args, **kwargs):
        raise RuntimeError('Device with "CPU" name is not registered in the OpenVINO Runtime')

    monkeypatch.setattr(embed, "_OpenVINOModel", no_cpu_plugin)
    lines.clear()
    report = selftest.run_self_test(embedder=SentenceTransformerEmbedder(device="cpu"), out=lines.append)
    assert not report.ok
    assert any(line.startswith("FAIL ") and "does not run" in line for line in lines), lines



def test_a_compiled_model_is_freed_once_unused(prepared_int8):
    """A fine-tune compiles a model per candidate mix: each must go when nothing uses it (a
    reference from OpenVINO's request queue back to it once kept ~280 MB per candidate)."""
    import gc
    import weakref

    from engine import embed

    e = SentenceTransformerEmbedder(device="cpu")
    e.embed_documents(["warm"])  # loaded: the tokenizer and pooling modules to attach
    compiled = embed._OpenVINOModel(prepared_int8 / embed._safe_name(e._base_id) / "model-int8.xml", precision="int8")
    compiled.attach(e.model)
    vectors = compiled.encode([["the rent is due on the first", "laminar flow over a flat plate"]] * 4)
    assert len(vectors) == 4 and vectors[0].shape == (2, e.ndim)
    gone = weakref.ref(compiled)
    del compiled
    gc.collect()
    assert gone() is None


def test_an_embedder_loaded_after_the_first_is_freed_once_unused(prepared_int8):
    """Each fine-tune candidate loads an embedder of its own; the first load freezes the ML
    stack's objects for the collector (engine.embed._no_collector_pauses), later ones must not,
    or every candidate's model (~100 MB) stays for good."""
    import gc
    import weakref

    SentenceTransformerEmbedder(device="cpu").embed_documents(["the first load of this process, or not"])
    for backend in ("auto", "torch"):
        e = SentenceTransformerEmbedder(device="cpu", backend=backend)
        e.embed_documents(["the rent is due on the first", "laminar flow over a flat plate"] * 4)
        gone = weakref.ref(e)
        del e
        gc.collect()
        assert gone() is None, backend
