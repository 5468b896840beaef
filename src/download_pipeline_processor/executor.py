"""The executor seam: where the download and processing stages of a run happen.

A run reads and checks its input, keeps the journal, runs the post-processors
(in one thread), fills the summary and decides the exit code on the machine
that started it, whatever the executor.  The executor does the rest: it takes
the run's entries one at a time from :meth:`ExecutorWork.next_entry`,
downloads and processes each somewhere, and hands each back exactly once,
with its result or its failure, through :meth:`ExecutorWork.finish`.

``local`` (built in) runs the stages in this process: download threads, and
processing threads or worker processes (``--processing-mode process``).  An
executor that spreads the work over other processes or machines (``dask``
from ``plugins/dpp-dask``) runs a :class:`~.stage_runner.StageRunner` in each
of them: the same stages, fed batch by batch.

An executor is a plugin class registered through ``register_executors`` and
selected with ``--executor NAME``; it declares its options like any plugin
(``options = (Option(...), ...)``) and gets them from ``--executor-option
KEY=VALUE``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .backend import Downloader
    from .base_processor import BaseProcessor
    from .file_data import FileData
    from .settings import PipelineSettings

__all__ = ["BaseExecutor", "EntryBatches", "ExecutorWork", "ProcessorSource", "StageSpec"]


class ProcessorSource(Protocol):
    """Where processor instances come from: the run plan's processor choice.

    The framework's choice is picklable when its class is importable by name,
    so a worker process elsewhere can build its own instances from it.
    """

    @property
    def cls(self) -> type[BaseProcessor]: ...

    @property
    def options(self) -> Mapping[str, Any]:
        """The keyword arguments each instance is built with, checked and converted."""

    @property
    def label(self) -> str:
        """How errors name the processor: ``processor 'checksum'``."""

    def build(self) -> BaseProcessor:
        """A new processor instance with the run's options."""


@dataclass(frozen=True)
class StageSpec:
    """What the download and processing stages of a run need, wherever they run.

    Picklable (the classes travel by their import path), so a distributed
    executor sends it to its workers, which must have the same plugins installed.
    """

    settings: PipelineSettings
    #: Builds the processors, with the options given on the command line.
    processor: ProcessorSource
    downloader_class: type[Downloader]


class ExecutorWork(Protocol):
    """What a run gives its executor: the entries to work on, and where to hand them back.

    Every method is safe to call from any thread.
    """

    #: The run's settings, processor and downloader.
    spec: StageSpec
    #: Set when the run is stopping (Ctrl-C, SIGTERM, :meth:`ProcessingPipeline.stop`).
    stop_event: threading.Event

    def started(self) -> None:
        """Say the work is set up and starting (observers get ``pipeline_started`` now)."""

    def next_entry(self) -> tuple[int, FileData] | None:
        """The next entry with its sequence number; None once the input ends or the run stops.

        From then on the entry is in flight: it must come back through
        :meth:`finish`, or the run reports it as interrupted after a stop.
        """

    def finish(self, sequence: int, file_data: FileData, result: Any) -> None:
        """Hand an entry back with its result (None if ``file_data.error`` is set).

        An entry the run already reported (abandoned after a stop) is dropped
        here, so handing one back twice can never report it twice.
        """

    def count_bytes(self, size: int) -> None:
        """Add ``size`` downloaded bytes to the run's progress and summary."""

    def stop_deadline(self) -> float | None:
        """None until a stop; then the :func:`time.monotonic` time after which in-flight
        work is no longer waited for (``stop_grace`` seconds after the stop)."""


class BaseExecutor:
    """Runs the download and processing stages of a run.

    One instance per run, built with the options given by ``--executor-option``.
    The framework calls :meth:`open` before the run (a problem found there is
    a usage error, exit 2, before any download), :meth:`run` once, and
    :meth:`close` at the end whatever happened.
    """

    #: The options this executor accepts (:class:`~.options.Option`).
    options: tuple[Any, ...] = ()

    def open(self, spec: StageSpec) -> None:
        """Get ready for a run of ``spec`` (start or reach workers, build processors)."""

    def run(self, work: ExecutorWork) -> None:
        """Work through every entry of ``work``; return once each one taken was handed back.

        After a stop (``work.stop_event``), take no new entry and return by
        ``work.stop_deadline()``: the run reports whatever is still out as
        interrupted.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release what :meth:`open` and :meth:`run` set up; called once, after the run."""


class EntryBatches:
    """The run's entries, read ahead on a thread of their own and handed out in batches.

    For an executor that sends batches elsewhere (worker processes, a
    cluster): its loop must not block on a slow input (standard input) while
    results come back.  :meth:`start` starts a thread taking
    ``work.next_entry()`` into a queue of at most ``batch_size`` entries (the
    input stays streamed); :meth:`next_batch` gives up to ``batch_size`` of
    them, fewer once ``batch_wait`` seconds passed after the first one.
    :attr:`input_done` turns true once the end of the input was handed out.
    """

    def __init__(
        self,
        work: ExecutorWork,
        batch_size: int,
        *,
        batch_wait: float = 0.2,
        poll_interval: float = 0.1,
        name: str = "dpp-input",
    ) -> None:
        self.work = work
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        self.poll_interval = poll_interval
        #: True once :meth:`next_batch` met the end of the input.
        self.input_done = False
        self._entries: queue.Queue[tuple[int, FileData] | None] = queue.Queue(maxsize=batch_size)
        self._reader = threading.Thread(target=self._read, name=name, daemon=True)

    def start(self) -> None:
        """Start reading the input (once)."""
        self._reader.start()

    def _read(self) -> None:
        work = self.work
        while (item := work.next_entry()) is not None:
            if not self._put(item):
                return
        self._put(None)

    def _put(self, item: tuple[int, FileData] | None) -> bool:
        while not self.work.stop_event.is_set():
            try:
                self._entries.put(item, timeout=self.poll_interval)
                return True
            except queue.Full:
                continue
        return False

    def next_batch(self) -> list[tuple[int, FileData]]:
        """Up to ``batch_size`` entries; fewer after ``batch_wait`` of a slow input, or none."""
        batch: list[tuple[int, FileData]] = []
        deadline = None
        while len(batch) < self.batch_size:
            if deadline is None:
                timeout = self.poll_interval
            else:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
            try:
                item = self._entries.get(timeout=timeout)
            except queue.Empty:
                break
            if item is None:
                self.input_done = True
                break
            batch.append(item)
            if deadline is None:
                deadline = time.monotonic() + self.batch_wait
        return batch
