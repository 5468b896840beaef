"""StopSignal (_stop_signal.py): a stop request and the exit code it asks for."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading

import pytest

from download_pipeline_processor._stop_signal import (
    StopSignal,
    is_closed_stdout,
    stdout_reader_gone,
)


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


class TestStdoutReaderGone:
    """Telling a reader that closed standard output from any other broken pipe."""

    @staticmethod
    def _pipe_as_stdout(monkeypatch: pytest.MonkeyPatch) -> tuple[int, io.TextIOWrapper]:
        """Standard output replaced by the writing end of a real pipe; its reading end.

        Called in the test itself: pytest sets its own capture back after a
        fixture's set-up.
        """
        read_end, write_end = os.pipe()
        writer = io.TextIOWrapper(io.FileIO(write_end, "w"))
        monkeypatch.setattr(sys, "stdout", writer)
        return read_end, writer

    def test_open_pipe(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """While the reader holds the pipe open, it is not gone."""
        read_end, writer = self._pipe_as_stdout(monkeypatch)
        try:
            assert not stdout_reader_gone()
            assert not is_closed_stdout(BrokenPipeError())
        finally:
            os.close(read_end)
            writer.close()

    def test_closed_pipe(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Once the reader closed its end, a broken pipe is the closed standard output."""
        read_end, writer = self._pipe_as_stdout(monkeypatch)
        os.close(read_end)
        try:
            assert stdout_reader_gone()
            assert is_closed_stdout(BrokenPipeError())
            assert not is_closed_stdout(ConnectionResetError())
        finally:
            with contextlib.suppress(BrokenPipeError):
                writer.close()

    def test_no_descriptor(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Captured output without a descriptor (a test runner's) is never gone."""
        monkeypatch.setattr(sys, "stdout", io.StringIO())
        assert not stdout_reader_gone()
