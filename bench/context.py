"""What every figure needs: the run's options, its temp folder, the snapshot, the mirror, progress.

A Bench is made once per run by ``run.py``; the figure modules take it and return rows.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from copies import Repo


@dataclass(frozen=True)
class Options:
    """How many times each thing is measured, and the scaling sizes (total images)."""

    cold_repeats: int = 5
    baseline_repeats: int = 5
    noop_repeats: int = 7
    stage_repeats: int = 3
    reads: int = 10
    baseline_reads: int = 5
    epochs: int = 3
    sizes: tuple[int, ...] = (70_000, 350_000, 700_000)


QUICK = Options(cold_repeats=1, baseline_repeats=2, noop_repeats=5, stage_repeats=1, reads=5, baseline_reads=3,
                epochs=2, sizes=(70_000, 350_000))


@dataclass(frozen=True)
class Data:
    """The data set the pipeline and the baseline are measured on.

    Attributes:
        label: Where it came from, for the report.
        url: Base URL of its loopback mirror.
        files: ``dataset.files`` override pinning synthetic archives; None for real MNIST.
        archive_bytes: Bytes of the four ``.gz`` archives (what the baseline downloads).
    """

    label: str
    url: str
    files: dict[str, Any] | None
    archive_bytes: int


@dataclass
class Bench:
    """One benchmark run.

    Attributes:
        root: The project being measured (only read, once, for the snapshot).
        tmp: This run's temp folder; everything written goes under it.
        snap: The snapshot of the project taken at the start.
        serve_root: Folder the loopback mirror serves.
        mirror: Base URL of the mirror.
        options: Repeat counts and sizes.
        settings: The project's DVC cache settings, applied to every repo.
        details: Raw measurements, written to the JSON beside the rows.
    """

    root: Path
    tmp: Path
    snap: Path
    serve_root: Path
    mirror: str
    options: Options
    settings: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def log(self, message: str) -> None:
        """Progress on stderr, with the time since the run started."""
        print(f"[bench {time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)

    def new_repo(self, name: str, url: str, files: dict[str, Any] | None) -> Repo:
        """A fresh git + DVC repo from the snapshot, with its own private caches."""
        return Repo.create(self.snap, self.tmp / name, self.tmp / f"{name}.private", url, files, self.settings)

    def remove(self, *paths: Path) -> None:
        """Delete folders of this run that are no longer needed (disk is reused by the next size)."""
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)
            shutil.rmtree(path.with_name(path.name + ".private"), ignore_errors=True)

    def python(self) -> str:
        """The interpreter every child runs with."""
        return sys.executable

    def probe(self) -> str:
        """Path of the probe script."""
        return str(Path(__file__).with_name("probe.py"))
