"""The threads of one pipeline run: download workers, processing pool, post-processor.

::

    input --> download workers --> [downloaded queue] --> processing pool --> post-processor
              (N threads)           (bounded)              (M threads)         (1 thread)

Every entry taken from the input reaches the post-processor exactly once,
successful or failed.  Entries in flight are tracked in one table; whoever
hands an entry to the post-processor takes it out of that table first, so an
entry abandoned at a stop is never reported twice.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from . import affinity
from ._cache import DownloadCache
from ._cache_budget import CacheBudget
from ._download_stage import DownloadStage
from ._inputs import CheckedEntries
from .backend import Attempt, Downloader, drives_many
from .base_post_processor import BasePostProcessor
from .base_processor import BaseProcessor
from .errors import PipelineInterrupted, TransientDownloadError
from .file_data import FileData
from .plugins import has_observers, notify_observers
from .summary import RunSummary

if TYPE_CHECKING:
    from pathlib import Path

    from .pipeline import ProcessingPipeline

logger = logging.getLogger(__name__)

#: How often idle workers look at the stop flag, in seconds.
POLL_INTERVAL = 0.1

#: Lifecycle hooks a post-processor instance may implement as ``@hookimpl`` methods.
OBSERVER_HOOKS = ("pipeline_started", "file_finished", "pipeline_finished")

_DONE = object()  # end-of-stream marker on the queues

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
    """The threads and shared state of one :meth:`ProcessingPipeline.run`."""

    def __init__(
        self,
        pipeline: ProcessingPipeline,
        entries: CheckedEntries,
        processors: list[BaseProcessor],
        downloader_class: type[Downloader],
    ) -> None:
        self.pipeline = pipeline
        self.downloader_class = downloader_class
        self.settings = pipeline.settings
        self.stop_event = pipeline._stop_event
        self.manager = pipeline.plugin_manager
        self.summary = pipeline.summary = RunSummary()
        self.processors = processors
        self.post_calls = [_post_process_caller(pp) for pp in pipeline.post_processors]
        self.source = entries
        self.entries = enumerate(entries)
        self.entries_lock = threading.Lock()
        self.in_flight: dict[int, FileData] = {}
        self.in_flight_lock = threading.Lock()
        #: Entries taken out of in_flight and on their way into ``finished``.
        self.handoffs = 0
        self.handoffs_done = threading.Condition(self.in_flight_lock)
        self.bytes_lock = threading.Lock()
        self.downloaded: queue.Queue[Any] = queue.Queue(maxsize=self.settings.download_queue_size)
        post_queue_size = self.settings.download_queue_size + self.settings.processing_limit * 2
        self.finished: queue.Queue[Any] = queue.Queue(maxsize=post_queue_size)
        self.cache = DownloadCache(self.settings.cache_root, CacheBudget(self.settings.cache_size))
        self.notify_files = False  # set once instance hooks are registered
        self.grace_ends: float | None = None
        self.input_failure: Exception | None = None
        #: What a pinned thread may use while widened: the process's CPUs, taken
        #: here (threads started by pinned threads, the feed's helpers, inherit one).
        self.allowed_cpus = _pinnable_cpus() if self.settings.pin_threads else None
        #: The CPU pinned threads share: the lowest of them.
        self.pinned_cpu = min(self.allowed_cpus) if self.allowed_cpus else None

    # -- the three stages -------------------------------------------------------

    def _next_entry(self) -> tuple[int, FileData] | None:
        with self.entries_lock:
            if self.stop_event.is_set():
                return None
            if self.input_failure is not None:
                return None
            try:
                item = next(self.entries, None)
            except Exception as exc:  # noqa: BLE001 - reported once, ends the input
                # Checked up front, so this means the list file changed under the run.
                self.input_failure = exc
                logger.error("reading the file list failed during the run: %s", exc)
                return None
            if item is not None:
                with self.in_flight_lock:
                    self.in_flight[item[0]] = item[1]
            return item

    def _pin(self) -> None:
        """Keep the calling thread on the run's one core, when asked to."""
        if self.pinned_cpu is not None:
            try:
                affinity.pin_thread(self.pinned_cpu, self.allowed_cpus)
            except OSError as exc:
                # The CPU went away under the run (cgroups, taskset): slower, never wrong.
                logger.debug("pinning %s failed: %s", threading.current_thread().name, exc)

    def _download_worker(self, stage: DownloadStage) -> None:
        self._pin()
        while self._wait_for_room() and (item := self._next_entry()) is not None:
            if not self._download_one(stage, *item):
                return  # stopping: the entry stays in flight and is abandoned

    def _wait_for_room(self) -> bool:
        """Wait while the cache is full (--cache-size); the entry stays unread until then."""
        budget = self.cache.budget
        while not budget.has_room():
            if self.stop_event.is_set():
                return False
            budget.wait_for_room(POLL_INTERVAL)
        return True

    def _download_workers(self, stage: DownloadStage, first: int = 0) -> list[threading.Thread]:
        """Download worker threads ``first`` to ``--download-workers`` - 1, not started."""
        return [
            _thread(self._download_worker, f"download-{i}", stage)
            for i in range(first, self.settings.download_workers)
        ]

    def _download_one(
        self,
        stage: DownloadStage,
        sequence: int,
        file_data: FileData,
        attempt: Attempt | None = None,
        failure: TransientDownloadError | None = None,
    ) -> bool:
        """Download one entry and queue it; False when stopping left it unqueued."""
        try:
            size = stage.download(sequence, file_data, attempt, failure)
        except BaseException as exc:  # noqa: BLE001 - every failure is the file's, not the run's
            file_data.fail("download", exc)
            self._finish(sequence, file_data, None)
            return True
        with self.bytes_lock:
            self.summary.bytes_downloaded += size
        return self._put(self.downloaded, (sequence, file_data))

    def _download_driver(self, stage: DownloadStage, downloader: Downloader) -> None:
        """Run a multiplexing backend's ``fetch_many`` on this one thread."""
        from ._feed import RunFeed

        self._pin()
        feed = RunFeed(self, stage)
        error: BaseException | None = None
        try:
            downloader.fetch_many(feed)
        except BaseException as exc:
            logger.error(
                "the downloader failed: %s", exc, exc_info=logger.isEnabledFor(logging.DEBUG)
            )
            error = exc
        feed.close(error)
        if feed.exhausted or self.stop_event.is_set():
            return
        # The backend gave up before the list ended: the rest must not be lost.
        logger.warning("the downloader stopped taking files; the rest go through fetch()")
        workers = self._download_workers(stage, first=1)
        for worker in workers:
            worker.start()
        self._download_worker(stage)
        for worker in workers:
            worker.join()

    def _processing_worker(self, processor: BaseProcessor) -> None:
        if self.settings.processing_mode == "thread":
            # Process mode: the workers this thread starts must keep every core.
            self._pin()
        try:
            while not self.stop_event.is_set():
                try:
                    item = self.downloaded.get(timeout=POLL_INTERVAL)
                except queue.Empty:
                    continue
                if item is _DONE:
                    return
                sequence, file_data = item
                result = None
                try:
                    result = processor.process(file_data)
                except BaseException as exc:  # noqa: BLE001 - a processor failure fails the file
                    file_data.fail("process", exc)
                # Whatever the processor left at its file's path, only that file fails of it.
                left = self._discard(file_data.local_path)
                if left is not None and file_data.error is None:
                    file_data.fail("process", left)
                    result = None
                self._finish(sequence, file_data, result)
        finally:
            _call_plugin(processor.close, "processor close() failed")

    def _post_process_worker(self) -> None:
        self._pin()
        summary = self.summary
        while (item := self.finished.get()) is not _DONE:
            file_data, result = item
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

    # -- hand-offs ----------------------------------------------------------------

    def _finish(self, sequence: int, file_data: FileData, result: Any) -> None:
        """Send an entry to the post-processor unless a stop already abandoned it."""
        with self.in_flight_lock:
            owned = self.in_flight.pop(sequence, None) is not None
            if owned:
                self.handoffs += 1
        if not owned:
            self._discard(file_data.local_path)
            return
        # Not under the lock: a full queue would stall every worker behind it.
        try:
            self.finished.put((file_data, result))
        finally:
            with self.in_flight_lock:
                self.handoffs -= 1
                if not self.handoffs:
                    self.handoffs_done.notify_all()

    def _discard(self, path: Path | None) -> Exception | None:
        """Remove a cached file (see :meth:`DownloadCache.discard`); the error if any is left."""
        try:
            error: Exception | None = self.cache.discard(path)
        except Exception as exc:  # noqa: BLE001 - clean-up must never end a pipeline thread
            error = exc
        if error is not None:
            # What is left goes with the run's folder at the end.
            logger.warning("could not remove %s from the cache: %s", path, error)
        return error

    def _put(self, target: queue.Queue[Any], item: Any) -> bool:
        """Put ``item`` on a bounded queue, giving up (False) once the run is stopping."""
        while True:
            try:
                target.put(item, timeout=POLL_INTERVAL)
                return True
            except queue.Full:
                if self.stop_event.is_set():
                    return False

    def _stop_deadline(self) -> float | None:
        """When in-flight work stops being waited for: None until a stop is requested."""
        if not self.stop_event.is_set():
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

    def _abandon_in_flight(self) -> None:
        """Report every entry still in flight as interrupted, at the stage it was in."""
        with self.in_flight_lock:
            abandoned = sorted(self.in_flight.items())
            self.in_flight.clear()
        # Taken out of in_flight above, so no worker can hand these off as well.
        for _, file_data in abandoned:
            stage = "download" if file_data.local_path is None else "process"
            file_data.fail(stage, PipelineInterrupted("run stopped before this file finished"))
            self._discard(file_data.local_path)
            self.finished.put((file_data, None))

    # -- orchestration ------------------------------------------------------------

    def execute(self) -> int:
        """Run the stages to the end (or to a stop) and return the exit code."""
        settings = self.settings
        started = time.monotonic()
        downloader: Downloader | None = None
        post_thread = _thread(self._post_process_worker, "post-process")
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
            stage = DownloadStage(downloader, self.cache, settings, self.stop_event)
            post_thread.start()
            processing = [
                _thread(self._processing_worker, f"process-{i}", processor)
                for i, processor in enumerate(self.processors)
            ]
            if drives_many(downloader):
                downloads = [_thread(self._download_driver, "download", stage, downloader)]
            else:
                downloads = self._download_workers(stage)
            for thread in processing + downloads:
                thread.start()
            while True:
                try:
                    self._wait_for(downloads, processing)
                    break
                except KeyboardInterrupt:
                    # Library use without signal handlers: the first Ctrl-C stops
                    # gracefully, a second one propagates.
                    if self.stop_event.is_set():
                        raise
                    self.pipeline.stop(130)
        finally:
            self._shut_down(post_thread, downloader)
            self.summary.elapsed = time.monotonic() - started
            self.summary.total = self.summary.succeeded + self.summary.failed
            self.summary.stopped_with = self.pipeline._stop_code
            notify_observers(self.manager, "pipeline_finished", summary=self.summary)
            for name in observers:
                self.manager.unregister(name=name)
        if self.summary.stopped_with is not None:
            return self.summary.stopped_with
        return 1 if self.summary.failed or self.input_failure is not None else 0

    def _shut_down(self, post_thread: threading.Thread, downloader: Downloader | None) -> None:
        """Let the post-processor finish what it was given, then release everything."""
        if post_thread.is_alive():
            with self.in_flight_lock:
                # No late hand-off may land behind the end-of-stream marker.
                while self.handoffs:
                    self.handoffs_done.wait()
            self.finished.put(_DONE)
            post_thread.join()
        for post_processor in self.pipeline.post_processors:
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
        for index, post_processor in enumerate(self.pipeline.post_processors):
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
        for _ in processing:
            if not self._put(self.downloaded, _DONE):
                break
        self._join(processing)
        if self.stop_event.is_set():
            self._abandon_in_flight()
            self._count_not_started()

    def _count_not_started(self) -> None:
        # From the checking pass's count: reading the rest of a long list at a
        # stop would delay the exit by as long as the reading takes.
        with self.entries_lock:
            self.summary.not_started = self.source.remaining


def _pinnable_cpus() -> set[int] | None:
    """The CPUs this process may use, or None where threads cannot be pinned."""
    if not hasattr(os, "sched_setaffinity"):
        logger.warning("--pin-threads: this platform cannot pin threads; ignored")
        return None
    return os.sched_getaffinity(0)


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


def _thread(target: Callable[..., None], name: str, *args: Any) -> threading.Thread:
    # Daemon threads: a worker stuck in user code past the grace period must not
    # keep the process alive after the run has reported it abandoned.
    return threading.Thread(target=target, name=f"dpp-{name}", args=args, daemon=True)
