"""Pinned threads (``--pin-threads``) and letting one out for a large copy.

Pinned, the pipeline's threads share one core: handing the GIL from thread to
thread then costs no cross-core wake-up, which halves the time per small file.
Copying a large body is the opposite case: the kernel's copies of two
downloads run in parallel only on two cores.  So a downloader wraps the copy of
a large body in :func:`widened`, and the thread is pinned again afterwards.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Bodies above this size are copied with every core allowed (see :func:`widened_for`).
WIDEN_ABOVE = 256 * 1024

_state = threading.local()


def pin_thread(cpu: int) -> None:
    """Keep the calling thread on ``cpu`` (Linux); :func:`widened` lets it out for a while."""
    everything = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})  # 0: the calling thread, on Linux
    _state.cpus = ({cpu}, everything)


def is_pinned() -> bool:
    """Whether :func:`pin_thread` pinned the calling thread."""
    return getattr(_state, "cpus", None) is not None


@contextmanager
def widened() -> Iterator[None]:
    """Let the calling thread use every core it had before it was pinned, for the block.

    Does nothing in a thread that is not pinned, so downloaders call it
    unconditionally.
    """
    cpus = getattr(_state, "cpus", None)
    if cpus is None:
        yield
        return
    pinned, everything = cpus
    os.sched_setaffinity(0, everything)
    try:
        yield
    finally:
        os.sched_setaffinity(0, pinned)


@contextmanager
def widened_for(length: int | None) -> Iterator[None]:
    """:func:`widened` for a body of ``length`` bytes (None: unknown) above ``WIDEN_ABOVE``."""
    if (length is None or length > WIDEN_ABOVE) and is_pinned():
        with widened():
            yield
    else:
        yield
