"""Streaming gunzip with hard bounds, checked against a file's pins as the bytes arrive.

The archive bytes are hashed as fed; they are inflated in bounded pieces, one byte past the
declared uncompressed size at most, so a decompression bomb never sits in memory or on disk.
Concatenated gzip members are accepted (gzip allows them); anything else after the stream is
trailing garbage. When the uncompressed sha256 is pinned it alone decides (so re-compressed
mirrors are accepted); otherwise the archive's sha256 and size do.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import BinaryIO

from mnist_data.errors import ChecksumError, DownloadError
from mnist_data.params import FileSpec

_PIECE = 1 << 20  # most bytes inflated per step
_ARCHIVE_SLACK = 1 << 20  # gzip headers, trailers and stored blocks: an archive is at most 2 * size + this
_GZIP_MAGIC = b"\x1f\x8b"


def max_archive_size(spec: FileSpec) -> int:
    """The most archive bytes accepted for ``spec``: its pinned size, else what gzip could need."""
    return spec.archive_size if spec.archive_size is not None else 2 * spec.size + _ARCHIVE_SLACK


class Verifier:
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
            limit = min(_PIECE, self.spec.size + 1 - self.size)  # never more than one byte past the size
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
