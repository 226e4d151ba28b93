"""A tiny real fine-tune with the bundled model: mining, both trainers, saving, measuring, adopting."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from engine import embed, finetune
from engine.config import BUNDLED_MODEL
from engine.embed import SentenceTransformerEmbedder
from engine.engine import Engine
from engine.errors import Cancelled
from engine.finetune import TrainOptions, run_finetune
from engine.models import embedders_dir, load_card, rerankers_dir
from engine.rerank import CrossEncoderReranker
from tests.helpers import write

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # real training on a shared 2-core CPU

SUBJECTS = ["boiler pressure valve", "bicycle chain grease", "espresso grinder burrs", "lawn mower blade",
            "window frame sealant", "dishwasher filter", "guitar string tension", "aquarium water pump",
            "roof gutter cleaning", "car battery terminals", "oven door hinge", "printer paper jam",
            "bathroom tile grout", "kayak paddle grip", "heat pump defrost", "sewing machine bobbin"]


@pytest.fixture
def engine(home, docs):
    for i, subject in enumerate(SUBJECTS):
        write(docs / f"manual{i:02}.txt", f"Manual {i}: servicing the {subject}\n\nCheck the {subject} every "
              f"month; replace worn parts of the {subject} and note the date in the service log.")
    for i in range(6):  # documents never opened: the only ones a negative may come from
        write(docs / f"letter{i:02}.txt", f"Letter {i}: the neighbours' garden party is on Saturday at {i + 2} pm.")
    e = Engine.open(home)
    e.update_config(parse_workers=0, device="cpu", folders=(str(docs),))
    e.index()
    yield e
    e.close()


def click_all(e: Engine) -> None:
    for i, subject in enumerate(SUBJECTS):
        query = f"how do I look after my {subject.split()[-1]}"
        hits = e.search(query, limit=5)
        rank = next((n for n, h in enumerate(hits, 1) if h.path.endswith(f"manual{i:02}.txt")), None)
        if rank is None:
            continue
        e.record_click(query, hits[rank - 1], rank=rank, shown=hits)


def test_a_tiny_real_run_trains_saves_and_measures(engine, monkeypatch):
    click_all(engine)
    monkeypatch.setattr(finetune.pairs, "MIN_PAIRS", 8)
    monkeypatch.setattr(finetune.pairs, "MIN_HELDOUT_QUERIES", 3)
    # Let both candidates through, whatever they measure, so that the saved folders are checked.
    monkeypatch.setattr(finetune.heldout, "GATE_MIN_GAIN", -1.0)
    monkeypatch.setattr(finetune.heldout, "GATE_MAX_LOSS", 1.0)
    stages = []
    result = run_finetune(engine, TrainOptions(batch_size=8), on_progress=lambda p: stages.append(p.stage))
    assert {"training", "reranker", "embedding", "evaluating"} <= set(stages)
    assert result.embedder and result.reranker and result.train_seconds > 0
    for m in (result.before, result.after):
        assert all(0.0 <= v <= 1.0 for stage in (m.dense, m.pipeline) for v in stage.values())
    assert engine.config.model == BUNDLED_MODEL and not engine.config.reranker

    embedder = SentenceTransformerEmbedder(result.embedder, device="cpu")
    assert embedder.ndim == 384 and np.isclose(np.linalg.norm(embedder.embed_query("chain grease")), 1.0, atol=1e-3)
    assert load_card(embedder.folder).method == "clicks"
    reranker = CrossEncoderReranker(result.reranker, device="cpu")
    scores = reranker.score("chain grease", ["bicycle chain grease monthly", "oven door hinge"])
    assert scores.shape == (2,) and np.isfinite(scores).all()

    engine.adopt_model(result.embedder)
    if embed.int8_runs_here():  # converted, quantized and checked when adopted, like the bundled model
        assert engine.embedder.model_id.endswith("+int8"), engine.embedder.model_id
    engine.adopt_reranker(result.reranker)
    assert engine.search("bicycle chain grease", limit=3, mode="auto")


def test_cancel_while_training_for_real_keeps_nothing(engine, monkeypatch):
    click_all(engine)
    monkeypatch.setattr(finetune.pairs, "MIN_PAIRS", 8)
    monkeypatch.setattr(finetune.pairs, "MIN_HELDOUT_QUERIES", 3)
    cancel = threading.Event()

    def on_progress(p):
        if p.stage == "training":
            cancel.set()

    with pytest.raises(Cancelled):
        run_finetune(engine, TrainOptions(batch_size=4), on_progress=on_progress, cancel=cancel)
    for parent in (embedders_dir(engine.paths), rerankers_dir(engine.paths)):
        assert not parent.exists() or not any(parent.iterdir())
    assert engine.config.model == BUNDLED_MODEL
