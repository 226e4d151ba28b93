"""Tests for engine.vectors: the USearch wrapper, its atomic save and its guarded load."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from engine.errors import SiftError
from engine.vectors import (
    DEFAULT_VECTOR_DTYPE,
    VECTOR_DTYPES,
    IndexFileError,
    VectorIndex,
    checksum_file,
)

NDIM = 32


def unit_rows(n: int, ndim: int = NDIM, *, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, ndim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def filled(
    dtype: str, n: int = 200, *, seed: int = 0
) -> tuple[VectorIndex, np.ndarray, np.ndarray]:
    vectors = unit_rows(n, seed=seed)
    keys = np.arange(1, n + 1, dtype=np.uint64) * 1000  # ids need not be dense
    index = VectorIndex(ndim=NDIM, dtype=dtype)
    index.add(keys, vectors)
    return index, keys, vectors


def test_dtypes_and_default():
    assert VECTOR_DTYPES == ("i8", "f16", "f32", "b1")
    assert DEFAULT_VECTOR_DTYPE == "i8"
    index = VectorIndex(ndim=NDIM)
    assert (index.ndim, index.dtype, len(index)) == (NDIM, "i8", 0)


@pytest.mark.parametrize("bad", [{"ndim": 0}, {"ndim": -3}, {"ndim": 8, "dtype": "f64"}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        VectorIndex(**{"ndim": NDIM, **bad})


@pytest.mark.parametrize("dtype", VECTOR_DTYPES)
def test_each_vector_finds_itself_first(dtype):
    index, keys, vectors = filled(dtype)
    assert len(index) == len(keys)
    for i in range(0, len(keys), 7):
        found, sims = index.search(vectors[i], 5)
        assert found.dtype == np.uint64 and sims.dtype == np.float32
        assert found[0] == keys[i]
        assert sims[0] == pytest.approx(1.0, abs=0.02)
        assert np.all(np.diff(sims) <= 1e-6)  # best first
        assert np.all((sims >= -1.0) & (sims <= 1.0))


@pytest.mark.parametrize("dtype", VECTOR_DTYPES)
def test_similarity_of_opposite_vector_is_minus_one(dtype):
    v = unit_rows(1)
    index = VectorIndex(ndim=NDIM, dtype=dtype)
    index.add(np.array([7], dtype=np.uint64), -v)
    _, sims = index.search(v[0], 1)
    assert sims[0] == pytest.approx(-1.0, abs=0.02)


@pytest.mark.parametrize("dtype", VECTOR_DTYPES)
def test_readding_a_key_replaces_its_vector(dtype):
    index, keys, vectors = filled(dtype, n=50)
    fresh = unit_rows(1, seed=99)
    index.add(keys[:1], fresh)
    assert len(index) == 50
    found, sims = index.search(fresh[0], 1)
    assert found[0] == keys[0] and sims[0] == pytest.approx(1.0, abs=0.02)
    # the old vector is gone: nothing in the index matches it any more
    _, sims = index.search(vectors[0], 1)
    assert sims[0] < 0.9


def test_replacing_many_times_and_duplicates_within_a_batch():
    v = unit_rows(10)
    index = VectorIndex(ndim=NDIM, dtype="f32")
    index.add(np.arange(10, dtype=np.uint64), v)
    for round_ in range(30):
        index.add(np.array([3, 4], dtype=np.uint64), v[[round_ % 10, (round_ + 1) % 10]])
    assert len(index) == 10
    # within one batch the last row for a key wins
    index.add(np.array([5, 5, 5], dtype=np.int64), v[[0, 1, 2]])
    assert len(index) == 10
    found, sims = index.search(v[2], 3)
    assert 5 in found[:3].tolist()
    assert sims[found.tolist().index(5)] == pytest.approx(1.0, abs=1e-5)


def test_remove_and_missing_keys_are_ignored():
    index, keys, vectors = filled("i8", n=20)
    index.remove([int(keys[0]), 123456789])  # one present, one never added
    index.remove(np.array([], dtype=np.uint64))
    assert len(index) == 19
    assert int(keys[0]) not in index and int(keys[1]) in index
    assert "x" not in index and -1 not in index
    found, _ = index.search(vectors[0], 19)
    assert int(keys[0]) not in found.tolist()
    assert np.array_equal(index.keys(), np.sort(keys[1:]))


def test_large_keys_up_to_2_63():
    index = VectorIndex(ndim=NDIM, dtype="f16")
    big = np.array([2**63 - 1, 2**62, 1], dtype=np.uint64)
    index.add(big, unit_rows(3))
    assert index.search(unit_rows(3)[0], 1)[0][0] == 2**63 - 1
    assert 2**63 - 1 in index
    with pytest.raises(ValueError):
        index.add(np.array([-5]), unit_rows(1))


def test_bad_vectors_are_refused():
    index = VectorIndex(ndim=NDIM)
    with pytest.raises(ValueError):
        index.add(np.array([1, 2], dtype=np.uint64), unit_rows(3))
    with pytest.raises(ValueError):
        index.add(np.array([1], dtype=np.uint64), unit_rows(1, ndim=NDIM + 1))
    nan = unit_rows(1)
    nan[0, 0] = np.nan
    with pytest.raises(ValueError):
        index.add(np.array([1], dtype=np.uint64), nan)
    assert len(index) == 0


@pytest.mark.parametrize("dtype", VECTOR_DTYPES)
def test_search_on_empty_index_and_k_bounds(dtype):
    index = VectorIndex(ndim=NDIM, dtype=dtype)
    found, sims = index.search(unit_rows(1)[0], 10)
    assert found.shape == (0,) and sims.shape == (0,)
    assert found.dtype == np.uint64 and sims.dtype == np.float32
    index.add(np.arange(5, dtype=np.uint64), unit_rows(5))
    found, sims = index.search(unit_rows(1, seed=3)[0], 50)
    assert sorted(found.tolist()) == [0, 1, 2, 3, 4]
    assert index.search(unit_rows(1)[0], 0)[0].shape == (0,)


# ---- save / load -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", VECTOR_DTYPES)
def test_save_load_round_trip(tmp_path: Path, dtype):
    index, keys, vectors = filled(dtype, n=300)
    path = tmp_path / "vectors.usearch"
    digest = index.save(path)
    assert digest == checksum_file(path) and len(digest) == 64
    loaded = VectorIndex.load(path, ndim=NDIM, dtype=dtype, checksum=digest)
    assert (loaded.ndim, loaded.dtype, len(loaded)) == (NDIM, dtype, 300)
    assert np.array_equal(loaded.keys(), index.keys())
    for q in unit_rows(20, seed=5):
        a_keys, a_sims = index.search(q, 10)
        b_keys, b_sims = loaded.search(q, 10)
        assert np.array_equal(a_keys, b_keys)
        assert np.array_equal(a_sims, b_sims)
    # loaded fully into memory: the file may go away and the index keeps working
    path.unlink()
    loaded.add(np.array([1], dtype=np.uint64), vectors[:1])
    assert len(loaded) == 301


def test_empty_index_round_trip(tmp_path: Path):
    path = tmp_path / "empty.usearch"
    digest = VectorIndex(ndim=NDIM).save(path)
    loaded = VectorIndex.load(path, ndim=NDIM, dtype="i8", checksum=digest)
    assert len(loaded) == 0


def _saved(tmp_path: Path) -> tuple[Path, str, bytes]:
    index, _, _ = filled("i8", n=500)
    path = tmp_path / "vectors.usearch"
    digest = index.save(path)
    return path, digest, path.read_bytes()


def _corrupt(kind: str, data: bytes) -> bytes:
    if kind == "truncated":
        return data[: len(data) // 2]
    if kind == "zeroed":
        return bytes(len(data))
    if kind == "flipped":
        # flipped bytes in the graph are what crash usearch unless the checksum stops them
        rng = np.random.default_rng(1)
        out = bytearray(data)
        for pos in rng.integers(64, len(out), 20):
            out[pos] ^= 0xFF
        return bytes(out)
    if kind == "header-only":
        return data[:64]
    if kind == "empty":
        return b""
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["truncated", "zeroed", "flipped", "header-only", "empty"])
def test_damaged_file_raises_index_file_error(tmp_path: Path, kind):
    path, digest, data = _saved(tmp_path)
    path.write_bytes(_corrupt(kind, data))
    with pytest.raises(IndexFileError) as info:
        VectorIndex.load(path, ndim=NDIM, dtype="i8", checksum=digest)
    assert isinstance(info.value, SiftError)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("kind", ["truncated", "zeroed", "header-only", "empty"])
def test_damaged_header_is_caught_even_without_checksum(tmp_path: Path, kind):
    # (flipped bytes past the header can only be caught by the checksum, so not tried here)
    path, _, data = _saved(tmp_path)
    path.write_bytes(_corrupt(kind, data))
    with pytest.raises(IndexFileError):
        VectorIndex.load(path, ndim=NDIM, dtype="i8", checksum=None)


def test_missing_file_raises_index_file_error(tmp_path: Path):
    with pytest.raises(IndexFileError, match="missing"):
        VectorIndex.load(tmp_path / "nope.usearch", ndim=NDIM, dtype="i8", checksum=None)


def test_wrong_checksum_raises(tmp_path: Path):
    path, _, _ = _saved(tmp_path)
    with pytest.raises(IndexFileError, match="checksum"):
        VectorIndex.load(path, ndim=NDIM, dtype="i8", checksum="0" * 64)


@pytest.mark.parametrize(
    ("ndim", "dtype"), [(NDIM * 2, "i8"), (NDIM, "f16"), (NDIM, "f32"), (NDIM, "b1")]
)
def test_other_settings_raise(tmp_path: Path, ndim, dtype):
    path, digest, _ = _saved(tmp_path)  # saved as 32-d i8
    with pytest.raises(IndexFileError, match="rebuild"):
        VectorIndex.load(path, ndim=ndim, dtype=dtype, checksum=digest)


def test_save_replaces_an_existing_file(tmp_path: Path):
    path, old_digest, _ = _saved(tmp_path)
    other, keys, _ = filled("i8", n=10, seed=4)
    new_digest = other.save(path)
    assert new_digest != old_digest
    loaded = VectorIndex.load(path, ndim=NDIM, dtype="i8", checksum=new_digest)
    assert np.array_equal(loaded.keys(), np.sort(keys))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_save_failing_before_rename_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch):
    path, old_digest, old_bytes = _saved(tmp_path)
    other, _, _ = filled("i8", n=10, seed=4)

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(IndexFileError, match="unchanged"):
        other.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert len(VectorIndex.load(path, ndim=NDIM, dtype="i8", checksum=old_digest)) == 500


def test_save_interrupted_while_writing_leaves_old_file(tmp_path: Path, monkeypatch):
    path, _, old_bytes = _saved(tmp_path)
    other, _, _ = filled("i8", n=10, seed=4)

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):  # not swallowed, and still cleaned up
        other.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_save_into_missing_folder_raises(tmp_path: Path):
    with pytest.raises(IndexFileError):
        VectorIndex(ndim=NDIM).save(tmp_path / "no" / "such" / "dir" / "v.usearch")


def test_old_file_stays_readable_by_a_holder_after_replace(tmp_path: Path):
    # a reader that opened the old file keeps seeing the old bytes after a save
    path, _, old_bytes = _saved(tmp_path)
    with open(path, "rb") as reader:
        filled("i8", n=10, seed=4)[0].save(path)
        assert reader.read() == old_bytes
    assert path.read_bytes() != old_bytes


# ---- recall ------------------------------------------------------------------------------


def test_i8_recall_against_exact_search():
    """A sanity check, not a benchmark.

    The data are random but clustered, and each query is a noisy copy of a stored chunk, as with
    real embeddings. On structureless uniform random vectors top-10 neighbours are separated
    by less than i8's rounding error, so no i8 index (even an exhaustive scan) reaches 0.9
    there; that would test the data, not the wrapper.
    """
    rng = np.random.default_rng(1234)
    n, ndim, n_queries = 2000, 384, 200
    centres = rng.standard_normal((50, ndim))
    data = centres[rng.integers(0, 50, n)] + rng.standard_normal((n, ndim))
    data = (data / np.linalg.norm(data, axis=1, keepdims=True)).astype(np.float32)
    queries = data[rng.integers(0, n, n_queries)] + 0.05 * rng.standard_normal((n_queries, ndim))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)

    keys = np.arange(n, dtype=np.uint64) + 10
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :10] + 10

    def recall(dtype: str, k: int) -> float:
        index = VectorIndex(ndim=ndim, dtype=dtype)
        index.add(keys, data)
        hits = 0
        for q, e in zip(queries, exact, strict=True):
            hits += len(set(index.search(q, k)[0].tolist()) & set(e.tolist()))
        return hits / (10 * n_queries)

    assert recall("i8", 10) >= 0.85  # measured 0.93 with usearch 2.26.6
    assert recall("i8", 40) >= 0.98  # with the oversampling search.py does, nearly all found
    assert recall("f16", 10) >= 0.95


# ---- calibrated i8 and memory-mapped views -------------------------------------------------------


def test_i8_codes_fill_the_int8_range_and_keep_cosine():
    from engine.vectors import quantize_i8

    rng = np.random.default_rng(5)
    rows = rng.standard_normal((300, 384)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)  # components ≈ ±0.05, largest ≈ 0.2
    codes = quantize_i8(rows)
    assert codes.dtype == np.int8 and np.all(np.abs(codes).max(axis=1) == 127)
    cos = np.sum(codes.astype(np.float32) * rows, axis=1) / np.linalg.norm(codes.astype(np.float32), axis=1)
    naive = np.trunc(rows * 127)  # what a fixed ×127 cast keeps
    naive_cos = np.sum(naive * rows, axis=1) / np.linalg.norm(naive, axis=1)
    assert cos.min() > 0.9999 > naive_cos.mean()
    assert not quantize_i8(np.zeros((1, 8), np.float32)).any(), "a zero row stays zero, no division by zero"
    # What usearch stores is exactly these codes.
    index = VectorIndex(ndim=384, dtype="i8")
    index.add(np.arange(3), rows[:3])
    stored = np.stack(index._index.get(np.arange(3), dtype=np.int8))
    assert np.array_equal(stored, codes[:3])


@pytest.mark.parametrize("dtype", VECTOR_DTYPES)
def test_large_files_are_viewed_and_become_a_copy_on_the_first_change(tmp_path: Path, dtype):
    index, keys, vectors = filled(dtype, n=300)
    path = tmp_path / "v.usearch"
    digest = index.save(path)
    viewed = VectorIndex.load(path, ndim=NDIM, dtype=dtype, checksum=digest, view=True)
    assert viewed.is_view and len(viewed) == 300
    assert viewed.search(vectors[7], 1)[0][0] == keys[7]
    # A newer file renamed over the path does not disturb the view (it maps the old inode).
    other, _, _ = filled(dtype, n=20, seed=9)
    other.save(path)
    assert viewed.search(vectors[8], 1)[0][0] == keys[8]
    viewed.add(np.array([5], dtype=np.uint64), vectors[:1])
    assert not viewed.is_view and len(viewed) == 301, "the copy is of the verified (old) file, plus the add"
    viewed.remove(keys[:10])
    assert len(viewed) == 291 and keys[0] not in viewed
    again = VectorIndex.load(path, ndim=NDIM, dtype=dtype, checksum=checksum_file(path), view=True)
    again.remove(keys[-1:])  # a remove (even of an absent key) also turns a view into a copy
    assert not again.is_view and len(again) == 20


def test_view_threshold_and_corruption_still_caught(tmp_path: Path, monkeypatch):
    import engine.vectors as vectors_module

    path, digest, data = _saved(tmp_path)
    assert not VectorIndex.load(path, ndim=NDIM, dtype="i8", checksum=digest).is_view
    monkeypatch.setattr(vectors_module, "VIEW_MIN_BYTES", 1)
    assert VectorIndex.load(path, ndim=NDIM, dtype="i8", checksum=digest).is_view
    for kind in ("truncated", "flipped"):
        path.write_bytes(_corrupt(kind, data))
        with pytest.raises(IndexFileError):
            VectorIndex.load(path, ndim=NDIM, dtype="i8", checksum=digest)
