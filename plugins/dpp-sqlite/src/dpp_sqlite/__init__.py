"""Record every file's outcome of a download-pipeline-processor run in a SQLite database."""

from __future__ import annotations

__version__ = "0.1.0"

from .post_processor import SqlitePostProcessor

__all__ = ["SqlitePostProcessor", "__version__"]
