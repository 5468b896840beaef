"""Plugins for the journal's tests, loaded as ``holding_plugins:ClassName``.

The tests put this folder on ``sys.path`` (and on ``PYTHONPATH`` for a CLI
subprocess).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from download_pipeline_processor import BasePostProcessor, BaseProcessor, FileData
from download_pipeline_processor.options import Option


class SlowProcessor(BaseProcessor):
    """Returns the file's size after ``seconds`` of sleep: a run long enough to be cut."""

    options = (Option("seconds", type=float, default=0.02, help="sleep per file"),)

    def __init__(self, seconds: float = 0.02) -> None:
        self.seconds = seconds

    def process(self, file_data: FileData) -> Any:
        time.sleep(self.seconds)
        assert file_data.local_path is not None
        return {"size": file_data.local_path.stat().st_size}


class BatchPublisher(BasePostProcessor):
    """Holds files and publishes them ``every`` at a time, as a shard writer would.

    A batch is one line ``{"ids": [...]}`` appended to ``path`` and synced to
    disk before its files are returned by :meth:`take_published`; files still
    in the buffer at a kill are in no batch.  ``publish_at_close=false``
    leaves the last, partial batch unpublished.
    """

    holds_results = True
    options = (
        Option("path", required=True, help="file the batches are appended to", output=True),
        Option("every", type=int, default=3, help="files per batch"),
        Option("publish_at_close", type=bool, default=True, help="publish the last batch"),
    )

    def __init__(self, path: str, every: int = 3, publish_at_close: bool = True) -> None:
        self._out = Path(path).open("a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.every = every
        self.publish_at_close = publish_at_close
        self._buffer: list[FileData] = []
        self._published: list[FileData] = []

    def post_process(self, result: Any, file_data: FileData) -> None:
        self._buffer.append(file_data)
        if len(self._buffer) >= self.every:
            self._publish()

    def _publish(self) -> None:
        if not self._buffer:
            return
        self._out.write(json.dumps({"ids": [f.id for f in self._buffer]}) + "\n")
        self._out.flush()
        os.fsync(self._out.fileno())
        self._published.extend(self._buffer)
        self._buffer = []

    def take_published(self) -> list[FileData]:
        published, self._published = self._published, []
        return published

    def close(self) -> None:
        if self.publish_at_close:
            self._publish()
        self._out.close()
