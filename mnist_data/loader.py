"""TensorFlow-compatible access to the processed splits: DataSet, Datasets, read_data_sets.

Names and behaviour follow TF's tutorial reader (tensorflow/contrib/learn/python/learn/
datasets/mnist.py), so experiments port by changing the import. Differences, all deliberate:
randomness comes from a private numpy Generator (the global RNG is never touched), a batch size
outside 1..num_examples is a ValueError, and images are memory-mapped, never copied whole.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mnist_data.artifacts import SPLITS, load_split
from mnist_data.transforms import denormalize

Datasets = collections.namedtuple("Datasets", ["train", "validation", "test"])
FAKE_EXAMPLES = 10000


class DataSet:
    """A split with TF's ``next_batch`` semantics over a private, seedable shuffle.

    Args:
        images: (N, ...) images, any dtype; never copied.
        labels: (N,) class ids or (N, K) one-hot rows.
        fake_data: Serve TF's fake examples instead (``images``/``labels`` are ignored).
        one_hot: With ``fake_data``, give one-hot fake labels.
        seed: Seed (or SeedSequence) of the private Generator; ``None`` draws fresh entropy.
        class_names: The name of each class id, for labelling plots.
    """

    def __init__(self, images: npt.NDArray, labels: npt.NDArray, fake_data: bool = False,
                 one_hot: bool = False, seed: Any = None, class_names: tuple[str, ...] = ()) -> None:
        self.one_hot = one_hot
        self._fake_data = fake_data
        if fake_data:
            self._num_examples = FAKE_EXAMPLES
        else:
            if len(images) != len(labels):
                raise ValueError(f"images.shape: {images.shape} labels.shape: {labels.shape}")
            self._num_examples = len(images)
        self._images, self._labels = images, labels
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        self._order: npt.NDArray[np.intp] | None = None  # None: file order
        self._epochs_completed = 0
        self._index_in_epoch = 0
        self.class_names = tuple(class_names)

    @property
    def images(self) -> npt.NDArray:
        return self._images

    @property
    def labels(self) -> npt.NDArray:
        return self._labels

    @property
    def num_examples(self) -> int:
        return self._num_examples

    @property
    def epochs_completed(self) -> int:
        return self._epochs_completed

    def next_batch(self, batch_size: int, fake_data: bool = False, shuffle: bool = True) -> tuple[npt.NDArray, npt.NDArray]:
        """Return the next ``batch_size`` examples as ``(images, labels)``.

        With ``shuffle`` the order is reshuffled at the start of the first epoch and of every
        later one; a batch that crosses an epoch's end is the rest of the old epoch followed by
        the start of the new one, and ``epochs_completed`` goes up by one.

        Raises:
            ValueError: ``batch_size`` is not in 1..num_examples.
        """
        valid = isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool)
        if not (valid and 1 <= batch_size <= self._num_examples):
            raise ValueError(f"batch_size must be an integer in 1..{self._num_examples} (num_examples), got {batch_size!r}")
        if fake_data:
            fake_image = np.ones((batch_size, 784), dtype=np.float32)
            fake_label: npt.NDArray
            if self.one_hot:
                fake_label = np.zeros((batch_size, 10), dtype=np.float32)
                fake_label[:, 0] = 1
            else:
                fake_label = np.zeros(batch_size, dtype=np.uint8)
            return fake_image, fake_label
        start = self._index_in_epoch
        if self._epochs_completed == 0 and start == 0 and shuffle:
            self._order = self._rng.permutation(self._num_examples)
        if start + batch_size > self._num_examples:
            self._epochs_completed += 1
            rest = self._rows(start, self._num_examples)
            if shuffle:
                self._order = self._rng.permutation(self._num_examples)
            self._index_in_epoch = batch_size - (self._num_examples - start)
            head = self._rows(0, self._index_in_epoch)
            return np.concatenate((rest[0], head[0])), np.concatenate((rest[1], head[1]))
        self._index_in_epoch = start + batch_size
        return self._rows(start, self._index_in_epoch)

    def _rows(self, start: int, end: int) -> tuple[npt.NDArray, npt.NDArray]:
        if self._order is None:
            return self._images[start:end], self._labels[start:end]
        idx = self._order[start:end]
        return self._images.take(idx, axis=0), self._labels.take(idx, axis=0)

    def shard(self, num_shards: int, index: int) -> DataSet:
        """A DataSet over shard ``index`` of ``num_shards`` contiguous, disjoint, covering slices.

        Shard sizes differ by at most one. The shard's shuffle seed derives from this DataSet's
        seed and ``index``, so the same seed gives the same batches on every worker run.
        """
        if not (isinstance(num_shards, int) and num_shards >= 1 and isinstance(index, int) and 0 <= index < num_shards):
            raise ValueError(f"need 1 <= num_shards and 0 <= index < num_shards, got num_shards={num_shards!r}, index={index!r}")
        if num_shards > self._num_examples:
            raise ValueError(f"num_shards={num_shards} exceeds num_examples={self._num_examples}")
        bounds = np.linspace(0, self._num_examples, num_shards + 1).astype(np.int64)
        lo, hi = int(bounds[index]), int(bounds[index + 1])
        return DataSet(self._images[lo:hi], self._labels[lo:hi], fake_data=self._fake_data, one_hot=self.one_hot,
                       seed=_child_seed(self._seed, index), class_names=self.class_names)


def _child_seed(seed: Any, index: int) -> np.random.SeedSequence | None:
    """The seed of child ``index``: a SeedSequence spawned deterministically from ``seed``."""
    if seed is None:
        return None
    if isinstance(seed, np.random.SeedSequence):
        return np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, index))
    return np.random.SeedSequence(seed, spawn_key=(index,))


def read_data_sets(train_dir: str | Path = "data/processed", fake_data: bool = False, one_hot: bool = False,
                   dtype: Any = np.float32, reshape: bool = True, seed: Any = None, *,
                   repo: str | None = None, rev: str | None = None, verify: str = "cached") -> Datasets:
    """Load the train, validation and test splits as TF's ``read_data_sets`` did.

    Args:
        train_dir: Folder with ``train.npz``, ``validation.npz``, ``test.npz``; with ``repo``
            or ``rev``, that folder inside the repository.
        fake_data: Return TF-style fake DataSets; no files are read.
        one_hot: Labels as float32 (N, 10) one-hot rows instead of uint8 (N,).
        dtype: ``numpy.float32`` for the stored normalized values (exactly as stored, a
            read-only memory map), or ``numpy.uint8`` for the original 0..255 pixels.
        reshape: Images as (N, 784); otherwise (N, 28, 28, 1).
        seed: Seeds the shuffles: the same seed gives the same batches on any machine.
        repo: Git URL or path of a DVC repository to load from (needs ``dvc``).
        rev: Tag, branch or commit of ``repo`` (default: a git URL's default branch, a local
            repository's working tree); with only ``rev``, the current repository.
        verify: ``"cached"`` scans image values once per file version; ``"always"`` forces it.

    Raises:
        TypeError: ``dtype`` is neither float32 nor uint8.
        DatasetError: A file is missing or invalid.
    """
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.uint8)):
        raise TypeError(f"Invalid image dtype {dtype!r}, expected numpy.float32 or numpy.uint8")
    seeds = np.random.SeedSequence(seed).spawn(3) if seed is not None else [None] * 3
    if fake_data:
        return Datasets(*(DataSet(np.empty(0), np.empty(0), fake_data=True, one_hot=one_hot, seed=s) for s in seeds))
    if repo is not None or rev is not None:
        from mnist_data.versions import fetch_version  # imports dvc: only on this path

        paths = fetch_version(Path(train_dir).as_posix(), repo=repo, rev=rev)
    else:
        paths = {name: Path(train_dir) / f"{name}.npz" for name in SPLITS}
    sets = []
    for name, split_seed in zip(SPLITS, seeds, strict=True):
        split = load_split(paths[name], verify=verify)
        images: npt.NDArray = split.images
        if dt == np.uint8:
            images = denormalize(images, split.low, split.high, str(paths[name]))
        images = images.reshape(len(images), -1) if reshape else images.reshape(*images.shape, 1)
        labels: npt.NDArray = split.labels
        if one_hot:
            labels = np.eye(len(split.class_names), dtype=np.float32)[labels]
        sets.append(DataSet(images, labels, seed=split_seed, class_names=split.class_names))
    return Datasets(*sets)
