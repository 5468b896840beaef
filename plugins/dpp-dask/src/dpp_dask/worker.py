"""What runs on the Dask workers: one stage runner per run and worker process.

The client sends :class:`Batch` objects to :func:`run_batch`; the first batch
of a run on a worker process builds that process's
:class:`~download_pipeline_processor.stage_runner.StageRunner` (processors,
downloader, private cache), later ones reuse it.  :func:`close_stages` ends
it when the run is over.  Only entries and results cross the network: the
files are downloaded, processed and deleted on the worker.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from download_pipeline_processor.stage_runner import close_runner, runner_for

if TYPE_CHECKING:
    from download_pipeline_processor.executor import StageSpec
    from download_pipeline_processor.file_data import FileData
    from download_pipeline_processor.stage_runner import Outcome


__all__ = ["Batch", "close_stages", "run_batch"]


class Batch:
    """A run's token and stage spec, with some of its entries: one Dask task's argument.

    Its ``repr`` names only the count: Dask logs a failed task's arguments,
    and entries carry URLs (query strings, tokens) and the spec carries the
    run's headers, neither of which may reach a log.
    """

    __slots__ = ("entries", "idle_timeout", "spec", "token")

    def __init__(
        self, token: str, spec: StageSpec, entries: list[FileData], idle_timeout: float
    ) -> None:
        self.token = token
        self.spec = spec
        self.entries = entries
        self.idle_timeout = idle_timeout

    def __repr__(self) -> str:
        return f"<batch of {len(self.entries)} entries>"

    def __getstate__(self) -> tuple[str, StageSpec, list[FileData], float]:
        return self.token, self.spec, self.entries, self.idle_timeout

    def __setstate__(self, state: tuple[str, StageSpec, list[FileData], float]) -> None:
        self.token, self.spec, self.entries, self.idle_timeout = state


def run_batch(batch: Batch) -> list[Outcome]:
    """Download and process the batch's entries in this worker process; each with its result."""
    runner = runner_for(batch.token, batch.spec, idle_timeout=batch.idle_timeout)
    return runner.run_batch(batch.entries)


async def close_stages(token: str, stop: bool, timeout: float) -> bool:
    """End this worker process's stages of run ``token``; whether it had any.

    Run through ``Client.run`` on every worker.  A coroutine, so that the
    wait (for in-flight files, then the processors' ``close``) runs on a
    thread and never blocks the worker's event loop and its heartbeats.
    """
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, lambda: close_runner(token, stop=stop, timeout=timeout))
