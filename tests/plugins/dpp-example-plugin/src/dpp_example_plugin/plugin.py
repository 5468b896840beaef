"""Registers one processor, one post-processor and a lifecycle observer."""

from __future__ import annotations

import os
from typing import Any

from download_pipeline_processor import BasePostProcessor, BaseProcessor, FileData, hookimpl
from download_pipeline_processor.options import Option


class UpperProcessor(BaseProcessor):
    """Returns the file's first bytes upper-cased, with an optional prefix."""

    options = (Option("prefix", default="", help="text put before the result"),)

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def process(self, file_data: FileData) -> Any:
        assert file_data.local_path is not None
        head = file_data.local_path.read_bytes()[:32].decode("utf-8", errors="replace")
        return self.prefix + head.upper()


class PidProcessor(BaseProcessor):
    """Returns the id of the process it ran in; for tests of the process mode.

    ``crash_on`` makes the worker die (``os._exit``) on files whose id starts
    with it; ``unpicklable`` returns a result that cannot cross processes.
    """

    options = (
        Option("crash_on", default="", help="id prefix of files that kill the worker"),
        Option("unpicklable", type=bool, default=False, help="return a lambda"),
    )

    def __init__(self, crash_on: str = "", unpicklable: bool = False) -> None:
        self.crash_on = crash_on
        self.unpicklable = unpicklable

    def process(self, file_data: FileData) -> Any:
        if self.crash_on and file_data.id.startswith(self.crash_on):
            os._exit(3)
        if self.unpicklable:
            return lambda: None
        return os.getpid()


class CountPostProcessor(BasePostProcessor):
    """Counts files and prints the count at the end (to stdout)."""

    options = ()

    def __init__(self) -> None:
        self.count = 0

    def post_process(self, result: Any, file_data: FileData) -> None:
        self.count += 1

    def close(self) -> None:
        print(f"example-count: {self.count}")


@hookimpl
def register_processors(register: Any) -> None:
    register("example-upper", UpperProcessor)
    register("example-pid", PidProcessor)


@hookimpl
def register_post_processors(register: Any) -> None:
    register("example-count", CountPostProcessor)


@hookimpl
def file_finished(file_data: FileData) -> None:
    # Observers may take only the arguments they need.  Writes a marker file when
    # asked to, so tests can see the hook ran in a subprocess.
    marker = os.environ.get("DPP_EXAMPLE_MARKER")
    if marker:
        with open(marker, "a", encoding="utf-8") as out:  # noqa: PTH123 - fixture
            out.write(file_data.id + "\n")
