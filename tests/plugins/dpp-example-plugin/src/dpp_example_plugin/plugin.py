"""Registers processors, a post-processor, an executor and a lifecycle observer."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from download_pipeline_processor import BasePostProcessor, BaseProcessor, FileData, hookimpl
from download_pipeline_processor.errors import PluginOptionError
from download_pipeline_processor.executor import BaseExecutor, ExecutorWork, StageSpec
from download_pipeline_processor.options import Option
from download_pipeline_processor.stage_runner import StageRunner


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


class InlineExecutor(BaseExecutor):
    """Runs the stages in this process through a StageRunner, batch by batch.

    It uses only the public executor API (``ExecutorWork``, ``StageRunner``),
    the way a distributed executor does on its workers, without one.
    """

    options = (Option("batch_size", type=int, default=8, help="entries per batch"),)

    def __init__(self, batch_size: int = 8) -> None:
        if batch_size < 1:
            raise PluginOptionError(f"batch_size must be 1 or more, not {batch_size}")
        self.batch_size = batch_size
        self.runner: StageRunner | None = None

    def open(self, spec: StageSpec) -> None:
        self.runner = StageRunner(spec, idle_timeout=None)
        if self.runner.set_up_error is not None:
            raise self.runner.set_up_error

    def run(self, work: ExecutorWork) -> None:
        assert self.runner is not None
        work.started()
        while not work.stop_event.is_set():
            taken: list[tuple[int, FileData]] = []
            while len(taken) < self.batch_size and (item := work.next_entry()) is not None:
                taken.append(item)
            if not taken:
                return
            outcomes = self._run_batch(work, [file_data for _, file_data in taken])
            if outcomes is None:
                return  # past the stop deadline: the run reports what is still out
            for (sequence, _), (file_data, result) in zip(taken, outcomes):
                if file_data.download.size:
                    work.count_bytes(file_data.download.size)
                work.finish(sequence, file_data, result)

    def _run_batch(
        self, work: ExecutorWork, entries: list[FileData]
    ) -> list[tuple[FileData, Any]] | None:
        """The batch's outcomes; None if a stop's deadline passed before they came."""
        assert self.runner is not None
        runner = self.runner
        outcomes: list[list[tuple[FileData, Any]]] = []
        thread = threading.Thread(
            target=lambda: outcomes.append(runner.run_batch(entries)),
            name="inline-batch",
            daemon=True,
        )
        thread.start()
        stopping = False
        while thread.is_alive():
            if work.stop_event.is_set() and not stopping:
                # The runner abandons what it has after the run's stop_grace: those
                # entries come back failed as interrupted.
                stopping = True
                runner.close(stop=True, timeout=0)
            deadline = work.stop_deadline()
            if deadline is not None and time.monotonic() >= deadline:
                return None
            thread.join(0.05)
        return outcomes[0] if outcomes else None

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()


@hookimpl
def register_processors(register: Any) -> None:
    register("example-upper", UpperProcessor)
    register("example-pid", PidProcessor)


@hookimpl
def register_post_processors(register: Any) -> None:
    register("example-count", CountPostProcessor)


@hookimpl
def register_executors(register: Any) -> None:
    register("inline", InlineExecutor)


@hookimpl
def file_finished(file_data: FileData) -> None:
    # Observers may take only the arguments they need.  Writes a marker file when
    # asked to, so tests can see the hook ran in a subprocess.
    marker = os.environ.get("DPP_EXAMPLE_MARKER")
    if marker:
        with open(marker, "a", encoding="utf-8") as out:  # noqa: PTH123 - fixture
            out.write(file_data.id + "\n")
