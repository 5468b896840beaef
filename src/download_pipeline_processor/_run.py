"""The threads of one pipeline run: download workers, processing pool, post-processor.

::

    input --> download workers --> [downloaded queue] --> processing pool --> post-processor
              (N threads)           (bounded)              (M threads)         (1 thread)

The state the threads share (the in-flight table, the queues, the hand-offs)
is an :class:`~._flow.EntryFlow`; the download workers are
:class:`~._download_workers.DownloadWorkers`, or a multiplexing backend's feed
(:mod:`._feed`).  This module starts them all and winds them down.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from typing import Any, Callable, Protocol

from ._cache import DownloadCache
from ._cache_budget import CacheBudget
from ._download_stage import DownloadStage
from ._download_workers import DownloadWorkers
from ._feed import drive_fetch_many
from ._flow import POLL_INTERVAL, EntryFlow
from ._inputs import CheckedEntries
from ._stop_signal import StopSignal
from ._threads import ThreadPinning, worker_thread
from .backend import Downloader, drives_many
from .base_post_processor import BasePostProcessor
from .base_processor import BaseProcessor, checks_before_download
from .errors import InvalidEntriesError, PluginError, ProcessingTimeoutError
from .file_data import FileData
from .plugins import PipelinePluginManager, has_observers, notify_observers
from .run_progress import RunProgress
from .settings import PipelineSettings
from .summary import EXAMPLES, FailureGroup, RunSummary

logger = logging.getLogger(__name__)

#: Lifecycle hooks a post-processor instance may implement as ``@hookimpl`` methods.
OBSERVER_HOOKS = ("pipeline_started", "file_finished", "pipeline_finished")

PostProcessCall = Callable[[Any, FileData], None]

#: The exit code of a run whose input (standard input, checked as it is read)
#: held an invalid entry: the same as an input error found before the run.
EXIT_INPUT_ERROR = 2


class ProcessorSource(Protocol):
    """Where new processor instances come from: the run plan's processor choice."""

    @property
    def cls(self) -> type: ...

    def build(self) -> Any:
        """A new processor instance with the run's options."""


class ProcessingWorker:
    """One processing thread's life: the file it works on, since when, and whether it was given up.

    The thread and the watchdog (:meth:`PipelineRun._enforce_processing_timeout`)
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


def _post_process_caller(post_processor: BasePostProcessor) -> PostProcessCall:
    """Adapt the seed's one-argument ``post_process(result)`` to the two-argument form."""
    import inspect

    method = post_processor.post_process
    try:
        parameters = list(inspect.signature(method).parameters.values())
    except (TypeError, ValueError):
        return method
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    takes_two = len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in positional)
    if takes_two:
        return method
    return lambda result, _file_data: method(result)  # type: ignore[call-arg]


class PipelineRun:
    """The threads of one :meth:`ProcessingPipeline.run`.

    Takes what the run needs, built already: the checked ``entries``, one
    processor per processing worker, the post-processors, the downloader
    class, the plugin manager (for observer hooks), the ``stop`` signal to
    watch and the ``summary`` to fill; and ``processor_source``, to build a
    processor for a thread that replaces one stuck past
    ``--processing-timeout``.  :meth:`execute` returns the exit code.
    """

    def __init__(
        self,
        settings: PipelineSettings,
        entries: CheckedEntries,
        *,
        processors: list[BaseProcessor],
        processor_source: ProcessorSource,
        post_processors: list[BasePostProcessor],
        downloader_class: type[Downloader],
        plugin_manager: PipelinePluginManager,
        stop: StopSignal,
        summary: RunSummary,
    ) -> None:
        self.settings = settings
        self.downloader_class = downloader_class
        self.stop = stop
        self.manager = plugin_manager
        self.summary = summary
        self.processors = processors
        self.processor_source = processor_source
        #: The processing threads' places; the watchdog swaps in a replacement for a stuck one.
        self.workers = [ProcessingWorker(processor) for processor in processors]
        self.replacements = 0
        #: The extra processor instance asked before each download, when its class asks.
        self.download_check: BaseProcessor | None = None
        self.post_processors = post_processors
        self.post_calls = [_post_process_caller(pp) for pp in post_processors]
        self.cache = DownloadCache(settings.cache_root, CacheBudget(settings.cache_size))
        self.flow = EntryFlow(
            entries,
            stop,
            self.cache,
            download_queue_size=settings.download_queue_size,
            finished_queue_size=settings.download_queue_size + settings.processing_limit * 2,
        )
        self.notify_files = False  # set once instance hooks are registered
        self.grace_ends: float | None = None
        self.pinning = ThreadPinning(settings.pin_threads)

    # -- processing and post-processing ---------------------------------------------

    def _processing_worker(self, worker: ProcessingWorker) -> None:
        if self.settings.processing_mode == "thread":
            # Process mode: the workers this thread starts must keep every core.
            self.pinning.pin()
        flow = self.flow
        processor = worker.processor
        set_up_error: BaseException | None = None
        if processor is None:
            try:
                processor = self.processor_source.build()
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
                _call_plugin(processor.close, "processor close() failed")

    def _enforce_processing_timeout(self) -> None:
        """Fail each file processed past ``--processing-timeout`` and replace its thread.

        Thread mode only: process mode kills its stuck workers itself
        (:class:`~._process_pool.ProcessProcessor`).  Called from the run's
        main wait loop.
        """
        timeout = self.settings.processing_timeout
        if timeout is None or self.settings.processing_mode != "thread" or self.stop.is_set():
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
                file_data.id,
            )
            file_data.fail(
                "process",
                ProcessingTimeoutError(
                    f"processing took longer than the processing timeout ({timeout:g} s)"
                ),
            )
            # The stuck thread may still hold the file open: unlinking it is safe on POSIX.
            self.flow.discard(file_data.local_path)
            self.flow.finish(sequence, file_data, None)
            self.replacements += 1
            replacement = ProcessingWorker(None)
            replacement.thread = worker_thread(
                self._processing_worker, f"process-{index}-{self.replacements}", replacement
            )
            self.workers[index] = replacement
            replacement.thread.start()

    def _post_process_worker(self) -> None:
        self.pinning.pin()
        summary = self.summary
        for file_data, result in self.flow.finished_entries():
            for call in self.post_calls:
                try:
                    call(result, file_data)
                except BaseException as exc:  # noqa: BLE001 - recorded on the file
                    file_data.fail("post_process", exc)
                    logger.error("post-processor failed on %s: %s", file_data.id, exc)
            summary.record(file_data)
            if self.notify_files:
                notify_observers(self.manager, "file_finished", file_data=file_data, result=result)

    # -- winding down -----------------------------------------------------------------

    def _stop_deadline(self) -> float | None:
        """When in-flight work stops being waited for: None until a stop is requested."""
        if not self.stop.is_set():
            return None
        if self.grace_ends is None:
            self.grace_ends = time.monotonic() + self.settings.stop_grace
        return self.grace_ends

    def _join(self, threads: Callable[[], list[threading.Thread]]) -> None:
        """Wait for the ``threads()`` (asked again each time round); after a stop, only
        until the grace period ends.  Watches ``--processing-timeout`` meanwhile."""
        while alive := [thread for thread in threads() if thread.is_alive()]:
            limit = self._stop_deadline()
            if limit is not None and time.monotonic() >= limit:
                return
            self._enforce_processing_timeout()
            alive[0].join(POLL_INTERVAL)

    def _processing_threads(self) -> list[threading.Thread]:
        return [worker.thread for worker in self.workers if worker.thread is not None]

    # -- orchestration ------------------------------------------------------------

    def execute(self) -> int:
        """Run the stages to the end (or to a stop) and return the exit code."""
        settings = self.settings
        started = time.monotonic()
        downloader: Downloader | None = None
        post_thread = worker_thread(self._post_process_worker, "post-process")
        try:
            self.cache.open()
        except BaseException:
            # An unusable cache root (a CacheError): release the plugins built already.
            self._shut_down(post_thread, None)
            raise
        observers = self._register_instance_hooks()
        try:
            downloader = self.downloader_class(settings)
            if checks_before_download(self.processor_source.cls):
                # Its own instance: the processing ones belong to their threads, or
                # live in worker processes.
                self.download_check = self.processor_source.build()
            notify_observers(
                self.manager,
                "pipeline_started",
                settings=settings,
                progress=RunProgress(self.summary, self.flow),
            )
            stage = DownloadStage(downloader, self.cache, settings, self.stop.event)
            check = self.download_check
            workers = DownloadWorkers(
                stage,
                self.flow,
                settings.download_workers,
                self.pinning,
                None if check is None else check.result_without_download,
            )
            post_thread.start()
            for index, worker in enumerate(self.workers):
                worker.thread = worker_thread(self._processing_worker, f"process-{index}", worker)
            if drives_many(downloader):
                downloads = [worker_thread(drive_fetch_many, "download", downloader, workers)]
            else:
                downloads = workers.threads()
            for thread in self._processing_threads() + downloads:
                thread.start()
            while True:
                try:
                    self._wait_for(downloads)
                    break
                except KeyboardInterrupt:
                    # Library use without signal handlers: the first Ctrl-C stops
                    # gracefully, a second one propagates.
                    if self.stop.is_set():
                        raise
                    self.stop.stop(130)
        finally:
            self._shut_down(post_thread, downloader)
            self._complete_summary(started)
            notify_observers(self.manager, "pipeline_finished", summary=self.summary)
            for name in observers:
                self.manager.unregister(name=name)
        return self._exit_code()

    def _exit_code(self) -> int:
        """The stop's code; 2 for an invalid entry read during the run; 1 if a file failed."""
        if self.summary.stopped_with is not None:
            return self.summary.stopped_with
        if isinstance(self.flow.input_failure, InvalidEntriesError):
            return EXIT_INPUT_ERROR
        return 1 if self.summary.failed or self.flow.input_failure is not None else 0

    def _complete_summary(self, started: float) -> None:
        """Fill in the summary's totals once every thread is done."""
        summary = self.summary
        summary.bytes_downloaded = self.flow.bytes_downloaded
        summary.elapsed = time.monotonic() - started
        # Invalid entries passed over (--skip-invalid) count as failed, with their reasons.
        invalid, reasons = self.flow.invalid
        if invalid:
            summary.invalid = invalid
            summary.invalid_reasons = reasons
            summary.failed += invalid
            summary.failed_by_stage["input"] += invalid
            group = summary.failure_groups.setdefault(
                ("input", "invalid entry"), FailureGroup("invalid entry", "input")
            )
            group.count += invalid
            # Invalid entries have no trustworthy id: their positions stand as examples.
            group.examples.extend(_entry_position(reason) for reason in reasons[:EXAMPLES])
        summary.stopped_with = self.stop.code
        summary.finish()

    def _shut_down(self, post_thread: threading.Thread, downloader: Downloader | None) -> None:
        """Let the post-processor finish what it was given, then release everything."""
        if post_thread.is_alive():
            self.flow.end_finished()
            post_thread.join()
        for post_processor in self.post_processors:
            _call_plugin(post_processor.close, "post-processor close() failed")
        if downloader is not None:
            _call_plugin(downloader.close, "downloader close() failed")
        if self.download_check is not None:
            _call_plugin(self.download_check.close, "processor close() failed")
        # Workers of processing threads abandoned at a stop may still be busy.
        terminate_workers(self.processors)
        self.cache.close()

    def _register_instance_hooks(self) -> list[str]:
        """Let post-processor instances observe this run through ``@hookimpl`` methods.

        Post-processors are registered with the plugin manager for the run's
        duration, so one can, say, record the run summary it receives in
        ``pipeline_finished``.  Returns the names to unregister afterwards.
        """
        names = []
        for index, post_processor in enumerate(self.post_processors):
            name = f"run-{id(self)}-post-processor-{index}"
            if not any(
                self.manager.parse_hookimpl_opts(post_processor, hook) is not None
                for hook in OBSERVER_HOOKS
            ):
                continue
            self.manager.register(post_processor, name=name)
            names.append(name)
        self.notify_files = has_observers(self.manager, "file_finished")
        return names

    def _wait_for(self, downloads: list[threading.Thread]) -> None:
        """Let the workers drain the input, or wind them down after a stop."""
        self._join(lambda: downloads)
        # One end marker per place: a replaced thread never takes another entry.
        self.flow.end_downloads(len(self.workers), self._enforce_processing_timeout)
        self._join(self._processing_threads)
        if self.stop.is_set():
            self.flow.abandon_in_flight()
            self.summary.not_started = self.flow.not_started


def terminate_workers(processors: list[BaseProcessor]) -> None:
    """Stop the worker processes of process mode at once (no-op in thread mode)."""
    # No worker can exist unless process mode imported its module.
    pool = sys.modules.get(f"{__package__}._process_pool")
    if pool is None:
        return
    for processor in processors:
        if isinstance(processor, pool.ProcessProcessor):
            processor.terminate()


def _call_plugin(function: Callable[[], object], failure: str) -> None:
    """Call a plugin's clean-up; whatever it raises is logged, never passed on."""
    try:
        function()
    except BaseException as exc:  # a plugin's SystemExit or own BaseException too
        logger.warning(
            "%s: %s: %s",
            failure,
            type(exc).__name__,
            exc,
            exc_info=logger.isEnabledFor(logging.DEBUG),
        )


def _entry_position(reason: str) -> str:
    """``files.csv: line 3`` of an input error's message: where the invalid entry stands."""
    match = re.match(r"(.*?: (?:line|entry) \d+)", reason)
    return match.group(1) if match else reason
