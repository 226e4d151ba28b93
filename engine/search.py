"""Two-stage search: dense ANN and BM25, fused by their scaled scores, reranked, grouped by document."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import numpy as np

from engine.catalog import Catalog, ChunkFilter, ChunkRow
from engine.embed import Embedder
from engine.errors import SiftError
from engine.match import GOOD, WEAK, Calibration, MatchJudge, word_stem
from engine.rerank import Reranker
from engine.types import Hit, Passage, Span, Why
from engine.vectors import VectorIndex

log = logging.getLogger(__name__)

MODES = ("auto", "bm25", "dense", "hybrid", "rerank")

# Stage 1. Depths are in chunks; several chunks of one document often rank together, and
# recall@100 is measured in documents, hence the generous depth.
DENSE_DEPTH = 200
KEYWORD_DEPTH = 200
# Coarse indexes are asked for this many times DENSE_DEPTH candidates, which are then rescored
# exactly with the catalog's f16 vectors (0: not rescored, ranked by the index's similarity).
# i8 (each vector scaled to fill the int8 range, see engine/vectors.py) ranks nearly as well as
# f16, so its 200 candidates are only rescored; b1 (sign bits) ranks loosely and needs a wide
# net. Measured with bench/query_latency.py (recall@10 against exact search); fetching vectors
# from the catalog is most of the rescoring's cost, so the net is no wider than needed.
RESCORE_OVERSAMPLE = 3
# FTS5 scores every chunk matching any OR'ed word before it can sort: about 1 µs a chunk here,
# while finding and counting matches costs about 20 ns a chunk (and BM25's IDF counts every
# word's chunks once more). So BM25 is planned from its words' chunk counts: it scores at most
# about KEYWORD_MAX_SCORED chunks (≈ 10 ms on this 2-core box), keeping a query's rarest words
# (KEYWORD_MAX_WORDS at most) when all of them would be more (see _keyword_plan), and gives up
# after KEYWORD_BUDGET_MS whatever the plan (the dense side still answers). Cranfield's nDCG@10 is unchanged by it; of CISI's pasted-paragraph
# queries a few are narrowed: BM25 alone 0.338 → 0.332, hybrid 0.4515 → 0.4520 (20k: unchanged).
KEYWORD_MAX_SCORED = 10_000
KEYWORD_MAX_WORDS = 16
RARITY_SAMPLE = 50_000  # chunks to tell common words' frequencies apart (≤ 1 ms a word)
KEYWORD_BUDGET_MS = 100
OVERSAMPLE_BY_DTYPE = {"i8": 1, "b1": 10}
# With a filter this selective (chunks allowed), dense search scans the allowed vectors exactly
# instead of filtering ANN results, so a filter never empties stage 1.
EXACT_FILTER_MAX = 50_000
# Fusion over documents (a convex combination of scaled scores, see _fuse): each side scores a
# document by its best chunk, divided by the side's best (BM25 and cosine both start at 0 for a
# document that does not match); fused = DENSE_SHARE × dense + (1 − DENSE_SHARE) × keyword.
# Scores keep what ranks lose: how far ahead a clear match is, how flat a pasted paragraph's
# BM25 tail is, and that a lone keyword match is a full one. Measured with `sift eval` on
# ../shared/data/ir (hybrid nDCG@10 cranfield / cisi, all-MiniLM-L6-v2, int8 index):
# reciprocal-rank fusion (k 30, dense 1.2, tuned there; Sift's fusion before) 0.4125 / 0.4619;
# this, dense share 0.6 0.4200 / 0.4673, 0.65 0.4212 / 0.4749, 0.7 0.4196 / 0.4767, 0.75
# 0.4166 / 0.4708; each side scaled from its own lowest instead (min-max) 0.4121 / 0.4594 at
# 0.65; z-scores 0.4173 / 0.4756 at 0.6, but a side with few matches spreads little there, so
# the one note holding a searched-for code fell below documents that were merely alike. With
# the dense side's best counted as at least a sure match's cosine (see _fuse): 0.4215 / 0.4739
# at 0.65. Known items (bench/known_items.py: a document searched for by one word only it
# holds, by two of its rare words, by that word and two common ones; first place of 150),
# Cranfield / CISI: reciprocal-rank fusion 64 / 40 / 43 and 65 / 48 / 52; this 102 / 70 / 86
# and 95 / 86 / 99 (over the best alone, without the sure match, CISI's were 61 / 62 / 65).
DENSE_SHARE = 0.65

# Stage 2: a cross-encoder over as many fused candidates as the reranker's plan() says, passages
# cut to RERANK_MAX_TOKENS unless the plan fits depth and truncation to its measured speed
# (rerank.py's budget), which CrossEncoderReranker does. Budget ≈ 1 s on a 2-core CPU. Measured here with a MiniLM-L6 cross-encoder (the size of
# ms-marco-MiniLM-L6-v2), query + passage: 100 × 256 tokens 3.6 s, 30 × 256 1.05 s, 50 × 128
# 0.83 s, 30 × 128 0.49 s. 256 tokens hold a whole 200-token chunk and the query.
RERANK_MAX_TOKENS = 256
RERANK_CACHE_SIZE = 20_000

# Pseudo-relevance feedback (an option that learning switches on only when the held-out
# searches of the history improve, see engine/learn.py): the first pass's best FEEDBACK_DOCS
# documents stand for what is relevant. Rocchio moves the query vector toward their best
# passages' mean (by FEEDBACK_BETA, the query's own weight 1); RM3-style, their FEEDBACK_TERMS
# most telling words (frequency in them × rarity in the collection) join the keyword query.
# Measured outside the app: hybrid nDCG@10 +0.023 on Cranfield, −0.013 on CISI; hence gated.
# Under score fusion (dense share 0.65, each side over its best) the query needs the longer
# step: `sift eval`'s default, Cranfield / CISI, β 0.5 0.4224 / 0.4749 (Cranfield's halves
# gained 0.0024 and 0.0089, so only one got feedback), β 1.0 0.4293 / 0.4739 (0.0070, 0.0085;
# CISI's off); under z-scores, 5 documents or 20 words were no better. The widened query's words
# weigh as much as the typed ones in BM25, so, as RM3 interpolates with the original query, a
# chunk's final score keeps FEEDBACK_KEEP of its first-pass fusion (0 when the first pass did not
# find it): Cranfield's default 0.4293 → 0.4343 / 0.4331 / 0.4348 / 0.4348 at 0.15 / 0.2 / 0.3 /
# 0.4, 0.4281 at 0.5; CISI stays off (its halves −0.0132 / −0.0048; always on 0.4649 at 0.3).
FEEDBACK_DOCS = 3
FEEDBACK_BETA = 1.0
FEEDBACK_TERMS = 10
FEEDBACK_KEEP = 0.3
FEEDBACK_CANDIDATE_TERMS = 40   # the commonest words of the feedback passages whose rarity is counted

PASSAGES_PER_HIT = 3
SNIPPET_CHARS = 240

# Words BM25 ignores: NLTK's English list (what bm25s calls "en plus", contractions split as
# FTS5 splits them) and question words. On ../shared/data/ir (bench/bm25_reference.py) the
# 33-word list of bm25s' "en" costs Cranfield 0.010 and CISI 0.027 nDCG@10 against this one.
_STOPWORDS = frozenset("""
a about above after again against ain all am an and any are aren as at be because been before being below
between both but by can couldn d did didn do does doesn doing don down during each few for from further had
hadn has hasn have haven having he her here hers herself him himself his how i if in into is isn it its itself
just ll m ma me mightn more most mustn my myself needn no nor not now o of off on once only or other our ours
ourselves out over own re s same shan she should shouldn so some such t than that the their theirs them
themselves then there these they this those through to too under until up ve very was wasn we were weren what
when where which while who whom why will with won would wouldn y you your yours yourself yourselves
""".split())
STOPWORDS = _STOPWORDS  # public: the GUI leaves the same words unmarked when it highlights
_FILTER = re.compile(r'(?<!\S)(type|in|after|before):("[^"]*"|\S+)', re.IGNORECASE)
_PHRASE = re.compile(r'(?<!\S)(-?)"([^"]+)"')
_EXCLUDE = re.compile(r"(?<!\S)-(\w[\w'-]*)")
_WORD = re.compile(r"\w+", re.UNICODE)

# Suffix aliases for `type:` filters, onto the parser kinds stored in the catalog.
_TYPE_ALIASES = {"doc": "docx", "word": "docx", "ppt": "pptx", "powerpoint": "pptx", "xls": "xlsx",
                 "excel": "xlsx", "htm": "html", "md": "text", "txt": "text", "markdown": "text",
                 "eml": "email", "mail": "email", "odt": "odf", "ods": "odf", "odp": "odf"}


@dataclass(frozen=True, slots=True)
class Query:
    """A query split into what each stage needs."""

    raw: str
    text: str                              # for the embedding model: filters and exclusions removed
    terms: tuple[str, ...] = ()            # words to match and highlight, each once
    phrases: tuple[str, ...] = ()          # "quoted phrases": every hit contains each of them
    excluded: tuple[str, ...] = ()
    where: ChunkFilter = field(default_factory=ChunkFilter)
    words: tuple[str, ...] = ()            # every word as typed (lowercased), repeats kept

    def keywords(self) -> list[str]:
        """The words BM25 matches: the terms less stop words (all of them if nothing else is left)."""
        return [t for t in self.terms if t not in _STOPWORDS] or list(self.terms)

    def weights(self) -> dict[str, int]:
        """How often each keyword occurs in the query: a pasted paragraph names its subject more
        than once. BM25 weighs a query word by its count (as bm25s and Lucene do); FTS5 does when
        the word is repeated in the expression. Without it CISI's BM25 nDCG@10 drops 0.408 → 0.314."""
        counts = dict.fromkeys(self.keywords(), 0)
        for w in self.words:
            if w in counts:
                counts[w] += 1
        return {w: max(1, n) for w, n in counts.items()}

    def fts(self, words: Sequence[str] | None = None, *, every: bool = False, repeat: bool = True) -> str | None:
        """The FTS5 MATCH expression: any keyword (BM25 ranks), every phrase, none of the excluded.

        words: match only these of the query's keywords (default: all of them).
        every: chunks must hold all of those words.
        repeat: a word occurring n times in the query is n terms of the expression (its weight)."""
        words = self.keywords() if words is None else words
        weights = self.weights() if repeat and not every else {}
        parts = [_quote(w) for w in words for _ in range(weights.get(w, 1))]
        if every and len(parts) > 1:
            parts = ["(" + " AND ".join(parts) + ")"]
        phrases = [_quote(p) for p in self.phrases]
        if not parts and not phrases:
            return None
        expr = " OR ".join(parts)
        if phrases:
            required = " AND ".join(phrases)
            expr = f"({expr}) AND {required}" if parts else required
        if self.excluded:
            expr = f"({expr}) NOT ({self.exclusions()})"
        return expr

    def exclusions(self) -> str:
        """The FTS5 expression matching any excluded word ('' when none is)."""
        return " OR ".join(_quote(x) for x in self.excluded)

    def required(self) -> str | None:
        """The FTS5 expression every hit must match (its phrases, none of its exclusions); None: no constraint."""
        if not self.phrases:
            return None
        expr = " AND ".join(_quote(p) for p in self.phrases)
        if self.excluded:
            expr = f"({expr}) NOT ({self.exclusions()})"
        return expr


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _date_ns(value: str) -> int:
    try:
        return int(datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp() * 1e9)
    except ValueError:
        raise SiftError(f"{value!r} is not a date; write dates as YYYY-MM-DD, e.g. after:2024-01-01.") from None


def nothing_found(raw: str, *, filters: bool = False) -> str:
    """What a search that found nothing says: words alone always find the closest passages, so
    it was the filters (chosen: `filters`, or typed: type:, in:, after:) or a quoted phrase."""
    query = parse_query(raw)
    if filters or query.where:
        return "No documents match these filters"
    if query.phrases:
        return "No document contains " + " and ".join(f"\u201c{p}\u201d" for p in query.phrases)
    return f"Nothing found for \u201c{raw.strip()}\u201d"


def parse_query(raw: str, *, folders_base: Sequence[str] = (), literal: bool = False) -> Query:
    """Split `"exact phrase" -excluded type:pdf in:folder after:2024-01-01 words` into its parts.

    literal: the text is only words (a test collection's query, a pasted paragraph): quotes,
    dashes and colons in it are not syntax."""
    if literal:
        text = " ".join(raw.split())
        words = tuple(w.lower() for w in _WORD.findall(text))
        return Query(raw=raw, text=text, terms=tuple(dict.fromkeys(words)), words=words)
    kinds, folders, after, before = [], [], None, None
    for m in _FILTER.finditer(raw):
        key, value = m.group(1).lower(), m.group(2).strip('"')
        if key == "type":
            kinds += [_TYPE_ALIASES.get(v, v) for v in value.lower().lstrip(".").split(",") if v]
        elif key == "in":
            folders.append(_resolve_folder(value, folders_base))
        elif key == "after":
            after = _date_ns(value)
        else:
            before = _date_ns(value)
    rest = _FILTER.sub(" ", raw)
    phrases: list[str] = []
    excluded: list[str] = []
    for m in _PHRASE.finditer(rest):
        (excluded if m.group(1) else phrases).append(m.group(2).strip())
    rest = _PHRASE.sub(lambda m: " " if m.group(1) else f" {m.group(2)} ", rest)
    excluded += _EXCLUDE.findall(rest)
    rest = _EXCLUDE.sub(" ", rest)
    text = " ".join(rest.split())
    words = tuple(w.lower() for w in _WORD.findall(text))
    terms = tuple(dict.fromkeys(words))
    return Query(raw=raw, text=text, terms=terms, words=words, phrases=tuple(p for p in phrases if p),
                 excluded=tuple(excluded),
                 where=ChunkFilter(kinds=tuple(dict.fromkeys(kinds)), folders=tuple(folders),
                                   after_ns=after, before_ns=before))


def _resolve_folder(value: str, bases: Sequence[str]) -> str:
    """`in:` takes an absolute path, or a folder name found under one of the roots."""
    value = os.path.expanduser(value)
    if os.path.isabs(value):
        return os.path.normpath(value)
    for base in bases:
        candidate = os.path.join(base, value)
        if os.path.isdir(candidate):
            return os.path.normpath(candidate)
    return os.path.normpath(os.path.join(bases[0], value)) if bases else os.path.abspath(value)


# -- snippets -----------------------------------------------------------------------------------


_stem = word_stem  # highlighting and the keyword evidence of a good match find words alike


def _term_pattern(query: Query) -> re.Pattern | None:
    """Query words as prefixes (so 'descale' lights up 'descaling'), and phrases verbatim."""
    stems = sorted({_stem(t) for t in query.terms if t not in _STOPWORDS}, key=len, reverse=True)
    alternatives = [r"\s+".join(map(re.escape, p.split())) for p in query.phrases]
    alternatives += [r"\b" + re.escape(s) + r"\w*" for s in stems]
    return re.compile("|".join(alternatives), re.IGNORECASE) if alternatives else None


def make_snippet(text: str, query: Query, width: int = SNIPPET_CHARS) -> tuple[str, tuple[Span, ...]]:
    """A window of the text around the densest cluster of query words, and their spans in it."""
    pattern = _term_pattern(query)
    matches = [m.span() for m in pattern.finditer(text)] if pattern else []
    start = 0
    if matches and len(text) > width:
        # The window start (at a match) that covers the most matches.
        best, best_count = matches[0][0], 0
        for i, (s, _) in enumerate(matches):
            count = sum(1 for ms, me in matches[i:] if me <= s + width)
            if count > best_count:
                best, best_count = s, count
        start = max(0, best - width // 4)
        space = text.rfind(" ", 0, start)
        start = space + 1 if space >= 0 and start - space < 30 else start
    end = min(len(text), start + width)
    if end < len(text):
        space = text.rfind(" ", start + width // 2, end)
        end = space if space > 0 else end
    prefix = "… " if start > 0 else ""
    suffix = " …" if end < len(text) else ""
    # Collapse whitespace but keep the span arithmetic exact.
    out, spans, mapped = [prefix], [], {}
    pos = len(prefix)
    prev_space = False
    for i in range(start, end):
        ch = text[i]
        if ch.isspace():
            if prev_space:
                mapped[i] = pos
                continue
            ch, prev_space = " ", True
        else:
            prev_space = False
        mapped[i] = pos
        out.append(ch)
        pos += 1
    mapped[end] = pos
    for s, e in matches:
        if s >= start and e <= end:
            spans.append((mapped[s], mapped[e - 1] + 1))
    return "".join(out) + suffix, tuple(spans)


# -- the pipeline -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Candidate:
    chunk_id: int
    dense_rank: int | None = None
    keyword_rank: int | None = None
    learned: float | None = None       # the learned list's score (engine/learn.py), when it has the chunk
    dense_score: float | None = None   # cosine similarity to the query, when the dense side found the chunk
    keyword_score: float | None = None  # BM25, when the keyword side found it
    fused: float = 0.0
    rerank: float | None = None


class LearnedSource(Protocol):
    """Stage 1's third list: passages scored by what opens taught (engine/learn.py's Learned)."""

    @property
    def weight(self) -> float: ...

    @property
    def feedback(self) -> bool: ...   # pseudo-relevance feedback on (chosen on held-out searches)

    def passages(self, *, terms: Sequence[str], q: np.ndarray | None, embedder: Embedder,
                 where: ChunkFilter) -> list[tuple[int, float]]: ...


class _Similarity:
    """Shown relevance: a passage's cosine similarity to the query, which says how close a match
    is (ranks only say what came first; ordering stays by fusion). Dense candidates have theirs
    from stage 1; keyword-only ones are looked up when they are about to be shown (prefetch)."""

    def __init__(self, q: np.ndarray, known: dict[int, float], catalog: Catalog, model_id: str) -> None:
        self.q, self.known, self.catalog, self.model_id = q, known, catalog, model_id

    def prefetch(self, cands: Sequence[_Candidate]) -> None:
        missing = [c.chunk_id for c in cands if c.chunk_id not in self.known]
        if missing:
            found, vecs = self.catalog.chunk_vectors(self.model_id, missing)
            self.known.update(zip(found.tolist(), (vecs @ self.q).tolist()))

    def __call__(self, c: _Candidate) -> float:
        return max(0.0, min(1.0, self.known.get(c.chunk_id, 0.0)))


class _Label:
    """Each shown hit's match, good or weak (engine/match.py), from its passage's keywords and
    its cosine on this index's calibrated scale. Labels only: the order stays the fusion's."""

    def __init__(self, judge: MatchJudge, weights: dict[str, float], similarity: _Similarity | None,
                 calibration: Calibration | None) -> None:
        self.judge, self.weights, self.similarity, self.calibration = judge, weights, similarity, calibration

    def prefetch(self, cands: Sequence[_Candidate]) -> None:
        if self.similarity is not None:
            self.similarity.prefetch(cands)

    def __call__(self, c: _Candidate, row: ChunkRow) -> str:
        cosine = self.similarity.known.get(c.chunk_id) if self.similarity is not None else None
        good = self.judge.is_good(text=row.text, cosine=cosine, weights=self.weights, calibration=self.calibration)
        return GOOD if good else WEAK


def _fuse(cands: list[_Candidate], rows: dict[int, ChunkRow], learned_weight: float = 0.0, *,
          sure: float | None = None) -> None:
    """Score fusion at the document level, passed down to chunks.

    Each side scores a document by its best chunk (cosine, BM25) over the best document's, so
    the side's first document scores 1 and one it did not return 0 (Bruch et al.'s "theoretical
    min-max"). The dense side's best counts as at least `sure`, the cosine of a sure match on
    this index (engine/match.py's calibration ceiling): when nothing is close in meaning (a rare
    word, a code), its likeliest passages cannot claim a full share against the one document
    holding the word. A document's fused score adds both sides by DENSE_SHARE, so a document
    whose best keyword passage and best semantic passage differ gets credit for both. A chunk scores its
    document's fusion, plus a small share of its own, so the document's best-matching chunk leads
    its passages.

    The learned list (what opens taught) adds by score: learned_weight × its best chunk's score
    × the mean share of a side (what a first place on one side is worth), so a faint likeness to
    a learned query adds little however high it ranks among the learned passages. Without
    learned scores nothing changes.
    """
    shares = {"dense": DENSE_SHARE, "keyword": 1.0 - DENSE_SHARE}
    best: dict[str, dict[int, float]] = {"dense": {}, "keyword": {}}
    for c in cands:
        fid = rows[c.chunk_id].file_id
        for side, value in (("dense", c.dense_score), ("keyword", c.keyword_score)):
            if value is not None and value > best[side].get(fid, -np.inf):
                best[side][fid] = value
    tops = {side: max(docs.values()) for side, docs in best.items() if docs}
    if sure is not None and "dense" in tops:
        tops["dense"] = max(tops["dense"], sure)
    weight = {side: shares[side] / (top if top > 1e-12 else 1.0) for side, top in tops.items()}
    for c in cands:
        fid = rows[c.chunk_id].file_id
        doc = sum(w * best[side].get(fid, 0.0) for side, w in weight.items())
        own = sum(w * ((c.dense_score if side == "dense" else c.keyword_score) or 0.0) for side, w in weight.items())
        c.fused = doc + 1e-3 * own
    if learned_weight > 0 and any(c.learned for c in cands):
        first_place = float(np.mean([shares[side] for side in tops])) if tops else 1.0
        learned: dict[int, float] = {}
        for c in cands:
            if c.learned:
                fid = rows[c.chunk_id].file_id
                learned[fid] = max(learned.get(fid, 0.0), c.learned)
        for c in cands:
            doc_best = learned.get(rows[c.chunk_id].file_id)
            if doc_best:
                c.fused += learned_weight * first_place * (doc_best + 1e-3 * (c.learned or 0.0))


@dataclass(frozen=True, slots=True)
class FirstStage:
    """Stage 1 of one search, fused and labelled: what stage 2 reranks and grouping shows."""

    query: Query
    text: str                                # what the reranker is asked
    limit: int
    ranked: list[_Candidate]                 # best first
    rows: dict[int, ChunkRow]
    score: Callable[[_Candidate], float]     # shown relevance without a rerank
    label: _Label | None
    timings: dict[str, float]
    note: str


@dataclass(frozen=True, slots=True)
class SearchResult:
    hits: list[Hit]
    mode: str                         # the mode that actually ran
    timings_ms: dict[str, float]
    note: str = ""                    # e.g. why the reranker did not run
    rerank_depth: int = 0             # candidates the cross-encoder scored (0: no rerank)
    rerank_tokens: int = 0            # the truncation it used, in tokens per (query, passage) pair
    total: int = 0                    # documents stage 1 found, of which `hits` are the first (0: not counted)
    # A hybrid result's stage 1, for Searcher.rerank (None: nothing to rerank, or reranked already).
    first_stage: FirstStage | None = field(default=None, compare=False, repr=False)

    @property
    def good_matches(self) -> int:
        """How many hits are good matches (the rest are loosely related)."""
        return sum(1 for h in self.hits if h.match == GOOD)


class Searcher:
    """Runs queries against one catalog, vector index, embedder and (optional) reranker."""

    def __init__(self, *, catalog: Catalog, embedder: Callable[[], Embedder], vectors: Callable[[], VectorIndex],
                 reranker: Callable[[], Reranker | None], roots: Callable[[], Sequence[str]],
                 precise_index: Callable[[], bool],
                 learned: Callable[[], LearnedSource | None] = lambda: None) -> None:
        self.catalog = catalog
        self._learned = learned  # None: learning off, and stage 1 is exactly the two lists
        self._embedder = embedder
        self._vectors = vectors
        self._reranker = reranker
        self._roots = roots
        self._precise_index = precise_index
        self._rerank_cache: OrderedDict[tuple[str, int, str, int], float] = OrderedDict()
        self.judge = MatchJudge(catalog)
        # BM25 runs here, beside the query embedding and ANN on the calling thread (SQLite and
        # torch both release the GIL), with its own catalog connection.
        self._keyword_thread: ThreadPoolExecutor | None = None

    def close(self) -> None:
        if self._keyword_thread is not None:
            self._keyword_thread.submit(self.catalog.close)  # that thread's connection
            self._keyword_thread.shutdown(wait=True)
            self._keyword_thread = None

    def _keywords_beside(self, query: Query) -> Future:
        if self._keyword_thread is None:
            self._keyword_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sift-keywords")
        return self._keyword_thread.submit(self._timed_keyword_search, query)

    def _timed_keyword_search(self, query: Query) -> tuple[list[tuple[int, float]], float, dict[str, float]]:
        """BM25's candidates, its time, and the keywords' weights for labelling (counted on the
        same thread, beside the dense side)."""
        t = time.perf_counter()
        found = self._keyword_search(query)
        ms = (time.perf_counter() - t) * 1000
        return found, ms, self.judge.keyword_weights(query.keywords(), query.weights())

    def _calibration(self) -> Calibration | None:
        embedder = self._embedder()

        def nearest(v: np.ndarray) -> float:
            _, sims = self._ann(v, 10, ChunkFilter())
            return float(sims[0]) if len(sims) else 0.0

        return self.judge.calibration(embedder.model_id, embed_query=embedder.embed_query, nearest=nearest)

    def search(self, raw: str, *, limit: int = 10, mode: str = "auto", literal: bool = False) -> SearchResult:
        if mode not in MODES:
            raise SiftError(f"Unknown search mode {mode!r}; use one of {', '.join(MODES)}.")
        timings: dict[str, float] = {}
        query = parse_query(raw, folders_base=self._roots(), literal=literal)
        reranker = self._reranker() if mode in ("auto", "rerank") else None
        note = ""
        if mode == "rerank" and reranker is None:
            note = "no reranker installed: results are from the first stage alone"
        ran = "rerank" if reranker is not None else ("hybrid" if mode in ("auto", "rerank") else mode)
        if limit < 1:
            return SearchResult([], ran, timings, note)
        if len(query.text.strip()) < 2 and not query.phrases:
            if not query.where:
                return SearchResult([], ran, timings, "type at least two characters")
            # Only filters ("type:pdf"): the most recent matching documents.
            ids = self.catalog.recent_files(limit=limit, where=query.where)
            rows = self.catalog.chunks_by_id(ids)
            recent = [_Candidate(i) for i in ids if i in rows]
            # Every one matches the filters exactly: good matches all.
            return SearchResult(self._group(recent, rows, query, limit, score=lambda c: 1.0), "filter", timings, note)

        cands: dict[int, _Candidate] = {}
        q = None
        similarity: dict[int, float] = {}
        keywords = self._keywords_beside(query) if ran in ("hybrid", "rerank") else None
        if ran in ("dense", "hybrid", "rerank"):
            t = time.perf_counter()
            q = self._embedder().embed_query(query.text or " ".join(query.phrases))
            keys, sims = self._ann(q, DENSE_DEPTH, query.where)
            similarity = dict(zip(keys, np.asarray(sims, dtype=float).tolist()))
            for rank, (cid, cosine) in enumerate(similarity.items(), 1):
                c = cands.setdefault(cid, _Candidate(cid))
                c.dense_rank, c.dense_score = rank, cosine
            timings["dense"] = (time.perf_counter() - t) * 1000
        weights: dict[str, float] | None = None
        if ran in ("bm25", "hybrid", "rerank"):
            found, timings["bm25"], weights = keywords.result() if keywords else self._timed_keyword_search(query)
            for rank, (cid, bm25) in enumerate(found, 1):
                c = cands.setdefault(cid, _Candidate(cid))
                c.keyword_rank, c.keyword_score = rank, bm25
        learned = self._learned() if ran in ("hybrid", "rerank") else None
        if learned is not None and learned.weight > 0:
            t = time.perf_counter()
            for cid, value in learned.passages(terms=[*query.keywords(), *query.phrases], q=q,
                                               embedder=self._embedder(), where=query.where):
                cands.setdefault(cid, _Candidate(cid)).learned = value
            timings["learned"] = (time.perf_counter() - t) * 1000
        cands = self._constrained(query, cands)
        calibration = self._calibration() if q is not None else None
        sure = calibration.ceiling if calibration is not None else None
        ranked, rows = self._fused(cands, learned.weight if learned is not None else 0.0, sure)
        if learned is not None and learned.feedback and q is not None and ranked:
            t = time.perf_counter()
            ranked, rows = self._feedback(query, q, ranked, rows, cands, learned.weight, sure)
            timings["feedback"] = (time.perf_counter() - t) * 1000

        # Shown relevance: the cosine when there is a query vector, else BM25 against the best one's.
        top_bm25 = max((c.keyword_score or 0.0 for c in ranked), default=0.0) or 1.0
        score: Callable[[_Candidate], float] = lambda c: (c.keyword_score or 0.0) / top_bm25
        cosines = None
        if q is not None and ranked:
            score = cosines = _Similarity(q, similarity, self.catalog, self._embedder().model_id)
        label = None
        if ranked:
            t = time.perf_counter()
            if weights is None:
                weights = self.judge.keyword_weights(query.keywords(), query.weights())
            label = _Label(self.judge, weights, cosines, calibration)
            timings["label"] = (time.perf_counter() - t) * 1000
        stage = FirstStage(query, query.text or raw, limit, ranked, rows, score, label, timings, note)
        return self._second_stage(stage, ran, reranker)

    def rerank(self, result: SearchResult) -> SearchResult:
        """Stage 2 over a hybrid result's stage 1, not run again: what an "auto" search gives
        with the reranker. The result as it is when there is no reranker or nothing to rerank."""
        reranker = self._reranker()
        if reranker is None or result.first_stage is None:
            return result
        return self._second_stage(result.first_stage, "rerank", reranker)

    def _second_stage(self, stage: FirstStage, ran: str, reranker: Reranker | None) -> SearchResult:
        """The reranker over the head of stage 1 (when there is one), then one hit per document."""
        ranked, rows, score = stage.ranked, stage.rows, stage.score
        timings = dict(stage.timings)
        depth = tokens = 0
        if reranker is not None and ranked:
            t = time.perf_counter()
            plan = reranker.plan()
            depth, tokens = plan.depth, plan.max_tokens
            head = ranked[:depth]
            self._rerank(reranker, stage.text, head, rows, tokens)
            head.sort(key=lambda c: (-(c.rerank or 0.0), -c.fused))
            ranked = head + ranked[depth:]
            timings["rerank"] = (time.perf_counter() - t) * 1000
            # Reranked passages first by the cross-encoder's probability, the rest below them.
            score = lambda c: float(1 / (1 + np.exp(-c.rerank))) if c.rerank is not None else 0.0
        t = time.perf_counter()
        hits = self._group(ranked, rows, stage.query, stage.limit, score, stage.label)
        total = len({rows[c.chunk_id].content_hash or ("file", rows[c.chunk_id].file_id) for c in ranked})
        timings["group"] = (time.perf_counter() - t) * 1000
        return SearchResult(hits, ran, timings, stage.note, rerank_depth=depth if ranked else 0, rerank_tokens=tokens,
                            total=max(total, len(hits)), first_stage=stage if ran == "hybrid" else None)

    def _constrained(self, query: Query, cands: dict[int, _Candidate]) -> dict[int, _Candidate]:
        """The dense side knows nothing of "phrases" and -words: keep only the chunks that hold
        every phrase, and drop those holding an excluded word."""
        if query.phrases:
            allowed = self.catalog.matching_ids(query.required() or "", among=cands)
            cands = {cid: c for cid, c in cands.items() if cid in allowed}
        elif query.excluded:
            banned = self.catalog.matching_ids(query.exclusions(), among=cands)
            cands = {cid: c for cid, c in cands.items() if cid not in banned}
        return cands

    def _fused(self, cands: dict[int, _Candidate], learned_weight: float,
               sure: float | None) -> tuple[list[_Candidate], dict[int, ChunkRow]]:
        """The candidates still in the catalog in fused order (best first), and their rows."""
        rows = self.catalog.chunks_by_id(list(cands))
        ranked = [c for c in cands.values() if c.chunk_id in rows]
        _fuse(ranked, rows, learned_weight, sure=sure)
        ranked.sort(key=lambda c: (-c.fused, c.chunk_id))
        return ranked, rows

    def _feedback(self, query: Query, q: np.ndarray, ranked: list[_Candidate], rows: dict[int, ChunkRow],
                  cands: dict[int, _Candidate],
                  learned_weight: float, sure: float | None) -> tuple[list[_Candidate], dict[int, ChunkRow]]:
        """Stage 1 again with the query widened by the first pass's best documents, each chunk
        keeping FEEDBACK_KEEP of its first-pass score (see FEEDBACK_DOCS)."""
        first = {c.chunk_id: c.fused for c in ranked}
        top: list[int] = []
        seen: set[int] = set()
        for c in ranked:
            fid = rows[c.chunk_id].file_id
            if fid not in seen:
                seen.add(fid)
                top.append(c.chunk_id)
                if len(top) == FEEDBACK_DOCS:
                    break
        _, vecs = self.catalog.chunk_vectors(self._embedder().model_id, top)
        moved = q + FEEDBACK_BETA * vecs.mean(axis=0) if len(vecs) else q
        moved = moved / (np.linalg.norm(moved) or 1.0)
        keys, sims = self._ann(moved.astype(np.float32), DENSE_DEPTH, query.where)
        terms = self._feedback_terms(query, [rows[cid].text for cid in top])
        widened = dataclasses.replace(query, terms=query.terms + tuple(terms)) if terms else query
        found = self._keyword_search(widened)
        for c in cands.values():
            c.dense_rank = c.keyword_rank = c.dense_score = c.keyword_score = None
        for rank, (cid, cosine) in enumerate(zip(keys, np.asarray(sims, dtype=float).tolist()), 1):
            c = cands.setdefault(cid, _Candidate(cid))
            c.dense_rank, c.dense_score = rank, cosine
        for rank, (cid, bm25) in enumerate(found, 1):
            c = cands.setdefault(cid, _Candidate(cid))
            c.keyword_rank, c.keyword_score = rank, bm25
        cands = self._constrained(query, {cid: c for cid, c in cands.items()
                                          if c.dense_rank or c.keyword_rank or c.learned})
        ranked, rows = self._fused(cands, learned_weight, sure)
        for c in ranked:
            c.fused = FEEDBACK_KEEP * first.get(c.chunk_id, 0.0) + (1 - FEEDBACK_KEEP) * c.fused
        ranked.sort(key=lambda c: (-c.fused, c.chunk_id))
        return ranked, rows

    def _feedback_terms(self, query: Query, texts: Sequence[str]) -> list[str]:
        """The feedback passages' most telling words not in the query: share of each passage × rarity."""
        weight: dict[str, float] = {}
        for text in texts:
            words = [w for w in _WORD.findall(text.lower())
                     if len(w) > 2 and not w.isdigit() and w not in _STOPWORDS and w not in query.terms]
            for w in words:
                weight[w] = weight.get(w, 0.0) + 1.0 / len(words)
        common = sorted(weight, key=lambda w: (-weight[w], w))[:FEEDBACK_CANDIDATE_TERMS]
        scored = {w: weight[w] * np.log(1 + KEYWORD_MAX_SCORED / (1 + self.catalog.count_matches(
            _quote(w), cap=KEYWORD_MAX_SCORED))) for w in common}
        return sorted(scored, key=lambda w: (-scored[w], w))[:FEEDBACK_TERMS]

    def _keyword_search(self, query: Query) -> list[tuple[int, float]]:
        """BM25 over FTS5 of the expression _keyword_plan chooses, given up after KEYWORD_BUDGET_MS."""
        expr = self._keyword_plan(query)
        if expr is None:
            return []
        found = self.catalog.keyword_search(expr, limit=KEYWORD_DEPTH, where=query.where,
                                            budget_s=KEYWORD_BUDGET_MS / 1000)
        if found is None:
            log.info("keyword search over its %d ms budget: dense results only", KEYWORD_BUDGET_MS)
        return found or []

    def _keyword_plan(self, query: Query) -> str | None:
        """The query's FTS5 expression, narrowed when BM25 would score more than
        KEYWORD_MAX_SCORED chunks.

        Each word's chunks are counted first (cheap, and no further than could matter). When
        they add up to more, BM25 runs over the rarest words that fit, at most KEYWORD_MAX_WORDS
        of them (scoring costs about 65 ns more a chunk for each word: a pasted paragraph of 100
        words took 150 ms over 20k chunks at 1M); common words weigh little in BM25 (low IDF) and the
        dense side still matches on them. When even the rarest word is over, it runs over the
        chunks holding the three rarest words together. Small collections are never narrowed:
        capping words always cost CISI's long queries BM25 nDCG@10 0.338 → 0.312 (16 words): a
        catalog of at most KEYWORD_MAX_SCORED chunks is scored whole whatever the words."""
        expr = query.fts()
        words = query.keywords()
        if expr is None or len(words) < 2 or self.catalog.chunk_id_bound() <= KEYWORD_MAX_SCORED:
            return expr
        counts: dict[str, int] = {}
        cap, total = KEYWORD_MAX_SCORED + 1, 0
        for w in words:
            counts[w] = self.catalog.count_matches(_quote(w), cap=cap)
            total += counts[w]
            if total > KEYWORD_MAX_SCORED and len(counts) >= KEYWORD_MAX_WORDS:
                # Narrowing for sure: a word commoner than the rarest few counted will not be kept.
                cap = min(cap, sorted(counts.values())[KEYWORD_MAX_WORDS - 1] + 1)
        if total <= KEYWORD_MAX_SCORED:
            return expr
        rarest = sorted(words, key=counts.__getitem__)[:KEYWORD_MAX_WORDS]
        kept, total = [], 0
        for w in rarest:
            if total + counts[w] > KEYWORD_MAX_SCORED:
                break
            kept.append(w)
            total += counts[w]
        if not kept:
            # BM25's IDF walks every chunk list in the expression, so the AND holds only three
            # words (at 1M chunks the AND of 10 common words took 51 ms, of its 3 rarest 7 ms),
            # the rarest by a count among the newest chunks (the counts above all stopped at cap).
            sample = {w: self.catalog.count_matches(_quote(w), cap=RARITY_SAMPLE, among_last=RARITY_SAMPLE)
                      for w in rarest}
            rarest = sorted(rarest, key=sample.__getitem__)[:3]
        # Narrowed, each word counts once: its repeats would cost as much as more words would.
        narrow = query.fts(kept, repeat=False) if kept else query.fts(rarest, every=True)
        log.debug("keyword search narrowed to %s (chunks per word: %s)", narrow, counts)
        return narrow

    def similar(self, chunk_ids: Sequence[int], *, limit: int, exclude_file: int | None) -> list[Hit]:
        """Documents near the mean of these chunks' vectors (find-similar)."""
        embedder = self._embedder()
        _, vecs = self.catalog.chunk_vectors(embedder.model_id, chunk_ids)
        if not len(vecs):
            return []
        q = vecs.mean(axis=0)
        q /= np.linalg.norm(q) or 1.0
        # A long document's own passages are the nearest to its mean and are left out: ask past
        # them, and further while too few other documents came back (`similar -n 3` gave 1).
        depth = DENSE_DEPTH + len(chunk_ids)
        while True:
            keys, sims = self._ann(q, depth, ChunkFilter())
            rows = self.catalog.chunks_by_id(keys)
            ranked = [_Candidate(int(k), dense_rank=r, dense_score=float(s), fused=float(s))
                      for r, (k, s) in enumerate(zip(keys, sims), 1)
                      if int(k) in rows and rows[int(k)].file_id != exclude_file]
            if len({rows[c.chunk_id].file_id for c in ranked}) >= limit or len(keys) < depth:
                break
            depth *= 4
        return self._group(ranked, rows, parse_query(""), limit, lambda c: max(0.0, min(1.0, c.fused)))

    # stage 1 ----------------------------------------------------------------------------------

    def _ann(self, q: np.ndarray, depth: int, where: ChunkFilter) -> tuple[list[int], np.ndarray]:
        """Nearest chunks to q, exact-rescored with the catalog's f16 vectors when the index is coarse."""
        model_id = self._embedder().model_id
        if where:
            allowed = self.catalog.chunk_ids_where(where)
            if len(allowed) <= EXACT_FILTER_MAX:
                return self._exact(q, allowed, depth, model_id)
            keys, _ = self._vectors().search(q, depth * RESCORE_OVERSAMPLE * 4)
            keys = keys[np.isin(keys, allowed)]
        else:
            index = self._vectors()
            oversample = 0 if self._precise_index() else OVERSAMPLE_BY_DTYPE.get(index.dtype, RESCORE_OVERSAMPLE)
            keys, sims = index.search(q, depth * max(1, oversample))
            if oversample <= 0:
                return [int(k) for k in keys[:depth]], sims[:depth]
        return self._exact(q, keys, depth, model_id)

    def _exact(self, q: np.ndarray, ids: np.ndarray, depth: int, model_id: str) -> tuple[list[int], np.ndarray]:
        found, vecs = self.catalog.chunk_vectors(model_id, ids.tolist())
        if not len(found):
            return [], np.empty(0, dtype=np.float32)
        sims = vecs @ q
        order = np.argsort(-sims, kind="stable")[:depth]
        return [int(found[i]) for i in order], sims[order]

    # stage 2 ----------------------------------------------------------------------------------

    def _rerank(self, reranker: Reranker, text: str, cands: list[_Candidate], rows: dict[int, ChunkRow],
                tokens: int = 0) -> None:
        """Cross-encoder scores for these candidates, cached per (model, truncation, query, chunk).

        tokens: the truncation the reranker's plan chose (0: the reranker's own setting).
        """
        todo = [c for c in cands if (reranker.model_id, tokens, text, c.chunk_id) not in self._rerank_cache]
        if todo:
            passages = [rows[c.chunk_id].text for c in todo]
            scores = reranker.score(text, passages, max_tokens=tokens or None)
            for c, s in zip(todo, scores):
                self._rerank_cache[(reranker.model_id, tokens, text, c.chunk_id)] = float(s)
            while len(self._rerank_cache) > RERANK_CACHE_SIZE:
                self._rerank_cache.popitem(last=False)
        for c in cands:
            key = (reranker.model_id, tokens, text, c.chunk_id)
            c.rerank = self._rerank_cache[key]
            self._rerank_cache.move_to_end(key)

    # grouping -----------------------------------------------------------------------------------

    def _group(self, ranked: list[_Candidate], rows: dict[int, ChunkRow], query: Query, limit: int,
               score: Callable[[_Candidate], float], label: _Label | None = None) -> list[Hit]:
        """One hit per document (best chunk first), further chunks as passages, same content collapsed.

        score gives each shown chunk its relevance; one with a `prefetch(candidates)` method is
        told first which candidates will be shown (see _Similarity). label: each hit's match
        (default: good)."""
        docs: dict[object, tuple[_Candidate, list[_Candidate]]] = {}
        for c in ranked:
            row = rows[c.chunk_id]
            key = row.content_hash or ("file", row.file_id)
            if key in docs:
                best, more = docs[key]
                if rows[best.chunk_id].file_id == row.file_id and len(more) < PASSAGES_PER_HIT:
                    more.append(c)
            elif len(docs) < limit:
                docs[key] = (c, [])
        shown = [c for best, more in docs.values() for c in (best, *more)]
        for source in (score, label):  # idempotent: the second finds nothing missing
            prefetch = getattr(source, "prefetch", None)
            if prefetch is not None:
                prefetch(shown)
        hits = []
        for best, more in docs.values():
            row = rows[best.chunk_id]
            snippet, spans = make_snippet(row.text, query)
            passages = []
            for c in more:
                prow = rows[c.chunk_id]
                ptext, pspans = make_snippet(prow.text, query)
                passages.append(Passage(chunk_id=c.chunk_id, page=prow.page, snippet=ptext, highlights=pspans,
                                        score=score(c)))
            duplicates: tuple[str, ...] = ()
            if row.content_hash:
                duplicates = tuple(p for p in self.catalog.paths_with_content(row.content_hash) if p != row.path)
            hits.append(Hit(path=row.path, score=score(best), page=row.page, snippet=snippet, chunk_id=row.id,
                            start=row.start, end=row.end, kind=row.kind or "", mtime=row.mtime_ns / 1e9,
                            highlights=spans, passages=tuple(passages), duplicates=duplicates,
                            match=label(best, row) if label is not None else GOOD,
                            why=Why(dense_rank=best.dense_rank, keyword_rank=best.keyword_rank,
                                    fused_score=best.fused, rerank_score=best.rerank,
                                    learned_score=best.learned)))
        return hits
