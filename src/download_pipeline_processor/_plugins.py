"""Building the plugin manager: built-ins first, then installed entry points."""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass

import pluggy

from . import hookspecs

__all__ = [
    "BUILTIN_DISTRIBUTION",
    "DEFAULT_PLUGINS",
    "LOAD_PLUGINS_ENV",
    "PipelinePluginManager",
    "PluginLoadFailure",
    "PluginSource",
    "create_plugin_manager",
    "has_observers",
    "load_entry_points",
    "notify_observers",
]


logger = logging.getLogger(__name__)

#: The built-in hook implementations, registered like any plugin: the name the
#: listing shows for each -> the module that holds them.
DEFAULT_PLUGINS = {
    "builtin.processors": "download_pipeline_processor.builtins._processors",
    "builtin.post_processors": "download_pipeline_processor.builtins._post_processors",
    "builtin.downloaders": "download_pipeline_processor.builtins._backend_registrations",
    "builtin.input_formats": "download_pipeline_processor.builtins._format_registrations",
    "builtin.executors": "download_pipeline_processor._process_executor",
}

#: Comma-separated entry-point names to load; empty loads none; unset loads all.
LOAD_PLUGINS_ENV = "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS"

BUILTIN_DISTRIBUTION = "download-pipeline-processor"


@dataclass(frozen=True)
class PluginSource:
    """Where a registered plugin module came from."""

    name: str
    distribution: str
    version: str


@dataclass(frozen=True)
class PluginLoadFailure:
    """An entry point that could not be imported, kept so selecting it can explain why."""

    name: str
    distribution: str
    version: str
    error: BaseException


class PipelinePluginManager(pluggy.PluginManager):
    """A pluggy manager that also remembers each plugin's distribution and load failures."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.sources: dict[str, PluginSource] = {}
        self.load_failures: list[PluginLoadFailure] = []

    def register_source(self, plugin: object, source: PluginSource) -> None:
        """Register ``plugin`` under ``source.name`` and remember where it came from."""
        self.register(plugin, name=source.name)
        self.sources[source.name] = source

    def source_of(self, plugin: object) -> PluginSource:
        """The source of a registered plugin; plugins registered by hand get a neutral one."""
        name = self.get_name(plugin) or repr(plugin)
        return self.sources.get(name, PluginSource(name, name, ""))


def _builtin_version() -> str:
    from ._version import __version__

    return __version__


def _selected_entry_point_names() -> set[str] | None:
    raw = os.environ.get(LOAD_PLUGINS_ENV)
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def load_entry_points(manager: PipelinePluginManager) -> None:
    """Import and register every plugin of the entry-point group.

    A plugin that fails to import is recorded in ``manager.load_failures``
    and skipped; the others still load.
    """
    selected = _selected_entry_point_names()
    if selected == set():
        return  # none wanted: skip scanning every installed distribution
    # Imported here: its import is start-up time that a run loading no plugins skips.
    import importlib_metadata

    for entry_point in importlib_metadata.entry_points(group=hookspecs.PROJECT_NAME):
        if selected is not None and entry_point.name not in selected:
            continue
        if manager.has_plugin(entry_point.name):
            continue
        dist = entry_point.dist
        dist_name = dist.name if dist is not None else "unknown"
        version = dist.version if dist is not None else ""
        try:
            plugin = entry_point.load()
            manager.register_source(plugin, PluginSource(entry_point.name, dist_name, version))
        except Exception as exc:  # noqa: BLE001 - any import failure must not stop the tool
            manager.load_failures.append(
                PluginLoadFailure(entry_point.name, dist_name, version, exc)
            )


def create_plugin_manager(load_entrypoints: bool = True) -> PipelinePluginManager:
    """A fresh manager with the built-ins registered and, optionally, installed plugins."""
    manager = PipelinePluginManager()
    version = _builtin_version()
    for short, module_name in DEFAULT_PLUGINS.items():
        module = importlib.import_module(module_name)
        manager.register_source(module, PluginSource(short, BUILTIN_DISTRIBUTION, version))
    if load_entrypoints:
        load_entry_points(manager)
    return manager


def notify_observers(manager: pluggy.PluginManager, hook_name: str, **kwargs: object) -> None:
    """Call every implementation of a lifecycle hook; one that raises is logged, not fatal.

    Implementations are called one by one (not through pluggy's single call) so
    that a failing observer cannot keep the others from running.  Whatever one
    raises, ``SystemExit`` included, stays here: hooks run on pipeline threads
    that must live to the end of the run.
    """
    caller = getattr(manager.hook, hook_name)
    for impl in reversed(caller.get_hookimpls()):
        if impl.hookwrapper or impl.wrapper:
            continue
        try:
            impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
        except BaseException:  # a plugin's SystemExit or own BaseException too
            logger.warning(
                "plugin %r failed in %s; ignored",
                manager.get_name(impl.plugin),
                hook_name,
                exc_info=logger.isEnabledFor(logging.DEBUG),
            )


def has_observers(manager: pluggy.PluginManager, hook_name: str) -> bool:
    """True when at least one plugin implements ``hook_name``."""
    return bool(getattr(manager.hook, hook_name).get_hookimpls())
