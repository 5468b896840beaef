"""Plugins for the progress and summary tests, loaded as ``progress_plugins:ClassName``."""

from __future__ import annotations

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
