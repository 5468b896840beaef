"""The entry-point module: registers the ``sqlite`` post-processor."""

from __future__ import annotations

from download_pipeline_processor import hookimpl
from download_pipeline_processor.hookspecs import Register

from .post_processor import SqlitePostProcessor

__all__ = ["register_post_processors"]


@hookimpl
def register_post_processors(register: Register) -> None:
    """Register ``sqlite``."""
    register("sqlite", SqlitePostProcessor)
