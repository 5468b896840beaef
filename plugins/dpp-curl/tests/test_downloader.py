"""The curl downloader in a run: fetch_many on one thread, HTTP/2 multiplexed, stops, threads."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from download_pipeline_processor import BaseProcessor
from download_pipeline_processor.errors import PermanentDownloadError
from download_pipeline_processor.file_data import FileData
from download_pipeline_processor.pipeline import ProcessingPipeline
from download_pipeline_processor.settings import PipelineSettings
from download_pipeline_processor.sink import BodyWriter
from download_pipeline_processor.testing import (
    CollectingPostProcessor,
    FileServer,
    download_request,
    leftover_files,
    make_plugin_manager,
    run_pipeline,
)
from dpp_curl import CurlDownloader, plugin

if TYPE_CHECKING:
    from conftest import H2Server


class Digest(BaseProcessor):
    """Returns the sha256 of the downloaded file."""

    def process(self, file_data: FileData) -> Any:
        assert file_data.local_path is not None
        return hashlib.sha256(file_data.local_path.read_bytes()).hexdigest()


def run_curl(entries: list[dict[str, Any]], **settings: Any) -> Any:
    """Run the pipeline over ``entries`` with ``--downloader curl`` and the Digest processor."""
    return run_pipeline(entries, Digest, plugins=[plugin], downloader="curl", **settings)


def thread_count() -> int:
    """Threads of this process, native ones (libcurl's) included."""
    return len(list(Path("/proc/self/task").iterdir()))


class TestFetchMany:
    """A run drives every file through one multi handle."""

    def test_many_files_arrive_whole(self, file_server: FileServer, tmp_path: Path) -> None:
        """60 files of many sizes, 8 at once, each arrives byte for byte; the cache ends empty."""
        bodies = {f"/f{i}.bin": os.urandom(i * 997) for i in range(60)}
        entries = [{"id": p, "url": file_server.add(p, body)} for p, body in bodies.items()]
        outcome = run_curl(entries, download_workers=8, download_cache=tmp_path / "cache")
        assert outcome.exit_code == 0
        digests = {fd.id: result for result, fd in outcome.outcomes}
        assert digests == {p: hashlib.sha256(b).hexdigest() for p, b in bodies.items()}
        assert leftover_files(tmp_path / "cache") == []

    def test_runs_on_the_loop(
        self, file_server: FileServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """First attempts go through fetch_many, never through fetch()."""
        calls: list[str] = []
        original = CurlDownloader.fetch

        def counting_fetch(self: CurlDownloader, *args: Any) -> int:
            # Counting calls needs a wrapper: nothing else tells which path ran.
            calls.append("fetch")
            return original(self, *args)

        monkeypatch.setattr(CurlDownloader, "fetch", counting_fetch)
        entries = [{"url": file_server.add(f"/{i}", b"x" * i)} for i in range(10)]
        outcome = run_curl(entries)
        assert outcome.exit_code == 0
        assert calls == []

    def test_failures_are_retried_or_reported(self, file_server: FileServer) -> None:
        """A 503 then 200 succeeds on the retry; a 404 fails once, with the status as its error."""
        flaky = file_server.add("/flaky", b"ok", statuses=(503, 200))
        missing = file_server.url("/missing")
        outcome = run_curl([{"id": "flaky", "url": flaky}, {"id": "missing", "url": missing}])
        assert outcome.exit_code == 1
        (failure,) = outcome.failures
        assert failure.id == "missing"
        assert isinstance(failure.error.error, PermanentDownloadError)
        assert str(failure.error.error) == "HTTP 404 Not Found"
        assert file_server.request_count("/flaky") == 2
        assert file_server.request_count("/missing") == 1

    def test_bad_url_fails_only_its_file(self, file_server: FileServer) -> None:
        """A URL with a port out of range fails at once; the other files are downloaded."""
        good = file_server.add("/good", b"good")
        outcome = run_curl([{"id": "bad", "url": "http://127.0.0.1:99999/x"}, {"url": good}])
        assert [fd.id for fd in outcome.failures] == ["bad"]
        assert len(outcome.results) == 1

    def test_stop_ends_transfers_in_flight(self, file_server: FileServer, tmp_path: Path) -> None:
        """A stop during slow downloads ends the run within a second, cache empty, exit 130."""
        entries = [{"url": file_server.add(f"/slow{i}", b"x", delay=5)} for i in range(4)]
        collector = CollectingPostProcessor()
        pipeline = ProcessingPipeline(
            Digest,
            collector,
            plugin_manager=make_plugin_manager(plugin),
            downloader="curl",
            download_cache=tmp_path / "cache",
            retry_backoff=0,
        )
        threading.Timer(0.3, pipeline.stop, args=(130,)).start()
        start = time.monotonic()
        assert pipeline.run(entries) == 130
        assert time.monotonic() - start < 3  # stop_grace is 2 s; the delay is 5 s
        assert leftover_files(tmp_path / "cache") == []

    def test_no_thread_per_transfer(self, file_server: FileServer) -> None:
        """64 downloads at once against a slow server add no thread per download."""
        entries = [{"url": file_server.add(f"/d{i}", b"x", delay=0.3)} for i in range(64)]
        before = thread_count()
        peak: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.02):
                peak.append(thread_count())

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            outcome = run_curl(entries, download_workers=64)
        finally:
            done.set()
            sampler.join()
        assert outcome.exit_code == 0
        # The file server's own threads (one per connection) are in this process too.
        server_threads = 64
        assert max(peak) - before - server_threads < 12


class TestWritingThreads:
    """Large bodies are written and hashed beside the loop, whole and checked."""

    def test_bodies_end_on_the_writing_threads(
        self, file_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Bodies longer than a block are written off the loop, their last block too."""
        bodies = {f"/w{i}.bin": os.urandom(650_000 + i * 50_000) for i in range(12)}
        entries = [
            {"id": p, "url": file_server.add(p, body), "sha256": hashlib.sha256(body).hexdigest()}
            for p, body in bodies.items()
        ]
        writing: set[str] = set()
        write_many = BodyWriter.write_many

        def noting(writer: BodyWriter, chunks: Any) -> None:
            # A spy on the real writer: which thread writes (nothing is replaced).
            writing.add(threading.current_thread().name)
            write_many(writer, chunks)

        monkeypatch.setattr(BodyWriter, "write_many", noting)
        outcome = run_curl(
            entries, download_workers=6, chunk_size=300_000, download_cache=tmp_path / "cache"
        )
        assert outcome.exit_code == 0, outcome.failures
        digests = {fd.id: result for result, fd in outcome.outcomes}
        assert digests == {p: hashlib.sha256(b).hexdigest() for p, b in bodies.items()}
        assert writing
        assert all(name.startswith("dpp-curl-writes-") for name in writing), writing
        assert leftover_files(tmp_path / "cache") == []

    def test_stop_while_bodies_are_written(
        self,
        file_server: FileServer,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A stop with bodies still on the writing threads ends the run, no file left behind."""
        # Under two blocks: a whole body fits its lane while the writes are held.
        entries = [{"url": file_server.add(f"/s{i}.bin", os.urandom(120_000))} for i in range(8)]
        slow_disk = threading.Event()
        write_many = BodyWriter.write_many

        def held(writer: BodyWriter, chunks: Any) -> None:
            # The real write, held back until the stop: every body is still being written.
            slow_disk.wait(10)
            write_many(writer, chunks)

        monkeypatch.setattr(BodyWriter, "write_many", held)

        def stop() -> None:
            pipeline.stop(130)
            time.sleep(0.2)
            slow_disk.set()

        pipeline = ProcessingPipeline(
            Digest,
            plugin_manager=make_plugin_manager(plugin),
            downloader="curl",
            download_workers=8,
            chunk_size=64 * 1024,
            download_cache=tmp_path / "cache",
            retry_backoff=0,
        )
        threading.Timer(0.5, stop).start()
        assert pipeline.run(entries) == 130
        messages = [record.getMessage() for record in caplog.records]
        assert not [text for text in messages if "downloader failed" in text], messages
        ended = [text for text in messages if " in download: " in text]
        assert ended
        assert all("run stopped during the download" in text for text in ended), ended
        assert leftover_files(tmp_path / "cache") == []


class TestHttp2:
    """HTTP/2 is used when the server offers it, and its streams share one connection."""

    def test_multiplexed_on_one_connection(
        self, h2_server: H2Server, ca_bundle: Path, tmp_path: Path
    ) -> None:
        """40 files, 16 at once, all come over HTTP/2 on a single connection."""
        bodies = {f"/h{i}.bin": os.urandom(5000 + i) for i in range(40)}
        entries = [{"id": p, "url": h2_server.add(p, b)} for p, b in bodies.items()]
        outcome = run_curl(entries, download_workers=16)
        assert outcome.exit_code == 0
        digests = {fd.id: result for result, fd in outcome.outcomes}
        assert digests == {p: hashlib.sha256(b).hexdigest() for p, b in bodies.items()}
        assert {version for _, version in h2_server.requests} == {"2"}
        assert len(h2_server.connections) == 1

    def test_fetch_over_http2(self, h2_server: H2Server, ca_bundle: Path, tmp_path: Path) -> None:
        """A single blocking attempt speaks HTTP/2 too, and a 404 reads as over HTTP/1.1."""
        url = h2_server.add("/one.bin", b"h2 body")
        downloader = CurlDownloader(PipelineSettings())
        try:
            size = downloader.fetch(download_request(url, tmp_path / "one"))
            with pytest.raises(PermanentDownloadError, match=r"^HTTP 404 Not Found$"):
                downloader.fetch(download_request(h2_server.base_url + "/nope", tmp_path / "nope"))
        finally:
            downloader.close()
        assert size == 7
        assert (tmp_path / "one").read_bytes() == b"h2 body"
        assert [version for _, version in h2_server.requests] == ["2", "2"]
