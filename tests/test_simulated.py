"""Tests for builtins/simulated.py: the network-free downloader of dry runs."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from download_helpers import cached_files
from download_pipeline_processor._cache import DownloadCache
from download_pipeline_processor._download_stage import DownloadStage
from download_pipeline_processor.builtins._simulated import SimulatedDownloader
from download_pipeline_processor.errors import PipelineInterrupted
from download_pipeline_processor.file_data import FileData
from download_pipeline_processor.settings import NO_SLEEP_ENV, PipelineSettings


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
        """PIPELINE_NO_SLEEP=1 makes the default simulated delay none: downloads are instant."""
        monkeypatch.setenv(NO_SLEEP_ENV, "1")
        stage = self.make_stage(cache)
        assert stage.settings.simulate_delay == (0.0, 0.0)
        start = time.monotonic()
        stage.download(0, FileData("https://example.com/x"))
        assert time.monotonic() - start < 0.5

    def test_no_sleep_env_read_by_the_settings(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The settings read PIPELINE_NO_SLEEP (as simulate_delay's default); a delay given
        in code is kept, and the downloader waits what the settings say."""
        monkeypatch.setenv(NO_SLEEP_ENV, "1")
        assert PipelineSettings().simulate_delay == (0.0, 0.0)
        explicit = PipelineSettings(simulate_delay=(0.2, 0.2))
        assert SimulatedDownloader(explicit).delay == (0.2, 0.2)
        monkeypatch.delenv(NO_SLEEP_ENV)
        assert PipelineSettings().simulate_delay == (1.0, 3.0)

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
