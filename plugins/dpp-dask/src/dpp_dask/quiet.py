"""Keeping Dask's own log lines off a run's stderr (``--debug`` keeps them).

Imported only once a run starts Dask: it subclasses Dask's ``WorkerPlugin``.
"""

from __future__ import annotations

import logging
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["QuietLogs", "quiet_dask_logs"]


def quiet_dask_logs() -> None:
    """Silence Dask's loggers in this process.

    Dask logs every start, close and lost worker on its own handler, and
    errors of its internals with tracebacks (a worker whose heartbeat finds
    the scheduler closed first, a scheduler lost while the client closes);
    the run's own lines and summary say what a user needs.  Loggers Dask's
    configuration gave a level of their own are quieted one by one.
    """
    for name in ["distributed", *logging.root.manager.loggerDict]:
        if name == "distributed" or name.startswith("distributed."):
            named = logging.getLogger(name)
            if name == "distributed" or named.level != logging.NOTSET:
                named.setLevel(logging.CRITICAL + 1)


class QuietLogs(WorkerPlugin):
    """Silences Dask's loggers in each worker process of a run's local cluster.

    A plugin rather than one call: a worker started later (the nanny's
    replacement for a killed one) gets it too.  Its processes write to the
    run's stderr.
    """

    name = "dpp-quiet-logs"

    def setup(self, worker: Any) -> None:
        quiet_dask_logs()
