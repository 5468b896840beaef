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
of them: the same stages, fed batch by batch.  Such an executor's run loop
is a :class:`BatchDispatcher` (batches out, finished batches back, a batch
whose worker was lost split, the wind-down at a stop); the executor provides
only its transport.

An executor is a plugin class registered through ``register_executors`` and
selected with ``--executor NAME``; it declares its options like any plugin
(``options = (Option(...), ...)``) and gets them from ``--executor-option
KEY=VALUE``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from .backend import Downloader
    from .base_processor import BaseProcessor
    from .file_data import FileData
    from .settings import PipelineSettings

__all__ = [
    "BaseExecutor",
    "BatchDispatcher",
    "BatchFlight",
    "EntryBatches",
    "ExecutorWork",
    "ProcessorSource",
    "StageSpec",
]

#: How a :class:`BatchDispatcher`'s transport names a batch out (a number, a task key).
_KeyT = TypeVar("_KeyT")
#: What a :class:`BatchDispatcher`'s transport keeps of a batch out (its worker, its task).
_HandleT = TypeVar("_HandleT")


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


class BatchFlight(Generic[_HandleT]):
    """One batch out: its entries (sequence, file data), the transport's handle, if it runs alone.

    ``alone`` marks a single entry tried again with nothing else of the run
    out (see :meth:`BatchDispatcher.batch_failed`).
    """

    __slots__ = ("alone", "entries", "handle")

    def __init__(
        self, entries: list[tuple[int, FileData]], handle: _HandleT, alone: bool = False
    ) -> None:
        self.entries = entries
        self.handle = handle
        self.alone = alone


class BatchDispatcher(Generic[_KeyT, _HandleT]):
    """The loop of one run of an executor that sends batches elsewhere and collects them back.

    One instance per :meth:`BaseExecutor.run`.  It reads the input through
    :class:`EntryBatches`, keeps at most ``limit`` batches out, hands every
    entry of a finished batch back once through :meth:`ExecutorWork.finish`,
    splits a batch whose worker was lost into single entries, and winds down
    at a stop.  A subclass provides the transport:

    - :meth:`send_batch`: send some entries, return the batch's key and handle;
    - :meth:`land`: take in one item of :attr:`landed` (a finished batch, a
      worker lost) and call :meth:`hand_back` or :meth:`batch_failed` for
      the batch it names, after taking it out of :attr:`in_flight`;
    - :meth:`worker_lost`: the error an entry fails with when it kept losing
      its worker;
    - optionally :meth:`stopping`, :meth:`prune` and :meth:`abandon`, the
      transport's part of :meth:`wind_down`.

    The transport puts what comes back (from any thread) on :attr:`landed`;
    everything else runs on the thread that called :meth:`execute`.
    """

    #: Seconds past ``work.stop_deadline()`` that :meth:`wind_down` still collects.
    stop_slack = 0.0

    def __init__(
        self,
        work: ExecutorWork,
        batch_size: int,
        limit: int,
        *,
        batch_wait: float = 0.2,
        poll_interval: float = 0.1,
        name: str = "dpp-input",
        landed: queue.SimpleQueue[Any] | None = None,
    ) -> None:
        self.work = work
        self.batch_size = batch_size
        #: Batches out at most.
        self.limit = limit
        self.poll_interval = poll_interval
        #: The batches out, by key.
        self.in_flight: dict[_KeyT, BatchFlight[_HandleT]] = {}
        #: What the transport says came back, taken in by :meth:`land`.
        self.landed: queue.SimpleQueue[Any] = landed if landed is not None else queue.SimpleQueue()
        self.batches = EntryBatches(
            work, batch_size, batch_wait=batch_wait, poll_interval=poll_interval, name=name
        )
        #: Single entries whose worker was lost beside others: each is tried again alone.
        self.suspects: deque[tuple[int, FileData]] = deque()

    # -- the transport's part ----------------------------------------------------------

    def send_batch(self, entries: list[tuple[int, FileData]]) -> tuple[_KeyT, _HandleT]:
        """Send ``entries`` (never empty); return the batch's key and the handle kept of it."""
        raise NotImplementedError

    def land(self, item: Any) -> None:
        """Take in one item the transport put on :attr:`landed`."""
        raise NotImplementedError

    def worker_lost(self, message: str) -> BaseException:
        """The error an entry fails with when its worker was lost (``message`` starts
        ``worker lost:``)."""
        raise NotImplementedError

    def stopping(self) -> None:
        """At a stop, before :meth:`wind_down` collects: tell the workers, say."""

    def prune(self) -> None:
        """During :meth:`wind_down`: drop from :attr:`in_flight` what can no longer come back."""

    def abandon(self, flights: list[BatchFlight[_HandleT]]) -> None:
        """At the end of :meth:`wind_down`: the batches still out, no longer waited for."""

    # -- the loop ------------------------------------------------------------------------

    def execute(self) -> bool:
        """Run the loop: True once every entry was handed back, False after a stop.

        A suspect (a single entry whose worker was lost beside others) is
        sent once nothing else is out, and no new batch goes out while one
        waits or ``limit`` batches are out.
        """
        work = self.work
        work.started()
        self.batches.start()
        while not work.stop_event.is_set():
            if self.suspects and not self.in_flight:
                self.dispatch([self.suspects.popleft()], alone=True)
            blocked = bool(self.suspects) or len(self.in_flight) >= self.limit
            self.collect(wait=self.batches.input_done or blocked)
            if self.batches.input_done and not self.in_flight and not self.suspects:
                return True
            if not blocked and not self.batches.input_done:
                self.dispatch(self.batches.next_batch())
        self.wind_down()
        return False

    def dispatch(self, entries: list[tuple[int, FileData]], alone: bool = False) -> None:
        """Send ``entries`` as one batch (nothing if empty) and keep it in :attr:`in_flight`."""
        if not entries:
            return
        key, handle = self.send_batch(entries)
        self.in_flight[key] = BatchFlight(entries, handle, alone)

    def collect(self, wait: bool) -> None:
        """Take in everything landed; with ``wait``, wait up to ``poll_interval`` for one."""
        landed = self.landed
        try:
            item = landed.get(timeout=self.poll_interval) if wait else landed.get_nowait()
        except queue.Empty:
            return
        while True:
            self.land(item)
            try:
                item = landed.get_nowait()
            except queue.Empty:
                return

    def hand_back(
        self, flight: BatchFlight[_HandleT], outcomes: list[tuple[FileData, Any]]
    ) -> None:
        """Hand every entry of a finished batch back with its outcome (file data, result)."""
        work = self.work
        for index, (sequence, sent) in enumerate(flight.entries):
            if index < len(outcomes):
                file_data, result = outcomes[index]
            else:  # never in practice: the worker returns every entry it was given
                file_data, result = sent, None
                file_data.fail(
                    "process", self.worker_lost("worker lost: the worker returned no result")
                )
            if file_data.download.size:
                work.count_bytes(file_data.download.size)
            work.finish(sequence, file_data, result)

    def batch_failed(self, flight: BatchFlight[_HandleT], reason: str) -> None:
        """A batch's worker was lost: split it; a single entry fails only if lost alone.

        A batch of several entries is sent again as single entries.  A single
        entry that ran beside others may have lost its worker to another, so
        it becomes a suspect, tried once more with nothing else out; only
        failing so, it fails with ``worker lost: {reason}``.
        """
        if len(flight.entries) > 1:
            for entry in flight.entries:
                self.dispatch([entry])
            return
        if not flight.alone:
            self.suspects.append(flight.entries[0])
            return
        sequence, file_data = flight.entries[0]
        file_data.fail("process", self.worker_lost(f"worker lost: {reason}"))
        self.work.finish(sequence, file_data, None)

    def wind_down(self) -> None:
        """After a stop: collect until ``stop_slack`` past the stop's deadline, abandon the rest."""
        self.stopping()
        deadline = self.work.stop_deadline()
        while self.in_flight and (
            deadline is None or time.monotonic() < deadline + self.stop_slack
        ):
            self.collect(wait=True)
            self.prune()
        if self.in_flight:
            flights = list(self.in_flight.values())
            self.in_flight.clear()
            self.abandon(flights)
