"""Read download-pipeline-processor file lists from Parquet tables (``--files list.parquet``)."""

from __future__ import annotations

__version__ = "0.1.0"

from .reader import read_parquet

__all__ = ["__version__", "read_parquet"]
