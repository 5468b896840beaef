"""The entry-point module: registers the ``fast`` downloader."""

from __future__ import annotations

from download_pipeline_processor import hookimpl
from download_pipeline_processor.hookspecs import Register

from .fast import FastDownloader

__all__ = ["register_downloaders"]


@hookimpl
def register_downloaders(register: Register) -> None:
    """Register ``fast``."""
    register("fast", FastDownloader)
