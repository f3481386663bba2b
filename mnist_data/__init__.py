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
from mnist_data.loader import DataSet, Datasets, read_data_sets

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
