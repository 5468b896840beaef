"""The entry-point module: registers the ``parquet`` input format."""

from __future__ import annotations

from typing import Callable

from download_pipeline_processor import hookimpl

from .reader import read_parquet

__all__ = ["register_input_formats"]


@hookimpl
def register_input_formats(register: Callable[..., None]) -> None:
    """Register ``parquet``, for file names ending in ``.parquet``; entries are rows."""
    register("parquet", read_parquet, suffixes=(".parquet",), position="row")
