"""The project's one error tree; every anticipated failure is one of these.

    MnistDataError                 root: catch this to handle any anticipated failure
    ├── ParamsError                params.yaml or a dataset definition is wrong
    ├── DownloadError              one source (mirror URL or local path) failed for one file
    │   └── ChecksumError          the content arrived but its size or sha256 is not the pinned one
    ├── MirrorsExhaustedError      every source failed for one file (holds each DownloadError)
    ├── IdxFormatError             an IDX file is malformed
    ├── DatasetError               arrays or an .npz artifact are not a valid dataset
    └── OutputError                an output cannot be written (permissions, disk full)

Constructors take the facts and build the message; the facts stay as attributes so callers
and tests can inspect them without parsing text.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class MnistDataError(Exception):
    """Root of every error this project raises on purpose."""


class ParamsError(MnistDataError):
    """A parameter is missing, of the wrong type or out of range.

    Attributes:
        key: Dotted name of the parameter, e.g. ``normalize.low``.
        problem: What is wrong with it, stated as expected vs actual.
        source: The file the parameter was read from.
    """

    def __init__(self, key: str, problem: str, source: str | Path = "params.yaml") -> None:
        self.key, self.problem, self.source = key, problem, str(source)
        super().__init__(f"{self.source}: parameter '{key}': {problem}")


class DownloadError(MnistDataError):
    """One source failed to deliver one file.

    Attributes:
        url: The URL or local path that was tried.
        reason: What went wrong, with expected vs actual where there are two.
        retryable: Whether trying the same source again may help (timeouts, 5xx).
    """

    def __init__(self, url: str, reason: str, *, retryable: bool = False) -> None:
        self.url, self.reason, self.retryable = url, reason, retryable
        super().__init__(f"{url}: {reason}")


class ChecksumError(DownloadError):
    """The downloaded content is not the pinned content.

    Attributes:
        what: Which property was checked, e.g. ``sha256 of the uncompressed file``.
        expected: The pinned value.
        actual: The value of what arrived.
    """

    def __init__(self, url: str, what: str, expected: object, actual: object) -> None:
        self.what, self.expected, self.actual = what, expected, actual
        super().__init__(
            url,
            f"{what} is {actual}, expected {expected} (wrong or corrupted file; "
            "if the mirror is right, the pinned digest may be outdated)",
        )


class MirrorsExhaustedError(MnistDataError):
    """Every source failed for one file.

    Attributes:
        filename: The file that could not be fetched.
        failures: One DownloadError per source, in the order tried.
    """

    def __init__(self, filename: str, failures: Sequence[DownloadError]) -> None:
        self.filename, self.failures = filename, list(failures)
        reasons = "; ".join(f"[{i}] {f}" for i, f in enumerate(self.failures, 1)) or "no mirrors"
        super().__init__(
            f"{filename}: all {len(self.failures)} source(s) failed: {reasons}. "
            "Check the network, or point MNIST_MIRRORS at a working mirror or a local folder"
        )


class IdxFormatError(MnistDataError):
    """An IDX file is malformed.

    Attributes:
        path: The file (or a name for an in-memory buffer).
        problem: What is wrong, as expected vs actual.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(f"{self.path}: not a valid IDX file: {problem}")


class DatasetError(MnistDataError):
    """Arrays or an .npz artifact do not form a valid dataset.

    Attributes:
        path: The file the arrays came from.
        problem: What is wrong, as expected vs actual.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(f"{self.path}: {problem}")


class OutputError(MnistDataError):
    """An output file or folder cannot be written.

    Attributes:
        path: The file or folder.
        cause: The operating system's reason.
    """

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path, self.cause = str(path), cause
        super().__init__(f"{self.path}: cannot write: {cause} (free disk space or fix permissions, then run again)")
