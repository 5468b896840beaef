"""Processors for the ``processes`` executor's tests, importable by name in its worker processes."""

from __future__ import annotations

import os
import signal
from typing import Any

from download_pipeline_processor.builtins import ChecksumProcessor
from download_pipeline_processor.file_data import FileData


class KillingChecksum(ChecksumProcessor):
    """The built-in checksum; a file whose id starts with ``poison`` kills its worker process."""

    def process(self, file_data: FileData) -> Any:
        if str(file_data.id).startswith("poison"):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().process(file_data)
