"""The entry-point module: registers the ``curl`` downloader."""

from __future__ import annotations

from download_pipeline_processor import hookimpl
from download_pipeline_processor.hookspecs import Register

from .downloader import CurlDownloader

__all__ = ["register_downloaders"]


@hookimpl
def register_downloaders(register: Register) -> None:
    """Register ``curl``."""
    register("curl", CurlDownloader)
