"""The USearch index over chunk vectors: a derived, rebuildable accelerator for dense search."""

from __future__ import annotations

import functools
import hashlib
import mmap
import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from engine.errors import SiftError

__all__ = [
    "DEFAULT_VECTOR_DTYPE",
    "VECTOR_DTYPES",
    "IndexFileError",
    "VectorIndex",
    "checksum_file",
    "quantize_i8",
]

# What settings may choose. i8 keeps a 384-d chunk at 384 bytes with a small recall cost;
# b1 is 1 bit per dimension: the sign bits of the float vector, compared by Hamming distance.
VECTOR_DTYPES = ("i8", "f16", "f32", "b1")
DEFAULT_VECTOR_DTYPE = "i8"

# HNSW graph settings. usearch's search default (64) loses recall on hard (near-uniform)
# data; 128 costs a few hundredths of a millisecond per query, nothing next to a rerank.
# Search asks for DENSE_DEPTH (200) candidates (search.py), so its effective breadth is 200.
# Connectivity 32, not 16: on 100k MiniLM-like chunks (bench/query_latency.py's data, real
# queries) recall@10 of 200 rescored candidates was 0.858 with 16 and 0.996 with 32, and
# search got faster (fewer hops); the build took 1.2× as long and the graph ~130 B more a chunk.
PARALLEL_ADD_MIN = 10_000  # batches smaller than this are added on one thread (see add)
# Up to this many vectors, search scans them all (exact) instead of walking the graph: as fast
# or faster here (384-d i8, 200 results: 5k 0.64 vs 0.98 ms, 20k 1.5 vs 2.0 ms; 50k 3.1 vs
# 1.9 ms), and never misses a vector the graph connects badly (many near-duplicate chunks did).
EXACT_SEARCH_MAX = 20_000
CONNECTIVITY = 32
EXPANSION_ADD = 128
EXPANSION_SEARCH = 128
# Saved indexes at least this large are memory-mapped (usearch's view) rather than copied into
# memory: the process starts searching without reading the whole file into its own heap, and
# pages it never touches stay on disk. The first add or remove copies it into memory.
VIEW_MIN_BYTES = 64 * 1024 * 1024

_SCALAR_NAMES = {"i8": "I8", "f16": "F16", "f32": "F32", "b1": "B1"}


@functools.cache
def _usearch():
    """usearch.index, imported on first use: opening the window or the CLI loads no native index
    code. OpenVINO, when installed, must load first (see engine.embed.preload_openvino)."""
    from engine.embed import preload_openvino

    preload_openvino()
    import usearch.index

    return usearch.index


def _scalar(dtype: str):
    return getattr(_usearch().ScalarKind, _SCALAR_NAMES[dtype])


class IndexFileError(SiftError):
    """A saved vector index cannot be used (missing, torn, corrupt or built for other settings).

    Nothing is lost: the catalog holds every vector, so the caller rebuilds the index from it.
    """


def checksum_file(path: Path) -> str:
    """Hex SHA-256 of the file's bytes; raises OSError if it cannot be read."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _metric_for(dtype: str):
    # usearch has no cosine over bits; Hamming over sign bits approximates the angle.
    kind = _usearch().MetricKind
    return kind.Hamming if dtype == "b1" else kind.Cos


def _check_settings(ndim: int, dtype: str) -> None:
    if dtype not in VECTOR_DTYPES:
        raise ValueError(f"vector dtype {dtype!r} is not one of {', '.join(VECTOR_DTYPES)}")
    if isinstance(ndim, bool) or not isinstance(ndim, int | np.integer) or ndim <= 0:
        raise ValueError(f"ndim must be a positive integer, not {ndim!r}")


def _new_index(ndim: int, dtype: str):
    return _usearch().Index(
        ndim=ndim,
        metric=_metric_for(dtype),
        dtype=dtype,
        connectivity=CONNECTIVITY,
        expansion_add=EXPANSION_ADD,
        expansion_search=EXPANSION_SEARCH,
        multi=False,
    )


def _as_keys(keys: Iterable[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(keys if isinstance(keys, np.ndarray) else list(keys))
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.size == 0:
        return np.empty(0, dtype=np.uint64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"keys must be integers (chunk ids), not {arr.dtype}")
    # A negative id would wrap to a huge uint64 and silently name another chunk.
    if arr.dtype.kind == "i" and arr.min() < 0:
        raise ValueError("keys must be non-negative chunk ids")
    return arr.astype(np.uint64, copy=False)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable. POSIX only: Windows cannot open a directory this way,
    # and its MoveFileEx (behind os.replace) is journaled by NTFS.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class VectorIndex:
    """An in-memory approximate nearest-neighbour index from chunk id to unit vector.

    Similarities are in [-1, 1], higher is better: cosine for i8/f16/f32, and for b1
    ``1 - 2 * hamming / ndim`` over the sign bits, which is 1 for equal signs everywhere and
    -1 for opposite ones. One lock serialises all calls: usearch is not safe to search while
    it grows its storage during an add, and each call here takes milliseconds.
    """

    def __init__(self, *, ndim: int, dtype: str = DEFAULT_VECTOR_DTYPE) -> None:
        _check_settings(ndim, dtype)
        self._ndim = int(ndim)
        self._dtype = dtype
        self._index = _new_index(self._ndim, dtype)
        self._lock = threading.Lock()
        self._version = 0  # bumped by every add and remove: a save is needed only when it moved
        self._mapped: mmap.mmap | None = None  # the file a view reads from, kept open while viewed

    @property
    def ndim(self) -> int:
        return self._ndim

    @property
    def dtype(self) -> str:
        return self._dtype

    @property
    def version(self) -> int:
        """A counter that changes whenever keys are added or removed (compare, do not interpret)."""
        return self._version

    def __len__(self) -> int:
        with self._lock:
            return len(self._index)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, bool) or not isinstance(key, int | np.integer) or not 0 <= key < 2**64:
            return False
        with self._lock:
            return bool(self._index.contains(int(key)))

    def __repr__(self) -> str:
        return f"VectorIndex(ndim={self._ndim}, dtype={self._dtype!r}, size={len(self)})"

    @property
    def is_view(self) -> bool:
        """True while the index is read from its memory-mapped file rather than held in memory."""
        return self._mapped is not None

    def _own_copy(self) -> None:
        """Turn a view into an in-memory index (caller holds the lock), before it is changed.

        The bytes come from this index's own mapping, which is the file verified at load even
        if a newer one has been renamed over the path since.
        """
        if self._mapped is None:
            return
        index = _new_index(self._ndim, self._dtype)
        index.load(self._mapped)
        self._index.reset()
        self._mapped.close()
        self._index, self._mapped = index, None

    def _prepare(self, vectors: np.ndarray) -> np.ndarray:
        """Float rows → what usearch stores: floats (it quantizes f16), int8 codes, or sign bits."""
        if self._dtype == "b1":
            # Padding bits past ndim are zero in every row, so they never add distance.
            return np.packbits(vectors > 0, axis=1)
        if self._dtype == "i8":
            return quantize_i8(vectors)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _check_vectors(self, vectors: np.ndarray, rows: int | None = None) -> np.ndarray:
        arr = np.asarray(vectors, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != self._ndim:
            raise ValueError(f"vectors must have shape (n, {self._ndim}), not {np.shape(vectors)}")
        if rows is not None and arr.shape[0] != rows:
            raise ValueError(f"{rows} keys but {arr.shape[0]} vectors")
        # usearch would index a NaN without complaint and then rank it arbitrarily.
        if not np.isfinite(arr).all():
            raise ValueError("vectors contain NaN or infinity")
        return arr

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Index L2-normalised float vectors under chunk ids; an existing id is replaced."""
        key_arr = _as_keys(keys)
        vec_arr = self._check_vectors(vectors, rows=key_arr.size)
        if key_arr.size == 0:
            return
        # usearch (multi=False) raises on a duplicate key, but only after adding the rows before
        # it, so duplicates are settled here: the last row for a key wins, older ones go first.
        rev_keys = key_arr[::-1]
        unique_keys, first = np.unique(rev_keys, return_index=True)
        if unique_keys.size != key_arr.size:
            key_arr, vec_arr = unique_keys, vec_arr[::-1][first]
        data = self._prepare(vec_arr)
        with self._lock:
            self._own_copy()
            present = np.asarray(self._index.contains(key_arr), dtype=bool)
            if present.any():
                self._index.remove(key_arr[present])
            # usearch's multi-threaded add occasionally leaves a vector unreachable in a small
            # graph (seen here: 1 search in 500 missed the vector itself under CPU load); a single
            # thread builds the same graph every time. Large rebuilds still use every core.
            threads = 1 if key_arr.size < PARALLEL_ADD_MIN else 0
            self._index.add(key_arr, data, threads=threads)
            self._version += 1

    def remove(self, keys: Iterable[int] | np.ndarray) -> None:
        """Drop chunk ids from the index; ids it does not hold are ignored."""
        key_arr = _as_keys(keys)
        if key_arr.size == 0:
            return
        with self._lock:
            self._own_copy()
            self._index.remove(key_arr)
            self._version += 1

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest chunk ids (uint64) and their similarities (float32), best first."""
        q = self._check_vectors(query)
        if q.shape[0] != 1:
            raise ValueError(f"search takes one query vector, not {q.shape[0]}")
        with self._lock:
            size = len(self._index)
            count = min(int(k), size)
            if count <= 0:
                return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.float32)
            # Asking for everything is a scan anyway; exact mode makes sure HNSW misses none.
            matches = self._index.search(self._prepare(q)[0], count, exact=count >= size or size <= EXACT_SEARCH_MAX)
            keys = np.array(matches.keys, dtype=np.uint64)
            distances = np.array(matches.distances, dtype=np.float32)
        similarity: np.ndarray
        if self._dtype == "b1":
            similarity = 1.0 - 2.0 * distances / self._ndim
        else:
            similarity = 1.0 - distances
        # Quantized cosine can stray a hair outside [-1, 1].
        return keys, np.clip(similarity, -1.0, 1.0).astype(np.float32)

    def keys(self) -> np.ndarray:
        """All chunk ids in the index, sorted, as uint64."""
        with self._lock:
            # A full slice, not np.array(keys): usearch's __array__ predates numpy 2's copy=.
            keys = self._index.keys[:]
        return np.sort(np.asarray(keys, dtype=np.uint64))

    def memory_bytes(self) -> int:
        """Bytes usearch holds for this index (vectors and graph)."""
        with self._lock:
            return int(self._index.memory_usage)

    def file_bytes(self) -> int:
        """The size a save would write, for checking free space before and after."""
        with self._lock:
            return int(self._index.serialized_length)

    def save(self, path: Path) -> str:
        """Write the index to path atomically and return the file's checksum for the catalog.

        The bytes go to a temporary file beside path, are flushed to disk, and only then
        renamed over path: at every instant path is the whole old file or the whole new one.
        The old file is never written in place, so a reader that has it open or mapped keeps
        a valid inode. Raises IndexFileError if the file cannot be written; the old file, if
        any, is then left as it was.
        """
        path = Path(path)
        directory = path.parent
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        except OSError as exc:
            raise IndexFileError(
                f"cannot write the vector index in {directory}: {exc}; check that the folder "
                "exists and is writable"
            ) from exc
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            with self._lock:
                self._index.save(os.fspath(tmp))
            # Hash what is on disk, not what we meant to write, and make it durable before
            # the rename can expose it. "r+b" because Windows refuses to fsync a read-only fd.
            with open(tmp, "r+b") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, (OSError, RuntimeError)):  # usearch reports I/O as RuntimeError
                raise IndexFileError(
                    f"cannot save the vector index to {path}: {exc}; free disk space or check "
                    "permissions (the previous index file is unchanged)"
                ) from exc
            raise
        try:
            _fsync_dir(directory)
        except OSError as exc:
            raise IndexFileError(
                f"saved the vector index to {path} but could not flush its folder: {exc}; "
                "a crash now might bring back the previous file (which is still consistent)"
            ) from exc
        return digest

    @classmethod
    def load(cls, path: Path, *, ndim: int, dtype: str, checksum: str | None,
             view: bool | None = None) -> VectorIndex:
        """Open a saved index, after checking it is the file the catalog names.

        view: memory-map the file instead of copying it into memory (True), copy it (False), or
        map it when it is at least VIEW_MIN_BYTES (None). A view is searched in place and becomes
        an in-memory copy on its first add or remove.

        The checksum is verified before usearch sees a byte: usearch trusts its input, and a
        corrupt file can crash the whole process inside it. Pass checksum=None only when the
        file's integrity is otherwise assured. Raises IndexFileError (rebuild from the catalog)
        if the file is missing, torn, corrupt, or was built with another ndim or dtype.
        """
        _check_settings(ndim, dtype)
        path = Path(path)
        try:
            fh = open(path, "rb")
        except FileNotFoundError as exc:
            raise IndexFileError(
                f"vector index {path} is missing; rebuild it from the catalog"
            ) from exc
        except OSError as exc:
            raise IndexFileError(f"cannot read vector index {path}: {exc}") from exc
        with fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                raise IndexFileError(f"vector index {path} is empty; rebuild it from the catalog")
            if view is None:
                view = size >= VIEW_MIN_BYTES
            # One mapping serves the hash and the load (or the view), so the bytes checked are
            # the bytes used even if a writer renames a new file over path meanwhile.
            data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            kept = False
            try:
                if checksum is not None:
                    actual = hashlib.sha256(data).hexdigest()
                    if actual != checksum.strip().lower():
                        raise IndexFileError(
                            f"vector index {path} does not match its recorded checksum (torn or "
                            "corrupt); rebuild it from the catalog"
                        )
                try:
                    meta = _usearch().Index.metadata(data)
                except Exception as exc:  # usearch raises ValueError/RuntimeError on bad headers
                    raise IndexFileError(
                        f"vector index {path} is not a usearch index: {exc}; rebuild it"
                    ) from exc
                _check_metadata(path, meta, ndim=ndim, dtype=dtype)
                self = cls(ndim=ndim, dtype=dtype)
                try:
                    if view:
                        # The mapping stays open with the index; renaming a new file over path
                        # leaves this (old) inode intact, so the view stays valid.
                        self._index.view(data)
                        self._mapped, kept = data, True
                    else:
                        # load copies into memory: the file can be replaced afterwards.
                        self._index.load(data)
                except Exception as exc:
                    self._mapped, kept = None, False
                    raise IndexFileError(f"cannot load vector index {path}: {exc}") from exc
            finally:
                if not kept:
                    data.close()
        return self


def quantize_i8(vectors: np.ndarray) -> np.ndarray:
    """Float rows → int8 codes, each row scaled so its largest component is ±127.

    usearch's own cast normalises a row and multiplies by 127, so a MiniLM vector (largest
    component ≈ 0.2) gets only about ±30 of the 255 codes. Cosine does not change when a row
    is scaled, so each row may be stretched to fill the range: about 2 bits more precision
    for free, with nothing to store (no calibration table, no file format change).
    """
    arr = np.asarray(vectors, dtype=np.float32)
    peak = np.abs(arr).max(axis=1, keepdims=True)
    scale = np.divide(127.0, peak, out=np.zeros_like(peak), where=peak > 0)
    return np.rint(arr * scale).clip(-127, 127).astype(np.int8)


def _check_metadata(path: Path, meta: dict | None, *, ndim: int, dtype: str) -> None:
    # Index.load silently adopts whatever ndim/dtype/metric the file has, so check first.
    if not meta:
        raise IndexFileError(f"vector index {path} has no readable header; rebuild it")
    found = (meta.get("dimensions"), meta.get("kind_scalar"), meta.get("kind_metric"))
    wanted = (ndim, _scalar(dtype), _metric_for(dtype))
    if found != wanted:
        raise IndexFileError(
            f"vector index {path} was built for ndim={found[0]}, dtype={found[1]}, "
            f"metric={found[2]}, but {ndim}-d {dtype} is configured; rebuild it from the catalog"
        )
    if meta.get("kind_key") != _usearch().ScalarKind.U64 or not meta.get("matrix_included", False):
        raise IndexFileError(f"vector index {path} has an unexpected layout; rebuild it")
