"""The pipeline's public face: choosing plugins, checking options, starting a run.

The threads that do the work live in :mod:`.run`; the choices (classes,
options, input) are made once in a :class:`~.plan.RunPlan`, so mistakes are
usage errors before any download.  This module builds the plan, the plugin
instances of each run from it, and hands them to a :class:`~._run.PipelineRun`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ._inputs import FileListSource
from ._plugins import PipelinePluginManager, create_plugin_manager
from ._registry import PluginRegistry
from ._run import PipelineRun, holds_results
from ._stop_signal import StopSignal
from .base_post_processor import BasePostProcessor
from .plan import (
    ExecutorSpec,
    PluginChoice,
    PostProcessorSpec,
    ProcessorSpec,
    RunPlan,
    plan_run,
)
from .settings import PipelineSettings
from .summary import RunSummary

if TYPE_CHECKING:
    from ._journal import Journal

__all__ = [
    "ExecutorSpec",
    "PostProcessorSpec",
    "ProcessingPipeline",
    "ProcessorSpec",
    "build_plugin",
]


def build_plugin(plugin_class: type, raw_options: Mapping[str, Any], label: str) -> Any:
    """Instantiate a plugin class with options checked against its declaration."""
    return PluginChoice.resolve(plugin_class, raw_options, label).build()


class ProcessingPipeline:
    """Downloads, processes and post-processes a list of files.

    ``processor`` and each ``post_processor`` are registered names, classes or
    (post-processors only) ready instances; ``executor`` (a name or class,
    ``local`` by default) runs the downloads and processing, with
    ``executor_options``.  Settings come from ``settings`` or as keyword
    arguments (``download_workers=8``).  :meth:`run` returns the
    exit code (0, 1, 130, 143); :attr:`summary` holds the counts afterwards.
    """

    def __init__(
        self,
        processor: ProcessorSpec = "dummy",
        post_processor: PostProcessorSpec | Sequence[PostProcessorSpec] = "dummy",
        *,
        settings: PipelineSettings | None = None,
        processor_options: Mapping[str, Any] | None = None,
        post_processor_options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        executor: ExecutorSpec = "local",
        executor_options: Mapping[str, Any] | None = None,
        plugin_manager: PipelinePluginManager | None = None,
        registry: PluginRegistry | None = None,
        **setting_changes: Any,
    ) -> None:
        base = settings or PipelineSettings()
        run_settings = base.evolve(**setting_changes) if setting_changes else base
        if registry is None:
            registry = PluginRegistry(plugin_manager or create_plugin_manager())
        self._adopt(
            plan_run(
                processor,
                post_processor,
                # A caller that already collected the registrations passes them in,
                # so every plugin's register hooks run once per run, not twice.
                registry=registry,
                settings=run_settings,
                processor_options=processor_options,
                post_processor_options=post_processor_options,
                executor=executor,
                executor_options=executor_options,
            )
        )

    @classmethod
    def from_plan(cls, plan: RunPlan) -> ProcessingPipeline:
        """A pipeline running ``plan``, whose choices are all made already (the CLI's way)."""
        pipeline = cls.__new__(cls)
        pipeline._adopt(plan)
        return pipeline

    def _adopt(self, plan: RunPlan) -> None:
        #: Every choice of the runs: classes, resolved options (and input, once).
        self.plan = plan
        self.settings = plan.settings
        self.plugin_manager: PipelinePluginManager = plan.registry.manager
        #: The post-processor instances of the latest run.
        self.post_processors: list[BasePostProcessor] = []
        self.summary = RunSummary()
        self._stop = StopSignal()

    # -- set-up -----------------------------------------------------------------

    @property
    def registry(self) -> PluginRegistry:
        """The names the installed plugins registered."""
        return self.plan.registry

    @property
    def processor_class(self) -> type:
        """The processor class every processing slot gets an instance of."""
        return self.plan.processor.cls

    @property
    def processor_options(self) -> dict[str, Any]:
        """The processor's keyword arguments, checked and converted."""
        return dict(self.plan.processor.options)

    # -- control ----------------------------------------------------------------

    def stop(self, exit_code: int = 130) -> None:
        """Ask a running pipeline to stop gracefully; safe from a signal handler."""
        self._stop.stop(exit_code)

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    # -- the run ------------------------------------------------------------------

    def run(self, files: FileListSource | None = None) -> int:
        """Run every entry of ``files`` through the stages and return the exit code.

        ``files`` may be left out when the pipeline's plan holds its checked
        input (:meth:`from_plan`).  Raises a
        :class:`~download_pipeline_processor.errors.UsageError` before any
        download when the input is invalid.
        """
        plan = self.plan
        entries = plan.checked_entries(files)
        # The plan's input is read by this run; the next one needs its own.
        self.plan = replace(plan, entries=None)
        journal = self._open_journal()
        executor = None
        try:
            if journal is not None:
                entries.skipping(journal.already_done)
            executor = plan.build_executor()
            executor.open(plan.stage_spec)
            self.post_processors = plan.build_post_processors()
        except BaseException:
            if executor is not None:
                executor.close()
            if journal is not None:
                journal.close()
            raise
        self.summary = RunSummary()
        post_processors = self.post_processors
        on_published = None
        if journal is not None:
            journal.summary = self.summary
            # Last, so a file is recorded once every post-processor is done with
            # it (and published by those that hold files); the run closes it
            # last too, committing the rest and freeing it.
            recorder = journal.recorder([pp for pp in post_processors if holds_results(pp)])
            post_processors = [*post_processors, recorder]
            on_published = recorder.published
        run = PipelineRun(
            self.settings,
            entries,
            executor=executor,
            spec=plan.stage_spec,
            post_processors=post_processors,
            plugin_manager=self.plugin_manager,
            stop=self._stop,
            summary=self.summary,
            on_published=on_published,
        )
        try:
            return run.execute()
        finally:
            if journal is not None:
                journal.close()

    def _open_journal(self) -> Journal | None:
        """The run's hold on ``--journal``, or None without one; a busy journal is a usage error."""
        if self.settings.journal is None:
            return None
        # Imported here: a run without a journal needs neither sqlite3 nor hashlib.
        from ._journal import Journal

        return Journal(self.settings.journal, skip_failed=self.settings.skip_failed)
