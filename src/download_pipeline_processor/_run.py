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
import sys
import threading
import time
from typing import Any, Callable

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
from .base_processor import BaseProcessor
from .file_data import FileData
from .plugins import PipelinePluginManager, has_observers, notify_observers
from .settings import PipelineSettings
from .summary import RunSummary

logger = logging.getLogger(__name__)

#: Lifecycle hooks a post-processor instance may implement as ``@hookimpl`` methods.
OBSERVER_HOOKS = ("pipeline_started", "file_finished", "pipeline_finished")

PostProcessCall = Callable[[Any, FileData], None]


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
    watch and the ``summary`` to fill.  :meth:`execute` returns the exit code.
    """

    def __init__(
        self,
        settings: PipelineSettings,
        entries: CheckedEntries,
        *,
        processors: list[BaseProcessor],
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

    def _processing_worker(self, processor: BaseProcessor) -> None:
        if self.settings.processing_mode == "thread":
            # Process mode: the workers this thread starts must keep every core.
            self.pinning.pin()
        flow = self.flow
        try:
            for sequence, file_data in flow.downloaded_entries():
                result = None
                try:
                    result = processor.process(file_data)
                except BaseException as exc:  # noqa: BLE001 - a processor failure fails the file
                    file_data.fail("process", exc)
                # Whatever the processor left at its file's path, only that file fails of it.
                left = flow.discard(file_data.local_path)
                if left is not None and file_data.error is None:
                    file_data.fail("process", left)
                    result = None
                flow.finish(sequence, file_data, result)
        finally:
            _call_plugin(processor.close, "processor close() failed")

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
            if file_data.error is None:
                summary.succeeded += 1
            else:
                summary.failed += 1
                summary.failed_by_stage[file_data.error.stage] += 1
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

    def _join(self, threads: list[threading.Thread]) -> None:
        """Wait for ``threads``; after a stop, only until the grace period ends."""
        for thread in threads:
            while thread.is_alive():
                limit = self._stop_deadline()
                if limit is not None and time.monotonic() >= limit:
                    return
                thread.join(POLL_INTERVAL)

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
            notify_observers(self.manager, "pipeline_started", settings=settings)
            stage = DownloadStage(downloader, self.cache, settings, self.stop.event)
            workers = DownloadWorkers(stage, self.flow, settings.download_workers, self.pinning)
            post_thread.start()
            processing = [
                worker_thread(self._processing_worker, f"process-{i}", processor)
                for i, processor in enumerate(self.processors)
            ]
            if drives_many(downloader):
                downloads = [worker_thread(drive_fetch_many, "download", downloader, workers)]
            else:
                downloads = workers.threads()
            for thread in processing + downloads:
                thread.start()
            while True:
                try:
                    self._wait_for(downloads, processing)
                    break
                except KeyboardInterrupt:
                    # Library use without signal handlers: the first Ctrl-C stops
                    # gracefully, a second one propagates.
                    if self.stop.is_set():
                        raise
                    self.stop.stop(130)
        finally:
            self._shut_down(post_thread, downloader)
            self.summary.bytes_downloaded = self.flow.bytes_downloaded
            self.summary.elapsed = time.monotonic() - started
            self.summary.total = self.summary.succeeded + self.summary.failed
            self.summary.stopped_with = self.stop.code
            notify_observers(self.manager, "pipeline_finished", summary=self.summary)
            for name in observers:
                self.manager.unregister(name=name)
        if self.summary.stopped_with is not None:
            return self.summary.stopped_with
        return 1 if self.summary.failed or self.flow.input_failure is not None else 0

    def _shut_down(self, post_thread: threading.Thread, downloader: Downloader | None) -> None:
        """Let the post-processor finish what it was given, then release everything."""
        if post_thread.is_alive():
            self.flow.end_finished()
            post_thread.join()
        for post_processor in self.post_processors:
            _call_plugin(post_processor.close, "post-processor close() failed")
        if downloader is not None:
            _call_plugin(downloader.close, "downloader close() failed")
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

    def _wait_for(
        self, downloads: list[threading.Thread], processing: list[threading.Thread]
    ) -> None:
        """Let the workers drain the input, or wind them down after a stop."""
        self._join(downloads)
        self.flow.end_downloads(len(processing))
        self._join(processing)
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
