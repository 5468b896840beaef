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
from typing import TYPE_CHECKING, Callable

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
    from .._flow import EntryFlow
    from ..file_data import FileData

logger = logging.getLogger(__name__)


class ProcessingWorker:
    """One processing thread's life: the file it works on, since when, and whether it was given up.

    The thread and the watchdog (:meth:`LocalExecutor._enforce_processing_timeout`)
    both take the file through this object's lock, so exactly one of them
    hands it on: the thread when it finishes in time, the watchdog when it
    does not.  A given-up thread that returns later drops its result and ends.
    """

    def __init__(self, processor: BaseProcessor | None) -> None:
        #: None: the thread builds its own (a replacement's set-up must not hold up the run).
        self.processor = processor
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._current: tuple[int, FileData, float] | None = None
        self._abandoned = False

    def begin(self, sequence: int, file_data: FileData) -> None:
        """The thread starts processing ``file_data``."""
        with self._lock:
            self._current = (sequence, file_data, time.monotonic())

    def end(self) -> bool:
        """The thread is done with its file; False if the file was taken from it meanwhile."""
        with self._lock:
            self._current = None
            return not self._abandoned

    def abandon_if_overdue(self, now: float, timeout: float) -> tuple[int, FileData] | None:
        """Give the thread up if its file started ``timeout`` seconds before ``now``; that file."""
        with self._lock:
            if self._abandoned or self._current is None:
                return None
            sequence, file_data, started = self._current
            if now - started < timeout:
                return None
            self._abandoned = True
            self._current = None
            return sequence, file_data


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
        pinning = ThreadPinning(settings.pin_threads)
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
        # One end marker per place: a replaced thread never takes another entry.
        work.flow.end_downloads(
            len(self.workers), lambda: self._enforce_processing_timeout(pinning)
        )
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
        try:
            for sequence, file_data in flow.downloaded_entries():
                worker.begin(sequence, file_data)
                result = None
                try:
                    if processor is None:
                        raise PluginError(
                            "the processor of a replacement thread could not be set up: "
                            f"{type(set_up_error).__name__}: {set_up_error}"
                        )
                    result = processor.process(file_data)
                except BaseException as exc:  # noqa: BLE001 - a processor failure fails the file
                    file_data.fail("process", exc)
                if not worker.end():
                    # Past --processing-timeout: the watchdog failed the file, and
                    # another thread took this one's place.
                    return
                # Whatever the processor left at its file's path, only that file fails of it.
                left = flow.discard(file_data.local_path)
                if left is not None and file_data.error is None:
                    file_data.fail("process", left)
                    result = None
                flow.finish(sequence, file_data, result)
        finally:
            if processor is not None:
                call_plugin(processor.close, "processor close() failed")

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
            sequence, file_data = overdue
            name = worker.thread.name if worker.thread is not None else f"process-{index}"
            logger.warning(
                "%s has spent over %g s on %s (--processing-timeout): the file fails; a thread "
                "cannot be killed, so it is left running and a new one takes its place",
                name,
                timeout,
                shorten(str(file_data.id)),
            )
            file_data.fail(
                "process",
                ProcessingTimeoutError(
                    f"processing took longer than the processing timeout ({timeout:g} s)"
                ),
            )
            # The stuck thread may still hold the file open: unlinking it is safe on POSIX.
            flow.discard(file_data.local_path)
            flow.finish(sequence, file_data, None)
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
