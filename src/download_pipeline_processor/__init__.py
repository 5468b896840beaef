"""Download lists of files concurrently and run each through pluggable processors."""

from __future__ import annotations

from ._version import __version__
from .backend import Downloader, DownloadRequest
from .base_post_processor import BasePostProcessor
from .base_processor import DOWNLOAD, BaseProcessor
from .file_data import DownloadRecord, FileData, StageError
from .hookspecs import hookimpl
from .options import Option
from .pipeline import ProcessingPipeline
from .settings import PipelineSettings
from .summary import RunSummary

__all__ = [
    "DOWNLOAD",
    "BasePostProcessor",
    "BaseProcessor",
    "DownloadRecord",
    "DownloadRequest",
    "Downloader",
    "FileData",
    "Option",
    "PipelineSettings",
    "ProcessingPipeline",
    "RunSummary",
    "StageError",
    "__version__",
    "hookimpl",
]
