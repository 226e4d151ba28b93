"""The fine-tune run: data → baseline → mining → training → embedding → evaluating (→ reranker), one method a stage."""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.catalog import ChunkRow
from engine.device import pick_device
from engine.embed import Embedder, bundled_model_dir, resolve_model, text_hash
from engine.errors import Cancelled, SiftError, check_cancel
from engine.finetune.heldout import EVAL_DEPTH, SearchFn, empty_metrics, gate, heldout_relevance, measure, verdict
from engine.finetune.options import DataSummary, FinetuneProgress, FinetuneResult, Metrics, TrainOptions, TrainRow, TrainSettings
from engine.finetune import pairs as _pairs  # its minimums read at call time (tests lower them)
from engine.finetune.pairs import (
    Pair,
    cap_per_query,
    click_pairs,
    cold_start_pairs,
    split_by_query,
    summarize,
    training_rows,
)
from engine.finetune.trainer import SentenceTransformersTrainer, Trainer, resolve_settings
from engine.models import ModelCard, embedders_dir, new_model_name, rerankers_dir, save_card
from engine.rerank import Reranker
from engine.search import Searcher
from engine.tqdm_hook import tqdm_progress
from engine.vectors import VectorIndex

if TYPE_CHECKING:
    from engine.engine import Engine

log = logging.getLogger(__name__)

# Mining: the corpus is the passages of the top documents of each training query (stage 1), so
# the cost grows with the user's searches, not with the size of the index.
MINING_POOL_DOCS = 10
MINING_RANDOM = 200             # passages drawn from the whole index into the pool
MINING_CANDIDATES = 8           # negatives asked per pair, before same-document ones are dropped
# The shares of the trained weights tried against the base model's (1.0: the trained model).
MIX_GRID = (1.0, 0.75, 0.5, 0.25)
RERANKER_NEGATIVES = 2          # negatives per positive for the cross-encoder (at least hard_negatives)
STALE_SCRATCH_S = 24 * 3600     # a scratch folder this old belongs to no run in progress

_RUN_LOCK = threading.Lock()


def finetune_summary(engine: Engine, options: TrainOptions | None = None) -> DataSummary:
    """How much the engine's click history holds to learn from, and whether it is enough; loads no model."""
    return summarize(engine.catalog, options)


def run_finetune(engine: Engine, options: TrainOptions, *,
                 on_progress: Callable[[FinetuneProgress], None] | None = None,
                 cancel: threading.Event | None = None, trainer: Trainer | None = None) -> FinetuneResult:
    """Train a new bi-encoder (and reranker) from the clicks and measure them on held-out searches.

    data → baseline → mining → training → embedding → evaluating (→ reranker → evaluating).
    Never switches: adopt what passed with `engine.adopt_model(result.embedder)` /
    `engine.adopt_reranker(result.reranker)`. Raises Cancelled (the models in use untouched,
    every folder this run made removed) and SiftError when there is too little data.
    `trainer`: a fake, for tests.
    """
    options = options.validate()
    if not _RUN_LOCK.acquire(blocking=False):
        raise SiftError("A fine-tune is already running; wait for it to finish or cancel it.")
    candidates = _Candidates(engine)
    try:
        run = _Run(engine, options, report=_Reporter(on_progress), cancel=cancel or threading.Event(),
                   trainer=trainer or SentenceTransformersTrainer(), candidates=candidates)
        return run.go()
    except (Cancelled, SiftError, KeyboardInterrupt):
        candidates.discard_all()
        raise
    except Exception as exc:  # a library failing mid-training (out of memory, a bad model folder)
        candidates.discard_all()
        log.exception("fine-tuning failed")
        raise SiftError(f"Fine-tuning failed ({type(exc).__name__}: {exc}). The models in use are unchanged.") from exc
    finally:
        _RUN_LOCK.release()


class _Reporter:
    """Progress per stage, with an ETA from the stage's own pace."""

    def __init__(self, on_progress: Callable[[FinetuneProgress], None] | None) -> None:
        self._on_progress = on_progress
        self._stage = ""
        self._started = time.monotonic()

    def __call__(self, stage: str, done: int, total: int, message: str) -> None:
        if stage != self._stage or done == 0:
            self._stage, self._started = stage, time.monotonic()
        eta = None
        elapsed = time.monotonic() - self._started
        if 0 < done < total and elapsed > 0:
            eta = elapsed / done * (total - done)
        elif total and done >= total:
            eta = 0.0
        if self._on_progress is not None:
            self._on_progress(FinetuneProgress(stage=stage, done=done, total=total, eta_s=eta, message=message))


@dataclasses.dataclass
class _Candidate:
    """What one stage trained: its folder, its card, and what it measured."""

    folder: Path
    card: ModelCard
    metrics: Metrics
    passed: bool
    why: str
    mix: float = 1.0        # the share of the trained weights (the rest the base model's)
    model_id: str = ""      # its bi-encoder's, once loaded (a reranker has none)


class _Run:
    """One fine-tune, its stages in order; each stage leaves what the next needs on `self`."""

    def __init__(self, engine: Engine, options: TrainOptions, *, report: _Reporter, cancel: threading.Event,
                 trainer: Trainer, candidates: _Candidates) -> None:
        self.engine, self.options, self.report, self.cancel = engine, options, report, cancel
        self.trainer, self.candidates = trainer, candidates
        self.config = engine.config
        self.method = "cold-start" if options.cold_start else "clicks"
        self.created = ""
        self.train_seconds = 0.0
        self.mixes: dict[float, Metrics] = {}

    def go(self) -> FinetuneResult:
        _remove_stale_partials(self.engine)
        self.data()
        check_cancel(self.cancel)
        before = self.baseline()
        workroot = Path(tempfile.mkdtemp(prefix="sift-finetune-", dir=self.engine.paths.cache))
        try:
            settings = resolve_settings(self.options, pick_device(self.config.device), workroot)
            rows_all, rows = self.mining(settings)
            emb_partial = self.training(rows, settings)
            emb, kept = self.mixing(self.publish_embedder(emb_partial, before), before)
            kept_metrics = emb.metrics if emb.passed else before
            rr = self.reranker(rows_all, settings, kept, kept_metrics) if self.options.train_reranker else None
            del kept
        finally:
            shutil.rmtree(workroot, ignore_errors=True)
        return self.result(before, emb, rr)

    # -- the stages ---------------------------------------------------------------------------

    def data(self) -> None:
        """The pairs to train on and the held-out queries with what was opened for each."""
        engine, options = self.engine, self.options
        self.report("data", 0, 1, "Reading your search history …")
        history = click_pairs(engine.catalog)  # read once: the summary and the pairs both need it
        summary = summarize(engine.catalog, options, history=history)
        if not summary.enough:
            raise SiftError(summary.message)
        pairs, _ = history
        self.opened = pairs  # every open of the history, held-out ones too: never a negative
        if options.cold_start:
            heldout = pairs  # none of them is trained on
            train = cold_start_pairs(engine.catalog, seed=options.seed, teacher=engine.reranker(), cancel=self.cancel)
            if not train:
                raise SiftError("No practice questions could be made from your passages (they have no titles, "
                                "headings or sentences long enough). Train from your searches instead.")
        else:
            train, heldout = split_by_query(pairs, heldout_fraction=options.heldout_fraction, seed=options.seed)
            train = cap_per_query(train)
        self.train = train
        self.queries, self.qrels = heldout_relevance(heldout)
        self.measurable = len(self.queries) >= _pairs.MIN_HELDOUT_QUERIES
        self.report("data", 1, 1, summary.message)

    def baseline(self) -> Metrics:
        """The models in use, measured on the held-out queries. What the held-out searches taught
        (engine/learn.py) is left out here and in every later measurement, so they stay unseen."""
        engine = self.engine
        self.learned = engine.learned_view(exclude_keys=frozenset(self.queries))
        baseline = _searcher(engine, engine.embedder, engine.vectors(), engine.reranker(), self.learned)
        return self.measure(baseline, "baseline", "Measuring the current models: {d}/{t} searches")

    def mining(self, settings: TrainSettings) -> tuple[list[TrainRow], list[TrainRow]]:
        """(rows with the reranker's negatives, rows with the bi-encoder's): shown-not-opened and
        mined passages as hard negatives."""
        engine, options, train = self.engine, self.options, self.train
        pool = _mining_pool(engine, train, self.cancel,
                            lambda d, t: self.report("mining", d, t, f"Gathering candidate passages: {d}/{t} searches"),
                            seed=options.seed)
        check_cancel(self.cancel)
        opened_paths = {p.path for p in self.opened}
        pool = {text: row for text, row in pool.items() if row.path not in opened_paths}
        self.report("mining", 0, 1, "Mining hard negatives with the current model …")
        count = max(options.hard_negatives, RERANKER_NEGATIVES if options.train_reranker else 0)
        reranker_folder = Path(self.config.reranker) if engine.reranker_available else None
        stored = _stored_vectors(engine, [*pool.values(), *train])
        base_folder, _ = resolve_model(self.config.model)
        # sentence-transformers draws its own bars (batches embedded, candidates rescored): they
        # drive the wizard's bar, and Stop ends the mining between two of their steps.
        with tqdm_progress(lambda words, d, t: self.report("mining", d, t, f"{words}: {d:,} of {t:,}"), self.cancel):
            mined = self.trainer.mine_negatives(model=base_folder, pairs=[(p.query, p.text) for p in train],
                                                corpus=list(pool), cross_encoder=reranker_folder,
                                                count=MINING_CANDIDATES, settings=settings,
                                                vectors=stored) if count else {}
        check_cancel(self.cancel)
        shown = engine.catalog.chunks_by_id(sorted({cid for p in train for cid in p.negatives}))
        rows_all = training_rows(train, mined, pool, shown, count=count, seed=options.seed, opened=self.opened)
        rows = [dataclasses.replace(r, negatives=r.negatives[:options.hard_negatives]) for r in rows_all]
        if not rows:
            raise SiftError("Not one training pair has a passage to contrast it with; index more documents first.")
        self.report("mining", 1, 1, f"{len(rows):,} training examples ready.")
        return rows_all, rows

    def training(self, rows: Sequence[TrainRow], settings: TrainSettings) -> Path:
        """The new bi-encoder, trained into a hidden partial folder."""
        t0 = time.perf_counter()
        self.name = new_model_name(embedders_dir(self.engine.paths))
        partial = self.candidates.partial(embedders_dir(self.engine.paths), self.name)
        base_folder, _ = resolve_model(self.config.model)
        self.trainer.train_embedder(base=base_folder, rows=rows, target=partial,
                                    settings=dataclasses.replace(settings, workdir=settings.workdir / "embedder"),
                                    report=lambda d, t: self.report("training", d, t,
                                                                    f"Training the search model: step {d}/{t}"),
                                    cancel=self.cancel)
        check_cancel(self.cancel)
        self.train_seconds += time.perf_counter() - t0
        return partial

    def publish_embedder(self, partial: Path, before: Metrics) -> _Candidate:
        self.created = datetime.now(UTC).isoformat(timespec="seconds")
        card = ModelCard(kind="embedder", base=self.config.model, created=self.created, method=self.method,
                         pairs=len(self.train), train_seconds=round(self.train_seconds, 1), before=before.as_dict(),
                         heldout_queries=len(self.queries))
        return _Candidate(self.candidates.publish(partial, card), card, before, False, "")

    def mixing(self, trained: _Candidate, before: Metrics) -> tuple[_Candidate, tuple[Embedder, VectorIndex]]:
        """The trained weights mixed with the base model's, w = a·trained + (1 − a)·base for each a
        of MIX_GRID, each embedded and measured on the held-out searches; the best (pipeline
        nDCG@10) is gated, the others removed. A mix keeps much of what the clicks taught while
        forgetting less of what the base model knew (weight-space ensembling, as in WiSE-FT).
        Without enough held-out searches to choose on, the trained weights alone are measured.

        Returns the gated mix and the bi-encoder the reranker is to be measured over: the mix's
        when it passed, else the serving one. Only the best mix so far stays loaded (a model with
        its compiled int8 copies holds ~350 MB)."""
        grid = MIX_GRID if self.measurable else (1.0,)
        base_folder, _ = resolve_model(self.config.model)
        parent = embedders_dir(self.engine.paths)
        best: tuple[_Candidate, Embedder, VectorIndex] | None = None
        for n, alpha in enumerate(grid, 1):
            check_cancel(self.cancel)
            if alpha == 1.0:
                candidate = trained
            else:
                partial = self.candidates.partial(parent, new_model_name(parent))
                self.trainer.interpolate(base=base_folder, trained=trained.folder, alpha=alpha, target=partial)
                candidate = _Candidate(self.candidates.publish(partial, trained.card), trained.card, before, False, "")
            candidate.mix = alpha
            label = f" (mix {n} of {len(grid)})" if len(grid) > 1 else ""
            embedder, index = self.embedding(candidate.folder, label)
            candidate.model_id = embedder.model_id
            self.evaluate_embedder(candidate, embedder, index, before, label)
            self.mixes[alpha] = candidate.metrics
            if best is None or candidate.metrics.pipeline["ndcg@10"] > best[0].metrics.pipeline["ndcg@10"]:
                loser = best[0] if best is not None else None
                best = (candidate, embedder, index)
            else:
                loser = candidate
            del embedder, index
            if loser is not None:
                self._release(loser, best[0], discard=loser is not trained)
        assert best is not None
        emb = best[0]
        if emb is not trained:  # every mix is made from the trained weights: they go last
            self._release(trained, emb, discard=True)
        emb.passed, emb.why = gate(before, emb.metrics) if self.measurable else (False, "")
        if emb.mix < 1.0:
            emb.why += f" (the trained weights mixed {emb.mix:.0%} into the base model's)"
        if emb.passed:
            return emb, best[1:]
        self._release(emb, None, discard=False)  # removed with its vectors once the verdict is out
        return emb, (self.engine.embedder, self.engine.vectors())

    def _release(self, mix: _Candidate, kept: _Candidate | None, *, discard: bool) -> None:
        """Let go of a mix's model; with `discard` its folder goes too, and its vectors unless the
        kept mix shares its model id."""
        self.engine.release_embedder(str(mix.folder))
        if discard:
            self.candidates.discard(mix.folder, None if kept is not None and mix.model_id == kept.model_id else mix.model_id)

    def embedding(self, folder: Path, label: str = "") -> tuple[Embedder, VectorIndex]:
        """Every passage embedded with the new model, into its own index, while the old one serves."""
        embedder = self.engine.embedder_for(str(folder))
        index = self.engine.prepare_model(
            str(folder), cancel=self.cancel,
            on_progress=lambda d, t: self.report("embedding", d, t,
                                                 f"Embedding your passages with the new model{label}: {d:,}/{t:,}"))
        check_cancel(self.cancel)
        return embedder, index

    def evaluate_embedder(self, emb: _Candidate, embedder: Embedder, index: VectorIndex, before: Metrics,
                          label: str = "") -> None:
        """The new bi-encoder (with the current reranker, if any) measured."""
        searcher = _searcher(self.engine, embedder, index, self.engine.reranker(), self.learned)
        emb.metrics = self.measure(searcher, "evaluating", f"Measuring the new search model{label}: {{d}}/{{t}}")
        save_card(emb.folder, dataclasses.replace(emb.card, after=emb.metrics.as_dict()))

    def reranker(self, rows_all: Sequence[TrainRow], settings: TrainSettings, kept: tuple[Embedder, VectorIndex],
                 kept_metrics: Metrics) -> _Candidate:
        """A new cross-encoder, trained, measured over the bi-encoder kept, and gated."""
        check_cancel(self.cancel)
        engine, config = self.engine, self.config
        fresh = not engine.reranker_available
        base = bundled_model_dir() if fresh else Path(config.reranker)
        parent = rerankers_dir(engine.paths)
        name = self.name if not (parent / self.name).exists() else new_model_name(parent)
        partial = self.candidates.partial(parent, name)
        t0 = time.perf_counter()
        self.trainer.train_reranker(base=base, fresh_head=fresh, rows=rows_all, target=partial,
                                    settings=dataclasses.replace(settings, workdir=settings.workdir / "reranker"),
                                    report=lambda d, t: self.report("reranker", d, t,
                                                                    f"Training the reranker: step {d}/{t}"),
                                    cancel=self.cancel)
        check_cancel(self.cancel)
        seconds = time.perf_counter() - t0
        self.train_seconds += seconds
        card = ModelCard(kind="reranker", base=config.reranker or "bundled:all-MiniLM-L6-v2 (fresh head)",
                         created=self.created, method=self.method, pairs=len(self.train),
                         train_seconds=round(seconds, 1), before=kept_metrics.as_dict(),
                         heldout_queries=len(self.queries))
        folder = self.candidates.publish(partial, card)
        new_reranker = self.trainer.reranker(folder, device=config.device)
        metrics = self.measure(_searcher(engine, kept[0], kept[1], new_reranker, self.learned), "evaluating",
                               "Measuring the new reranker: {d}/{t}")
        passed, why = gate(kept_metrics, metrics, stages=("pipeline",)) if self.measurable else (False, "")
        save_card(folder, dataclasses.replace(card, after=metrics.as_dict()))
        return _Candidate(folder, card, metrics, passed, why)

    def result(self, before: Metrics, emb: _Candidate, rr: _Candidate | None) -> FinetuneResult:
        """The verdict; refused candidates removed, the ones that passed left for the user to adopt."""
        # "after" is what would be adopted: a refused model (a reranker trained from a fresh head among
        # them) is scored in `candidates` and `tried` only, and leaves "after" as it was.
        kept = emb.metrics if emb.passed else before
        after = Metrics(dense=kept.dense, pipeline=rr.metrics.pipeline if rr is not None and rr.passed else kept.pipeline)
        tried = Metrics(dense=emb.metrics.dense, pipeline=(rr or emb).metrics.pipeline)
        said = verdict(measurable=self.measurable, heldout=len(self.queries), emb=(emb.passed, emb.why),
                       rr=(rr.passed, rr.why) if rr is not None else None)
        if not emb.passed:
            self.candidates.discard(emb.folder, emb.model_id)
        if rr is not None and not rr.passed:
            self.candidates.discard(rr.folder)
        self.candidates.folders.clear()  # what remains is the user's to adopt
        self.report("evaluating", 1, 1, said)
        measured = {"embedder": emb.metrics} | ({"reranker": rr.metrics} if rr is not None else {})
        return FinetuneResult(before=before, after=after, improved=emb.passed or bool(rr and rr.passed),
                              verdict=said, embedder=str(emb.folder) if emb.passed else None,
                              reranker=str(rr.folder) if rr is not None and rr.passed else None,
                              pairs=len(self.train), heldout_queries=len(self.queries),
                              train_seconds=round(self.train_seconds, 1), method=self.method, candidates=measured,
                              tried=tried, mix=emb.mix, mixes=dict(self.mixes))

    def measure(self, searcher: Searcher, stage: str, message: str) -> Metrics:
        """The held-out measures through `searcher`, closed after (its keyword thread and connection)."""
        try:
            if not self.queries:
                return empty_metrics()
            return measure(_search_fn(searcher), self.queries, self.qrels, cancel=self.cancel,
                           on_query=lambda d, t: self.report(stage, d, t, message.format(d=d, t=t)))
        finally:
            searcher.close()


# -- what the stages share ------------------------------------------------------------------------


def _mining_pool(engine: Engine, pairs: Sequence[Pair], cancel: threading.Event | None,
                 report: Callable[[int, int], None], *, seed: int) -> dict[str, ChunkRow]:
    """Text → chunk of the passages of the top stage-1 documents of each training query, and of
    MINING_RANDOM passages drawn from the index."""
    queries = list({p.key: p.raw for p in pairs}.items())
    ids: list[int] = []
    for n, (_, raw) in enumerate(queries, 1):
        check_cancel(cancel)
        for hit in engine.search(raw, limit=MINING_POOL_DOCS, mode="hybrid"):
            ids.append(hit.chunk_id)
            ids += [p.chunk_id for p in hit.passages]
        report(n, len(queries))
    # And a seeded sample of the whole index: easy negatives, and the only ones left when every
    # document near the searches was opened for one of them.
    everything = engine.catalog.chunk_ids().tolist()
    ids += random.Random(seed).sample(everything, min(MINING_RANDOM, len(everything)))
    rows = engine.catalog.chunks_by_id(list(dict.fromkeys(ids)))
    return {row.text: row for row in rows.values()}


def _stored_vectors(engine: Engine, chunks: Iterable[ChunkRow | Pair]) -> dict[str, np.ndarray]:
    """Text → the current model's stored vector, for the chunks that have one."""
    by_id = {c.chunk_id if isinstance(c, Pair) else c.id: c.text for c in chunks
             if not isinstance(c, Pair) or text_hash(c.text) == c.text_hash}  # a practice passage is cut
    found, vecs = engine.catalog.chunk_vectors(engine.embedder.model_id, list(by_id))
    return {by_id[int(cid)]: vec for cid, vec in zip(found.tolist(), vecs)}


def _searcher(engine: Engine, embedder: Embedder, index: VectorIndex, reranker: Reranker | None,
              learned=None) -> Searcher:
    """A pipeline over the engine's catalog with other models, leaving the engine's own untouched.

    learned: what opens taught (engine/learn.py), less the held-out queries; None: learning off."""
    return Searcher(catalog=engine.catalog, embedder=lambda: embedder, vectors=lambda: index,
                    reranker=lambda: reranker, roots=engine.roots,
                    precise_index=lambda: engine.config.vector_dtype in ("f16", "f32"),
                    learned=lambda: learned)


def _search_fn(searcher: Searcher) -> SearchFn:
    return lambda raw, mode: searcher.search(raw, limit=EVAL_DEPTH, mode=mode).hits


class _Candidates:
    """Folders made by this run: removed on cancel, on error, or when refused by the gate."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.folders: list[Path] = []

    def partial(self, parent: Path, name: str) -> Path:
        parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = parent / f".{name}.partial"
        shutil.rmtree(path, ignore_errors=True)
        self.folders.append(path)
        return path

    def publish(self, partial: Path, card: ModelCard) -> Path:
        """The finished folder under its final name (its card written first, then one rename)."""
        save_card(partial, card)
        final = partial.parent / partial.name.removeprefix(".").removesuffix(".partial")
        os.replace(partial, final)
        self.folders[self.folders.index(partial)] = final
        return final

    def discard(self, folder: Path, model_id: str | None = None) -> None:
        """Remove a candidate folder, and the vectors and index file made for its model id."""
        if model_id and model_id != self.engine.embedder.model_id:
            try:
                self.engine.store.forget(model_id)
            except (SiftError, OSError) as exc:
                log.warning("could not forget the vectors of the refused model in %s: %s", folder, exc)
        shutil.rmtree(folder, ignore_errors=True)
        if folder in self.folders:
            self.folders.remove(folder)

    def discard_all(self) -> None:
        for folder in list(self.folders):
            model_id = None
            if folder.parent == embedders_dir(self.engine.paths) and folder.is_dir() and not folder.name.startswith("."):
                try:
                    model_id = self.engine.embedder_for(str(folder)).model_id
                except SiftError:
                    model_id = None
                self.engine.release_embedder(str(folder))
            self.discard(folder, model_id)


def _remove_stale_partials(engine: Engine) -> None:
    """Folders left by a run that was killed mid-save (never a finished model), and its scratch
    folder once it is old enough not to be another process's run in progress."""
    for parent in (embedders_dir(engine.paths), rerankers_dir(engine.paths)):
        for partial in parent.glob(".*.partial") if parent.is_dir() else ():
            shutil.rmtree(partial, ignore_errors=True)
    for scratch in engine.paths.cache.glob("sift-finetune-*"):
        try:
            if time.time() - scratch.stat().st_mtime > STALE_SCRATCH_S:
                shutil.rmtree(scratch, ignore_errors=True)
        except OSError:
            pass
