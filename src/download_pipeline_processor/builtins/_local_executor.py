"""The built-in executor ``local``: the download and processing stages on this machine.

::

    entries --> download workers --> [downloaded queue] --> processing pool --> run.finish
                (N threads, or a      (bounded)              (M threads, or M
                 multiplexing feed)                           worker processes)

The state the threads share (the in-flight table, the queues, the hand-offs)
is the run's :class:`~.._flow.EntryFlow`; the download workers are
:class:`~.._download_workers.DownloadWorkers`, or a multiplexing backend's
feed (:mod:`.._feed`).  This module starts them and winds them down.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from .._batches import Failed, process_files, takes_batches
from .._download_stage import DownloadStage
from .._download_workers import DownloadWorkers
from .._feed import drive_fetch_many
from .._flow import POLL_INTERVAL, RunWork
from .._threads import ThreadPinning, call_plugin, worker_thread
from ..backend import Downloader, drives_many
from ..base_processor import BaseProcessor, checks_before_download
from ..errors import PluginError, ProcessingTimeoutError
from ..executor import BaseExecutor, ExecutorWork, StageSpec
from ..redact import shorten

if TYPE_CHECKING:
    from .._flow import Downloaded, EntryFlow
    from ..file_data import FileData

logger = logging.getLogger(__name__)

#: The most files a processing thread takes at once for a processor without
#: ``process_batch``, called once per file: fewer hand-offs between threads.
PER_FILE_BATCH = 64
#: Seconds such a thread waits for more files once it has one: one wake-up for
#: many files, while the wait stays far below what one download takes.
PER_FILE_WAIT = 0.005
#: Seconds per file under which a processor counts as quick: a slower one's
#: thread takes one file at a time, so that the threads share the files.
QUICK_FILE = 0.002


class ProcessingWorker:
    """One processing thread's life: the batch it works on, since when, and whether it was given up.

    The thread and the watchdog (:meth:`LocalExecutor._enforce_processing_timeout`)
    both take the batch through this object's lock, so exactly one of them
    hands it on: the thread when it finishes in time, the watchdog when it
    does not.  A given-up thread that returns later drops its results and ends.
    """

    def __init__(self, processor: BaseProcessor | None) -> None:
        #: None: the thread builds its own (a replacement's set-up must not hold up the run).
        self.processor = processor
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._current: tuple[list[Downloaded], float] | None = None
        self._abandoned = False

    def begin(self, batch: list[Downloaded]) -> None:
        """The thread starts processing ``batch``."""
        with self._lock:
            self._current = (batch, time.monotonic())

    def end(self) -> bool:
        """The thread is done with its batch; False if the batch was taken from it meanwhile."""
        with self._lock:
            self._current = None
            return not self._abandoned

    def abandon_if_overdue(self, now: float, timeout: float) -> list[Downloaded] | None:
        """Give the thread up if its batch began ``timeout`` seconds before ``now``; that batch."""
        with self._lock:
            if self._abandoned or self._current is None:
                return None
            batch, started = self._current
            if now - started < timeout:
                return None
            self._abandoned = True
            self._current = None
            return batch


class LocalExecutor(BaseExecutor):
    """Download and process on this machine: the default executor, ``local``.

    Downloads run on ``--download-workers`` threads (or one multiplexing
    loop); processors on ``--processing-limit`` threads, or as many worker
    processes with ``--processing-mode process``.  Processors are built in
    :meth:`open`, so one that cannot be set up is a usage error before any
    download.
    """

    def __init__(self) -> None:
        self.spec: StageSpec | None = None
        #: One processor per processing slot: instances, or worker processes in process mode.
        self.processors: list[BaseProcessor] = []
        #: The processing threads' places; the watchdog swaps in a replacement for a stuck one.
        self.workers: list[ProcessingWorker] = []
        self.replacements = 0
        #: The extra processor instance asked before each download, when its class asks.
        self.download_check: BaseProcessor | None = None
        self._flow: EntryFlow | None = None

    def open(self, spec: StageSpec) -> None:
        """Build one processor per processing slot (start the worker processes in process mode)."""
        self.spec = spec
        settings, choice = spec.settings, spec.processor
        if settings.processing_mode == "process":
            from .._process_pool import start_process_processors

            self.processors = list(
                start_process_processors(
                    choice.cls,
                    choice.options,
                    choice.label,
                    settings.processing_limit,
                    settings.processing_timeout,
                )
            )
        else:
            self.processors = [choice.build() for _ in range(settings.processing_limit)]
        self.workers = [ProcessingWorker(processor) for processor in self.processors]

    def close(self) -> None:
        """Stop the worker processes of process mode (the threads end with the run)."""
        terminate_workers(self.processors)

    # -- the run ------------------------------------------------------------------

    def run(self, work: ExecutorWork) -> None:
        """Run the stages over every entry of ``work`` (to the end, or to a stop)."""
        if not isinstance(work, RunWork):
            raise TypeError("the local executor runs a run's own RunWork")
        spec = work.spec
        settings = spec.settings
        flow = self._flow = work.flow
        pinning = work.pinning
        flow.cache.open()
        downloader: Downloader | None = None
        try:
            downloader = spec.downloader_class(settings)
            if checks_before_download(spec.processor.cls):
                # Its own instance: the processing ones belong to their threads, or
                # live in worker processes.
                self.download_check = spec.processor.build()
            work.started()
            stage = DownloadStage(downloader, flow.cache, settings, flow.stop.event)
            flow.downloading = stage.bytes_in_flight
            check = self.download_check
            download_workers = DownloadWorkers(
                stage,
                flow,
                settings.download_workers,
                pinning,
                None if check is None else check.result_without_download,
            )
            for index, worker in enumerate(self.workers):
                worker.thread = worker_thread(
                    self._processing_worker, f"process-{index}", worker, pinning
                )
            if drives_many(downloader):
                downloads = [
                    worker_thread(drive_fetch_many, "download", downloader, download_workers)
                ]
            else:
                downloads = download_workers.threads()
            for thread in self._processing_threads() + downloads:
                thread.start()
            while True:
                try:
                    self._wait_for(work, downloads, pinning)
                    break
                except KeyboardInterrupt:
                    # Library use without signal handlers: the first Ctrl-C stops
                    # gracefully, a second one propagates.
                    if flow.stop.is_set():
                        raise
                    flow.stop.stop(130)
        finally:
            if downloader is not None:
                call_plugin(downloader.close, "downloader close() failed")
            if self.download_check is not None:
                call_plugin(self.download_check.close, "processor close() failed")

    def _wait_for(
        self, work: RunWork, downloads: list[threading.Thread], pinning: ThreadPinning
    ) -> None:
        """Let the workers drain the input, or wind them down after a stop."""
        self._join(work, lambda: downloads)
        work.flow.end_downloads()
        self._join(work, self._processing_threads, pinning)

    def _join(
        self,
        work: RunWork,
        threads: Callable[[], list[threading.Thread]],
        pinning: ThreadPinning | None = None,
    ) -> None:
        """Wait for the ``threads()`` (asked again each time round); after a stop, only
        until the grace period ends.  Watches ``--processing-timeout`` meanwhile."""
        while alive := [thread for thread in threads() if thread.is_alive()]:
            limit = work.stop_deadline()
            if limit is not None and time.monotonic() >= limit:
                return
            if pinning is not None:
                self._enforce_processing_timeout(pinning)
            alive[0].join(POLL_INTERVAL)

    def _processing_threads(self) -> list[threading.Thread]:
        return [worker.thread for worker in self.workers if worker.thread is not None]

    # -- processing -----------------------------------------------------------------

    def _running(self) -> tuple[StageSpec, EntryFlow]:
        """The spec and flow of the run under way (set by :meth:`open` and :meth:`run`)."""
        if self.spec is None or self._flow is None:
            raise RuntimeError("the local executor is not running")
        return self.spec, self._flow

    def _processing_worker(self, worker: ProcessingWorker, pinning: ThreadPinning) -> None:
        spec, flow = self._running()
        if spec.settings.processing_mode == "thread":
            # Process mode: the workers this thread starts must keep every core.
            pinning.pin()
        processor = worker.processor
        set_up_error: BaseException | None = None
        if processor is None:
            try:
                processor = spec.processor.build()
            except BaseException as exc:  # noqa: BLE001 - fails the files this thread takes
                set_up_error = exc
                logger.error("a replacement processor could not be set up: %s", exc)
        shape = self._batch_shape()
        per_file = not takes_batches(spec.processor.cls)
        # A processor called per file starts with one file at a time, as before batches.
        most, fill_wait = (1, 0.0) if per_file else shape
        try:
            while True:
                # Files of a per-file batch not begun yet still wait: they keep their
                # room in the queue (--download-queue-size) until the batch is done.
                hold = per_file and most > 1
                batch = flow.downloaded_batch(most, fill_wait, hold=hold)
                if batch is None:
                    break
                worker.begin(batch)
                files = [file_data for _, file_data in batch]
                started = time.monotonic()
                try:
                    if processor is None:
                        raise PluginError(
                            "the processor of a replacement thread could not be set up: "
                            f"{type(set_up_error).__name__}: {set_up_error}"
                        )
                    results = process_files(processor, files)
                except BaseException as exc:  # noqa: BLE001 - a raised batch fails every file of it
                    results = [Failed(exc)] * len(files)
                if hold:
                    flow.release_downloaded(len(files))
                if not worker.end():
                    # Past --processing-timeout: the watchdog failed the batch, and
                    # another thread took this one's place.
                    return
                if per_file:
                    # A quick processor takes the files waiting; a slow one, one file at a
                    # time, so that its threads share the files.
                    quick = time.monotonic() - started <= QUICK_FILE * len(files)
                    most, fill_wait = shape if quick else (1, 0.0)
                flow.finish_batch(self._outcomes(flow, batch, results))
        finally:
            if processor is not None:
                call_plugin(processor.close, "processor close() failed")

    def _batch_shape(self) -> tuple[int, float]:
        """How many files a processing worker takes at once, and how long it waits for them.

        A processor with ``process_batch``: ``--processing-batch-size`` and
        ``--processing-batch-wait``.  Any other takes the files waiting, up to
        :data:`PER_FILE_BATCH`, waiting :data:`PER_FILE_WAIT` at most for them, in
        threads with no ``--processing-timeout`` (a timeout, or a worker process,
        is per file), while it is quick.
        """
        spec, _ = self._running()
        settings = spec.settings
        if takes_batches(spec.processor.cls):
            return settings.processing_batch_size, settings.processing_batch_wait
        if settings.processing_mode == "thread" and settings.processing_timeout is None:
            return PER_FILE_BATCH, PER_FILE_WAIT
        return 1, 0.0

    @staticmethod
    def _outcomes(
        flow: EntryFlow, batch: list[Downloaded], results: list[Any]
    ) -> list[tuple[int, FileData, Any]]:
        """Each file of ``batch`` with its result, its failure recorded; its cached file gone."""
        outcomes = []
        for (sequence, file_data), outcome in zip(batch, results):
            result = outcome
            if type(outcome) is Failed:
                file_data.fail("process", outcome.error)
                result = None
            # Whatever the processor left at its file's path, only that file fails of it.
            left = flow.discard(file_data.local_path)
            if left is not None and file_data.error is None:
                file_data.fail("process", left)
                result = None
            outcomes.append((sequence, file_data, result))
        return outcomes

    def _enforce_processing_timeout(self, pinning: ThreadPinning) -> None:
        """Fail each file processed past ``--processing-timeout`` and replace its thread.

        Thread mode only: process mode kills its stuck workers itself
        (:class:`~.._process_pool.ProcessProcessor`).  Called from the run's
        main wait loop.
        """
        spec, flow = self._running()
        settings = spec.settings
        timeout = settings.processing_timeout
        if timeout is None or settings.processing_mode != "thread" or flow.stop.is_set():
            return
        now = time.monotonic()
        for index, worker in enumerate(self.workers):
            overdue = worker.abandon_if_overdue(now, timeout)
            if overdue is None:
                continue
            name = worker.thread.name if worker.thread is not None else f"process-{index}"
            logger.warning(
                "%s has spent over %g s on %s (--processing-timeout): the %s; a thread "
                "cannot be killed, so it is left running and a new one takes its place",
                name,
                timeout,
                shorten(str(overdue[0][1].id)),
                "file fails" if len(overdue) == 1 else f"batch of {len(overdue)} files fails",
            )
            error = ProcessingTimeoutError(
                f"processing took longer than the processing timeout ({timeout:g} s)"
            )
            for _, file_data in overdue:
                file_data.fail("process", error)
                # The stuck thread may still hold the file open: unlinking it is safe on POSIX.
                flow.discard(file_data.local_path)
            flow.finish_batch([(sequence, file_data, None) for sequence, file_data in overdue])
            self.replacements += 1
            replacement = ProcessingWorker(None)
            replacement.thread = worker_thread(
                self._processing_worker,
                f"process-{index}-{self.replacements}",
                replacement,
                pinning,
            )
            self.workers[index] = replacement
            replacement.thread.start()


def terminate_workers(processors: list[BaseProcessor]) -> None:
    """Stop the worker processes of process mode at once (no-op in thread mode)."""
    # No worker can exist unless process mode imported its module.
    pool = sys.modules.get(f"{__package__.rpartition('.')[0]}._process_pool")
    if pool is None:
        return
    for processor in processors:
        if isinstance(processor, pool.ProcessProcessor):
            processor.terminate()
