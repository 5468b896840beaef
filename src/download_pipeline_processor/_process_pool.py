"""Running processors in worker processes, for CPU-bound work the GIL would serialise.

Each processing thread of the pipeline drives one worker process through a
pipe, so queues, backpressure and stopping work exactly as in thread mode; only
``process()`` runs elsewhere.  ``FileData`` goes to the worker and the result
comes back by pickling, so the processor class must be importable by name (a
registered plugin or ``module:ClassName``) and its results picklable.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import pickle
import signal
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any

from ._batches import BatchRunner, Failed, process_files
from .base_processor import BaseProcessor
from .errors import PipelineError, PluginError, ProcessingTimeoutError, portable_error
from .file_data import FileData
from .redact import shorten

logger = logging.getLogger(__name__)

#: Seconds a worker gets to exit after it is told to, before it is terminated.
EXIT_TIMEOUT = 5.0

# "spawn" everywhere: forking a process that already runs threads (ours, a
# test server's, a library's) can copy a held lock into the child and hang it.
_CONTEXT = multiprocessing.get_context("spawn")


class WorkerProcessError(PipelineError):
    """The worker process died or could not send back what it produced."""


def _serve(connection: Connection, processor_class: type, options: Mapping[str, Any]) -> None:
    """The worker process: build one processor, then process what arrives until told to stop."""
    # Ctrl-C reaches the whole process group; the parent decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        processor = processor_class(**options)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent as a set-up error
        connection.send(("error", portable_error(exc)))
        return
    connection.send(("ready", None))
    try:
        while True:
            try:
                file_data = connection.recv()
            except EOFError:
                return
            if file_data is None:
                return
            try:
                if isinstance(file_data, list):
                    # A batch: one result per file, each failure made portable.
                    reply: tuple[str, Any] = ("ok", _portable(process_files(processor, file_data)))
                else:
                    reply = ("ok", processor.process(file_data))
            except BaseException as exc:  # noqa: BLE001 - the file's failure, not the worker's
                reply = ("error", portable_error(exc))
            try:
                connection.send(reply)
            except Exception as exc:  # noqa: BLE001 - an unpicklable result fails that file
                connection.send(("error", WorkerProcessError(f"result cannot be sent back: {exc}")))
    finally:
        try:
            processor.close()
        except BaseException as exc:  # noqa: BLE001 - the parent logs it, as in thread mode
            # The parent waits for this after telling the worker to stop; if it
            # is gone, nobody is left to tell.
            with contextlib.suppress(Exception):
                connection.send(("close-error", portable_error(exc)))


def _portable(results: list[Any]) -> list[Any]:
    """A batch's results with each file's failure made picklable."""
    return [
        Failed(portable_error(result.error)) if type(result) is Failed else result
        for result in results
    ]


class ProcessProcessor(BaseProcessor, BatchRunner):
    """Stands in for a processor in the pipeline and runs the real one in a worker process.

    A worker that dies fails the file (or the batch) it was processing and is
    started again for the next.  A worker still processing one file (or one
    batch) after ``timeout`` seconds (``--processing-timeout``) is killed, the
    file (every file of the batch) fails, and a new worker starts at once.
    """

    def __init__(
        self,
        processor_class: type,
        options: Mapping[str, Any],
        label: str,
        timeout: float | None = None,
    ) -> None:
        self.processor_class = processor_class
        self.processor_options = dict(options)
        self.label = label
        self.timeout = timeout
        self._start()

    def _start(self) -> None:
        parent, child = _CONTEXT.Pipe()
        self._connection = parent
        self._process = _CONTEXT.Process(
            target=_serve,
            args=(child, self.processor_class, self.processor_options),
            name="dpp-processor",
            daemon=True,
        )
        try:
            self._process.start()
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise PluginError(
                f"{self.label} cannot run in worker processes: its class or options cannot "
                f"be pickled ({exc}); use a registered plugin or module:ClassName"
            ) from exc
        finally:
            child.close()
        self._ready = False

    def wait_ready(self) -> None:
        """Wait for the worker's processor to be built; raise its set-up error if any."""
        if self._ready:
            return
        try:
            kind, payload = self._connection.recv()
        except EOFError:
            self._process.join(EXIT_TIMEOUT)
            raise PluginError(
                f"{self.label}: worker process exited during set-up "
                f"(exit code {self._process.exitcode})"
            ) from None
        if kind == "error":
            if isinstance(payload, TypeError):
                raise PluginError(f"{self.label}: {payload}") from payload
            raise PluginError(
                f"{self.label}: cannot be set up: {type(payload).__name__}: {payload}"
            ) from payload
        self._ready = True

    def process(self, file_data: FileData) -> Any:
        return self._call(file_data, file_data)

    def process_files(self, files: list[FileData]) -> list[Any]:
        """Run a batch in the worker: one result (or :class:`~._batches.Failed`) per file.

        What the worker's processor raised for the whole batch is raised here.
        """
        results = self._call(files, files[0])
        if not isinstance(results, list) or len(results) != len(files):
            raise WorkerProcessError("the worker process sent back a batch of the wrong size")
        return results

    def _call(self, message: FileData | list[FileData], first: FileData) -> Any:
        """Send ``message`` to the worker and return its reply, or raise its failure."""
        if not self._process.is_alive():
            self._start()
        self.wait_ready()
        try:
            self._connection.send(message)
            # poll() is True at a reply and at EOF (a dead worker), which recv() reports.
            if self.timeout is not None and not self._connection.poll(self.timeout):
                self._replace_stuck(first)
                raise ProcessingTimeoutError(
                    f"processing took longer than the processing timeout ({self.timeout:g} s);"
                    " its worker process was killed"
                )
            kind, payload = self._connection.recv()
        except (EOFError, OSError) as exc:
            self._process.join(EXIT_TIMEOUT)
            raise WorkerProcessError(
                f"worker process died (exit code {self._process.exitcode})"
            ) from exc
        if kind == "error":
            raise payload
        return payload

    def _replace_stuck(self, file_data: FileData) -> None:
        """Kill the worker stuck on ``file_data`` (SIGKILL: it may ignore anything milder)."""
        pid = self._process.pid
        self._process.kill()
        self._process.join(EXIT_TIMEOUT)
        self._connection.close()
        logger.warning(
            "%s: worker process %s spent over %g s on %s (--processing-timeout); "
            "killed, a new one takes its place",
            self.label,
            pid,
            self.timeout,
            shorten(str(file_data.id)),
        )
        # Started now so its set-up overlaps the wait for the next file.
        self._start()

    def close(self) -> None:
        """Stop the worker; raise what the real processor's ``close()`` raised, if anything."""
        error: BaseException | None = None
        if self._process.is_alive():
            with contextlib.suppress(OSError):
                self._connection.send(None)
                error = self._close_error()
            self._process.join(EXIT_TIMEOUT)
        self.terminate()
        self._connection.close()
        if error is not None:
            raise error

    def _close_error(self) -> BaseException | None:
        """What the worker reports of its processor's ``close()``: the error, or None (EOF)."""
        # The worker's end closes when it exits, so a clean exit ends the wait at once.
        if not self._connection.poll(EXIT_TIMEOUT):
            return None
        try:
            kind, payload = self._connection.recv()
        except EOFError:
            return None
        return payload if kind == "close-error" else None

    def terminate(self) -> None:
        """Stop the worker at once (it is ours: we started it and know its PID)."""
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(EXIT_TIMEOUT)


def start_process_processors(
    processor_class: type,
    options: Mapping[str, Any],
    label: str,
    count: int,
    timeout: float | None = None,
) -> list[ProcessProcessor]:
    """Start ``count`` workers at once, then wait until every one is ready.

    ``timeout``: seconds a worker may spend on one file before it is killed.
    """
    workers: list[ProcessProcessor] = []
    try:
        for _ in range(count):
            workers.append(ProcessProcessor(processor_class, options, label, timeout))
        for worker in workers:
            worker.wait_ready()
    except BaseException:
        for worker in workers:
            worker.terminate()
        raise
    return workers
