"""Instant learning from opened results: lift, learning off, caps, decay, forgetting, FTS5 safety, tuning."""

from __future__ import annotations

import random
import time

import pytest

from bench.finetune_lift import MAX_OPENS, realistic_opens
from engine import learn, search
from engine.catalog import ChunkFilter
from engine.search import STOPWORDS
from tests.helpers import write

TOPICS = {
    "boiler.txt": "Servicing the gas boiler: bleed the radiators, check the pressure gauge, relight the pilot.",
    "espresso.txt": "Descaling the espresso machine with citric acid removes limescale from the boiler.",
    "bike.txt": "Road bike tyre pressure depends on rider weight and tyre width; pump before each ride.",
    "garden.txt": "Tomatoes need staking, regular watering and a sunny spot in the garden.",
    "taxes.txt": "The tax return is due in January; keep receipts for the home office deduction.",
    "birds.txt": "Migrating birds navigate by the stars, the sun and the earth's magnetic field.",
}


def _engine(make_engine, docs, **config):
    for name, text in TOPICS.items():
        write(docs / name, text)
    engine = make_engine(**config)
    engine.add_folder(docs)
    engine.index()
    return engine


def _paths(hits):
    return [h.path.rsplit("/", 1)[-1] for h in hits]


def test_the_realistic_user_is_deterministic_for_a_seed_and_keeps_to_what_it_sees():
    shown = [f"d{i}" for i in range(1, 11)]
    relevant = {"d1", "d2", "d4", "d6", "d9", "d30"}
    draws = [realistic_opens(shown, relevant, random.Random(f"42:q{n}")) for n in range(200)]
    assert draws == [realistic_opens(shown, relevant, random.Random(f"42:q{n}")) for n in range(200)]
    assert draws != [realistic_opens(shown, relevant, random.Random(f"43:q{n}")) for n in range(200)]
    for opens in draws:
        right = [r for r in opens if shown[r - 1] in relevant]
        wrong = [r for r in opens if shown[r - 1] not in relevant]
        assert len(right) <= MAX_OPENS and len(wrong) <= 1 and all(r <= 5 for r in wrong)
        assert all(1 <= r <= 10 for r in opens)
    # Rank matters: the top three are opened more often than ranks 4-10, and some searches open a wrong one.
    top = sum(1 for o in draws for r in o if r <= 3 and shown[r - 1] in relevant)
    assert top / (2 * len(draws)) > 0.8
    assert 0.1 < sum(1 for o in draws if any(shown[r - 1] not in relevant for r in o)) / len(draws) < 0.3


def test_an_open_lifts_the_passage_for_that_query_and_its_rewrites_at_once(make_engine, docs):
    engine = _engine(make_engine, docs)
    query = "pressure check before winter"
    hits = engine.search(query)
    target = next(h for h in hits if h.path.endswith("boiler.txt"))
    rank = hits.index(target) + 1
    engine.record_click(query, target, rank=rank, shown=hits)
    assert _paths(engine.search(query))[0] == "boiler.txt"
    assert _paths(engine.search("winter check pressure"))[0] == "boiler.txt"
    why = engine.search(query)[0].why
    assert why.learned_score and why.learned_score > 0.5


def test_learning_off_and_nothing_learned_give_exactly_the_unlearned_ranking(make_engine, docs):
    engine = _engine(make_engine, docs)
    queries = ["pressure", "boiler limescale", "birds stars", "tax deduction receipts", '"tyre pressure" -garden']
    unlearned = {q: engine.search_detailed(q).hits for q in queries}
    engine.update_config(learn_from_clicks=False)
    assert {q: engine.search_detailed(q).hits for q in queries} == unlearned
    engine.update_config(learn_from_clicks=True)
    for q in queries:
        hits = engine.search(q)
        engine.record_click(q, hits[-1], rank=len(hits), shown=hits)
    assert {q: engine.search_detailed(q).hits for q in queries} != unlearned  # it did learn
    engine.update_config(learn_from_clicks=False)
    assert {q: engine.search_detailed(q).hits for q in queries} == unlearned



def _sql(engine, query: str) -> list[tuple]:
    """Rows of learn's own tables, which these tests check (read in a transaction of the catalog's)."""
    with engine.catalog.transaction() as conn:
        return conn.execute(query).fetchall()

def test_a_passage_keeps_its_latest_queries_and_old_opens_fade(make_engine, docs):
    engine = _engine(make_engine, docs)
    hits = engine.search("garden tomatoes")
    garden = next(h for h in hits if h.path.endswith("garden.txt"))
    for n in range(learn.LEARNED_PER_PASSAGE + 5):
        engine.record_click(f"question number{n}", garden, rank=1, shown=hits)
    rows = _sql(engine, "SELECT query FROM learned ORDER BY at")
    assert len(rows) == learn.LEARNED_PER_PASSAGE
    assert rows[-1][0] == f"question number{learn.LEARNED_PER_PASSAGE + 4}"  # the oldest went
    now = time.time()
    assert abs(learn.age_weight(now - learn.HALF_LIFE_DAYS * 86_400, now) - 0.5) < 1e-9

    query = "stars sun"
    hits = engine.search(query)
    row = engine.catalog.file(str(docs / "taxes.txt"))
    text_hash = next(iter(engine.catalog.chunks_by_id(engine.catalog.chunk_ids_of_file(row.id)).values())).text_hash
    with engine.catalog.transaction() as conn:  # opened for this query three years ago: faded out
        learn.record(conn, file_id=row.id, text_hash=text_hash, query=query, at=time.time() - 3 * 365 * 86_400,
                     vector=engine.embedder.embed_query(query), model_id=engine.embedder.model_id)
    assert engine.search(query) == hits


def test_marking_an_open_wrong_forgets_it(make_engine, docs):
    engine = _engine(make_engine, docs)
    query = "pressure check before winter"
    hits = engine.search(query)
    bike = next(h for h in hits if h.path.endswith("bike.txt"))
    engine.record_click(query, bike, rank=hits.index(bike) + 1, shown=hits)
    assert _paths(engine.search(query))[0] == "bike.txt"
    engine.mark_wrong(query, bike)
    assert _sql(engine, "SELECT count(*) FROM learned")[0][0] == 0
    assert engine.catalog.clicks() == []
    assert _paths(engine.search(query)) == _paths(hits)


def _raw(engine) -> bytes:
    return b"".join(p.read_bytes() for p in engine.paths.data.rglob("*") if p.is_file())


def test_removing_a_file_or_folder_forgets_its_learned_text_and_vectors(make_engine, docs, tmp_path):
    engine = _engine(make_engine, docs)
    other = tmp_path / "other"
    write(other / "recipes.txt", "Bake the bread at a high heat with steam for a crisp crust.")
    engine.add_folder(other)
    engine.index()
    for query, name in (("quokkaholiday boiler", "boiler.txt"), ("zanzibarloaf bread", "recipes.txt")):
        hits = engine.search(query)
        hit = next(h for h in hits if h.path.endswith(name))
        engine.record_click(query, hit, rank=1, shown=hits)
    count = lambda table: _sql(engine, f"SELECT count(*) FROM {table}")[0][0]  # noqa: E731
    assert count("learned") == 2 and count("learned_vectors") == 2
    assert b"quokkaholiday" in _raw(engine) and b"zanzibarloaf" in _raw(engine)

    (docs / "boiler.txt").unlink()  # a file deleted: its learned words and vectors go with it
    engine.index()
    assert count("learned") == 1 and count("learned_vectors") == 1
    assert _sql(engine, "SELECT count(*) FROM learned_fts WHERE learned_fts MATCH 'quokkaholiday'")[0][0] == 0

    engine.remove_folder(other)  # a folder removed: nothing of it is left in the data files
    assert count("learned") == 0 and count("learned_vectors") == 0
    assert b"zanzibarloaf" not in _raw(engine)


def test_an_edited_passage_forgets_what_it_learned(make_engine, docs):
    engine = _engine(make_engine, docs)
    hits = engine.search("migrating birds")
    birds = next(h for h in hits if h.path.endswith("birds.txt"))
    engine.record_click("migrating birds", birds, rank=1, shown=hits)
    write(docs / "birds.txt", "Swifts sleep on the wing.")
    engine.index()
    assert _sql(engine, "SELECT count(*) FROM learned")[0][0] == 0


def test_history_clear_forgets_every_open_and_all_learned(run_cli, make_engine, docs, home):
    engine = _engine(make_engine, docs)
    hits = engine.search("quokkaholiday tyre")
    engine.record_click("quokkaholiday tyre", hits[0], rank=1, shown=hits)
    engine.close()
    code, out, _ = run_cli("history")
    assert code == 0 and "1 opened results; 1 searches learned on 1 passages" in out
    code, out, _ = run_cli("history", "clear")
    assert code == 0 and "Forgot" in out
    engine = make_engine()
    assert engine.catalog.clicks() == []
    assert _sql(engine, "SELECT count(*) FROM learned")[0][0] == 0
    assert b"quokkaholiday" not in _raw(engine)


def test_the_learned_column_cannot_inject_fts5_syntax(make_engine, docs):
    engine = _engine(make_engine, docs)
    nasty = ['boiler" OR "garden', "learned_fts:* OR x", "NEAR(boiler garden, 2)", "boil* ^pressure", '"', "AND OR NOT"]
    hits = engine.search("boiler pressure")
    for query in nasty:
        engine.record_click(query, hits[0], rank=1, shown=hits)
    stored = [r[0] for r in _sql(engine, "SELECT query FROM learned")]
    assert 'boiler" OR "garden' in stored  # kept as text, never as an expression
    for query in nasty + ["garden", "learned_fts", "boil"]:
        engine.search(query)  # no FTS5 syntax error
    source = learn.Learned(engine.catalog, learn.LearnWeights(keyword_share=1.0))
    # Learned words match as words: "garden" (inside the first query) matches, "boil*" "boi*" is no prefix search.
    assert source.passages(terms=["garden"], q=None, embedder=engine.embedder, where=ChunkFilter())
    assert source.passages(terms=["boi*"], q=None, embedder=engine.embedder, where=ChunkFilter()) == []


def test_old_opens_are_learned_when_the_catalog_is_upgraded(home, fake_embedder):
    import sqlite3

    from engine.catalog import _MIGRATIONS, Catalog, _split_sql

    home.mkdir(parents=True, exist_ok=True)
    path = home / "old.sqlite3"
    conn = sqlite3.connect(path)
    for step in _MIGRATIONS[:2]:
        for statement in _split_sql(step):
            conn.execute(statement)
    conn.execute("INSERT INTO files(id, path, size, mtime_ns, status) VALUES (1, x'2f61', 1, 1, 'indexed')")
    conn.execute("""INSERT INTO chunks(id, file_id, ordinal, start, "end", token_count, text_hash, text)
                    VALUES (5, 1, 0, 0, 4, 1, 'h', 'text')""")
    conn.execute("""INSERT INTO clicks(at, query, chunk_id, text_hash, path, rank, shown)
                    VALUES (1.0, ' Rent Due ', 5, 'h', x'2f61', 1, '[5]')""")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    catalog = Catalog(path)
    assert [tuple(r) for r in catalog.conn.execute("SELECT file_id, text_hash, key, query FROM learned")] == [
        (1, "h", "rent due", "Rent Due")]
    catalog.close()


def test_rewrites_are_deterministic_and_drop_a_third_of_the_content_words():
    text = "what is the effect of the boundary layer on heat transfer in supersonic flow"
    again = learn.rewrite_query(text, seed=42, stopwords=STOPWORDS)
    assert again == learn.rewrite_query(text, seed=42, stopwords=STOPWORDS)
    content = [w for w in text.split() if w not in STOPWORDS]
    assert len(again.split()) == len(content) - len(content) // 3
    assert set(again.split()) < set(content) and "the" not in again.split()


def test_tuning_never_adopts_weights_that_make_new_searches_worse(make_engine, docs):
    engine = _engine(make_engine, docs)
    names = sorted(TOPICS)
    for n in range(learn.MIN_TUNE_QUERIES + 3):
        query = f"topicword{n} item"
        hits = engine.search(names[n % len(names)].removesuffix(".txt"))
        engine.record_click(query, hits[0], rank=1, shown=hits)

    def hurting(weights, exclude):  # any learning at all pushes the right documents out
        def search(text):
            key = learn.normalize_query(text)
            return ["nothing"] if weights.weight > 0 and key in exclude else [p for p in opened.get(key, ())]
        return search

    _, opened = learn.history(engine.catalog)
    report = learn.tune(engine.catalog, hurting, stopwords=STOPWORDS)
    assert report.enough and report.weights.weight == 0.0
    assert report.after["new ndcg@10"] == report.before["new ndcg@10"]
    assert "not used" in report.message
    assert not learn.tune(engine.catalog.__class__(engine.paths.data / "empty.sqlite3"), hurting).enough


def test_new_searches_are_judged_on_what_their_history_showed(make_engine, docs):
    queries, opened, shown = {"q": "boiler"}, {"q": {"a"}}, {"q": {"a", "b"}}
    # "x" was never shown: left out, not counted as wrong; "b" was shown and passed over.
    assert learn.new_query_scores(lambda t: ["x", "a", "b"], queries, opened, shown)["ndcg@10"] == 1.0
    assert learn.new_query_scores(lambda t: ["x", "a", "b"], queries, opened)["ndcg@10"] < 1.0
    assert learn.new_query_scores(lambda t: ["b", "x", "a"], queries, opened, shown)["ndcg@10"] < 1.0
    engine = _engine(make_engine, docs)
    hits = engine.search("gas boiler relight pilot")
    engine.record_click("Gas boiler", hits[1], rank=2, shown=hits[:3])
    assert learn.shown_documents(engine.catalog) == {"gas boiler": {h.path for h in hits[:3]}}


def test_feedback_is_kept_only_when_it_helps_over_the_splits_on_average(make_engine, docs):
    engine = _engine(make_engine, docs)
    names = sorted(TOPICS)
    for n in range(learn.MIN_TUNE_QUERIES + 3):
        hits = engine.search(names[n % len(names)].removesuffix(".txt"))
        engine.record_click(f"topicword{n} item", hits[0], rank=1, shown=hits)
    _, opened = learn.history(engine.catalog)
    shown = learn.shown_documents(engine.catalog)
    first_split: list[frozenset] = []

    def lucky_once(weights, exclude):  # feedback lifts the first split's new searches, sinks the others'
        first_split[:] = first_split or [exclude]

        def search(text):
            key = learn.normalize_query(text)   # a rewritten query asked again: none of the history's keys
            right, passed_over = sorted(opened.get(key, ())), sorted(shown.get(key, set()) - opened.get(key, set()))
            if not weights.feedback or key not in exclude:
                return passed_over[:1] + right + passed_over[1:]
            return right + passed_over if exclude == first_split[0] else passed_over + right
        return search

    report = learn.tune(engine.catalog, lucky_once, stopwords=STOPWORDS)
    fed = [t for t in report.tried if t["feedback"]]
    assert fed and fed[0]["new ndcg@10"] > report.before["new ndcg@10"] + learn.FEEDBACK_MIN_GAIN
    assert not report.weights.feedback


def test_engine_tuning_measures_held_out_searches_and_keeps_the_weights(make_engine, docs):
    engine = _engine(make_engine, docs)
    names = sorted(TOPICS)
    for n in range(learn.MIN_TUNE_QUERIES + 3):
        name = names[n % len(names)]
        query = f"{name.removesuffix('.txt')} question {n} about it"
        hits = engine.search(query)
        hit = next((h for h in hits if h.path.endswith(name)), hits[0])
        engine.record_click(query, hit, rank=hits.index(hit) + 1, shown=hits)
    report = engine.tune_learning()
    assert report.enough and report.new_queries == 5 and report.refind_queries == 10
    assert engine.learning_summary().weights == report.weights
    assert report.weights.chosen_on == 15
    assert set(report.before) == set(report.after) == {"new ndcg@10", "new recall@5", "refind mrr@10",
                                                        "refind success@1"}


def test_pseudo_relevance_feedback_widens_the_query_only_when_switched_on(make_engine, docs):
    engine = _engine(make_engine, docs)
    write(docs / "radiator.txt", "Bleed each radiator with a key until water comes out; then the heating works.")
    engine.index()
    plain = engine.search("gas boiler relight pilot")
    engine.set_learning(learn.LearnWeights(weight=0.0, feedback=True))
    widened = engine.search_detailed("gas boiler relight pilot")
    assert "feedback" in widened.timings_ms
    # The boiler note's "bleed the radiators" pulls the radiator note up; the boiler stays first.
    assert _paths(widened.hits)[0] == "boiler.txt"
    assert _paths(widened.hits).index("radiator.txt") <= _paths(plain).index("radiator.txt")
    engine.update_config(learn_from_clicks=False)
    assert engine.search("gas boiler relight pilot") == plain


def test_feedback_keeps_a_share_of_the_first_pass(make_engine, docs, monkeypatch):
    engine = _engine(make_engine, docs)
    write(docs / "radiator.txt", "Bleed each radiator with a key until water comes out; then the heating works.")
    engine.index()
    plain = _paths(engine.search("gas boiler relight pilot"))
    engine.set_learning(learn.LearnWeights(weight=0.0, feedback=True))
    # All of it kept: the widened query can only add documents below the first pass's.
    monkeypatch.setattr(search, "FEEDBACK_KEEP", 1.0)
    assert _paths(engine.search("gas boiler relight pilot"))[:len(plain)] == plain
    fused = {}
    for keep in (0.0, 0.5, 1.0):
        monkeypatch.setattr(search, "FEEDBACK_KEEP", keep)
        fused[keep] = {h.path: h.why.fused_score for h in engine.search("gas boiler relight pilot")}
    # In between, each document's score is the mix of the two passes' (each chunk here is a file).
    assert fused[0.0] != fused[1.0]
    for path in fused[0.5].keys() & fused[0.0].keys() & fused[1.0].keys():
        assert fused[0.5][path] == pytest.approx((fused[0.0][path] + fused[1.0][path]) / 2)
