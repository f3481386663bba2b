"""Fetching one archive from a list of mirrors, verifying its content as it streams.

Each mirror is tried in turn. The archive is read as raw bytes (never transparently decoded),
gunzipped on the fly with a hard stop one byte past the declared uncompressed size, hashed, and
written to a temp file that becomes the destination only when every check passes. Retryable
failures (timeouts, resets, 5xx, 429/503 with an acceptable Retry-After) are retried with
exponential backoff; any other failure moves on to the next mirror at once.
"""

from __future__ import annotations

import email.utils
import hashlib
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urljoin, urlsplit

import requests
import urllib3
from tqdm import tqdm

from mnist_data.atomic import atomic_output
from mnist_data.errors import ChecksumError, DownloadError, MirrorsExhaustedError
from mnist_data.params import FetchParams, FileSpec

CHUNK = 1 << 16
MAX_REDIRECTS = 5
_GZIP_MAGIC = b"\x1f\x8b"
_RETRY_STATUS = {429, 500, 502, 503, 504}
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
    with requests.Session() as session:
        for mirror in mirrors:
            url = source_url(mirror, spec.filename)
            log(f"{spec.filename}: downloading {url}")
            try:
                with atomic_output(dest) as out:
                    _fetch_with_retries(session, url, spec, out, params, log, sleep)
            except DownloadError as exc:
                failures.append(exc)
                log(f"{spec.filename}: failed: {exc}")
                continue
            log(f"{spec.filename}: ok, {spec.size} bytes uncompressed, verified -> {dest}")
            return url
    raise MirrorsExhaustedError(spec.filename, failures)


def _fetch_with_retries(
    session: requests.Session, url: str, spec: FileSpec, out: BinaryIO, params: FetchParams, log: Log, sleep: Callable[[float], None]
) -> None:
    for attempt in range(params.retries + 1):
        out.seek(0)
        out.truncate()
        try:
            verifier = _Verifier(spec, url, out)
            for chunk in _stream(session, url, params, spec.filename):
                verifier.feed(chunk)
            verifier.finish()
            return
        except DownloadError as exc:
            if not exc.retryable or attempt == params.retries:
                raise
            wait = getattr(exc, "retry_after", None)
            wait = params.backoff * 2**attempt if wait is None else wait
            log(f"{spec.filename}: {exc}; retrying in {wait:g} s ({attempt + 1}/{params.retries})")
            sleep(wait)


def _stream(session: requests.Session, url: str, params: FetchParams, name: str) -> Iterator[bytes]:
    """Yield the raw bytes of ``url`` (http, https, file:// or a local path)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        yield from _stream_http(session, url, params, name)
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


def _open_http(session: requests.Session, url: str, params: FetchParams) -> tuple[str, requests.Response]:
    """GET ``url`` following at most MAX_REDIRECTS safe redirects (no loops, no downgrade, http(s) only)."""
    seen = {url}
    for _ in range(MAX_REDIRECTS + 1):
        try:
            resp = session.get(
                url,
                stream=True,
                allow_redirects=False,
                timeout=(params.connect_timeout, params.read_timeout),
                headers={"Accept-Encoding": "identity"},
            )
        except requests.exceptions.SSLError as exc:
            raise DownloadError(url, f"TLS verification failed ({exc}); fix the mirror's certificate or use another mirror") from exc
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise DownloadError(url, f"request failed: {_cause(exc)}", retryable=True) from exc
        if not resp.is_redirect:
            return url, resp
        target = urljoin(url, resp.headers.get("Location", ""))
        resp.close()
        if urlsplit(target).scheme.lower() not in ("http", "https"):
            raise DownloadError(url, f"refused redirect to {target!r}: only http and https are followed")
        if urlsplit(url).scheme.lower() == "https" and urlsplit(target).scheme.lower() == "http":
            raise DownloadError(url, f"refused redirect from https to plain http ({target})")
        if target in seen:
            raise DownloadError(url, f"redirect loop: {target} was already visited")
        seen.add(target)
        url = target
    raise DownloadError(url, f"more than {MAX_REDIRECTS} redirects")


def _stream_http(session: requests.Session, first_url: str, params: FetchParams, name: str) -> Iterator[bytes]:
    deadline = time.monotonic() + params.deadline
    url, resp = _open_http(session, first_url, params)
    with resp:
        if resp.status_code != 200:
            raise _status_error(url, resp, params)
        declared = resp.headers.get("Content-Length")
        length = int(declared) if declared and declared.isdigit() else None
        received = 0
        with tqdm(total=length, unit="B", unit_scale=True, desc=name, leave=False, disable=not sys.stderr.isatty()) as bar:
            while True:
                if time.monotonic() > deadline:
                    raise DownloadError(
                        url, f"download took longer than fetch.deadline={params.deadline:g} s ({received} bytes received)"
                    )
                try:
                    chunk = resp.raw.read1(CHUNK, decode_content=False)
                except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
                    raise DownloadError(url, f"connection failed after {received} bytes: {_cause(exc)}", retryable=True) from exc
                if not chunk:
                    break
                received += len(chunk)
                bar.update(len(chunk))
                yield chunk
        if length is not None and received != length:
            raise DownloadError(url, f"body ended after {received} bytes, Content-Length said {length}", retryable=True)


def _status_error(url: str, resp: requests.Response, params: FetchParams) -> DownloadError:
    status = f"HTTP {resp.status_code} {resp.reason or ''}".strip()
    if resp.status_code not in _RETRY_STATUS:
        return DownloadError(url, f"{status} (expected 200; not retried)")
    retry_after = _retry_after(resp.headers.get("Retry-After"))
    if retry_after is not None and retry_after > params.max_retry_after:
        return DownloadError(
            url, f"{status} with Retry-After {retry_after:g} s, longer than fetch.max_retry_after={params.max_retry_after:g} s"
        )
    error = DownloadError(url, f"{status} (expected 200)", retryable=True)
    error.retry_after = retry_after  # type: ignore[attr-defined]
    return error


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _cause(exc: BaseException) -> str:
    while exc.__context__ is not None and not str(exc):
        exc = exc.__context__
    return f"{type(exc).__name__}: {exc}"


class _Verifier:
    """Gunzips, bounds, hashes and writes the archive bytes it is fed; checks the pins at the end."""

    def __init__(self, spec: FileSpec, url: str, out: BinaryIO) -> None:
        self.spec, self.url, self.out = spec, url, out
        self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.pending = b""  # bytes seen but not yet fed to the inflater (magic not yet checked)
        self.started = False  # inside a gzip member whose magic was checked
        self.size = 0
        self.sha256 = hashlib.sha256()
        self.archive_size = 0
        self.archive_sha256 = hashlib.sha256()

    def feed(self, data: bytes) -> None:
        self.archive_size += len(data)
        self.archive_sha256.update(data)
        limit = self.spec.archive_size
        if limit is not None and self.archive_size > limit:
            raise ChecksumError(self.url, "archive size", f"{limit} bytes", f"more than {limit} bytes")
        data = self.pending + data
        self.pending = b""
        while data:
            if not self.started:
                if len(data) < 2:
                    self.pending = data
                    return
                if data[:2] != _GZIP_MAGIC:
                    raise DownloadError(self.url, self._not_gzip(data))
                self.started = True
                self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                out = self.inflater.decompress(data, self.spec.size + 1 - self.size)
            except zlib.error as exc:
                raise DownloadError(self.url, f"corrupt gzip data after {self.archive_size} archive bytes: {exc}") from exc
            self._write(out)
            if self.inflater.eof:
                data = self.inflater.unused_data
                self.started = False  # a further member (gzip allows concatenation) must start with the magic
            else:
                data = self.inflater.unconsumed_tail

    def _write(self, out: bytes) -> None:
        self.size += len(out)
        if self.size > self.spec.size:
            raise ChecksumError(self.url, "uncompressed size", f"{self.spec.size} bytes", f"more than {self.spec.size} bytes")
        self.sha256.update(out)
        self.out.write(out)

    def _not_gzip(self, data: bytes) -> str:
        head = data[:16]
        if self.size:
            return f"trailing garbage after the gzip stream (starts {head!r}); expected end of file"
        if data.lstrip()[:1] == b"<":
            return f"not a gzip archive but an HTML/XML page (starts {head!r}); the mirror sent an error page"
        return f"not a gzip archive: starts {head!r}, expected {_GZIP_MAGIC!r}"

    def finish(self) -> None:
        if self.archive_size == 0:
            raise DownloadError(self.url, "empty response body; expected a gzip archive")
        if self.started or self.pending:
            raise DownloadError(self.url, f"gzip stream truncated after {self.archive_size} archive bytes")
        spec = self.spec
        if self.size != spec.size:
            raise ChecksumError(self.url, "uncompressed size", f"{spec.size} bytes", f"{self.size} bytes")
        if spec.sha256 is not None:
            actual = self.sha256.hexdigest()
            if actual != spec.sha256:
                raise ChecksumError(self.url, "sha256 of the uncompressed file", spec.sha256, actual)
            return
        if spec.archive_size is not None and self.archive_size != spec.archive_size:
            raise ChecksumError(self.url, "archive size", f"{spec.archive_size} bytes", f"{self.archive_size} bytes")
        actual = self.archive_sha256.hexdigest()
        if actual != spec.archive_sha256:
            raise ChecksumError(self.url, "sha256 of the archive", spec.archive_sha256, actual)
