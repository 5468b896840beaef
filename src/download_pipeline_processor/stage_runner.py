"""The download and processing stages of a run inside one worker process, fed batch by batch.

A distributed executor (``dask`` from ``plugins/dpp-dask``) sends batches of
entries to worker processes; in each, :func:`runner_for` keeps one
:class:`StageRunner` per run.  The runner is the built-in ``local`` executor
fed from a queue instead of the input: the processors and the downloader are
built once per worker process, downloads go into the worker's own private
cache, and ``--download-workers``, ``--processing-limit``, retries, limits and
per-host politeness mean what they mean on one machine.  Each
:meth:`StageRunner.run_batch` returns its entries with their results, ready
to be sent back; file bodies never leave the worker.
"""

from __future__ import annotations

import logging
import pickle
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ._cache import DownloadCache
from ._cache_budget import CacheBudget
from ._flow import POLL_INTERVAL, EntryFlow, RunWork
from ._inputs import CheckedEntries
from ._stop_signal import StopSignal
from ._threads import call_plugin, worker_thread
from .builtins import LocalExecutor
from .errors import PipelineInterrupted, PluginError, RemoteProcessingError, portable_error
from .executor import StageSpec
from .file_data import FileData, StageError

__all__ = ["DEFAULT_IDLE_TIMEOUT", "Outcome", "StageRunner", "close_runner", "runner_for"]

logger = logging.getLogger(__name__)

#: Seconds a runner waits for its next batch before it closes itself: the
#: client that fed it is gone (killed, or cut off from the cluster).
DEFAULT_IDLE_TIMEOUT = 600.0

#: What a batch comes back as: each entry with its processor's result (None if it failed).
Outcome = tuple[FileData, Any]


class _Batch:
    """The entries of one :meth:`StageRunner.run_batch` call, filled in as they finish."""

    def __init__(self, size: int) -> None:
        self.outcomes: list[Outcome | None] = [None] * size
        self.missing = size
        self.done = threading.Event()
        if not size:
            self.done.set()

    def land(self, index: int, outcome: Outcome) -> None:
        """Entry ``index`` finished (called under the runner's lock)."""
        if self.outcomes[index] is None:
            self.outcomes[index] = outcome
            self.missing -= 1
            if not self.missing:
                self.done.set()


class _Feed(Iterator[FileData]):
    """The runner's input: entries of every batch, in order, until :meth:`end`.

    Reading waits for the next batch; after ``idle_timeout`` seconds with
    nothing to do (no entry queued, none in flight) it ends the input itself.
    """

    def __init__(self, idle_timeout: float | None, busy: Callable[[], bool]) -> None:
        self._queue: queue.SimpleQueue[FileData | None] = queue.SimpleQueue()
        self._idle_timeout = idle_timeout
        self._busy = busy
        self._ended = False

    def put(self, entries: Sequence[FileData]) -> None:
        for file_data in entries:
            self._queue.put(file_data)

    def end(self) -> None:
        self._queue.put(None)

    def ready(self) -> bool:
        """Whether an entry, or the end, is queued: reading would not wait for a batch."""
        return self._ended or not self._queue.empty()

    def drain(self) -> None:
        """Drop whatever is still queued (the runner fails those entries itself)."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def __next__(self) -> FileData:
        idle_since = time.monotonic()
        while not self._ended:
            try:
                item = self._queue.get(timeout=POLL_INTERVAL * 5)
            except queue.Empty:
                if self._busy():
                    idle_since = time.monotonic()
                elif (
                    self._idle_timeout is not None
                    and time.monotonic() - idle_since > self._idle_timeout
                ):
                    logger.warning(
                        "no batch for %g s: the client is gone; closing this worker's stages",
                        self._idle_timeout,
                    )
                    self._ended = True
                continue
            if item is None:
                self._ended = True
                break
            return item
        raise StopIteration


class StageRunner:
    """The stages of one run in this process: batches in, entries with results out.

    Built from the run's :class:`~.executor.StageSpec` (settings, processor
    class and options, downloader class).  The processors are built once here;
    if that fails, every entry given to :meth:`run_batch` fails at stage
    ``process`` with the reason, and nothing is downloaded.
    """

    def __init__(self, spec: StageSpec, *, idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT):
        self.spec = spec
        settings = spec.settings
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[_Batch, int, FileData]] = {}
        self._stop = StopSignal()
        self._feed = _Feed(idle_timeout, self._busy)
        self.flow = EntryFlow(
            CheckedEntries(self._feed, None),
            self._stop,
            DownloadCache(settings.cache_root, CacheBudget(settings.cache_size)),
            download_queue_size=settings.download_queue_size,
            finished_queue_size=settings.download_queue_size + settings.processing_limit * 2,
        )
        self.executor = LocalExecutor()
        #: Why the processors could not be built here, if they could not.
        self.set_up_error: PluginError | None = None
        #: What ended the stages early (an unusable cache folder, say), if anything did.
        self.failure: BaseException | None = None
        self.closed = threading.Event()
        try:
            self.executor.open(spec)
        except Exception as exc:  # noqa: BLE001 - reported on every entry of this worker
            self.set_up_error = PluginError(f"cannot be set up on this worker: {exc}")
            logger.error("%s", self.set_up_error)
            self.closed.set()
            return
        self._collector = worker_thread(self._collect, "stage-runner-collect")
        self._stages = worker_thread(self._run_stages, "stage-runner")
        self._collector.start()
        self._stages.start()

    def _busy(self) -> bool:
        with self._lock:
            return bool(self._waiting)

    # -- batches ----------------------------------------------------------------------

    def run_batch(self, entries: Sequence[FileData]) -> list[Outcome]:
        """Download and process ``entries``; each comes back once, with its result or failure.

        Blocks until every entry is done.  Entries still running when the
        runner is stopped (:meth:`close` with ``stop``) come back failed as
        interrupted.  Errors are made picklable (see
        :func:`~.errors.portable_error`); a result that cannot be pickled
        fails its file at stage ``process`` instead of failing the batch.
        """
        entries = list(entries)
        batch = _Batch(len(entries))
        if self.set_up_error is not None or self.closed.is_set():
            error = self.set_up_error or PipelineInterrupted("this worker's stages are closed")
            stage = "process" if self.set_up_error is not None else "download"
            for index, file_data in enumerate(entries):
                file_data.fail(stage, error)
                batch.land(index, (file_data, None))
        else:
            with self._lock:
                for index, file_data in enumerate(entries):
                    self._waiting[id(file_data)] = (batch, index, file_data)
            self._feed.put(entries)
        batch.done.wait()
        return [_portable(outcome) for outcome in batch.outcomes if outcome is not None]

    def _collect(self) -> None:
        """Route each finished entry to the batch waiting for it."""
        for file_data, result in self.flow.finished_entries():
            self._land(file_data, result)

    def _land(self, file_data: FileData, result: Any) -> None:
        with self._lock:
            waiting = self._waiting.pop(id(file_data), None)
            if waiting is not None:
                batch, index, _ = waiting
                batch.land(index, (file_data, result))

    # -- the stages -------------------------------------------------------------------

    def _run_stages(self) -> None:
        """Run the local executor over the feed until it ends, then give every entry back."""
        try:
            self.executor.run(RunWork(self.spec, self.flow, lambda: None))
        except BaseException as exc:  # noqa: BLE001 - every waiting entry fails with it
            logger.error("this worker's stages failed: %s: %s", type(exc).__name__, exc)
            self.failure = exc
            self._stop.stop(1)
        finally:
            self.closed.set()
            self.flow.abandon_in_flight()
            self.flow.end_finished()
            self._collector.join()
            call_plugin(self.executor.close, "executor close() failed")
            self.flow.cache.close()
            # Entries never started (still queued, or fed after the end) fail with the reason.
            reason = self.failure or PipelineInterrupted(
                "the worker's stages stopped before this file started"
            )
            self._feed.drain()
            with self._lock:
                left = list(self._waiting.values())
                self._waiting.clear()
                for batch, index, file_data in left:
                    file_data.fail("download", reason)
                    batch.land(index, (file_data, None))

    def close(self, *, stop: bool = False, timeout: float | None = None) -> None:
        """End the feed and wait for the stages to finish what they have (``timeout`` seconds).

        ``stop`` abandons the entries in flight (they come back interrupted)
        after the run's ``stop_grace``, instead of finishing them.
        """
        if self.set_up_error is not None:
            return
        if stop:
            self._stop.stop(130)
        self._feed.end()
        self._stages.join(timeout)


def _portable(outcome: Outcome) -> Outcome:
    """``outcome`` ready to cross to another process: its error and its result picklable."""
    file_data, result = outcome
    if result is not None:
        try:
            pickle.dumps(result)
        except Exception as exc:  # noqa: BLE001 - any pickling failure fails this file alone
            file_data.fail(
                "process",
                RemoteProcessingError(
                    f"the processor's result cannot be sent back: {type(exc).__name__}: {exc}"
                ),
            )
            result = None
    failure = file_data.error
    if failure is not None:
        file_data.error = StageError(failure.stage, portable_error(failure.error))
    return file_data, result


_RUNNERS: dict[str, StageRunner] = {}
_RUNNERS_LOCK = threading.Lock()


def runner_for(
    token: str, spec: StageSpec, *, idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
) -> StageRunner:
    """This process's runner for run ``token``, built from ``spec`` on first use.

    A runner whose stages closed (idle past ``idle_timeout``) is replaced by
    a new one; one whose processors could not be built is kept, so each batch
    fails fast with the same reason instead of building them again.
    """
    with _RUNNERS_LOCK:
        runner = _RUNNERS.get(token)
        if runner is None or (runner.closed.is_set() and runner.set_up_error is None):
            runner = StageRunner(spec, idle_timeout=idle_timeout)
            _RUNNERS[token] = runner
        return runner


def close_runner(token: str, *, stop: bool = False, timeout: float | None = None) -> bool:
    """Close this process's runner of run ``token``, if it has one; whether it had."""
    with _RUNNERS_LOCK:
        runner = _RUNNERS.pop(token, None)
    if runner is None:
        return False
    runner.close(stop=stop, timeout=timeout)
    return True
