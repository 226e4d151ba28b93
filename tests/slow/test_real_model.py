"""The real bundled model: loading, tokenizer-bound chunks, query/document vectors, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.chunk import chunk_pages
from engine.config import BUNDLED_MODEL
from engine.embed import SPECIAL_TOKENS, SentenceTransformerEmbedder
from engine.engine import Engine
from engine.types import Page

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def embedder():
    return SentenceTransformerEmbedder(BUNDLED_MODEL, device="cpu")


def test_bundled_model_loads_offline(embedder):
    assert embedder.ndim == 384 and embedder.max_tokens == 256 and embedder.device == "cpu"
    assert embedder.model_id.startswith("all-MiniLM-L6-v2@")
    assert SentenceTransformerEmbedder(BUNDLED_MODEL).model_id == embedder.model_id, "stable id"


def test_vectors_are_normalized_and_meaningful(embedder):
    docs = embedder.embed_documents(["Descaling removes mineral deposits from the boiler.",
                                     "Inflate road bike tyres to the pressure on the sidewall."])
    assert docs.shape == (2, 384) and docs.dtype == np.float32
    assert np.allclose(np.linalg.norm(docs, axis=1), 1, atol=1e-4)
    q = embedder.embed_query("how do I remove limescale from my coffee machine")
    assert q @ docs[0] > q @ docs[1]


def test_chunks_never_exceed_the_model_limit(embedder):
    text = open(ROOT / "resources" / "samples" / "bicycle-maintenance.txt", encoding="utf-8").read() * 3
    chunks = chunk_pages([Page(None, text)], token_offsets=embedder.token_offsets,
                         max_tokens=embedder.max_tokens - SPECIAL_TOKENS, overlap=32)
    assert len(chunks) > 3
    tokenizer = embedder.model.tokenizer
    for c in chunks:
        assert text[c.start:c.end] == c.text
        assert len(tokenizer(c.text)["input_ids"]) <= embedder.max_tokens


def test_samples_end_to_end(tmp_path, embedder):
    engine = Engine.open(tmp_path / "home", embedder=embedder)
    engine.update_config(parse_workers=0)
    report = engine.index()
    assert report.failed == 0 and report.added >= 10
    hit = engine.search("how do I remove limescale from the coffee machine")[0]
    assert hit.path.endswith("espresso-machine-manual.pdf") and hit.page == 3
    assert engine.search("when is the rent due")[0].path.endswith("lease-summary.docx")
    assert engine.search("what tyre pressure for a road bike")[0].path.endswith("bicycle-maintenance.txt")
    engine.close()


def test_cli_tour_runs_offline_in_a_fresh_home(tmp_path):
    env = {**os.environ, "SIFT_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "engine.cli", "tour"], env=env, capture_output=True,
                            text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "espresso-machine-manual.pdf (page 3)" in result.stdout
    status = json.loads(subprocess.run([sys.executable, "-m", "engine.cli", "status", "--json"], env=env,
                                       capture_output=True, text=True, check=True).stdout)
    assert status["using_samples"] and status["files_by_status"].get("indexed", 0) >= 10
