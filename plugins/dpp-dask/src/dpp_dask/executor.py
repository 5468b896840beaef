"""The ``dask`` executor: batches of entries to the workers of a Dask cluster, results back.

::

    client (this process)                          each worker process
    input --> batches --(submit, bounded)-->  StageRunner: download, process
    post-processors, journal <--(results)--   (own cache, processors built once)

The client reads the input, sends it in batches of ``batch_size`` entries as
Dask tasks, at most ``batches_in_flight`` at a time, and hands every entry of
a finished batch back to the run, where the post-processors, the journal and
the summary are kept as on one machine.  Dask reruns the task of a worker
that died on another worker; a batch whose workers keep dying is split, so
that only the entry that kills them fails.  An entry is handed back at most
once: the run drops any second hand-off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from download_pipeline_processor.errors import (
    ExecutorError,
    PipelineError,
    PluginOptionError,
    UsageError,
    error_text,
)
from download_pipeline_processor.executor import (
    BaseExecutor,
    BatchDispatcher,
    BatchFlight,
    ExecutorWork,
    StageSpec,
)
from download_pipeline_processor.options import Option
from download_pipeline_processor.stage_runner import DEFAULT_IDLE_TIMEOUT

from .worker import Batch, close_stages, run_batch

if TYPE_CHECKING:
    from download_pipeline_processor.file_data import FileData

__all__ = [
    "BATCH_WAIT",
    "CLOSE_MARGIN",
    "CLOSE_TIMEOUT",
    "DEFAULT_BATCH_SIZE",
    "POLL_INTERVAL",
    "DaskClient",
    "DaskExecutor",
    "DaskFuture",
    "WorkerLostError",
]


#: Dask's Client and Future: partly typed, so handled as Any here.
DaskClient = Any
DaskFuture = Any

logger = logging.getLogger(__name__)

#: Entries per task.  A task has a fixed cost (Dask's scheduling, the
#: worker's hand-offs), the same whether batches go out one or several per
#: call.  At 64 it is a small share of a file of the heavy processors this
#: executor is for, a lost worker redoes at most 64 files, and even a few
#: hundred files spread over every worker; much cheaper files run faster with
#: a larger batch_size (benchmarks/RESULTS.md, "Why the code is as it is").
DEFAULT_BATCH_SIZE = 64

#: How long a partial batch waits for more entries from a slow input (standard input).
BATCH_WAIT = 0.2

#: How often the client's loop looks at the stop signal, in seconds.
POLL_INTERVAL = 0.1

#: Seconds the workers get to close their stages (processors, caches) at the end.
CLOSE_TIMEOUT = 60.0

#: Seconds added to a wait on the workers or the cluster before the run goes on without them.
CLOSE_MARGIN = 10.0


@contextlib.contextmanager
def _interrupts_left_to_the_client() -> Iterator[None]:
    """Worker processes started inside ignore SIGINT: the run's client stops them.

    Ctrl-C in a terminal signals the whole foreground process group, the local
    cluster's worker processes included: each would die in a KeyboardInterrupt
    traceback, failing its files, while the client is winding the run down
    gracefully.  A process started with SIGINT ignored keeps ignoring it
    (Python installs its handler only over the default one); the client
    closes the cluster at the end of the run.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class WorkerLostError(PipelineError):
    """The worker processes running a file kept dying (or its task failed in Dask).

    Its message starts ``worker lost:``: the reason reports give and group it by.
    """


class DaskExecutor(BaseExecutor):
    """Run downloads and processing on the workers of a Dask cluster.

    Without ``scheduler``, a local cluster of ``n_workers`` worker processes
    is started on 127.0.0.1 for the run and closed after it.
    """

    options = (
        Option(
            "scheduler",
            help="Address of a running Dask scheduler (tcp://host:8786); without it a "
            "local cluster is started for the run.",
        ),
        Option(
            "n_workers",
            type=int,
            help="Worker processes of the local cluster; none: one per CPU core.",
        ),
        Option(
            "threads_per_worker",
            type=int,
            default=2,
            help="Batches one worker process runs at once (its downloads and processing "
            "threads are --download-workers and --processing-limit).",
        ),
        Option("batch_size", type=int, default=DEFAULT_BATCH_SIZE, help="Entries per Dask task."),
        Option(
            "batches_in_flight",
            type=int,
            help="Batches submitted and not yet back, at most; none: 2 per worker thread.",
        ),
        Option(
            "connect_timeout",
            type=float,
            default=30.0,
            help="Seconds to reach the scheduler and see a first worker.",
        ),
        Option(
            "idle_timeout",
            type=float,
            default=DEFAULT_IDLE_TIMEOUT,
            help="Seconds a worker keeps a run's stages without a batch (a vanished client).",
        ),
    )

    def __init__(
        self,
        *,
        scheduler: str | None = None,
        n_workers: int | None = None,
        threads_per_worker: int = 2,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batches_in_flight: int | None = None,
        connect_timeout: float = 30.0,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        for name, value in (
            ("n_workers", n_workers),
            ("threads_per_worker", threads_per_worker),
            ("batch_size", batch_size),
            ("batches_in_flight", batches_in_flight),
        ):
            if value is not None and value < 1:
                raise PluginOptionError(f"executor 'dask': option {name}={value}: must be >= 1")
        for name, seconds in (("connect_timeout", connect_timeout), ("idle_timeout", idle_timeout)):
            if not seconds > 0:
                raise PluginOptionError(f"executor 'dask': option {name}={seconds}: must be > 0")
        if scheduler is not None and n_workers is not None:
            raise PluginOptionError(
                "executor 'dask': n_workers sizes a local cluster; with scheduler the "
                "cluster's own workers are used"
            )
        self.scheduler = scheduler
        self.n_workers = n_workers or os.cpu_count() or 1
        self.threads_per_worker = threads_per_worker
        self.batch_size = batch_size
        self.batches_in_flight = batches_in_flight
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.client: DaskClient | None = None
        self.cluster: Any = None
        #: Tasks that failed in Dask (their batch split or its entry failed), for tests and logs.
        self.task_failures = 0

    # -- set-up -----------------------------------------------------------------------

    def open(self, spec: StageSpec) -> None:
        """Start the local cluster, or reach the scheduler and wait for a first worker."""
        if spec.settings.processing_mode == "process":
            raise UsageError(
                "--processing-mode process does not run on dask workers (a worker process "
                "cannot start processes of its own): each worker is already a process; "
                "give more with --executor-option n_workers=N"
            )
        # Imported here: loading the plugin (every start of the command line) must
        # not pay for importing Dask.
        import distributed

        # Partly typed: its constructors are called through Any.
        dask: Any = distributed

        quiet = not logger.isEnabledFor(logging.DEBUG)
        if quiet:
            from .quiet import quiet_dask_logs

            quiet_dask_logs()

        try:
            if self.scheduler is None:
                with _interrupts_left_to_the_client():
                    self.cluster = self._local_cluster(dask)
                self.client = dask.Client(self.cluster, set_as_default=False)
                if quiet:
                    # The local cluster's workers write to this run's stderr.
                    from .quiet import QuietLogs

                    self.client.register_plugin(QuietLogs())
            else:
                self.client = dask.Client(
                    self.scheduler, timeout=self.connect_timeout, set_as_default=False
                )
            self.client.wait_for_workers(1, timeout=self.connect_timeout)
        except Exception as exc:  # every way of failing to start is one line
            self.close()
            where = (
                f"the scheduler at {self.scheduler}"
                if self.scheduler is not None
                else "a local cluster"
            )
            raise UsageError(
                f"executor 'dask': cannot start work on {where}: {type(exc).__name__}: {exc}"
            ) from exc

    def _local_cluster(self, dask: Any) -> Any:
        """A local cluster of ``n_workers`` worker processes on 127.0.0.1."""
        return dask.LocalCluster(
            n_workers=self.n_workers,
            threads_per_worker=self.threads_per_worker,
            processes=True,
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address=None,
            # No dashboard, but the scheduler still serves health and metrics
            # over HTTP, on 8787 unless told: a second run on the machine then
            # printed Dask's "Port 8787 is already in use" warning.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.ERROR,
        )

    def close(self) -> None:
        """Close the client, and the local cluster if this run started one."""
        client, cluster = self.client, self.cluster
        self.client = self.cluster = None
        if client is not None:
            try:
                client.close(timeout=CLOSE_MARGIN)
            except Exception as exc:  # noqa: BLE001 - closing must not hide the run's outcome
                logger.debug("closing the dask client failed: %s", exc)
        if cluster is not None:
            try:
                cluster.close(timeout=CLOSE_MARGIN * 2)
            except Exception as exc:  # noqa: BLE001
                logger.debug("closing the local dask cluster failed: %s", exc)

    # -- the run ------------------------------------------------------------------------

    def run(self, work: ExecutorWork) -> None:
        """Send the input in batches, hand back every entry of each finished batch."""
        if self.client is None:
            raise ExecutorError("the dask executor was not opened")
        try:
            _Run(self, self.client, work).execute()
        except (ExecutorError, KeyboardInterrupt):
            raise
        except Exception as exc:
            # Dask's client raises its own errors once the scheduler is gone
            # (submitting, fetching a result): the run cannot go on either way.
            raise ExecutorError(f"dask: {type(exc).__name__}: {exc}") from exc


class _Run(BatchDispatcher[str, DaskFuture]):
    """The client's loop of one run: batches out as Dask tasks, finished batches back."""

    def __init__(self, executor: DaskExecutor, client: DaskClient, work: ExecutorWork) -> None:
        threads = sum(client.nthreads().values()) or 1
        # Entries read ahead of the batches, bounded: the input is streamed.
        super().__init__(
            work,
            executor.batch_size,
            executor.batches_in_flight or max(2, 2 * threads),
            batch_wait=BATCH_WAIT,
            poll_interval=POLL_INTERVAL,
            name="dpp-dask-reader",
        )
        self.executor = executor
        self.client = client
        self.token = uuid.uuid4().hex
        self.submitted = 0

    def execute(self) -> bool:
        clean = False
        try:
            clean = super().execute()
        finally:
            self._close_stages(stop=not clean)
        return clean

    # -- submitting and collecting -----------------------------------------------------------

    def send_batch(self, entries: list[tuple[int, FileData]]) -> tuple[str, DaskFuture]:
        self.submitted += 1
        key = f"dpp-batch-{self.token}-{self.submitted}"
        batch = Batch(
            self.token,
            self.work.spec,
            [file_data for _, file_data in entries],
            self.executor.idle_timeout,
        )
        future = self.client.submit(run_batch, batch, key=key, pure=False)
        future.add_done_callback(self.landed.put)
        return key, future

    def worker_lost(self, message: str) -> WorkerLostError:
        return WorkerLostError(message)

    def land(self, future: DaskFuture) -> None:
        flight = self.in_flight.pop(future.key, None)
        if flight is None:
            return
        if future.status == "finished":
            try:
                outcomes = future.result()
            except Exception as exc:  # noqa: BLE001 - the result could not be fetched
                self._failed(flight, exc)
                return
            self.hand_back(flight, outcomes)
        elif future.status == "cancelled":
            if not self.work.stop_event.is_set():
                raise ExecutorError(
                    "dask cancelled the run's tasks (the scheduler is gone, or the client lost it)"
                )
        else:
            self._failed(flight, future.exception())

    def _failed(self, flight: BatchFlight[DaskFuture], error: BaseException | None) -> None:
        """A task failed in Dask (its workers died ``allowed-failures`` times, say).

        A batch is split into single entries, tried again.  A single entry's
        worker may have died of another task running beside it (Dask counts
        a death against every task on the worker), so it is tried once more
        with nothing else of the run in flight; only failing so, it fails.
        """
        self.executor.task_failures += 1
        reason = error_text(error) if error is not None else "unknown"
        if len(flight.entries) > 1:
            logger.warning(
                "a batch of %d files failed on the dask workers (%s); trying each file alone",
                len(flight.entries),
                reason,
            )
        self.batch_failed(flight, f"the dask task running this file failed: {reason}")

    # -- winding down ------------------------------------------------------------------------

    def abandon(self, flights: list[BatchFlight[DaskFuture]]) -> None:
        """The tasks still out when the grace period ended are cancelled."""
        try:
            self.client.cancel([flight.handle for flight in flights])
        except Exception as exc:  # noqa: BLE001 - the run is stopping either way
            logger.debug("cancelling the dask tasks failed: %s", exc)

    def _close_stages(self, stop: bool) -> None:
        """Tell every worker to close this run's stages (processors, private caches).

        Waited for at most the workers' own time plus :data:`CLOSE_MARGIN`: a
        worker that does not answer closes them after ``idle_timeout`` anyway,
        and the run must end.
        """
        timeout = self.work.spec.settings.stop_grace + 5 if stop else CLOSE_TIMEOUT
        answered = threading.Event()

        def close_everywhere() -> None:
            try:
                self.client.run(close_stages, self.token, stop, timeout, on_error="ignore")
            except Exception as exc:  # noqa: BLE001 - a worker gone has nothing to close
                logger.debug("closing the stages on the dask workers failed: %s", exc)
            finally:
                answered.set()

        threading.Thread(target=close_everywhere, name="dpp-dask-close", daemon=True).start()
        if not answered.wait(timeout + CLOSE_MARGIN):
            logger.warning(
                "dask workers did not confirm closing this run's stages within %g s; "
                "each closes them after idle_timeout",
                timeout + CLOSE_MARGIN,
            )
