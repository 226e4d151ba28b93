"""The two-stage search: query syntax, fusion, filters, snippets, grouping, duplicates, reranking."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from engine import catalog, search
from engine.catalog import ChunkFilter, ChunkRow
from engine.rerank import RerankPlan
from engine.errors import SiftError
from engine.search import _Candidate, _fuse, make_snippet, parse_query
from tests.filemaker import make_pdf
from tests.helpers import write

ESPRESSO = "The espresso machine needs descaling every month to remove mineral deposits from the boiler."
BIKE = "Road bike tyres should be inflated to the pressure printed on the sidewall of the tyre."
BIRDS = "Migrating birds navigate using the magnetic field of the earth and the position of the stars."


@pytest.fixture
def engine(make_engine, docs):
    write(docs / "coffee.txt", ESPRESSO)
    write(docs / "bike" / "tyres.md", "# Tyres\n\n" + BIKE)
    write(docs / "birds.html", f"<p>{BIRDS}</p>")
    make_pdf(docs / "manual.pdf", ["Welcome to the Fernhill espresso machine.", "Milk frothing at 65 degrees.",
                                   "Descaling removes mineral deposits. Run the descaling programme monthly."])
    e = make_engine()
    e.add_folder(docs)
    e.index()
    return e


def names(hits):
    return [os.path.basename(h.path) for h in hits]


# query syntax ------------------------------------------------------------------------------------


def test_parse_query_splits_filters_phrases_and_exclusions(tmp_path):
    (tmp_path / "papers").mkdir()
    q = parse_query('"mineral deposits" boiler -vinegar type:pdf,docx in:papers after:2024-01-02 before:2025-01-01',
                    folders_base=[str(tmp_path)])
    assert q.phrases == ("mineral deposits",) and q.excluded == ("vinegar",)
    assert q.text == "mineral deposits boiler" and q.terms == ("mineral", "deposits", "boiler")
    assert q.where.kinds == ("pdf", "docx") and q.where.folders == (str(tmp_path / "papers"),)
    assert q.where.after_ns == 1704153600 * 10**9 and q.where.before_ns == 1735689600 * 10**9
    assert q.fts() == '(("mineral" OR "deposits" OR "boiler") AND "mineral deposits") NOT ("vinegar")'


def test_query_aliases_stopwords_and_bad_dates():
    assert parse_query("type:md notes").where.kinds == ("text",)
    assert parse_query("how do I descale it").fts() == '"descale"'
    assert parse_query("the of").fts() == '"the" OR "of"', "all stopwords: keep them rather than nothing"
    assert parse_query("well-known \"quotes\" and 'apostrophes'").fts()  # never an FTS syntax error
    assert parse_query("heat transfer and the heat of the flow").fts() == '"heat" OR "heat" OR "transfer" OR "flow"', \
        "a word said twice weighs twice in BM25"
    assert parse_query('"exact words" boiler').fts() == '("exact" OR "words" OR "boiler") AND "exact words"'
    literal = parse_query('a "quoted" word -never in:town', literal=True)
    assert not literal.phrases and not literal.excluded and not literal.where
    assert literal.fts() == '"quoted" OR "word" OR "never" OR "town"'
    with pytest.raises(SiftError, match="YYYY-MM-DD"):
        parse_query("after:yesterday")


# fusion ------------------------------------------------------------------------------------------


def test_fusion_adds_each_sides_document_scores_over_its_best(monkeypatch):
    monkeypatch.setattr(search, "DENSE_SHARE", 0.6)
    row = lambda cid, fid: ChunkRow(cid, fid, f"/{fid}", 0, None, 0, 1, "t", "h", "text", 0, None)
    rows = {1: row(1, 100), 2: row(2, 100), 3: row(3, 200), 4: row(4, 300)}
    cands = [_Candidate(1, dense_rank=1, dense_score=0.8), _Candidate(2, keyword_rank=2, keyword_score=2.0),
             _Candidate(3, dense_rank=2, dense_score=0.6, keyword_rank=1, keyword_score=10.0),
             _Candidate(4, dense_rank=3, dense_score=0.2)]
    _fuse(cands, rows)
    doc_a = 0.6 * 0.8 / 0.8 + 0.4 * 2.0 / 10.0    # file 100: best cosine chunk 1, best BM25 chunk 2
    doc_b = 0.6 * 0.6 / 0.8 + 0.4 * 10.0 / 10.0
    doc_c = 0.6 * 0.2 / 0.8                        # BM25 never found it: 0 on that side
    assert cands[0].fused == pytest.approx(doc_a + 1e-3 * 0.6)
    assert cands[1].fused == pytest.approx(doc_a + 1e-3 * 0.4 * 0.2)
    assert cands[2].fused == pytest.approx(doc_b + 1e-3 * doc_b)
    assert cands[3].fused == pytest.approx(doc_c + 1e-3 * doc_c)
    assert cands[2].fused > cands[0].fused, "a clear keyword lead outweighs a close second place in meaning"

    learned = [_Candidate(c.chunk_id, c.dense_rank, c.keyword_rank, dense_score=c.dense_score,
                          keyword_score=c.keyword_score) for c in cands]
    learned[3].learned = 1.0
    _fuse(learned, rows, learned_weight=1.0)
    assert learned[3].fused == pytest.approx(cands[3].fused + 0.5 * (1 + 1e-3)), \
        "weight 1 at a full match is worth a first place on a side (its mean share)"
    assert [c.fused for c in learned[:3]] == [c.fused for c in cands[:3]]


def test_a_lone_keyword_match_beats_passages_merely_alike(monkeypatch):
    """The one note holding a searched-for word, which the dense side did not find: when nothing
    is close in meaning (best cosine below a sure match's), it comes first; when a passage is a
    sure match in meaning, that one does."""
    monkeypatch.setattr(search, "DENSE_SHARE", 0.65)
    row = lambda cid: ChunkRow(cid, cid, f"/{cid}", 0, None, 0, 1, "t", "h", "text", 0, None)
    rows = {i: row(i) for i in range(1, 202)}

    def fused(best_cosine):
        cands = [_Candidate(i, dense_rank=i, dense_score=best_cosine - i / 1000) for i in range(1, 201)]
        cands.append(_Candidate(201, keyword_rank=1, keyword_score=3.2))
        _fuse(cands, rows, sure=0.6)
        return max(cands, key=lambda c: c.fused).chunk_id

    assert fused(0.25) == 201
    assert fused(0.8) == 1


# the pipeline ------------------------------------------------------------------------------------


def test_each_mode_finds_the_obvious_document(engine):
    for mode in ("bm25", "dense", "hybrid", "auto"):
        result = engine.search_detailed("espresso descaling boiler", mode=mode)
        assert names(result.hits)[0] in ("coffee.txt", "manual.pdf"), mode
        assert result.mode == ("hybrid" if mode == "auto" else mode)
    with pytest.raises(SiftError, match="Unknown search mode"):
        engine.search("x y", mode="magic")


def test_hits_carry_why_passages_pages_and_highlights(engine):
    hits = engine.search("descaling programme mineral deposits", mode="hybrid")
    pdf = next(h for h in hits if h.path.endswith("manual.pdf"))
    assert pdf.page == 3 and pdf.kind == "pdf"
    assert pdf.why.dense_rank and pdf.why.keyword_rank and pdf.why.fused_score > 0
    words = {pdf.snippet[s:e].lower() for s, e in pdf.highlights}
    assert {"descaling", "mineral", "deposits"} <= words
    assert 0 < pdf.score <= 1


def test_bm25_mode_needs_the_words(engine):
    assert "birds.html" not in names(engine.search("descaling", mode="bm25"))
    assert names(engine.search("magnetic stars", mode="bm25")) == ["birds.html"]


def test_phrases_and_exclusions(engine):
    assert names(engine.search('"mineral deposits"', mode="bm25")) == ["coffee.txt", "manual.pdf"] or \
        set(names(engine.search('"mineral deposits"', mode="bm25"))) == {"coffee.txt", "manual.pdf"}
    assert "coffee.txt" not in names(engine.search("descaling -boiler", mode="hybrid"))
    assert "manual.pdf" in names(engine.search("descaling -boiler", mode="hybrid"))


def test_a_quoted_phrase_is_a_requirement_on_both_sides(engine):
    for mode in ("hybrid", "dense", "bm25"):
        hits = engine.search('migrating birds "mineral deposits"', mode=mode)
        assert set(names(hits)) == {"coffee.txt", "manual.pdf"}, mode  # not birds.html, the nearest in meaning
    assert engine.search('"deposits mineral"') == [], "the words in that order, or nothing"
    assert names(engine.search('"mineral deposits" -boiler')) == ["manual.pdf"]


def test_filters_apply_inside_stage_one(engine, docs):
    assert names(engine.search("espresso descaling type:pdf")) == ["manual.pdf"]
    assert names(engine.search("tyre pressure in:bike")) == ["tyres.md"]
    assert names(engine.search(f"tyre pressure in:{docs / 'bike'}")) == ["tyres.md"]
    os.utime(docs / "coffee.txt", (1, 1))  # 1970
    engine.index()
    assert "coffee.txt" not in names(engine.search("espresso descaling after:2000-01-01"))
    assert names(engine.search("espresso descaling before:2000-01-01")) == ["coffee.txt"]


def test_filter_only_query_lists_recent_documents(engine, docs):
    os.utime(docs / "manual.pdf", (time.time() + 60, time.time() + 60))
    engine.index()
    result = engine.search_detailed("type:pdf")
    assert names(result.hits) == ["manual.pdf"] and result.mode == "filter"


def test_empty_and_one_character_queries(engine):
    assert engine.search("") == [] and engine.search("   ") == []
    result = engine.search_detailed("x")
    assert result.hits == [] and "two characters" in result.note


def test_duplicates_collapse_into_one_hit(engine, docs):
    write(docs / "copy" / "coffee-copy.txt", ESPRESSO)
    engine.index()
    hits = engine.search("espresso descaling boiler")
    coffee = [h for h in hits if h.path.endswith(("coffee.txt", "coffee-copy.txt"))]
    assert len(coffee) == 1 and len(coffee[0].duplicates) == 1


def test_more_passages_of_the_same_document(make_engine, docs):
    write(docs / "long.md", "\n\n".join(f"Section {i}. The descaling step {i} removes mineral deposits."
                                         for i in range(30)))
    e = make_engine(chunk_tokens=20, chunk_overlap=0)
    e.add_folder(docs)
    e.index()
    [hit] = e.search("descaling mineral deposits")
    assert 1 <= len(hit.passages) <= search.PASSAGES_PER_HIT
    assert all(p.chunk_id != hit.chunk_id for p in hit.passages)


def test_find_similar_leaves_the_source_out(engine, docs):
    hits = engine.similar(str(docs / "coffee.txt"))
    assert "coffee.txt" not in names(hits) and names(hits)[0] == "manual.pdf"
    with pytest.raises(SiftError, match="not indexed.*no such file"):
        engine.similar(str(docs / "nope.txt"))


def test_find_similar_returns_as_many_as_asked_past_a_long_documents_own_passages(make_engine, docs, tmp_path):
    write(docs / "long.md", "\n\n".join(f"Section {i}. Descaling the espresso boiler, step {i}." for i in range(60)))
    for name in ("a", "b", "c", "d"):
        write(docs / f"{name}.txt", f"Espresso notes {name}: descaling the boiler.")
    e = make_engine(chunk_tokens=16, chunk_overlap=0)
    e.add_folder(docs)
    e.index()
    assert len(e.catalog.chunk_ids_of_file(e.catalog.file(str(docs / "long.md")).id)) > 20
    from engine import search as search_module

    search_module.DENSE_DEPTH, old = 20, search_module.DENSE_DEPTH  # fewer than its own passages
    try:
        assert len(e.similar(str(docs / "long.md"), limit=3)) == 3
    finally:
        search_module.DENSE_DEPTH = old


def test_find_similar_on_a_file_not_indexed_says_why(engine, docs, tmp_path):
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("espresso", encoding="utf-8")
    with pytest.raises(SiftError, match="not in a folder Sift searches"):
        engine.similar(str(outside))
    write(docs / ".hidden.txt", "espresso")
    with pytest.raises(SiftError, match="hidden"):
        engine.similar(str(docs / ".hidden.txt"))
    write(docs / "new.txt", "espresso")
    with pytest.raises(SiftError, match="run `sift index`"):
        engine.similar(str(docs / "new.txt"))
    (docs / "broken.pdf").write_bytes(b"not a pdf")
    engine.index()
    with pytest.raises(SiftError, match="could not be read"):
        engine.similar(str(docs / "broken.pdf"))


# snippets ----------------------------------------------------------------------------------------


def test_snippet_centres_on_the_matches_and_spans_are_exact():
    text = ("Filler words about nothing in particular. " * 20 + "Then the descaling of the boiler. "
            + "More filler text here. " * 20)
    snippet, spans = make_snippet(text, parse_query("descale boiler"), width=120)
    assert snippet.startswith("… ") and snippet.endswith(" …") and len(snippet) <= 125
    assert [snippet[s:e] for s, e in spans] == ["descaling", "boiler"]


def test_snippet_collapses_whitespace_and_keeps_phrases():
    snippet, spans = make_snippet("Mineral\n\n   deposits   build up.", parse_query('"mineral deposits"'))
    assert snippet == "Mineral deposits build up."
    assert [snippet[s:e] for s, e in spans] == ["Mineral deposits"]


def test_snippet_without_matches_is_the_start():
    snippet, spans = make_snippet("Semantic match only. " * 30, parse_query("zebra"), width=60)
    assert snippet.startswith("Semantic match only.") and spans == ()


# reranking ---------------------------------------------------------------------------------------


class WordOverlapReranker:
    """A stand-in cross-encoder: scores by the share of query words in the passage."""

    model_id = "overlap@1"

    def __init__(self):
        self.calls = 0

    def plan(self):
        return RerankPlan(depth=30, max_tokens=0)

    def score(self, query, passages, *, max_tokens=None):
        self.calls += 1
        words = set(query.lower().split())
        return np.array([len(words & set(p.lower().replace(".", " ").split())) - 1.5 for p in passages], np.float32)


def test_rerank_orders_by_the_cross_encoder_and_caches(engine, monkeypatch):
    reranker = WordOverlapReranker()
    monkeypatch.setattr(engine, "reranker", lambda: reranker)
    result = engine.search_detailed("migrating birds magnetic", mode="rerank")
    assert result.mode == "rerank" and names(result.hits)[0] == "birds.html"
    assert result.hits[0].why.rerank_score == pytest.approx(1.5)
    assert result.hits[0].score == pytest.approx(1 / (1 + np.exp(-1.5)))
    engine.search("migrating birds magnetic", mode="rerank")
    assert reranker.calls == 1, "scores are cached per (query, chunk)"


def test_without_a_reranker_rerank_mode_falls_back_and_says_so(engine):
    assert not engine.reranker_available
    result = engine.search_detailed("espresso", mode="rerank")
    assert result.mode == "hybrid" and "no reranker" in result.note and result.hits
    assert "none installed" in engine.status().reranker


def test_filter_selectivity_switch(engine, monkeypatch):
    monkeypatch.setattr(search, "EXACT_FILTER_MAX", 0)  # force ANN-then-filter
    assert names(engine.search("espresso descaling type:pdf")) == ["manual.pdf"]
    assert ChunkFilter(kinds=("pdf",)) and not ChunkFilter()


def test_highlights_find_word_forms_without_overreaching():
    snippet, spans = make_snippet("Check tyre pressures; the press embargo; descaling tyres.",
                                  parse_query("tyres pressure descale"))
    assert [snippet[s:e] for s, e in spans] == ["tyre", "pressures", "descaling", "tyres"]


def test_shown_score_is_the_passage_cosine_similarity(engine, fake_embedder):
    [top, *_] = engine.search("magnetic field stars", mode="hybrid")
    row = engine.catalog.chunks_by_id([top.chunk_id])[top.chunk_id]
    cosine = float(fake_embedder.embed_query("magnetic field stars") @ fake_embedder.embed_documents([row.text])[0])
    assert top.score == pytest.approx(cosine, abs=2e-3)


# the rerank budget -------------------------------------------------------------------------------


def test_rerank_plan_fits_the_budget_from_the_measured_speed():
    from engine.rerank import RERANK_PLANS, pair_ms, plan_for

    fast = plan_for((1.0, 4.0), budget_ms=700)     # 30 × 256 tokens predicted 120 ms
    assert (fast.depth, fast.max_tokens) == RERANK_PLANS[0] and fast.predicted_ms == pytest.approx(120)
    # 4 ms per pair at 64 tokens, 40 at 256 (a busy 2-core CPU): 30 × 128 = 480 ms fits, 30 × 192 does not.
    mid = plan_for((4.0, 40.0), budget_ms=700)
    assert (mid.depth, mid.max_tokens) == (30, 128) and mid.predicted_ms <= 700
    assert pair_ms((4.0, 40.0), 192) * 30 > 700
    slow = plan_for((100.0, 400.0), budget_ms=700)  # nothing fits: the cheapest plan, not none
    assert (slow.depth, slow.max_tokens) == RERANK_PLANS[-1] and slow.predicted_ms > 700


def test_rerank_speed_is_cached_on_disk_and_follows_observed_speed(tmp_path):
    import json

    from engine import rerank

    folder = tmp_path / "ce"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    cache = tmp_path / "speed.json"
    r = rerank.CrossEncoderReranker(folder, device="cpu", precision="fp32", budget_ms=700, speed_cache=cache)
    key = r._speed_key()
    cache.write_text(json.dumps({key: [4.0, 40.0], "other|cpu|fp32|1": "junk"}))
    assert r.speed() == (4.0, 40.0), "a cached speed is used without loading the model"
    assert r._model is None
    assert (r.plan().depth, r.plan().max_tokens) == (30, 128)
    for _ in range(2):  # reranks twice as slow as predicted (load): the estimate moves 30% each time
        r._observe(30, 128, elapsed_ms=2 * 30 * rerank.pair_ms(r.speed(), 128))
    assert r.speed()[0] == pytest.approx(4.0 * 1.3 * 1.3)
    assert (r.plan().depth, r.plan().max_tokens) == (20, 128), "a slower machine gets a smaller plan"
    r.budget_ms = None
    assert (r.plan().depth, r.plan().max_tokens) == (30, r.max_tokens), "no budget: the fixed plan"
    # A damaged cache file means calibrating again, not a crash.
    cache.write_text("{not json")
    assert rerank._read_speed_cache(cache) == {}


def test_search_uses_the_rerankers_plan_and_caches_per_truncation(engine, monkeypatch):
    class Planned(WordOverlapReranker):
        def __init__(self):
            super().__init__()
            self.tokens_seen = []
            self.next_plan = RerankPlan(2, 64)

        def plan(self):
            return self.next_plan

        def score(self, query, passages, *, max_tokens=None):
            self.tokens_seen.append((len(passages), max_tokens))
            return super().score(query, passages)

    reranker = Planned()
    monkeypatch.setattr(engine, "reranker", lambda: reranker)
    result = engine.search_detailed("migrating birds magnetic espresso", mode="rerank")
    assert (result.rerank_depth, result.rerank_tokens) == (2, 64)
    assert reranker.tokens_seen == [(2, 64)]
    engine.search_detailed("migrating birds magnetic espresso", mode="rerank")
    assert len(reranker.tokens_seen) == 1, "cached per (query, chunk, truncation)"
    reranker.next_plan = RerankPlan(2, 128)
    engine.search_detailed("migrating birds magnetic espresso", mode="rerank")
    assert reranker.tokens_seen[-1] == (2, 128), "another truncation gives other scores: not from the cache"
    hybrid = engine.search_detailed("migrating birds magnetic espresso", mode="hybrid")
    assert (hybrid.rerank_depth, hybrid.rerank_tokens) == (0, 0)



def test_keyword_search_is_planned_from_how_many_chunks_each_word_is_in(make_engine, docs, monkeypatch):
    for i in range(12):
        write(docs / f"report-{i}.txt", f"Quarterly report number {i} on the warehouse inventory.")
    write(docs / "boiler.txt", "The quarterly report on the boiler: descaling was overdue.")
    e = make_engine()
    e.add_folder(docs)
    e.index()
    seen = []
    real = e.catalog.keyword_search
    monkeypatch.setattr(e.catalog, "keyword_search", lambda expr, **kw: seen.append(expr) or real(expr, **kw))
    assert e.search_detailed("quarterly boiler", mode="bm25").hits[0].path.endswith("boiler.txt")
    assert seen == ['"quarterly" OR "boiler"'], "few chunks to score: the whole query"

    # 'quarterly' and 'report' are in 13 chunks each, 'boiler' and 'descaling' in 1.
    monkeypatch.setattr(search, "KEYWORD_MAX_SCORED", 5)
    seen.clear()
    hits = e.search_detailed("quarterly boiler descaling", mode="bm25").hits
    assert seen == ['"boiler" OR "descaling"'], "too many to score: the rarest words that fit"
    assert [h.path.rsplit("/", 1)[-1] for h in hits] == ["boiler.txt"]
    seen.clear()
    hits = e.search_detailed("quarterly report", mode="bm25", limit=20).hits
    assert seen == ['("quarterly" AND "report")'], "every word common: the chunks with all of them"
    assert len(hits) == 13
    seen.clear()
    e.search_detailed("quarterly report warehouse inventory", mode="bm25")
    assert seen == ['("warehouse" AND "inventory" AND "quarterly")'], "or with the three rarest"


def test_keyword_search_gives_up_after_its_budget(make_engine, docs, monkeypatch):
    write(docs / "boiler.txt", "The quarterly report on the boiler: descaling was overdue.")
    e = make_engine()
    e.add_folder(docs)
    e.index()
    assert len(e.catalog.keyword_search('"boiler"', limit=5, budget_s=10)) == 1
    own = e.catalog  # a test of the catalog's own interrupt: its connection is the seam
    conn = own.conn

    class TimeIsUp:
        """threading.Timer whose time runs out while the statement runs: SQLite's progress
        handler stands in for the clock and fires the interrupt from the statement's first steps."""

        def __init__(self, seconds, fn):
            self.fn = fn
            self.daemon = False

        def start(self):
            conn.set_progress_handler(lambda: self.fn() or 0, 1)

        def cancel(self):
            conn.set_progress_handler(None, 0)

    monkeypatch.setattr(catalog.threading, "Timer", TimeIsUp)
    assert e.catalog.keyword_search('"boiler"', limit=5, budget_s=0.001) is None, "interrupted: None, not an error"
    assert e.search_detailed("boiler", mode="bm25").hits == [], "over budget: no keyword results"
    monkeypatch.undo()
    assert len(e.catalog.keyword_search('"boiler"', limit=5, budget_s=10)) == 1, "the connection still works"


def test_rerank_of_a_hybrid_result_is_the_auto_search(engine, monkeypatch):
    reranker = WordOverlapReranker()
    monkeypatch.setattr(engine, "reranker", lambda: reranker)
    first = engine.search_detailed("migrating birds magnetic", mode="hybrid")
    reranked = engine.rerank(first)
    auto = engine.search_detailed("migrating birds magnetic", mode="auto")
    assert reranked.mode == auto.mode == "rerank" and reranked.hits == auto.hits
    assert (reranked.rerank_depth, reranked.total) == (auto.rerank_depth, auto.total)
    assert first.hits != reranked.hits and all(h.why.rerank_score is None for h in first.hits)
    assert engine.rerank(reranked) is reranked and engine.rerank(auto) is auto, "reranked already"
    monkeypatch.setattr(engine, "reranker", lambda: None)
    assert engine.rerank(first) is first
