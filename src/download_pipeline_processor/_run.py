"""One pipeline run on the machine that started it: executor, post-processor, summary.

::

    input --> executor (download, process) --> [finished queue] --> post-processors
              (local: threads and processes;     (bounded)          (1 thread)
               dask: worker processes anywhere)

The executor (:mod:`.executor`) takes entries from the run's
:class:`~._flow.EntryFlow` and hands each back once; everything else (the
post-processors, the observers, the summary and the exit code) stays here,
whichever executor runs the stages.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Callable

from ._cache import DownloadCache
from ._cache_budget import CacheBudget
from ._flow import EntryFlow, RunWork
from ._inputs import CheckedEntries
from ._plugins import PipelinePluginManager, has_observers, notify_observers
from ._stop_signal import EXIT_CLOSED_OUTPUT, StopSignal, is_closed_stdout
from ._threads import ThreadPinning, call_plugin, worker_thread
from .base_post_processor import BasePostProcessor
from .errors import ExecutorError, InvalidEntriesError, PipelineInterrupted
from .executor import BaseExecutor, StageSpec
from .file_data import FileData
from .redact import shorten
from .run_progress import RunProgress
from .settings import PipelineSettings
from .summary import EXAMPLES, FailureGroup, RunSummary

logger = logging.getLogger(__name__)

#: Lifecycle hooks a post-processor instance may implement as ``@hookimpl`` methods.
OBSERVER_HOOKS = ("pipeline_started", "file_finished", "pipeline_finished")

PostProcessCall = Callable[[Any, FileData], None]
#: Told which files a holding post-processor (``holds_results``) published.
PublishedCall = Callable[[BasePostProcessor, list[FileData]], None]

#: The exit code of a run whose input (standard input, checked as it is read)
#: held an invalid entry: the same as an input error found before the run.
EXIT_INPUT_ERROR = 2


def holds_results(post_processor: object) -> bool:
    """True for a post-processor that publishes files later (``holds_results``)."""
    # getattr: a registered class need not derive from BasePostProcessor.
    return bool(getattr(post_processor, "holds_results", False))


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
    """One :meth:`ProcessingPipeline.run` on the machine that started it.

    The run's executor (``local``, ``dask``, ...) downloads and processes the
    entries; this class gives it the checked ``entries`` through a
    :class:`~._flow.RunWork`, runs the ``post_processors`` on one thread for
    every entry it hands back, notifies the observers (``plugin_manager``),
    fills the ``summary`` and decides the exit code.  ``executor`` is opened
    already; :meth:`execute` runs it, closes it and returns the exit code.
    """

    def __init__(
        self,
        settings: PipelineSettings,
        entries: CheckedEntries,
        *,
        executor: BaseExecutor,
        spec: StageSpec,
        post_processors: list[BasePostProcessor],
        plugin_manager: PipelinePluginManager,
        stop: StopSignal,
        summary: RunSummary,
        on_published: PublishedCall | None = None,
    ) -> None:
        self.settings = settings
        self.executor = executor
        self.stop = stop
        self.manager = plugin_manager
        self.summary = summary
        self.post_processors = post_processors
        self.post_calls = [_post_process_caller(pp) for pp in post_processors]
        self.on_published = on_published
        self.cache = DownloadCache(settings.cache_root, CacheBudget(settings.cache_size))
        self.flow = EntryFlow(
            entries,
            stop,
            self.cache,
            download_queue_size=settings.download_queue_size,
            finished_queue_size=settings.download_queue_size + settings.processing_limit * 2,
        )
        self.work = RunWork(spec, self.flow, self._started)
        self.notify_files = False  # set once instance hooks are registered
        self.pinning = ThreadPinning(settings.pin_threads)
        self._post_thread = worker_thread(self._post_process_worker, "post-process")
        self._started_once = False
        #: The executor gave up (:class:`~.errors.ExecutorError`): the run fails.
        self.executor_failed = False

    # -- post-processing ------------------------------------------------------------

    def _started(self) -> None:
        """The executor is set up: the observers hear of the run (once)."""
        if self._started_once:
            return
        self._started_once = True
        notify_observers(
            self.manager,
            "pipeline_started",
            settings=self.settings,
            progress=RunProgress(self.summary, self.flow),
        )

    def _post_process_worker(self) -> None:
        self.pinning.pin()
        summary = self.summary
        for file_data, result in self.flow.finished_entries():
            published: list[tuple[BasePostProcessor, list[FileData]]] = []
            for post_processor, call in zip(self.post_processors, self.post_calls):
                try:
                    call(result, file_data)
                except BaseException as exc:  # noqa: BLE001 - recorded on the file
                    if is_closed_stdout(exc):
                        # The reader of standard output left (``| head``): it wants
                        # nothing more; the run stops quietly.  The file did not
                        # fail, but its output never arrived: it is interrupted,
                        # so a journal does not hold it as done.
                        self.stop.stop(EXIT_CLOSED_OUTPUT)
                        if file_data.error is None:
                            file_data.fail("post_process", PipelineInterrupted("output closed"))
                        continue
                    file_data.fail("post_process", exc)
                    logger.error("post-processor failed on %s: %s", shorten(str(file_data.id)), exc)
                    if holds_results(post_processor):
                        # It failed on the file: it holds nothing of it to publish.
                        published.append((post_processor, [file_data]))
                if holds_results(post_processor):
                    published.append((post_processor, self._take_published(post_processor)))
            # Told once the whole chain has seen the file: the journal's recorder,
            # last, has then prepared its row, whichever files were published.
            for holder, files in published:
                self._tell_published(holder, files)
            summary.record(file_data)
            if self.notify_files:
                notify_observers(self.manager, "file_finished", file_data=file_data, result=result)

    @staticmethod
    def _take_published(holder: BasePostProcessor) -> list[FileData]:
        """What ``holder`` published since it was last asked; none if asking fails."""
        try:
            return list(holder.take_published())
        except BaseException as exc:  # noqa: BLE001 - a plugin's failure, logged
            # Files it never returns are not recorded: a rerun does them again.
            logger.error(
                "post-processor take_published() failed: %s: %s", type(exc).__name__, exc
            )
            return []

    def _tell_published(self, holder: BasePostProcessor, files: list[FileData]) -> None:
        if files and self.on_published is not None:
            try:
                self.on_published(holder, files)
            except Exception as exc:  # noqa: BLE001 - the run goes on; the journal retries
                logger.error("recording published files failed: %s", exc)

    # -- orchestration ------------------------------------------------------------

    def execute(self) -> int:
        """Run the executor to the end (or to a stop) and return the exit code."""
        started = time.monotonic()
        observers = self._register_instance_hooks()
        try:
            self._post_thread.start()
            try:
                self.executor.run(self.work)
            except ExecutorError as exc:
                # Nothing more will come back: what is out is reported as interrupted.
                logger.error("the run stops: %s", exc, exc_info=logger.isEnabledFor(logging.DEBUG))
                self.executor_failed = True
            except KeyboardInterrupt:
                # A second Ctrl-C in library use, past the executor's graceful stop.
                self.stop.stop(130)
                raise
            finally:
                if self.stop.is_set() or self.executor_failed:
                    self.flow.abandon_in_flight()
                    self.summary.not_started = self.flow.not_started
        finally:
            self._shut_down()
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
        failed = self.summary.failed or self.executor_failed
        return 1 if failed or self.flow.input_failure is not None else 0

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

    def _shut_down(self) -> None:
        """Let the post-processor finish what it was given, then release everything."""
        if self._post_thread.is_alive():
            self.flow.end_finished()
            self._post_thread.join()
        for post_processor in self.post_processors:
            call_plugin(post_processor.close, "post-processor close() failed")
            if holds_results(post_processor):
                self._tell_published(post_processor, self._take_published(post_processor))
        call_plugin(self.executor.close, "executor close() failed")
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


def _entry_position(reason: str) -> str:
    """``files.csv: line 3`` of an input error's message: where the invalid entry stands."""
    match = re.match(r"(.*?: (?:line|entry|row) \d+)", reason)
    return match.group(1) if match else reason
