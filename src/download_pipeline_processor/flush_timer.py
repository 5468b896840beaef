"""A deadline for buffered output: flushed a bounded time after it was buffered.

A post-processor that batches its writes for speed (lines in a file buffer,
rows in a transaction) loses the unwritten batch when the process is killed.
Flushing only when the next file arrives bounds nothing: the next file may
never come, or come minutes later, while the finished ones sit in memory.
:class:`FlushTimer` runs the flush from a small daemon thread once the oldest
unflushed record is ``interval`` seconds old, so what a ``kill -9`` can lose
is bounded by time, whatever the batch size and however idle the run::

    self._timer = FlushTimer(self.flush, interval=0.2, name="jsonl")

    def post_process(self, result, file_data):
        with self._timer.lock:
            self._buffer.append(...)
            self._timer.pending()

    def flush(self):
        with self._timer.lock:
            ...write the buffer...
            self._timer.flushed()

    def close(self):
        self._timer.close()
        self.flush()
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from ._stop_signal import is_closed_stdout

__all__ = ["FlushTimer"]


logger = logging.getLogger(__name__)


class FlushTimer:
    """Calls ``flush`` from its own thread at most ``interval`` seconds after a record is pending.

    :attr:`lock` guards the owner's buffer: hold it while buffering, flushing
    and calling :meth:`pending` / :meth:`flushed`.  It is re-entrant, and the
    timer's thread holds it while it calls ``flush``.  The thread starts with
    the first pending record and ends in :meth:`close`.
    """

    def __init__(self, flush: Callable[[], None], interval: float, *, name: str) -> None:
        if not interval > 0:
            raise ValueError(f"flush interval must be more than 0 seconds, got {interval}")
        self.interval = interval
        self._flush = flush
        self._name = name
        self._condition = threading.Condition(threading.RLock())
        self._due: float | None = None
        self._closed = False
        self._failing = False
        self._thread: threading.Thread | None = None

    @property
    def lock(self) -> threading.Condition:
        """The lock over the owner's buffer (a condition; use it in a ``with``)."""
        return self._condition

    def pending(self) -> None:
        """Note that a record waits to be flushed; its deadline starts now unless one runs."""
        with self._condition:
            if self._due is not None or self._closed:
                return
            self._due = time.monotonic() + self.interval
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"{self._name}-flush", daemon=True
                )
                self._thread.start()
            self._condition.notify()

    def flushed(self) -> None:
        """Note that nothing waits any more: the owner flushed everything."""
        with self._condition:
            self._due = None

    def close(self) -> None:
        """Stop the thread; the owner flushes what is left itself, after this."""
        with self._condition:
            self._closed = True
            self._due = None
            self._condition.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        with self._condition:
            while not self._closed:
                if self._due is None:
                    self._condition.wait()
                    continue
                remaining = self._due - time.monotonic()
                if remaining > 0:
                    self._condition.wait(remaining)
                    continue
                try:
                    self._flush()
                except Exception as exc:
                    # The owner's next flush (a full batch, close()) retries and
                    # reports the error where the pipeline sees it; here it can
                    # only be logged, once until a flush works (a closed pipe
                    # would fail every interval), and tried again later.
                    if not self._failing and not is_closed_stdout(exc):
                        logger.warning("%s: timed flush failed", self._name, exc_info=True)
                    self._failing = True
                    self._due = time.monotonic() + self.interval
                else:
                    self._failing = False
                    # The lock was held throughout: nothing was buffered since.
                    self._due = None
