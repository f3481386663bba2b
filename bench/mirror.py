"""A loopback HTTP mirror of a folder, served by a separate ``python -m http.server`` process.

A separate process (not a thread of the benchmark) so that serving never competes for the
benchmark's GIL; both the pipeline and the baseline download from it the same way. It binds
127.0.0.1 on a free port (port 0) and is always stopped when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

_READY = re.compile(rb"Serving HTTP on \S+ port (\d+)")


@contextlib.contextmanager
def serve(folder: Path, timeout: float = 20) -> Iterator[str]:
    """Serve ``folder`` on loopback for the duration of the block.

    Yields:
        The base URL, ending in ``/``.

    Raises:
        RuntimeError: The server did not report its port within ``timeout`` seconds.
    """
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(folder), "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )
    try:
        url = _wait_for_port(proc, timeout)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _wait_for_port(proc: subprocess.Popen[bytes], timeout: float) -> str:
    if proc.stdout is None:
        raise RuntimeError("http.server was started without a stdout pipe")
    line = proc.stdout.readline()  # http.server prints its banner first, unbuffered under -u
    match = _READY.search(line)
    if not match:
        raise RuntimeError(f"http.server did not start: {line!r} (exit {proc.poll()})")
    url = f"http://127.0.0.1:{int(match.group(1))}/"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return url
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"http.server at {url} does not answer") from None
            time.sleep(0.05)
