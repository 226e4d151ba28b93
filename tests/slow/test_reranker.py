"""A tiny random cross-encoder built offline: loading, batching, truncation, ordering, import."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import ModelError
from engine.rerank import CrossEncoderReranker
from tests.helpers import write

pytestmark = pytest.mark.slow

WORDS = ("the a of to and espresso machine descaling mineral deposits boiler bike tyre pressure road "
         "bird birds migrating magnetic field stars rent due lease").split()


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory):
    """A 1-layer BERT with a 30-word vocabulary and a fresh scoring head, saved as a model folder."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("models") / "tiny-cross-encoder"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]))
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(WORDS) + 5, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=512, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def test_loads_scores_in_batches_and_truncates(tiny_cross_encoder):
    reranker = CrossEncoderReranker(tiny_cross_encoder, device="cpu", max_tokens=16, batch_size=2)
    passages = ["espresso machine descaling", "bike tyre pressure", "birds migrating", "rent due",
                " ".join(["boiler mineral deposits"] * 200)]  # far over max_tokens
    scores = reranker.score("espresso descaling", passages)
    assert scores.shape == (5,) and scores.dtype == np.float32 and np.isfinite(scores).all()
    one_by_one = np.concatenate([reranker.score("espresso descaling", [p]) for p in passages])
    assert np.allclose(scores, one_by_one, atol=1e-5), "batching does not change scores"
    assert reranker.model.max_seq_length == 16
    assert reranker.model_id.startswith("tiny-cross-encoder@")


def test_search_orders_by_the_installed_cross_encoder(make_engine, docs, tiny_cross_encoder):
    write(docs / "coffee.txt", "the espresso machine descaling removes mineral deposits")
    write(docs / "bike.txt", "road bike tyre pressure")
    write(docs / "birds.txt", "birds migrating by the magnetic field and stars")
    write(docs / "lease.txt", "the rent due under the lease")
    engine = make_engine()
    engine.add_folder(docs)
    engine.index()
    installed = engine.import_reranker(tiny_cross_encoder)
    assert engine.reranker_available and engine.config.reranker == installed
    assert engine.status().reranker == "tiny-cross-encoder"
    result = engine.search_detailed("the rent due", mode="auto")
    assert result.mode == "rerank" and "rerank" in result.timings_ms
    scores = [h.why.rerank_score for h in result.hits if h.why.rerank_score is not None]
    assert scores == sorted(scores, reverse=True) and len(scores) == len(result.hits)
    engine.update_config(use_reranker=False)
    assert engine.search_detailed("the rent due").mode == "hybrid"
    assert "turned off" in engine.status().reranker


def test_import_refuses_what_is_not_a_model(make_engine, tmp_path):
    engine = make_engine()
    with pytest.raises(ModelError, match="not a model folder"):
        engine.import_reranker(tmp_path)
