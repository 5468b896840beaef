"""The ``fast`` downloader for download-pipeline-processor: HTTP/1.1 on plain sockets."""

from __future__ import annotations

__version__ = "0.1.0"

from .fast import FastDownloader

__all__ = ["FastDownloader", "__version__"]
