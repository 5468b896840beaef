"""Plugins for the progress and summary tests, loaded as ``progress_plugins:ClassName``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from download_pipeline_processor import BaseProcessor, FileData


class UnreadableDocumentError(Exception):
    """What a processor of documents might raise on a file it cannot parse."""


class RejectingProcessor(BaseProcessor):
    """Returns the file's size, and fails every file whose id starts with ``bad-``."""

    def process(self, file_data: FileData) -> Any:
        if str(file_data.id).startswith("bad-"):
            raise UnreadableDocumentError(f"cannot parse {file_data.id}")
        assert file_data.local_path is not None
        return {"size": file_data.local_path.stat().st_size}


class SleepingProcessor(BaseProcessor):
    """Marks each file it starts (a file named by its id in the folder ``started``), then
    sleeps 30 s: the files it holds are in flight when a test stops the run."""

    def __init__(self, started: str = "") -> None:
        self.started = started

    def process(self, file_data: FileData) -> Any:
        if self.started:
            (Path(self.started) / str(file_data.id)).touch()
        time.sleep(30)
        return {"slept": True}
