"""Hook implementations: registers the ``extract`` processor."""

from __future__ import annotations

from download_pipeline_processor import hookimpl
from download_pipeline_processor.hookspecs import Register

from .processor import ExtractProcessor

__all__ = ["register_processors"]


@hookimpl
def register_processors(register: Register) -> None:
    """Register ``extract``."""
    register("extract", ExtractProcessor)
