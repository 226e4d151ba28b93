"""Fine-tuning from clicks: pairs, the split, the data check, the gate, and the run with a fake trainer."""

from __future__ import annotations

import gc
import re
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest

from engine import finetune
from engine.config import BUNDLED_MODEL
from engine.embed import FakeEmbedder
from engine.engine import Engine
from engine.errors import Cancelled, ModelError, SiftError
from engine.finetune import (
    FinetuneProgress,
    Metrics,
    Pair,
    TrainOptions,
    click_pairs,
    finetune_summary,
    gate,
    normalize_query,
    pseudo_query,
    run_finetune,
    split_by_query,
)
from engine.rerank import RerankPlan
from engine.models import embedders_dir, load_card, rerankers_dir
from engine.types import Hit
from tests.helpers import Engines, write

TOPICS = 36   # one document per topic; its query uses a word only a trained model links to it


class VocabEmbedder(FakeEmbedder):
    """A fake whose model knows synonyms: a fine-tuned model in miniature."""

    def __init__(self, model_id: str, synonyms: dict[str, str] | None = None) -> None:
        super().__init__(model_id=model_id)
        self.synonyms = synonyms or {}

    def _vector(self, text: str) -> np.ndarray:
        for word, meaning in self.synonyms.items():
            text = re.sub(rf"\b{word}\b", meaning, text, flags=re.IGNORECASE)
        return super()._vector(text)


class NoiseEmbedder(FakeEmbedder):
    """A model that learned nothing useful: every text a random direction."""

    def _vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "little") ^ len(text)
        v = np.random.default_rng(seed).standard_normal(self.ndim).astype(np.float32)
        return v / np.linalg.norm(v)


SYNONYMS = {f"qterm{i}": f"dterm{i}" for i in range(TOPICS)}


class OverlapReranker:
    """Scores by shared words, after the synonyms when it has learned them."""

    def __init__(self, model_id: str, synonyms: dict[str, str] | None = None) -> None:
        self.model_id = model_id
        self.synonyms = synonyms or {}

    def plan(self) -> RerankPlan:
        return RerankPlan(depth=30, max_tokens=0)

    def score(self, query: str, passages, *, max_tokens=None):
        words = {self.synonyms.get(w, w) for w in query.lower().split()}
        return np.array([len(words & set(p.lower().split())) - 1.0 for p in passages], dtype=np.float32)


class FakeTrainer:
    """Writes a model folder at once and reports three steps; mining ranks by shared words."""

    def __init__(self, *, cancel_at: str | None = None, cancel: threading.Event | None = None,
                 reranker_learns: bool = True) -> None:
        self.cancel_at, self.cancel = cancel_at, cancel
        self.reranker_learns = reranker_learns
        self.embedder_rows: list = []
        self.reranker_rows: list = []
        self.mined_calls = 0
        self.mixed: list[float] = []

    def mine_negatives(self, *, model, pairs, corpus, cross_encoder, count, settings, vectors=None):
        self.mined_calls += 1
        self.mining_corpus = list(corpus)
        corpus = list(dict.fromkeys([*corpus, *(p for _, p in pairs)]))  # as sentence-transformers does
        out = {}
        for q, pos in pairs:
            words = set(q.lower().split())
            ranked = sorted((t for t in corpus if t != pos), key=lambda t: (-len(words & set(t.lower().split())), t))
            out[(q, pos)] = ranked[:count]
        return out

    def _train(self, stage: str, target: Path, report, cancel) -> None:
        for step in (1, 2, 3):
            report(step, 3)
            if self.cancel_at == stage and step == 2:
                self.cancel.set()
            if cancel.is_set():
                target.mkdir(parents=True, exist_ok=True)  # a half-written folder, as a real run leaves
                (target / "model.safetensors").write_bytes(b"half")
                return
        target.mkdir(parents=True, exist_ok=True)
        (target / "model.safetensors").write_bytes(b"weights")
        (target / "config.json").write_text("{}")

    def train_embedder(self, *, base, rows, target, settings, report, cancel):
        self.embedder_rows = list(rows)
        self._train("training", target, report, cancel)

    def train_reranker(self, *, base, fresh_head, rows, target, settings, report, cancel):
        self.reranker_rows = list(rows)
        self.fresh_head = fresh_head
        self._train("reranker", target, report, cancel)

    def interpolate(self, *, base, trained, alpha, target):
        if not (Path(trained) / "model.safetensors").is_file():  # the real one reads the trained weights
            raise FileNotFoundError(trained)
        self.mixed.append(alpha)
        target.mkdir(parents=True, exist_ok=True)
        (target / "model.safetensors").write_bytes(b"mixed")
        (target / MIX_FILE).write_text(str(alpha))

    def reranker(self, folder, *, device):
        return OverlapReranker(f"{Path(folder).name}@fake", SYNONYMS if self.reranker_learns else None)


MIX_FILE = "mix.txt"   # the fake trainer's mixes say their share of the trained weights here


@pytest.fixture
def trained() -> dict:
    """What the next trained bi-encoder will be (a test may swap it for a worse one); "mixes":
    share of the trained weights → the model a mix is, where a test gives mixes their own."""
    return {"model": VocabEmbedder("trained@1", SYNONYMS)}


@pytest.fixture
def open_engine(home, trained):
    base = VocabEmbedder("base@1")

    def factory(value: str) -> FakeEmbedder:
        if value == BUNDLED_MODEL:
            return base
        if Path(value).parent.name == "embedders":
            if not Path(value).is_dir():
                raise ModelError(f"no model folder {value}")
            if "mixes" in trained:
                mix = Path(value) / MIX_FILE
                return trained["mixes"][float(mix.read_text()) if mix.exists() else 1.0]
            return trained["model"]
        raise ModelError(f"no such model {value!r}")

    make = Engines(home, embedder_factory=factory)
    yield make
    make.close()


def topic_text(i: int) -> str:
    return (f"Sheet {i} of the plant\n\nThe dterm{i} assembly is inspected with gauge {i} and the readings "
            f"are written in the dterm{i} log before the shift ends by the engineer on duty.")


@pytest.fixture
def engine(open_engine, docs):
    for i in range(TOPICS):
        write(docs / f"topic{i:02}.txt", topic_text(i))
    for i in range(20):
        write(docs / "other" / f"note{i:02}.txt", f"Garden note {i}: tomatoes beans and the compost heap.")
    return open_engine.indexed(docs)


def chunk_of(e: Engine, name: str):
    row = next(r for r in e.catalog.files().values() if r.path.endswith(name))
    cid = e.catalog.chunk_ids_of_file(row.id)[0]
    return e.catalog.chunks_by_id([cid])[cid]


def hit_for(e: Engine, name: str) -> Hit:
    c = chunk_of(e, name)
    return Hit(path=c.path, score=0.0, page=c.page, snippet="", chunk_id=c.id, start=c.start, end=c.end,
               kind=c.kind or "", mtime=c.mtime_ns / 1e9)


def click_topics(e: Engine, topics=range(TOPICS), *, variants: int = 1) -> None:
    """The user searches each topic's query and opens its document (below what was shown when missed)."""
    for i in topics:
        for v in range(variants):
            query = f"qterm{i} readings" if v == 0 else f"QTERM{i}   Readings"
            hits = e.search(query, limit=5, mode="auto")
            rank = next((n for n, h in enumerate(hits, 1) if h.path.endswith(f"topic{i:02}.txt")), None)
            e.record_click(query, hits[rank - 1] if rank else hit_for(e, f"topic{i:02}.txt"),
                           rank=rank or len(hits) + 1, shown=hits)


@pytest.fixture
def small_minimums(monkeypatch):
    monkeypatch.setattr(finetune.pairs, "MIN_PAIRS", 20)


def folders(e: Engine) -> list[str]:
    out = []
    for parent in (embedders_dir(e.paths), rerankers_dir(e.paths)):
        out += sorted(p.name for p in parent.iterdir()) if parent.is_dir() else []
    return out


# -- pairs -------------------------------------------------------------------------------------


def test_pairs_positive_shown_negatives_and_dedup(engine):
    shown = [hit_for(engine, f"topic{i:02}.txt") for i in range(8)]
    # Opened the 3rd of 8: the two above and two below are negatives, the rest are not.
    engine.record_click("qterm2 readings", shown[2], rank=3, shown=shown)
    engine.record_click("  QTERM2 readings ", shown[2], rank=3, shown=shown)  # same query, same passage
    engine.record_click("qterm2 readings", shown[6], rank=7, shown=shown)     # a second document opened
    pairs, clicks = click_pairs(engine.catalog)
    assert clicks == 3
    assert len(pairs) == 2
    first = next(p for p in pairs if p.path.endswith("topic02.txt"))
    assert first.text == topic_text(2)
    assert first.key == "qterm2 readings" and first.query == "qterm2 readings"
    negative_paths = {Path(engine.catalog.chunks_by_id([c])[c].path).name for c in first.negatives}
    # topic06 was opened for this query too, so it is no negative of either pair.
    assert negative_paths == {"topic00.txt", "topic01.txt", "topic03.txt", "topic04.txt"}
    second = next(p for p in pairs if p.path.endswith("topic06.txt"))
    assert {Path(engine.catalog.chunks_by_id([c])[c].path).name for c in second.negatives} == {
        "topic00.txt", "topic01.txt", "topic03.txt", "topic04.txt", "topic05.txt", "topic07.txt"}


def test_pairs_follow_reindexed_text_and_drop_stale_ones(engine):
    c = chunk_of(engine, "topic05.txt")
    with engine.catalog.transaction() as conn:
        # A click whose chunk id is gone but whose text still exists (the file was re-indexed) …
        engine.catalog.add_click(conn, query="qterm5 readings", chunk_id=10**9, text_hash=c.text_hash,
                                 path=c.path, rank=1, shown=[10**9, 10**9 + 1])
        # … and one whose text exists nowhere any more.
        engine.catalog.add_click(conn, query="qterm6 readings", chunk_id=10**9 + 2, text_hash="0" * 32,
                                 path=c.path, rank=1, shown=[])
    pairs, clicks = click_pairs(engine.catalog)
    assert clicks == 2
    assert [(p.key, p.chunk_id, p.text) for p in pairs] == [("qterm5 readings", c.id, c.text)]
    assert pairs[0].negatives == ()  # the shown ids are gone too


def test_pairs_ignore_filters_and_empty_queries(engine):
    h = hit_for(engine, "topic01.txt")
    engine.record_click("type:text qterm1 readings", h, rank=1, shown=[h])
    engine.record_click("type:text", h, rank=1, shown=[h])
    pairs, _ = click_pairs(engine.catalog)
    assert [(p.raw, p.query) for p in pairs] == [("type:text qterm1 readings", "qterm1 readings")]


def test_removed_file_leaves_no_pair(engine, docs):
    click_topics(engine, range(3))
    (docs / "topic01.txt").unlink()
    engine.index()
    pairs, _ = click_pairs(engine.catalog)
    assert sorted(Path(p.path).name for p in pairs) == ["topic00.txt", "topic02.txt"]


# -- the split and the data check ------------------------------------------------------------------


def pair(key: str, n: int = 0) -> Pair:
    return Pair(raw=key, query=key, key=normalize_query(key), chunk_id=n, text=f"t{n}", text_hash=f"h{n}", path=f"/p{n}")


def test_split_never_puts_one_query_on_both_sides():
    pairs = [pair(f"Query {q % 40}", n) for n, q in enumerate(range(300))]
    pairs += [pair(f"  QUERY   {q}", 1000 + q) for q in range(40)]  # the same queries, typed differently
    train, heldout = split_by_query(pairs, heldout_fraction=1 / 3, seed=42)
    assert {p.key for p in train}.isdisjoint({p.key for p in heldout})
    assert len(train) + len(heldout) == len(pairs)
    assert len({p.key for p in heldout}) == 13  # a third of 40 queries
    again, _ = split_by_query(list(reversed(pairs)), heldout_fraction=1 / 3, seed=42)
    assert {p.key for p in again} == {p.key for p in train}  # the seed decides, not the order
    other, _ = split_by_query(pairs, heldout_fraction=1 / 3, seed=7)
    assert {p.key for p in other} != {p.key for p in train}


def test_split_keeps_both_sides_with_two_queries():
    train, heldout = split_by_query([pair("a", 1), pair("b", 2)], heldout_fraction=0.1)
    assert len(train) == 1 and len(heldout) == 1


def test_too_little_data_is_refused_with_how_many_more(engine):
    click_topics(engine, range(12))
    summary = finetune_summary(engine)
    assert (summary.clicks, summary.pairs, summary.queries) == (12, 12, 12)
    assert not summary.enough
    assert summary.min_pairs == finetune.pairs.MIN_PAIRS
    assert re.search(r"12 pairs from 12 searches; about \d+ more searches with an opened result are needed",
                     summary.message)
    more = int(re.search(r"about (\d+) more", summary.message).group(1))
    assert more == finetune.pairs.MIN_PAIRS - 12  # one pair per search so far
    trainer = FakeTrainer()
    with pytest.raises(SiftError, match="more searches with an opened result are needed"):
        run_finetune(engine, TrainOptions(), trainer=trainer)
    assert trainer.mined_calls == 0 and not trainer.embedder_rows
    assert folders(engine) == []


def test_enough_data_is_summarized(engine, small_minimums):
    click_topics(engine)
    summary = finetune_summary(engine)
    assert summary.enough
    assert (summary.pairs, summary.queries, summary.train_queries, summary.heldout_queries) == (36, 36, 24, 12)
    assert summary.message == "36 pairs from 36 searches: 24 searches to learn from, 12 held out to check the result."


def test_bad_options_are_refused(engine):
    with pytest.raises(SiftError, match="epochs"):
        finetune_summary(engine, TrainOptions(epochs=0))
    with pytest.raises(SiftError, match="held-out fraction"):
        run_finetune(engine, TrainOptions(heldout_fraction=1.0), trainer=FakeTrainer())


# -- the gate ------------------------------------------------------------------------------------


def metrics(ndcg: float, *, dense_recall5: float = 0.5, pipeline_recall5: float = 0.5) -> Metrics:
    base = {"ndcg@10": ndcg, "recall@5": 0.5, "recall@10": 0.6, "mrr@10": 0.4}
    return Metrics(dense={**base, "recall@5": dense_recall5}, pipeline={**base, "recall@5": pipeline_recall5})


def test_gate_passes_a_better_model_and_says_by_how_much():
    ok, why = gate(metrics(0.40), metrics(0.45))
    assert ok and why == "better: nDCG@10 0.400 → 0.450 (+0.050)"


@pytest.mark.parametrize("after", [metrics(0.40), metrics(0.403), metrics(0.35)])
def test_gate_refuses_a_model_that_is_not_better(after):
    ok, why = gate(metrics(0.40), after)
    assert not ok and "short of the +0.005 needed" in why


def test_gate_refuses_a_gain_that_costs_elsewhere():
    ok, why = gate(metrics(0.40), metrics(0.45, dense_recall5=0.45))
    assert not ok and why == "not better: worse on dense Recall@5 0.500 → 0.450 (-0.050)"
    # The reranker's gate looks at the pipeline only: a dense loss cannot come from it.
    assert gate(metrics(0.40), metrics(0.45, dense_recall5=0.45), stages=("pipeline",))[0]
    assert gate(metrics(0.40), metrics(0.45, pipeline_recall5=0.49))[0]  # within GATE_MAX_LOSS


# -- the run --------------------------------------------------------------------------------------


def test_better_models_pass_and_nothing_is_switched(engine, small_minimums):
    click_topics(engine)
    before_model, before_reranker = engine.config.model, engine.config.reranker
    trainer = FakeTrainer()
    progress: list[FinetuneProgress] = []
    result = run_finetune(engine, TrainOptions(hard_negatives=1), on_progress=progress.append, trainer=trainer)

    assert result.improved and result.embedder and result.reranker
    assert result.after.pipeline["ndcg@10"] > result.before.pipeline["ndcg@10"] + 0.3
    assert result.after.dense["ndcg@10"] > result.before.dense["ndcg@10"] + 0.3
    assert (result.pairs, result.heldout_queries) == (24, 12)
    assert "Search model offered: better: nDCG@10" in result.verdict and "reranker offered" in result.verdict
    assert set(result.candidates) == {"embedder", "reranker"}
    # Nothing switched: the caller adopts.
    assert (engine.config.model, engine.config.reranker) == (before_model, before_reranker)
    # Every stage reported, in order, with done ≤ total.
    stages = list(dict.fromkeys(p.stage for p in progress))
    assert stages == ["data", "baseline", "mining", "training", "embedding", "evaluating", "reranker"]
    assert all(0 <= p.done <= p.total for p in progress if p.total)
    # Training rows: each training query's own document, one negative from another document.
    assert len(trainer.embedder_rows) == 24
    for row in trainer.embedder_rows:
        i = int(re.search(r"qterm(\d+)", row.query).group(1))
        assert row.positive == topic_text(i) and len(row.negatives) == 1 and row.negatives[0] != row.positive
    assert all(len(r.negatives) == finetune.RERANKER_NEGATIVES for r in trainer.reranker_rows)
    assert trainer.fresh_head  # no reranker was installed: it starts from the bundled weights
    held = {int(re.search(r"qterm(\d+)", p.query).group(1)) for p in split_by_query(
        click_pairs(engine.catalog)[0], heldout_fraction=1 / 3, seed=42)[1]}
    assert all(int(re.search(r"qterm(\d+)", r.query).group(1)) not in held for r in trainer.embedder_rows)
    # The folders carry their cards, with the held-out figures.
    card = load_card(Path(result.embedder))
    assert card.kind == "embedder" and card.method == "clicks" and card.pairs == 24 and not card.adopted
    assert card.before == result.before.as_dict() and card.after == result.candidates["embedder"].as_dict()
    assert load_card(Path(result.reranker)).kind == "reranker"
    assert not any(name.startswith(".") for name in folders(engine))
    # And adopting them works.
    def found() -> int:
        return sum(engine.search(f"qterm{i} readings", limit=1, mode="dense")[0].path.endswith(f"topic{i:02}.txt")
                   for i in range(TOPICS))

    by_base = found()
    engine.adopt_model(result.embedder)
    engine.adopt_reranker(result.reranker)
    assert engine.config.model == result.embedder
    assert found() >= by_base + TOPICS // 2


def test_no_passage_opened_for_any_search_is_a_negative(engine, small_minimums):
    """Issue 16 item 5: what the user opened, for this search or any other (held-out ones too),
    is never contrasted against: not as shown-not-opened, not mined, not as filler."""
    click_topics(engine)
    trainer = FakeTrainer()
    run_finetune(engine, TrainOptions(hard_negatives=2), trainer=trainer)
    opened_paths = {c.path for c in engine.catalog.clicks()}
    opened_texts = {engine.catalog.chunks_by_id([c.chunk_id])[c.chunk_id].text for c in engine.catalog.clicks()}
    rows = trainer.embedder_rows + trainer.reranker_rows
    assert rows and all(len(r.negatives) == 2 for r in trainer.embedder_rows)
    negatives = {n for r in rows for n in r.negatives}
    assert negatives and not negatives & opened_texts
    assert all(n.startswith("Garden note") for n in negatives)  # the only documents never opened
    assert not any(t in opened_texts for t in trainer.mining_corpus)
    assert len(opened_paths) == TOPICS


def test_the_mix_with_the_base_model_is_chosen_on_the_heldout_searches(engine, small_minimums, trained):
    """Issue 16 item 5: the trained weights mixed with the base model's; the mix that measures
    best on the held-out searches is the one gated, the others are removed with their vectors."""
    click_topics(engine)
    some = lambda n: VocabEmbedder(f"mix{n}@1", dict(list(SYNONYMS.items())[:n]))  # noqa: E731
    trained["mixes"] = {1.0: NoiseEmbedder(model_id="noise@1"), 0.75: some(TOPICS // 2), 0.5: some(TOPICS),
                        0.25: some(TOPICS // 4)}
    trainer = FakeTrainer()
    result = run_finetune(engine, TrainOptions(train_reranker=False), trainer=trainer)
    assert trainer.mixed == [0.75, 0.5, 0.25]
    assert sorted(result.mixes) == [0.25, 0.5, 0.75, 1.0]
    score = {a: m.pipeline["ndcg@10"] for a, m in result.mixes.items()}
    assert max(score, key=score.get) == 0.5 and score[0.5] > score[0.75] > score[1.0]
    assert result.mix == 0.5 and result.improved and result.embedder is not None
    assert (Path(result.embedder) / MIX_FILE).read_text() == "0.5"
    assert result.candidates["embedder"] == result.mixes[0.5]
    assert "mixed 50% into the base model's" in result.verdict
    assert folders(engine) == [Path(result.embedder).name]  # the other mixes are gone
    for other in ("noise@1", f"mix{TOPICS // 2}@1", f"mix{TOPICS // 4}@1"):
        assert engine.catalog.vector_count(other) == 0
    assert engine.catalog.vector_count(f"mix{TOPICS}@1") > 0


def test_no_mix_is_offered_when_every_mix_is_worse(engine, small_minimums, trained):
    click_topics(engine)
    trained["mixes"] = {a: NoiseEmbedder(model_id=f"noise{a}@1") for a in (1.0, 0.75, 0.5, 0.25)}
    result = run_finetune(engine, TrainOptions(train_reranker=False), trainer=FakeTrainer())
    assert len(result.mixes) == 4 and not result.improved and result.embedder is None
    assert not any(gate(result.before, m)[0] for m in result.mixes.values())
    assert result.after == result.before
    assert folders(engine) == []
    assert all(engine.catalog.vector_count(f"noise{a}@1") == 0 for a in (1.0, 0.75, 0.5, 0.25))


class _LoadedEachTime(dict):
    """Mixes as the factory gets them: a new model on every load, so only what the run keeps
    refers to it; each one made is watched."""

    def __init__(self, make) -> None:
        super().__init__({a: None for a in (1.0, 0.75, 0.5, 0.25)})
        self.make, self.made = make, []

    def __getitem__(self, alpha):
        model = self.make(alpha)
        self.made.append((alpha, weakref.ref(model)))
        return model


class _LoadedWhileRerankerTrains(FakeTrainer):
    def train_reranker(self, **kwargs):
        gc.collect()
        self.loaded = sorted({a for a, ref in self.made.made if ref() is not None})
        super().train_reranker(**kwargs)


@pytest.mark.parametrize("best_passes", [False, True])
def test_only_the_kept_mix_stays_loaded(engine, small_minimums, trained, best_passes):
    """Each real mix holds ~350 MB once loaded: while the reranker trains, a refused mix's model
    is no longer loaded, a mix that passed is (the reranker is measured over it); after the run
    none is."""
    click_topics(engine)
    trained["mixes"] = mixes = _LoadedEachTime(
        lambda a: VocabEmbedder(f"mix{a}@1", SYNONYMS) if best_passes and a == 0.5 else NoiseEmbedder(model_id=f"noise{a}@1"))
    trainer = _LoadedWhileRerankerTrains()
    trainer.made = mixes
    result = run_finetune(engine, TrainOptions(), trainer=trainer)
    assert (result.embedder is not None) is best_passes and (result.mix == 0.5) is best_passes
    assert trainer.loaded == ([0.5] if best_passes else [])
    gc.collect()
    assert [a for a, ref in mixes.made if ref() is not None] == []


def test_weights_are_interpolated_with_the_base_models(tmp_path):
    """The real mixing, on a toy model's safetensors: w = a·trained + (1 − a)·base for float
    weights both hold; integer buffers, the trained-only weights and the other files as trained."""
    import torch
    from safetensors.torch import load_file, save_file

    from engine.finetune.trainer import interpolate_weights

    base, trained, target = tmp_path / "base", tmp_path / "trained", tmp_path / "mixed"
    for folder, value in ((base, 1.0), (trained, 3.0)):
        (folder / "1_Pooling").mkdir(parents=True)
        save_file({"layer.weight": torch.full((2, 3), value), "position_ids": torch.arange(4)}, str(folder / "model.safetensors"))
    save_file({"head.weight": torch.full((2,), 5.0), "layer.weight": torch.full((2, 3), 3.0)},
              str(trained / "1_Pooling" / "extra.safetensors"))
    (trained / "config.json").write_text('{"trained": true}')
    interpolate_weights(base=base, trained=trained, alpha=0.25, target=target)
    mixed = load_file(str(target / "model.safetensors"))
    assert torch.allclose(mixed["layer.weight"], torch.full((2, 3), 0.25 * 3.0 + 0.75 * 1.0))
    assert torch.equal(mixed["position_ids"], torch.arange(4))
    assert torch.equal(load_file(str(target / "1_Pooling" / "extra.safetensors"))["head.weight"], torch.full((2,), 5.0))
    assert (target / "config.json").read_text() == '{"trained": true}'
    with pytest.raises(ModelError, match="shares no weights"):
        other = tmp_path / "other"
        other.mkdir()
        save_file({"something.else": torch.zeros(2)}, str(other / "model.safetensors"))
        interpolate_weights(base=other, trained=trained / "1_Pooling", alpha=0.5, target=tmp_path / "m2")


def test_a_worse_model_is_refused_and_removed(engine, small_minimums, trained):
    click_topics(engine)
    trained["model"] = NoiseEmbedder(model_id="noise@1")
    trainer = FakeTrainer(reranker_learns=False)
    result = run_finetune(engine, TrainOptions(), trainer=trainer)
    assert not result.improved
    assert result.embedder is None and result.reranker is None
    assert "Search model refused: not better" in result.verdict and "reranker refused" in result.verdict
    # Nothing passed the gate, so nothing changes: "after" is "before"; the refused figures are candidates'.
    assert result.after == result.before
    assert result.candidates["embedder"] != result.before and "reranker" in result.candidates
    assert folders(engine) == []
    # Its vectors and index file are gone too.
    assert engine.catalog.vector_count("noise@1") == 0
    assert not list(engine.paths.index_dir.glob("noise@1*"))
    assert engine.config.model == BUNDLED_MODEL
    assert engine.search("dterm3 gauge", limit=1)[0].path.endswith("topic03.txt")


@pytest.mark.parametrize("stage", ["training", "embedding", "reranker"])
def test_cancel_leaves_the_old_model_and_no_folder(engine, small_minimums, stage, monkeypatch):
    click_topics(engine)
    cancel = threading.Event()
    trainer = FakeTrainer(cancel_at=stage if stage != "embedding" else None, cancel=cancel)
    if stage == "embedding":
        real_prepare = engine.prepare_model
        calls = []

        def prepare(value, *, on_progress=None, cancel=None):
            calls.append(value)
            if len(calls) == 1:  # the user cancels while the new model embeds the passages
                cancel.set()
            return real_prepare(value, on_progress=on_progress, cancel=cancel)

        monkeypatch.setattr(engine, "prepare_model", prepare)
    config = engine.config
    with pytest.raises(Cancelled):
        run_finetune(engine, TrainOptions(), cancel=cancel, trainer=trainer)
    assert engine.config == config
    assert folders(engine) == []
    assert engine.catalog.vector_count("trained@1") == 0
    assert engine.search("dterm3 gauge", limit=1)[0].path.endswith("topic03.txt")
    # A second run goes through.
    assert run_finetune(engine, TrainOptions(train_reranker=False), trainer=FakeTrainer()).embedder is not None


def test_no_reranker_option_trains_the_bi_encoder_only(engine, small_minimums):
    click_topics(engine)
    trainer = FakeTrainer()
    result = run_finetune(engine, TrainOptions(train_reranker=False, hard_negatives=2), trainer=trainer)
    assert result.embedder and result.reranker is None and not trainer.reranker_rows
    assert all(len(r.negatives) == 2 for r in trainer.embedder_rows)
    assert set(result.candidates) == {"embedder"}
    assert result.after.pipeline == result.candidates["embedder"].pipeline


def test_a_killed_run_leaves_no_partial_folder_behind(engine, small_minimums):
    click_topics(engine)
    leftover = embedders_dir(engine.paths) / ".sift-ft-20261127-2330.partial"
    leftover.mkdir(parents=True)
    (leftover / "model.safetensors").write_bytes(b"half")
    run_finetune(engine, TrainOptions(train_reranker=False), trainer=FakeTrainer())
    assert not leftover.exists()


# -- cold start -------------------------------------------------------------------------------------


def test_pseudo_queries_take_titles_headings_or_first_sentences_out_of_the_passage():
    body = " ".join(f"word{i}" for i in range(30))
    assert pseudo_query(f"Pump maintenance guide\n\n{body}", first_chunk=True) == ("Pump maintenance guide", body)
    assert pseudo_query(f"intro text\n## Cleaning the filter\n{body}", first_chunk=False) == ("Cleaning the filter", body)
    sentence = "The filter must be cleaned every week in summer."
    assert pseudo_query(f"{sentence} {body}.", first_chunk=False) == (sentence, body + ".")
    assert pseudo_query("too short.", first_chunk=True) is None


def test_cold_start_without_clicks_trains_but_offers_nothing(open_engine, docs):
    body = " ".join(f"detail{i}" for i in range(25))
    for i in range(60):
        write(docs / f"doc{i:02}.md", f"# Procedure {i} for the pump\n\n{body} number {i}.")
    e = open_engine()
    e.add_folder(docs)
    e.index()
    summary = finetune_summary(e, TrainOptions(cold_start=True))
    assert summary.enough and "no search with an opened result exists yet" in summary.message
    trainer = FakeTrainer()
    result = run_finetune(e, TrainOptions(cold_start=True), trainer=trainer)
    assert result.method == "cold-start"
    assert trainer.embedder_rows and all(r.query.startswith("Procedure") for r in trainer.embedder_rows)
    assert not result.improved and result.embedder is None and result.reranker is None
    assert result.verdict.startswith("Nothing could be measured")
    assert folders(e) == []


def test_cold_start_is_checked_on_the_clicks(engine):
    click_topics(engine)
    trainer = FakeTrainer()
    result = run_finetune(engine, TrainOptions(cold_start=True, train_reranker=False), trainer=trainer)
    assert result.heldout_queries == TOPICS  # every searched query checks it; none is trained on
    assert result.embedder is not None  # the fake "trained" model knows the synonyms
    assert not any("qterm" in r.query for r in trainer.embedder_rows)


# -- the command line ----------------------------------------------------------------------------


@pytest.fixture
def cli_engine(engine, monkeypatch, capsys):
    """`sift …` over the test's engine (fake models), training with the fake trainer."""
    from engine import cli

    monkeypatch.setattr(Engine, "open", staticmethod(lambda home=None, **kw: engine))
    monkeypatch.setattr(engine, "close", lambda: None)
    monkeypatch.setattr(finetune.run, "SentenceTransformersTrainer", FakeTrainer)

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_summary_and_refusal(cli_engine, engine):
    click_topics(engine, range(5))
    code, out, _ = cli_engine("finetune")
    assert code == 0 and "5 pairs from 5 searches; about" in out
    code, out, _ = cli_engine("finetune", "--json")
    assert code == 0 and '"enough": false' in out and '"pairs": 5' in out
    code, _, err = cli_engine("finetune", "--train")
    assert code == 1 and "more searches with an opened result are needed" in err
    code, _, err = cli_engine("finetune", "--train", "--epochs", "0")
    assert code == 1 and "epochs must be between 1 and 100" in err


def test_cli_trains_shows_before_after_and_adopts(cli_engine, engine, small_minimums):
    click_topics(engine)
    code, out, _ = cli_engine("finetune", "--train", "--no-reranker", "--json")
    assert code == 0 and '"embedder": "' in out and '"adopted": []' in out
    assert engine.config.model == BUNDLED_MODEL
    code, out, err = cli_engine("finetune", "--train", "--adopt")
    assert code == 0, err
    assert "held-out" in out and "pipeline ndcg@10" in out and "dense recall@5" in out
    assert "Search model offered" in out and "Adopted sift-ft-" in out
    assert any(line.startswith("training: ") and "Training the search model: step" in line
               for line in err.splitlines())
    assert engine.config.model.startswith(str(embedders_dir(engine.paths)))
    assert engine.config.reranker.startswith(str(rerankers_dir(engine.paths)))


class BarMiningTrainer(FakeTrainer):
    """Mines as sentence-transformers does: batch by batch under a tqdm bar (to stderr, were it not caught)."""

    def __init__(self, *, stop_after: int, cancel: threading.Event) -> None:
        super().__init__(cancel=cancel)
        self.stop_after, self.batches, self.trained = stop_after, 0, False

    def mine_negatives(self, **kw):
        from tqdm import trange

        for _ in trange(0, 100, 1, desc="Batches"):
            self.batches += 1
            if self.batches == self.stop_after:
                self.cancel.set()  # the user presses Stop while the corpus is embedded
        return super().mine_negatives(**kw)

    def train_embedder(self, **kw):
        self.trained = True
        return super().train_embedder(**kw)


def test_mining_reports_the_librarys_batches_and_stop_ends_it_between_two(engine, small_minimums, capsys):
    """Issue 19 item 4: the bar follows sentence-transformers' own progress; Stop interrupts it, starts nothing."""
    click_topics(engine)
    cancel = threading.Event()
    trainer = BarMiningTrainer(stop_after=3, cancel=cancel)
    seen: list[FinetuneProgress] = []
    with pytest.raises(Cancelled):
        run_finetune(engine, TrainOptions(), cancel=cancel, trainer=trainer, on_progress=seen.append)
    assert trainer.batches == 3 and not trainer.trained
    mining = [p for p in seen if p.stage == "mining" and p.total == 100]
    assert [p.done for p in mining] == [0, 1, 2, 3]
    assert mining[-1].message == "Embedding passages: 3 of 100"
    assert seen[-1].stage == "mining"  # nothing after Stop
    assert "Batches" not in capsys.readouterr().err
    assert folders(engine) == []
