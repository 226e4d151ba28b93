"""Good or weak: whether a hit truly matches its query, from keyword and meaning evidence calibrated on this index."""

from __future__ import annotations

import json
import logging
import math
import random
import re
import string
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from engine.catalog import Catalog

log = logging.getLogger(__name__)

GOOD = "good"
WEAK = "weak"

# A cosine means nothing alone: all-MiniLM-L6-v2 gives unrelated text about 0.0-0.3, other
# models 0.7 and more. So the scale is measured on this index with its model and its vector
# precision (the same stage-1 search the queries go through), between two reference points:
#   floor:   the best cosine nonsense (random letter strings) gets in this index;
#   ceiling: the cosine of a sentence of a passage to that passage (a query surely answered).
# A passage is a good match by meaning at MEANING_SHARE of the way from floor to ceiling.
# Measured on ../shared/data/ir with MiniLM (bench/match_quality.py): floor 0.18 / 0.26,
# ceiling 0.68 / 0.66 (Cranfield / CISI); at 0.4, 0.5% / 0% of queries with a relevant top-10
# document see all of them weak, and 97% / 98% of the other collection's queries get no good
# match; 0.3 → 95% / 94%, 0.5 → 1% / 1.5% all weak.
MEANING_SHARE = 0.4
# Or by keywords: the passage holds words carrying this share of the query's keyword weight
# (each word weighs its IDF in this index times its count in the query; a word the index never
# saw weighs the most). A rare name or code found verbatim is a good match whatever the cosine
# (one word against a long passage gives a low one); on ../shared/data/ir this path changes none
# of the figures above (asking a cosine 0.2 of the way up as well changed none either).
KEYWORD_SHARE = 0.7
# Counting a word's chunks costs about 20 ns a chunk: on a larger catalog than RARITY_SAMPLE they
# are counted among the newest that many (bench/keyword_latency.py: at 100k chunks 7 ms for a
# typed query's words, 17 ms for a paragraph's first KEYWORD_MAX_WORDS, on the keyword thread).
KEYWORD_MAX_WORDS = 24        # a pasted paragraph's first words are weighed; meaning covers the rest
RARITY_SAMPLE = 20_000
CALIBRATION_QUERIES = 32      # of each kind; ~0.5 s of query encoding with MiniLM on a CPU
RECALIBRATE_GROWTH = 0.25     # measure again once the catalog grew (or shrank) by this share
_SENTENCE = re.compile(r"(?<=[.?!])\s+")
_META_KEY = "match-calibration:"


def word_stem(word: str) -> str:
    """A prefix that finds the word's other forms: tyres → tyre, descale → desca(ling),
    pressure → pressu(res) (not 'press')."""
    if len(word) > 3 and word.endswith("s"):
        word = word[:-1]
    return word[: max(5, len(word) - 2)] if len(word) > 5 else word


@dataclass(frozen=True, slots=True)
class Calibration:
    """Where this model's cosines lie in this index: nonsense's best (floor), a sure match (ceiling)."""

    model_id: str
    chunks: int            # the catalog's chunk-id bound when measured
    floor: float
    ceiling: float

    def cosine_at(self, share: float) -> float:
        return self.floor + share * max(0.0, self.ceiling - self.floor)

    def stale(self, chunks: int) -> bool:
        return abs(chunks - self.chunks) > RECALIBRATE_GROWTH * max(self.chunks, 1)


def nonsense(n: int, seed: int = 1) -> list[str]:
    """n strings of one to three random lower-case 'words' of 3 to 12 letters."""
    rng = random.Random(seed)
    return [" ".join("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 12)))
                     for _ in range(rng.randint(1, 3))) for _ in range(n)]


def sentence_of(text: str) -> str:
    """A middle sentence of a passage (its first dozen words when it has no sentence of five)."""
    sentences = [s for s in _SENTENCE.split(text) if len(s.split()) >= 5]
    return sentences[len(sentences) // 2] if sentences else " ".join(text.split()[:12])


class MatchJudge:
    """Labels hits good or weak for one catalog; keeps each model's calibration current (in the
    catalog's meta table, so a new process need not measure again)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._lock = threading.Lock()
        self._calibrations: dict[str, Calibration] = {}

    # calibration ---------------------------------------------------------------------------------

    def calibration(self, model_id: str, *, embed_query: Callable[[str], np.ndarray],
                    nearest: Callable[[np.ndarray], float]) -> Calibration | None:
        """This model's calibration, measured now when there is none or the catalog changed size.

        nearest: the best cosine stage 1 finds for a query vector (so the index's precision counts)."""
        bound = self.catalog.chunk_id_bound()
        if bound == 0:
            return None
        with self._lock:
            known = self._calibrations.get(model_id) or self._stored(model_id)
            if known is not None and not known.stale(bound):
                self._calibrations[model_id] = known
                return known
            found = self._measure(model_id, bound, embed_query, nearest)
            if found is not None:
                self._calibrations[model_id] = found
                try:
                    with self.catalog.transaction() as conn:
                        self.catalog.set_meta(conn, _META_KEY + model_id, json.dumps(asdict(found)))
                except Exception as exc:  # read-only or busy: measured again next time, nothing lost
                    log.info("match calibration not stored: %s", exc)
            return found

    def _stored(self, model_id: str) -> Calibration | None:
        raw = self.catalog.get_meta(_META_KEY + model_id)
        try:
            return Calibration(**json.loads(raw)) if raw else None
        except (TypeError, ValueError):
            return None

    def _measure(self, model_id: str, bound: int, embed_query: Callable[[str], np.ndarray],
                 nearest: Callable[[np.ndarray], float]) -> Calibration | None:
        rng = random.Random(bound)
        ids = sorted(rng.sample(range(1, bound + 1), min(bound, CALIBRATION_QUERIES * 4)))
        rows = [r for r in self.catalog.chunks_by_id(ids).values() if len(r.text.split()) >= 5]
        found, vecs = self.catalog.chunk_vectors(model_id, [r.id for r in rows])
        by_id = dict(zip(found.tolist(), vecs))
        rows = [r for r in rows if r.id in by_id][:CALIBRATION_QUERIES]
        if not rows:
            return None
        ceiling = float(np.mean([float(by_id[r.id] @ embed_query(sentence_of(r.text))) for r in rows]))
        floor = float(np.mean([nearest(embed_query(t)) for t in nonsense(CALIBRATION_QUERIES)]))
        log.info("match calibration of %s over %d chunks: floor %.3f, ceiling %.3f", model_id, bound, floor, ceiling)
        return Calibration(model_id=model_id, chunks=bound, floor=floor, ceiling=ceiling)

    # keyword evidence ----------------------------------------------------------------------------

    def keyword_weights(self, keywords: Sequence[str], counts: Mapping[str, int]) -> dict[str, float]:
        """Each keyword's weight: its IDF in this catalog times its count in the query."""
        bound = self.catalog.chunk_id_bound()
        sample = bound > RARITY_SAMPLE
        n = min(bound, RARITY_SAMPLE)
        out = {}
        for w in keywords[:KEYWORD_MAX_WORDS]:
            df = self.catalog.count_matches('"' + w.replace('"', '""') + '"', cap=n,
                                            among_last=RARITY_SAMPLE if sample else None)
            out[w] = max(0.0, math.log((n - df + 0.5) / (df + 0.5))) * counts.get(w, 1)
        return out

    # the label -----------------------------------------------------------------------------------

    def is_good(self, *, text: str, cosine: float | None, weights: Mapping[str, float],
                calibration: Calibration | None) -> bool:
        """Good by meaning (cosine high on this index's scale), or by keywords (most of the
        query's keyword weight in the passage)."""
        if calibration is not None and cosine is not None and cosine >= calibration.cosine_at(MEANING_SHARE):
            return True
        total = sum(weights.values())
        if total <= 0:
            return False
        held = sum(w for word, w in weights.items()
                   if re.search(r"\b" + re.escape(word_stem(word)), text, re.IGNORECASE))
        return held >= KEYWORD_SHARE * total
