"""Pinned threads (``--pin-threads``) and letting one out for a large copy.

Pinned, the pipeline's threads share one core: handing the GIL from thread to
thread then costs no cross-core wake-up, which halves the time per small file.
Copying a large body is the opposite case: the kernel's copies of two
downloads run in parallel only on two cores.  So a downloader wraps the copy of
a body in :func:`widened_for`, and the thread is pinned again afterwards.
"""

from __future__ import annotations

import logging
import os
import threading
from types import TracebackType

__all__ = ["WIDEN_ABOVE", "Widening", "is_pinned", "pin_thread", "widened_for"]


logger = logging.getLogger(__name__)

#: Bodies above this size are copied with every core allowed (see :func:`widened_for`).
WIDEN_ABOVE = 256 * 1024


class _Pinned(threading.local):
    def __init__(self) -> None:
        self.cpus: tuple[set[int], set[int]] | None = None  # (pinned, everything before)
        self.depth = 0  # widenings in progress in this thread


_state = _Pinned()


def pin_thread(cpu: int, allowed: set[int] | None = None) -> None:
    """Keep the calling thread on ``cpu`` (Linux); :func:`widened_for` lets it out for a while.

    A widened thread may use ``allowed``, by default the CPUs the thread may
    use now.  A thread started by a pinned thread inherits its one CPU, so
    pass the process's set there.
    """
    # The set from before the first pinning: pinning twice must not make {cpu} "everything".
    if _state.cpus is not None:
        everything = _state.cpus[1]
    else:
        everything = set(allowed) if allowed else os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})  # 0: the calling thread, on Linux
    _state.cpus = ({cpu}, everything)


def is_pinned() -> bool:
    """Whether :func:`pin_thread` pinned the calling thread."""
    return _state.cpus is not None


def _set_cpus(cpus: set[int]) -> bool:
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as exc:
        # The CPUs allowed can shrink under a running process (cgroups, taskset):
        # a copy on the wrong cores is slower, never wrong, so carry on.
        logger.debug("changing the thread's CPUs to %s failed: %s", sorted(cpus), exc)
        return False
    return True


class Widening:
    """Lets a pinned thread use every core while it copies a large body (a context manager).

    ``length`` is the body's size, or None when unknown (chunked, read to the
    close, compressed): then the copy reports its progress with
    :meth:`copied`, and the thread is widened once more than
    ``WIDEN_ABOVE`` bytes have passed.  In a thread that is not pinned,
    nothing happens at all.  Nested widenings pin the thread again only when
    the outermost one ends.
    """

    __slots__ = ("_active", "_left")

    def __init__(self, length: int | None) -> None:
        self._active = False
        # Bytes still to copy before widening; None: never (small, or not pinned).
        self._left: int | None = None
        if _state.cpus is not None and (length is None or length > WIDEN_ABOVE):
            self._left = 0 if length is not None else WIDEN_ABOVE

    def __enter__(self) -> Widening:
        if self._left == 0:
            self._widen()
        return self

    def copied(self, size: int) -> None:
        """Count ``size`` more bytes of a body of unknown length."""
        left = self._left
        if left is not None and not self._active:
            left -= size
            self._left = left
            if left < 0:
                self._widen()

    def _widen(self) -> None:
        cpus = _state.cpus
        if cpus is None:
            return
        self._active = True
        _state.depth += 1
        if _state.depth == 1:
            _set_cpus(cpus[1])

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._active:
            return
        self._active = False
        _state.depth -= 1
        cpus = _state.cpus
        if _state.depth == 0 and cpus is not None:
            _set_cpus(cpus[0])


def widened_for(length: int | None) -> Widening:
    """A :class:`Widening` for a body of ``length`` bytes (None: unknown)."""
    return Widening(length)
