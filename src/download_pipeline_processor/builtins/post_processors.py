"""The built-in post-processors: ``dummy`` (the default) and ``jsonl``."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ..base_post_processor import BasePostProcessor
from ..file_data import FileData
from ..hookspecs import Register, hookimpl
from ..options import Option
from ..redact import redact_url
from ..report import outcome_record, to_json

logger = logging.getLogger(__name__)


class DummyPostProcessor(BasePostProcessor):
    """Logs one line per file: its result, or the stage and reason it failed."""

    options = ()

    def post_process(self, result: Any, file_data: FileData) -> None:
        if file_data.error is not None:
            record = outcome_record(result, file_data)
            logger.warning(
                "failed %s (%s) in %s: %s",
                file_data.id,
                redact_url(file_data.url),
                file_data.error.stage,
                record["error"]["message"],
            )
        else:
            logger.info("processed %s: %s", file_data.id, to_json(result))


#: Longest time a written line may wait in the buffer, in seconds.
FLUSH_INTERVAL = 0.2


class JsonlPostProcessor(BasePostProcessor):
    """Writes one JSON object per file: id, name, url, status, error and result.

    Lines are flushed at least every ``FLUSH_INTERVAL`` seconds and at the end.
    """

    options = (
        Option("path", default="-", help="file to write, '-' for standard output"),
        Option("append", type=bool, default=False, help="append instead of replacing"),
    )

    def __init__(self, path: str = "-", append: bool = False) -> None:
        self._owned = path != "-"
        self._out: TextIO
        if self._owned:
            self._out = Path(path).open("a" if append else "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        else:
            self._out = sys.stdout
        self._flushed_at = 0.0

    def post_process(self, result: Any, file_data: FileData) -> None:
        self._out.write(to_json(outcome_record(result, file_data)) + "\n")
        # Lines reach the file at most FLUSH_INTERVAL after they are written, so a
        # killed run loses little, without a write syscall for every file.
        now = time.monotonic()
        if now - self._flushed_at >= FLUSH_INTERVAL:
            self._out.flush()
            self._flushed_at = now

    def close(self) -> None:
        if self._owned:
            self._out.close()
        else:
            self._out.flush()


@hookimpl
def register_post_processors(register: Register) -> None:
    """Register ``dummy`` and ``jsonl``."""
    register("dummy", DummyPostProcessor)
    register("jsonl", JsonlPostProcessor)
