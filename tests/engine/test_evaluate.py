"""`sift eval`: metrics against hand-computed values and two maintained implementations,
BEIR loading, corpus files, and the command end to end on a tiny generated collection."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import numpy as np
import pytest

from engine.engine import Engine
from engine.errors import SiftError
from engine.evaluate import (
    cross_fitted_choice,
    Document,
    file_names,
    hits_to_ids,
    load_beir,
    write_corpus,
)
from engine.rerank import RerankPlan
from engine.metrics import (
    mrr_at_k,
    ndcg_at_k,
    per_query_metrics,
    recall_at_k,
    score_run,
    success_at_k,
)
from engine.types import Hit
from tests.helpers import write

# -- metrics, by hand ---------------------------------------------------------------------------

GRADED = {"a": 3, "b": 2, "c": 1}


def test_ndcg_graded_by_hand():
    # DCG  = 1/log2(2) + 0 + 3/log2(4) + 2/log2(5) = 1 + 1.5 + 0.861353 = 3.361353
    # IDCG = 3/log2(2) + 2/log2(3) + 1/log2(4)     = 3 + 1.261860 + 0.5 = 4.761860
    assert ndcg_at_k(["c", "x", "a", "b"], GRADED, 10) == pytest.approx(3.361353 / 4.761860, abs=1e-6)
    assert ndcg_at_k(["a", "b", "c"], GRADED, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "y"], GRADED, 10) == 0.0
    assert ndcg_at_k([], GRADED, 10) == 0.0


def test_ndcg_cut_off_applies_to_ranking_and_ideal():
    # a relevant document at rank 3 with k = 2 counts for nothing
    assert ndcg_at_k(["x", "y", "a"], GRADED, 2) == 0.0
    # k = 1: only the first place counts, against the best single document (grade 3)
    assert ndcg_at_k(["b", "a"], GRADED, 1) == pytest.approx(2 / 3)
    # 12 relevant documents, all found at ranks 1-10: the ideal is cut at 10 as well, so 1.0
    many = {f"d{i}": 1 for i in range(12)}
    assert ndcg_at_k([f"d{i}" for i in range(10)], many, 10) == pytest.approx(1.0)


def test_binary_ndcg_recall_mrr_by_hand():
    qrels = {"r1": 1, "r2": 1, "r3": 1, "r4": 1, "no": 0}
    ranking = ["x1", "r1", "no", "x2", "x3", "r2", "x4", "x5", "x6", "r3"] + [f"y{i}" for i in range(50)] + ["r4"]
    # relevant at ranks 2, 6, 10 (and 61); a grade-0 judgment is not relevant
    assert recall_at_k(ranking, qrels, 5) == pytest.approx(1 / 4)
    assert recall_at_k(ranking, qrels, 10) == pytest.approx(3 / 4)
    assert recall_at_k(ranking, qrels, 100) == pytest.approx(1.0)
    assert mrr_at_k(ranking, qrels, 10) == pytest.approx(1 / 2)
    assert mrr_at_k(["x"] * 10 + ["r1"], qrels, 10) == 0.0
    dcg = 1 / math.log2(3) + 1 / math.log2(7) + 1 / math.log2(11)   # 0.630930 + 0.356207 + 0.289065
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(5)  # 1 + 0.630930 + 0.5 + 0.430677
    assert ndcg_at_k(ranking, qrels, 10) == pytest.approx(1.276202 / 2.561606, abs=1e-6)
    assert ndcg_at_k(ranking, qrels, 10) == pytest.approx(dcg / idcg)


def test_success_at_k_by_hand():
    qrels = {"r1": 1, "no": 0}
    assert success_at_k(["x", "r1"], qrels, 2) == 1.0
    assert success_at_k(["x", "r1"], qrels, 1) == 0.0
    assert success_at_k(["no", "x"], qrels, 10) == 0.0   # a grade-0 judgment is not relevant
    assert success_at_k([], qrels, 10) == 0.0


def test_a_repeated_id_counts_once():
    once = per_query_metrics(["c", "a", "x"], GRADED)
    assert per_query_metrics(["c", "c", "a", "a", "x"], GRADED) == once


def test_score_run_means_over_judged_queries_only():
    qrels = {"q1": {"a": 1}, "q2": {"b": 2, "c": 1}, "q3": {"z": 0}}  # q3 has nothing relevant
    run = {"q1": ["a"], "q3": ["z"]}                                 # q2 was never answered
    scores = score_run(run, qrels)
    assert scores == {"ndcg@10": 0.5, "recall@5": 0.5, "recall@10": 0.5, "recall@100": 0.5, "mrr@10": 0.5}
    with pytest.raises(ValueError):
        score_run(run, {"q3": {"z": 0}})


# -- metrics, against maintained implementations ----------------------------------------------------


def _random_runs(seed: int, *, graded: bool, min_len: int = 0):
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(300)]
    qrels, run = {}, {}
    for q in range(40):
        qid = f"q{q}"
        relevant = rng.sample(docs, rng.randint(1, 15))
        qrels[qid] = {d: (rng.randint(1, 4) if graded else 1) for d in relevant}
        # rankings that mix in relevant documents, of every length up to beyond 100
        pool = relevant + rng.sample(docs, 150)
        ranking = list(dict.fromkeys(rng.sample(pool, len(pool))))
        run[qid] = ranking[: rng.randint(min_len, 140)]
    return docs, qrels, run


@pytest.mark.parametrize("seed", range(5))
def test_binary_metrics_match_sentence_transformers(seed):
    try:
        from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    except ImportError:  # sentence-transformers before 6
        from sentence_transformers.evaluation import InformationRetrievalEvaluator

    docs, qrels, run = _random_runs(seed, graded=False)
    evaluator = InformationRetrievalEvaluator(
        queries={q: f"query {q}" for q in qrels}, corpus={d: f"doc {d}" for d in docs},
        relevant_docs={q: set(g) for q, g in qrels.items()}, mrr_at_k=[10], ndcg_at_k=[10],
        accuracy_at_k=[1], precision_recall_at_k=[5, 10, 100], map_at_k=[10], write_csv=False)
    results = [[{"corpus_id": d, "score": float(len(run[q]) - r)} for r, d in enumerate(run[q])]
               for q in evaluator.queries_ids]
    theirs = evaluator.compute_metrics(results)
    ours = score_run(run, qrels)
    assert ours["ndcg@10"] == pytest.approx(theirs["ndcg@k"][10], abs=1e-9)
    assert ours["mrr@10"] == pytest.approx(theirs["mrr@k"][10], abs=1e-9)
    for k in (5, 10, 100):
        assert ours[f"recall@{k}"] == pytest.approx(theirs["recall@k"][k], abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_graded_ndcg_matches_scikit_learn(seed):
    from sklearn.metrics import ndcg_score

    docs, qrels, run = _random_runs(seed, graded=True, min_len=10)
    index = {d: i for i, d in enumerate(docs)}
    for qid, grades in qrels.items():
        y_true = np.zeros((1, len(docs)))
        for d, g in grades.items():
            y_true[0, index[d]] = g
        y_score = np.full((1, len(docs)), -1.0)  # unranked documents: below every ranked one
        for r, d in enumerate(run[qid]):
            y_score[0, index[d]] = len(run[qid]) - r
        expected = ndcg_score(y_true, y_score, k=10, ignore_ties=True)
        assert ndcg_at_k(run[qid], grades, 10) == pytest.approx(expected, abs=1e-9)


# -- loading BEIR folders -------------------------------------------------------------------------


def _jsonl(path: Path, rows: list[dict]) -> None:
    write(path, "".join(json.dumps(r) + "\n" for r in rows))


def test_load_beir_keeps_judged_queries_only(tmp_path):
    _jsonl(tmp_path / "corpus.jsonl", [{"_id": "d1", "title": "One", "text": "first"},
                                       {"_id": 2, "title": "", "text": "second"}])
    write(tmp_path / "queries.jsonl", json.dumps({"_id": "q1", "text": "unjudged"}) + "\n\n"
          + json.dumps({"_id": "q2", "text": "judged"}) + "\n"
          + json.dumps({"_id": "q3", "text": "only judged irrelevant"}) + "\n"
          + json.dumps({"_id": "q4", "text": "also judged"}) + "\n")
    write(tmp_path / "qrels.tsv", "query-id\tcorpus-id\tscore\n"
          "q2\td1\t2\nq2\t2\t0\nq3\td1\t0\nq4\t2\t1\nq9\td1\t1\n")
    c = load_beir(tmp_path)
    assert c.name == tmp_path.name
    assert c.corpus == {"d1": Document("One", "first"), "2": Document("", "second")}
    assert list(c.queries) == ["q2", "q4"] and c.queries["q2"] == "judged"
    assert c.qrels == {"q2": {"d1": 2}, "q4": {"2": 1}}
    assert list(load_beir(tmp_path, limit_queries=1).queries) == ["q2"]


def test_load_beir_without_header_and_in_beir_qrels_folder(tmp_path):
    _jsonl(tmp_path / "corpus.jsonl", [{"_id": "d1", "text": "x"}])
    _jsonl(tmp_path / "queries.jsonl", [{"_id": "1", "text": "x"}])
    write(tmp_path / "qrels" / "test.tsv", "1\td1\t1\n")
    assert load_beir(tmp_path).qrels == {"1": {"d1": 1}}


def test_load_beir_errors_name_the_file(tmp_path):
    with pytest.raises(SiftError, match="corpus.jsonl"):
        load_beir(tmp_path)
    write(tmp_path / "corpus.jsonl", '{"_id": "d1", "text": "x"}\n{broken\n')
    _jsonl(tmp_path / "queries.jsonl", [{"_id": "1", "text": "x"}])
    with pytest.raises(SiftError, match="qrels.tsv"):
        load_beir(tmp_path)
    write(tmp_path / "qrels.tsv", "query-id\tcorpus-id\tscore\n1\td1\t1\n")
    with pytest.raises(SiftError, match=r"corpus.jsonl, line 2"):
        load_beir(tmp_path)
    write(tmp_path / "corpus.jsonl", '{"_id": "d1", "text": "x"}\n')
    write(tmp_path / "qrels.tsv", "query-id\tcorpus-id\tscore\n1\td1\t0\n")
    with pytest.raises(SiftError, match="nothing to evaluate"):
        load_beir(tmp_path)
    write(tmp_path / "qrels.tsv", "query-id\tcorpus-id\tscore\n1\td1\tyes\n")
    with pytest.raises(SiftError, match=r"line 2.*'yes'"):
        load_beir(tmp_path)


# -- corpus files and mapping hits back ------------------------------------------------------------


def test_file_names_are_safe_and_distinct():
    names = file_names(["12", "MED-10", "a/b", ".env", "Doc", "doc", "x" * 300, "id_rsa", ""])
    assert names["12"] == "12.txt" and names["MED-10"] == "MED-10.txt"
    assert names["a/b"] == "a%2Fb.txt" and names[".env"] == "%2Eenv.txt"
    assert names["Doc"].lower() != names["doc"].lower()
    assert len(names["x" * 300].encode()) < 255
    assert len(set(names.values())) == len(names) and all("/" not in n for n in names.values())


def test_write_corpus_rewrites_only_what_changed(tmp_path):
    folder = tmp_path / "corpus"
    by_name = write_corpus({"1": Document("Title", "Body text."), "2": Document("", "No title.")}, folder)
    assert by_name == {"1.txt": "1", "2.txt": "2"}
    assert (folder / "1.txt").read_text() == "Title\n\nBody text."
    assert (folder / "2.txt").read_text() == "No title."
    before = (folder / "1.txt").stat().st_mtime_ns
    write(folder / "stale.txt", "from another collection")
    write_corpus({"1": Document("Title", "Body text.")}, folder)
    assert (folder / "1.txt").stat().st_mtime_ns == before
    assert sorted(p.name for p in folder.iterdir()) == ["1.txt"]


def _hit(path: str, duplicates: tuple[str, ...] = ()) -> Hit:
    return Hit(path=path, score=1.0, page=None, snippet="", chunk_id=0, start=0, end=0, kind="text", mtime=0.0,
               duplicates=duplicates)


def test_hits_map_back_to_ids_with_duplicates_in_turn():
    by_name = {"1.txt": "1", "2.txt": "2", "3.txt": "3"}
    hits = [_hit("/c/2.txt", ("/c/3.txt",)), _hit("/c/elsewhere.txt"), _hit("/c/1.txt"), _hit("/c/3.txt")]
    assert hits_to_ids(hits, by_name) == ["2", "3", "1"]


# -- `sift eval` end to end -----------------------------------------------------------------------

TOPICS = {
    "coffee": "espresso descaling limescale grinder crema barista",
    "cycling": "bicycle tyre pressure derailleur chain saddle",
    "birds": "migration songbird navigation magnetic flock nesting",
    "baking": "sourdough starter flour oven crust proofing",
    "sailing": "keel spinnaker tack mooring rudder regatta",
    "astronomy": "telescope nebula galaxy eclipse orbit comet",
}
FILLER = "the report notes some general remarks about various everyday matters and plans".split()


def _collection(folder: Path) -> Path:
    """30 documents on 6 topics, one judged query per topic (graded), plus queries to leave out."""
    rng = random.Random(7)
    corpus, qrels = [], ["query-id\tcorpus-id\tscore"]
    for t, (topic, words) in enumerate(TOPICS.items()):
        vocab = words.split()
        for i in range(5):
            doc_id = f"{topic}-{i}"
            body = " ".join([vocab[0]] + rng.sample(vocab[1:], 3 - i // 2) + rng.sample(FILLER, 8))
            corpus.append({"_id": doc_id, "title": f"Note {t}.{i}", "text": body})
            qrels.append(f"q{t}\t{doc_id}\t{2 if i < 2 else 1}")
    _jsonl(folder / "corpus.jsonl", corpus)
    queries = [{"_id": f"q{t}", "text": " ".join(words.split()[:3])} for t, words in enumerate(TOPICS.values())]
    queries.append({"_id": "unjudged", "text": "nothing judged here"})
    _jsonl(folder / "queries.jsonl", queries)
    write(folder / "qrels.tsv", "\n".join(qrels) + "\n")
    return folder


@pytest.fixture
def run(run_cli):
    return run_cli


def test_sift_eval_json_end_to_end(run, tmp_path, home):
    ir = _collection(tmp_path / "tiny")
    code, out, err = run("eval", str(ir), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["collection"] == "tiny" and result["docs"] == 30 and result["queries"] == 6
    assert result["index_s"] >= 0 and result["reranker"] is None
    assert list(result["modes"]) == ["bm25", "dense", "hybrid", "default"]  # no reranker installed: no rerank
    for m in result["modes"].values():
        assert set(m) == {"ndcg@10", "recall@5", "recall@10", "recall@100", "mrr@10", "latency_ms",
                          "relevant_hidden", "relevant_some_weak", "no_good"}
        assert all(0.0 <= m[k] <= 1.0 for k in m if k != "latency_ms")
        assert set(m["latency_ms"]) == {"mean", "p50", "p95"} and m["latency_ms"]["mean"] >= 0
    # the queries are the topics' own words: every pipeline finds every topic's documents
    for mode in ("bm25", "hybrid"):
        assert result["modes"][mode]["recall@100"] == 1.0 and result["modes"][mode]["mrr@10"] == 1.0
    # default is a plain search: hybrid here (no reranker), with pseudo-relevance feedback for the
    # halves of the queries where it lifted the other half (here both: the topics' words widen well)
    fb = result["feedback"]
    assert set(fb) == {"queries_with_feedback", "gain_by_half", "ndcg@10_always_on"} and len(fb["gain_by_half"]) == 2
    assert fb["queries_with_feedback"] == 0.5 * sum(g >= 0.005 for g in fb["gain_by_half"]) == 1.0
    assert result["modes"]["default"]["ndcg@10"] == fb["ndcg@10_always_on"] > result["modes"]["hybrid"]["ndcg@10"]
    assert "default with feedback" in err
    assert "judged queries" in err and "bm25" in err  # progress goes to stderr
    # the user's own home was opened by the command line, but nothing was indexed there
    user = Engine.open(home)
    try:
        assert user.config.folders == () and user.catalog.counts_by_status() == {}
    finally:
        user.close()
    eval_homes = [p for p in run.opened if not str(p).startswith(str(home))]
    assert eval_homes and not any(p.exists() for p in eval_homes)  # the temporary home is gone
    # with learning switched off a plain search has no feedback: default is hybrid's ranking
    user = Engine.open(home)
    user.update_config(learn_from_clicks=False)
    user.close()
    code, out, err = run("eval", str(ir), "--json", "--modes", "hybrid,default")
    off = json.loads(out)
    assert code == 0 and off["feedback"] is None and "default with feedback" not in err
    assert {k: v for k, v in off["modes"]["default"].items() if k != "latency_ms"} == \
        {k: v for k, v in off["modes"]["hybrid"].items() if k != "latency_ms"}


def test_sift_eval_table_modes_and_kept_index(run, tmp_path):
    ir = _collection(tmp_path / "tiny")
    keep = tmp_path / "kept"
    code, out, err = run("eval", str(ir), "--modes", "bm25,dense", "--keep", str(keep), "--limit-queries", "4")
    assert code == 0, err
    assert "4 judged queries" in out and re.search(r"^bm25 +0\.\d{4}", out, re.M)
    assert re.search(r"^dense +0\.\d{4}", out, re.M) and not re.search(r"^hybrid", out, re.M)
    assert (keep / "corpus" / "astronomy-0.txt").read_text().startswith("Note 5.0\n\n")
    first = out
    code, out, err = run("eval", str(ir), "--modes", "bm25,dense", "--keep", str(keep), "--limit-queries", "4")
    assert code == 0 and "up to date (30 files)" in err
    strip = lambda s: [line[:62] for line in s.splitlines()[3:]]  # metrics, not latency or timing
    assert strip(out) == strip(first)


def test_sift_eval_refuses_what_it_must_not_touch(run, tmp_path, docs):
    ir = _collection(tmp_path / "tiny")
    code, _, err = run("eval", str(ir), "--modes", "bm25,rerank")
    assert code == 1 and "No reranker is installed" in err
    code, _, err = run("eval", str(ir), "--modes", "bm25,fancy")
    assert code == 1 and "Unknown mode fancy" in err
    write(docs / "mine.txt", "my own notes")
    code, _, err = run("eval", str(ir), "--keep", str(docs))
    assert code == 1 and "did not make" in err and (docs / "mine.txt").exists()
    other = tmp_path / "other-home"
    assert run("--home", str(other), "add-folder", str(docs))[0] == 0
    code, _, err = run("eval", str(ir), "--home", str(other))
    assert code == 1 and "already searches other folders" in err
    code, _, err = run("eval", str(tmp_path / "missing"))
    assert code == 1 and "is not a folder" in err


class WordOverlapReranker:
    """Stands in for a cross-encoder: scores a passage by the query words it contains."""

    model_id = "overlap@1"

    def plan(self):
        return RerankPlan(depth=30, max_tokens=0)

    def score(self, query, passages, *, max_tokens=None):
        words = set(query.lower().split())
        return np.array([len(words & set(p.lower().split())) for p in passages], dtype=np.float32)


def test_rerank_mode_runs_when_a_reranker_is_installed(run, tmp_path, monkeypatch):
    monkeypatch.setattr(Engine, "reranker_available", property(lambda self: True))
    monkeypatch.setattr(Engine, "reranker", lambda self: WordOverlapReranker())
    code, out, err = run("eval", str(_collection(tmp_path / "tiny")), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert list(result["modes"]) == ["bm25", "dense", "hybrid", "rerank", "default"]
    assert result["reranker"] == "overlap@1" and result["modes"]["rerank"]["recall@100"] == 1.0


def test_relevant_hidden_counts_queries_whose_relevant_top_ten_is_all_weak():
    from engine.evaluate import relevant_hidden

    qrels = {"q1": {"a": 1, "b": 1}, "q2": {"c": 1}, "q3": {"d": 1}, "q4": {"e": 1}}
    run = {"q1": ["a", "x", "b"], "q2": ["y", "c"], "q3": ["z"], "q4": ["e"]}
    weak = {"q1": {"a"}, "q2": {"y", "c"}, "q3": {"z"}, "q4": set()}
    # q3 found nothing relevant: not counted; q2's only relevant one is weak; q1 has one of two weak
    assert relevant_hidden(run, weak, qrels) == {"relevant_hidden": round(1 / 3, 4),
                                                 "relevant_some_weak": round(2 / 3, 4), "no_good": 0.5}


def _runs(n: int):
    """n judged queries, each with one relevant document: `plain` finds it at rank 3, `better` first."""
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(n)}
    plain = {q: ["x", "y", f"d{q[1:]}"] for q in qrels}
    better = {q: [f"d{q[1:]}", "x", "y"] for q in qrels}
    return qrels, plain, better


def test_an_option_that_lifts_both_halves_is_on_for_every_query_and_one_that_costs_for_none():
    qrels, plain, better = _runs(20)
    chosen, gains = cross_fitted_choice(plain, better, qrels)
    assert chosen == set(qrels) and all(g > 0.3 for g in gains)
    chosen, gains = cross_fitted_choice(better, plain, qrels)
    assert chosen == set() and all(g < 0 for g in gains)
    assert cross_fitted_choice(plain, plain, qrels)[0] == set()  # no gain: off (it must lift by 0.005)


def test_no_query_chooses_on_its_own_figure():
    """Issue 16 item 4: `sift eval` switches feedback on only where held-out searches improve: a
    query's choice is made on the other half. An option that helps one query alone is switched
    on for the other half, never for that query."""
    qrels, plain, better = _runs(20)
    option = {q: better[q] if q == "q0" else plain[q] for q in qrels}
    chosen, gains = cross_fitted_choice(plain, option, qrels, min_gain=0.0001)
    assert "q0" not in chosen and len(chosen) == 10
    assert sorted(gains)[0] == 0.0 and sorted(gains)[1] > 0
