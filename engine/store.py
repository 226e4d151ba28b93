"""The per-model vector-index files: where each lives, its checksum, load → verify → sync → save, forget."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from engine.catalog import Catalog
from engine.embed import Embedder
from engine.errors import DiskFullError, SiftError
from engine.vectors import VECTOR_DTYPES, IndexFileError, VectorIndex

log = logging.getLogger(__name__)

STALE_TEMP_S = 600.0  # a temporary index file this old belongs to no save in progress


class VectorStore:
    """The USearch files of one Sift home, one per (model, vector precision), and what the
    catalog records about them (each file's checksum, each model's vector size).

    The catalog is the truth: a file that is missing, torn, unverified or behind the catalog is
    brought in line from the catalog's stored vectors, never by embedding again. The store
    holds no index in memory; the caller keeps the one it serves and serializes saves of one file.
    """

    def __init__(self, catalog: Catalog, index_dir: Path, *, dtype: Callable[[], str]) -> None:
        self.catalog = catalog
        self.index_dir = index_dir
        self._dtype = dtype  # the vector precision setting, read at each use (settings change)

    @property
    def dtype(self) -> str:
        return self._dtype()

    def path(self, model_id: str, dtype: str | None = None) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.@-]+", "_", model_id)
        return self.index_dir / f"{safe}.{dtype or self.dtype}.usearch"

    @staticmethod
    def _checksum_key(path: Path) -> str:
        return f"index_checksum:{path.name}"

    def ndim(self, embedder: Embedder) -> int:
        """The model's vector size, remembered in the catalog so opening an index never loads the model."""
        key = f"ndim:{embedder.model_id}"
        if (known := self.catalog.get_meta(key)) is not None:
            return int(known)
        ndim = embedder.ndim
        with self.catalog.transaction() as conn:
            self.catalog.set_meta(conn, key, str(ndim))
        return ndim

    def load(self, embedder: Embedder) -> VectorIndex:
        """The saved index of `embedder`'s model, verified, brought in line with the catalog and
        saved again when it had to be repaired."""
        model_id, ndim, dtype = embedder.model_id, self.ndim(embedder), self.dtype
        path = self.path(model_id)
        checksum = self.catalog.get_meta(self._checksum_key(path))
        _remove_stale_temp_files(path)
        try:
            if checksum is None and path.exists():
                # Saved, then killed before its checksum was committed: it may be whole, but an
                # unverified file can crash usearch, and the catalog rebuilds it in seconds.
                raise IndexFileError(f"vector index {path} has no recorded checksum; rebuilding it")
            index = VectorIndex.load(path, ndim=ndim, dtype=dtype, checksum=checksum)
        except IndexFileError as exc:
            if path.exists() or checksum:
                log.warning("rebuilding the vector index from the catalog: %s", exc)
            index = VectorIndex(ndim=ndim, dtype=dtype)
            checksum = None  # so the rebuilt index is saved below, even when it is empty
        changed = self.sync(index, model_id)
        if changed or checksum is None or not path.exists():
            try:
                self.save(index, model_id)
            except SiftError as exc:  # a full disk must not stop search: the index in memory is right
                log.warning("could not save the repaired vector index (the next start repairs it again): %s", exc)
        return index

    def sync(self, index: VectorIndex, model_id: str) -> bool:
        """Add the catalog's chunks the index lacks and remove those the catalog no longer has;
        True when anything changed. Chunk ids are never reused, so the difference of the key
        sets is exactly what to add and remove."""
        in_catalog = self.catalog.chunk_ids()
        extra = np.setdiff1d(index.keys(), in_catalog, assume_unique=True)
        missing = np.setdiff1d(in_catalog, index.keys(), assume_unique=True)
        index.remove(extra)
        for ids, vecs in self.catalog.iter_chunk_vectors(model_id, missing.tolist()):
            index.add(ids, vecs)
        return bool(len(extra) or len(missing))

    def rebuild(self, embedder: Embedder) -> VectorIndex:
        """A new index holding exactly the catalog's chunks, from their stored vectors (not saved)."""
        index = VectorIndex(ndim=self.ndim(embedder), dtype=self.dtype)
        for ids, vecs in self.catalog.iter_chunk_vectors(embedder.model_id):
            index.add(ids, vecs)
        return index

    def save(self, index: VectorIndex, model_id: str) -> Path:
        """Write the index atomically, private to the user, and record its checksum; returns its path."""
        path = self.path(model_id)
        try:
            checksum = index.save(path)
        except IndexFileError as exc:
            # usearch reports a full disk only as "failed to serialize"; free space tells.
            if DiskFullError.caused(exc, path.parent, needed=index.file_bytes() + (1 << 20)):
                raise DiskFullError(path.parent, "save its vector index") from exc
            raise
        os.chmod(path, 0o600)
        with self.catalog.transaction() as conn:
            self.catalog.set_meta(conn, self._checksum_key(path), checksum)
        return path

    def is_saved(self, model_id: str) -> bool:
        """Whether the model's file exists with a recorded checksum (it may still fail to verify)."""
        path = self.path(model_id)
        return path.exists() and self.catalog.get_meta(self._checksum_key(path)) is not None

    def files(self, dtype: str | None = None) -> list[Path]:
        """The index files there are: of one precision, or of every one."""
        return sorted(self.index_dir.glob(f"*.{dtype}.usearch" if dtype else "*.usearch"))

    def forget(self, model_id: str) -> None:
        """Drop a model's stored vectors, its vector size and its index files (a refused candidate)."""
        paths = [self.path(model_id, dtype) for dtype in VECTOR_DTYPES]
        with self.catalog.transaction() as conn:
            self.catalog.delete_vectors(conn, model_id)
            self.catalog.delete_meta(conn, f"ndim:{model_id}")
            for path in paths:
                self.catalog.delete_meta(conn, self._checksum_key(path))
        for path in paths:
            path.unlink(missing_ok=True)

    def prune(self, keep_models: Iterable[str]) -> None:
        """Keep the vectors and index files of these models only (the active and the previous)."""
        keep = sorted(set(keep_models))
        with self.catalog.transaction() as conn:
            self.catalog.prune_embeddings(conn, keep_models=keep)
        self.remove_files_except({self.path(m, dtype) for m in keep for dtype in VECTOR_DTYPES})

    def remove_files_except(self, keep: Iterable[Path]) -> None:
        names = {p.name for p in keep}
        for other in self.files():
            if other.name not in names:
                other.unlink(missing_ok=True)


def _remove_stale_temp_files(index_path: Path, older_than_s: float = STALE_TEMP_S) -> None:
    """Delete temporary index files left by a process killed mid-save (they hold vectors).

    Only old ones: a younger one may be another process's save in progress.
    """
    now = time.time()
    for tmp in index_path.parent.glob(f".{index_path.name}.*.tmp"):
        try:
            if now - tmp.stat().st_mtime > older_than_s:
                tmp.unlink()
        except OSError:
            pass
