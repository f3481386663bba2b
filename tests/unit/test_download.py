"""fetch() against a fault-injecting loopback server: every fault is one clear error naming the
mirror and the cause, nothing is left under the final name or as a temp file, and with a good
mirror after the faulty one the download succeeds."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import re
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest
import urllib3
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnist_data.download import fetch
from mnist_data.errors import ChecksumError, DownloadError, MirrorsExhaustedError
from mnist_data.gunzip import max_archive_size
from mnist_data.params import FetchParams, FileSpec, load_params
from mnist_data.transport import MAX_REDIRECTS
from tests.conftest import ROOT
from tests.faultserver import (
    FaultServers,
    Handler,
    chunked,
    endless,
    gzip_of_zeros,
    hang_up,
    make_tls,
    no_length,
    ok,
    redirect,
    refused_url,
    sequence,
    short,
    stall,
    status,
    trickle,
)
from tests.synthetic import NAMES, Synthetic, make_synthetic

KEY = "train_images"
NAME = NAMES[KEY]
# Small knobs so faults show quickly: the same code paths as the defaults, scaled down.
FAST = FetchParams(connect_timeout=1, read_timeout=0.3, deadline=5, retries=1, backoff=0.01, max_retry_after=5)
MNIST_TRAIN_SIZE = 47040016  # the real train-images size: a big declared size for the memory bounds


@pytest.fixture
def faults():
    servers = FaultServers()
    yield servers
    servers.stop_all()


@pytest.fixture(scope="module")
def data() -> Synthetic:
    return make_synthetic(n_train=120, n_test=30)


def spec_of(raw: bytes, key: str = KEY) -> FileSpec:
    return FileSpec(key, NAMES[key], len(raw), hashlib.sha256(raw).hexdigest())


class Recorder:
    """fetch()'s log and sleep, recorded (sleeping for real only when asked)."""

    def __init__(self, real_sleep: bool = False) -> None:
        self.lines: list[str] = []
        self.sleeps: list[float] = []
        self.real_sleep = real_sleep

    def log(self, line: str) -> None:
        self.lines.append(line)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.real_sleep:
            time.sleep(seconds)

    def text(self) -> str:
        return "\n".join(self.lines)


def fetch_into(folder: Path, spec: FileSpec, mirrors: list[str], params: FetchParams = FAST,
               rec: Recorder | None = None) -> str:
    rec = rec or Recorder()
    return fetch(spec, mirrors, folder / "out", params, log=rec.log, sleep=rec.sleep)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def assert_fails_then_recovers(tmp_path: Path, faults: FaultServers, data: Synthetic, handler: Handler, reason: str,
                               hits: int | None = None, params: FetchParams = FAST) -> None:
    """The faulty mirror alone: one error naming its URL and ``reason``, nothing left behind.
    Then [faulty, good]: the good mirror's file arrives, verified, and the log says why the first failed."""
    raw, archive = data.raw[KEY], data.archives[KEY]
    spec = spec_of(raw)
    bad = faults({NAME: handler})
    alone = tmp_path / "alone"
    alone.mkdir()
    with pytest.raises(MirrorsExhaustedError, match=reason) as info:
        fetch_into(alone, spec, [bad.url], params)
    assert [f.url for f in info.value.failures] == [bad.url + NAME]
    assert isinstance(info.value.failures[0], DownloadError)
    assert leftovers(alone) == []
    if hits is not None:
        assert bad.hits(NAME) == hits

    good = faults({NAME: ok(archive)})
    both = tmp_path / "both"
    both.mkdir()
    rec = Recorder()
    assert fetch_into(both, spec, [bad.url, good.url], params, rec) == good.url + NAME
    assert (both / "out").read_bytes() == raw
    assert leftovers(both) == ["out"]
    assert re.search(f"failed: {re.escape(bad.url + NAME)}: .*{reason}", rec.text()), rec.text()


# Network: connections that fail, stall, trickle or end early.


def test_connection_refused_is_retried_then_the_next_mirror_wins(tmp_path, faults, data):
    raw = data.raw[KEY]
    dead = refused_url()
    with pytest.raises(MirrorsExhaustedError, match=r"connection refused \(nothing listens at that address\)"):
        fetch_into(tmp_path, spec_of(raw), [dead])
    assert leftovers(tmp_path) == []
    good = faults({NAME: ok(data.archives[KEY])})
    rec = Recorder()
    assert fetch_into(tmp_path, spec_of(raw), [dead, good.url], rec=rec) == good.url + NAME
    assert rec.sleeps == [FAST.backoff]  # retried once (fetch.retries=1), then moved on
    assert (tmp_path / "out").read_bytes() == raw


def test_a_connect_that_hangs_times_out_then_the_next_mirror_wins(tmp_path, faults, data):
    params = FetchParams(connect_timeout=0.3, read_timeout=0.3, deadline=5, retries=1, backoff=0.01, max_retry_after=5)
    hole = faults.blackhole()
    with pytest.raises(MirrorsExhaustedError, match=r"could not connect within fetch.connect_timeout=0.3 s"):
        fetch_into(tmp_path, spec_of(data.raw[KEY]), [hole], params)
    good = faults({NAME: ok(data.archives[KEY])})
    rec = Recorder()
    assert fetch_into(tmp_path, spec_of(data.raw[KEY]), [hole, good.url], params, rec) == good.url + NAME
    assert rec.sleeps == [params.backoff]
    assert leftovers(tmp_path) == ["out"]


@pytest.mark.parametrize(
    ("make", "reason", "hits"),
    [
        pytest.param(lambda gz: hang_up(), "the server closed the connection without sending response headers", 2,
                     id="no-response-headers"),
        pytest.param(lambda gz: stall(gz, after=1000), r"stalled: no data for fetch.read_timeout=0.3 s after 1000 of \d+ bytes",
                     2, id="stall-mid-body"),
        pytest.param(lambda gz: short(gz, keep=1000), r"body ended after 1000 bytes, Content-Length said \d+", 2,
                     id="short-body-close"),
        pytest.param(lambda gz: short(gz, keep=1000, reset=True),
                     r"connection reset (after \d+ of \d+ bytes|before any response headers)", 2, id="short-body-reset"),
        pytest.param(lambda gz: chunked(gz, cut=1500), r"chunked body cut off after 1500 bytes \(no final zero-length chunk\)",
                     2, id="chunked-cut-off"),
        pytest.param(lambda gz: no_length(gz[:1000]), "gzip stream truncated after 1000 archive bytes", 1,
                     id="no-length-cut-body"),
    ],
)
def test_broken_transfers(tmp_path, faults, data, make, reason, hits):
    assert_fails_then_recovers(tmp_path, faults, data, make(data.archives[KEY]), reason, hits)


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
def test_a_trickle_that_never_trips_the_read_timeout_is_stopped_by_the_deadline(tmp_path, faults, data, headers_too):
    # A byte every 0.05 s never leaves the socket idle for read_timeout=0.3 s; only the per-file
    # deadline can end it, also while http.client is still reading the headers.
    params = FetchParams(connect_timeout=1, read_timeout=0.3, deadline=0.8, retries=2, backoff=0.01, max_retry_after=5)
    handler = trickle(data.archives[KEY], interval=0.05, headers_too=headers_too)
    started = time.monotonic()
    assert_fails_then_recovers(tmp_path, faults, data, handler, r"exceeded fetch.deadline=0.8 s for this file on this mirror",
                               hits=1, params=params)
    assert time.monotonic() - started < 10  # generous: two deadlines, not a whole trickled file


def test_the_deadline_also_stops_a_trickling_http_proxy(tmp_path, faults, data, monkeypatch):
    params = FetchParams(connect_timeout=1, read_timeout=0.3, deadline=0.8, retries=2, backoff=0.01, max_retry_after=5)
    proxy = faults({NAME: trickle(data.archives[KEY], interval=0.05, headers_too=True)})
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("http_proxy", proxy.url)
    mirror = "http://mirror.invalid/mnist/"  # never resolved: the proxy answers
    started = time.monotonic()
    with pytest.raises(MirrorsExhaustedError, match="exceeded fetch.deadline=0.8 s"):
        fetch_into(tmp_path, spec_of(data.raw[KEY]), [mirror], params)
    assert time.monotonic() - started < 10  # stopped at the deadline, not by http.client's header limit a minute later
    assert proxy.hits(NAME) == 1 and proxy.requests[0].path == mirror + NAME
    assert leftovers(tmp_path) == []


def test_the_deadline_covers_retries_and_waits_too(tmp_path, faults, data):
    params = FetchParams(connect_timeout=1, read_timeout=0.3, deadline=1, retries=5, backoff=5, max_retry_after=30)
    bad = faults({NAME: status(502)})
    rec = Recorder()
    with pytest.raises(MirrorsExhaustedError, match=r"HTTP 502 .*not retried: waiting 5 s would pass fetch.deadline=1 s"):
        fetch_into(tmp_path, spec_of(data.raw[KEY]), [bad.url], params, rec)
    assert bad.hits(NAME) == 1 and rec.sleeps == []


def test_an_endless_body_stops_one_byte_past_the_size_with_bounded_memory_and_disk(tmp_path, faults):
    spec = FileSpec(KEY, NAME, MNIST_TRAIN_SIZE, "0" * 64)
    bad = faults({NAME: endless(gzip_of_zeros)})
    tracemalloc.start()
    try:
        with pytest.raises(MirrorsExhaustedError, match=f"uncompressed size is more than {MNIST_TRAIN_SIZE} bytes"):
            fetch_into(tmp_path, spec, [bad.url])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak} bytes"
    assert leftovers(tmp_path) == []
    assert bad.body_bytes < 16 << 20  # the client stopped reading long before max_archive_size(spec)


def test_an_endless_body_that_inflates_to_nothing_is_stopped_by_the_archive_bound(tmp_path, faults, data):
    padding = gzip.compress(b"", mtime=0) * 1000  # valid empty gzip members, forever
    handler = endless(lambda: itertools.repeat(padding))
    assert_fails_then_recovers(tmp_path, faults, data, handler,
                               r"archive is more than \d+ bytes, more than any gzip archive of this \d+-byte file can be", 1)


def test_a_content_length_no_archive_can_have_is_refused_before_reading(tmp_path, faults, data):
    def lying(conn):
        conn.head(200, [("Content-Length", str(10**12))])
        conn.send_body(data.archives[KEY])

    assert_fails_then_recovers(tmp_path, faults, data, lying,
                               f"Content-Length 1000000000000 is more than the {max_archive_size(spec_of(data.raw[KEY]))} "
                               "bytes an archive of this", 1)


def test_bytes_past_the_content_length_are_never_read(tmp_path, faults, data):
    archive = data.archives[KEY]
    server = faults({NAME: short(archive + b"\0" * 50_000, keep=len(archive) + 50_000, length=len(archive))})
    fetch_into(tmp_path, spec_of(data.raw[KEY]), [server.url])
    assert (tmp_path / "out").read_bytes() == data.raw[KEY]


def test_bytes_are_counted_against_a_lying_content_length_urllib3_ignores(tmp_path, faults, data):
    # With Transfer-Encoding: chunked, urllib3 ignores Content-Length (as urllib3 1.x ignored a
    # short body): only our own byte count notices the body is not what was declared.
    archive = data.archives[KEY]

    def lying(conn):
        conn.head(200, [("Content-Length", str(len(archive) + 10)), ("Transfer-Encoding", "chunked")])
        conn.send(f"{len(archive):x}\r\n".encode())
        conn.send_body(archive)
        conn.send(b"\r\n0\r\n\r\n")

    assert_fails_then_recovers(tmp_path, faults, data, lying,
                               f"body ended after {len(archive)} bytes, Content-Length said {len(archive) + 10}", 2)


def test_urllib3_2_is_pinned():
    assert int(urllib3.__version__.split(".")[0]) >= 2
    requirements = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^urllib3\s*(==\s*2\.|>=\s*2)", requirements, re.M), "requirements.txt must pin urllib3>=2"
    assert re.search(r"\"urllib3>=2", (ROOT / "pyproject.toml").read_text())


# HTTP status codes.


@pytest.mark.parametrize("code", [500, 502, 504])
def test_server_errors_are_retried_with_backoff_then_the_next_mirror(tmp_path, faults, data, code):
    assert_fails_then_recovers(tmp_path, faults, data, status(code, b"<html>oops</html>"),
                               rf"HTTP {code} [A-Za-z ]+ \(expected 200\)", hits=FAST.retries + 1)


def test_backoff_doubles_and_is_capped(tmp_path, faults, data):
    params = FetchParams(connect_timeout=1, read_timeout=0.3, deadline=60, retries=4, backoff=1, max_retry_after=3)
    bad = faults({NAME: status(503)})
    rec = Recorder()  # records the waits without sleeping them
    with pytest.raises(MirrorsExhaustedError, match="HTTP 503"):
        fetch_into(tmp_path, spec_of(data.raw[KEY]), [bad.url], params, rec)
    assert rec.sleeps == [1, 2, 3, 3]
    assert bad.hits(NAME) == 5


@pytest.mark.parametrize("code", [429, 503])
def test_a_short_retry_after_is_honoured(tmp_path, faults, data, code):
    server = faults({NAME: sequence(status(code, b"busy", [("Retry-After", "1")]), ok(data.archives[KEY]))})
    rec = Recorder(real_sleep=True)
    fetch_into(tmp_path, spec_of(data.raw[KEY]), [server.url], rec=rec)
    assert rec.sleeps == [1.0]
    first, second = server.requests
    assert second.at - first.at >= 0.9  # the server saw the client wait as asked
    assert (tmp_path / "out").read_bytes() == data.raw[KEY]


def test_a_retry_after_date_is_honoured(tmp_path, faults, data):
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 2))
    server = faults({NAME: sequence(status(503, b"", [("Retry-After", when)]), ok(data.archives[KEY]))})
    rec = Recorder()
    fetch_into(tmp_path, spec_of(data.raw[KEY]), [server.url], rec=rec)
    assert len(rec.sleeps) == 1 and 0 < rec.sleeps[0] <= 3


@pytest.mark.parametrize("code", [429, 503])
def test_a_retry_after_longer_than_the_cap_moves_on_at_once(tmp_path, faults, data, code):
    rec = Recorder()
    bad = faults({NAME: status(code, b"", [("Retry-After", "86400")])})
    good = faults({NAME: ok(data.archives[KEY])})
    started = time.monotonic()
    assert fetch_into(tmp_path, spec_of(data.raw[KEY]), [bad.url, good.url], rec=rec) == good.url + NAME
    assert time.monotonic() - started < 5
    assert bad.hits(NAME) == 1 and rec.sleeps == []
    assert "Retry-After 86400 s, longer than fetch.max_retry_after=5 s: not waiting, next mirror" in rec.text()


def test_the_retry_after_cap_is_a_knob_defaulting_to_at_most_30_s():
    assert FetchParams().max_retry_after <= 30
    assert yaml.safe_load((ROOT / "params.yaml").read_text())["fetch"]["max_retry_after"] <= 30
    assert load_params(ROOT / "params.yaml").fetch.max_retry_after <= 30


@pytest.mark.parametrize("code", [403, 404, 410])
def test_client_errors_are_not_retried(tmp_path, faults, data, code):
    assert_fails_then_recovers(tmp_path, faults, data, status(code, b"<html>no</html>"),
                               rf"HTTP {code} [A-Za-z ]+ \(expected 200; not retried\)", hits=1)


def test_an_html_page_with_status_200_is_not_an_archive(tmp_path, faults, data):
    page = b"<!DOCTYPE html>\n<html><body>Please log in</body></html>"
    assert_fails_then_recovers(tmp_path, faults, data, ok(page), "not a gzip archive but an HTML/XML page", hits=1)


def test_an_empty_200_is_not_an_archive(tmp_path, faults, data):
    assert_fails_then_recovers(tmp_path, faults, data, ok(b""), "empty response body; expected a gzip archive", hits=1)


@pytest.mark.parametrize(
    ("where", "reason"),
    [(0, r"not a gzip archive: starts b'\\x1e\\x8b"), (-8, "corrupt gzip data .*incorrect data check"),
     (-1, "corrupt gzip data .*incorrect length check"), ("middle", "corrupt gzip data .*incorrect data check")],
    ids=["magic", "crc", "length", "payload"],
)
def test_one_flipped_byte(tmp_path, faults, data, where, reason):
    archive = bytearray(data.archives[KEY])
    archive[len(archive) // 2 if where == "middle" else where] ^= 1
    assert_fails_then_recovers(tmp_path, faults, data, ok(bytes(archive)), reason, hits=1)


@pytest.fixture
def labels_server(faults):
    """One server for every example of a property test; each example routes what it serves."""
    return faults()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_is_caught_or_harmless(tmp_path_factory, labels_server, position, bit):
    # Labels compress well, so flips land in Huffman codes, lengths and distances, not just stored bytes.
    data = make_synthetic(n_train=200, n_test=10, seed=1)
    raw, archive = data.raw["train_labels"], bytearray(data.archives["train_labels"])
    archive[position % len(archive)] ^= 1 << bit
    server = labels_server
    server.route(NAMES["train_labels"], ok(bytes(archive)))
    folder = tmp_path_factory.mktemp("flip")
    try:
        fetch_into(folder, spec_of(raw, "train_labels"), [server.url])
    except MirrorsExhaustedError as exc:
        assert isinstance(exc.failures[0], DownloadError)
        assert leftovers(folder) == []
    else:  # e.g. the header's mtime or OS byte: the content is still exactly the pinned one
        assert (folder / "out").read_bytes() == raw


# Encoding, redirects and TLS.


def test_content_encoding_gzip_does_not_make_us_decode_twice(tmp_path, faults, data):
    server = faults({NAME: ok(data.archives[KEY], [("Content-Encoding", "gzip"), ("Content-Type", "application/gzip")])})
    fetch_into(tmp_path, spec_of(data.raw[KEY]), [server.url])
    assert (tmp_path / "out").read_bytes() == data.raw[KEY]
    assert server.requests[0].headers.get("accept-encoding") == "identity"


def test_a_redirect_to_another_host_serving_the_file_succeeds(tmp_path, faults, data):
    other = faults({NAME: ok(data.archives[KEY])})
    first = faults({NAME: redirect(other.url + "mnist/" + NAME, 301)})
    assert fetch_into(tmp_path, spec_of(data.raw[KEY]), [first.url]) == first.url + NAME
    assert (tmp_path / "out").read_bytes() == data.raw[KEY]
    assert first.hits(NAME) == 1 and other.hits(NAME) == 1


def test_a_redirect_loop_is_refused(tmp_path, faults, data):
    a, b = faults(), faults()
    a.route(NAME, redirect(b.url + NAME))
    b.route(NAME, redirect(a.url + NAME))
    assert_fails_then_recovers(tmp_path, faults, data, redirect(a.url + NAME), "redirect loop: .* already visited")
    assert a.hits(NAME) + b.hits(NAME) <= 2 * (MAX_REDIRECTS + 1)


def test_an_endless_redirect_chain_is_cut(tmp_path, faults, data):
    server = faults()
    counter = itertools.count()
    server.route(NAME, lambda conn: redirect(f"{server.url}{next(counter)}/{NAME}")(conn))
    assert_fails_then_recovers(tmp_path, faults, data, redirect(server.url + "start/" + NAME),
                               f"more than {MAX_REDIRECTS} redirects")


def test_a_redirect_to_a_local_file_is_refused(tmp_path, faults, data):
    bait = tmp_path / "bait.gz"
    bait.write_bytes(data.archives[KEY])  # the right content: only the policy can stop it
    assert_fails_then_recovers(tmp_path, faults, data, redirect(bait.as_uri()),
                               f"refused redirect to '{re.escape(bait.as_uri())}': only http and https are followed", 1)


@pytest.fixture
def tls(tmp_path_factory, monkeypatch):
    """A server context for 127.0.0.1 whose CA the client trusts (through REQUESTS_CA_BUNDLE)."""
    context, ca = make_tls(tmp_path_factory.mktemp("tls"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    return context


def test_a_trusted_https_mirror_works(tmp_path, faults, data, tls):
    server = faults({NAME: ok(data.archives[KEY])}, tls=tls)
    assert server.url.startswith("https://")
    fetch_into(tmp_path, spec_of(data.raw[KEY]), [server.url])
    assert (tmp_path / "out").read_bytes() == data.raw[KEY]


def test_a_redirect_from_https_to_http_is_refused(tmp_path, faults, data, tls):
    plain = faults({NAME: ok(data.archives[KEY])})
    secure = faults({NAME: redirect(plain.url + NAME)}, tls=tls)
    with pytest.raises(MirrorsExhaustedError, match="refused redirect from https to plain http"):
        fetch_into(tmp_path, spec_of(data.raw[KEY]), [secure.url])
    assert plain.hits() == 0
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("problem", ["untrusted-ca", "wrong-host"])
def test_tls_errors_are_never_fixed_by_turning_verification_off(tmp_path, tmp_path_factory, faults, data, monkeypatch,
                                                                problem):
    context, ca = make_tls(tmp_path_factory.mktemp("tls"), host="127.0.0.1" if problem == "untrusted-ca" else "mirror.example")
    if problem == "untrusted-ca":
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    else:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    bad = faults({NAME: ok(data.archives[KEY])}, tls=context)
    good = faults({NAME: ok(data.archives[KEY])})
    with pytest.raises(MirrorsExhaustedError, match="TLS verification failed .*fix the mirror's certificate"):
        fetch_into(tmp_path, spec_of(data.raw[KEY]), [bad.url])
    assert bad.hits() == 0  # no request ever went over an unverified connection
    assert bad.connections == 1  # and none was retried, with or without verification
    assert leftovers(tmp_path) == []
    assert fetch_into(tmp_path, spec_of(data.raw[KEY]), [bad.url, good.url]) == good.url + NAME


# Wrong content and aggregated failures.


def test_a_valid_archive_of_the_wrong_file_loses_to_the_right_one(tmp_path, faults, data):
    # Mirror A serves the test images under the train name: a perfect gzip of the wrong file.
    wrong = data.archives["test_images"]
    size = len(data.raw[KEY])
    assert_fails_then_recovers(tmp_path, faults, data, ok(wrong),
                               f"uncompressed size is {len(data.raw['test_images'])} bytes, expected {size} bytes", 1)


def test_a_valid_archive_of_same_size_but_other_content_fails_the_digest(tmp_path, faults):
    data, other = make_synthetic(seed=0), make_synthetic(seed=1)
    assert len(data.raw[KEY]) == len(other.raw[KEY])
    expected = hashlib.sha256(data.raw[KEY]).hexdigest()
    reason = f"sha256 of the uncompressed file is [0-9a-f]{{64}}, expected {expected}"
    with pytest.raises(MirrorsExhaustedError, match=reason) as info:
        fetch_into(tmp_path, spec_of(data.raw[KEY]), [faults({NAME: ok(other.archives[KEY])}).url])
    assert isinstance(info.value.failures[0], ChecksumError)
    assert info.value.failures[0].expected == expected


def test_when_every_mirror_fails_one_error_lists_each_reason(tmp_path, faults, data):
    dead = refused_url()
    missing = faults({NAME: status(404)})
    html = faults({NAME: ok(b"<html>maintenance</html>")})
    slow = faults({NAME: status(503, b"", [("Retry-After", "3600")])})
    with pytest.raises(MirrorsExhaustedError) as info:
        fetch_into(tmp_path, spec_of(data.raw[KEY]), [dead, missing.url, html.url, slow.url])
    message = str(info.value)
    assert message.startswith(f"{NAME}: all 4 source(s) failed: ")
    for i, (url, reason) in enumerate([(dead, "connection refused"), (missing.url, "HTTP 404 Not Found"),
                                       (html.url, "HTML/XML page"), (slow.url, "Retry-After 3600 s")], 1):
        assert re.search(rf"\[{i}\] {re.escape(url + NAME)}: [^\[]*{reason}", message), message
    assert [f.url for f in info.value.failures] == [dead + NAME, missing.url + NAME, html.url + NAME, slow.url + NAME]
    assert "point MNIST_MIRRORS at a working mirror" in message
    assert leftovers(tmp_path) == []


def test_a_failed_download_keeps_the_previous_file(tmp_path, faults, data):
    dest = tmp_path / "out"
    dest.write_bytes(b"previous good content")
    with pytest.raises(MirrorsExhaustedError):
        fetch_into(tmp_path, spec_of(data.raw[KEY]), [faults({NAME: stall(data.archives[KEY], 5000)}).url])
    assert dest.read_bytes() == b"previous good content"
    assert leftovers(tmp_path) == ["out"]


# gzip defects, served as the archive.


def _members(raw: bytes) -> bytes:
    half = len(raw) // 2
    return gzip.compress(raw[:half], mtime=0) + gzip.compress(raw[half:], mtime=0)


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda gz, raw: gz[: len(gz) // 2], "gzip stream truncated after"),
        (lambda gz, raw: gz[:-2], "gzip stream truncated after"),
        (lambda gz, raw: gz[:-8] + bytes(4) + gz[-4:], "incorrect data check"),
        (lambda gz, raw: gz[:-4] + (len(raw) + 1).to_bytes(4, "little"), "incorrect length check"),
        (lambda gz, raw: raw, r"not a gzip archive: starts b'\\x00\\x00\\x08\\x03"),
        (lambda gz, raw: zlib.compress(raw), r"not a gzip archive: starts b'x"),
        (lambda gz, raw: gz + b"GARBAGE", "trailing garbage after the gzip stream"),
        (lambda gz, raw: gz + b"\0" * 512, "trailing garbage after the gzip stream"),
    ],
    ids=["truncated-half", "truncated-trailer", "crc", "length", "raw-idx", "zlib-not-gzip", "garbage", "zero-padding"],
)
def test_gzip_defects(tmp_path, faults, data, mangle, reason):
    served = mangle(data.archives[KEY], data.raw[KEY])
    assert_fails_then_recovers(tmp_path, faults, data, ok(served), reason, hits=1)


def test_concatenated_gzip_members_are_one_stream(tmp_path, faults, data):
    # gzip(1) decompresses concatenated members as one file; the content pin decides.
    server = faults({NAME: ok(_members(data.raw[KEY]))})
    fetch_into(tmp_path, spec_of(data.raw[KEY]), [server.url])
    assert (tmp_path / "out").read_bytes() == data.raw[KEY]


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """300 MB of zeros in about 300 KB of gzip."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    return b"".join(deflate.compress(zeros) for _ in range(300)) + deflate.flush()


@pytest.mark.parametrize("declared", [1000, MNIST_TRAIN_SIZE], ids=["small-size", "mnist-size"])
def test_a_decompression_bomb_is_rejected_past_the_size_with_bounded_memory(tmp_path, faults, bomb, declared):
    assert len(bomb) < 400_000
    spec = FileSpec(KEY, NAME, declared, "0" * 64)
    server = faults({NAME: ok(bomb)})
    tracemalloc.start()
    try:
        with pytest.raises(MirrorsExhaustedError, match=f"uncompressed size is more than {declared} bytes, expected {declared}"):
            fetch_into(tmp_path, spec, [server.url])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak} bytes"
    assert leftovers(tmp_path) == []


def test_errors_name_the_mirror_after_a_redirect(tmp_path, faults, data):
    target = faults({NAME: ok(b"<html>moved</html>")})
    first = faults({NAME: redirect(target.url + NAME)})
    with pytest.raises(MirrorsExhaustedError) as info:
        fetch_into(tmp_path, spec_of(data.raw[KEY]), [first.url])
    failure = info.value.failures[0]
    assert failure.url == first.url + NAME
    assert str(failure).startswith(f"{first.url}{NAME}: ")
    assert "HTML/XML page" in str(failure)

