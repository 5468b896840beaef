"""Processors with ``process_batch`` for the batch tests, importable by name.

A plain module, not a test module: worker processes (``--processing-mode
process``) import a processor class by its module path, and find this folder
on the ``sys.path`` they are spawned with.
"""

from __future__ import annotations

import os
from typing import Any

from download_pipeline_processor import BaseProcessor, FileData, Option


def _ids(text: str) -> frozenset[str]:
    return frozenset(part for part in text.split(",") if part)


class ChosenFailure(Exception):
    """The failure a test chose for a file or a batch."""


class SizingBatchProcessor(BaseProcessor):
    """Returns, for each file, its size, the size of its batch and the calling process.

    Each call numbers its batch (``call``, per instance).  ``failing_ids``
    get an exception instance in the list (that file fails alone);
    ``raising_ids`` make the whole call raise (the batch fails); ``short``
    returns one result too few.  ``process`` is never called.
    """

    options = (
        Option("failing_ids", default="", help="Ids returned as an exception instance."),
        Option("raising_ids", default="", help="Ids whose batch raises."),
        Option("short", type=bool, default=False, help="Return one result too few."),
    )

    def __init__(self, failing_ids: str = "", raising_ids: str = "", short: bool = False) -> None:
        self.failing_ids = _ids(failing_ids)
        self.raising_ids = _ids(raising_ids)
        self.short = short
        self.calls = 0

    def process(self, file_data: FileData) -> Any:
        raise AssertionError("a processor with process_batch is never called per file")

    def process_batch(self, files: list[FileData]) -> list[Any]:
        self.calls += 1
        ids = [str(file_data.id) for file_data in files]
        if self.raising_ids.intersection(ids):
            raise ChosenFailure(f"batch with {sorted(self.raising_ids.intersection(ids))} raised")
        results: list[Any] = []
        for file_data in files:
            if str(file_data.id) in self.failing_ids:
                results.append(ChosenFailure(f"{file_data.id} failed alone"))
                continue
            assert file_data.local_path is not None
            results.append(
                {
                    "size": file_data.local_path.stat().st_size,
                    "batch": len(files),
                    "call": self.calls,
                    "pid": os.getpid(),
                }
            )
        return results[:-1] if self.short else results


class PerFileProcessor(BaseProcessor):
    """An ordinary processor: the size of each file, one call per file."""

    def process(self, file_data: FileData) -> Any:
        assert file_data.local_path is not None
        return {"size": file_data.local_path.stat().st_size, "pid": os.getpid()}
