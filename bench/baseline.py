"""The comparison baseline: TF's tutorial MNIST reader, rewritten from its documented behaviour.

It does what ``tensorflow/contrib/learn/python/learn/datasets/mnist.py`` does, in one process and
without TensorFlow: download the four ``.gz`` archives unless present (``base.maybe_download``),
gunzip and parse them on every call (``extract_images``/``extract_labels``: ``gzip.GzipFile`` +
``numpy.frombuffer``), take the first ``validation_size`` training rows as validation, and in
``DataSet`` reshape to (N, 784), ``astype(float32)`` and multiply by 1/255. ``next_batch`` copies
the whole split through a fresh permutation at the start of every epoch
(``images = images[perm]``) and then slices.

Two deliberate differences, both in the baseline's favour or neutral: the archive is streamed
straight into its final folder (TF downloads to a temp file, then copies it), and shuffles come
from a private ``numpy.random.Generator`` instead of the global RNG (same cost per permutation).
"""

from __future__ import annotations

import collections
import gzip
import os
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

Datasets = collections.namedtuple("Datasets", ["train", "validation", "test"])


def maybe_download(filename: str, work_directory: str | Path, source_url: str) -> Path:
    """Download ``source_url`` as ``work_directory/filename`` unless that file exists.

    Returns:
        The local path of the archive.
    """
    folder = Path(work_directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    if not path.exists():
        tmp = folder / f".{filename}.{os.getpid()}.part"
        try:
            with urllib.request.urlopen(source_url, timeout=60) as resp, open(tmp, "wb") as out:
                shutil.copyfileobj(resp, out, 1 << 16)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def _read32(bytestream: Any) -> int:
    return int(np.frombuffer(bytestream.read(4), dtype=np.dtype(np.uint32).newbyteorder(">"))[0])


def extract_images(path: str | Path) -> npt.NDArray[np.uint8]:
    """Gunzip and parse an IDX image archive.

    Returns:
        uint8 (N, rows, cols, 1), values 0..255, backed by the decompressed buffer.

    Raises:
        ValueError: The magic number is not 2051.
    """
    with open(path, "rb") as f, gzip.GzipFile(fileobj=f) as bytestream:
        magic = _read32(bytestream)
        if magic != IMAGES_MAGIC:
            raise ValueError(f"Invalid magic number {magic} in MNIST image file: {path}")
        num_images, rows, cols = _read32(bytestream), _read32(bytestream), _read32(bytestream)
        buf = bytestream.read(rows * cols * num_images)
        return np.frombuffer(buf, dtype=np.uint8).reshape(num_images, rows, cols, 1)


def extract_labels(path: str | Path) -> npt.NDArray[np.uint8]:
    """Gunzip and parse an IDX label archive.

    Returns:
        uint8 (N,), values 0..9.

    Raises:
        ValueError: The magic number is not 2049.
    """
    with open(path, "rb") as f, gzip.GzipFile(fileobj=f) as bytestream:
        magic = _read32(bytestream)
        if magic != LABELS_MAGIC:
            raise ValueError(f"Invalid magic number {magic} in MNIST label file: {path}")
        num_items = _read32(bytestream)
        return np.frombuffer(bytestream.read(num_items), dtype=np.uint8)


class DataSet:
    """One split held in memory as float32 in [0, 1], with TF's permutation-copy ``next_batch``.

    Args:
        images: uint8 (N, rows, cols, 1).
        labels: uint8 (N,).
        reshape: Flatten images to (N, rows * cols).
        seed: Seed (or SeedSequence) of the private shuffle Generator.
    """

    def __init__(self, images: npt.NDArray[np.uint8], labels: npt.NDArray[np.uint8], reshape: bool = True,
                 seed: Any = None) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"images.shape: {images.shape} labels.shape: {labels.shape}")
        self._num_examples = images.shape[0]
        if reshape:
            images = images.reshape(images.shape[0], images.shape[1] * images.shape[2])
        # TF converts in two steps, each making a full float32 copy: astype, then multiply.
        scaled = images.astype(np.float32)
        self._images: npt.NDArray[np.float32] = np.multiply(scaled, 1.0 / 255.0)
        self._labels = labels
        self._epochs_completed = 0
        self._index_in_epoch = 0
        self._rng = np.random.default_rng(seed)

    @property
    def images(self) -> npt.NDArray[np.float32]:
        return self._images

    @property
    def labels(self) -> npt.NDArray[np.uint8]:
        return self._labels

    @property
    def num_examples(self) -> int:
        return self._num_examples

    @property
    def epochs_completed(self) -> int:
        return self._epochs_completed

    def next_batch(self, batch_size: int, shuffle: bool = True) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
        """Return the next ``batch_size`` examples, permuting (copying) the whole split each epoch."""
        start = self._index_in_epoch
        if self._epochs_completed == 0 and start == 0 and shuffle:
            perm0 = self._rng.permutation(self._num_examples)
            self._images = self._images[perm0]
            self._labels = self._labels[perm0]
        if start + batch_size > self._num_examples:
            self._epochs_completed += 1
            rest = self._num_examples - start
            images_rest, labels_rest = self._images[start:], self._labels[start:]
            if shuffle:
                perm = self._rng.permutation(self._num_examples)
                self._images = self._images[perm]
                self._labels = self._labels[perm]
            self._index_in_epoch = batch_size - rest
            end = self._index_in_epoch
            return (np.concatenate((images_rest, self._images[:end]), axis=0),
                    np.concatenate((labels_rest, self._labels[:end]), axis=0))
        self._index_in_epoch += batch_size
        end = self._index_in_epoch
        return self._images[start:end], self._labels[start:end]


def read_data_sets(train_dir: str | Path, source_url: str = "", validation_size: int = 5000,
                   seed: Any = None) -> Datasets:
    """Download (if missing), gunzip, parse, split and scale MNIST, as TF's ``read_data_sets``.

    Args:
        train_dir: Folder holding (or receiving) the four ``.gz`` archives.
        source_url: Base URL of a mirror; only used for archives not yet in ``train_dir``.
        validation_size: The first this many training rows become the validation split.
        seed: Seed of the shuffles.

    Returns:
        ``Datasets(train, validation, test)`` of :class:`DataSet`, images float32 (N, 784) in [0, 1].
    """
    paths = {name: maybe_download(name, train_dir, source_url.rstrip("/") + "/" + name) for name in FILES}
    train_images = extract_images(paths[TRAIN_IMAGES])
    train_labels = extract_labels(paths[TRAIN_LABELS])
    test_images = extract_images(paths[TEST_IMAGES])
    test_labels = extract_labels(paths[TEST_LABELS])
    if not 0 <= validation_size <= len(train_images):
        raise ValueError(f"Validation size should be between 0 and {len(train_images)}. Received: {validation_size}.")
    seeds = np.random.SeedSequence(seed).spawn(3) if seed is not None else [None] * 3
    return Datasets(
        train=DataSet(train_images[validation_size:], train_labels[validation_size:], seed=seeds[0]),
        validation=DataSet(train_images[:validation_size], train_labels[:validation_size], seed=seeds[1]),
        test=DataSet(test_images, test_labels, seed=seeds[2]),
    )
