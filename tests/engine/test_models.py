"""Models as folders: cards, the list, prepare in the background, atomic switch, one-step rollback."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from datetime import datetime

import numpy as np
import pytest

import engine.engine as engine_module
from engine.config import BUNDLED_MODEL
from engine.embed import FakeEmbedder
from engine.engine import Engine
from engine.errors import Cancelled, ModelError, SiftError
from engine.models import (
    CARD_FILE,
    NO_RERANKER,
    ModelCard,
    embedders_dir,
    load_card,
    model_name,
    new_model_name,
    rerankers_dir,
    save_card,
)
from engine.service import start_service
from tests.helpers import Engines, wait_for, write

CAR_DOC = "The automobile engine needs its oil changed every spring before the long trips."
DOCS = {
    "automobile.txt": CAR_DOC,
    "coffee.txt": "The espresso machine needs descaling every month to remove mineral deposits.",
    "bike.md": "Road bike tyres should be inflated to the pressure printed on the sidewall.",
    "copy of coffee.txt": "The espresso machine needs descaling every month to remove mineral deposits.",
}


class VocabEmbedder(FakeEmbedder):
    """A fake whose model has learned synonyms (a fine-tuned model, in miniature); its own model
    id and vector size, so a search mixing two models fails loudly instead of passing unnoticed."""

    def __init__(self, model_id: str, *, ndim: int = 64, synonyms: dict[str, str] | None = None,
                 delay_s: float = 0.0) -> None:
        super().__init__(ndim=ndim, model_id=model_id)
        self.synonyms = synonyms or {}
        self.delay_s = delay_s
        self.queries = 0

    def _vector(self, text: str) -> np.ndarray:
        for word, meaning in self.synonyms.items():
            text = re.sub(rf"\b{word}\b", meaning, text, flags=re.IGNORECASE)
        return super()._vector(text)

    def embed_documents(self, texts):
        if self.delay_s:
            time.sleep(self.delay_s)  # a model slow enough that searches interleave with the prepare
        return super().embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        self.queries += 1
        return super().embed_query(text)


@pytest.fixture
def fakes() -> dict[str, VocabEmbedder]:
    return {BUNDLED_MODEL: VocabEmbedder("fake@a"),
            "model-b": VocabEmbedder("fake@b", ndim=48, synonyms={"automobile": "car"}),
            "model-c": VocabEmbedder("fake@c", ndim=32)}


@pytest.fixture
def open_engine(home, fakes):

    def factory(value: str) -> FakeEmbedder:
        if value not in fakes:
            raise ModelError(f"no such model {value!r}")
        return fakes[value]

    make = Engines(home, embedder_factory=factory)
    yield make
    make.close()


@pytest.fixture
def engine(open_engine, docs):
    for name, text in DOCS.items():
        write(docs / name, text)
    for i in range(30):
        write(docs / "notes" / f"note{i:02}.txt", f"Garden note {i}: tomatoes, beans and compost heap number {i}.")
    return open_engine.indexed(docs)


def car_score(e: Engine) -> float:
    """How close the automobile document is to the query "car": only model-b knows they mean the same."""
    hits = e.search("car", mode="dense", limit=50)
    return next((h.score for h in hits if h.path.endswith("automobile.txt")), 0.0)


def consistent(e: Engine) -> bool:
    return set(e.vectors().keys().tolist()) == set(e.catalog.chunk_ids().tolist())


def texts(e: Engine) -> int:
    return len({row.text_hash for row in e.catalog.chunks_by_id(e.catalog.chunk_ids().tolist()).values()})


def card(**changes) -> ModelCard:
    base = ModelCard(kind="embedder", base=BUNDLED_MODEL, created="2026-11-27T23:30:00+00:00", method="clicks",
                     pairs=240, train_seconds=61.5,
                     before={"dense": {"ndcg@10": 0.41, "recall@5": 0.5}, "pipeline": {"ndcg@10": 0.47}},
                     after={"dense": {"ndcg@10": 0.46, "recall@5": 0.56}, "pipeline": {"ndcg@10": 0.5}},
                     heldout_queries=30)
    return dataclasses.replace(base, **changes)


# -- cards and the list ----------------------------------------------------------------------------


def test_card_round_trip_and_bad_cards_read_as_none(tmp_path):
    folder = tmp_path / "sift-ft-20261127-2330"
    save_card(folder, card())
    assert load_card(folder) == card()
    assert json.loads((folder / CARD_FILE).read_text())["after"]["dense"]["recall@5"] == 0.56
    assert load_card(tmp_path / "nowhere") is None
    for bad in ("{not json", "[1, 2]", '{"kind": "embedder"}', '{"kind": "llm", "method": "clicks"}',
                '{"kind": "reranker", "method": "clicks", "pairs": "many"}'):
        (folder / CARD_FILE).write_text(bad)
        assert load_card(folder) is None, bad


def test_new_model_names_are_dated_and_never_collide(tmp_path):
    now = datetime(2026, 11, 27, 23, 30)
    assert new_model_name(tmp_path, now) == "sift-ft-20261127-2330"
    (tmp_path / "sift-ft-20261127-2330").mkdir()
    assert new_model_name(tmp_path, now) == "sift-ft-20261127-2330-2"


def test_models_lists_bundled_folders_and_configured_ones(open_engine, tmp_path):
    e = open_engine()
    tuned = embedders_dir(e.paths) / "sift-ft-20261127-2330"
    save_card(tuned, card())
    reranker = rerankers_dir(e.paths) / "ms-marco"
    reranker.mkdir(parents=True)
    elsewhere = tmp_path / "my-reranker"
    elsewhere.mkdir()
    e.update_config(reranker=str(elsewhere))
    by_name = {m.name: m for m in e.models()}
    assert set(by_name) == {"all-MiniLM-L6-v2", tuned.name, "ms-marco", "my-reranker"}
    bundled = by_name["all-MiniLM-L6-v2"]
    assert (bundled.kind, bundled.value, bundled.active, bundled.previous, bundled.card) == (
        "embedder", BUNDLED_MODEL, True, False, None)
    assert by_name[tuned.name].card == card() and by_name[tuned.name].value == str(tuned.resolve())
    assert by_name["my-reranker"].active and by_name["my-reranker"].kind == "reranker"
    assert not by_name["ms-marco"].active
    assert e.models()[0].name == "all-MiniLM-L6-v2", "the active embedder comes first"


# -- prepare, adopt, roll back ---------------------------------------------------------------------


def test_prepare_builds_the_new_index_without_changing_search(engine, fakes):
    before = [(h.path, round(h.score, 6)) for h in engine.search("espresso descaling")]
    car_before = car_score(engine)
    seen: list[tuple[int, int]] = []
    index = engine.prepare_model("model-b", on_progress=lambda done, total: seen.append((done, total)))
    assert len(index) == engine.catalog.chunk_count() and index.ndim == 48
    assert seen[0] == (0, texts(engine)) and seen[-1] == (texts(engine), texts(engine))
    assert fakes["model-b"].texts_embedded == texts(engine) < engine.catalog.chunk_count(), "each text once"
    assert engine.catalog.count_texts_missing_vectors("fake@b") == 0
    assert (engine.paths.index_dir / "fake@b.i8.usearch").exists(), "the new index is saved beside the old one"
    # Still the old model, same results.
    assert engine.config.model == BUNDLED_MODEL and engine.embedder is fakes[BUNDLED_MODEL]
    assert [(h.path, round(h.score, 6)) for h in engine.search("espresso descaling")] == before
    assert car_score(engine) == car_before


def test_adopt_switches_and_rollback_needs_no_embedding(engine, fakes):
    a, b = fakes[BUNDLED_MODEL], fakes["model-b"]
    assert car_score(engine) < 0.05
    engine.adopt_model("model-b")
    assert engine.config.model == "model-b" and engine.config.previous_model == BUNDLED_MODEL
    assert engine.embedder is b and engine.vectors().ndim == 48 and consistent(engine)
    assert car_score(engine) > 0.2, "the new model's vocabulary now serves searches"

    embedded = (a.texts_embedded, b.texts_embedded)
    assert engine.rollback_model() == BUNDLED_MODEL
    assert engine.embedder is a and engine.vectors().ndim == 64 and consistent(engine)
    assert engine.config.previous_model == "model-b"
    assert car_score(engine) < 0.05
    assert engine.rollback_model() == "model-b", "rolling back again returns to the new model"
    assert car_score(engine) > 0.2
    assert (a.texts_embedded, b.texts_embedded) == embedded, "no text was embedded again"


def test_the_switch_survives_a_restart(engine, open_engine, fakes):
    engine.adopt_model("model-b")
    engine.close()
    again = open_engine()
    assert again.config.model == "model-b" and again.config.previous_model == BUNDLED_MODEL
    assert car_score(again) > 0.2 and consistent(again)
    assert again.rollback_model() == BUNDLED_MODEL and car_score(again) < 0.05


def test_search_keeps_working_from_another_thread_throughout(engine, fakes, monkeypatch):
    monkeypatch.setattr(engine_module, "BATCH_CHUNKS", 4)  # many small batches, each a moment long
    fakes["model-b"].delay_s = 0.01
    errors: list[BaseException] = []
    empty: list[str] = []
    searches = [0]
    stop = threading.Event()

    def search_loop() -> None:
        try:
            while not stop.is_set():
                for mode in ("dense", "hybrid"):
                    if not engine.search("espresso machine descaling", mode=mode):
                        empty.append(mode)
                searches[0] += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
        finally:
            engine.catalog.close()  # this thread's connection

    thread = threading.Thread(target=search_loop)
    thread.start()
    try:
        assert wait_for(lambda: searches[0] >= 3)
        engine.adopt_model("model-b")
        queries = fakes["model-b"].queries
        assert wait_for(lambda: fakes["model-b"].queries > queries + 3), "searches go on with the new model"
        engine.rollback_model()
        queries = fakes[BUNDLED_MODEL].queries
        assert wait_for(lambda: fakes[BUNDLED_MODEL].queries > queries + 3)
        engine.rollback_model()
        queries = fakes["model-b"].queries
        assert wait_for(lambda: fakes["model-b"].queries > queries + 3)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert errors == [] and empty == []
    assert fakes["model-b"].queries > 0 and fakes[BUNDLED_MODEL].queries > 0


def test_chunks_indexed_during_the_prepare_reach_the_new_index(engine, docs, fakes):
    added = []

    def meanwhile(done: int, total: int) -> None:
        if done and not added:  # the old model indexes a new file while the new one embeds
            write(docs / "van.txt", "A delivery automobile parked by the bakery.")
            added.append(engine.index())

    engine.adopt_model("model-b", on_progress=meanwhile)
    assert added and added[0].added == 1
    assert engine.catalog.count_texts_missing_vectors("fake@b") == 0 and consistent(engine)
    assert {h.path.rsplit("/", 1)[-1] for h in engine.search("car", mode="dense", limit=2)} == {
        "automobile.txt", "van.txt"}


def test_the_background_service_follows_the_switch(engine, docs, fakes):
    service = start_service(engine, watch=False, low_priority=False, quiet_s=0.1, max_wait_s=1.0, root_check_s=0.2,
                                   retry_s=0.2)
    try:
        assert service.wait_idle(30)
        engine.adopt_model("model-b")
        write(docs / "van.txt", "A delivery automobile parked by the bakery.")
        service.rescan()
        assert wait_for(lambda: engine.catalog.file(str(docs / "van.txt")) is not None)
        assert service.wait_idle(30) and consistent(engine)
        assert engine.catalog.count_texts_missing_vectors("fake@b") == 0, "indexed with the new model"
        assert engine.catalog.count_texts_missing_vectors("fake@a") == 1, "and not with the old one"
        # Rolling back embeds only what was indexed since the switch.
        embedded = fakes[BUNDLED_MODEL].texts_embedded
        engine.rollback_model()
        assert fakes[BUNDLED_MODEL].texts_embedded == embedded + 1 and consistent(engine)
    finally:
        engine.stop_service()


def test_cancel_leaves_the_old_model_and_a_resumable_cache(engine, open_engine, fakes, monkeypatch):
    monkeypatch.setattr(engine_module, "BATCH_CHUNKS", 8)
    total = texts(engine)
    cancel = threading.Event()

    def stop_after_two_batches(done: int, _total: int) -> None:
        if done >= 16:
            cancel.set()

    with pytest.raises(Cancelled):
        engine.adopt_model("model-b", on_progress=stop_after_two_batches, cancel=cancel)
    assert engine.config.model == BUNDLED_MODEL and engine.config.previous_model == ""
    assert engine.embedder is fakes[BUNDLED_MODEL] and engine.search("espresso") and consistent(engine)
    done = fakes["model-b"].texts_embedded
    assert 16 <= done < total
    assert engine.catalog.count_texts_missing_vectors("fake@b") == total - done, "committed batches are kept"

    # A crash-like restart: a new engine over the same home, the old one never closed.
    again = open_engine()
    assert again.config.model == BUNDLED_MODEL and again.search("espresso") and consistent(again)
    again.adopt_model("model-b")
    assert fakes["model-b"].texts_embedded == total, "the retry embedded only what was left"
    assert car_score(again) > 0.2


def test_previous_vectors_survive_pruning_and_others_go(engine, docs, fakes):
    engine.prepare_model("model-c")  # a candidate that is never adopted
    engine.adopt_model("model-b")
    assert set(engine.catalog.model_ids()) == {"fake@a", "fake@b"}, "model-c is neither active nor previous"
    assert not (engine.paths.index_dir / "fake@c.i8.usearch").exists()
    # Pruning after files go (a full run, a removed folder) keeps both models' vectors of live texts.
    (docs / "bike.md").unlink()
    engine.index()
    with engine.catalog.transaction() as conn:
        engine.catalog.prune_embeddings(conn)
    assert engine.catalog.count_texts_missing_vectors("fake@a") == 0
    assert engine.catalog.count_texts_missing_vectors("fake@b") == 0
    embedded = fakes[BUNDLED_MODEL].texts_embedded
    engine.rollback_model()
    assert fakes[BUNDLED_MODEL].texts_embedded == embedded and consistent(engine)


def test_adopting_a_folder_marks_its_card(open_engine, fakes, docs):
    e = open_engine()
    folder = embedders_dir(e.paths) / "sift-ft-20261127-2330"
    save_card(folder, card())
    fakes[str(folder.resolve())] = fakes.pop("model-b")
    write(docs / "a.txt", CAR_DOC)
    e.add_folder(docs)
    e.index()
    e.adopt_model(str(folder))
    assert e.config.model == str(folder.resolve()) and load_card(folder).adopted
    info = {m.name: m for m in e.models()}
    assert info[folder.name].active and info["all-MiniLM-L6-v2"].previous
    e.adopt_model(str(folder))  # already active: nothing to do
    assert e.config.previous_model == BUNDLED_MODEL


def test_bad_requests_say_what_is_wrong(engine):
    with pytest.raises(SiftError, match="no previous model"):
        engine.rollback_model()
    with pytest.raises(ModelError):
        engine.adopt_model("no-such-model")
    assert engine.config.model == BUNDLED_MODEL and engine.search("espresso")
    with pytest.raises(SiftError, match="no previous reranker"):
        engine.rollback_reranker()
    with pytest.raises(ModelError, match="does not exist"):
        engine.adopt_reranker("/no/such/folder")


def test_changing_the_model_in_settings_can_be_rolled_back(engine):
    engine.update_config(model="model-b")
    assert engine.config.previous_model == BUNDLED_MODEL
    engine.index()
    assert car_score(engine) > 0.2
    assert engine.rollback_model() == BUNDLED_MODEL and car_score(engine) < 0.05


# -- rerankers --------------------------------------------------------------------------------------


def fake_cross_encoder(folder):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"not really weights")
    return folder


def test_adopt_and_roll_back_rerankers(open_engine, tmp_path):
    e = open_engine()
    first = fake_cross_encoder(rerankers_dir(e.paths) / "sift-ft-20261127-2330")
    save_card(first, card(kind="reranker"))
    second = fake_cross_encoder(tmp_path / "other-reranker")

    e.adopt_reranker(str(first))
    assert e.config.reranker == str(first.resolve()) and e.config.previous_reranker == NO_RERANKER
    assert e.config.use_reranker and load_card(first).adopted
    assert e.reranker().folder == first.resolve()
    e.adopt_reranker(str(second))
    assert e.config.previous_reranker == str(first.resolve()) and e.reranker().folder == second.resolve()
    assert e.rollback_reranker() == str(first.resolve()) and e.reranker().folder == first.resolve()
    assert e.rollback_reranker() == str(second.resolve())
    e.update_config(reranker="")  # what uninstalling does
    assert e.rollback_reranker() == str(second.resolve())
    assert e.rollback_reranker() == "" and e.reranker() is None
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="safetensors"):
        e.adopt_reranker(str(tmp_path / "empty"))


# -- the command line -------------------------------------------------------------------------------


@pytest.fixture
def sift(monkeypatch, capsys, fakes, docs):
    """`sift("models", "use", "model-b")` → (exit code, stdout, stderr), every Engine on the fakes."""
    from engine import cli

    real_open = Engine.open

    def factory(value: str) -> FakeEmbedder:
        if value not in fakes:
            raise ModelError(f"The model {value!r} is not a folder on this computer.")
        return fakes[value]

    def open_with_fakes(home=None, **kw):
        e = real_open(home, embedder_factory=factory)
        e.update_config(parse_workers=0)
        return e

    monkeypatch.setattr(Engine, "open", staticmethod(open_with_fakes))

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    write(docs / "automobile.txt", CAR_DOC)
    assert run("add-folder", str(docs))[0] == 0 and run("index", "-q")[0] == 0
    return run


def test_cli_lists_switches_and_rolls_back(sift, home):
    paths = Engine.open(home).paths
    tuned = embedders_dir(paths) / "sift-ft-20261127-2330"
    save_card(tuned, card())
    code, out, _ = sift("models")
    assert code == 0
    assert "* all-MiniLM-L6-v2" in out and "active" in out and tuned.name in out
    assert "held-out dense (30 queries): ndcg@10 0.410 → 0.460, recall@5 0.500 → 0.560" in out

    code, out, err = sift("models", "use", "model-b", "--json")
    assert code == 0 and json.loads(out) == {"kind": "embedder", "active": "model-b", "previous": BUNDLED_MODEL}
    assert "passages" in err
    code, out, _ = sift("models", "--json")
    listed = {m["name"]: m for m in json.loads(out)}
    assert listed["model-b"]["active"] and listed["all-MiniLM-L6-v2"]["previous"]
    assert listed[tuned.name]["card"]["after"]["pipeline"]["ndcg@10"] == 0.5
    code, out, _ = sift("models", "rollback")
    assert code == 0 and out.startswith("Search now uses all-MiniLM-L6-v2")


def test_cli_rerankers_and_bad_requests(sift, home):
    paths = Engine.open(home).paths
    reranker = fake_cross_encoder(rerankers_dir(paths) / "ms-marco")
    code, out, _ = sift("models", "use", "ms-marco", "--json")
    assert code == 0 and json.loads(out) == {"kind": "reranker", "active": str(reranker.resolve()),
                                             "previous": NO_RERANKER}
    code, out, _ = sift("models", "rollback", "--reranker")
    assert code == 0 and "no reranker" in out
    code, _, err = sift("models", "rollback")
    assert code == 1 and "no previous model" in err
    code, _, err = sift("models", "use", "no-such-model")
    assert code == 1 and "not a folder" in err


def test_one_rule_names_a_model_setting_for_the_cli_and_the_window(tmp_path):
    assert model_name("bundled:all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"
    assert model_name("bundled:all-MiniLM-L6-v2", mark_bundled=True) == "all-MiniLM-L6-v2 (bundled)"
    assert model_name(str(tmp_path / "sift-ft-20261127-2330") + "/") == "sift-ft-20261127-2330"
    assert model_name(NO_RERANKER) == "no reranker" and model_name("") == "none"
