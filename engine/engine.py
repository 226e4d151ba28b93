"""The Engine facade: folders, indexing, search and status over one Sift home."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from engine.catalog import Catalog
from engine.config import Config, load_config, save_config
from engine.embed import Embedder, SentenceTransformerEmbedder, resolve_model
from engine.errors import Cancelled, FolderError, SiftError
from engine.indexer import Indexer, is_within, iter_paths
from engine.paths import Paths, resolve_paths, samples_dir
from engine.types import FileStatus, Hit, IndexReport, Problem, Progress, StatusReport
from engine.vectors import IndexFileError, VectorIndex

log = logging.getLogger(__name__)

# Dense search asks the index for this many chunks per wanted document, since several of a
# document's chunks often rank together.
CHUNKS_PER_HIT = 5
SNIPPET_CHARS = 240


class Engine:
    """Everything Sift does, for the CLI and the GUI alike. Safe to call from several threads."""

    def __init__(self, paths: Paths, *, embedder: Embedder | None = None) -> None:
        self.paths = paths.ensure()
        self._config = load_config(paths.settings)
        self.catalog = Catalog(paths.catalog)
        self._embedder = embedder
        self._embedder_lock = threading.Lock()
        self._vectors: VectorIndex | None = None
        self._vectors_lock = threading.RLock()
        self._cancel = threading.Event()
        self._progress = Progress()

    @classmethod
    def open(cls, home: str | os.PathLike | None = None, *, embedder: Embedder | None = None) -> "Engine":
        """The engine over SIFT_HOME, the platform's directories, or `home` when given."""
        paths = resolve_paths({"SIFT_HOME": os.fspath(home)} if home is not None else None)
        return cls(paths, embedder=embedder)

    def close(self) -> None:
        self.catalog.close()

    # -- settings and folders ------------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self._config

    def update_config(self, **changes) -> Config:
        config = dataclasses.replace(self._config, **changes).validate()
        save_config(self.paths.settings, config)
        if (config.model, config.device, config.vector_dtype) != (self._config.model, self._config.device,
                                                                   self._config.vector_dtype):
            with self._vectors_lock:
                self._vectors = None
            if config.model != self._config.model or config.device != self._config.device:
                self._embedder = None
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
        self.update_config(folders=tuple(sorted(folders)))
        self._forget_outside(self._config.folders)  # the samples, once the user has folders of their own
        return path

    def remove_folder(self, folder: str | os.PathLike) -> int:
        """Stop searching a folder and forget everything indexed from it; returns files forgotten."""
        path = os.path.abspath(os.path.expanduser(os.fspath(folder)))
        if path not in self._config.folders:
            listed = ", ".join(self._config.folders) or "none"
            raise FolderError(f"{path} is not one of Sift's folders (they are: {listed}).")
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
        with self._vectors_lock:
            if self._vectors is not None:
                self._vectors.remove(chunk_ids)
                self._save_vectors(self._vectors)
        return len(doomed)

    # -- models and the vector index -------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        with self._embedder_lock:
            if self._embedder is None:
                self._embedder = SentenceTransformerEmbedder(
                    self._config.model, device=self._config.device, batch_size=self._config.embed_batch_size)
            return self._embedder

    def _index_path(self) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.@-]+", "_", self.embedder.model_id)
        return self.paths.index_dir / f"{safe}.{self._config.vector_dtype}.usearch"

    def _checksum_key(self, path: Path) -> str:
        return f"index_checksum:{path.name}"

    def vectors(self) -> VectorIndex:
        """The vector index for the current model: loaded, verified and brought in line with the catalog."""
        with self._vectors_lock:
            if self._vectors is None:
                self._vectors = self._load_vectors()
            return self._vectors

    def _load_vectors(self) -> VectorIndex:
        path = self._index_path()
        model_id, ndim, dtype = self.embedder.model_id, self._ndim(), self._config.vector_dtype
        checksum = self.catalog.get_meta(self._checksum_key(path))
        try:
            index = VectorIndex.load(path, ndim=ndim, dtype=dtype, checksum=checksum)
        except IndexFileError as exc:
            if path.exists() or checksum:
                log.warning("rebuilding the vector index from the catalog: %s", exc)
            index = VectorIndex(ndim=ndim, dtype=dtype)
        # The saved file can lag the catalog (a crash after a commit); chunk ids are never reused,
        # so the difference of key sets is exactly what to add and remove.
        in_catalog = self.catalog.chunk_ids()
        extra = np.setdiff1d(index.keys(), in_catalog, assume_unique=True)
        missing = np.setdiff1d(in_catalog, index.keys(), assume_unique=True)
        index.remove(extra)
        for ids, vecs in self.catalog.iter_chunk_vectors(model_id, missing.tolist()):
            index.add(ids, vecs)
        if len(extra) or len(missing) or not path.exists():
            self._save_vectors(index)
        return index

    def _ndim(self) -> int:
        """The model's vector size, remembered in the catalog so opening an index never loads the model."""
        key = f"ndim:{self.embedder.model_id}"
        if (known := self.catalog.get_meta(key)) is not None:
            return int(known)
        ndim = self.embedder.ndim
        with self.catalog.transaction() as conn:
            self.catalog.set_meta(conn, key, str(ndim))
        return ndim

    def _save_vectors(self, index: VectorIndex) -> None:
        path = self._index_path()
        checksum = index.save(path)
        os.chmod(path, 0o600)
        with self.catalog.transaction() as conn:
            self.catalog.set_meta(conn, self._checksum_key(path), checksum)

    # -- indexing ------------------------------------------------------------------------------

    def progress(self) -> Progress:
        """The latest progress snapshot; cheap, callable from any thread."""
        return self._progress

    def cancel(self) -> None:
        """Ask a running `index()` to stop after its current batch (it raises Cancelled)."""
        self._cancel.set()

    def index(self, *, on_progress: Callable[[Progress], None] | None = None) -> IndexReport:
        """Bring the catalog and the vector index in line with the folders. Raises Cancelled."""
        self._cancel.clear()

        def report(p: Progress) -> None:
            self._progress = p
            if on_progress is not None:
                on_progress(p)

        with self._exclusive():
            vectors = self.vectors()
            indexer = Indexer(catalog=self.catalog, embedder=self.embedder, config=self._config,
                              roots=self.roots(), vectors=vectors, cancel=self._cancel, on_progress=report)
            try:
                return indexer.run()
            except Cancelled:
                report(dataclasses.replace(indexer.progress, phase="cancelled"))
                raise
            finally:
                with self._vectors_lock:
                    self._save_vectors(vectors)

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One indexing run per Sift home, across processes."""
        lock_file = open(self.paths.lock, "a+")
        try:
            try:
                import fcntl

                fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except ImportError:  # Windows: msvcrt locks a byte range instead
                import msvcrt

                msvcrt.locking(lock_file.fileno(), msvcrt.LK_NBLCK, 1)
            except OSError:
                raise SiftError("Another Sift process is indexing these folders right now. "
                                "Wait for it to finish, or stop it, then try again.") from None
            yield
        finally:
            lock_file.close()

    # -- search --------------------------------------------------------------------------------

    def search(self, query: str, *, limit: int = 10) -> list[Hit]:
        """Documents whose passages are nearest the query in meaning, best first."""
        query = query.strip()
        if not query or limit < 1:
            return []
        vectors = self.vectors()
        q = self.embedder.embed_query(query)
        with self._vectors_lock:
            keys, sims = vectors.search(q, limit * CHUNKS_PER_HIT)
        rows = self.catalog.chunks_by_id([int(k) for k in keys])
        hits: dict[int, Hit] = {}
        for key, sim in zip(keys, sims):
            row = rows.get(int(key))
            if row is None or row.file_id in hits:
                continue  # removed since the index was read, or a weaker chunk of a listed file
            hits[row.file_id] = Hit(path=row.path, score=float(sim), page=row.page, snippet=_snippet(row.text),
                                    chunk_id=row.id, start=row.start, end=row.end, kind=row.kind or "",
                                    mtime=row.mtime_ns / 1e9)
            if len(hits) == limit:
                break
        return list(hits.values())

    def record_click(self, query: str, hit: Hit, *, rank: int, shown: Sequence[Hit]) -> None:
        """Remember that a result was opened: the fine-tune wizard learns from these."""
        row = self.catalog.chunks_by_id([hit.chunk_id]).get(hit.chunk_id)
        if row is None:
            return  # the file was re-indexed or removed since the search; nothing to learn
        with self.catalog.transaction() as conn:
            self.catalog.add_click(conn, query=query, chunk_id=hit.chunk_id, text_hash=row.text_hash, path=hit.path,
                                   rank=rank, shown=[h.chunk_id for h in shown])

    # -- status --------------------------------------------------------------------------------

    def status(self) -> StatusReport:
        """Counts, model, sizes and problems; never loads the model."""
        index_bytes = sum(p.stat().st_size for p in self.paths.index_dir.glob(f"*.{self._config.vector_dtype}.usearch"))
        catalog_bytes = sum(p.stat().st_size for p in self.paths.data.glob("catalog.sqlite3*"))
        try:
            _, model_name = resolve_model(self._config.model)
        except SiftError as exc:
            model_name = f"{self._config.model} (unavailable: {exc})"
        problems = tuple(Problem(r.path, r.status, r.reason) for r in self.catalog.problems())
        return StatusReport(folders=tuple(self.roots()), using_samples=self.using_samples,
                            files_by_status=self.catalog.counts_by_status(), chunks=self.catalog.chunk_count(),
                            model=model_name, vector_dtype=self._config.vector_dtype, index_bytes=index_bytes,
                            catalog_bytes=catalog_bytes, problems=problems)


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) <= SNIPPET_CHARS:
        return flat
    cut = flat.rfind(" ", 0, SNIPPET_CHARS)
    return flat[: cut if cut > SNIPPET_CHARS // 2 else SNIPPET_CHARS] + " …"

