"""HTTP transport for downloads: safe redirects, status triage, a deadline watchdog, plain reasons.

Only http and https are followed, never from https to http, never in a loop, at most
MAX_REDIRECTS times; TLS verification is never turned off. The raw archive bytes are streamed
(``Accept-Encoding: identity``, no transparent decoding) and counted against Content-Length.
``fetch.deadline`` is enforced by a watchdog that shuts the socket down, because a server that
trickles bytes never trips the read timeout. Failures become DownloadError with a reason in
words; ``retryable`` marks timeouts, resets, 5xx and 429/503 with an acceptable Retry-After.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import socket
import sys
import threading
import time
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from mnist_data.errors import DownloadError
from mnist_data.params import FetchParams

CHUNK = 1 << 16
MAX_REDIRECTS = 5
_RETRY_STATUS = {429, 500, 502, 503, 504}


def new_session() -> requests.Session:
    """A requests session whose connections the current thread's Watchdog can shut down."""
    session = requests.Session()
    adapter = _WatchedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _via(origin: str, url: str) -> str:
    return "" if url == origin else f"after redirect to {url}: "


def _open_http(
    session: requests.Session, origin: str, params: FetchParams, watchdog: Watchdog
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
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
                urllib3.exceptions.LocationParseError, http.client.InvalidURL, ValueError) as exc:
            raise DownloadError(origin, f"{_via(origin, url)}not a usable URL ({_cause(exc)}); fix the mirror list") from exc
        except (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
            watchdog.check(origin, 0)
            raise DownloadError(origin, f"{_via(origin, url)}{_request_reason(exc, params)}", retryable=True) from exc
        if not resp.is_redirect:
            return url, resp
        resp.close()
        try:
            target = urljoin(url, resp.headers.get("Location", ""))
            urlsplit(target).port  # noqa: B018 - raises ValueError for a malformed host or port
        except ValueError as exc:
            raise DownloadError(origin, f"{_via(origin, url)}refused redirect to a malformed URL ({exc})") from exc
        if urlsplit(target).scheme.lower() not in ("http", "https"):
            raise DownloadError(origin, f"{_via(origin, url)}refused redirect to {target!r}: only http and https are followed")
        if urlsplit(url).scheme.lower() == "https" and urlsplit(target).scheme.lower() == "http":
            raise DownloadError(origin, f"{_via(origin, url)}refused redirect from https to plain http ({target})")
        if target in seen:
            raise DownloadError(origin, f"redirect loop: {url} sends back to {target}, already visited")
        seen.add(target)
        url = target
    raise DownloadError(origin, f"more than {MAX_REDIRECTS} redirects (last: {url})")


def stream_http(
    session: requests.Session, origin: str, params: FetchParams, max_bytes: int, name: str, watchdog: Watchdog
) -> Iterator[bytes]:
    """Yield the raw body of ``origin`` in pieces of at most CHUNK bytes, refusing more than ``max_bytes``."""
    url, resp = _open_http(session, origin, params, watchdog)
    via = _via(origin, url)
    with resp:
        if resp.status_code != 200:
            raise _status_error(origin, via, resp, params)
        declared = resp.headers.get("Content-Length")
        length = int(declared) if declared and declared.strip().isdigit() else None
        if length is not None and length > max_bytes:
            raise DownloadError(
                origin, f"{via}Content-Length {length} is more than the {max_bytes} bytes an archive of this file "
                "can take; refused before reading the body",
            )
        received = 0
        with tqdm(total=length, unit="B", unit_scale=True, desc=name, leave=False,
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


class Watchdog:
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

    def __enter__(self) -> Watchdog:
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
    """Mixin registering a connection's socket with the current thread's Watchdog."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        Watchdog.watch(sock)  # covers the TLS handshake of a new connection
        return sock

    def getresponse(self):  # type: ignore[no-untyped-def]
        Watchdog.watch(self.sock)  # type: ignore[attr-defined]  # covers reused keep-alive connections
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
    """requests' adapter, with connections whose sockets the current Watchdog can shut down."""

    def init_poolmanager(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}

    def proxy_manager_for(self, proxy, **kwargs):  # type: ignore[no-untyped-def]
        manager = super().proxy_manager_for(proxy, **kwargs)
        if type(manager) is urllib3.ProxyManager:  # an HTTP(S) proxy; SOCKS keeps its own pool classes
            manager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}
        return manager
