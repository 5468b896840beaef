"""The ``curl`` downloader for download-pipeline-processor, on libcurl (pycurl)."""

from __future__ import annotations

__version__ = "0.1.0"

from .downloader import CurlDownloader

__all__ = ["CurlDownloader", "__version__"]
