"""Hook implementations: registers the ``resize`` processor and the ``shards`` post-processor."""

from __future__ import annotations

from download_pipeline_processor import hookimpl
from download_pipeline_processor.hookspecs import Register

__all__ = ["register_post_processors", "register_processors"]


@hookimpl
def register_processors(register: Register) -> None:
    """Register ``resize``."""
    from .processor import ResizeProcessor

    register("resize", ResizeProcessor)


@hookimpl
def register_post_processors(register: Register) -> None:
    """Register ``shards``."""
    from .shards import ShardsPostProcessor

    register("shards", ShardsPostProcessor)
