"""A processor shaped like model inference: a fixed cost per call plus a little per file.

Select it with ``--processor benchmarks.batch_processor:PerFileInference``
(``process`` only) or ``benchmarks.batch_processor:BatchInference`` (the same
plus ``process_batch``), from the repository root with ``PYTHONPATH`` set to
it.  A call costs ``CALL_COST`` plus ``FILE_COST`` per file it is given.

The cost is spent in ``time.sleep``, not in a Python loop: a GPU call
launches the work and waits for the device with the GIL released, so the
framework's threads keep running meanwhile, and so they do here.  A busy
loop in Python would hold the GIL and measure the interpreter instead.
"""

from __future__ import annotations

import time
from typing import Any

from download_pipeline_processor import BaseProcessor, FileData

#: Seconds of one call, whatever the number of files (the launch, the transfer).
CALL_COST = 0.002
#: Seconds added per file of the call.
FILE_COST = 0.0001


def infer(files: int) -> None:
    """Wait as long as one call over ``files`` files costs, with the GIL released."""
    time.sleep(CALL_COST + FILE_COST * files)


class PerFileInference(BaseProcessor):
    """One call per file: ``CALL_COST + FILE_COST`` each."""

    def process(self, file_data: FileData) -> dict[str, Any]:
        infer(1)
        return {"batch": 1}


class BatchInference(PerFileInference):
    """The same model with ``process_batch``: one call per batch of files."""

    def process_batch(self, files: list[FileData]) -> list[Any]:
        infer(len(files))
        # The batch's size in every result, so the run can prove it was batched.
        return [{"batch": len(files)} for _ in files]
