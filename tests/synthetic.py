"""Tiny synthetic MNIST-format datasets, built by the tests (real MNIST never enters the repo)."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field

import numpy as np

from mnist_data.idx import encode

NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


@dataclass
class Synthetic:
    """Raw IDX bytes, their gzip archives, and the params overrides that pin them."""

    raw: dict[str, bytes]
    arrays: dict[str, np.ndarray]
    archives: dict[str, bytes] = field(default_factory=dict)

    def files_override(self) -> dict[str, dict[str, object]]:
        """``dataset.files`` overrides pinning this content (sha256 + size of the uncompressed files)."""
        return {k: {"filename": NAMES[k], "sha256": hashlib.sha256(v).hexdigest(), "size": len(v)} for k, v in self.raw.items()}

    def by_filename(self) -> dict[str, bytes]:
        """Archive bytes keyed by the file name mirrors serve them under."""
        return {NAMES[k]: v for k, v in self.archives.items()}


def make_synthetic(n_train: int = 120, n_test: int = 30, seed: int = 0) -> Synthetic:
    """A dataset of random 28x28 images with labels covering 0..9."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8)[::-1].copy(),
    }
    arrays["train_images"][:, 0, 0] = 0  # make sure both ends of the range occur
    arrays["train_images"][:, 0, 1] = 255
    raw = {k: encode(v) for k, v in arrays.items()}
    archives = {k: gzip.compress(v, mtime=0) for k, v in raw.items()}
    return Synthetic(raw, arrays, archives)
