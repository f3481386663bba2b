"""Writing files atomically: a temp file beside the target, then os.replace.

A reader never sees a half-written file under its final name. The temp file is removed on any
exception, KeyboardInterrupt included; temp files left by a killed process (SIGKILL) carry the
target's name and are swept by the next write of that target.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from mnist_data.errors import OutputError

_SUFFIX = ".part"


def _prefix(path: Path) -> str:
    return f".{path.name}."


def sweep_stale(path: str | Path) -> list[Path]:
    """Remove temp files a killed earlier write of ``path`` left behind; return what was removed."""
    path = Path(path)
    removed = []
    if path.parent.is_dir():
        for stale in path.parent.glob(f"{_prefix(path)}*{_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
                removed.append(stale)
    return removed


def ensure_writable_dir(folder: str | Path) -> None:
    """Create ``folder`` if needed and check that files can be created in it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OutputError(folder, exc.strerror or str(exc)) from exc


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes ``path`` only if the block completes.

    Raises:
        OutputError: The folder is not writable or the disk is full; ``path`` is untouched.
    """
    path = Path(path)
    ensure_writable_dir(path.parent)
    sweep_stale(path)
    fd, tmp_name = tempfile.mkstemp(prefix=_prefix(path), suffix=_SUFFIX, dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EPERM):
            raise OutputError(path, exc.strerror or str(exc)) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
