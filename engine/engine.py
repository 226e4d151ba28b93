"""The Engine facade: folders, indexing, search and status over one Sift home."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Iterator, Protocol, cast

from engine import learn
from engine.catalog import Catalog, catalog_error
from engine.config import Config, load_config, save_config
from engine.context import NEIGHBOURS, passage_context
from engine.embed import Embedder, SentenceTransformerEmbedder, resolve_model
from engine.errors import (
    Cancelled,
    CatalogDamagedError,
    FolderError,
    ModelError,
    SiftError,
)
from engine.indexer import (
    BATCH_CHUNKS,
    Indexer,
    forget_root_devices,
    is_excluded,
    is_within,
    iter_paths,
    offline_roots,
    unlistable_folders,
)
from engine.models import NO_RERANKER, ModelInfo, list_models, mark_adopted, model_value
from engine.parse.runner import ParseRunner
from engine.paths import Paths, resolve_paths, samples_dir
from engine.repair import SetAside, relearn_from_clicks, set_aside_catalog
from engine.rerank import (
    CrossEncoderReranker,
    Reranker,
    download_reranker,
    import_reranker,
)
from engine.search import (
    STOPWORDS,
    RERANK_MAX_TOKENS,
    Searcher,
    SearchResult,
    parse_query,
)
from engine.store import VectorStore
from engine.types import FileStatus, Hit, IndexReport, PassageContext, Problem, Progress, StatusReport
from engine.vectors import VectorIndex

log = logging.getLogger(__name__)


class BackgroundService(Protocol):
    """What the engine knows of a background indexer attached to it (engine/service.py builds
    one over the engine; the engine never imports it)."""

    def progress(self) -> Progress: ...

    def held(self) -> AbstractContextManager[None]: ...

    def stop(self, timeout: float = 30.0) -> None: ...

    def rescan(self, reason: str = "asked for") -> None: ...


def _catalog_errors(cls: type) -> type:
    """Every public method of `cls` raises SiftError, never sqlite3's: a damaged catalog page becomes
    CatalogDamagedError (what to do included), a full disk DiskFullError."""
    def guarded(method: Callable) -> Callable:
        @functools.wraps(method)
        def call(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error as exc:
                error = catalog_error(exc, self.paths.catalog)
                if isinstance(error, CatalogDamagedError):
                    self._catalog_damage = None  # the next status() checks the whole file again
                raise error from exc
        return call

    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(member):
            setattr(cls, name, guarded(member))
    return cls


@_catalog_errors
class Engine:
    """Everything Sift does, for the CLI and the GUI alike. Safe to call from several threads."""

    def __init__(self, paths: Paths, *, embedder: Embedder | None = None,
                 embedder_factory: Callable[[str], Embedder] | None = None) -> None:
        self.paths = paths.ensure()
        self._config = load_config(paths.settings)
        self.catalog = Catalog(paths.catalog)
        self.store = VectorStore(self.catalog, paths.index_dir, dtype=lambda: self._config.vector_dtype)
        self._embedder = embedder
        # Makes the embedder for a model setting (tests inject fakes); by default sentence-transformers.
        self._embedder_factory = embedder_factory
        self._spare: tuple[str, Embedder] | None = None  # (model setting, embedder) not serving: a
        # prepared candidate or the model switched away from, kept so a switch back loads nothing
        self._embedder_lock = threading.Lock()
        self._switch_lock = threading.Lock()  # one model switch at a time
        self._pinned = threading.local()  # the (embedder, index) pair one search runs against
        self._vectors: VectorIndex | None = None
        self._vectors_lock = threading.RLock()
        self._reranker: CrossEncoderReranker | None = None
        self._cancel = threading.Event()
        self._progress = Progress()
        self._service: BackgroundService | None = None  # while one runs (see the last section)
        self._catalog_damage: str | None = None  # the last quick check's finding; None: not checked yet
        self._new_searcher()

    def _new_searcher(self) -> None:
        """What reads the catalog for searches: made again when the catalog is replaced (rebuild)."""
        self._learned = self._stored_learned()
        self._searcher = Searcher(catalog=self.catalog, embedder=lambda: self._serving()[0],
                                  vectors=lambda: self._serving()[1],
                                  reranker=lambda: self.reranker(), roots=self.roots,
                                  precise_index=self._precise_index,
                                  learned=lambda: self._learned if self._config.learn_from_clicks else None)

    def _stored_learned(self) -> learn.Learned:
        """The learned side of search with the weights kept in the catalog."""
        return learn.Learned(self.catalog, learn.LearnWeights.from_json(self.catalog.get_meta(learn.META_KEY)))

    def _precise_index(self) -> bool:
        """Whether the serving index holds vectors precise enough that stage 1 need not rescore."""
        return self._config.vector_dtype in ("f16", "f32")

    @classmethod
    def open(cls, home: str | os.PathLike | None = None, *, embedder: Embedder | None = None,
             embedder_factory: Callable[[str], Embedder] | None = None) -> "Engine":
        """The engine over SIFT_HOME, the platform's directories, or `home` when given."""
        paths = resolve_paths({"SIFT_HOME": os.fspath(home)} if home is not None else None)
        return cls(paths, embedder=embedder, embedder_factory=embedder_factory)

    def close(self) -> None:
        self.stop_service()
        self._searcher.close()
        self.catalog.close()

    # -- settings and folders ------------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self._config

    def update_config(self, **changes) -> Config:
        # Under the vectors lock, so a search never pairs one model's index with another's embedder.
        with self._vectors_lock:
            # Any switch of model or reranker can be undone with rollback_model / rollback_reranker.
            if changes.get("model", self._config.model) != self._config.model:
                changes.setdefault("previous_model", self._config.model)
            if changes.get("reranker", self._config.reranker) != self._config.reranker:
                changes.setdefault("previous_reranker", self._config.reranker or NO_RERANKER)
            config = dataclasses.replace(self._config, **changes).validate()
            save_config(self.paths.settings, config)
            # backend and precision change how the model runs (and its model_id, for bf16).
            runs = (config.device, config.backend, config.precision)
            ran = (self._config.device, self._config.backend, self._config.precision)
            if (config.model, config.vector_dtype, runs) != (self._config.model, self._config.vector_dtype, ran):
                self._vectors = None
                if config.model != self._config.model or runs != ran:
                    with self._embedder_lock:
                        if self._embedder is not None and runs == ran:
                            self._spare = (self._config.model, self._embedder)
                        elif runs != ran:
                            self._spare = None  # loaded for the other device, backend or precision
                        self._embedder = None
                    self._reranker = None
            self._config = config
        return config

    @property
    def using_samples(self) -> bool:
        """True until the user chooses folders: the bundled samples are searched meanwhile."""
        return not self._config.folders

    def roots(self) -> list[str]:
        return list(self._config.folders) if self._config.folders else iter_paths([samples_dir()])

    def add_folder(self, folder: str | os.PathLike) -> str:
        path = os.path.abspath(os.path.expanduser(os.fspath(folder)))
        if not os.path.isdir(path):
            raise FolderError(f"{path} is not a folder. Give the path of an existing folder.")
        for existing in self._config.folders:
            if is_within(path, [existing]):
                raise FolderError(f"{path} is already searched as part of {existing}.")
        # A new folder that contains chosen folders replaces them.
        folders = [f for f in self._config.folders if not is_within(f, [path])] + [path]
        with self._background_paused():
            self.update_config(folders=tuple(sorted(folders)))
            self._forget_outside(self._config.folders)  # the samples, once the user has folders of their own
        return path

    def remove_folder(self, folder: str | os.PathLike) -> int:
        """Stop searching a folder and forget everything indexed from it; returns files forgotten."""
        path = os.path.abspath(os.path.expanduser(os.fspath(folder)))
        if path not in self._config.folders:
            listed = ", ".join(self._config.folders) or "none"
            raise FolderError(f"{path} is not one of Sift's folders (they are: {listed}).")
        with self._background_paused():  # so no batch in flight writes the folder's files back
            self.update_config(folders=tuple(f for f in self._config.folders if f != path))
            return self._forget_outside(self._config.folders)

    def _forget_outside(self, roots: tuple[str, ...]) -> int:
        keep = [r.rstrip(os.sep) + os.sep for r in roots]
        doomed = [row.id for row in self.catalog.files().values()
                  if not any(row.path.startswith(k) for k in keep)]
        if not doomed:
            return 0
        with self.catalog.transaction() as conn:
            chunk_ids = self.catalog.delete_files(conn, doomed)
            self.catalog.prune_embeddings(conn)
            self.catalog.delete_clicks_outside(conn, roots)
            forget_root_devices(self.catalog, conn, roots)
        self.catalog.purge_deleted_text()
        with self._vectors_lock:
            if chunk_ids and (self._vectors is not None or self.store.files()):
                # usearch keeps a removed vector's bytes in the file, so build a fresh index from
                # the catalog (no embedding needed), and drop the files of other settings.
                try:
                    embedder = self.embedder
                    self._vectors = self.store.rebuild(embedder)
                    kept = [self.store.save(self._vectors, embedder.model_id)]
                except SiftError as exc:  # no model, a full disk: delete it; it is rebuilt when needed
                    log.warning("could not rebuild the vector index after removing files (%s); deleting it", exc)
                    self._vectors, kept = None, []
                self.store.remove_files_except(kept)
        return len(doomed)

    # -- models and the vector index -------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        with self._embedder_lock:
            if self._embedder is None:
                if self._spare is not None and self._spare[0] == self._config.model:
                    self._embedder, self._spare = self._spare[1], None
                else:
                    self._embedder = self._new_embedder(self._config.model)
            return self._embedder

    def _new_embedder(self, value: str) -> Embedder:
        if self._embedder_factory is not None:
            return self._embedder_factory(value)
        return SentenceTransformerEmbedder(value, device=self._config.device, batch_size=self._config.embed_batch_size,
                                           backend=self._config.backend, precision=self._config.precision,
                                           cache_dir=self.paths.cache)

    def vectors(self) -> VectorIndex:
        """The vector index for the current model: loaded, verified and brought in line with the catalog."""
        with self._vectors_lock:
            if self._vectors is None:
                self._vectors = self.store.load(self.embedder)
            return self._vectors

    def save_vectors(self) -> None:
        """Write the serving index to disk now (indexing does so after each run that changed it)."""
        with self._vectors_lock:
            if self._vectors is not None:
                self.store.save(self._vectors, self.embedder.model_id)

    def drop_vectors(self) -> None:
        """Let go of the index in memory: the next search loads (and verifies) the saved one."""
        with self._vectors_lock:
            self._vectors = None

    # -- choosing, switching and rolling back models ---------------------------------------------

    def models(self) -> list[ModelInfo]:
        """The bundled model, every model folder in Sift's data folder and the configured ones."""
        return list_models(self.paths, self._config)

    def embedder_for(self, value: str) -> Embedder:
        """An embedder for any model setting ("bundled:…" or a folder); the serving one for the
        current setting. Loading the weights waits for the first use."""
        value = model_value(value)
        current = model_value(self._config.model)
        with self._embedder_lock:
            if value == current and self._embedder is not None:
                return self._embedder
            if self._spare is not None and model_value(self._spare[0]) == value:
                return self._spare[1]
        if value == current:
            return self.embedder
        embedder = self._new_embedder(value)  # outside the lock: fingerprinting a folder takes a moment
        with self._embedder_lock:
            self._spare = (value, embedder)
        return embedder

    def release_embedder(self, value: str) -> None:
        """Let go of the model for a setting that is not serving (a refused fine-tune candidate),
        so its memory can go back; it loads again if asked for."""
        value = model_value(value)
        with self._embedder_lock:
            if self._spare is not None and model_value(self._spare[0]) == value:
                self._spare = None

    def prepare_model(self, value: str, *, on_progress: Callable[[int, int], None] | None = None,
                      cancel: threading.Event | None = None) -> VectorIndex:
        """Embed every chunk text the model has no vector for and build and save its index, while
        the current model keeps serving searches; returns the index. Raises Cancelled.

        Vectors are committed batch by batch into the catalog's cache, so after a cancel or a
        crash a second call resumes where this one stopped. `on_progress(done, total)` counts texts.
        Does not switch: `adopt_model` does.
        """
        value = model_value(value)
        if value == model_value(self._config.model):
            return self.vectors()  # the indexer keeps the serving model's vectors complete
        embedder = self.embedder_for(value)
        _prepare_int8(embedder)
        _check(cancel)
        self._embed_missing(embedder, on_progress=on_progress, cancel=cancel)
        _check(cancel)
        return self.store.load(embedder)

    def adopt_model(self, value: str, *, on_progress: Callable[[int, int], None] | None = None,
                    cancel: threading.Event | None = None) -> None:
        """Prepare a model (see prepare_model), then switch searching and indexing to it at once.

        Searches running meanwhile use the old model and its index or the new pair, never a mix.
        The model switched away from becomes `previous_model`: its vectors stay in the catalog
        and its index on disk, so `rollback_model` needs no embedding. Raises Cancelled (the old
        model then stays in place) and ModelError for a model that cannot be found or loaded.
        """
        self._switch_model(model_value(value), on_progress=on_progress, cancel=cancel)
        mark_adopted(self._config.model)

    def rollback_model(self, *, on_progress: Callable[[int, int], None] | None = None,
                       cancel: threading.Event | None = None) -> str:
        """Switch back to the previous model; returns the setting now active.

        Only chunks indexed since the switch are embedded (the others' vectors are cached).
        Rolling back twice returns to where it started.
        """
        previous = self._config.previous_model
        if not previous or model_value(previous) == self._config.model:
            raise SiftError("There is no previous model to go back to: the model has not been switched. "
                            "Choose one with `sift models use`.")
        self._switch_model(model_value(previous), on_progress=on_progress, cancel=cancel)
        return self._config.model

    def _switch_model(self, value: str, *, on_progress: Callable[[int, int], None] | None,
                      cancel: threading.Event | None) -> None:
        with self._switch_lock:
            if value == model_value(self._config.model):
                return
            index = self.prepare_model(value, on_progress=on_progress, cancel=cancel)
            embedder = self.embedder_for(value)
            with self._background_paused(), self._exclusive():
                # The background service went on indexing with the old model during the
                # prepare: give those chunks their vector too (a handful, so no progress for
                # them), and bring the index in line.
                self._embed_missing(embedder, on_progress=None, cancel=cancel)
                _check(cancel)
                self.store.sync(index, embedder.model_id)
                self.store.save(index, embedder.model_id)
                with self._vectors_lock:
                    old_value = self._config.model
                    with self._embedder_lock:
                        old_embedder = self._embedder
                    config = dataclasses.replace(self._config, model=value, previous_model=old_value).validate()
                    save_config(self.paths.settings, config)
                    with self._embedder_lock:
                        self._embedder = embedder
                        self._spare = (old_value, old_embedder) if old_embedder is not None else None
                    self._vectors = index
                    self._config = config
            log.info("switched the model from %s to %s", old_value, value)
            self._forget_other_models(embedder, old_value, old_embedder)

    def _forget_other_models(self, active: Embedder, previous_value: str, previous: Embedder | None) -> None:
        """Drop the vectors and index files of models that are neither active nor previous (space)."""
        try:
            previous_id = (previous if previous is not None else self._new_embedder(previous_value)).model_id
        except SiftError as exc:  # the previous model's folder is gone: keep everything, to be safe
            log.warning("kept the vectors of every model: %s", exc)
            return
        self.store.prune({active.model_id, previous_id})

    def _embed_missing(self, embedder: Embedder, *, on_progress: Callable[[int, int], None] | None,
                       cancel: threading.Event | None) -> int:
        """Embed and commit, batch by batch, every chunk text `embedder`'s model has no vector for."""
        model_id = embedder.model_id
        total = self.catalog.count_texts_missing_vectors(model_id)
        done = 0
        if on_progress is not None:
            on_progress(0, total)
        for part in self.catalog.iter_texts_missing_vectors(model_id, batch=BATCH_CHUNKS):
            _check(cancel)
            vectors = embedder.embed_documents([text for _, text in part])
            with self.catalog.transaction() as conn:
                self.catalog.put_vectors(conn, model_id, [h for h, _ in part], vectors)
            done += len(part)
            if on_progress is not None:
                on_progress(done, max(total, done))  # the background service may add chunks meanwhile
        return done

    def adopt_reranker(self, value: str) -> None:
        """Use a cross-encoder folder for stage 2; the one it replaces becomes `previous_reranker`.

        Searches take the reranker once each, so each runs wholly with the old or the new one.
        """
        value = model_value(value)
        if not os.path.isdir(value):
            raise ModelError(f"The reranker folder {value} does not exist. Choose a cross-encoder model folder.")
        # Refuses a folder without safetensors weights; the model itself loads on first use.
        reranker = CrossEncoderReranker(value, device=self._config.device, max_tokens=RERANK_MAX_TOKENS,
                                        **self._rerank_budget())
        if value != model_value(self._config.reranker) or not self._config.use_reranker:
            self.update_config(reranker=value, use_reranker=True)
        with self._embedder_lock:
            if self._reranker is None or self._reranker.folder != reranker.folder:
                self._reranker = reranker
        mark_adopted(value)

    def rollback_reranker(self) -> str:
        """Go back to the reranker used before the last switch ("" when there was none); returns it."""
        previous = self._config.previous_reranker
        if not previous:
            raise SiftError("There is no previous reranker to go back to: the reranker has not been switched.")
        target = "" if previous == NO_RERANKER else model_value(previous)
        if target and not os.path.isdir(target):
            raise ModelError(f"The previous reranker's folder {target} no longer exists, so Sift cannot go back to it.")
        self.update_config(reranker=target)
        return target

    # -- indexing ------------------------------------------------------------------------------

    def retry(self, paths: Iterable[str]) -> int:
        """Make the next index run read these problem files again, though they have not changed
        (the indexer skips an unchanged file that failed); returns how many were marked."""
        marked = 0
        with self.catalog.transaction() as conn:
            for path in paths:
                row = self.catalog.file(path)
                if row is not None and row.status.is_problem:
                    self.catalog.set_file_problem(conn, row.id, size=row.size, mtime_ns=row.mtime_ns,
                                                  status=FileStatus.PENDING, reason="")
                    marked += 1
        return marked

    def progress(self) -> Progress:
        """The latest progress snapshot; cheap, callable from any thread."""
        service = self._service
        return service.progress() if service is not None else self._progress

    def cancel(self) -> None:
        """Ask a running `index()` to stop after its current batch (it raises Cancelled)."""
        self._cancel.set()

    def index(self, *, paths: Iterable[str] | None = None, on_progress: Callable[[Progress], None] | None = None,
              parse_runner: ParseRunner | None = None) -> IndexReport:
        """Bring the catalog and the vector index in line with the folders. Raises Cancelled.

        With `paths` (files or folders that changed, from a watcher), only those are looked at.
        `parse_runner`: a long-lived one to reuse (the background service keeps one, so small
        batches do not start parse workers each time); by default each run starts its own.
        """
        self._cancel.clear()

        def report(p: Progress) -> None:
            self._progress = p
            if on_progress is not None:
                on_progress(p)

        with self._exclusive():
            vectors = self.vectors()
            version = vectors.version
            indexer = Indexer(catalog=self.catalog, embedder=self.embedder, config=self._config,
                              roots=self.roots(), vectors=vectors, cancel=self._cancel, on_progress=report,
                              parse_runner=parse_runner, never=self._own_folders())
            try:
                return indexer.run(paths=paths)
            except Cancelled:
                report(dataclasses.replace(indexer.progress, phase="cancelled"))
                raise
            finally:
                if vectors.version != version:  # a watcher's no-op batch must not rewrite the file
                    with self._vectors_lock:
                        self.store.save(vectors, self.embedder.model_id)
                    with self.catalog.transaction() as conn:  # edited passages forget their queries
                        learn.prune(conn)

    def _own_folders(self) -> list[str]:
        """Sift's folders: never indexed, even under a chosen folder with hidden files on."""
        p = self.paths
        return [os.path.abspath(d) for d in (p.data, p.cache, p.config, p.logs)]

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One indexing run per Sift home, across processes."""
        lock_file = os.fdopen(os.open(self.paths.lock, os.O_RDWR | os.O_CREAT, 0o600), "r+")
        try:
            try:
                import fcntl

                fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except ImportError:  # Windows: msvcrt locks a byte range instead
                import msvcrt

                msvcrt.locking(lock_file.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
            except OSError:
                raise SiftError("Another Sift process is indexing these folders right now. "
                                "Wait for it to finish, or stop it, then try again.") from None
            yield
        finally:
            lock_file.close()

    # -- search --------------------------------------------------------------------------------

    def search(self, query: str, *, limit: int = 10, mode: str = "auto", literal: bool = False) -> list[Hit]:
        """Documents best matching the query, best first; see `search_detailed` for the modes."""
        return self.search_detailed(query, limit=limit, mode=mode, literal=literal).hits

    def search_detailed(self, query: str, *, limit: int = 10, mode: str = "auto",
                        literal: bool = False) -> SearchResult:
        """Search with timings and the mode that ran.

        Modes: "bm25" (keywords), "dense" (meaning), "hybrid" (both, fused), "rerank" (hybrid,
        then the cross-encoder), "auto" (rerank when a reranker is installed and on, else hybrid).
        The query may hold "exact phrases", -excluded words and type:pdf in:folder after:2024-01-01
        before:2025-01-01 filters; with literal=True it is plain words (none of that is syntax).
        """
        with self._pinned_model():
            return self._searcher.search(query, limit=limit, mode=mode, literal=literal)

    def rerank(self, first_stage: SearchResult) -> SearchResult:
        """The reranked results of a mode="hybrid" search, from its stage 1 (not searched again):
        show that result at once, then this one. As it is without a reranker (see `search_detailed`)."""
        return self._searcher.rerank(first_stage)

    def similar(self, path: str, *, limit: int = 10) -> list[Hit]:
        """Documents like the one at `path` (find-similar), itself left out."""
        row = self.catalog.file(os.path.abspath(path))
        if row is None or row.status != FileStatus.INDEXED:
            raise SiftError(f"{path} is not indexed, so Sift cannot look for documents like it: "
                            f"{self._why_not_indexed(os.path.abspath(path), row)}")
        ids = self.catalog.chunk_ids_of_file(row.id)
        with self._pinned_model():
            return self._searcher.similar(ids, limit=limit, exclude_file=row.id)

    def _why_not_indexed(self, path: str, row) -> str:
        """Why a file has no passages in the catalog, and what to do about it."""
        if row is not None and row.status == FileStatus.PENDING:
            return "it is waiting to be indexed; run `sift index` (the app does it by itself) and try again."
        if row is not None:
            return f"it could not be read ({row.status.value}: {row.reason or 'no reason given'})."
        if not os.path.exists(path):
            return "there is no such file."
        roots = self.roots()
        if not is_within(path, roots):
            return (f"it is not in a folder Sift searches ({', '.join(roots)}); add its folder with "
                    "`sift add-folder` and index.")
        root = next(r for r in roots if is_within(path, [r]))
        rel = os.path.relpath(path, root)
        parts = rel.split(os.sep)
        for i, name in enumerate(parts):
            if is_excluded(name, "/".join(parts[: i + 1]), self._config.exclude):
                return f"{'/'.join(parts[: i + 1])} is excluded in settings (exclude patterns)."
            if name.startswith(".") and not self._config.include_hidden:
                return f"{'/'.join(parts[: i + 1])} is hidden, and hidden files are skipped (include_hidden)."
        return "it is new or changed since the last indexing; run `sift index` and try again."

    @contextmanager
    def _pinned_model(self) -> Iterator[None]:
        """One search, one model: the embedder and index it uses are taken together on first use
        and kept to its end, so a model switch meanwhile never makes it embed the query with one
        model and look it up in the other's index."""
        if getattr(self._pinned, "pair", False) is not False:  # nested: the outer search pinned
            yield
            return
        self._pinned.pair = None
        try:
            yield
        finally:
            self._pinned.pair = False

    def _serving(self) -> tuple[Embedder, VectorIndex]:
        pair = getattr(self._pinned, "pair", False)
        if pair is False:  # not inside a search
            return self._serving_pair()
        if pair is None:
            pair = self._pinned.pair = self._serving_pair()
        return cast("tuple[Embedder, VectorIndex]", pair)

    def _serving_pair(self) -> tuple[Embedder, VectorIndex]:
        with self._vectors_lock:  # a switch replaces both under this lock
            return self.embedder, self.vectors()

    @property
    def searcher(self) -> Searcher:
        """The two-stage pipeline over this engine's models (bench/ times its stages)."""
        return self._searcher

    @property
    def reranker_available(self) -> bool:
        """True when a reranker is installed and turned on (search then runs both stages)."""
        return bool(self._config.use_reranker and self._config.reranker and os.path.isdir(self._config.reranker))

    def reranker(self) -> Reranker | None:
        if not self.reranker_available:
            return None
        with self._embedder_lock:
            if self._reranker is None or self._reranker.folder != Path(self._config.reranker).resolve():
                self._reranker = CrossEncoderReranker(self._config.reranker, device=self._config.device,
                                                      max_tokens=RERANK_MAX_TOKENS, **self._rerank_budget())
            self._reranker.budget_ms = self._rerank_budget()["budget_ms"]  # follows a settings change
            return self._reranker

    def _rerank_budget(self) -> dict:
        """The reranker's time budget and where its measured speed is kept (see engine/rerank.py)."""
        return {"budget_ms": float(self._config.rerank_budget_ms) or None,
                "speed_cache": self.paths.data / "rerank-speed.json"}

    def _reranker_status(self) -> str:
        if not self._config.reranker:
            return "none installed: search runs the first stage (keywords + meaning) alone"
        name = Path(self._config.reranker).name
        if not os.path.isdir(self._config.reranker):
            return f"{name} is missing from {self._config.reranker}: search runs the first stage alone"
        return name if self._config.use_reranker else f"{name} (turned off)"

    def download_reranker(self, name: str) -> str:
        """Download a cross-encoder by hub name and use it; the only place Sift opens a connection."""
        target = download_reranker(name, self.paths.data / "models")
        self.update_config(reranker=str(target), use_reranker=True)
        return str(target)

    def import_reranker(self, folder: str | os.PathLike) -> str:
        """Copy a cross-encoder model folder into Sift's data folder and use it for stage 2."""
        target = import_reranker(folder, self.paths.data / "models")
        self.update_config(reranker=str(target), use_reranker=True)
        return str(target)

    def passage_context(self, hit: Hit, *, neighbours: int = NEIGHBOURS) -> PassageContext:
        """The hit's passage with its neighbours on the same page, for a preview. Raises
        LookupError when the file was re-indexed or removed since the search."""
        return passage_context(self.catalog, hit, neighbours=neighbours)

    def record_click(self, query: str, hit: Hit, *, rank: int, shown: Sequence[Hit]) -> None:
        """Remember that a result was opened. From the next search on, the passage comes up for
        this query and ones like it (engine/learn.py); the fine-tune wizard trains on these too."""
        row = self.catalog.chunks_by_id([hit.chunk_id]).get(hit.chunk_id)
        if row is None:
            return  # the file was re-indexed or removed since the search; nothing to learn
        text = parse_query(query).text.strip()
        vector, model_id = None, ""
        if text:
            try:
                embedder = self.embedder
                vector, model_id = embedder.embed_query(text), embedder.model_id
            except SiftError as exc:  # no model now: the query's vector is made when one searches
                log.warning("could not embed an opened result's query (%s); its words are learned", exc)
        with self.catalog.transaction() as conn:
            self.catalog.add_click(conn, query=query, chunk_id=hit.chunk_id, text_hash=row.text_hash, path=hit.path,
                                   rank=rank, shown=[h.chunk_id for h in shown])
            learn.record(conn, file_id=row.file_id, text_hash=row.text_hash, query=text, at=time.time(),
                         vector=vector, model_id=model_id)

    def mark_wrong(self, query: str, hit: Hit) -> None:
        """An opened result was not what the query meant: forget that open (learned and history)."""
        row = self.catalog.file(hit.path)
        with self.catalog.transaction() as conn:
            if row is not None:
                learn.forget(conn, file_id=row.id, query=parse_query(query).text)
            self.catalog.delete_clicks(conn, query=query, path=hit.path)

    def clear_history(self) -> None:
        """Forget every opened result and all that was learned from them (none of it stays on disk)."""
        with self.catalog.transaction() as conn:
            conn.execute("DELETE FROM clicks")
            learn.forget_all(conn)
        self.catalog.purge_deleted_text()
        self._learned = learn.Learned(self.catalog, learn.LearnWeights())

    def learning_summary(self) -> learn.LearnedSummary:
        """What opens have taught so far, in numbers; loads no model."""
        return learn.summary(self.catalog)

    def learned_view(self, *, exclude_keys: frozenset[str] = frozenset()) -> learn.Learned | None:
        """The learned side of search less some queries (held-out ones), or None when learning is off."""
        if not self._config.learn_from_clicks:
            return None
        return learn.Learned(self.catalog, self._learned.weights, exclude_keys=exclude_keys)

    def set_learning(self, weights: learn.LearnWeights) -> None:
        """Use these learning weights from the next search on (kept in the catalog)."""
        with self.catalog.transaction() as conn:
            self.catalog.set_meta(conn, learn.META_KEY, weights.to_json())
        self._learned = learn.Learned(self.catalog, weights)

    def tune_learning(self, *, adopt: bool = True,
                      on_step: Callable[[int, int], None] | None = None) -> learn.TuneReport:
        """Measure what opens taught on held-out searches of the history and choose how much it
        counts (see learn.tune); with `adopt`, the chosen weights are used from the next search."""
        embedder, index = self._serving_pair()
        source: list[learn.Learned] = []
        searcher = Searcher(catalog=self.catalog, embedder=lambda: embedder, vectors=lambda: index,
                            reranker=lambda: self.reranker(), roots=self.roots,
                            precise_index=self._precise_index,
                            learned=lambda: source[-1])

        def make_search(weights: learn.LearnWeights, exclude: frozenset[str]):
            source.append(learn.Learned(self.catalog, weights, exclude_keys=exclude))
            return lambda raw: [p for h in searcher.search(raw, limit=learn.HELDOUT_DEPTH, mode="auto").hits
                                for p in (h.path, *h.duplicates)]

        try:
            report = learn.tune(self.catalog, make_search, stopwords=STOPWORDS, on_step=on_step)
        finally:
            searcher.close()
        if adopt and report.enough:
            self.set_learning(report.weights)
        return report

    # -- status --------------------------------------------------------------------------------

    def check_catalog(self) -> str:
        """SQLite's quick check of the catalog (reads every page): "ok", or the damage found."""
        self._catalog_damage = self.catalog.quick_check()
        return self._catalog_damage

    def rebuild_catalog(self, *, index: bool = True, on_progress: Callable[[Progress], None] | None = None
                        ) -> tuple[SetAside, IndexReport | None]:
        """Set the catalog aside, start a new one with the clicks and cached vectors still readable
        from the old, and (unless `index` is False) index the folders into it. Settings live in
        their own file and are kept.

        The old file stays beside the new as catalog.damaged-TIME.sqlite3. The background service,
        if one runs, holds still meanwhile and then does the indexing itself. Raises Cancelled when the indexing is
        cancelled: the new catalog keeps what was indexed, and `index()` continues from there.
        """
        with self._background_paused(), self._exclusive(), self._vectors_lock:
            self._searcher.close()
            self.catalog.close()
            self._vectors = None
            done = set_aside_catalog(self.paths)
            self.catalog = Catalog(self.paths.catalog)
            self.store = VectorStore(self.catalog, self.paths.index_dir, dtype=lambda: self._config.vector_dtype)
            self._new_searcher()
            self._catalog_damage = None
        log.warning("the catalog was set aside as %s and a new one started (%s)", done.damaged or "-",
                    ", ".join(f"{n} {table}" for table, n in done.rows.items()) or "nothing salvaged")
        if self._service is not None:  # it indexes into the new catalog itself
            self._service.rescan("the catalog was rebuilt")
            return done, None
        if not index:
            return done, None
        report = self.index(on_progress=on_progress)
        relearn_from_clicks(self.catalog)
        self._learned = self._stored_learned()
        return done, report

    def status(self) -> StatusReport:
        """Counts, model, sizes and problems; never loads the model. The catalog's quick check runs
        on the first call and after any damage was met; damage is reported in `catalog_damage`,
        with whatever could still be counted."""
        damage = self._catalog_damage if self._catalog_damage is not None else self.check_catalog()
        if damage != "ok":
            return self._damaged_status(damage)
        index_bytes = sum(p.stat().st_size for p in self.store.files(self._config.vector_dtype))
        catalog_bytes = sum(p.stat().st_size for p in self.paths.data.glob("catalog.sqlite3*"))
        try:
            _, model_name = resolve_model(self._config.model)
        except SiftError as exc:
            model_name = f"{self._config.model} (unavailable: {exc})"
        problems = tuple(Problem(r.path, r.status, r.reason) for r in self.catalog.problems())
        problems += tuple(Problem(folder, FileStatus.UNREADABLE, f"this folder cannot be listed ({why}): "
                                  "Sift cannot see what is in it; files indexed before are kept")
                          for folder, why in sorted(unlistable_folders(self.catalog).items())
                          if is_within(folder, self.roots()))
        return StatusReport(folders=tuple(self.roots()), using_samples=self.using_samples,
                            files_by_status=self.catalog.counts_by_status(), chunks=self.catalog.chunk_count(),
                            model=model_name, reranker=self._reranker_status(),
                            vector_dtype=self._config.vector_dtype, index_bytes=index_bytes,
                            catalog_bytes=catalog_bytes, problems=problems,
                            offline=tuple(offline_roots(self.roots(), self.catalog)))

    def _damaged_status(self, damage: str) -> StatusReport:
        def tried(read, default):
            try:
                return read()
            except sqlite3.Error:
                return default

        catalog_bytes = sum(p.stat().st_size for p in self.paths.data.glob("catalog.sqlite3*"))
        problems = tuple(Problem(r.path, r.status, r.reason) for r in tried(self.catalog.problems, []))
        return StatusReport(folders=tuple(self.roots()), using_samples=self.using_samples,
                            files_by_status=tried(self.catalog.counts_by_status, {}),
                            chunks=tried(self.catalog.chunk_count, 0), vector_dtype=self._config.vector_dtype,
                            catalog_bytes=catalog_bytes, problems=problems, catalog_damage=damage)

    # -- watching and the background service ---------------------------------------------------

    def attach_service(self, service: BackgroundService) -> None:
        """Called by a background service as it starts (engine/service.py's IndexService): from
        then on `progress()` shows its snapshot, folder changes hold it still, `close()` stops it."""
        if self._service is not None and self._service is not service:
            raise SiftError("A background indexing service already runs for this Sift home; stop it first.")
        self._service = service

    def detach_service(self, service: BackgroundService) -> None:
        """Called by a background service as it stops."""
        if self._service is service:
            self._service = None

    def stop_service(self, timeout: float = 30.0) -> None:
        """Stop the background service, if one runs; work in flight stops at its next batch."""
        service, self._service = self._service, None
        if service is not None:
            service.stop(timeout=timeout)

    @property
    def service(self) -> BackgroundService | None:
        """The attached background service, while one runs."""
        return self._service

    def offline_roots(self) -> list[str]:
        """Chosen folders that are not there now (unplugged, unmounted): their files are kept."""
        return offline_roots(self.roots(), self.catalog)

    @contextmanager
    def _background_paused(self) -> Iterator[None]:
        """Hold the background service still (its batch in flight cancelled) for a folder change."""
        service = self._service
        if service is None:
            yield
            return
        with service.held():
            yield


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled()


def _prepare_int8(embedder: Embedder) -> None:
    """A model about to serve runs as the automatic backend runs the bundled one: on an x86 CPU its
    int8 model is made and checked first (about a minute), so its vectors are embedded once, by
    the model that will serve. If that fails, torch runs it, as before."""
    if not isinstance(embedder, SentenceTransformerEmbedder) or not embedder.int8_pending():
        return
    try:
        check = embedder.prepare_int8()
    except SiftError as exc:
        log.warning("%s runs in torch: %s", embedder.name, exc)
        return
    log.info("int8 model of %s: cosine to fp32 mean %.4f, min %.4f (%s)", embedder.name, check["cosine_mean"],
             check["cosine_min"], "used" if check["passed"] else "refused, torch runs it")
