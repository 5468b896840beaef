"""The flush deadline that bounds what a killed run's post-processors lose."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import pytest

from download_pipeline_processor.flush_timer import FlushTimer


class Buffer:
    """A buffer owning a timer, as a post-processor does; records when it was flushed."""

    def __init__(self, interval: float, fail_first: int = 0) -> None:
        self.items: list[int] = []
        self.written: list[int] = []
        self.flush_threads: list[str] = []
        self.fail_first = fail_first
        self.timer = FlushTimer(self.flush, interval, name="test")

    def add(self, item: int) -> None:
        with self.timer.lock:
            self.items.append(item)
            self.timer.pending()

    def flush(self) -> None:
        with self.timer.lock:
            self.flush_threads.append(threading.current_thread().name)
            if self.fail_first:
                self.fail_first -= 1
                raise OSError("disk busy")
            self.written += self.items
            self.items.clear()
            self.timer.flushed()


def wait_until(condition: Callable[[], bool], seconds: float = 2.0) -> None:
    """Poll ``condition()`` until it is true or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


class TestFlushTimer:
    def test_flushes_from_its_own_thread(self) -> None:
        """Pending records are flushed by the timer's thread with no further call."""
        buffer = Buffer(0.05)
        try:
            buffer.add(1)
            buffer.add(2)
            wait_until(lambda: buffer.written == [1, 2])
            assert buffer.written == [1, 2]
            assert buffer.flush_threads == ["test-flush"]
        finally:
            buffer.timer.close()

    def test_nothing_pending_no_flush(self) -> None:
        """Without a pending record the timer never flushes (an idle run costs nothing)."""
        buffer = Buffer(0.01)
        buffer.add(1)
        wait_until(lambda: buffer.written == [1])
        time.sleep(0.1)
        buffer.timer.close()
        assert buffer.flush_threads == ["test-flush"]

    def test_failed_flush_is_logged_and_retried(self, caplog: pytest.LogCaptureFixture) -> None:
        """A failing flush is logged once and tried again each interval until it works."""
        buffer = Buffer(0.02, fail_first=3)
        with caplog.at_level(logging.WARNING, logger="download_pipeline_processor.flush_timer"):
            buffer.add(1)
            wait_until(lambda: buffer.written == [1])
        buffer.timer.close()
        assert buffer.written == [1]
        assert len(buffer.flush_threads) == 4
        # Logged once for the run of failures, not once per interval.
        assert caplog.text.count("test: timed flush failed") == 1
        assert "OSError: disk busy" in caplog.text

    def test_close_ends_the_thread_without_flushing(self) -> None:
        """close() stops the thread at once and leaves the last flush to the owner."""
        buffer = Buffer(60)
        buffer.add(1)
        (thread,) = [t for t in threading.enumerate() if t.name == "test-flush"]
        buffer.timer.close()
        assert not thread.is_alive()
        assert buffer.written == []
        buffer.add(2)  # after close: no new thread, no error
        assert not [t for t in threading.enumerate() if t.name == "test-flush"]

    @pytest.mark.parametrize("interval", [0, -1.0])
    def test_interval_must_be_positive(self, interval: float) -> None:
        """An interval of zero or less is refused."""
        with pytest.raises(ValueError, match="more than 0"):
            FlushTimer(lambda: None, interval, name="test")
