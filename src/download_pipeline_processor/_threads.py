"""Starting the run's threads, and keeping them on one core (``--pin-threads``)."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Callable

from . import affinity
from ._stop_signal import is_closed_stdout

logger = logging.getLogger(__name__)


def worker_thread(target: Callable[..., None], name: str, *args: Any) -> threading.Thread:
    """A daemon thread named ``dpp-<name>`` that runs ``target(*args)``, not started."""
    # Daemon threads: a worker stuck in user code past the grace period must not
    # keep the process alive after the run has reported it abandoned.
    return threading.Thread(target=target, name=f"dpp-{name}", args=args, daemon=True)


class ThreadPinning:
    """Where a run's threads go: all on one core with ``--pin-threads``, else anywhere."""

    def __init__(self, enabled: bool) -> None:
        #: What a pinned thread may use while widened: the process's CPUs, taken
        #: here (threads started by pinned threads, the feed's helpers, inherit one).
        self.allowed_cpus = pinnable_cpus() if enabled else None
        #: The CPU pinned threads share (the lowest of them), or None: no pinning.
        self.cpu = min(self.allowed_cpus) if self.allowed_cpus else None

    def pin(self) -> None:
        """Keep the calling thread on the run's one core, when asked to."""
        if self.cpu is None:
            return
        try:
            affinity.pin_thread(self.cpu, self.allowed_cpus)
        except OSError as exc:
            # The CPU went away under the run (cgroups, taskset): slower, never wrong.
            logger.debug("pinning %s failed: %s", threading.current_thread().name, exc)


def pinnable_cpus() -> set[int] | None:
    """The CPUs this process may use, or None where threads cannot be pinned."""
    if not hasattr(os, "sched_setaffinity"):
        logger.warning("--pin-threads: this platform cannot pin threads; ignored")
        return None
    return os.sched_getaffinity(0)


def call_plugin(function: Callable[[], object], failure: str) -> None:
    """Call a plugin's clean-up; whatever it raises is logged, never passed on."""
    try:
        function()
    except BaseException as exc:  # a plugin's SystemExit or own BaseException too
        if is_closed_stdout(exc):
            # Flushing to a reader that left (``| head``): nothing is lost that
            # anyone wanted, and the run ends quietly.
            logger.debug("%s: standard output closed by its reader", failure)
            return
        logger.warning(
            "%s: %s: %s",
            failure,
            type(exc).__name__,
            exc,
            exc_info=logger.isEnabledFor(logging.DEBUG),
        )
