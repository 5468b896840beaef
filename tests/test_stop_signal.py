"""StopSignal (_stop_signal.py): a stop request and the exit code it asks for."""

from __future__ import annotations

import threading

from download_pipeline_processor._stop_signal import StopSignal


class TestStopSignal:
    """The first stop request decides the exit code; everyone waiting wakes up."""

    def test_unset_until_stopped(self) -> None:
        """A fresh signal is not set and carries no exit code."""
        stop = StopSignal()
        assert not stop.is_set()
        assert not stop.wait(0)
        assert stop.code is None

    def test_first_code_kept(self) -> None:
        """A second request (say SIGINT after SIGTERM) keeps the first exit code."""
        stop = StopSignal()
        stop.stop(143)
        stop.stop(130)
        assert stop.is_set()
        assert stop.event.is_set()
        assert stop.code == 143

    def test_default_code_is_interrupt(self) -> None:
        """stop() without a code asks for 130, as Ctrl-C does."""
        stop = StopSignal()
        stop.stop()
        assert stop.code == 130

    def test_wait_wakes_at_the_stop(self) -> None:
        """A thread waiting on the signal wakes up when another thread stops the run."""
        stop = StopSignal()
        woke: list[bool] = []
        waiter = threading.Thread(target=lambda: woke.append(stop.wait(10)))
        waiter.start()
        stop.stop(143)
        waiter.join(10)
        assert woke == [True]
