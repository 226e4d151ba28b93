"""Good and weak matches: the calibration measured on the index, the labels, what they leave alone."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine import match
from engine.match import Calibration, MatchJudge, nonsense, sentence_of, word_stem
from tests.helpers import write

ESPRESSO = "Descaling the espresso machine every month removes mineral deposits from the boiler."
BIKE = "Road bike tyres should be inflated to the pressure printed on the sidewall of the tyre."
BIRDS = "Migrating birds navigate using the magnetic field of the earth and the position of the stars."


@pytest.fixture
def engine(make_engine, docs):
    write(docs / "coffee.txt", ESPRESSO)
    write(docs / "bike.txt", BIKE)
    write(docs / "birds.txt", BIRDS)
    e = make_engine()
    e.add_folder(docs)
    e.index()
    return e


def names(hits):
    return [h.path.rsplit("/", 1)[-1] for h in hits]


def test_a_matching_document_is_good_and_the_rest_weak(engine):
    result = engine.search_detailed("espresso machine descaling")
    assert names(result.hits)[0] == "coffee.txt" and len(result.hits) == 3, "weak ones are still listed"
    assert [h.match for h in result.hits] == ["good", "weak", "weak"]
    assert result.good_matches == 1


def test_gibberish_has_no_good_match(engine):
    for query in ("xyzzyqqq flurbgast", "qwpoeiru zmxncb", "lkjhgf"):
        result = engine.search_detailed(query)
        assert result.hits and result.good_matches == 0 and all(h.match == "weak" for h in result.hits), query


def test_labels_never_reorder(engine):
    for mode in ("hybrid", "dense", "bm25"):
        hits = engine.search("the tyre pressure of a bike", mode=mode)
        assert names(hits)[0] == "bike.txt" and hits[0].match == "good", mode
        order = [h.why.fused_score for h in hits]
        assert order == sorted(order, reverse=True), mode


def test_keywords_alone_label_in_bm25_mode(engine):
    [hit] = engine.search("magnetic stars", mode="bm25")
    assert hit.match == "good"
    assert engine.search_detailed("magnetic lawnmower", mode="bm25").good_matches == 0, \
        "a passage holding a minor share of the query's keyword weight is weak"


def test_calibration_is_measured_once_kept_and_redone_as_the_index_grows(engine, docs, monkeypatch):
    engine.search("espresso")
    key = "match-calibration:" + engine.embedder.model_id
    stored = Calibration(**json.loads(engine.catalog.get_meta(key)))
    assert stored.floor < stored.ceiling and stored.chunks == engine.catalog.chunk_id_bound()
    measured = []
    real = MatchJudge._measure
    monkeypatch.setattr(MatchJudge, "_measure", lambda self, *a: measured.append(a[1]) or real(self, *a))
    engine.search("bike tyres")
    assert measured == [], "the index did not change: the stored calibration serves"
    for i in range(3):
        write(docs / f"more-{i}.txt", f"Note {i} about gardening tools and the shed.")
    engine.index()
    engine.search("bike tyres")
    assert measured == [engine.catalog.chunk_id_bound()], "grown by more than a quarter: measured again"


def test_calibration_scale_follows_the_model_not_a_constant():
    """Every threshold is a share of the way from this index's floor to its ceiling."""
    low = Calibration(model_id="a", chunks=10, floor=0.1, ceiling=0.7)
    high = Calibration(model_id="b", chunks=10, floor=0.75, ceiling=0.9)
    assert low.cosine_at(match.MEANING_SHARE) == pytest.approx(0.1 + match.MEANING_SHARE * 0.6)
    assert high.cosine_at(match.MEANING_SHARE) == pytest.approx(0.75 + match.MEANING_SHARE * 0.15)
    assert not low.stale(12) and low.stale(13) and low.stale(7)


def test_is_good_weighs_keyword_rarity(engine):
    judge = MatchJudge(engine.catalog)
    weights = judge.keyword_weights(["espresso", "zebra"], {"espresso": 1, "zebra": 1})
    assert weights["zebra"] > weights["espresso"] > 0, "a word the index never saw weighs the most"
    cal = Calibration(model_id="x", chunks=3, floor=0.0, ceiling=1.0)
    assert not judge.is_good(text=ESPRESSO, cosine=0.3, weights=weights, calibration=cal)
    only = judge.keyword_weights(["espresso", "descale"], {"espresso": 1, "descale": 2})
    assert judge.is_good(text=ESPRESSO, cosine=0.3, weights=only, calibration=cal), "'descale' finds 'Descaling'"
    assert judge.is_good(text=ESPRESSO, cosine=0.05, weights=only, calibration=cal), "the words found verbatim"
    assert judge.is_good(text=BIKE, cosine=0.45, weights=only, calibration=cal), "close enough in meaning alone"


def test_helpers():
    assert nonsense(3) == nonsense(3) and all(s.replace(" ", "").isalpha() for s in nonsense(20))
    assert sentence_of("Short. This sentence has more than five words in it. End.") == \
        "This sentence has more than five words in it."
    assert word_stem("tyres") == "tyre" and word_stem("descale") == "desca"
    assert np.isfinite(Calibration(model_id="m", chunks=0, floor=0.5, ceiling=0.2).cosine_at(0.4))


class CrowdedEmbedder:
    """Another model's geometry: the fake embedder's vectors with a shared component added, so
    every cosine lies in [0.7, 1] (unrelated text about 0.7, as with e5-style models), while the
    fake gives unrelated text about 0. A cosine constant tuned on one would fail the other."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.model_id = "crowded@1"
        self.ndim = inner.ndim + 1
        self.max_tokens = inner.max_tokens

    def token_offsets(self, text):
        return self.inner.token_offsets(text)

    def _crowd(self, v):
        v = np.atleast_2d(v)
        out = np.concatenate([np.sqrt(0.3) * v, np.full((len(v), 1), np.sqrt(0.7), np.float32)], axis=1)
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    def embed_documents(self, texts):
        return self._crowd(self.inner.embed_documents(texts)) if texts else np.zeros((0, self.ndim), np.float32)

    def embed_query(self, text):
        return self._crowd(self.inner.embed_query(text))[0]


QUERIES = ("espresso machine descaling", "the tyre pressure of a bike", "magnetic field navigation",
           "xyzzyqqq flurbgast", "qwpoeiru zmxncb", "gardening shed tools")


@pytest.mark.parametrize("dtype", ["i8", "f16", "b1"])
def test_labels_hold_for_another_model_and_every_precision(home, docs, fake_embedder, dtype, tmp_path):
    from engine.engine import Engine

    write(docs / "coffee.txt", ESPRESSO)
    write(docs / "bike.txt", BIKE)
    write(docs / "birds.txt", BIRDS)
    labels = {}
    for name, embedder in (("fake", fake_embedder), ("crowded", CrowdedEmbedder(fake_embedder))):
        e = Engine.open(tmp_path / f"home-{name}", embedder=embedder)
        try:
            e.update_config(parse_workers=0, vector_dtype=dtype)
            e.add_folder(docs)
            e.index()
            labels[name] = {q: {(h.path, h.match) for h in e.search(q)} for q in QUERIES}  # ties may swap
            cal = e._searcher.judge._calibrations[embedder.model_id]
            assert cal.floor < cal.ceiling
        finally:
            e.close()
    assert labels["crowded"]["xyzzyqqq flurbgast"] and all(m == "weak" for _, m in labels["crowded"]["xyzzyqqq flurbgast"])
    assert labels["crowded"] == labels["fake"], "the same documents good and weak whatever the model's cosine scale"
    assert [m for _, m in labels["fake"]["espresso machine descaling"]].count("good") == 1


def test_labels_hold_after_a_fine_tuned_model_is_adopted(home, docs, fake_embedder):
    """Adopting a trained model (here a toy whose cosines sit in [0.7, 1]) measures its own
    calibration: gibberish stays without a good match and the matching document stays good."""
    from engine.config import BUNDLED_MODEL
    from engine.models import embedders_dir
    from tests.helpers import Engines

    trained = CrowdedEmbedder(fake_embedder)
    make = Engines(home, embedder_factory=lambda value: fake_embedder if value == BUNDLED_MODEL else trained)
    try:
        write(docs / "coffee.txt", ESPRESSO)
        write(docs / "bike.txt", BIKE)
        write(docs / "birds.txt", BIRDS)
        e = make.indexed(docs)
        before = {q: {(h.path, h.match) for h in e.search(q)} for q in QUERIES}
        folder = embedders_dir(e.paths) / "sift-ft-20261203-1500"
        folder.mkdir(parents=True)
        e.adopt_model(str(folder))
        assert e.embedder.model_id == trained.model_id
        after = {q: {(h.path, h.match) for h in e.search(q)} for q in QUERIES}
        assert set(e._searcher.judge._calibrations) >= {fake_embedder.model_id, trained.model_id}
        assert all(m == "weak" for _, m in after["xyzzyqqq flurbgast"])
        assert after == before
    finally:
        make.close()
