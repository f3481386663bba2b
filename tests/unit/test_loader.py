"""The loader: TF's API and next_batch semantics, private randomness, memory maps, checks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnist_data import DataSet, DatasetError, read_data_sets
from mnist_data.artifacts import SPLITS, save_split
from mnist_data.transforms import normalize

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def build(folder: Path, sizes=(50, 10, 20), low=-0.5, high=0.5, seed=0) -> dict[str, np.ndarray]:
    """Write three splits of random pixels; return the uint8 images per split."""
    rng = np.random.default_rng(seed)
    pixels = {}
    for name, n in zip(SPLITS, sizes, strict=True):
        pixels[name] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        save_split(folder / f"{name}.npz", normalize(pixels[name], low, high), labels, low, high, NAMES)
    return pixels


@pytest.fixture
def processed(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    return tmp_path, build(tmp_path)


def test_shapes_dtypes_and_values_as_tf(processed):
    folder, pixels = processed
    d = read_data_sets(folder)
    assert d.train.images.shape == (50, 784) and d.train.images.dtype == np.float32
    assert (d.train.num_examples, d.validation.num_examples, d.test.num_examples) == (50, 10, 20)
    np.testing.assert_array_equal(d.test.images, normalize(pixels["test"], -0.5, 0.5).reshape(20, 784))
    assert d.train.labels.dtype == np.uint8 and d.train.labels.shape == (50,)
    assert d.train.class_names == NAMES
    r = read_data_sets(folder, reshape=False)
    assert r.validation.images.shape == (10, 28, 28, 1)


def test_float32_images_are_read_only_memory_maps_not_copies(processed):
    folder, _ = processed
    images = read_data_sets(folder).train.images
    assert not images.flags.writeable and not images.flags.owndata
    import mmap

    base = images
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)


def test_uint8_recovers_the_original_pixels_for_any_range(tmp_path):
    pixels = build(tmp_path, low=0.0, high=1.0)
    d = read_data_sets(tmp_path, dtype=np.uint8, reshape=False)
    np.testing.assert_array_equal(d.train.images[..., 0], pixels["train"])
    assert d.train.images.dtype == np.uint8


def test_other_dtypes_are_a_type_error(processed):
    with pytest.raises(TypeError, match="float32 or numpy.uint8"):
        read_data_sets(processed[0], dtype=np.float64)


def test_one_hot(processed):
    d = read_data_sets(processed[0], one_hot=True)
    assert d.train.labels.shape == (50, 10) and d.train.labels.dtype == np.float32
    np.testing.assert_array_equal(d.train.labels.argmax(1), np.arange(50) % 10)
    assert (d.train.labels.sum(1) == 1).all()


def test_fake_data_needs_no_files(tmp_path):
    d = read_data_sets(tmp_path / "missing", fake_data=True, one_hot=True)
    images, labels = d.train.next_batch(7, fake_data=True)
    assert images.shape == (7, 784) and (images == 1).all()
    assert labels.shape == (7, 10) and (labels[:, 0] == 1).all() and labels.sum() == 7
    assert read_data_sets(tmp_path, fake_data=True).test.next_batch(3, fake_data=True)[1].tolist() == [0, 0, 0]


def test_missing_files_are_a_dataset_error_naming_the_file(tmp_path):
    with pytest.raises(DatasetError, match=r"train.npz: file not found; run `dvc repro` or `dvc pull`"):
        read_data_sets(tmp_path)


def _drain(ds: DataSet, batch: int, calls: int, shuffle: bool = True) -> tuple[list[int], list[int]]:
    stream, epochs = [], []
    for _ in range(calls):
        images, _ = ds.next_batch(batch, shuffle=shuffle)
        stream.extend(int(i) for i in images[:, 0])
        epochs.append(ds.epochs_completed)
    return stream, epochs


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(n=st.integers(1, 60), data=st.data(), seed=st.integers(0, 2**32 - 1), shuffle=st.booleans())
def test_every_example_once_per_epoch_and_batches_cross_epochs(n, data, seed, shuffle):
    batch = data.draw(st.integers(1, n))
    calls = data.draw(st.integers(1, 4 * n // batch + 3))
    ds = DataSet(np.arange(n, dtype=np.int64).reshape(n, 1), np.zeros(n, np.uint8), seed=seed)
    stream, epochs = _drain(ds, batch, calls, shuffle)
    assert len(stream) == batch * calls
    for e in range(len(stream) // n):  # each full epoch is a permutation of all examples
        assert sorted(stream[e * n : (e + 1) * n]) == list(range(n))
    if not shuffle:
        assert stream == [i % n for i in range(len(stream))]
    # epochs_completed goes up in the call whose batch runs past the end of an epoch
    assert epochs == [(c * batch - 1) // n for c in range(1, calls + 1)]


def test_same_seed_same_batches_and_global_rng_untouched(processed):
    folder, _ = processed
    np.random.seed(123)
    state = np.random.get_state()
    a, b, c = (read_data_sets(folder, seed=s).train for s in (7, 7, 8))
    batches_a = [a.next_batch(16)[1].tolist() for _ in range(10)]
    batches_b = [b.next_batch(16)[1].tolist() for _ in range(10)]
    batches_c = [c.next_batch(16)[1].tolist() for _ in range(10)]
    assert batches_a == batches_b and batches_a != batches_c
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]


@pytest.mark.parametrize("bad", [0, -1, 51, 2.0, True])
def test_batch_size_outside_range_is_a_value_error(processed, bad):
    with pytest.raises(ValueError, match=r"batch_size must be an integer in 1..50"):
        read_data_sets(processed[0]).train.next_batch(bad)


@given(n=st.integers(1, 200), shards=st.integers(1, 9))
def test_shards_are_disjoint_and_cover_every_example(n, shards):
    ds = DataSet(np.arange(n).reshape(n, 1), np.zeros(n, np.uint8), seed=1)
    if shards > n:
        with pytest.raises(ValueError, match="exceeds num_examples"):
            ds.shard(shards, 0)
        return
    parts = [ds.shard(shards, i) for i in range(shards)]
    covered = np.concatenate([p.images[:, 0] for p in parts])
    assert sorted(covered.tolist()) == list(range(n))
    assert max(p.num_examples for p in parts) - min(p.num_examples for p in parts) <= 1
    again = ds.shard(shards, 0)
    assert again.next_batch(1)[0].tolist() == parts[0].next_batch(1)[0].tolist()


def test_shard_arguments_are_checked(processed):
    with pytest.raises(ValueError, match="0 <= index < num_shards"):
        read_data_sets(processed[0]).train.shard(2, 2)


def test_value_scan_is_remembered_and_can_be_forced(processed):
    folder, _ = processed
    read_data_sets(folder)  # scans and remembers the three files
    path = folder / "test.npz"
    st_before = path.stat()
    data = bytearray(path.read_bytes())
    nan = np.float32(np.nan).tobytes()
    where = data.find(normalize(np.array([0, 0], np.uint8), -0.5, 0.5)[:1].tobytes(), 1000)
    data[where : where + 4] = nan
    with open(path, "r+b") as f:  # same inode, same size, mtime put back: the cache cannot tell
        f.write(data)
    os.utime(path, ns=(st_before.st_atime_ns, st_before.st_mtime_ns))
    read_data_sets(folder)  # the remembered scan is trusted
    with pytest.raises(DatasetError, match=r"test.npz: image value nan .* outside \[-0.5, 0.5\]"):
        read_data_sets(folder, verify="always")


def test_a_changed_file_is_scanned_again(processed, tmp_path):
    folder, _ = processed
    read_data_sets(folder)
    images = normalize(np.zeros((20, 28, 28), np.uint8), -0.5, 0.5)
    images[3, 4, 5] = 0.75
    save_split(folder / "test.npz", images, np.zeros(20, np.uint8), -0.5, 0.5, NAMES)
    with pytest.raises(DatasetError, match="0.75 at flat index 2469 is outside"):
        read_data_sets(folder)


def test_loading_holds_only_the_maps_and_releases_them(processed):
    import gc

    before = set(os.listdir("/proc/self/fd"))
    d = read_data_sets(processed[0])
    d.train.next_batch(10)
    held = set(os.listdir("/proc/self/fd")) - before
    assert len(held) <= 3  # one per split's memory map, none for our own file handles
    del d
    gc.collect()
    assert set(os.listdir("/proc/self/fd")) - before == set()


def test_shards_of_a_seeded_dataset_are_reproducible(processed):
    a = read_data_sets(processed[0], seed=3).train.shard(2, 1)
    b = read_data_sets(processed[0], seed=3).train.shard(2, 1)
    assert a.num_examples == 25
    assert [a.next_batch(5)[1].tolist() for _ in range(5)] == [b.next_batch(5)[1].tolist() for _ in range(5)]


def test_shards_of_fake_data_are_fake_too(tmp_path):
    shard = read_data_sets(tmp_path, fake_data=True, one_hot=True).train.shard(2, 0)
    images, labels = shard.next_batch(4, fake_data=True)
    assert images.shape == (4, 784) and labels.shape == (4, 10)
