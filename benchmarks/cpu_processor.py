"""A CPU-bound processor written in pure Python: about 20 ms of work per file.

Select it with ``--processor benchmarks.cpu_processor:CpuBoundProcessor`` from
the repository root with ``PYTHONPATH`` set to it.  It holds the GIL the whole
time, so threads cannot run two of these at once; worker processes can.
"""

from __future__ import annotations

import hashlib
from typing import Any

from download_pipeline_processor import BaseProcessor, FileData
from download_pipeline_processor.options import Option

#: FNV-1a steps per file; about 20 ms of one core on a 2020s x86 server.
DEFAULT_ITERATIONS = 110_000
FNV_OFFSET = 2166136261
FNV_PRIME = 16777619


def fnv1a_rounds(data: bytes, iterations: int) -> int:
    """FNV-1a over ``data``, cycled until ``iterations`` bytes went through: pure CPU."""
    state = FNV_OFFSET
    length = len(data) or 1
    padded = data or b"\0"
    for position in range(iterations):
        state = ((state ^ padded[position % length]) * FNV_PRIME) & 0xFFFFFFFF
    return state


class CpuBoundProcessor(BaseProcessor):
    """Hashes the file (sha256, for verification) and burns CPU in a Python loop."""

    options = (
        Option("iterations", type=int, default=DEFAULT_ITERATIONS, help="pure-Python loop steps"),
    )

    def __init__(self, iterations: int = DEFAULT_ITERATIONS) -> None:
        self.iterations = iterations

    def process(self, file_data: FileData) -> dict[str, Any]:
        if file_data.local_path is None:
            raise ValueError("the file has no local path")
        data = file_data.local_path.read_bytes()
        return {
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "fnv1a": fnv1a_rounds(data, self.iterations),
        }
