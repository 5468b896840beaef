"""The download backend seam: one attempt at fetching one URL to one path."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .file_data import FileData
    from .settings import PipelineSettings


class Downloader:
    """Fetches files for the download stage; register subclasses with ``register_downloaders``.

    One instance serves the whole run and :meth:`fetch` is called from every
    download worker thread at once, so keep per-thread state (connections,
    sessions) in ``threading.local``.  Retries, backoff, temporary names and
    cleanup belong to the framework: :meth:`fetch` makes one attempt.
    """

    def __init__(self, settings: PipelineSettings) -> None:
        self.settings = settings

    def fetch(self, file_data: FileData, destination: Path, should_stop: threading.Event) -> int:
        """Write the body of ``file_data.url`` to ``destination`` and return its size.

        Raise :class:`~download_pipeline_processor.errors.TransientDownloadError`
        for a failure worth retrying, :class:`PermanentDownloadError` otherwise,
        and :class:`PipelineInterrupted` soon after ``should_stop`` is set.  A
        partly written ``destination`` is removed by the caller.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement fetch()")

    def close(self) -> None:
        """Release connections at the end of the run; the default does nothing."""
