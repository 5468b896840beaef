"""A request to stop a run gracefully, and the exit code it asks for."""

from __future__ import annotations

import sys
import threading

#: The exit code of a run whose standard output's reader went away (``| head``):
#: 128 + SIGPIPE, what a shell reports for a program that signal ended.
EXIT_CLOSED_OUTPUT = 141


class StopSignal:
    """Set once to stop a run; remembers the exit code of the first request.

    :class:`~.pipeline.ProcessingPipeline` makes one and hands it to each
    run; every thread of the run watches it.  :attr:`event` is the plain
    :class:`threading.Event` that downloaders and the retry loop wait on.
    """

    def __init__(self) -> None:
        #: Set once a stop was requested (what backends get as ``should_stop``).
        self.event = threading.Event()
        self._code: int | None = None

    def stop(self, code: int = 130) -> None:
        """Request a stop with exit ``code``; a later request keeps the first code.

        Safe from a signal handler: it takes no lock a signal could interrupt.
        """
        if self._code is None:
            self._code = code
        self.event.set()

    def is_set(self) -> bool:
        """Whether a stop was requested."""
        return self.event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for a stop; whether one was requested."""
        return self.event.wait(timeout)

    @property
    def code(self) -> int | None:
        """The exit code of the first request, or None while no stop was requested."""
        return self._code


def stdout_reader_gone() -> bool:
    """Whether standard output is a pipe whose reader has closed it (``| head``).

    poll() reports an error on the writing end of a pipe with no reader left;
    a file, a terminal or an open pipe reports none.  False where poll() is
    missing or standard output has no descriptor (a test's captured output).
    """
    import select

    if not hasattr(select, "poll"):
        return False
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return False
    poller = select.poll()
    poller.register(descriptor, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def is_closed_stdout(error: BaseException) -> bool:
    """Whether ``error`` comes from writing to standard output after its reader left.

    Such a write is no failure of the file being written about: the reader
    wants nothing more, and the run ends quietly (:data:`EXIT_CLOSED_OUTPUT`).
    A broken pipe of a plugin's own (a socket, a child process) is a failure.
    """
    return isinstance(error, BrokenPipeError) and stdout_reader_gone()


__all__ = ["EXIT_CLOSED_OUTPUT", "StopSignal", "is_closed_stdout", "stdout_reader_gone"]
