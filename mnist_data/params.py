"""Reading params.yaml and the dataset definitions into typed, validated parameters.

This is the only module that reads params.yaml. Every check runs before any stage does work,
and every problem is a ParamsError naming the dotted key.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import yaml

from mnist_data.errors import ParamsError
from mnist_data.transforms import scale_table

DEFINITIONS_DIR = Path(__file__).parent / "datasets"
FILE_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
MIRRORS_ENV = "MNIST_MIRRORS"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FILE_FIELDS = ("filename", "size", "sha256", "archive_sha256", "archive_size")


@dataclass(frozen=True)
class FileSpec:
    """One archive to fetch and what its content must be.

    Attributes:
        key: Role of the file, one of FILE_KEYS.
        filename: Name of the ``.gz`` archive on every mirror.
        size: Size in bytes of the uncompressed file; decompression stops past it.
        sha256: Digest of the uncompressed file; when set, it and ``size`` alone decide.
        archive_sha256: Digest of the archive as served; the pin when ``sha256`` is unknown.
        archive_size: Size of the archive as served, checked with ``archive_sha256``.
    """

    key: str
    filename: str
    size: int
    sha256: str | None = None
    archive_sha256: str | None = None
    archive_size: int | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset definition with the user's overrides applied."""

    name: str
    title: str
    license: str
    citation: str
    mirrors: tuple[str, ...]
    class_names: tuple[str, ...]
    files: Mapping[str, FileSpec]


@dataclass(frozen=True)
class FetchParams:
    """Network knobs of the fetch stage; none of them changes the data.

    Attributes:
        connect_timeout: Seconds to wait for a connection.
        read_timeout: Seconds to wait for any byte once connected.
        deadline: Seconds one download of one file from one mirror may take in all.
        retries: Further attempts on the same mirror after a retryable failure.
        backoff: Seconds before the first retry; doubled for each further retry.
        max_retry_after: Longest ``Retry-After`` honoured; a longer one moves to the next mirror.
    """

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    deadline: float = 900.0
    retries: int = 2
    backoff: float = 1.0
    max_retry_after: float = 30.0


@dataclass(frozen=True)
class NormalizeParams:
    """Pixels 0..255 map linearly onto [low, high]."""

    low: float
    high: float


@dataclass(frozen=True)
class SplitParams:
    """The first ``validation_size`` training rows become the validation set."""

    validation_size: int


@dataclass(frozen=True)
class Params:
    """Everything params.yaml sets, validated."""

    dataset: DatasetSpec
    fetch: FetchParams
    normalize: NormalizeParams
    split: SplitParams


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml and the dataset definition it names.

    Raises:
        ParamsError: The file is missing or unreadable, or any key is wrong.
    """
    raw = _read_yaml(Path(path))
    src = str(path)
    dataset = _section(raw, "dataset", src)
    norm = _section(raw, "normalize", src)
    split = _section(raw, "split", src)
    fetch = raw.get("fetch", {})
    if not isinstance(fetch, dict):
        raise ParamsError("fetch", f"expected a mapping, got {type(fetch).__name__}", src)
    _known_keys(dataset, ("name", "files", "mirrors"), "dataset", src)
    _known_keys(norm, ("low", "high"), "normalize", src)
    _known_keys(split, ("validation_size",), "split", src)
    low = _number(norm, "normalize.low", src)
    high = _number(norm, "normalize.high", src)
    if not low < high:
        raise ParamsError("normalize.low", f"must be less than normalize.high; got low={low}, high={high}", src)
    with np.errstate(over="ignore"):
        table = scale_table(low, high)
    if not (np.isfinite(table).all() and (np.diff(table) > 0).all()):
        raise ParamsError(
            "normalize.low", f"[{low}, {high}] cannot hold 256 distinct float32 pixel values (too narrow for its "
            "magnitude, or beyond float32); choose a range like [-0.5, 0.5] or [0, 1]", src,
        )
    size = _integer(split, "split.validation_size", src, minimum=0)
    return Params(
        dataset=load_dataset(dataset, src),
        fetch=_fetch_params(fetch, src),
        normalize=NormalizeParams(low, high),
        split=SplitParams(size),
    )


def known_datasets() -> list[str]:
    """Names of the dataset definitions shipped in ``mnist_data/datasets``."""
    return sorted(p.stem for p in DEFINITIONS_DIR.glob("*.yaml"))


def definition_path(name: str) -> Path:
    """The definition file of dataset ``name`` (it may not exist)."""
    return DEFINITIONS_DIR / f"{name}.yaml"


def load_dataset(section: Mapping[str, Any], src: str = "params.yaml") -> DatasetSpec:
    """Build a DatasetSpec from params' ``dataset`` section: definition plus overrides."""
    name = section.get("name", "mnist")
    if not isinstance(name, str) or name not in known_datasets():
        raise ParamsError("dataset.name", f"unknown dataset {name!r}; known: {', '.join(known_datasets())}", src)
    defn_src = str(definition_path(name))
    defn = _read_yaml(definition_path(name))
    mirrors = section["mirrors"] if "mirrors" in section else defn.get("mirrors")
    overrides = section.get("files") or {}
    if not isinstance(overrides, dict):
        raise ParamsError("dataset.files", f"expected a mapping, got {type(overrides).__name__}", src)
    unknown = set(overrides) - set(FILE_KEYS)
    if unknown:
        raise ParamsError("dataset.files", f"unknown file key(s) {sorted(unknown)}; known: {list(FILE_KEYS)}", src)
    base_files = defn.get("files")
    if not isinstance(base_files, dict):
        raise ParamsError("files", "expected a mapping of the four files", defn_src)
    files = {}
    for key in FILE_KEYS:
        entry = dict(_section(base_files, key, defn_src, prefix="files."))
        override = overrides.get(key) or {}
        if not isinstance(override, dict):
            raise ParamsError(f"dataset.files.{key}", "expected a mapping", src)
        _known_keys(override, _FILE_FIELDS, f"dataset.files.{key}", src)
        _known_keys(entry, _FILE_FIELDS, f"files.{key}", defn_src)
        if "sha256" in override:  # a user's content pin replaces the definition's archive pin
            entry.pop("archive_sha256", None)
            entry.pop("archive_size", None)
        entry.update(override)
        files[key] = _file_spec(key, entry, src if override else defn_src)
    class_names = defn.get("class_names")
    if not (isinstance(class_names, list) and class_names and all(isinstance(c, str) for c in class_names)):
        raise ParamsError("class_names", "expected a non-empty list of strings", defn_src)
    return DatasetSpec(
        name=name,
        title=str(defn.get("title", name)),
        license=str(defn.get("license", "")),
        citation=str(defn.get("citation", "")),
        mirrors=_mirrors(mirrors, src),
        class_names=tuple(class_names),
        files=files,
    )


def mirrors_for_run(spec: DatasetSpec) -> tuple[str, ...]:
    """The mirrors to try now: ``MNIST_MIRRORS`` (commas or whitespace) if set, else the spec's."""
    env = os.environ.get(MIRRORS_ENV, "").strip()
    if not env:
        return spec.mirrors
    return _mirrors([m for m in re.split(r"[,\s]+", env) if m], f"environment variable {MIRRORS_ENV}")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ParamsError("(file)", f"cannot read: {exc.strerror or exc}; run from the project root", path) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParamsError("(file)", f"not valid YAML: {exc}", path) from exc
    if not isinstance(data, dict):
        raise ParamsError("(file)", f"expected a mapping at top level, got {type(data).__name__}", path)
    return data


def _known_keys(section: Mapping[str, Any], known: tuple[str, ...], dotted: str, src: str) -> None:
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise ParamsError(dotted, f"unknown key(s) {unknown}; known: {list(known)} (a typo?)", src)


def _section(raw: Mapping[str, Any], key: str, src: str, prefix: str = "") -> Mapping[str, Any]:
    if key not in raw:
        raise ParamsError(prefix + key, "missing", src)
    value = raw[key]
    if not isinstance(value, dict):
        raise ParamsError(prefix + key, f"expected a mapping, got {type(value).__name__}", src)
    return value


def _number(section: Mapping[str, Any], dotted: str, src: str) -> float:
    leaf = dotted.rsplit(".", 1)[-1]
    if leaf not in section:
        raise ParamsError(dotted, "missing", src)
    value = section[leaf]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ParamsError(dotted, f"expected a finite number, got {value!r}", src)
    return float(value)


def _integer(section: Mapping[str, Any], dotted: str, src: str, minimum: int) -> int:
    leaf = dotted.rsplit(".", 1)[-1]
    if leaf not in section:
        raise ParamsError(dotted, "missing", src)
    value = section[leaf]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParamsError(dotted, f"expected an integer >= {minimum}, got {value!r}", src)
    return value


def _file_spec(key: str, entry: Mapping[str, Any], src: str) -> FileSpec:
    dotted = f"dataset.files.{key}"
    filename = entry.get("filename")
    if not isinstance(filename, str) or not filename or "/" in filename or "\\" in filename:
        raise ParamsError(f"{dotted}.filename", f"expected a plain file name, got {filename!r}", src)
    size = _integer(entry, f"{dotted}.size", src, minimum=1)
    digests = {}
    for field in ("sha256", "archive_sha256"):
        value = entry.get(field)
        if value is not None and not (isinstance(value, str) and _SHA256.fullmatch(value)):
            raise ParamsError(f"{dotted}.{field}", f"expected 64 lowercase hex digits, got {value!r}", src)
        digests[field] = value
    if digests["sha256"] is None and digests["archive_sha256"] is None:
        raise ParamsError(f"{dotted}.sha256", "no pin: set sha256 (uncompressed) or archive_sha256", src)
    archive_size = None
    if entry.get("archive_size") is not None:
        archive_size = _integer(entry, f"{dotted}.archive_size", src, minimum=1)
    return FileSpec(key, filename, size, digests["sha256"], digests["archive_sha256"], archive_size)


def _mirrors(value: Any, src: str) -> tuple[str, ...]:
    if not (isinstance(value, (list, tuple)) and value and all(isinstance(m, str) and m for m in value)):
        raise ParamsError("dataset.mirrors", f"expected a non-empty list of base URLs or folders, got {value!r}", src)
    for mirror in value:
        try:
            parts = urlsplit(mirror)
            port_ok = parts.port is None or parts.port > 0  # .port raises ValueError when out of range
        except ValueError as exc:
            raise ParamsError("dataset.mirrors", f"{mirror!r} is not a valid URL ({exc})", src) from exc
        if parts.scheme.lower() in ("http", "https") and not (parts.hostname and port_ok):
            raise ParamsError("dataset.mirrors", f"{mirror!r} has no valid host[:port]", src)
    return tuple(value)


def _fetch_params(section: Mapping[str, Any], src: str) -> FetchParams:
    defaults = FetchParams()
    _known_keys(section, tuple(vars(defaults)), "fetch", src)
    values: dict[str, Any] = {}
    for field, default in vars(defaults).items():
        if field not in section:
            values[field] = default
        elif isinstance(default, int):
            values[field] = _integer(section, f"fetch.{field}", src, minimum=0)
        else:
            values[field] = _number(section, f"fetch.{field}", src)
            if values[field] <= 0:
                raise ParamsError(f"fetch.{field}", f"expected a positive number, got {values[field]}", src)
    return FetchParams(**values)
