"""A request to stop a run gracefully, and the exit code it asks for."""

from __future__ import annotations

import threading


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
