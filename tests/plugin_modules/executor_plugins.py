"""Executors and processors for the executor-seam tests, importable as ``executor_plugins:Name``.

The tests put this folder on ``sys.path``, so ``--executor executor_plugins:Name``
and ``--processor executor_plugins:Name`` import the very module the test
reads its counters from.  The well-behaved executor these build on is the
example plugin's ``inline`` (``tests/plugins/dpp-example-plugin``), installed.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from dpp_example_plugin.plugin import InlineExecutor

from download_pipeline_processor import BaseProcessor, FileData
from download_pipeline_processor.builtins import ChecksumProcessor
from download_pipeline_processor.errors import ExecutorError, UsageError
from download_pipeline_processor.executor import BaseExecutor, ExecutorWork, StageSpec


class RecordingExecutor(InlineExecutor):
    """``inline``, counting how often it is built and opened (class-wide)."""

    built: ClassVar[int] = 0
    opened: ClassVar[int] = 0

    def __init__(self, batch_size: int = 8) -> None:
        type(self).built += 1
        super().__init__(batch_size)

    def open(self, spec: StageSpec) -> None:
        type(self).opened += 1
        super().open(spec)


class RefusingExecutor(BaseExecutor):
    """Finds in :meth:`open` that it cannot run (no cluster at the address, say)."""

    def open(self, spec: StageSpec) -> None:
        raise UsageError("executor 'refusing': no scheduler at tcp://127.0.0.1:9")

    def run(self, work: ExecutorWork) -> None:
        raise AssertionError("run() after a failed open()")


class GivingUpExecutor(InlineExecutor):
    """Hands back its first batch, takes a second, then loses its workers (ExecutorError)."""

    def run(self, work: ExecutorWork) -> None:
        assert self.runner is not None
        work.started()
        first = [entry for entry in (work.next_entry() for _ in range(3)) if entry is not None]
        outcomes = self.runner.run_batch([file_data for _, file_data in first])
        for (sequence, _), (file_data, result) in zip(first, outcomes):
            work.finish(sequence, file_data, result)
        for _ in range(2):  # taken, and never handed back
            work.next_entry()
        raise ExecutorError("the workers are gone")


class TwiceExecutor(InlineExecutor):
    """Hands every entry back twice, as a distributed executor whose lost worker
    came back after its batch was rerun elsewhere would."""

    def run(self, work: ExecutorWork) -> None:
        assert self.runner is not None
        work.started()
        while (item := work.next_entry()) is not None:
            sequence, file_data = item
            ((done, result),) = self.runner.run_batch([file_data])
            work.finish(sequence, done, result)
            work.finish(sequence, done, result)


class ChecksumOrFail(ChecksumProcessor):
    """The built-in checksum, raising on files whose id starts with ``bad``."""

    def process(self, file_data: FileData) -> Any:
        if str(file_data.id).startswith("bad"):
            raise ValueError(f"cannot read {file_data.id}")
        return super().process(file_data)


class CountingProcessor(BaseProcessor):
    """Returns the file's size; counts the instances built (class-wide)."""

    built: ClassVar[int] = 0
    _lock = threading.Lock()

    def __init__(self) -> None:
        with CountingProcessor._lock:
            CountingProcessor.built += 1

    def process(self, file_data: FileData) -> Any:
        assert file_data.local_path is not None
        return file_data.local_path.stat().st_size


class BrokenSetUpProcessor(BaseProcessor):
    """Cannot be built (a model file missing on this worker, say)."""

    def __init__(self) -> None:
        raise RuntimeError("model weights missing")

    def process(self, file_data: FileData) -> Any:
        raise AssertionError("never built")


class UnpicklableError(Exception):
    """An exception holding a lock: it cannot be pickled to cross processes."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class UnpicklableErrorProcessor(BaseProcessor):
    """Raises an exception that cannot be pickled on every file."""

    def process(self, file_data: FileData) -> Any:
        raise UnpicklableError(f"bad bytes in {file_data.id}")


class UnpicklableResultProcessor(BaseProcessor):
    """Returns a lock (which cannot be pickled) for ids ending in 1; a dict for the others."""

    def process(self, file_data: FileData) -> Any:
        if file_data.id.endswith("1"):
            return {"lock": threading.Lock()}
        return {"id": file_data.id}


class SlowProcessor(BaseProcessor):
    """Waits until :attr:`release` is set (at most 30 s); :attr:`started` says one began."""

    started: ClassVar[threading.Event] = threading.Event()
    release: ClassVar[threading.Event] = threading.Event()

    def process(self, file_data: FileData) -> Any:
        SlowProcessor.started.set()
        SlowProcessor.release.wait(30)
        return "done"
