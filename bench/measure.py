"""Running child processes and measuring them: wall time, peak RSS, bytes on disk, growth exponents.

Peak RSS comes from the kernel's rusage of the reaped child (``os.wait4``), the same figure
``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` gives right after that child is waited for:
the largest RSS of the child or of any descendant it waited for (e.g. a stage under ``dvc repro``).
Every child is killed and reaped if the benchmark is interrupted while waiting for it.
"""

from __future__ import annotations

import math
import os
import resource
import stat
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MB = 1e6


@dataclass(frozen=True)
class ChildRun:
    """One finished child process.

    Attributes:
        wall_s: Seconds from spawn to reaping.
        maxrss: Peak resident set size in bytes (largest of the child and its waited-for descendants).
        cpu_s: User plus system CPU seconds of the child and its waited-for descendants.
        sys_s: The system part of ``cpu_s`` (page faults, I/O, copies in the kernel).
        returncode: Exit status as subprocess reports it.
        stdout: Decoded standard output.
        stderr: Decoded standard error.
    """

    wall_s: float
    maxrss: int
    cpu_s: float
    sys_s: float
    returncode: int
    stdout: str
    stderr: str


class ChildError(RuntimeError):
    """A measured child failed; the message carries its command and the end of its stderr."""

    def __init__(self, args: Sequence[str], run: ChildRun) -> None:
        self.args_run, self.run = list(args), run
        super().__init__(f"{' '.join(args)} exited {run.returncode}:\n{run.stderr[-3000:]}")


def run_child(args: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float = 1800, check: bool = True) -> ChildRun:
    """Run ``args`` to completion and measure it.

    Raises:
        ChildError: ``check`` is set and the child exited non-zero.
        TimeoutError: The child ran longer than ``timeout`` seconds (it is killed).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(args), cwd=cwd, env=dict(env), stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        try:
            status, usage = _wait(proc, timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        run = ChildRun(wall, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime, usage.ru_stime, proc.returncode,
                       out.read().decode(errors="replace"), err.read().decode(errors="replace"))
    if check and run.returncode != 0:
        raise ChildError(args, run)
    return run


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, resource.struct_rusage]:
    """Block in wait4 (exact timing, no polling); a timer thread kills the child at the deadline."""
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    if expired.is_set():
        raise TimeoutError(f"{proc.args} ran longer than {timeout:g} s and was killed")
    return status, usage


def repeat(measure: Callable[[], ChildRun], times: int) -> list[ChildRun]:
    """``times`` runs of ``measure``, in order."""
    return [measure() for _ in range(times)]


def median(values: Sequence[float]) -> float:
    """The median; NaN for no values."""
    return statistics.median(values) if values else math.nan


def disk_bytes(*roots: Path) -> int:
    """Bytes of all regular files under ``roots``, each inode counted once (hard links, cache links)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root in roots:
        if not root.exists():
            continue
        for folder, _, files in os.walk(root):
            for name in files:
                st = os.lstat(os.path.join(folder, name))
                if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log(y) against log(x): 1 is linear growth; NaN with fewer than two distinct x."""
    if len(set(xs)) < 2:
        return math.nan
    return statistics.linear_regression([math.log(x) for x in xs], [math.log(y) for y in ys]).slope
