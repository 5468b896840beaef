"""Tests for download.py over every shipped downloader: bodies, retries and backoff, clean-up."""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from download_helpers import (
    FAILING_ROUTE_IDS,
    FAILING_ROUTES,
    StageFactory,
    cached_files,
    closed_port,
    download_error,
)
from download_pipeline_processor._cache import PART_SUFFIX, DownloadCache
from download_pipeline_processor.backend import Downloader, DownloadRequest
from download_pipeline_processor.errors import PermanentDownloadError, TransientDownloadError
from download_pipeline_processor.file_data import FileData
from download_pipeline_processor.settings import PipelineSettings
from download_pipeline_processor.testing import FileServer

#: Every test here runs once per shipped downloader (the ``transport`` fixture).
pytestmark = pytest.mark.usefixtures("transport")


class TestSuccessfulDownloads:
    """Bodies arrive whole, under their final name."""

    def test_large_body_streamed(self, file_server: FileServer, make_stage: StageFactory) -> None:
        """A 5 MB body arrives byte for byte, in many chunks, and its size is returned."""
        body = bytes(range(256)) * (5 * 1024 * 4)
        url = file_server.add("/big.bin", body)
        stage = make_stage(chunk_size=64 * 1024)
        file_data = FileData(url)
        size = stage.download(3, file_data)
        assert size == len(body) == 5 * 1024 * 1024
        assert file_data.local_path is not None
        digest = hashlib.sha256(file_data.local_path.read_bytes()).hexdigest()
        assert digest == hashlib.sha256(body).hexdigest()

    def test_complete_file_has_final_name(
        self, file_server: FileServer, make_stage: StageFactory, cache: DownloadCache
    ) -> None:
        """The complete file sits at its target name in the cache, with no .part left beside it."""
        url = file_server.add("/a/talk.mp3", b"abc")
        file_data = FileData(url)
        make_stage().download(5, file_data)
        assert file_data.local_path == cache.target_for(5, file_data)
        assert not file_data.local_path.name.endswith(PART_SUFFIX)
        assert cached_files(cache) == [file_data.local_path]

    def test_one_get_per_attempt(self, file_server: FileServer, make_stage: StageFactory) -> None:
        """A successful download is exactly one GET (no HEAD first)."""
        url = file_server.add("/x.bin", b"x")
        make_stage().download(0, FileData(url))
        assert [method for method, _, _ in file_server.request_log] == ["GET"]

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

    def test_request_headers(self, file_server: FileServer, make_stage: StageFactory) -> None:
        """Requests carry Accept-Encoding: identity, a User-Agent and the configured headers."""
        url = file_server.add("/x.bin", b"x")
        make_stage(headers={"X-Extra": "1"}).download(0, FileData(url))
        ((_, _, headers),) = file_server.request_log
        assert headers["Accept-Encoding"] == "identity"
        assert headers["User-Agent"].startswith("download-pipeline-processor/")
        assert headers["X-Extra"] == "1"

    def test_empty_body(self, file_server: FileServer, make_stage: StageFactory) -> None:
        """An empty body is a complete, empty file."""
        url = file_server.add("/empty", b"")
        file_data = FileData(url)
        assert make_stage().download(0, file_data) == 0
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b""

    def test_redirect_followed(self, file_server: FileServer, make_stage: StageFactory) -> None:
        """A redirect to another http URL is followed and the target's body kept."""
        target = file_server.add("/new.bin", b"moved here")
        url = file_server.add("/old.bin", statuses=(301,), redirect_to=target)
        file_data = FileData(url)
        make_stage().download(0, file_data)
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"moved here"
        assert file_server.request_count("/old.bin") == file_server.request_count("/new.bin") == 1

    def test_concurrent_downloads(
        self, file_server: FileServer, make_stage: StageFactory, cache: DownloadCache
    ) -> None:
        """One stage serves many threads at once; each file lands whole at its own path."""
        stage = make_stage()
        bodies = {f"/f{i}.bin": bytes([i]) * (10_000 + i) for i in range(16)}
        entries = [FileData(file_server.add(path, body)) for path, body in bodies.items()]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(stage.download, range(len(entries)), entries))
        for entry, body in zip(entries, bodies.values()):
            assert entry.local_path is not None
            assert entry.local_path.read_bytes() == body
        assert len(cached_files(cache)) == 16


class TestRequestSeam:
    """Every downloader takes one request per file, built once and handed to each attempt."""

    def test_one_request_across_attempts(
        self, file_server: FileServer, make_stage: StageFactory
    ) -> None:
        """Retries get the same request (URL quoted, headers merged once); each its own deadline."""
        url = file_server.add("/a.bin", b"third time", statuses=(500, 503, 200)) + "?pick=a|b"
        stage = make_stage(headers={"X-Run": "run"}, max_retries=2, file_timeout=30.0)
        fetch = stage.fetch
        seen: list[tuple[DownloadRequest, float | None, bool]] = []

        def recording(request: DownloadRequest) -> int:
            # Records what each attempt was handed, then makes the real attempt.
            seen.append((request, request.stop.deadline, request.stop.is_set()))
            return fetch(request)

        stage.fetch = recording  # type: ignore[method-assign]
        entry = FileData(url, additional_fields={"headers": {"X-Entry": "entry", "x-run": "own"}})
        assert stage.download(0, entry) == len(b"third time")
        assert len(seen) == 3
        requests = {id(request) for request, _, _ in seen}
        assert len(requests) == 1
        request = seen[0][0]
        assert request.url == url.replace("|", "%7C")
        assert request.own_headers
        assert request.headers["X-Entry"] == "entry"
        assert request.headers["x-run"] == "own"  # the entry's over the run's, by name
        assert "X-Run" not in request.headers
        assert request.headers["Accept-Encoding"] == "identity"
        deadlines = [deadline for _, deadline, _ in seen]
        assert all(deadline is not None for deadline in deadlines)
        assert deadlines == sorted(set(deadlines))  # a new clock per attempt
        assert not any(stopped for _, _, stopped in seen)
        assert [path for _, path, _ in file_server.request_log] == ["/a.bin?pick=a%7Cb"] * 3
        assert all(headers["X-Entry"] == "entry" for _, _, headers in file_server.request_log)
        assert stage.bytes_in_flight() == 0  # the stage let the finished file's request go


class TestRetries:
    """Transient failures are retried, permanent ones are not."""

    def test_500_then_200(self, file_server: FileServer, make_stage: StageFactory) -> None:
        """A 500 followed by a 200 succeeds after two requests."""
        url = file_server.add("/x.bin", b"ok", statuses=(500, 200))
        file_data = FileData(url)
        make_stage().download(0, file_data)
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"ok"
        assert file_server.request_count("/x.bin") == 2

    @pytest.mark.parametrize("max_retries", [0, 2])
    def test_always_500(
        self, file_server: FileServer, make_stage: StageFactory, max_retries: int
    ) -> None:
        """A file that always answers 500 fails after max_retries + 1 requests."""
        url = file_server.add("/x.bin", statuses=(500,))
        error = download_error(make_stage(max_retries=max_retries), url)
        assert isinstance(error, TransientDownloadError)
        assert "HTTP 500" in str(error)
        assert file_server.request_count("/x.bin") == max_retries + 1

    @pytest.mark.parametrize("status", [404, 403, 400, 410])
    def test_client_errors_fail_at_once(
        self, file_server: FileServer, make_stage: StageFactory, status: int
    ) -> None:
        """A 4xx other than 408 and 429 is requested exactly once and is permanent."""
        url = file_server.add("/x.bin", statuses=(status, 200))
        error = download_error(make_stage(max_retries=3), url)
        assert isinstance(error, PermanentDownloadError)
        assert f"HTTP {status}" in str(error)
        assert file_server.request_count("/x.bin") == 1

    def test_unknown_path_is_404(self, file_server: FileServer, make_stage: StageFactory) -> None:
        """A path the server does not know is one request and a permanent failure."""
        error = download_error(make_stage(), file_server.url("/missing"))
        assert isinstance(error, PermanentDownloadError)
        assert file_server.request_count("/missing") == 1

    @pytest.mark.parametrize("status", [408, 429, 502, 503])
    def test_retryable_statuses(
        self, file_server: FileServer, make_stage: StageFactory, status: int
    ) -> None:
        """408, 429 and 5xx are retried and the file then succeeds."""
        url = file_server.add("/x.bin", b"ok", statuses=(status, 200))
        make_stage().download(0, FileData(url))
        assert file_server.request_count("/x.bin") == 2

    def test_exponential_backoff(self, file_server: FileServer, make_stage: StageFactory) -> None:
        """Waits grow from retry_backoff: 0.1 s then 0.2 s before the third attempt."""
        url = file_server.add("/x.bin", b"ok", statuses=(500, 500, 200))
        start = time.monotonic()
        make_stage(retry_backoff=0.1).download(0, FileData(url))
        elapsed = time.monotonic() - start
        assert 0.28 <= elapsed < 1.5
        assert file_server.request_count("/x.bin") == 3

    def test_backoff_capped(self, file_server: FileServer, make_stage: StageFactory) -> None:
        """retry_backoff_max caps the exponential wait."""
        url = file_server.add("/x.bin", b"ok", statuses=(500, 200))
        start = time.monotonic()
        make_stage(retry_backoff=30, retry_backoff_max=0.1).download(0, FileData(url))
        assert time.monotonic() - start < 1.5

    def test_retry_after_honoured(self, file_server: FileServer, make_stage: StageFactory) -> None:
        """A 503 with Retry-After: 1 makes the next attempt wait about a second."""
        url = file_server.add("/x.bin", b"ok", statuses=(503, 200), headers={"Retry-After": "1"})
        start = time.monotonic()
        make_stage(retry_backoff=0).download(0, FileData(url))
        elapsed = time.monotonic() - start
        assert 0.9 <= elapsed < 2.0
        assert file_server.request_count("/x.bin") == 2

    def test_retry_after_capped(self, file_server: FileServer, make_stage: StageFactory) -> None:
        """A Retry-After longer than retry_backoff_max waits only retry_backoff_max."""
        url = file_server.add("/x.bin", b"ok", statuses=(429, 200), headers={"Retry-After": "3600"})
        start = time.monotonic()
        make_stage(retry_backoff_max=0.2).download(0, FileData(url))
        elapsed = time.monotonic() - start
        assert 0.15 <= elapsed < 1.5

    def test_truncated_body_retried_then_fails(
        self, file_server: FileServer, make_stage: StageFactory, cache: DownloadCache
    ) -> None:
        """A body shorter than its Content-Length is retried, then fails as truncated."""
        url = file_server.add("/x.bin", b"x" * 100_000, truncate_to=1000)
        error = download_error(make_stage(max_retries=2), url)
        assert isinstance(error, TransientDownloadError)
        assert "truncated" in str(error)
        assert "100000" in str(error)
        assert file_server.request_count("/x.bin") == 3
        assert cached_files(cache) == []

    def test_timeout_is_transient(self, file_server: FileServer, make_stage: StageFactory) -> None:
        """A server slower than the timeout fails transiently, and the timeout is per attempt."""
        url = file_server.add("/slow.bin", b"x", delay=0.6)
        start = time.monotonic()
        error = download_error(make_stage(timeout=0.2, max_retries=1), url)
        elapsed = time.monotonic() - start
        assert isinstance(error, TransientDownloadError)
        assert str(error) == "timed out"  # the same words on every downloader
        assert file_server.request_count("/slow.bin") == 2
        assert elapsed < 1.0

    def test_connection_refused_is_transient(self, make_stage: StageFactory) -> None:
        """Nothing listening on the port is a transient connection error."""
        url = f"http://127.0.0.1:{closed_port()}/x.bin"
        error = download_error(make_stage(max_retries=1), url)
        assert isinstance(error, TransientDownloadError)
        assert str(error) == "connection refused"  # the same words on every downloader


class TestCleanup:
    """No partial file survives a failure."""

    @pytest.mark.parametrize("route", FAILING_ROUTES, ids=FAILING_ROUTE_IDS)
    def test_no_part_file_after_failure(
        self,
        file_server: FileServer,
        make_stage: StageFactory,
        cache: DownloadCache,
        route: dict[str, Any],
    ) -> None:
        """After any failed download the cache holds no file, .part or otherwise."""
        url = file_server.add("/x.bin", **route)
        file_data = FileData(url)
        download_error(make_stage(max_retries=1, timeout=0.2), url)
        assert cached_files(cache) == []
        assert file_data.local_path is None

    def test_failed_file_has_no_local_path(
        self, file_server: FileServer, make_stage: StageFactory
    ) -> None:
        """A failed download leaves file_data.local_path unset."""
        file_data = FileData(file_server.url("/missing"))
        with pytest.raises(PermanentDownloadError):
            make_stage().download(0, file_data)
        assert file_data.local_path is None
