"""Tests for download.py, builtins/http.py and builtins/simulated.py, over real loopback HTTP."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pytest
import trustme

from download_pipeline_processor import affinity
from download_pipeline_processor._cache import PART_SUFFIX, DownloadCache
from download_pipeline_processor._download_stage import DownloadStage
from download_pipeline_processor.backend import Downloader
from download_pipeline_processor.builtins._requests_downloader import (
    RequestsDownloader,
    parse_retry_after,
)
from download_pipeline_processor.builtins._simulated import NO_SLEEP_ENV, SimulatedDownloader
from download_pipeline_processor.errors import (
    DownloadError,
    PermanentDownloadError,
    PipelineInterrupted,
    TransientDownloadError,
)
from download_pipeline_processor.file_data import FileData, StageError
from download_pipeline_processor.http_rules import keeps_credentials
from download_pipeline_processor.settings import PipelineSettings
from download_pipeline_processor.testing import FileServer
from dpp_curl import CurlDownloader
from dpp_fast.fast import FastDownloader

StageFactory = Callable[..., DownloadStage]

#: One route per way a download can fail: permanent, transient, short body, timeout.
FAILING_ROUTES: list[dict[str, Any]] = [
    {"statuses": (404,)},
    {"statuses": (500,)},
    {"body": b"y" * 50_000, "truncate_to": 10},
    {"body": b"z", "delay": 0.4},
]
FAILING_ROUTE_IDS = ["404", "500", "truncated", "timeout"]


class ScopedServer:
    """One test's view of the module's shared FileServer: its paths get a private prefix.

    FileServer.stop() takes half a second (the serve_forever poll interval), so
    the module shares one server and each test keeps to its own paths.
    """

    def __init__(self, server: FileServer, prefix: str) -> None:
        self._server = server
        self.prefix = prefix

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self._server.base_url

    def url(self, path: str) -> str:
        """The absolute URL of this test's ``path``."""
        return self._server.url(self.prefix + path)

    def add(self, path: str, body: bytes = b"", **route: Any) -> str:
        """Serve ``body`` at this test's ``path`` and return its URL."""
        return self._server.add(self.prefix + path, body, **route)

    def request_count(self, path: str | None = None) -> int:
        """Requests this test made for ``path``, or for any of its paths."""
        if path is None:
            return len(self.request_log)
        return self._server.request_count(self.prefix + path)

    @property
    def request_log(self) -> list[tuple[str, str, dict[str, str]]]:
        """(method, path with query, headers) of this test's requests."""
        return [e for e in self._server.request_log if e[1].startswith(self.prefix + "/")]


#: The transport under test -> the downloader class that uses it for plain URLs.
DOWNLOADERS: dict[str, type[Downloader]] = {
    "pooled": RequestsDownloader,
    "session": RequestsDownloader,
    "fast": FastDownloader,
    "curl": CurlDownloader,
}


@pytest.fixture(autouse=True, params=list(DOWNLOADERS))
def transport(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Run every test over each transport: both of the requests downloader, and ``fast``.

    A ``.netrc`` file (here an empty one, named by NETRC) is one of the things
    only a requests.Session honours, so its presence switches the downloader
    to the session transport: a real switch, not a patched one.
    """
    if request.param == "session":
        netrc = tmp_path / "netrc"
        netrc.write_text("")
        monkeypatch.setenv("NETRC", str(netrc))
    else:
        monkeypatch.setenv("NETRC", str(tmp_path / "no-such-netrc"))
    return str(request.param)


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FileServer]:
    """One loopback file server for the whole module."""
    with FileServer() as file_server:
        yield file_server


@pytest.fixture
def server(shared_server: FileServer) -> ScopedServer:
    """The shared server, seen through a prefix private to this test."""
    return ScopedServer(shared_server, f"/{uuid.uuid4().hex}")


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[DownloadCache]:
    """An opened download cache under tmp_path, closed after the test."""
    download_cache = DownloadCache(tmp_path / "cache")
    download_cache.open()
    yield download_cache
    download_cache.close()


@pytest.fixture
def downloader_class(transport: str) -> type[Downloader]:
    """The downloader class of the transport under test."""
    return DOWNLOADERS[transport]


@pytest.fixture
def make_stage(cache: DownloadCache, downloader_class: type[Downloader]) -> Iterator[StageFactory]:
    """Build a DownloadStage over the downloader under test; settings default to no backoff."""
    downloaders: list[Downloader] = []

    def factory(stop_event: threading.Event | None = None, **settings: Any) -> DownloadStage:
        settings.setdefault("retry_backoff", 0)
        settings.setdefault("timeout", 5.0)
        pipeline_settings = PipelineSettings(**settings)
        downloader = downloader_class(pipeline_settings)
        downloaders.append(downloader)
        return DownloadStage(downloader, cache, pipeline_settings, stop_event or threading.Event())

    yield factory
    for downloader in downloaders:
        downloader.close()


def cached_files(cache: DownloadCache) -> list[Path]:
    """Every file (not folder) in the cache's run folder."""
    return sorted(path for path in cache.path.rglob("*") if path.is_file())


def download_error(stage: DownloadStage, url: str) -> DownloadError:
    """Download ``url`` expecting failure; return the error raised."""
    with pytest.raises(DownloadError) as info:
        stage.download(0, FileData(url))
    return info.value


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_secrets(url: str) -> str:
    """``url`` with userinfo and a secret query string added."""
    return url.replace("http://", "http://user:secret@", 1) + "?token=SECRET"


class TestSuccessfulDownloads:
    """Bodies arrive whole, under their final name."""

    def test_large_body_streamed(self, server: ScopedServer, make_stage: StageFactory) -> None:
        """A 5 MB body arrives byte for byte, in many chunks, and its size is returned."""
        body = bytes(range(256)) * (5 * 1024 * 4)
        url = server.add("/big.bin", body)
        stage = make_stage(chunk_size=64 * 1024)
        file_data = FileData(url)
        size = stage.download(3, file_data)
        assert size == len(body) == 5 * 1024 * 1024
        assert file_data.local_path is not None
        digest = hashlib.sha256(file_data.local_path.read_bytes()).hexdigest()
        assert digest == hashlib.sha256(body).hexdigest()

    def test_complete_file_has_final_name(
        self, server: ScopedServer, make_stage: StageFactory, cache: DownloadCache
    ) -> None:
        """The complete file sits at its target name in the cache, with no .part left beside it."""
        url = server.add("/a/talk.mp3", b"abc")
        file_data = FileData(url)
        make_stage().download(5, file_data)
        assert file_data.local_path == cache.target_for(5, file_data)
        assert not file_data.local_path.name.endswith(PART_SUFFIX)
        assert cached_files(cache) == [file_data.local_path]

    def test_one_get_per_attempt(self, server: ScopedServer, make_stage: StageFactory) -> None:
        """A successful download is exactly one GET (no HEAD first)."""
        url = server.add("/x.bin", b"x")
        make_stage().download(0, FileData(url))
        assert [method for method, _, _ in server.request_log] == ["GET"]

    @pytest.mark.parametrize(
        "headers",
        [{"X-Bad": "a\r\nInjected: 1"}, {"Bad:Name": "v"}, {"": "v"}, {"X-Euro": "\u20ac"}],
        ids=["crlf-value", "colon-name", "empty-name", "not-latin-1"],
    )
    def test_bad_request_header_refused(
        self, downloader_class: type[Downloader], headers: dict[str, str]
    ) -> None:
        """A header that would break or split a request is refused when the downloader is built."""
        with pytest.raises(ValueError, match=r"^invalid request header"):
            downloader_class(PipelineSettings(headers=headers))

    def test_request_headers(self, server: ScopedServer, make_stage: StageFactory) -> None:
        """Requests carry Accept-Encoding: identity, a User-Agent and the configured headers."""
        url = server.add("/x.bin", b"x")
        make_stage(headers={"X-Extra": "1"}).download(0, FileData(url))
        ((_, _, headers),) = server.request_log
        assert headers["Accept-Encoding"] == "identity"
        assert headers["User-Agent"].startswith("download-pipeline-processor/")
        assert headers["X-Extra"] == "1"

    def test_empty_body(self, server: ScopedServer, make_stage: StageFactory) -> None:
        """An empty body is a complete, empty file."""
        url = server.add("/empty", b"")
        file_data = FileData(url)
        assert make_stage().download(0, file_data) == 0
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b""

    def test_redirect_followed(self, server: ScopedServer, make_stage: StageFactory) -> None:
        """A redirect to another http URL is followed and the target's body kept."""
        target = server.add("/new.bin", b"moved here")
        url = server.add("/old.bin", statuses=(301,), redirect_to=target)
        file_data = FileData(url)
        make_stage().download(0, file_data)
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"moved here"
        assert server.request_count("/old.bin") == server.request_count("/new.bin") == 1

    def test_concurrent_downloads(
        self, server: ScopedServer, make_stage: StageFactory, cache: DownloadCache
    ) -> None:
        """One stage serves many threads at once; each file lands whole at its own path."""
        stage = make_stage()
        bodies = {f"/f{i}.bin": bytes([i]) * (10_000 + i) for i in range(16)}
        entries = [FileData(server.add(path, body)) for path, body in bodies.items()]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(stage.download, range(len(entries)), entries))
        for entry, body in zip(entries, bodies.values()):
            assert entry.local_path is not None
            assert entry.local_path.read_bytes() == body
        assert len(cached_files(cache)) == 16


class TestRetries:
    """Transient failures are retried, permanent ones are not."""

    def test_500_then_200(self, server: ScopedServer, make_stage: StageFactory) -> None:
        """A 500 followed by a 200 succeeds after two requests."""
        url = server.add("/x.bin", b"ok", statuses=(500, 200))
        file_data = FileData(url)
        make_stage().download(0, file_data)
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"ok"
        assert server.request_count("/x.bin") == 2

    @pytest.mark.parametrize("max_retries", [0, 2])
    def test_always_500(
        self, server: ScopedServer, make_stage: StageFactory, max_retries: int
    ) -> None:
        """A file that always answers 500 fails after max_retries + 1 requests."""
        url = server.add("/x.bin", statuses=(500,))
        error = download_error(make_stage(max_retries=max_retries), url)
        assert isinstance(error, TransientDownloadError)
        assert "HTTP 500" in str(error)
        assert server.request_count("/x.bin") == max_retries + 1

    @pytest.mark.parametrize("status", [404, 403, 400, 410])
    def test_client_errors_fail_at_once(
        self, server: ScopedServer, make_stage: StageFactory, status: int
    ) -> None:
        """A 4xx other than 408 and 429 is requested exactly once and is permanent."""
        url = server.add("/x.bin", statuses=(status, 200))
        error = download_error(make_stage(max_retries=3), url)
        assert isinstance(error, PermanentDownloadError)
        assert f"HTTP {status}" in str(error)
        assert server.request_count("/x.bin") == 1

    def test_unknown_path_is_404(self, server: ScopedServer, make_stage: StageFactory) -> None:
        """A path the server does not know is one request and a permanent failure."""
        error = download_error(make_stage(), server.url("/missing"))
        assert isinstance(error, PermanentDownloadError)
        assert server.request_count("/missing") == 1

    @pytest.mark.parametrize("status", [408, 429, 502, 503])
    def test_retryable_statuses(
        self, server: ScopedServer, make_stage: StageFactory, status: int
    ) -> None:
        """408, 429 and 5xx are retried and the file then succeeds."""
        url = server.add("/x.bin", b"ok", statuses=(status, 200))
        make_stage().download(0, FileData(url))
        assert server.request_count("/x.bin") == 2

    def test_exponential_backoff(self, server: ScopedServer, make_stage: StageFactory) -> None:
        """Waits grow from retry_backoff: 0.1 s then 0.2 s before the third attempt."""
        url = server.add("/x.bin", b"ok", statuses=(500, 500, 200))
        start = time.monotonic()
        make_stage(retry_backoff=0.1).download(0, FileData(url))
        elapsed = time.monotonic() - start
        assert 0.28 <= elapsed < 1.5
        assert server.request_count("/x.bin") == 3

    def test_backoff_capped(self, server: ScopedServer, make_stage: StageFactory) -> None:
        """retry_backoff_max caps the exponential wait."""
        url = server.add("/x.bin", b"ok", statuses=(500, 200))
        start = time.monotonic()
        make_stage(retry_backoff=30, retry_backoff_max=0.1).download(0, FileData(url))
        assert time.monotonic() - start < 1.5

    def test_retry_after_honoured(self, server: ScopedServer, make_stage: StageFactory) -> None:
        """A 503 with Retry-After: 1 makes the next attempt wait about a second."""
        url = server.add("/x.bin", b"ok", statuses=(503, 200), headers={"Retry-After": "1"})
        start = time.monotonic()
        make_stage(retry_backoff=0).download(0, FileData(url))
        elapsed = time.monotonic() - start
        assert 0.9 <= elapsed < 2.0
        assert server.request_count("/x.bin") == 2

    def test_retry_after_capped(self, server: ScopedServer, make_stage: StageFactory) -> None:
        """A Retry-After longer than retry_backoff_max waits only retry_backoff_max."""
        url = server.add("/x.bin", b"ok", statuses=(429, 200), headers={"Retry-After": "3600"})
        start = time.monotonic()
        make_stage(retry_backoff_max=0.2).download(0, FileData(url))
        elapsed = time.monotonic() - start
        assert 0.15 <= elapsed < 1.5

    def test_truncated_body_retried_then_fails(
        self, server: ScopedServer, make_stage: StageFactory, cache: DownloadCache
    ) -> None:
        """A body shorter than its Content-Length is retried, then fails as truncated."""
        url = server.add("/x.bin", b"x" * 100_000, truncate_to=1000)
        error = download_error(make_stage(max_retries=2), url)
        assert isinstance(error, TransientDownloadError)
        assert "truncated" in str(error)
        assert "100000" in str(error)
        assert server.request_count("/x.bin") == 3
        assert cached_files(cache) == []

    def test_timeout_is_transient(self, server: ScopedServer, make_stage: StageFactory) -> None:
        """A server slower than the timeout fails transiently, and the timeout is per attempt."""
        url = server.add("/slow.bin", b"x", delay=0.6)
        start = time.monotonic()
        error = download_error(make_stage(timeout=0.2, max_retries=1), url)
        elapsed = time.monotonic() - start
        assert isinstance(error, TransientDownloadError)
        assert str(error) == "timed out"  # the same words on every downloader
        assert server.request_count("/slow.bin") == 2
        assert elapsed < 1.0

    def test_connection_refused_is_transient(self, make_stage: StageFactory) -> None:
        """Nothing listening on the port is a transient connection error."""
        url = f"http://127.0.0.1:{closed_port()}/x.bin"
        error = download_error(make_stage(max_retries=1), url)
        assert isinstance(error, TransientDownloadError)
        assert str(error) == "connection refused"  # the same words on every downloader


def serve_loopback(
    reply: Callable[[socket.socket], None], name: str, once: bool = False
) -> tuple[socket.socket, str]:
    """A listener on 127.0.0.1 that reads each request and calls ``reply``; and a URL on it."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                reply(conn)
            if once:
                return

    threading.Thread(target=serve, daemon=True).start()
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}/{name}"


def serve_raw(answer: bytes) -> tuple[socket.socket, str]:
    """A listener that answers every connection with ``answer`` and hangs up; and its URL."""
    return serve_loopback(lambda conn: conn.sendall(answer), "odd.bin")


def serve_paused(
    length: int, first: int, go: threading.Event, announce: bool = True
) -> tuple[socket.socket, str]:
    """One answer with a ``length``-byte body: ``first`` bytes, the rest once ``go`` is set.

    With ``announce`` False there is no Content-Length: the body ends at the close.
    """

    def reply(conn: socket.socket) -> None:
        framing = f"Content-Length: {length}\r\n" if announce else ""
        head = f"HTTP/1.1 200 OK\r\n{framing}Connection: close\r\n\r\n"
        conn.sendall(head.encode() + b"a" * first)
        go.wait(10)
        conn.sendall(b"a" * (length - first))

    return serve_loopback(reply, "paused.bin", once=True)


class TestPinnedThreadsWiden:
    """A pinned worker copies a large body with every core allowed, then is pinned again."""

    @pytest.mark.parametrize(
        ("length", "announce", "widens"),
        [
            (4 * affinity.WIDEN_ABOVE, True, True),
            (4096, True, False),
            # No length: widened once more than WIDEN_ABOVE bytes were copied.
            (4 * affinity.WIDEN_ABOVE, False, True),
        ],
        ids=["large", "small", "large-unannounced"],
    )
    def test_cores_during_the_body(
        self, make_stage: StageFactory, length: int, announce: bool, widens: bool
    ) -> None:
        everything = frozenset(os.sched_getaffinity(0))
        if len(everything) < 2:
            pytest.skip("pinning is only observable with two cores or more")
        cpu = min(everything)
        go = threading.Event()
        first = 2 * affinity.WIDEN_ABOVE if length > affinity.WIDEN_ABOVE else 1000
        listener, url = serve_paused(length, first, go, announce)
        # Small chunks, so that the requests transports report progress before the pause.
        stage = make_stage(chunk_size=64 * 1024)
        file_data = FileData(url)
        worker_id: list[int] = []
        after: list[frozenset[int]] = []

        def download() -> None:
            affinity.pin_thread(cpu)
            worker_id.append(threading.get_native_id())
            stage.download(0, file_data)
            after.append(frozenset(os.sched_getaffinity(0)))

        worker = threading.Thread(target=download)
        worker.start()
        try:
            deadline = time.monotonic() + 5
            while not worker_id and time.monotonic() < deadline:
                time.sleep(0.01)
            expected = everything if widens else frozenset({cpu})
            # Wait for the widening when one is due; otherwise give the worker
            # time to reach the body (the first 1000 bytes are already there).
            while time.monotonic() < deadline:
                during = frozenset(os.sched_getaffinity(worker_id[0]))
                if during == everything or not widens:
                    break
                time.sleep(0.01)
            if not widens:
                time.sleep(0.3)
                during = frozenset(os.sched_getaffinity(worker_id[0]))
        finally:
            go.set()
            worker.join(10)
            listener.close()
        assert during == expected
        assert after == [frozenset({cpu})]
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"a" * length


class TestOddAnswers:
    def test_non_ascii_length_digits(self, make_stage: StageFactory, cache: DownloadCache) -> None:
        """A Content-Length of superscript digits is never a raw ValueError."""
        listener, url = serve_raw(b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nab")
        try:
            file_data = FileData(url)
            try:
                make_stage(max_retries=0).download(0, file_data)
            except DownloadError:
                pass  # refusing the answer is fine; crashing is not
            else:
                assert file_data.local_path is not None
                assert file_data.local_path.read_bytes() == b"ab"
        finally:
            listener.close()


def chunked(body: bytes, piece: int = 64 * 1024) -> bytes:
    """``body`` in the chunked transfer coding, ``piece`` bytes a chunk, with the last chunk."""
    pieces = [body[at : at + piece] for at in range(0, len(body), piece)]
    return b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in pieces) + b"0\r\n\r\n"


class TestFraming:
    """Where a body ends is decided by one rule on every downloader (RFC 9112 section 6.3)."""

    @pytest.mark.parametrize("announced", [1024 * 1024, 3 * 1024 * 1024], ids=["smaller", "larger"])
    def test_chunked_wins_over_content_length(
        self, make_stage: StageFactory, announced: int
    ) -> None:
        """A chunked body with a Content-Length beside it is read to its last chunk, whole."""
        body = bytes(range(256)) * (8 * 1024)  # 2 MiB
        head = (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            f"Content-Length: {announced}\r\nConnection: close\r\n\r\n"
        )
        listener, url = serve_raw(head.encode() + chunked(body))
        try:
            file_data = FileData(url)
            size = make_stage(max_retries=0).download(0, file_data)
        finally:
            listener.close()
        assert size == len(body)
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == body

    @pytest.mark.parametrize("length", ["-1", "ten", "3, 4", "0x10"])
    def test_invalid_content_length_fails_for_good(
        self, make_stage: StageFactory, cache: DownloadCache, length: str, transport: str
    ) -> None:
        """A negative or garbage Content-Length fails the file at once, not retried, same text."""
        answer = f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\nabcd"
        listener, url = serve_raw(answer.encode())
        try:
            error = download_error(make_stage(max_retries=3), url)
        finally:
            listener.close()
        assert isinstance(error, PermanentDownloadError)
        if transport == "curl":
            # libcurl refuses such a header before any callback sees it, so
            # the value cannot be quoted: the shared text without it.
            assert str(error) == "invalid Content-Length in the response"
        else:
            assert str(error) == f"invalid Content-Length {length!r} in the response"
        assert cached_files(cache) == []

    def test_truncated_body_message(self, server: ScopedServer, make_stage: StageFactory) -> None:
        """A body cut short is reported in the same words on every downloader, by a public type."""
        url = server.add("/short", b"y" * 50_000, truncate_to=10)
        error = download_error(make_stage(max_retries=0), url)
        assert StageError("download", error).message == (
            "TransientDownloadError: truncated body: got 10 of 50000 bytes"
        )

    def test_truncated_chunked_body_message(self, make_stage: StageFactory) -> None:
        """A chunked body cut off before its last chunk is one message on every downloader."""
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        listener, url = serve_raw(head + chunked(b"z" * 5000, 1000)[:-5])
        try:
            error = download_error(make_stage(max_retries=0), url)
        finally:
            listener.close()
        assert StageError("download", error).message == (
            "TransientDownloadError: truncated body: connection closed after 5000 bytes "
            "of a chunked body"
        )


#: Full-width forms of the loopback host: UTS #46 maps them to ASCII.
FULL_WIDTH_HOSTS = [
    "\uff11\uff12\uff17.\uff10.\uff10.\uff11",
    "\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54",
]


class TestUrlRules:
    """One URL means one thing on every downloader (``urls``): the same host, or the same error."""

    @pytest.mark.parametrize("host", FULL_WIDTH_HOSTS, ids=["digits", "letters"])
    def test_full_width_host(
        self, server: ScopedServer, make_stage: StageFactory, host: str
    ) -> None:
        """A host name in full-width characters is fetched from its ASCII form."""
        url = server.add("/wide.bin", b"wide").replace("127.0.0.1", host, 1)
        file_data = FileData(url)
        make_stage(max_retries=0).download(0, file_data)
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"wide"

    @pytest.mark.parametrize(
        ("path", "message"),
        [
            ("/a\nb", "URL contains a control character (U+000A) at position"),
            ("/a\r\nX-Injected: 1", "URL contains a control character (U+000D) at position"),
            ("/a\tb", "URL contains a control character (U+0009) at position"),
            ("/a\x00b", "URL contains a control character (U+0000) at position"),
        ],
        ids=["lf", "crlf", "tab", "nul"],
    )
    def test_control_characters_refused(
        self, server: ScopedServer, make_stage: StageFactory, path: str, message: str
    ) -> None:
        """A URL with a control character fails for good before any request, in one wording."""
        server.add("/ab", b"dropped")
        error = download_error(make_stage(max_retries=2), server.url(path))
        assert isinstance(error, PermanentDownloadError)
        assert str(error).startswith(message)
        assert server.request_count() == 0

    def test_invalid_host_name(self, make_stage: StageFactory) -> None:
        """A Unicode host name with no IDNA form fails for good, in one wording, not retried."""
        error = download_error(make_stage(max_retries=2), "http://bad\u200d.example/x")
        assert isinstance(error, PermanentDownloadError)
        assert str(error) == "URL has an invalid host name"

    def test_redirect_location_with_control_character(
        self, server: ScopedServer, make_stage: StageFactory
    ) -> None:
        """A Location holding a TAB is refused, not followed with the TAB silently dropped."""
        server.add("/ab", b"dropped")
        url = server.add("/r", statuses=(302,), redirect_to=server.url("/a\tb"))
        error = download_error(make_stage(max_retries=2), url)
        assert isinstance(error, PermanentDownloadError)
        assert str(error).startswith(
            "redirected to an invalid URL: the target contains a control character (U+0009)"
        )
        assert server.request_count("/ab") == 0

    def test_non_ascii_path_sent_escaped(
        self, server: ScopedServer, make_stage: StageFactory
    ) -> None:
        """A non-ASCII path goes out as escaped UTF-8, the same bytes on every downloader."""
        url = server.add("/caf\u00e9.bin", b"coffee")
        file_data = FileData(url)
        make_stage(max_retries=0).download(0, file_data)
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"coffee"
        ((_, path, _),) = server.request_log
        assert path.endswith("/caf%C3%A9.bin")

    def test_redirect_location_with_space(
        self, server: ScopedServer, make_stage: StageFactory
    ) -> None:
        """A space in a Location is followed, sent as %20 by every downloader."""
        server.add("/a b.bin", b"spaced")
        url = server.add("/r", statuses=(302,), redirect_to=server.url("/a b.bin"))
        file_data = FileData(url)
        make_stage(max_retries=0).download(0, file_data)
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"spaced"
        assert server.request_log[-1][1].endswith("/a%20b.bin")

    def test_redirect_to_full_width_host(
        self, server: ScopedServer, make_stage: StageFactory
    ) -> None:
        """A redirect to a full-width host name is followed to its ASCII form."""
        target = server.add("/wide.bin", b"wide").replace("127.0.0.1", FULL_WIDTH_HOSTS[0], 1)
        # The server writes headers as Latin-1: these are the UTF-8 bytes of the target.
        url = server.add("/r", statuses=(302,), redirect_to=target.encode().decode("latin-1"))
        file_data = FileData(url)
        make_stage(max_retries=0).download(0, file_data)
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"wide"


class TestRedirectSafety:
    """Bad redirects fail the file cleanly and are not retried; credentials stay home."""

    def test_credentials_stay_with_their_host(
        self, server: ScopedServer, make_stage: StageFactory
    ) -> None:
        """Authorization follows a redirect on the same host, never one to another host."""
        elsewhere = server.add("/moved.bin", b"moved").replace("127.0.0.1", "localhost", 1)
        same = server.add("/same", statuses=(302,), redirect_to=server.url("/other"))
        server.add("/other", statuses=(302,), redirect_to=elsewhere)
        stage = make_stage(headers={"Authorization": "Bearer SECRET", "X-Kept": "yes"})
        file_data = FileData(same)
        stage.download(0, file_data)
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"moved"
        hops = {path.rpartition("/")[2]: headers for _, path, headers in server.request_log}
        assert hops["same"]["Authorization"] == "Bearer SECRET"
        assert hops["other"]["Authorization"] == "Bearer SECRET"
        assert "Authorization" not in hops["moved.bin"]
        assert hops["moved.bin"]["X-Kept"] == "yes"

    def test_redirect_loop(self, server: ScopedServer, make_stage: StageFactory) -> None:
        """A redirect loop fails permanently after at most max_redirects hops, with no retry."""
        url = server.add("/loop", statuses=(302,), redirect_to=server.url("/loop"))
        error = download_error(make_stage(max_redirects=3, max_retries=3), url)
        assert isinstance(error, PermanentDownloadError)
        assert "redirect" in str(error)
        assert server.request_count("/loop") <= 4

    @pytest.mark.parametrize("target", ["ftp://127.0.0.1/x.bin", "file:///etc/passwd"])
    def test_non_http_redirect_refused(
        self, server: ScopedServer, make_stage: StageFactory, cache: DownloadCache, target: str
    ) -> None:
        """A redirect to a scheme other than http or https is refused once, permanently."""
        url = server.add("/r", statuses=(302,), redirect_to=target)
        error = download_error(make_stage(), url)
        assert isinstance(error, PermanentDownloadError)
        assert "not http or https" in str(error)
        assert server.request_count("/r") == 1
        assert cached_files(cache) == []


class TestTls:
    """https is verified against the CA bundle requests would use."""

    def test_verified_download(
        self,
        tls_server: FileServer,
        authority: trustme.CA,
        make_stage: StageFactory,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """With the server's CA in REQUESTS_CA_BUNDLE, https downloads, twice on one set-up."""
        bundle = tmp_path / "ca.pem"
        authority.cert_pem.write_to_path(str(bundle))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
        body = b"secure" * 5000
        url = tls_server.add(f"/{uuid.uuid4().hex}.bin", body)
        assert url.startswith("https://")
        stage = make_stage()
        for sequence in range(2):
            file_data = FileData(url)
            assert stage.download(sequence, file_data) == len(body)
            assert file_data.local_path is not None
            assert file_data.local_path.read_bytes() == body

    def test_bundle_may_be_a_folder(
        self,
        tls_server: FileServer,
        authority: trustme.CA,
        make_stage: StageFactory,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """REQUESTS_CA_BUNDLE naming a hashed certificate folder works, as in requests."""
        folder = tmp_path / "certs"
        folder.mkdir()
        authority.cert_pem.write_to_path(str(folder / "ca.pem"))
        # OpenSSL finds certificates in a folder by subject-hash names: make them.
        openssl = shutil.which("openssl")
        assert openssl, "the openssl command (Debian: openssl) is needed to hash the folder"
        subprocess.run([openssl, "rehash", str(folder)], check=True, capture_output=True)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(folder))
        url = tls_server.add(f"/{uuid.uuid4().hex}.bin", b"via folder")
        file_data = FileData(url)
        make_stage().download(0, file_data)
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"via folder"

    def test_dropped_handshake_is_transient(
        self, make_stage: StageFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A connection closed during the TLS handshake (a busy balancer) is retried."""
        accepted: list[int] = []
        # Reads the ClientHello, then hangs up without a ServerHello.
        listener, url = serve_loopback(lambda _conn: accepted.append(1), "x")
        try:
            error = download_error(make_stage(max_retries=1), url.replace("http:", "https:"))
        finally:
            listener.close()
        assert isinstance(error, TransientDownloadError)
        assert len(accepted) == 2  # tried again

    def test_untrusted_certificate_fails_at_once(
        self,
        tls_server: FileServer,
        make_stage: StageFactory,
        cache: DownloadCache,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A certificate no trusted CA signed is a permanent failure: no retry, no file."""
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        path = f"/{uuid.uuid4().hex}.bin"
        url = tls_server.add(path, b"never")
        error = download_error(make_stage(max_retries=3), url)
        assert isinstance(error, PermanentDownloadError)
        # The same words on every downloader, OpenSSL's reason included.
        assert str(error) == (
            "TLS certificate check failed: CERTIFICATE_VERIFY_FAILED: "
            "unable to get local issuer certificate"
        )
        assert tls_server.request_count(path) == 0
        assert cached_files(cache) == []


class TestCleanup:
    """No partial file survives a failure."""

    @pytest.mark.parametrize("route", FAILING_ROUTES, ids=FAILING_ROUTE_IDS)
    def test_no_part_file_after_failure(
        self,
        server: ScopedServer,
        make_stage: StageFactory,
        cache: DownloadCache,
        route: dict[str, Any],
    ) -> None:
        """After any failed download the cache holds no file, .part or otherwise."""
        url = server.add("/x.bin", **route)
        file_data = FileData(url)
        download_error(make_stage(max_retries=1, timeout=0.2), url)
        assert cached_files(cache) == []
        assert file_data.local_path is None

    def test_failed_file_has_no_local_path(
        self, server: ScopedServer, make_stage: StageFactory
    ) -> None:
        """A failed download leaves file_data.local_path unset."""
        file_data = FileData(server.url("/missing"))
        with pytest.raises(PermanentDownloadError):
            make_stage().download(0, file_data)
        assert file_data.local_path is None


class TestStopping:
    """A stop request ends a download quickly with PipelineInterrupted."""

    def test_stop_before_start(
        self, server: ScopedServer, make_stage: StageFactory, cache: DownloadCache
    ) -> None:
        """With the stop event already set no request is made."""
        url = server.add("/x.bin", b"x")
        stop = threading.Event()
        stop.set()
        with pytest.raises(PipelineInterrupted):
            make_stage(stop_event=stop).download(0, FileData(url))
        assert server.request_count() == 0
        assert cached_files(cache) == []

    def test_stop_during_backoff(
        self, server: ScopedServer, make_stage: StageFactory, cache: DownloadCache
    ) -> None:
        """A stop during a long backoff wakes the stage at once instead of sleeping it out."""
        url = server.add("/x.bin", statuses=(500,))
        stop = threading.Event()
        stage = make_stage(stop_event=stop, retry_backoff=30, retry_backoff_max=30)
        timer = threading.Timer(0.2, stop.set)
        timer.start()
        start = time.monotonic()
        try:
            with pytest.raises(PipelineInterrupted):
                stage.download(0, FileData(url))
        finally:
            timer.cancel()
        assert time.monotonic() - start < 1.5
        assert server.request_count("/x.bin") == 1
        assert cached_files(cache) == []

    def test_stop_during_failing_attempt(
        self, server: ScopedServer, make_stage: StageFactory, transport: str
    ) -> None:
        """A stop while an attempt is failing reports an interrupt, not that attempt's error."""
        url = server.add("/slow.bin", b"x", delay=0.5)
        stop = threading.Event()
        stage = make_stage(stop_event=stop, timeout=0.3, max_retries=3)
        timer = threading.Timer(0.1, stop.set)
        timer.start()
        try:
            with pytest.raises(PipelineInterrupted) as info:
                stage.download(0, FileData(url))
        finally:
            timer.cancel()
        if transport == "curl":
            # curl looks at the stop while it waits for the answer (every 0.1 s)
            # and ends the attempt with the interrupt itself, before the timeout.
            assert info.value.__cause__ is None
        else:
            # The others wait in a blocking read: the attempt times out first,
            # and that failure is the interrupt's cause, never the file's error.
            assert isinstance(info.value.__cause__, TransientDownloadError)
        assert server.request_count("/slow.bin") == 1

    def test_exhausted_retries_still_report_the_error(
        self, server: ScopedServer, make_stage: StageFactory
    ) -> None:
        """When every attempt failed, a stop set afterwards does not hide the real error."""
        url = server.add("/x.bin", statuses=(500,))
        stop = threading.Event()
        stage = make_stage(stop_event=stop, max_retries=0)
        original_fetch = stage.downloader.fetch

        def fetch_then_stop(*args: Any) -> int:
            # The stop must arrive after the only attempt; no server hook can time that.
            try:
                return original_fetch(*args)
            finally:
                stop.set()

        stage.downloader.fetch = fetch_then_stop  # type: ignore[method-assign]
        with pytest.raises(TransientDownloadError, match="HTTP 500"):
            stage.download(0, FileData(url))

    def test_fetch_checks_stop_while_streaming(
        self,
        server: ScopedServer,
        tmp_path: Path,
        downloader_class: type[Downloader],
        transport: str,
    ) -> None:
        """A set stop event ends a fetch before the body is whole (curl: before the request)."""
        url = server.add("/big.bin", b"b" * 1_000_000)
        settings = PipelineSettings(chunk_size=1024)
        downloader = downloader_class(settings)
        stop = threading.Event()
        stop.set()
        try:
            with pytest.raises(PipelineInterrupted):
                downloader.fetch(FileData(url), tmp_path / "out.part", stop)
        finally:
            downloader.close()
        part = tmp_path / "out.part"
        if transport == "curl":
            # curl looks at the stop before its first wait for the network too:
            # the request is never sent, so no file is started.
            assert not part.exists()
            assert server.request_count() == 0
        else:
            assert part.stat().st_size < 1_000_000


class TestSecretsStayOut:
    """Query strings and userinfo never reach error messages or logs."""

    @pytest.mark.parametrize("route", FAILING_ROUTES, ids=FAILING_ROUTE_IDS)
    def test_error_messages(
        self,
        server: ScopedServer,
        make_stage: StageFactory,
        caplog: pytest.LogCaptureFixture,
        route: dict[str, Any],
    ) -> None:
        """Neither the error, its StageError message nor the retry log shows the secrets."""
        url = with_secrets(server.add("/x", **route))
        caplog.set_level(logging.DEBUG, logger="download_pipeline_processor")
        error = download_error(make_stage(max_retries=1, timeout=0.2), url)
        texts = [str(error), StageError("download", error).message, caplog.text]
        for text in texts:
            assert "secret" not in text
            assert "SECRET" not in text
            assert "user:" not in text

    @pytest.mark.parametrize("query", ["token=SECRET", "token=my%20SECRET", "token=SECRET\u00e9"])
    def test_connection_error_message(self, make_stage: StageFactory, query: str) -> None:
        """A connection error, which requests words with the URL re-quoted, shows no secret."""
        url = f"http://user:secret@127.0.0.1:{closed_port()}/x?{query}"
        message = str(download_error(make_stage(max_retries=0), url))
        assert message == "connection refused"
        assert "SECRET" not in message
        assert "secret" not in message

    def test_redirect_target_secrets(
        self, server: ScopedServer, make_stage: StageFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A failing redirect target's query string reaches neither the error nor the logs."""
        hop = f"http://127.0.0.1:{closed_port()}/z?sig=HOPSECRET"
        url = server.add("/r", statuses=(302,), redirect_to=hop)
        caplog.set_level(logging.DEBUG, logger="download_pipeline_processor")
        error = download_error(make_stage(max_retries=1), url)
        file_data = FileData(url)
        file_data.fail("download", error)
        assert file_data.error is not None
        for text in (str(error), file_data.error.message, caplog.text):
            assert "HOPSECRET" not in text

    def test_retry_log_names_redacted_url(
        self, server: ScopedServer, make_stage: StageFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Each retry is logged once at INFO with the redacted URL."""
        url = with_secrets(server.add("/x", b"ok", statuses=(500, 200)))
        caplog.set_level(logging.INFO, logger="download_pipeline_processor._download_stage")
        make_stage().download(0, FileData(url))
        (record,) = [r for r in caplog.records if "retrying" in r.getMessage()]
        assert server.url("/x") + "?REDACTED" in record.getMessage()
        assert "SECRET" not in record.getMessage()


class TestKeepsCredentials:
    """requests' rule for credentials headers on a redirect."""

    @pytest.mark.parametrize(
        ("current", "target", "kept"),
        [
            ("http://h/a", "http://h/b", True),
            ("http://h/a", "https://h/b", True),  # upgrade on the default ports
            ("http://h:80/a", "https://h:443/b", True),
            ("https://h/a", "http://h/b", False),  # downgrade: would go out in clear text
            ("http://h:8080/a", "http://h:9090/b", False),
            ("http://h/a", "http://other/b", False),
        ],
    )
    def test_rule(self, current: str, target: str, kept: bool) -> None:
        assert keeps_credentials(current, target) is kept

    def test_utf8_location(self, server: ScopedServer, make_stage: StageFactory) -> None:
        """A Location sent as raw UTF-8 is followed to the same path, not escaped twice."""
        server.add("/caf\u00e9.bin", b"coffee")
        # The server writes headers as Latin-1: these are the UTF-8 bytes of the path.
        raw_location = server.url("/caf\u00e9.bin").encode().decode("latin-1")
        url = server.add("/to-cafe", statuses=(302,), redirect_to=raw_location)
        file_data = FileData(url)
        make_stage().download(0, file_data)
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"coffee"


class TestParseRetryAfter:
    """Reading the Retry-After header."""

    def test_seconds(self) -> None:
        """Delta-seconds are read as a number of seconds."""
        assert parse_retry_after("120") == 120.0
        assert parse_retry_after(" 3 ") == 3.0

    def test_http_date(self) -> None:
        """An HTTP-date gives the seconds until then, never negative."""
        future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 100))
        assert 95 <= (parse_retry_after(future) or 0) <= 101
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0

    @pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "\u00b2"])
    def test_unusable(self, value: str | None) -> None:
        """Missing or unparsable values give None, so the normal backoff applies."""
        assert parse_retry_after(value) is None


class TestSimulatedDownloader:
    """The network-free backend for dry runs."""

    def make_stage(
        self, cache: DownloadCache, stop: threading.Event | None = None, **settings: Any
    ) -> DownloadStage:
        """A DownloadStage over SimulatedDownloader."""
        pipeline_settings = PipelineSettings(simulate_downloads=True, **settings)
        return DownloadStage(
            SimulatedDownloader(pipeline_settings),
            cache,
            pipeline_settings,
            stop or threading.Event(),
        )

    def test_placeholder_written(
        self, cache: DownloadCache, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A placeholder naming the entry (and not its URL, secrets included) is written."""
        monkeypatch.setenv(NO_SLEEP_ENV, "1")
        file_data = FileData("https://u:pw@example.com/a/talk.mp3?token=SECRET", id="7")
        size = self.make_stage(cache).download(2, file_data)
        assert file_data.local_path is not None
        text = file_data.local_path.read_text()
        assert size == len(text.encode())
        assert "simulated download" in text
        assert "id: 7" in text
        assert "name: talk" in text
        assert "SECRET" not in text
        assert "pw" not in text
        assert "pw" not in text
        assert cached_files(cache) == [file_data.local_path]

    def test_no_sleep_env(self, cache: DownloadCache, monkeypatch: pytest.MonkeyPatch) -> None:
        """PIPELINE_NO_SLEEP=1 makes a download with a 5 s simulated delay instant."""
        monkeypatch.setenv(NO_SLEEP_ENV, "1")
        stage = self.make_stage(cache, simulate_delay=(5.0, 5.0))
        start = time.monotonic()
        stage.download(0, FileData("https://example.com/x"))
        assert time.monotonic() - start < 0.5

    def test_delay_honoured_without_env(
        self, cache: DownloadCache, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without PIPELINE_NO_SLEEP the simulated delay is waited."""
        monkeypatch.delenv(NO_SLEEP_ENV, raising=False)
        stage = self.make_stage(cache, simulate_delay=(0.2, 0.2))
        start = time.monotonic()
        stage.download(0, FileData("https://example.com/x"))
        assert time.monotonic() - start >= 0.19

    @pytest.mark.parametrize("value", ["0", "", "no"])
    def test_false_env_values_sleep(
        self, cache: DownloadCache, monkeypatch: pytest.MonkeyPatch, value: str
    ) -> None:
        """PIPELINE_NO_SLEEP set to a false value keeps the delay."""
        monkeypatch.setenv(NO_SLEEP_ENV, value)
        stage = self.make_stage(cache, simulate_delay=(0.1, 0.1))
        start = time.monotonic()
        stage.download(0, FileData("https://example.com/x"))
        assert time.monotonic() - start >= 0.09

    def test_stop_interrupts_delay(
        self, cache: DownloadCache, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A stop during the simulated delay raises PipelineInterrupted at once."""
        monkeypatch.delenv(NO_SLEEP_ENV, raising=False)
        stop = threading.Event()
        stage = self.make_stage(cache, stop, simulate_delay=(10.0, 10.0))
        timer = threading.Timer(0.1, stop.set)
        timer.start()
        start = time.monotonic()
        try:
            with pytest.raises(PipelineInterrupted):
                stage.download(0, FileData("https://example.com/x"))
        finally:
            timer.cancel()
        assert time.monotonic() - start < 1.0
        assert cached_files(cache) == []


class TestProxies:
    """Environment proxies are honoured, as requests honours them."""

    def test_http_proxy_from_environment(
        self, server: ScopedServer, make_stage: StageFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With HTTP_PROXY set, a URL on an unreachable host is fetched through the proxy."""
        server.add("/via-proxy.bin", b"proxied body")
        monkeypatch.setenv("HTTP_PROXY", server.base_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        # .invalid never resolves (RFC 2606): only the proxy can answer.
        file_data = FileData(f"http://files.invalid/{server.prefix.strip('/')}/via-proxy.bin")
        stage = make_stage()
        assert stage.download(0, file_data) == len(b"proxied body")
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"proxied body"
        assert server.request_count("/via-proxy.bin") == 1

    def test_no_proxy_goes_direct(
        self, server: ScopedServer, make_stage: StageFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A host listed in NO_PROXY is fetched directly even when a proxy is set."""
        url = server.add("/direct.bin", b"direct")
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        file_data = FileData(url)
        assert make_stage().download(0, file_data) == 6
