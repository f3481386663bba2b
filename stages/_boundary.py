"""The one error boundary of every stage: anticipated errors become one stderr line and exit 1.

Unexpected exceptions keep their traceback. SIGTERM is turned into an exception so temp files
are removed on the way out, and SIGXFSZ is ignored so a file-size limit surfaces as an OSError
(reported as a full disk) instead of killing the process mid-write.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from types import FrameType

from mnist_data.errors import MnistDataError

RESTORE_HINT = "the last good outputs can be restored from the DVC cache with `dvc checkout`"


class Terminated(BaseException):
    """Raised in the main thread when SIGTERM arrives."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def run(stage: str, work: Callable[[], None]) -> int:
    """Run ``work`` as stage ``stage``; return the process exit code."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        work()
    except MnistDataError as exc:
        print(f"{stage}: error: {exc}; {RESTORE_HINT}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{stage}: interrupted; nothing was left under a final name; {RESTORE_HINT}", file=sys.stderr)
        return 130
    except Terminated:
        print(f"{stage}: terminated; nothing was left under a final name; {RESTORE_HINT}", file=sys.stderr)
        return 143
    return 0
