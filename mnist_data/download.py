"""Fetching one archive from a list of mirrors into its destination, verified.

Each mirror is tried in turn; the bytes stream through gunzip.Verifier into a temp file that
becomes the destination only when every check passes. Retryable failures (see transport) are
retried with exponential backoff, capped at ``fetch.max_retry_after``; any other failure moves
on to the next mirror at once. ``fetch.deadline`` bounds everything one mirror may take for one
file: attempts, waits, and reads a trickling server keeps alive.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

import requests

from mnist_data.atomic import atomic_output
from mnist_data.errors import DownloadError, MirrorsExhaustedError
from mnist_data.gunzip import Verifier, max_archive_size
from mnist_data.params import FetchParams, FileSpec
from mnist_data.transport import CHUNK, Watchdog, new_session, stream_http

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def source_url(mirror: str, filename: str) -> str:
    """The URL (or local path) of ``filename`` on ``mirror``."""
    return mirror.rstrip("/") + "/" + filename


def fetch(
    spec: FileSpec,
    mirrors: Sequence[str],
    dest: str | Path,
    params: FetchParams,
    log: Log = _stderr,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Download ``spec`` from the first mirror that serves the right content into ``dest``.

    Returns:
        The URL that succeeded.

    Raises:
        MirrorsExhaustedError: Every mirror failed; it lists each mirror's DownloadError.
        OutputError: ``dest`` cannot be written (disk full, permissions).
    """
    failures: list[DownloadError] = []
    with new_session() as session:
        for mirror in mirrors:
            url = source_url(mirror, spec.filename)
            log(f"{spec.filename}: downloading {url}")
            try:
                with atomic_output(dest) as out, Watchdog(params.deadline) as watchdog:
                    _fetch_with_retries(session, url, spec, out, params, log, sleep, watchdog)
            except DownloadError as exc:
                failures.append(exc)
                log(f"{spec.filename}: failed: {exc}")
                continue
            log(f"{spec.filename}: ok, {spec.size} bytes uncompressed, verified -> {dest}")
            return url
    raise MirrorsExhaustedError(spec.filename, failures)


def _fetch_with_retries(
    session: requests.Session, url: str, spec: FileSpec, out: BinaryIO, params: FetchParams, log: Log,
    sleep: Callable[[float], None], watchdog: Watchdog,
) -> None:
    for attempt in range(params.retries + 1):
        out.seek(0)
        out.truncate()
        try:
            verifier = Verifier(spec, url, out)
            for chunk in _stream(session, url, params, spec, watchdog):
                verifier.feed(chunk)
            verifier.finish()
            return
        except DownloadError as exc:
            if not exc.retryable or attempt == params.retries:
                raise
            wait = getattr(exc, "retry_after", None)
            wait = min(params.backoff * 2**attempt, params.max_retry_after) if wait is None else wait
            if time.monotonic() + wait >= watchdog.deadline:
                raise DownloadError(
                    url, f"{exc.reason}; not retried: waiting {wait:g} s would pass fetch.deadline={params.deadline:g} s"
                ) from exc
            log(f"{spec.filename}: {exc}; retrying in {wait:g} s ({attempt + 1}/{params.retries})")
            sleep(wait)


def _stream(session: requests.Session, url: str, params: FetchParams, spec: FileSpec, watchdog: Watchdog) -> Iterator[bytes]:
    """Yield the raw bytes of ``url`` (http, https, file:// or a local path)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        yield from stream_http(session, url, params, max_archive_size(spec), spec.filename, watchdog)
    elif scheme in ("file", "") or (len(scheme) == 1 and url[1:3] in (":\\", ":/")):
        yield from _stream_local(url)
    else:
        raise DownloadError(url, f"unsupported scheme {scheme!r}; expected http, https, file or a local folder")


def _stream_local(url: str) -> Iterator[bytes]:
    path = Path(unquote(urlsplit(url).path)) if url.lower().startswith("file:") else Path(url)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
    except OSError as exc:
        raise DownloadError(url, f"cannot read local file: {exc.strerror or exc}") from exc
