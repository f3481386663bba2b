"""A raw-socket HTTP server on loopback that misbehaves on purpose, for download fault tests.

Each request is routed by the last segment of its path to a handler, which gets the client
socket and writes whatever bytes the fault needs: resets, stalls, trickles, lying headers, cut
chunked streams. Every request is recorded, so tests count what the server received instead of
measuring time. Blocking handlers wait on the server's stop event, so ``stop()`` (called by the
``faults`` fixture at test end) ends every stall at once.

    server = FaultServer()
    server.route("a.gz", stall(body, after=100))
    fetch(..., [server.url, good.url], ...)
    assert server.hits("a.gz") == 2
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import itertools
import socket
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

MAX_REQUEST = 1 << 16
GRACE = 30.0  # longest any handler blocks if the test forgets to stop the server


@dataclass
class Request:
    """One request as the server parsed it, and when it arrived (time.monotonic())."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    at: float = 0.0


class Conn:
    """One accepted connection, handed to a handler once the request is parsed."""

    def __init__(self, sock: socket.socket, request: Request, server: FaultServer) -> None:
        self.sock, self.request, self.server = sock, request, server
        self.sent = 0  # body bytes sent so far (handlers update it through send_body)

    def send(self, data: bytes) -> bool:
        """Send ``data``; False once the client has gone (the handler should then return)."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def send_body(self, data: bytes) -> bool:
        ok = self.send(data)
        if ok:
            self.sent += len(data)
            with self.server._lock:
                self.server.body_bytes += len(data)
            self.server.progress.set()
        return ok

    def head(self, status: int = 200, headers: list[tuple[str, str]] | None = None, reason: str | None = None) -> bool:
        """Send a status line and headers (always ``Connection: close``)."""
        lines = [f"HTTP/1.1 {status} {reason if reason is not None else _REASONS.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in (headers or [])]
        lines.append("Connection: close")
        return self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin1"))

    def wait(self, seconds: float = GRACE) -> bool:
        """Block until the server is released or stopped, or ``seconds`` pass; True if released or stopped."""
        return self.server.released.wait(seconds)

    def reset(self) -> None:
        """Abort the connection with a TCP RST instead of an orderly close."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


Handler = Callable[[Conn], None]
_REASONS = {200: "OK", 301: "Moved Permanently", 302: "Found", 307: "Temporary Redirect", 403: "Forbidden",
            404: "Not Found", 410: "Gone", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


class FaultServer:
    """An HTTP (or HTTPS, given ``tls``) server on 127.0.0.1, port 0, in a daemon thread."""

    def __init__(self, routes: dict[str, Handler] | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Handler] = dict(routes or {})
        self.tls = tls
        self.requests: list[Request] = []
        self.tls_failures = 0
        self.body_bytes = 0  # body bytes handlers managed to send, over all requests
        self.connections = 0  # TCP connections accepted (TLS ones count before their handshake)
        self.stopping = threading.Event()
        self.released = threading.Event()  # ends every stall and trickle (stop() sets it too)
        self.progress = threading.Event()  # set whenever a handler sends body bytes
        self._lock = threading.Lock()
        self._clients: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._accepting = threading.Thread(target=self._accept_loop, daemon=True)
        self._accepting.start()

    @property
    def url(self) -> str:
        """Base URL (with a trailing slash) of this server."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/"

    def route(self, filename: str, handler: Handler) -> None:
        """Serve requests whose path ends in ``filename`` with ``handler`` from now on."""
        self.routes[filename] = handler

    def hits(self, filename: str | None = None) -> int:
        """How many requests arrived (for ``filename`` only, if given)."""
        with self._lock:
            return sum(1 for r in self.requests if filename is None or r.path.rsplit("/", 1)[-1] == filename)

    def release(self) -> None:
        """End every stall and trickle now: their handlers return and close their connections."""
        self.released.set()

    def stop(self) -> None:
        """Stop accepting, release every blocked handler, close every connection."""
        self.stopping.set()
        self.released.set()
        self._accepting.join(5)
        self._listener.close()
        with self._lock:
            clients = list(self._clients)
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        with self._lock:
            self._clients.add(sock)
        try:
            sock.settimeout(GRACE)
            if self.tls is not None:
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError):
                    with self._lock:
                        self.tls_failures += 1
                    return
            request = _read_request(sock)
            if request is None:
                return
            with self._lock:
                self.requests.append(request)
            handler = self.routes.get(request.path.rsplit("/", 1)[-1]) or status(404)
            handler(Conn(sock, request, self))
        except OSError:
            pass
        finally:
            with self._lock:
                self._clients.discard(sock)
            with contextlib.suppress(OSError):
                sock.close()


def _read_request(sock: socket.socket) -> Request | None:
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_REQUEST:
            return None
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
    at = time.monotonic()
    lines = data.split(b"\r\n\r\n", 1)[0].decode("latin1").split("\r\n")
    method, path, _ = [*lines[0].split(" "), "", ""][:3]
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return Request(method, path, headers, at)


# Handlers: each factory returns what one route does with every request it gets.


def ok(body: bytes, headers: list[tuple[str, str]] | None = None) -> Handler:
    """200 with a correct Content-Length."""
    return status(200, body, headers)


def files(contents: dict[str, bytes]) -> dict[str, Handler]:
    """Routes serving each ``{filename: bytes}`` correctly."""
    return {name: ok(body) for name, body in contents.items()}


def status(code: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> Handler:
    """Any status with ``body`` and a correct Content-Length."""

    def handle(conn: Conn) -> None:
        if conn.head(code, [*(headers or []), ("Content-Length", str(len(body)))]):
            conn.send_body(body)

    return handle


def sequence(*handlers: Handler) -> Handler:
    """The n-th request gets ``handlers[n]``; every later one the last handler."""
    count = itertools.count()

    def handle(conn: Conn) -> None:
        handlers[min(next(count), len(handlers) - 1)](conn)

    return handle


def redirect(location: str, code: int = 302) -> Handler:
    return status(code, b"", [("Location", location)])


def hang_up() -> Handler:
    """Read the request, then close without sending a single response byte."""
    return lambda conn: None


def stall(body: bytes, after: int) -> Handler:
    """Declare the full length, send ``after`` bytes, then go silent until the server stops."""

    def handle(conn: Conn) -> None:
        if conn.head(200, [("Content-Length", str(len(body)))]) and conn.send_body(body[:after]):
            conn.wait()

    return handle


def trickle(body: bytes, interval: float, step: int = 1, headers_too: bool = False) -> Handler:
    """Send ``step`` bytes every ``interval`` seconds: never silent long enough for a read timeout.

    With ``headers_too`` the status line and an endless run of header lines trickle instead.
    """

    def handle(conn: Conn) -> None:
        if headers_too:
            for byte in _endless_head(len(body)):
                if not conn.send(bytes([byte])) or conn.wait(interval):
                    return
            return
        if not conn.head(200, [("Content-Length", str(len(body)))]):
            return
        for i in range(0, len(body), step):
            if not conn.send_body(body[i : i + step]) or conn.wait(interval):
                return

    return handle


def _endless_head(length: int) -> Iterator[int]:
    yield from f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n".encode()
    for i in itertools.count():
        yield from f"X-Slow-{i}: 1\r\n".encode()


def short(body: bytes, keep: int, reset: bool = False, length: int | None = None) -> Handler:
    """Declare ``length`` (default: the full length), send ``keep`` bytes, then close or reset."""

    def handle(conn: Conn) -> None:
        declared = len(body) if length is None else length
        sent = conn.head(200, [("Content-Length", str(declared))]) and conn.send_body(body[:keep])
        if sent and reset:
            conn.reset()

    return handle


def chunked(body: bytes, cut: int | None = None, size: int = 1000) -> Handler:
    """Transfer-Encoding: chunked; with ``cut``, stop after that many body bytes, mid-chunk, and close."""

    def handle(conn: Conn) -> None:
        if not conn.head(200, [("Transfer-Encoding", "chunked")]):
            return
        end = len(body) if cut is None else cut
        for i in range(0, len(body), size):
            piece = body[i : i + size]
            if i + len(piece) > end:
                conn.send(f"{len(piece):x}\r\n".encode())
                conn.send_body(piece[: end - i])
                return
            if not (conn.send(f"{len(piece):x}\r\n".encode()) and conn.send_body(piece) and conn.send(b"\r\n")):
                return
        conn.send(b"0\r\n\r\n")

    return handle


def no_length(body: bytes) -> Handler:
    """No Content-Length, no chunking: the body ends when the connection closes."""

    def handle(conn: Conn) -> None:
        if conn.head(200, []):
            conn.send_body(body)

    return handle


def endless(pieces: Callable[[], Iterator[bytes]], headers: list[tuple[str, str]] | None = None) -> Handler:
    """Send the pieces ``pieces()`` yields until the client hangs up or the server stops."""

    def handle(conn: Conn) -> None:
        if not conn.head(200, headers or []):
            return
        for piece in pieces():
            if conn.server.stopping.is_set() or not conn.send_body(piece):
                return

    return handle


def gzip_of_zeros(chunk: int = 1 << 20) -> Iterator[bytes]:
    """A gzip stream of zeros that never ends (about 1 KB of archive per MB of zeros)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(chunk)
    yield deflate.compress(zeros)
    while True:
        piece = deflate.compress(zeros)
        if piece:
            yield piece
        else:  # keep the stream moving so every send reaches the client
            yield deflate.flush(zlib.Z_SYNC_FLUSH)


class FaultServers:
    """Starts servers for one test and stops them all at its end (see the ``faults`` fixtures)."""

    def __init__(self) -> None:
        self.servers: list[FaultServer] = []
        self._sockets: list[socket.socket] = []

    def __call__(self, routes: dict[str, Handler] | None = None, tls: ssl.SSLContext | None = None) -> FaultServer:
        server = FaultServer(routes, tls)
        self.servers.append(server)
        return server

    def blackhole(self) -> str:
        """A loopback URL where connecting hangs: its listener's accept queue is full and never drained."""
        listener = socket.create_server(("127.0.0.1", 0), backlog=0)
        self._sockets.append(listener)
        self._sockets.append(socket.create_connection(listener.getsockname()[:2], timeout=5))
        return f"http://127.0.0.1:{listener.getsockname()[1]}/"

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()
        for sock in self._sockets:
            sock.close()


def refused_url() -> str:
    """A loopback URL nothing listens on (the port was just released)."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def make_tls(folder: Path, host: str = "127.0.0.1") -> tuple[ssl.SSLContext, Path]:
    """A throwaway CA and a server certificate it signed for ``host``.

    Returns:
        The server's SSLContext, and the CA's PEM file a client must trust to verify it.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fault test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, ca_file
