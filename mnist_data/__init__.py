"""MNIST-format data as a reproducible DVC pipeline, and a TF-compatible loader.

``from mnist_data import read_data_sets`` needs numpy alone; the pipeline's modules (download,
params) need the extra dependencies in requirements.txt.
"""

from mnist_data.errors import (
    ChecksumError,
    DatasetError,
    DownloadError,
    IdxFormatError,
    MirrorsExhaustedError,
    MnistDataError,
    OutputError,
    ParamsError,
)

_LOADER_NAMES = ("DataSet", "Datasets", "read_data_sets")


def __getattr__(name: str) -> object:
    # The loader (and numpy) load on first use, so the stages that need neither start faster.
    if name in _LOADER_NAMES:
        from mnist_data import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'mnist_data' has no attribute {name!r}")

__all__ = [
    "ChecksumError",
    "DataSet",
    "DatasetError",
    "Datasets",
    "DownloadError",
    "IdxFormatError",
    "MirrorsExhaustedError",
    "MnistDataError",
    "OutputError",
    "ParamsError",
    "read_data_sets",
]
