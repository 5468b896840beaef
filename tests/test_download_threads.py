"""The download stage's threads on every shipped downloader: stopping, and pinned workers."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from download_helpers import StageFactory, cached_files
from download_pipeline_processor import affinity
from download_pipeline_processor._cache import DownloadCache
from download_pipeline_processor.backend import Downloader
from download_pipeline_processor.errors import PipelineInterrupted, TransientDownloadError
from download_pipeline_processor.file_data import FileData
from download_pipeline_processor.settings import PipelineSettings
from download_pipeline_processor.testing import CLOSE, Answer, FileServer, Wait, download_request

#: Every test here runs once per shipped downloader (the ``transport`` fixture).
pytestmark = pytest.mark.usefixtures("transport")


class TestStopping:
    """A stop request ends a download quickly with PipelineInterrupted."""

    def test_stop_before_start(
        self, file_server: FileServer, make_stage: StageFactory, cache: DownloadCache
    ) -> None:
        """With the stop event already set no request is made."""
        url = file_server.add("/x.bin", b"x")
        stop = threading.Event()
        stop.set()
        with pytest.raises(PipelineInterrupted):
            make_stage(stop_event=stop).download(0, FileData(url))
        assert file_server.request_count() == 0
        assert cached_files(cache) == []

    def test_stop_during_backoff(
        self, file_server: FileServer, make_stage: StageFactory, cache: DownloadCache
    ) -> None:
        """A stop during a long backoff wakes the stage at once instead of sleeping it out."""
        url = file_server.add("/x.bin", statuses=(500,))
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
        assert file_server.request_count("/x.bin") == 1
        assert cached_files(cache) == []

    def test_stop_during_failing_attempt(
        self, file_server: FileServer, make_stage: StageFactory, transport: str
    ) -> None:
        """A stop while an attempt is failing reports an interrupt, not that attempt's error."""
        url = file_server.add("/slow.bin", b"x", delay=0.5)
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
        assert file_server.request_count("/slow.bin") == 1

    def test_exhausted_retries_still_report_the_error(
        self, file_server: FileServer, make_stage: StageFactory
    ) -> None:
        """When every attempt failed, a stop set afterwards does not hide the real error."""
        url = file_server.add("/x.bin", statuses=(500,))
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
        file_server: FileServer,
        tmp_path: Path,
        downloader_class: type[Downloader],
        transport: str,
    ) -> None:
        """A set stop event ends a fetch before the body is whole (curl: before the request)."""
        url = file_server.add("/big.bin", b"b" * 1_000_000)
        settings = PipelineSettings(chunk_size=1024)
        downloader = downloader_class(settings)
        stop = threading.Event()
        stop.set()
        try:
            with pytest.raises(PipelineInterrupted):
                downloader.fetch(download_request(url, tmp_path / "out.part", settings, stop))
        finally:
            downloader.close()
        part = tmp_path / "out.part"
        if transport == "curl":
            # curl looks at the stop before its first wait for the network too:
            # the request is never sent, so no file is started.
            assert not part.exists()
            assert file_server.request_count() == 0
        else:
            assert part.stat().st_size < 1_000_000


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
        self,
        file_server: FileServer,
        make_stage: StageFactory,
        length: int,
        announce: bool,
        widens: bool,
    ) -> None:
        """During a large body the worker may use every core; a small one keeps it pinned."""
        everything = frozenset(os.sched_getaffinity(0))
        if len(everything) < 2:
            pytest.skip("pinning is only observable with two cores or more")
        cpu = min(everything)
        go = threading.Event()
        first = 2 * affinity.WIDEN_ABOVE if length > affinity.WIDEN_ABOVE else 1000
        # One answer: ``first`` bytes of the body, the rest once ``go`` is set.
        # Without ``announce`` there is no Content-Length: the body ends at the close.
        framing = f"Content-Length: {length}\r\n" if announce else ""
        head = f"HTTP/1.1 200 OK\r\n{framing}Connection: close\r\n\r\n".encode()
        paused = Answer(head + b"a" * first, Wait(go), b"a" * (length - first), CLOSE)
        url = file_server.script("/paused.bin", paused)
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
        assert during == expected
        assert after == [frozenset({cpu})]
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"a" * length
