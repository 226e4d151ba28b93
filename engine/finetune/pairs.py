"""Training pairs: from the click history, split by query, and from the user's own passages (cold start)."""

from __future__ import annotations

import dataclasses
import math
import random
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from engine.catalog import Catalog, ChunkRow, Click
from engine.errors import check_cancel
from engine.finetune.options import DataSummary, TrainOptions, TrainRow
from engine.learn import normalize_query  # one query for the split as for learning
from engine.rerank import Reranker
from engine.search import parse_query

# Fewer pairs than this and training is refused: with a few hundred pairs a MiniLM-sized model
# starts to learn a vocabulary instead of a handful of queries (seed guidance of the issue).
MIN_PAIRS = 200
# Fewer held-out queries than this and a difference in nDCG@10 is noise: nothing is offered.
MIN_HELDOUT_QUERIES = 10
# Results shown up to this many places below the opened one, and not opened, are negatives too.
NEAR_BELOW = 2
# One search whose user opened dozens of results must not outweigh dozens of searches: at most
# this many of a query's pairs are trained on (the first opened); held-out ones are all measured.
MAX_PAIRS_PER_QUERY = 10
COLD_START_MAX_PAIRS = 2000     # pseudo-queries made from the user's passages
COLD_START_MIN_CHUNKS = 50
TEACHER_KEEP = 0.5              # a pseudo-query is kept when the cross-encoder gives it ≥ this probability


@dataclass(frozen=True, slots=True)
class Pair:
    """One (query, opened passage) pair, with the passages shown near it and not opened."""

    raw: str                       # the query as typed (filters and all): what held-out search runs
    query: str                     # what the model sees: filters and exclusions removed
    key: str                       # normalized query: the unit of the train/held-out split
    chunk_id: int
    text: str
    text_hash: str
    path: str
    negatives: tuple[int, ...] = ()   # chunk ids


def _chunks_by_text_hash(catalog: Catalog, hashes: Iterable[str]) -> dict[str, list[ChunkRow]]:
    """Current chunks holding these texts (a re-indexed file gives its passages new ids)."""
    out: dict[str, list[ChunkRow]] = {}
    for row in catalog.chunks_by_id(catalog.chunk_ids_with_texts(hashes)).values():
        out.setdefault(row.text_hash, []).append(row)
    return out


def click_pairs(catalog: Catalog) -> tuple[list[Pair], int]:
    """Deduplicated pairs from the click history, and the number of clicks read.

    A click whose chunk is gone is matched to a current chunk with the same text (a re-indexed
    file); one whose text is nowhere any more is dropped. Negatives: chunks shown above the
    opened one or up to NEAR_BELOW places below it, that still exist, are not in a document
    opened for the same query, and do not hold an opened text.
    """
    clicks = catalog.clicks()
    ids = {c.chunk_id for c in clicks} | {s for c in clicks for s in c.shown}
    rows = catalog.chunks_by_id(sorted(ids))
    by_hash = _chunks_by_text_hash(catalog, {c.text_hash for c in clicks
                                              if c.chunk_id not in rows or rows[c.chunk_id].text_hash != c.text_hash})
    resolved: list[tuple[Click, str, str, ChunkRow]] = []  # (click, model text, key, current chunk)
    for click in clicks:
        text = parse_query(click.query).text.strip()
        key = normalize_query(text)
        if not key:
            continue
        row = rows.get(click.chunk_id)
        if row is None or row.text_hash != click.text_hash:
            same = by_hash.get(click.text_hash, [])
            row = next((r for r in same if r.path == click.path), same[0] if same else None)
        if row is None:
            continue  # stale: the passage no longer exists anywhere
        resolved.append((click, text, key, row))
    opened_paths: dict[str, set[str]] = {}
    opened_hashes: dict[str, set[str]] = {}
    for _, _, key, row in resolved:
        opened_paths.setdefault(key, set()).add(row.path)
        opened_hashes.setdefault(key, set()).add(row.text_hash)
    pairs: dict[tuple[str, str], Pair] = {}
    negatives: dict[tuple[str, str], dict[str, int]] = {}
    for click, text, key, row in resolved:
        ident = (key, row.text_hash)
        if ident not in pairs:
            pairs[ident] = Pair(raw=click.query, query=text, key=key, chunk_id=row.id, text=row.text,
                                text_hash=row.text_hash, path=row.path)
            negatives[ident] = {}
        cut = max(click.rank, 1) + NEAR_BELOW
        for position, shown_id in enumerate(click.shown[:cut], 1):
            if position == click.rank or shown_id == click.chunk_id:
                continue
            shown = rows.get(shown_id)
            if shown is None or shown.path in opened_paths[key] or shown.text_hash in opened_hashes[key]:
                continue
            negatives[ident].setdefault(shown.text_hash, shown.id)
    return [dataclasses.replace(p, negatives=tuple(negatives[ident].values())) for ident, p in pairs.items()], len(clicks)


def split_by_query(pairs: Sequence[Pair], *, heldout_fraction: float = 1 / 3,
                   seed: int = 42) -> tuple[list[Pair], list[Pair]]:
    """(train, held-out): whole queries go to one side, chosen with a fixed seed.

    With two or more queries each side gets at least one; the held-out share is rounded.
    """
    keys = sorted({p.key for p in pairs})
    random.Random(seed).shuffle(keys)
    n = len(keys)
    held = round(n * heldout_fraction)
    if n >= 2:
        held = min(max(held, 1), n - 1)
    heldout_keys = set(keys[:held])
    train = [p for p in pairs if p.key not in heldout_keys]
    heldout = [p for p in pairs if p.key in heldout_keys]
    return train, heldout


def cap_per_query(pairs: Sequence[Pair], limit: int | None = None) -> list[Pair]:
    """The first `limit` (MAX_PAIRS_PER_QUERY) pairs of each query, in their order."""
    limit = MAX_PAIRS_PER_QUERY if limit is None else limit
    seen: dict[str, int] = {}
    out = []
    for p in pairs:
        seen[p.key] = seen.get(p.key, 0) + 1
        if seen[p.key] <= limit:
            out.append(p)
    return out


def _queries(pairs: Iterable[Pair]) -> int:
    return len({p.key for p in pairs})


def summarize(catalog: Catalog, options: TrainOptions | None = None, *,
              history: tuple[list[Pair], int] | None = None) -> DataSummary:
    """What can be trained on now, in numbers and one sentence; reads the catalog only.

    history: click_pairs(catalog) when the caller has read it already."""
    options = (options or TrainOptions()).validate()
    pairs, clicks = history if history is not None else click_pairs(catalog)
    queries = _queries(pairs)
    if options.cold_start:
        chunks = catalog.chunk_count()
        possible = min(chunks, COLD_START_MAX_PAIRS)
        enough = chunks >= COLD_START_MIN_CHUNKS
        if not enough:
            message = (f"Only {chunks} passages are indexed; adapting to your documents needs at least "
                       f"{COLD_START_MIN_CHUNKS}. Add folders and index them first.")
        elif queries >= MIN_HELDOUT_QUERIES:
            message = (f"Up to {possible:,} practice questions can be made from your {chunks:,} passages; "
                       f"the {queries} searches with an opened result will check the new model.")
        elif queries:
            message = (f"Up to {possible:,} practice questions can be made from your {chunks:,} passages, but only "
                       f"{queries} searches with an opened result can check the new model (at least "
                       f"{MIN_HELDOUT_QUERIES} are needed), so it will not be offered for adoption.")
        else:
            message = (f"Up to {possible:,} practice questions can be made from your {chunks:,} passages, but no "
                       "search with an opened result exists yet to check the new model against, so it will not "
                       "be offered for adoption.")
        return DataSummary(clicks=clicks, pairs=possible, queries=queries, train_queries=0,
                           heldout_queries=queries, min_pairs=MIN_PAIRS, enough=enough, message=message)
    train, heldout = split_by_query(pairs, heldout_fraction=options.heldout_fraction, seed=options.seed)
    train_q, held_q = _queries(train), _queries(heldout)
    enough = len(pairs) >= MIN_PAIRS and held_q >= MIN_HELDOUT_QUERIES and train_q > 0
    if enough:
        message = (f"{len(pairs):,} pairs from {queries:,} searches: {train_q:,} searches to learn from, "
                   f"{held_q:,} held out to check the result.")
    else:
        per_search = len(pairs) / queries if queries else 1.0
        more_for_pairs = math.ceil(max(MIN_PAIRS - len(pairs), 0) / max(per_search, 1e-9))
        # Held-out queries are about heldout_fraction of all queries.
        more_for_heldout = math.ceil(max(MIN_HELDOUT_QUERIES / options.heldout_fraction - queries, 0))
        more = max(more_for_pairs, more_for_heldout, 1)
        message = (f"{len(pairs):,} pairs from {queries:,} searches; about {more:,} more searches with an opened "
                   f"result are needed before training (at least {MIN_PAIRS} pairs and "
                   f"{MIN_HELDOUT_QUERIES} held-out searches).")
    return DataSummary(clicks=clicks, pairs=len(pairs), queries=queries, train_queries=train_q,
                       heldout_queries=held_q, min_pairs=MIN_PAIRS, enough=enough, message=message)


# -- cold start: practice questions from the user's own passages --------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")


def _words(text: str) -> int:
    return len(text.split())


def pseudo_query(text: str, *, first_chunk: bool) -> tuple[str, str] | None:
    """A (question, passage) pair made from one passage: its document's title (the first line of
    a document), a heading, or its first sentence, with that line or sentence taken out of the
    passage so the model must match by meaning rather than by copy (the inverse cloze task)."""
    lines = text.splitlines()
    stripped = [ln.strip() for ln in lines]
    nonempty = [i for i, ln in enumerate(stripped) if ln]
    if not nonempty:
        return None
    candidates: list[int] = []
    if first_chunk:
        candidates.append(nonempty[0])
    candidates += [i for i in nonempty if _HEADING.match(lines[i])]
    for i in candidates:
        m = _HEADING.match(lines[i])
        title = (m.group(1) if m else stripped[i]).strip()
        rest = "\n".join(lines[i + 1:]).strip()
        if 2 <= _words(title) <= 20 and len(title) <= 200 and not title.endswith((".", ":")) and _words(rest) >= 20:
            return title, rest
    body = " ".join(text.split())
    parts = _SENTENCE_END.split(body, maxsplit=1)
    if len(parts) == 2 and 4 <= _words(parts[0]) <= 30 and _words(parts[1]) >= 20:
        return parts[0], parts[1]
    return None


def cold_start_pairs(catalog: Catalog, *, limit: int = COLD_START_MAX_PAIRS, seed: int = 42,
                     teacher: Reranker | None = None, min_pairs: int = MIN_PAIRS,
                     cancel: threading.Event | None = None) -> list[Pair]:
    """Pairs of practice questions and passages from a seeded sample of the index.

    With a `teacher` (the installed cross-encoder), pairs it finds unlikely (probability below
    TEACHER_KEEP) are dropped, keeping at least the `min_pairs` it rates best.
    """
    ids = catalog.chunk_ids().tolist()
    random.Random(seed).shuffle(ids)
    pairs: list[Pair] = []
    seen: set[str] = set()
    for start in range(0, len(ids), 1000):
        if len(pairs) >= limit:
            break
        check_cancel(cancel)
        rows = catalog.chunks_by_id(ids[start:start + 1000])
        for cid in ids[start:start + 1000]:
            row = rows.get(cid)
            if row is None:
                continue
            made = pseudo_query(row.text, first_chunk=row.ordinal == 0)
            if made is None:
                continue
            question, passage = made
            key = normalize_query(question)
            if key in seen:
                continue
            seen.add(key)
            pairs.append(Pair(raw=question, query=question, key=key, chunk_id=row.id, text=passage,
                              text_hash=row.text_hash, path=row.path))
            if len(pairs) >= limit:
                break
    if teacher is None or not pairs:
        return pairs
    scores = []
    for p in pairs:
        check_cancel(cancel)
        scores.append(float(teacher.score(p.query, [p.text])[0]))
    probability = 1 / (1 + np.exp(-np.asarray(scores)))
    order = np.argsort(-probability, kind="stable")
    keep = {int(i) for i in order if probability[i] >= TEACHER_KEEP}
    keep |= {int(i) for i in order[:min_pairs]}
    return [p for i, p in enumerate(pairs) if i in keep]


# -- training rows --------------------------------------------------------------------------------


def training_rows(pairs: Sequence[Pair], mined: Mapping[tuple[str, str], Sequence[str]],
                   pool: Mapping[str, ChunkRow], shown: Mapping[int, ChunkRow], *, count: int,
                   seed: int, opened: Iterable[Pair] = ()) -> list[TrainRow]:
    """Rows with exactly `count` negatives each: shown-not-opened first, then mined ones; an easy
    (random) pool passage fills any gap. Never a negative: a passage of a document opened for the
    row's query, nor of a document opened for any query of `opened` (the whole click history,
    held-out searches too): what the user opened is what they care about, so pushing the model
    away from it teaches the wrong thing, and on sparse judgments it is often relevant anyway."""
    opened_paths: dict[str, set[str]] = {}
    opened_texts: dict[str, set[str]] = {}
    for p in pairs:
        opened_paths.setdefault(p.key, set()).add(p.path)
        opened_texts.setdefault(p.key, set()).add(p.text)
    history = list(opened)
    ever_paths = {p.path for p in history}
    ever_texts = {p.text for p in history}
    rng = random.Random(seed)
    pool_texts = sorted(pool)
    rows = []
    for p in pairs:
        negs: list[str] = []
        candidates: list[tuple[str, str | None]] = [(row.text, row.path) for cid in p.negatives
                                                    if (row := shown.get(cid)) is not None]
        candidates += [(text, pool[text].path if text in pool else None) for text in mined.get((p.query, p.text), ())]
        if pool_texts:
            candidates += [(text, pool[text].path) for text in rng.choices(pool_texts, k=20)]
        for text, path in candidates:
            if len(negs) >= count:
                break
            if text in negs or text in opened_texts[p.key] or text in ever_texts:
                continue
            if path is not None and (path in opened_paths[p.key] or path in ever_paths):
                continue
            negs.append(text)
        if len(negs) < count:
            continue  # nothing to contrast it with (a tiny index): leave the pair out
        rows.append(TrainRow(query=p.query, positive=p.text, negatives=tuple(negs)))
    return rows

