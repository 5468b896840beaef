"""The built-in post-processors: ``dummy`` (the default) and ``jsonl``."""

from __future__ import annotations

import logging
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ..base_post_processor import BasePostProcessor
from ..file_data import FileData
from ..flush_timer import FlushTimer
from ..hookspecs import Register, hookimpl
from ..options import Option
from ..redact import shorten, shorten_words, shown_url
from ..report import FILES_LOGGER, outcome_record, to_json

logger = logging.getLogger(__name__)
files_logger = logging.getLogger(FILES_LOGGER)


def _shown(value: Any) -> Any:
    """``value`` with every string over 200 characters shortened, for a log line.

    A result may quote its entry (a 1 MB id); the jsonl report keeps it whole.
    """
    if isinstance(value, str):
        return shorten(value)
    if isinstance(value, dict):
        return {key: _shown(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_shown(item) for item in value]
    return value


class DummyPostProcessor(BasePostProcessor):
    """Logs one line per file: its result, or the stage and reason it failed.

    On the logger :data:`~..report.FILES_LOGGER`: the progress view keeps its
    success lines off the terminal.
    """

    options = ()

    def post_process(self, result: Any, file_data: FileData) -> None:
        if file_data.error is not None:
            record = outcome_record(result, file_data)
            files_logger.warning(
                "%s %s (%s) in %s: %s",
                record["status"],
                shorten(str(file_data.id)),
                shown_url(file_data.url),
                file_data.error.stage,
                shorten_words(record["error"]["message"]),
            )
        else:
            files_logger.info(
                "processed %s: %s", shorten(str(file_data.id)), to_json(_shown(result))
            )


#: Longest time a written line may wait in the buffer, in seconds.
FLUSH_INTERVAL = 0.2


def _end_a_cut_line(out: TextIO, path: str) -> None:
    """Start appending on a line of its own: a kill may have cut the file's last line."""
    status = os.fstat(out.fileno())
    if not stat.S_ISREG(status.st_mode) or status.st_size == 0:
        return  # a new file, or a pipe or terminal named by path
    with Path(path).open("rb") as existing:
        existing.seek(-1, 2)
        if existing.read(1) != b"\n":
            out.write("\n")


class JsonlPostProcessor(BasePostProcessor):
    """Writes one JSON object per file: id, name, url, status, error and result.

    A line reaches the file (the operating system, not necessarily the disk)
    at most ``FLUSH_INTERVAL`` seconds after its file finished, even if no
    other file follows: a run killed with SIGKILL loses only the lines of
    files that finished in its last ``FLUSH_INTERVAL`` seconds.  A power loss
    can lose more (no fsync).  Everything is flushed at the end.
    """

    options = (
        Option("path", default="-", help="file to write, '-' for standard output", output=True),
        Option(
            "append",
            type=bool,
            default=False,
            help="append instead of replacing (default: true with --journal)",
            appends_under_journal=True,
        ),
    )

    def __init__(self, path: str = "-", append: bool = False) -> None:
        self._owned = path != "-"
        self._out: TextIO
        if self._owned:
            self._out = Path(path).open("a" if append else "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
            if append:
                _end_a_cut_line(self._out, path)
        else:
            self._out = sys.stdout
        self._flushed_at = 0.0
        # The pipeline's post-process thread may wait long for the next file;
        # the timer's thread flushes a burst of lines meanwhile.
        self._timer = FlushTimer(self.flush, FLUSH_INTERVAL, name="jsonl")

    def post_process(self, result: Any, file_data: FileData) -> None:
        line = to_json(outcome_record(result, file_data)) + "\n"
        with self._timer.lock:
            self._out.write(line)
            # A file after a quiet spell is flushed at once; one in a burst
            # waits for the timer, so a burst costs one write syscall per interval.
            if time.monotonic() - self._flushed_at >= FLUSH_INTERVAL:
                self.flush()
            else:
                self._timer.pending()

    def flush(self) -> None:
        """Hand every written line to the operating system."""
        with self._timer.lock:
            self._out.flush()
            self._flushed_at = time.monotonic()
            self._timer.flushed()

    def close(self) -> None:
        self._timer.close()
        with self._timer.lock:
            if self._owned:
                self._out.close()
            else:
                self._out.flush()


@hookimpl
def register_post_processors(register: Register) -> None:
    """Register ``dummy`` and ``jsonl``."""
    register("dummy", DummyPostProcessor)
    register("jsonl", JsonlPostProcessor)
