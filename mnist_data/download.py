"""Fetching one archive from a list of mirrors, verifying its content as it streams.

Each mirror is tried in turn. The archive is read as raw bytes (never transparently decoded),
gunzipped on the fly with a hard stop one byte past the declared uncompressed size, hashed, and
written to a temp file that becomes the destination only when every check passes. Retryable
failures (timeouts, resets, 5xx, 429/503 with an acceptable Retry-After) are retried with
exponential backoff, capped at ``fetch.max_retry_after``; any other failure moves on to the next
mirror at once. ``fetch.deadline`` bounds everything one mirror may take for one file (attempts,
waits, and reads that a trickling server keeps alive): a watchdog shuts the socket down when it
passes. Memory stays bounded whatever the server sends: the archive is read in CHUNK pieces,
inflated in at most CHUNK-sized outputs, and rejected as soon as it or its content outgrows
what the pins allow.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import http.client
import socket
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from mnist_data.atomic import atomic_output
from mnist_data.errors import ChecksumError, DownloadError, MirrorsExhaustedError
from mnist_data.params import FetchParams, FileSpec

CHUNK = 1 << 16
MAX_REDIRECTS = 5
_ARCHIVE_SLACK = 1 << 20  # gzip headers, trailers and stored blocks: an archive is at most 2 * size + this
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
        adapter = _WatchedAdapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        for mirror in mirrors:
            url = source_url(mirror, spec.filename)
            log(f"{spec.filename}: downloading {url}")
            try:
                with atomic_output(dest) as out, _Watchdog(params.deadline) as watchdog:
                    _fetch_with_retries(session, url, spec, out, params, log, sleep, watchdog)
            except DownloadError as exc:
                failures.append(exc)
                log(f"{spec.filename}: failed: {exc}")
                continue
            log(f"{spec.filename}: ok, {spec.size} bytes uncompressed, verified -> {dest}")
            return url
    raise MirrorsExhaustedError(spec.filename, failures)


def max_archive_size(spec: FileSpec) -> int:
    """The most archive bytes accepted for ``spec``: its pinned size, else what gzip could need."""
    return spec.archive_size if spec.archive_size is not None else 2 * spec.size + _ARCHIVE_SLACK


def _fetch_with_retries(
    session: requests.Session, url: str, spec: FileSpec, out: BinaryIO, params: FetchParams, log: Log,
    sleep: Callable[[float], None], watchdog: _Watchdog,
) -> None:
    for attempt in range(params.retries + 1):
        out.seek(0)
        out.truncate()
        try:
            verifier = _Verifier(spec, url, out)
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


def _stream(session: requests.Session, url: str, params: FetchParams, spec: FileSpec, watchdog: _Watchdog) -> Iterator[bytes]:
    """Yield the raw bytes of ``url`` (http, https, file:// or a local path)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        yield from _stream_http(session, url, params, spec, watchdog)
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


def _via(origin: str, url: str) -> str:
    return "" if url == origin else f"after redirect to {url}: "


def _open_http(
    session: requests.Session, origin: str, params: FetchParams, watchdog: _Watchdog
) -> tuple[str, requests.Response]:
    """GET ``origin`` following at most MAX_REDIRECTS safe redirects (no loops, no downgrade, http(s) only).

    Errors name ``origin``, the mirror's URL, and say where a redirect led.
    """
    url = origin
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
            watchdog.check(origin, 0)
            raise DownloadError(
                origin, f"{_via(origin, url)}TLS verification failed ({_cause(exc)}); fix the mirror's certificate "
                "or use another mirror (certificate verification is never turned off)",
            ) from exc
        except (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
            watchdog.check(origin, 0)
            raise DownloadError(origin, f"{_via(origin, url)}{_request_reason(exc, params)}", retryable=True) from exc
        if not resp.is_redirect:
            return url, resp
        target = urljoin(url, resp.headers.get("Location", ""))
        resp.close()
        if urlsplit(target).scheme.lower() not in ("http", "https"):
            raise DownloadError(origin, f"{_via(origin, url)}refused redirect to {target!r}: only http and https are followed")
        if urlsplit(url).scheme.lower() == "https" and urlsplit(target).scheme.lower() == "http":
            raise DownloadError(origin, f"{_via(origin, url)}refused redirect from https to plain http ({target})")
        if target in seen:
            raise DownloadError(origin, f"redirect loop: {url} sends back to {target}, already visited")
        seen.add(target)
        url = target
    raise DownloadError(origin, f"more than {MAX_REDIRECTS} redirects (last: {url})")


def _stream_http(
    session: requests.Session, origin: str, params: FetchParams, spec: FileSpec, watchdog: _Watchdog
) -> Iterator[bytes]:
    url, resp = _open_http(session, origin, params, watchdog)
    via = _via(origin, url)
    with resp:
        if resp.status_code != 200:
            raise _status_error(origin, via, resp, params)
        declared = resp.headers.get("Content-Length")
        length = int(declared) if declared and declared.strip().isdigit() else None
        if length is not None and length > max_archive_size(spec):
            raise DownloadError(
                origin, f"{via}Content-Length {length} is more than the {max_archive_size(spec)} bytes an archive of "
                f"this {spec.size}-byte file can take; refused before reading the body",
            )
        received = 0
        with tqdm(total=length, unit="B", unit_scale=True, desc=spec.filename, leave=False,
                  disable=not sys.stderr.isatty()) as bar:
            while True:
                watchdog.check(origin, received)
                try:
                    chunk = resp.raw.read1(CHUNK, decode_content=False)
                except (urllib3.exceptions.HTTPError, requests.RequestException, http.client.HTTPException, OSError) as exc:
                    watchdog.check(origin, received)
                    reason = _body_reason(exc, received, length, bool(resp.raw.chunked), params)
                    raise DownloadError(origin, f"{via}{reason}", retryable=True) from exc
                if not chunk:
                    break
                received += len(chunk)
                bar.update(len(chunk))
                yield chunk
        watchdog.check(origin, received)  # a socket shut down by the watchdog reads as a clean end
        # urllib3 2 raises on a short body itself; count anyway, as 1.x returned one as success.
        if length is not None and received != length:
            raise DownloadError(origin, f"{via}body ended after {received} bytes, Content-Length said {length}", retryable=True)


def _status_error(origin: str, via: str, resp: requests.Response, params: FetchParams) -> DownloadError:
    status = f"{via}HTTP {resp.status_code} {resp.reason or ''}".strip()
    if resp.status_code not in _RETRY_STATUS:
        return DownloadError(origin, f"{status} (expected 200; not retried)")
    retry_after = _retry_after(resp.headers.get("Retry-After"))
    if retry_after is not None and retry_after > params.max_retry_after:
        return DownloadError(
            origin, f"{status} with Retry-After {retry_after:g} s, longer than fetch.max_retry_after="
            f"{params.max_retry_after:g} s: not waiting, next mirror",
        )
    error = DownloadError(origin, f"{status} (expected 200)", retryable=True)
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


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps (causes, contexts, urllib3 reasons, args), breadth first."""
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo and len(seen) < 32:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        wrapped = (e.__cause__, e.__context__, getattr(e, "reason", None), *e.args)
        todo += [w for w in wrapped if isinstance(w, BaseException)]


def _has(exc: BaseException, *types: type[BaseException]) -> bool:
    return any(isinstance(e, types) for e in _chain(exc))


def _request_reason(exc: BaseException, params: FetchParams) -> str:
    """Why no response arrived, in words (the bare exception text is a page of nested reprs)."""
    if _has(exc, ConnectionRefusedError):
        return "connection refused (nothing listens at that address)"
    if _has(exc, socket.gaierror, urllib3.exceptions.NameResolutionError):
        return f"cannot resolve the host name ({_cause(exc)})"
    if _has(exc, requests.exceptions.ConnectTimeout):  # not urllib3's: every NewConnectionError is one of those
        return f"could not connect within fetch.connect_timeout={params.connect_timeout:g} s"
    if _has(exc, urllib3.exceptions.ReadTimeoutError, requests.exceptions.ReadTimeout, TimeoutError):
        return f"no response headers within fetch.read_timeout={params.read_timeout:g} s"
    if _has(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without sending response headers"
    if _has(exc, ConnectionResetError):
        return "connection reset before any response headers"
    return f"request failed: {_cause(exc)}"


def _body_reason(exc: BaseException, received: int, length: int | None, chunked: bool, params: FetchParams) -> str:
    """Why the body stopped arriving, with how much came of how much was declared."""
    of = f" of {length}" if length is not None else ""
    if _has(exc, http.client.IncompleteRead):
        if length is not None:
            return f"body ended after {received} bytes, Content-Length said {length}"
        if chunked:
            return f"chunked body cut off after {received} bytes (no final zero-length chunk)"
        return f"body cut off after {received} bytes"
    if _has(exc, urllib3.exceptions.ReadTimeoutError, requests.exceptions.ReadTimeout, TimeoutError):
        return f"stalled: no data for fetch.read_timeout={params.read_timeout:g} s after {received}{of} bytes"
    if _has(exc, ConnectionResetError):
        return f"connection reset after {received}{of} bytes"
    return f"connection failed after {received}{of} bytes: {_cause(exc)}"


def _cause(exc: BaseException) -> str:
    while exc.__context__ is not None and not str(exc):
        exc = exc.__context__
    return f"{type(exc).__name__}: {exc}"


class _Watchdog:
    """Enforces ``fetch.deadline`` on one file from one mirror, even inside a blocked read.

    A server that trickles a byte now and then never trips the read timeout, and http.client
    reads the status line and headers with no overall limit; the only way to stop such a read
    on time is to shut its socket down from another thread. The sockets are registered by the
    connection classes below while this watchdog is the thread's current one.
    """

    _current = threading.local()

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.fired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._current.dog = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        self._current.dog = None

    @classmethod
    def watch(cls, sock: socket.socket | None) -> None:
        """Have the current thread's watchdog (if any) shut ``sock`` down at its deadline."""
        dog = getattr(cls._current, "dog", None)
        if dog is None or sock is None:
            return
        with dog._lock:
            dog._sockets.append(sock)
            fired = dog.fired
        if fired:
            _shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shutdown(sock)

    def check(self, url: str, received: int) -> None:
        """Raise the deadline error if the deadline has passed."""
        if self.fired or time.monotonic() >= self.deadline:
            raise DownloadError(
                url, f"exceeded fetch.deadline={self.seconds:g} s for this file on this mirror ({received} bytes "
                "received by then); the mirror is too slow (raise fetch.deadline if it is merely slow)",
            )


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _WatchedConnection:
    """Mixin registering a connection's socket with the current thread's _Watchdog."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        _Watchdog.watch(sock)  # covers the TLS handshake of a new connection
        return sock

    def getresponse(self):  # type: ignore[no-untyped-def]
        _Watchdog.watch(self.sock)  # type: ignore[attr-defined]  # covers reused keep-alive connections
        return super().getresponse()  # type: ignore[misc]


class _WatchedHTTPConnection(_WatchedConnection, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter, with connections whose sockets the current _Watchdog can shut down."""

    def init_poolmanager(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}

    def proxy_manager_for(self, proxy, **kwargs):  # type: ignore[no-untyped-def]
        manager = super().proxy_manager_for(proxy, **kwargs)
        if type(manager) is urllib3.ProxyManager:  # an HTTP(S) proxy; SOCKS keeps its own pool classes
            manager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}
        return manager


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
        self.max_archive = max_archive_size(spec)
        self.members = 0  # gzip members inflated to their end

    def feed(self, data: bytes) -> None:
        self.archive_size += len(data)
        self.archive_sha256.update(data)
        limit = self.max_archive
        if self.archive_size > limit:
            if self.spec.archive_size is not None:
                raise ChecksumError(self.url, "archive size", f"{limit} bytes", f"more than {limit} bytes")
            raise DownloadError(
                self.url, f"archive is more than {limit} bytes, more than any gzip archive of this "
                f"{self.spec.size}-byte file can be (an endless or padded stream)",
            )
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
            data = self._inflate(data)

    def _inflate(self, data: bytes) -> bytes:
        """Inflate ``data`` in bounded pieces (a bomb never sits in memory); return bytes after the member."""
        while True:
            limit = min(CHUNK * 16, self.spec.size + 1 - self.size)  # never more than one byte past the size
            try:
                out = self.inflater.decompress(data, limit)
            except zlib.error as exc:
                raise DownloadError(self.url, f"corrupt gzip data after {self.archive_size} archive bytes: {exc}") from exc
            self._write(out)
            if self.inflater.eof:
                self.started = False  # a further member (gzip allows concatenation) must start with the magic
                self.members += 1
                return self.inflater.unused_data
            data = self.inflater.unconsumed_tail
            if not data and len(out) < limit:
                return b""

    def _write(self, out: bytes) -> None:
        self.size += len(out)
        if self.size > self.spec.size:
            raise ChecksumError(self.url, "uncompressed size", f"{self.spec.size} bytes", f"more than {self.spec.size} bytes")
        self.sha256.update(out)
        self.out.write(out)

    def _not_gzip(self, data: bytes) -> str:
        head = data[:16]
        if self.members:
            return f"trailing garbage after the gzip stream (starts {head!r}); expected end of file or another gzip member"
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
