"""The built-in executor ``processes``: the download and processing stages in N local processes.

::

    this process                                   each worker process (spawned)
    input --> batches --(pipe, bounded)-->   StageRunner: download, process
    post-processors, journal <--(results)--  (own cache folder, processors built once)

One interpreter runs one thread of Python at a time: with small files its
download threads, hand-offs and hashing fill one core while the others idle.
This executor starts ``processes`` worker processes (``spawn``); each keeps
one :class:`~.stage_runner.StageRunner` for the run and gets batches of
``batch_size`` entries over a pipe, at most ``batches_in_flight`` batches out
at once.  Every entry of a finished batch is handed back to the run, where the
post-processors, the journal, the summary and the progress are kept as with
``local``.

The run's limits stay limits of the whole run: ``--download-workers``,
``--max-per-host`` and ``--limit-rate`` are divided between the processes
(the first ones get the remainder), so their sum is what was asked; a value
smaller than ``processes`` is refused.  ``--cache-size`` is refused: a file
larger than one process's share would run alone in its process while the
others fill the cache.  ``--processing-mode process`` is refused: each worker
is already a process.

A worker process that dies (killed, out of memory) is replaced; its batches
are tried again, a batch of several entries split into single entries, and a
single entry that was beside others tried once more with nothing else out,
so only an entry that kills its worker on its own fails (``worker lost``).
An entry is handed back at most once: the run drops any second hand-off.
Their log records are sent here and logged through this process's handlers
(the command line's stderr and ``--log-file``).
Worker processes ignore SIGINT and SIGTERM (Ctrl-C reaches the whole process
group; this process decides how to stop), and end when this process's pipe to
them closes, whatever killed it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from .errors import ExecutorError, PipelineError, PluginOptionError, UsageError
from .executor import BaseExecutor, BatchDispatcher, ExecutorWork, StageSpec
from .hookspecs import Register, hookimpl
from .options import Option
from .stage_runner import StageRunner

if TYPE_CHECKING:
    from .file_data import FileData

__all__ = ["ProcessExecutor", "WorkerLostError", "register_executors"]

logger = logging.getLogger(__name__)

# "spawn": forking a process that already runs threads can copy a held lock into the child.
_CONTEXT = multiprocessing.get_context("spawn")

#: Entries per batch: small enough that progress moves and a lost worker redoes few files.
DEFAULT_BATCH_SIZE = 32

#: Batches out per worker process when ``batches_in_flight`` is not given.
BATCHES_PER_PROCESS = 3

#: How long a partial batch waits for more entries from a slow input (standard input).
BATCH_WAIT = 0.2

#: How often the loop looks at the stop signal, in seconds.
POLL_INTERVAL = 0.1

#: Seconds the workers get to close their stages (processors, caches) at the end.
CLOSE_TIMEOUT = 60.0

#: Seconds added to a wait on the workers before they are killed.
CLOSE_MARGIN = 5.0

#: Seconds the worker processes get to start and build their stages.
START_TIMEOUT = 60.0


class WorkerLostError(PipelineError):
    """The worker process running a file kept dying.

    Its message starts ``worker lost:``: the reason reports give and group it by.
    """


# -- the worker process ----------------------------------------------------------------


class _PipeLogs(logging.Handler):
    """A worker's log records, sent to the parent, which logs them through its own handlers."""

    def __init__(self, send: Callable[[tuple[str, int, Any]], None]) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad log call must not break the worker
            return
        self._send(("log", 0, (record.name, record.levelno, text)))


def _serve(connection: Connection, spec: StageSpec, log_level: int) -> None:
    """A worker process: one stage runner; batches in, entries with results out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    send_lock = threading.Lock()
    batches: list[threading.Thread] = []

    def send(message: tuple[str, int, Any]) -> None:
        # The parent gone (OSError, ValueError): nothing to report to.
        with send_lock, contextlib.suppress(OSError, ValueError):
            connection.send(message)

    root = logging.getLogger()
    root.handlers[:] = [_PipeLogs(send)]
    root.setLevel(log_level)
    # urllib3 logs every new connection at DEBUG, URLs included: kept quiet as in the parent.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    runner = StageRunner(spec, idle_timeout=None)

    send(("ready", 0, None))

    def run(key: int, entries: list[FileData]) -> None:
        outcomes = runner.run_batch(entries)
        try:
            with send_lock:
                connection.send(("done", key, outcomes))
        except (OSError, ValueError):  # the parent is gone
            pass
        except Exception as exc:  # noqa: BLE001 - what cannot be sent fails its batch
            send(("failed", key, f"could not send its results back: {type(exc).__name__}"))

    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):  # the parent is gone: stop what runs and end
            runner.close(stop=True, timeout=spec.settings.stop_grace + CLOSE_MARGIN)
            return
        kind, key, payload = message
        if kind == "batch":
            batches = [thread for thread in batches if thread.is_alive()]
            thread = threading.Thread(target=run, args=(key, payload), daemon=True)
            thread.start()
            batches.append(thread)
        elif kind == "close":
            stop, timeout = payload
            deadline = time.monotonic() + timeout
            runner.close(stop=stop, timeout=timeout)
            for thread in batches:
                thread.join(max(0.0, deadline - time.monotonic()))
            send(("closed", 0, None))
            return


# -- this process's side ----------------------------------------------------------------


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """A process started inside keeps SIGINT ignored from its first instruction on."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Worker:
    """One worker process, its pipe, and a thread that reads what it sends."""

    def __init__(self, index: int, spec: StageSpec, landed: queue.SimpleQueue[Any]) -> None:
        self.index = index
        self.spec = spec
        mine, theirs = _CONTEXT.Pipe()
        self.process = _CONTEXT.Process(
            target=_serve,
            args=(theirs, spec, logging.getLogger().getEffectiveLevel()),
            name=f"dpp-process-{index}",
            daemon=True,
        )
        with _sigint_ignored():
            self.process.start()
        theirs.close()
        self.connection = mine
        #: Keys of the batches it runs.
        self.batches: set[int] = set()
        self.lost = False
        self.closing = False
        #: Its "closed" or its loss was taken in: nothing more comes from it.
        self.gone = False
        self.closed = threading.Event()
        self._landed = landed
        self.reader = threading.Thread(
            target=self._read, name=f"dpp-process-{index}-reader", daemon=True
        )
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                message = self.connection.recv()
            except Exception:  # noqa: BLE001 - gone, or killed halfway through a message
                self.closed.set()
                self._landed.put((self, ("lost", 0, None)))
                return
            kind, _, payload = message
            if kind == "log":
                name, level, text = payload
                logging.getLogger(name).log(level, "%s", text)
                continue
            if kind == "closed":
                self.closed.set()
            self._landed.put((self, message))

    def send(self, message: tuple[str, int, Any]) -> bool:
        """Send ``message``; False if the worker is gone."""
        try:
            self.connection.send(message)
            return True
        except (OSError, ValueError):
            return False

    def close(self, *, stop: bool, timeout: float) -> None:
        """Ask the worker to close its stages (once)."""
        if not self.closing and not self.lost:
            self.closing = True
            self.send(("close", 0, (stop, timeout)))

    def end(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the process to exit, then kill it."""
        self.process.join(timeout)
        if self.process.is_alive():
            logger.warning("worker process %d did not end; killing it", self.index)
            self.process.kill()
            self.process.join(CLOSE_MARGIN)
        with contextlib.suppress(OSError):
            self.connection.close()


def _shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` whole shares that add up to it, the larger first."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def split_spec(spec: StageSpec, processes: int) -> list[StageSpec]:
    """Each worker process's spec: the run's per-run limits divided between them.

    Raises :class:`~.errors.UsageError` for a limit that cannot be divided.
    """
    settings = spec.settings
    if settings.processing_mode == "process":
        raise UsageError(
            "--processing-mode process does not run in the 'processes' executor: each "
            "worker is already a process; give more with --executor-option processes=N"
        )
    if settings.cache_size is not None:
        raise UsageError(
            "--cache-size cannot be shared between the 'processes' executor's workers "
            "(a file larger than one share would run beside the others' files); "
            "leave it out or use --executor local"
        )
    divided: dict[str, list[Any]] = {}
    for name, flag in (
        ("download_workers", "--download-workers"),
        ("max_per_host", "--max-per-host"),
        ("limit_rate", "--limit-rate"),
    ):
        value = getattr(settings, name)
        if value is None:
            divided[name] = [None] * processes
            continue
        if value < processes:
            raise UsageError(
                f"{flag} {value} is a limit of the whole run and cannot be divided between "
                f"processes={processes}: give at least {processes}, or fewer processes"
            )
        divided[name] = list(_shares(value, processes))
    return [
        dataclasses.replace(
            spec,
            settings=dataclasses.replace(
                settings, **{name: shares[index] for name, shares in divided.items()}
            ),
        )
        for index in range(processes)
    ]


class ProcessExecutor(BaseExecutor):
    """Run downloads and processing in ``processes`` local worker processes."""

    options = (
        Option("processes", type=int, default=2, help="Worker processes (each a stage runner)."),
        Option("batch_size", type=int, default=DEFAULT_BATCH_SIZE, help="Entries per batch."),
        Option(
            "batches_in_flight",
            type=int,
            help=f"Batches sent and not yet back, at most; none: {BATCHES_PER_PROCESS} "
            "per process.",
        ),
    )

    def __init__(
        self,
        *,
        processes: int = 2,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batches_in_flight: int | None = None,
    ) -> None:
        for name, value in (
            ("processes", processes),
            ("batch_size", batch_size),
            ("batches_in_flight", batches_in_flight),
        ):
            if value is not None and value < 1:
                raise PluginOptionError(
                    f"executor 'processes': option {name}={value}: must be >= 1"
                )
        self.processes = processes
        self.batch_size = batch_size
        self.batches_in_flight = batches_in_flight or BATCHES_PER_PROCESS * processes
        self.specs: list[StageSpec] = []
        self.workers: list[_Worker] = []
        self.landed: queue.SimpleQueue[tuple[_Worker, tuple[str, int, Any]]] = queue.SimpleQueue()
        #: Worker processes lost during the run (each replaced), for tests and logs.
        self.losses = 0
        #: Seconds the workers were given to close after a stop; None without a stop.
        self.stop_wait: float | None = None

    def open(self, spec: StageSpec) -> None:
        """Divide the run's limits, start the worker processes."""
        self.specs = split_spec(spec, self.processes)
        self.workers = [self._start(index) for index in range(self.processes)]
        # Each says it is ready once its stages are built: one that cannot start
        # (a class its spec names does not import there) is a usage error now.
        waiting = {id(worker) for worker in self.workers}
        deadline = time.monotonic() + START_TIMEOUT
        while waiting:
            try:
                worker, (kind, _, _) = self.landed.get(timeout=deadline - time.monotonic())
            except (queue.Empty, ValueError):
                raise UsageError(
                    f"executor 'processes': the worker processes did not start within "
                    f"{START_TIMEOUT:g} s"
                ) from None
            if kind == "lost":
                worker.process.join(1.0)
                raise UsageError(
                    f"executor 'processes': a worker process could not start "
                    f"(exit code {worker.process.exitcode})"
                )
            waiting.discard(id(worker))

    def _start(self, index: int) -> _Worker:
        return _Worker(index, self.specs[index], self.landed)

    def replace(self, worker: _Worker) -> _Worker:
        """Start a new worker process in the place of ``worker``, which died."""
        self.losses += 1
        worker.end(0)
        new = self._start(worker.index)
        self.workers[worker.index] = new
        return new

    def run(self, work: ExecutorWork) -> None:
        """Send the input in batches, hand back every entry of each finished batch."""
        if not self.workers:
            raise ExecutorError("the processes executor was not opened")
        _Run(self, work).execute()

    def close(self) -> None:
        """Close every worker's stages, wait for them to exit, kill what does not."""
        workers, self.workers = self.workers, []
        for worker in workers:
            worker.close(stop=False, timeout=CLOSE_TIMEOUT)
        # After a stop the workers were told to close with the stop's own wait.
        wait = self.stop_wait if self.stop_wait is not None else CLOSE_TIMEOUT
        deadline = time.monotonic() + wait + CLOSE_MARGIN
        for worker in workers:
            worker.end(max(0.0, deadline - time.monotonic()))


class _Run(BatchDispatcher[int, _Worker]):
    """The loop of one run: batches out over the workers' pipes, finished batches back."""

    # A worker told to close at a stop is waited for a moment past the stop's deadline.
    stop_slack = 1.0

    def __init__(self, executor: ProcessExecutor, work: ExecutorWork) -> None:
        super().__init__(
            work,
            executor.batch_size,
            executor.batches_in_flight,
            batch_wait=BATCH_WAIT,
            poll_interval=POLL_INTERVAL,
            name="dpp-process-input",
            landed=executor.landed,
        )
        self.executor = executor
        self.sent = 0

    def send_batch(self, entries: list[tuple[int, FileData]]) -> tuple[int, _Worker]:
        self.sent += 1
        key = self.sent
        worker = min((w for w in self.executor.workers if not w.lost), key=lambda w: len(w.batches))
        worker.batches.add(key)
        # A worker that died meanwhile is noticed by its reader: the batch is retried then.
        worker.send(("batch", key, [file_data for _, file_data in entries]))
        return key, worker

    def worker_lost(self, message: str) -> WorkerLostError:
        return WorkerLostError(message)

    def land(self, item: tuple[_Worker, tuple[str, int, Any]]) -> None:
        worker, (kind, key, payload) = item
        if kind == "ready":
            return
        if kind in ("closed", "lost"):
            worker.gone = True
        if kind in ("done", "failed"):
            worker.batches.discard(key)
            flight = self.in_flight.pop(key, None)
            if flight is None:
                return
            if kind == "done":
                self.hand_back(flight, payload)
            else:
                self.batch_failed(flight, f"worker process {worker.process.pid} {payload}")
        elif kind == "lost" and not worker.lost and not worker.closing:
            worker.lost = True
            worker.process.join(1.0)
            reason = (
                f"worker process {worker.process.pid} died (exit code {worker.process.exitcode})"
            )
            flights = [self.in_flight.pop(key, None) for key in sorted(worker.batches)]
            worker.batches.clear()
            if self.work.stop_event.is_set():
                return  # the run reports what it had as interrupted
            logger.warning("%s; its files are tried again", reason)
            self.executor.replace(worker)
            for flight in flights:
                if flight is not None:
                    self.batch_failed(flight, reason)

    # -- winding down ------------------------------------------------------------------------

    def stopping(self) -> None:
        """Tell the workers to close their stages within the stop's grace period."""
        timeout = self.work.spec.settings.stop_grace + CLOSE_MARGIN
        self.executor.stop_wait = timeout
        for worker in self.executor.workers:
            worker.close(stop=True, timeout=timeout)

    def prune(self) -> None:
        """A worker that closed or was lost sends nothing more: its batches are not waited for."""
        self.in_flight = {
            key: flight for key, flight in self.in_flight.items() if not flight.handle.gone
        }


@hookimpl
def register_executors(register: Register) -> None:
    """Register ``processes``: download and process in local worker processes."""
    register("processes", ProcessExecutor)
