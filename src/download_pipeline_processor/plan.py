"""The run plan: every choice of a run made once, before any work starts.

:func:`plan_run` resolves the processor, the post-processors and the
downloader to classes, checks and converts each plugin's options (one
:func:`~.options.resolve_options` per plugin) and, when given the input,
checks every entry.  A mistake in any of them is a usage error raised here,
before a download.  Building the plugin instances of a run then only calls
the classes with the options already resolved.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Callable, Union

from ._input_formats import InputFormats
from ._inputs import CheckedEntries, FileListSource, load_file_list
from ._registry import (
    DOWNLOADER,
    EXECUTOR,
    POST_PROCESSOR,
    PROCESSOR,
    PluginKind,
    PluginRegistry,
)
from .backend import Downloader
from .base_post_processor import BasePostProcessor
from .base_processor import BaseProcessor
from .errors import PluginError, PluginOptionError, UsageError
from .executor import BaseExecutor, StageSpec
from .options import declared_options, resolve_options
from .paths import output_path_problem
from .settings import PipelineSettings

__all__ = [
    "STDOUT",
    "ExecutorSpec",
    "PluginChoice",
    "PostProcessorOptions",
    "PostProcessorSpec",
    "ProcessorSpec",
    "RunPlan",
    "append_under_journal",
    "check_distinct_outputs",
    "check_output_paths",
    "load_settings_input",
    "output_paths",
    "plan_run",
    "split_post_processor_options",
]


logger = logging.getLogger(__name__)

ProcessorSpec = Union[str, type[BaseProcessor]]
PostProcessorSpec = Union[str, type[BasePostProcessor], BasePostProcessor]
ExecutorSpec = Union[str, type[BaseExecutor]]
PostProcessorOptions = Union[Mapping[str, Any], Sequence[Mapping[str, Any]]]


@dataclass(frozen=True)
class PluginChoice:
    """One selected plugin class with its options checked and converted."""

    cls: type
    #: The keyword arguments the class is called with, already converted.
    options: Mapping[str, Any]
    #: How errors name the plugin: ``processor 'checksum'``.
    label: str
    #: A ready post-processor the caller passed in: used as given, never rebuilt.
    instance: Any = None

    @classmethod
    def resolve(
        cls, plugin_class: type, raw_options: Mapping[str, Any], label: str
    ) -> PluginChoice:
        """Check ``raw_options`` against what ``plugin_class`` declares."""
        return cls(plugin_class, resolve_options(plugin_class, raw_options, label), label)

    def build(self) -> Any:
        """A new instance (or the ready one); a failing constructor is a plugin error."""
        if self.instance is not None:
            return self.instance
        try:
            return self.cls(**self.options)
        except TypeError as exc:
            raise PluginOptionError(f"{self.label}: {exc}") from exc
        except Exception as exc:
            raise PluginError(
                f"{self.label}: cannot be set up: {type(exc).__name__}: {exc}"
            ) from exc


@dataclass(frozen=True)
class RunPlan:
    """What a run does: settings, plugin classes with their options, and the input."""

    settings: PipelineSettings
    registry: PluginRegistry
    processor: PluginChoice
    post_processors: tuple[PluginChoice, ...]
    downloader_class: type[Downloader]
    #: Where downloads and processing run (``--executor``), with its options.
    executor: PluginChoice
    #: The checked input; read by one run.  None until given (:meth:`with_entries`).
    entries: CheckedEntries | None = None

    def checked_entries(self, files: FileListSource | None) -> CheckedEntries:
        """``files`` checked (returned as is when checked already), or the plan's own input."""
        if files is not None:
            return load_settings_input(files, self.settings, self.registry.input_formats)
        if self.entries is None:
            raise UsageError("no list of files to run")
        return self.entries

    @property
    def stage_spec(self) -> StageSpec:
        """What the executor's download and processing stages need, wherever they run."""
        return StageSpec(self.settings, self.processor, self.downloader_class)

    def build_executor(self) -> BaseExecutor:
        """A new instance of the run's executor, with its options."""
        executor: BaseExecutor = self.executor.build()
        return executor

    def build_post_processors(self) -> list[BasePostProcessor]:
        """Fresh instances for one run; ready instances the caller passed in as given."""
        return [choice.build() for choice in self.post_processors]


def plan_run(
    processor: ProcessorSpec = "dummy",
    post_processor: PostProcessorSpec | Sequence[PostProcessorSpec] = "dummy",
    *,
    registry: PluginRegistry | Callable[[], PluginRegistry],
    settings: PipelineSettings,
    processor_options: Mapping[str, Any] | None = None,
    post_processor_options: PostProcessorOptions | None = None,
    routed_post_processor_options: Mapping[str, str] | None = None,
    executor: ExecutorSpec = "local",
    executor_options: Mapping[str, Any] | None = None,
    files: FileListSource | None = None,
    input_formats: InputFormats | None = None,
) -> RunPlan:
    """Resolve every choice of a run once; raise a usage error for the first mistake.

    ``post_processor_options`` is one mapping for every post-processor or one
    per post-processor.  ``routed_post_processor_options`` are ``KEY=VALUE``
    pairs as ``--post-processor-option`` takes them (see
    :func:`split_post_processor_options`); ``executor`` (a name or class) runs
    the downloads and processing, with ``executor_options``.  ``files``
    is checked first, so a bad input is the error a user sees; ``registry``
    may be a callable making it, called after that check, and
    ``input_formats`` the formats that check reads (the registry's, when it
    is given made; else the built-in ones).
    """
    if input_formats is None and isinstance(registry, PluginRegistry):
        input_formats = registry.input_formats
    entries = None if files is None else load_settings_input(files, settings, input_formats)
    if not isinstance(registry, PluginRegistry):
        registry = registry()
    processor_choice = PluginChoice.resolve(
        _resolve(registry, PROCESSOR, processor),
        processor_options or {},
        f"processor {_label(processor)}",
    )
    specs: list[Any] = (
        list(post_processor) if isinstance(post_processor, (list, tuple)) else [post_processor]
    )
    post_classes = [
        spec if isinstance(spec, BasePostProcessor) else _resolve(registry, POST_PROCESSOR, spec)
        for spec in specs
    ]
    if routed_post_processor_options is not None:
        if post_processor_options is not None:
            raise PluginOptionError(
                "give post-processor options either routed or per post-processor, not both"
            )
        post_processor_options = split_post_processor_options(
            [_label(spec, quote=False) for spec in specs],
            [type(cls) if isinstance(cls, BasePostProcessor) else cls for cls in post_classes],
            routed_post_processor_options,
        )
    post_processor_choices = _post_processor_choices(specs, post_classes, post_processor_options)
    if settings.journal is not None:
        post_processor_choices = tuple(map(append_under_journal, post_processor_choices))
    check_distinct_outputs(post_processor_choices)
    check_output_paths(post_processor_choices)
    executor_choice = PluginChoice.resolve(
        _resolve(registry, EXECUTOR, executor),
        executor_options or {},
        f"executor {_label(executor)}",
    )
    return RunPlan(
        settings=settings,
        registry=registry,
        processor=processor_choice,
        post_processors=post_processor_choices,
        downloader_class=registry.resolve(DOWNLOADER, settings.downloader_name),
        executor=executor_choice,
        entries=entries,
    )


def load_settings_input(
    files: FileListSource, settings: PipelineSettings, formats: InputFormats | None = None
) -> CheckedEntries:
    """``files`` checked as ``settings`` say: schemes, format, invalid entries skipped or not."""
    return load_file_list(
        files,
        settings.allowed_schemes,
        input_format=settings.input_format,
        skip_invalid=settings.skip_invalid,
        formats=formats,
    )


def split_post_processor_options(
    names: Sequence[str], classes: Sequence[type], raw: Mapping[str, str]
) -> list[dict[str, str]]:
    """Give each post-processor its options.

    ``NAME.KEY=VALUE`` targets the post-processor selected as NAME; a plain
    ``KEY=VALUE`` goes to every selected post-processor that declares KEY (or
    declares nothing), and is an error when none does.
    """
    split: list[dict[str, str]] = [{} for _ in names]
    for key, value in raw.items():
        target, dot, option = key.partition(".")
        if dot and target in names:
            split[list(names).index(target)][option] = value
            continue
        takers = [
            index
            for index, cls in enumerate(classes)
            if (declared := declared_options(cls)) is None
            or any(opt.name == key for opt in declared)
        ]
        if not takers:
            raise PluginOptionError(
                f"--post-processor-option {key!r}: no selected post-processor "
                f"({', '.join(names)}) accepts it"
            )
        for index in takers:
            split[index][key] = value
    return split


#: How an output option names standard output.
STDOUT = "-"


def check_distinct_outputs(choices: Sequence[PluginChoice]) -> None:
    """Refuse two post-processors writing one file (or both standard output).

    Each writes its own lines with its own buffer, so sharing a file
    interleaves or overwrites them.  Output options are those declared with
    ``Option(..., output=True)``; an option not given counts with its default.
    Paths are compared resolved (``os.path.realpath``), so ``./x`` and ``x``
    are one file.
    """
    writers: dict[str, str] = {}
    for writer, text in output_paths(choices):
        key = STDOUT if text == STDOUT else os.path.realpath(text)
        shown = "standard output" if key == STDOUT else repr(text)
        if key in writers:
            raise PluginOptionError(
                f"{writers[key]} and {writer} would both write to {shown}; give each its own file"
            )
        writers[key] = writer


def output_paths(choices: Sequence[PluginChoice]) -> list[tuple[str, str]]:
    """``(writer, path)`` for every file the post-processors will write, as given.

    The writer names the post-processor and its option; ``-`` (standard
    output) and URLs (a plugin's remote storage) are included as given.
    """
    paths = []
    for choice in choices:
        if choice.instance is not None:
            continue  # built by the caller: its options are not known here
        for option in declared_options(choice.cls) or ():
            if not option.output:
                continue
            value = choice.options.get(option.name, option.default)
            if value is None or value == "":
                continue
            paths.append((f"{choice.label} (option {option.name})", os.fspath(value)))
    return paths


def check_output_paths(choices: Sequence[PluginChoice]) -> None:
    """Refuse a post-processor output file that could not be written, before any work.

    A missing folder or one that cannot be written would otherwise fail
    only once the first file reaches the post-processor.
    """
    for writer, path in output_paths(choices):
        if path == STDOUT or "://" in path:
            continue  # standard output, or a URL a plugin writes to by its own means
        problem = output_path_problem(path)
        if problem is not None:
            raise PluginOptionError(f"{writer}: {path}: {problem}")


def append_under_journal(choice: PluginChoice) -> PluginChoice:
    """``choice`` as a run with a journal makes it: appending to its output file.

    Options declared with ``Option(..., appends_under_journal=True)`` default
    to true, so a rerun adds to what earlier runs wrote instead of replacing
    it.  An explicit false is kept, with a warning.
    """
    if choice.instance is not None:
        return choice  # built by the caller: its options are not known here
    declared = declared_options(choice.cls) or ()
    options = dict(choice.options)
    for option in declared:
        if not option.appends_under_journal:
            continue
        if option.name not in options:
            options[option.name] = True
            continue
        if options[option.name] is False:
            outputs = [
                os.fspath(value)
                for out in declared
                if out.output and (value := options.get(out.name, out.default)) not in (None, "")
            ]
            files = [text for text in outputs if text != STDOUT]
            if files:
                logger.warning(
                    "%s: %s=false with --journal: a rerun replaces %s, losing what "
                    "earlier runs wrote to it",
                    choice.label,
                    option.name,
                    " and ".join(files),
                )
    if options == choice.options:
        return choice
    return replace(choice, options=options)


def _post_processor_choices(
    specs: Sequence[PostProcessorSpec],
    classes: Sequence[Any],
    options: PostProcessorOptions | None,
) -> tuple[PluginChoice, ...]:
    if options is None:
        option_list: list[Mapping[str, Any]] = [{} for _ in specs]
    elif isinstance(options, Mapping):
        option_list = [options for _ in specs]
    else:
        option_list = list(options)
    if len(option_list) != len(specs):
        raise PluginOptionError("post-processor options do not match the post-processors")
    choices = []
    for spec, cls, raw in zip(specs, classes, option_list):
        label = f"post-processor {_label(spec)}"
        if isinstance(cls, BasePostProcessor):
            choices.append(PluginChoice(type(cls), {}, label, instance=cls))
        else:
            choices.append(PluginChoice.resolve(cls, raw, label))
    return tuple(choices)


def _resolve(registry: PluginRegistry, kind: PluginKind, spec: Any) -> type:
    if isinstance(spec, str):
        return registry.resolve(kind, spec)
    if isinstance(spec, type) and issubclass(spec, kind.base):
        return spec
    raise PluginError(f"{kind.label} {spec!r} is not a name or a {kind.base.__name__} subclass")


def _label(spec: Any, *, quote: bool = True) -> str:
    if isinstance(spec, str):
        return repr(spec) if quote else spec
    if isinstance(spec, type):
        return spec.__name__
    return type(spec).__name__
