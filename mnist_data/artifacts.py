"""The processed artifacts: what a split's .npz holds, writing it, and loading it safely.

Each of ``train.npz``, ``validation.npz`` and ``test.npz`` holds exactly:

- ``images``: float32 (N, 28, 28), pixels scaled onto ``normalize_range``;
- ``labels``: uint8 (N,), in 0..len(class_names)-1;
- ``normalize_range``: float64 (2,), the [low, high] the pixels were scaled onto;
- ``class_names``: unicode (K,), the name of each label.

Loading checks header, dtype, shape, counts and labels every time. The full scan of the image
values (range and NaN) runs once per file version and is remembered in a small JSON file keyed
by the file's real path, size and mtime; ``verify="always"`` forces it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mnist_data import checks
from mnist_data.errors import DatasetError
from mnist_data.npz import read_npz, write_npz

SPLITS = ("train", "validation", "test")
_LAYOUT = {"images": ("<f4", 3), "labels": ("|u1", 1), "normalize_range": ("<f8", 1), "class_names": ("<U", 1)}
CACHE_ENV = "MNIST_DATA_CACHE"
VERIFY_MODES = ("cached", "always")


@dataclass(frozen=True)
class Split:
    """One split as loaded: memory-mapped arrays plus the metadata stored beside them."""

    images: npt.NDArray[np.float32]
    labels: npt.NDArray[np.uint8]
    low: float
    high: float
    class_names: tuple[str, ...]


def save_split(path: str | Path, images: npt.NDArray[np.float32], labels: npt.NDArray[np.uint8],
               low: float, high: float, class_names: tuple[str, ...]) -> None:
    """Write one split's .npz atomically and deterministically."""
    names = np.array(class_names, dtype=f"<U{max(1, max(len(c) for c in class_names))}")
    write_npz(path, {"images": images, "labels": labels,
                     "normalize_range": np.array([low, high], dtype="<f8"), "class_names": names})


def cache_dir() -> Path:
    """Where the loader remembers verified files and keeps downloaded versions."""
    env = os.environ.get(CACHE_ENV)
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist_data"
    return base


def load_split(path: str | Path, verify: str = "cached") -> Split:
    """Map and check one split's .npz.

    Args:
        path: The .npz file.
        verify: ``"cached"`` scans image values once per file version; ``"always"`` every time.

    Raises:
        DatasetError: Anything about the file is wrong; the message names the file.
    """
    if verify not in VERIFY_MODES:
        raise ValueError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
    path = Path(path)
    arrays = read_npz(path, _LAYOUT)
    images, labels = arrays["images"], arrays["labels"]
    rng = np.asarray(arrays["normalize_range"], dtype=np.float64)
    if rng.shape != (2,) or not (np.isfinite(rng).all() and rng[0] < rng[1]):
        raise DatasetError(path, f"normalize_range is {rng.tolist()}, expected two finite numbers low < high")
    names = tuple(str(n) for n in arrays["class_names"])
    if not names:
        raise DatasetError(path, "class_names is empty, expected one name per class")
    checks.check_images(images, path, np.float32)
    checks.check_labels(np.asarray(labels), path, len(names))
    checks.check_counts(images, labels, path)
    low, high = float(rng[0]), float(rng[1])
    key = _scan_key(path, low, high)
    if verify == "always" or not _scan_remembered(key):
        checks.check_range(images, low, high, path)
        _remember_scan(key)
    return Split(images, labels, low, high, names)


def _scan_key(path: Path, low: float, high: float) -> str:
    st = path.stat()
    return f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}|{low!r}|{high!r}"


def _scan_file() -> Path:
    return cache_dir() / "verified.json"


def _scan_remembered(key: str) -> bool:
    try:
        return key in json.loads(_scan_file().read_text())
    except (OSError, ValueError, TypeError):
        return False


def _remember_scan(key: str) -> None:
    """Best effort: a read-only cache only means the scan runs again next time."""
    try:
        try:
            known = json.loads(_scan_file().read_text())
            known = known if isinstance(known, dict) else {}
        except (OSError, ValueError):
            known = {}
        known[key] = True
        if len(known) > 1000:
            known = dict(list(known.items())[-1000:])
        _scan_file().parent.mkdir(parents=True, exist_ok=True)
        tmp = _scan_file().with_name(f".verified.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, _scan_file())
    except OSError:
        pass
