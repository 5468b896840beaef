"""The pipeline's public face: choosing plugins, checking options, starting a run.

The threads that do the work live in :mod:`.run`; this module resolves names
to classes, builds processor and post-processor instances (so mistakes are
usage errors before any download) and hands them to a :class:`~.run.PipelineRun`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, Union

from .base_post_processor import BasePostProcessor
from .base_processor import BaseProcessor
from .errors import PluginError, PluginOptionError
from .inputs import FileListSource, load_file_list
from .options import resolve_options
from .plugins import PipelinePluginManager, create_plugin_manager
from .registry import DOWNLOADER, POST_PROCESSOR, PROCESSOR, PluginKind, PluginRegistry
from .run import PipelineRun, terminate_workers
from .settings import PipelineSettings
from .summary import RunSummary

ProcessorSpec = Union[str, type[BaseProcessor]]
PostProcessorSpec = Union[str, type[BasePostProcessor], BasePostProcessor]


def build_plugin(plugin_class: type, raw_options: Mapping[str, Any], label: str) -> Any:
    """Instantiate a plugin class with options checked against its declaration."""
    options = resolve_options(plugin_class, raw_options, label)
    try:
        return plugin_class(**options)
    except TypeError as exc:
        raise PluginOptionError(f"{label}: {exc}") from exc
    except Exception as exc:
        raise PluginError(f"{label}: cannot be set up: {type(exc).__name__}: {exc}") from exc


class ProcessingPipeline:
    """Downloads, processes and post-processes a list of files.

    ``processor`` and each ``post_processor`` are registered names, classes or
    (post-processors only) ready instances.  Settings come from ``settings``
    or as keyword arguments (``download_workers=8``).  :meth:`run` returns the
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
        plugin_manager: PipelinePluginManager | None = None,
        registry: PluginRegistry | None = None,
        **setting_changes: Any,
    ) -> None:
        base = settings or PipelineSettings()
        self.settings = base.evolve(**setting_changes) if setting_changes else base
        if registry is not None:
            plugin_manager = registry.manager
        self.plugin_manager = plugin_manager or create_plugin_manager()
        # A caller that already collected the registrations (the CLI) passes them
        # in, so every plugin's register hooks run once per run, not twice.
        self._registry: PluginRegistry | None = registry
        self.processor_class = self._resolve(PROCESSOR, processor)
        self.processor_options = dict(processor_options or {})
        self._post_specs = self._resolve_post_processors(post_processor, post_processor_options)
        #: The post-processor instances of the latest run.
        self.post_processors: list[BasePostProcessor] = []
        self.summary = RunSummary()
        self._stop_event = threading.Event()
        self._stop_code: int | None = None

    # -- set-up -----------------------------------------------------------------

    @property
    def registry(self) -> PluginRegistry:
        """The names the installed plugins registered (built on first use)."""
        if self._registry is None:
            self._registry = PluginRegistry(self.plugin_manager)
        return self._registry

    def _resolve(self, kind: PluginKind, spec: Any) -> type:
        if isinstance(spec, str):
            return self.registry.resolve(kind, spec)
        if isinstance(spec, type) and issubclass(spec, kind.base):
            return spec
        raise PluginError(f"{kind.label} {spec!r} is not a name or a {kind.base.__name__} subclass")

    def _resolve_post_processors(
        self,
        specs: PostProcessorSpec | Sequence[PostProcessorSpec],
        options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
    ) -> list[tuple[BasePostProcessor | type, Mapping[str, Any], str]]:
        """Resolve names and check options now, so mistakes surface before any run."""
        spec_list = list(specs) if isinstance(specs, (list, tuple)) else [specs]
        if options is None:
            option_list: list[Mapping[str, Any]] = [{} for _ in spec_list]
        elif isinstance(options, Mapping):
            option_list = [options for _ in spec_list]
        else:
            option_list = list(options)
        if len(option_list) != len(spec_list):
            raise PluginOptionError("post-processor options do not match the post-processors")
        resolved: list[tuple[BasePostProcessor | type, Mapping[str, Any], str]] = []
        for spec, raw in zip(spec_list, option_list):
            label = f"post-processor {_label(spec)}"
            if isinstance(spec, BasePostProcessor):
                resolved.append((spec, {}, label))
                continue
            cls = self._resolve(POST_PROCESSOR, spec)
            resolve_options(cls, raw, label)
            resolved.append((cls, raw, label))
        return resolved

    def _build_post_processors(self) -> list[BasePostProcessor]:
        """Fresh instances for one run; instances the caller passed in are reused as given."""
        return [
            spec if isinstance(spec, BasePostProcessor) else build_plugin(spec, raw, label)
            for spec, raw, label in self._post_specs
        ]

    def _build_processors(self) -> list[BaseProcessor]:
        label = f"processor {_label(self.processor_class)}"
        if self.settings.processing_mode == "process":
            from .process_pool import start_process_processors

            options = resolve_options(self.processor_class, self.processor_options, label)
            return list(
                start_process_processors(
                    self.processor_class, options, label, self.settings.processing_limit
                )
            )
        return [
            build_plugin(self.processor_class, self.processor_options, label)
            for _ in range(self.settings.processing_limit)
        ]

    # -- control ----------------------------------------------------------------

    def stop(self, exit_code: int = 130) -> None:
        """Ask a running pipeline to stop gracefully; safe from a signal handler."""
        if self._stop_code is None:
            self._stop_code = exit_code
        self._stop_event.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop_event.is_set()

    # -- the run ------------------------------------------------------------------

    def run(self, files: FileListSource) -> int:
        """Run every entry of ``files`` through the stages and return the exit code.

        Raises a :class:`~download_pipeline_processor.errors.UsageError` before
        any download when the input or a plugin's options are invalid.
        """
        entries = load_file_list(files, self.settings.allowed_schemes)
        downloader_class = self.registry.resolve(DOWNLOADER, self.settings.downloader_name)
        processors = self._build_processors()
        try:
            self.post_processors = self._build_post_processors()
        except BaseException:
            terminate_workers(processors)
            raise
        return PipelineRun(self, entries, processors, downloader_class).execute()


def _label(spec: Any) -> str:
    if isinstance(spec, str):
        return repr(spec)
    if isinstance(spec, type):
        return spec.__name__
    return type(spec).__name__
