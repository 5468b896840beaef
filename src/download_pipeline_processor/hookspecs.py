"""The hooks a plugin can implement.

Hooks are always called with keyword arguments, so an implementation may
accept only the arguments it needs.  Each hook is documented in
``docs/writing-plugins.md`` under a heading ``name(args)``.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

__all__ = [
    "PROJECT_NAME",
    "Register",
    "file_finished",
    "hookimpl",
    "hookspec",
    "pipeline_finished",
    "pipeline_started",
    "register_downloaders",
    "register_executors",
    "register_input_formats",
    "register_post_processors",
    "register_processors",
]


PROJECT_NAME = "download_pipeline_processor"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

Register = Callable[[str, type], None]


@hookspec
def register_processors(register: Register) -> None:
    """Call ``register(name, cls)`` for each processor class this plugin provides."""


@hookspec
def register_post_processors(register: Register) -> None:
    """Call ``register(name, cls)`` for each post-processor class this plugin provides."""


@hookspec
def register_downloaders(register: Register) -> None:
    """Call ``register(name, cls)`` for each download backend this plugin provides."""


@hookspec
def register_executors(register: Register) -> None:
    """Call ``register(name, cls)`` for each executor (where downloads and processing run)."""


@hookspec
def register_input_formats(register: Callable[..., None]) -> None:
    """Call ``register(name, read, suffixes=(".ext",))`` for each input format a plugin reads."""


@hookspec
def pipeline_started(settings: Any, progress: Any) -> None:
    """Observe the start of a run, with its ``PipelineSettings`` and live ``RunProgress``."""


@hookspec
def file_finished(file_data: Any, result: Any) -> None:
    """Observe one file after its post-processing; ``file_data.error`` tells if it failed."""


@hookspec
def pipeline_finished(summary: Any) -> None:
    """Observe the end of a run with its ``RunSummary``; called after an interrupt too."""
