"""The downloader seam: the request's stop flag, and downloaders of the old signature."""

from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from download_pipeline_processor.backend import Downloader, DownloadRequest, StopFlag, fetch_of
from download_pipeline_processor.errors import PipelineInterrupted, TransientDownloadError
from download_pipeline_processor.file_data import FileData
from download_pipeline_processor.settings import PipelineSettings
from download_pipeline_processor.testing import download_request


class TestStopFlag:
    """A stop flag is set by the run's stop or by the attempt's deadline, and says which."""

    def test_clear_without_deadline(self) -> None:
        """No stop and no deadline: not set, no time limit, wait times out False."""
        flag = StopFlag(threading.Event())
        assert not flag.is_set()
        assert flag.time_left() is None
        assert flag.wait(0.01) is False

    def test_run_stop_sets_it(self) -> None:
        """The run's stop sets the flag at once; its error is the interrupt."""
        run = threading.Event()
        flag = StopFlag(run, file_timeout=60.0)
        flag.deadline = time.monotonic() + 60
        run.set()
        assert flag.is_set()
        assert flag.stopping
        assert isinstance(flag.error(), PipelineInterrupted)

    def test_deadline_sets_it_and_ends_a_wait(self) -> None:
        """Past its deadline the flag is set, a wait ends then, and the error is the timeout."""
        flag = StopFlag(threading.Event(), file_timeout=0.05)
        flag.deadline = time.monotonic() + 0.05
        assert not flag.is_set()
        started = time.monotonic()
        assert flag.wait(10) is True
        assert time.monotonic() - started < 5
        assert flag.is_set()
        assert not flag.stopping
        assert flag.time_left() == 0.0
        error = flag.error()
        assert isinstance(error, TransientDownloadError)
        assert str(error) == "file timeout: attempt took longer than 0.05 s"

    def test_not_an_event(self) -> None:
        """The flag is its own small class, not a threading.Event with other meanings."""
        assert not isinstance(StopFlag(threading.Event()), threading.Event)


class TestRequest:
    """A request is worked out once per file: the URL quoted, the headers merged."""

    def test_url_and_headers_worked_out_once(self, tmp_path: Path) -> None:
        """The wire URL and merged headers are on the request; the entry's win by name."""
        entry = FileData(
            "http://127.0.0.1:9/a b\u00e9.bin?x=1#part".replace(" ", "%20"),
            additional_fields={"headers": {"user-agent": "mine"}},
        )
        request = download_request(entry, tmp_path / "a.part", PipelineSettings(timeout=3.0))
        assert request.url == "http://127.0.0.1:9/a%20b%C3%A9.bin?x=1"
        assert request.headers["user-agent"] == "mine"
        assert "User-Agent" not in request.headers
        assert request.headers["Accept-Encoding"] == "identity"
        assert request.own_headers
        assert request.destination == str(tmp_path / "a.part")
        assert request.timeout == 3.0

    def test_shared_headers_without_own(self, tmp_path: Path) -> None:
        """An entry without headers shares the run's dict: nothing is merged for it."""
        run_headers = {"Accept-Encoding": "identity"}
        request = DownloadRequest.for_file(
            FileData("http://127.0.0.1:9/a"),
            str(tmp_path / "a.part"),
            PipelineSettings(),
            threading.Event(),
            run_headers=run_headers,
        )
        assert request.headers is run_headers
        assert not request.own_headers


class TestOldSignature:
    """A downloader written for fetch(file_data, destination, should_stop) is adapted once."""

    def test_new_signature_taken_as_is(self) -> None:
        """fetch(request) is called directly: no adapter, no warning."""

        class New(Downloader):
            def fetch(self, request: DownloadRequest) -> int:
                return 0

        downloader = New(PipelineSettings())
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert fetch_of(downloader) == downloader.fetch

    def test_old_signature_adapted_with_one_warning(self, tmp_path: Path) -> None:
        """The old fetch gets the entry, the .part name as a Path and the stop flag."""
        seen: list[tuple[Any, ...]] = []

        class Old(Downloader):
            def fetch(self, file_data: FileData, destination: Path, should_stop: Any) -> int:
                seen.append((file_data, destination, should_stop))
                return 7

        with pytest.warns(DeprecationWarning, match=r"Old\.fetch\(file_data, destination"):
            fetch = fetch_of(Old(PipelineSettings()))
        request = download_request("http://127.0.0.1:9/a", tmp_path / "a.part")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # warned once, when adapted: not per call
            assert fetch(request) == 7
            assert fetch(request) == 7
        assert seen == [(request.file_data, tmp_path / "a.part", request.stop)] * 2
