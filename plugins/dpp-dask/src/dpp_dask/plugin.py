"""Registers the ``dask`` executor.

Kept free of Dask imports: every start of the command line loads this
module, and importing ``distributed`` costs most of a second.
"""

from __future__ import annotations

from download_pipeline_processor import hookimpl
from download_pipeline_processor.hookspecs import Register

from .executor import DaskExecutor

__all__ = ["register_executors"]


@hookimpl
def register_executors(register: Register) -> None:
    """Register ``dask``."""
    register("dask", DaskExecutor)
