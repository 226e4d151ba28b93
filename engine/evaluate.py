"""BEIR-format evaluation: nDCG@10, Recall@k, MRR@10 and latency of each search mode.

`evaluate(folder)` writes a BEIR collection's corpus out as text files, indexes them with the
real pipeline in a Sift home of its own (never the user's), runs every judged query through
`Engine.search` in each mode and scores the document rankings against the relevance judgments.

The metrics themselves are in engine/metrics.py.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

from engine import learn
from engine.config import Config
from engine.embed import Embedder
from engine.engine import Engine
from engine.errors import SiftError
from engine.match import GOOD
from engine.metrics import NDCG_AT, distinct, judged_queries, score_run
from engine.types import Hit, IndexReport, Progress

# "rerank" runs only when a reranker is installed; "default" is what a plain search runs (mode
# auto: with every option the user has switched on), the figures a person actually gets.
MODES = ("bm25", "dense", "hybrid", "rerank", "default")
_SEARCH_MODE = {"default": "auto"}
DEPTH = 100                 # documents asked of each search: the deepest cut-off scored
# Pseudo-relevance feedback in "default" is decided as learning decides it for a user's own
# searches (engine/learn.py), with the judged queries as held-out searches: cross_fitted_choice.
FEEDBACK_SEED = 7
# Searched once per mode before timing (and not scored), so that loading the model or the
# reranker is not counted as a query's latency; not a collection's query, so nothing is cached.
WARMUP_QUERY = "warm-up query for sift eval"

MARKER = "sift-eval.json"   # marks a --keep folder as made by `sift eval`, so it may be rewritten
MAX_NAME_BYTES = 200        # file names stay well under the usual 255-byte limit

# Settings never copied into the evaluation home: it searches the written corpus and nothing
# else, every file of which is wanted (a document id may look like a hidden or excluded name).
_OWN_SETTINGS = ("schema_version", "folders", "exclude", "include_hidden")


@dataclass(frozen=True, slots=True)
class Document:
    title: str
    text: str

    def as_file_text(self) -> str:
        """What the indexed file holds: the title, a blank line, the text."""
        return f"{self.title}\n\n{self.text}" if self.title.strip() else self.text


@dataclass(frozen=True, slots=True)
class Collection:
    """A BEIR collection reduced to its judged queries."""

    name: str
    corpus: dict[str, Document]              # doc id → document, in file order
    queries: dict[str, str]                  # judged query id → text, in file order
    qrels: dict[str, dict[str, int]]         # query id → {doc id: grade > 0}


# -- loading ------------------------------------------------------------------------------------


def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SiftError(f"{path}, line {n}, is not valid JSON ({exc.msg}). Each line must be one "
                                "JSON object.") from None
            if not isinstance(obj, dict) or "_id" not in obj:
                raise SiftError(f"{path}, line {n}, has no \"_id\". BEIR files hold one object a line with "
                                "\"_id\" and \"text\".")
            yield n, obj


def _qrels_path(folder: Path) -> Path:
    for candidate in (folder / "qrels.tsv", folder / "qrels" / "test.tsv"):
        if candidate.is_file():
            return candidate
    raise SiftError(f"{folder} has no qrels.tsv (nor qrels/test.tsv). A BEIR folder holds corpus.jsonl, "
                    "queries.jsonl and qrels.tsv.")


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Every judgment in a BEIR qrels file (`query-id corpus-id score`, tab separated, header optional)."""
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.reader(f, delimiter="\t"), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 3:
                raise SiftError(f"{path}, line {n}, has {len(row)} columns; qrels lines are "
                                "query-id <tab> corpus-id <tab> score.")
            try:
                grade = int(float(row[2]))
            except ValueError:
                if n == 1:
                    continue  # the header
                raise SiftError(f"{path}, line {n}: the score {row[2]!r} is not a number.") from None
            qrels.setdefault(row[0].strip(), {})[row[1].strip()] = grade
    return qrels


def load_beir(folder: str | os.PathLike, *, limit_queries: int | None = None) -> Collection:
    """A BEIR folder's corpus, its judged queries (at least one document scored > 0) and their judgments."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise SiftError(f"{folder} is not a folder. Give the folder holding corpus.jsonl, queries.jsonl "
                        "and qrels.tsv.")
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (folder / name).is_file():
            raise SiftError(f"{folder} has no {name}. A BEIR folder holds corpus.jsonl, queries.jsonl "
                            "and qrels.tsv.")
    qrels_path = _qrels_path(folder)
    corpus = {str(obj["_id"]): Document(str(obj.get("title") or ""), str(obj.get("text") or ""))
              for _, obj in _jsonl(folder / "corpus.jsonl")}
    relevant = {qid: {d: g for d, g in docs.items() if g > 0}
                for qid, docs in read_qrels(qrels_path).items()}
    queries: dict[str, str] = {}
    for _, obj in _jsonl(folder / "queries.jsonl"):
        qid = str(obj["_id"])
        if relevant.get(qid):
            queries[qid] = str(obj.get("text") or "")
        if limit_queries is not None and len(queries) >= limit_queries:
            break
    if not queries:
        raise SiftError(f"No query in {folder / 'queries.jsonl'} has a relevant document (score > 0) in "
                        "its qrels, so there is nothing to evaluate.")
    name = folder.resolve().name
    return Collection(name=name, corpus=corpus, queries=queries, qrels={q: relevant[q] for q in queries})


# -- latency --------------------------------------------------------------------------------------


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(seconds, dtype=np.float64) * 1000
    if not len(ms):
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0}
    return {"mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95))}


# -- writing the corpus -----------------------------------------------------------------------------


def file_names(doc_ids: Sequence[str]) -> dict[str, str]:
    """A distinct, safe file name for each document id: the id itself where it can be, `{id}.txt`.

    Anything but letters, digits and `_.-~` is percent-encoded, a leading dot too (hidden files);
    names equal but for case get a suffix (case-insensitive file systems); over-long ones a hash.
    """
    names: dict[str, str] = {}
    taken: set[str] = set()
    for doc_id in doc_ids:
        stem = quote(doc_id, safe="")
        if stem.startswith(".") or not stem:
            stem = "%2E" + stem[1:] if stem else "%00"
        if len(stem.encode()) > MAX_NAME_BYTES:
            stem = stem[:100] + "~" + hashlib.blake2b(doc_id.encode(), digest_size=8).hexdigest()
        name, n = f"{stem}.txt", 1
        while name.lower() in taken:
            n += 1
            name = f"{stem}~{n}.txt"
        taken.add(name.lower())
        names[doc_id] = name
    return names


def write_corpus(corpus: Mapping[str, Document], folder: Path) -> dict[str, str]:
    """Write each document as a text file in `folder`; returns file name → doc id.

    Files whose text is unchanged are left alone (so a kept index has nothing to redo), and
    .txt files that are not part of this corpus are removed.
    """
    folder.mkdir(parents=True, exist_ok=True)
    names = file_names(list(corpus))
    for doc_id, name in names.items():
        path = folder / name
        text = corpus[doc_id].as_file_text()
        try:
            if path.read_text(encoding="utf-8") == text:
                continue
        except (FileNotFoundError, UnicodeDecodeError):
            pass
        path.write_text(text, encoding="utf-8")
    wanted = set(names.values())
    for path in folder.glob("*.txt"):
        if path.name not in wanted:
            path.unlink()
    return {name: doc_id for doc_id, name in names.items()}


def hits_to_ids(hits: Sequence[Hit], by_name: Mapping[str, str]) -> list[str]:
    """Document ids in rank order; a hit standing for several identical files counts each, in turn."""
    ids: list[str] = []
    for hit in hits:
        for path in (hit.path, *hit.duplicates):
            doc_id = by_name.get(os.path.basename(path))
            if doc_id is not None:
                ids.append(doc_id)
    return distinct(ids)


# -- running --------------------------------------------------------------------------------------


def _prepare_keep(keep: Path, name: str) -> None:
    """A --keep folder is either new, empty, or one `sift eval` made (its marker file says so)."""
    marker = keep / MARKER
    if keep.exists() and not keep.is_dir():
        raise SiftError(f"{keep} is a file; give --keep a folder (new, or one sift eval made before).")
    if keep.is_dir() and any(keep.iterdir()) and not marker.is_file():
        raise SiftError(f"{keep} already holds files that sift eval did not make; give --keep a new or "
                        "empty folder, so nothing of yours is overwritten.")
    keep.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"collection": name}) + "\n", encoding="utf-8")


def _configure(engine: Engine, corpus_dir: Path, settings: Config | None) -> None:
    """Make the evaluation home search the corpus folder alone, with the user's other settings.

    Folders of the home that no longer exist (the temporary corpus of an earlier run) are
    dropped; indexing then treats their files as moved, so nothing is embedded twice.
    """
    corpus = os.path.abspath(corpus_dir)
    others = [f for f in engine.config.folders if f != corpus and os.path.isdir(f)]
    if others:
        raise SiftError(f"The Sift home {engine.paths.data} already searches other folders ({', '.join(others)}), "
                        "which would mix with the collection. Give sift eval a new or empty --home.")
    changes = {}
    if settings is not None:
        changes = {f.name: getattr(settings, f.name) for f in dataclasses.fields(Config)
                   if f.name not in _OWN_SETTINGS}
    engine.update_config(folders=(corpus,), exclude=(), include_hidden=True, **changes)


def open_collection(stack: ExitStack, collection: Collection, *, keep: str | os.PathLike | None = None,
                    home: str | os.PathLike | None = None, settings: Config | None = None,
                    embedder: Embedder | None = None, log: Callable[[str], None] | None = None,
                    prefix: str = "sift-eval-") -> tuple[Engine, Path, dict[str, str]]:
    """(engine, its home, file name → doc id): the collection's corpus written as text files and
    an engine searching them alone, in `keep` (kept for a re-run) or in a temporary folder that
    `stack` removes, the engine closed first. `home`: a Sift home to use instead of one made there
    (the user's `settings` are copied only into a home made here)."""
    if keep is not None:
        work = Path(keep).expanduser().resolve()
        _prepare_keep(work, collection.name)
    else:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
    home_dir = Path(home).expanduser().resolve() if home is not None else work / "home"
    corpus_dir = work / "corpus"
    if log is not None:
        log(f"Writing the corpus to {corpus_dir} …")
    by_name = write_corpus(collection.corpus, corpus_dir)
    engine = Engine.open(home_dir, embedder=embedder)
    stack.callback(engine.close)  # closed before the temporary folder is removed
    _configure(engine, corpus_dir, settings if home is None else None)
    return engine, home_dir, by_name


def _default_log(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


def evaluate(folder: str | os.PathLike, *, modes: Sequence[str] | None = None,
             home: str | os.PathLike | None = None, keep: str | os.PathLike | None = None,
             limit_queries: int | None = None, settings: Config | None = None,
             embedder: Embedder | None = None, log: Callable[[str], None] = _default_log,
             on_progress: Callable[[Progress], None] | None = None) -> dict:
    """Index a BEIR collection and score each search mode on it; returns the `sift eval --json` object.

    modes: the modes to run (default: bm25, dense, hybrid, rerank when a reranker is installed, and
    default, what a plain search runs).
    home: the Sift home to index in (default: a temporary one, or `keep`/home); never the user's
    unless named here. keep: a folder keeping the written corpus and the index, so a re-run only
    searches. settings: the user's settings, copied (but for folders) into a home made here, so
    the model and reranker evaluated are the user's. embedder: for tests.
    """
    if modes is not None:
        unknown = [m for m in modes if m not in MODES]
        if unknown or not modes:
            raise SiftError(f"Unknown mode {', '.join(unknown) or '(none)'}; choose among {', '.join(MODES)}.")
    collection = load_beir(folder, limit_queries=limit_queries)
    log(f"{collection.name}: {len(collection.corpus):,} documents, {len(collection.queries):,} judged queries.")
    with ExitStack() as stack:
        engine, home_dir, by_name = open_collection(stack, collection, keep=keep, home=home, settings=settings,
                                                    embedder=embedder, log=log)
        if modes is None:
            modes = [m for m in MODES if m != "rerank" or engine.reranker_available]
        elif "rerank" in modes and not engine.reranker_available:
            raise SiftError("No reranker is installed (or it is turned off), so mode rerank cannot run. "
                            "Import a cross-encoder model folder in settings, or leave rerank out of --modes.")

        log(f"Indexing in {home_dir} …")
        started = time.perf_counter()
        report = engine.index(on_progress=on_progress)
        index_s = time.perf_counter() - started
        _log_index(log, report, index_s)
        indexed = engine.catalog.counts_by_status().get("indexed", 0)
        if indexed < len(by_name):
            log(f"Note: {len(by_name) - indexed} of {len(by_name)} documents could not be indexed (empty "
                "ones have no text); they count as never found.")

        results, feedback = {}, None
        for mode in modes:
            run = _run_mode(engine, collection, by_name, mode, log)
            if mode == "default" and engine.config.learn_from_clicks:
                run, feedback = _with_feedback_chosen(engine, collection, by_name, run, log)
            results[mode] = run.scored(collection.qrels)
        reranker = engine.reranker() if "rerank" in modes else None
        return {
            "collection": collection.name,
            "docs": len(collection.corpus),
            "queries": len(collection.queries),
            "model": engine.embedder.model_id,
            "reranker": reranker.model_id if reranker is not None else None,
            "modes": results,
            "feedback": feedback,
            "index_s": round(index_s, 2),
        }


def _log_index(log: Callable[[str], None], report: IndexReport, seconds: float) -> None:
    done = report.added + report.updated + report.moved
    if done or report.removed:
        log(f"Indexed {done:,} files ({report.chunks_embedded:,} chunks embedded, {report.chunks_reused:,} "
            f"reused) in {seconds:.1f} s.")
    else:
        log(f"The kept index is up to date ({report.unchanged:,} files).")


def relevant_hidden(run: Mapping[str, Sequence[str]], weak: Mapping[str, set[str]],
                    qrels: Mapping[str, Mapping[str, float]], k: int = NDCG_AT) -> dict[str, float]:
    """How often the good/weak cut-off hides what was found: of the queries whose top k holds a
    judged relevant document, the share whose relevant top-k documents are all marked weak
    ("relevant_hidden") and the share with at least one of them weak ("relevant_some_weak");
    and the share of all queries with no good match at all ("no_good")."""
    found = [q for q in qrels if any(qrels[q].get(d, 0) > 0 for d in run.get(q, ())[:k])]
    rel = {q: [d for d in run[q][:k] if qrels[q].get(d, 0) > 0] for q in found}
    share = lambda n, of: round(n / of, 4) if of else 0.0
    return {"relevant_hidden": share(sum(all(d in weak[q] for d in rel[q]) for q in found), len(found)),
            "relevant_some_weak": share(sum(any(d in weak[q] for d in rel[q]) for q in found), len(found)),
            "no_good": share(sum(set(run.get(q, ())) <= weak.get(q, set()) for q in qrels), len(qrels))}


@dataclass
class _Run:
    """One mode's answers: ranked document ids, the ones marked weak, and each query's seconds."""

    ranked: dict[str, list[str]]
    weak: dict[str, set[str]]
    seconds: list[float]

    def scored(self, qrels: Mapping[str, Mapping[str, float]]) -> dict:
        metrics = {name: round(value, 4) for name, value in score_run(self.ranked, qrels).items()}
        metrics.update(relevant_hidden(self.ranked, self.weak, qrels))
        return {**metrics, "latency_ms": {name: round(value, 2) for name, value in latency_stats(self.seconds).items()}}


def _run_mode(engine: Engine, collection: Collection, by_name: Mapping[str, str], mode: str,
              log: Callable[[str], None], label: str = "") -> _Run:
    label = label or mode
    search_mode = _SEARCH_MODE.get(mode, mode)
    engine.search(WARMUP_QUERY, limit=DEPTH, mode=search_mode, literal=True)
    run = _Run({}, {}, [])
    started = last_note = time.perf_counter()
    for n, (qid, text) in enumerate(collection.queries.items(), 1):
        t = time.perf_counter()
        # A collection's queries are text, not Sift's syntax: CISI's pasted abstracts quote
        # words ("threshold"), which as phrases would be requirements.
        hits = engine.search(text, limit=DEPTH, mode=search_mode, literal=True)
        run.seconds.append(time.perf_counter() - t)
        run.ranked[qid] = hits_to_ids(hits, by_name)
        run.weak[qid] = set(hits_to_ids([h for h in hits if h.match != GOOD], by_name))
        if time.perf_counter() - last_note > 10 and n < len(collection.queries):
            last_note = time.perf_counter()
            log(f"  {label}: {n}/{len(collection.queries)} queries …")
    ndcg = score_run(run.ranked, collection.qrels)[f"ndcg@{NDCG_AT}"]
    log(f"  {label}: {len(run.ranked)} queries in {time.perf_counter() - started:.1f} s, nDCG@{NDCG_AT} {ndcg:.4f}")
    return run


def cross_fitted_choice(plain: Mapping[str, Sequence[str]], option: Mapping[str, Sequence[str]],
                        qrels: Mapping[str, Mapping[str, float]], *, seed: int = FEEDBACK_SEED,
                        min_gain: float = learn.FEEDBACK_MIN_GAIN) -> tuple[set[str], list[float]]:
    """The judged queries that get an option (its rankings in `option`), chosen in two seeded
    halves: a half gets it where it lifted the other half's nDCG@10 by `min_gain`, so no query's
    choice is made on that query. Returns them and each half's measured gain."""
    judged = sorted(judged_queries(qrels))
    random.Random(seed).shuffle(judged)
    halves = [judged[0::2], judged[1::2]]
    chosen: set[str] = set()
    gains = []
    for n, half in enumerate(halves):
        other = {q: qrels[q] for q in halves[1 - n]}
        if not other:
            gains.append(0.0)
            continue
        gain = score_run(option, other)[f"ndcg@{NDCG_AT}"] - score_run(plain, other)[f"ndcg@{NDCG_AT}"]
        gains.append(round(gain, 4))
        if gain >= min_gain:
            chosen.update(half)
    return chosen, gains


def _with_feedback_chosen(engine: Engine, collection: Collection, by_name: Mapping[str, str], plain: _Run,
                          log: Callable[[str], None]) -> tuple[_Run, dict]:
    """The default run with pseudo-relevance feedback where the other half of the queries says it
    helps (see FEEDBACK_SEED); returns it and what was chosen. The home's learning weights are
    put back after."""
    kept = engine.learning_summary().weights
    engine.set_learning(dataclasses.replace(kept, feedback=True))
    try:
        widened = _run_mode(engine, collection, by_name, "default", log, label="default with feedback")
    finally:
        engine.set_learning(kept)
    fed, gains = cross_fitted_choice(plain.ranked, widened.ranked, collection.qrels)
    pick = lambda q: widened if q in fed else plain  # noqa: E731
    run = _Run({q: pick(q).ranked[q] for q in plain.ranked}, {q: pick(q).weak[q] for q in plain.weak},
               [pick(q).seconds[i] for i, q in enumerate(plain.ranked)])
    judged = len(judged_queries(collection.qrels))
    chosen = {"queries_with_feedback": round(len(fed) / judged, 4) if judged else 0.0, "gain_by_half": gains,
              "ndcg@10_always_on": round(score_run(widened.ranked, collection.qrels)[f"ndcg@{NDCG_AT}"], 4)}
    log(f"  default: pseudo-relevance feedback for {chosen['queries_with_feedback']:.0%} of the queries "
        f"(nDCG@{NDCG_AT} gain on the other half {gains})")
    return run, chosen


# -- presenting -----------------------------------------------------------------------------------

_COLUMNS = (("nDCG@10", "ndcg@10"), ("R@5", "recall@5"), ("R@10", "recall@10"), ("R@100", "recall@100"),
            ("MRR@10", "mrr@10"), ("hidden", "relevant_hidden"))


def format_table(result: Mapping) -> str:
    """The result of `evaluate` as a small text table: one row per mode."""
    lines = [f"{result['collection']}: {result['docs']:,} documents, {result['queries']:,} judged queries; "
             f"indexing took {result['index_s']:.1f} s",
             f"model {result['model']}; reranker {result.get('reranker') or 'none (rerank mode not run)'}",
             ""]
    header = f"{'mode':<8}" + "".join(f"{title:>9}" for title, _ in _COLUMNS) + \
        f"{'mean ms':>10}{'p50 ms':>9}{'p95 ms':>9}"
    lines += [header, "-" * len(header)]
    for mode, m in result["modes"].items():
        lat = m["latency_ms"]
        lines.append(f"{mode:<8}" + "".join(f"{m.get(key, 0.0):>9.4f}" for _, key in _COLUMNS)
                     + f"{lat['mean']:>10.1f}{lat['p50']:>9.1f}{lat['p95']:>9.1f}")
    lines.append("hidden: of the queries with a relevant document in their top 10, the share that see all "
                 "of those marked weak (loosely related)")
    if result.get("feedback"):
        fb = result["feedback"]
        lines.append(f"default: pseudo-relevance feedback for {fb['queries_with_feedback']:.0%} of the queries, each half "
                     f"where it lifted the other half's nDCG@10 by {learn.FEEDBACK_MIN_GAIN} (gains "
                     f"{', '.join(f'{g:+.4f}' for g in fb['gain_by_half'])}; on for all: {fb['ndcg@10_always_on']:.4f})")
    return "\n".join(lines)
