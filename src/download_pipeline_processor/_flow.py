"""The entries of one run on their way from the input to the post-processor.

Every entry taken from the input reaches the post-processor exactly once,
successful or failed.  Entries in flight are tracked in one table; whoever
hands an entry to the post-processor takes it out of that table first, so an
entry abandoned at a stop is never reported twice.  The download workers,
the feed of a multiplexing backend, the processing pool and the
post-processor share this state through :class:`EntryFlow` alone.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable

from ._input_stream import ReadStopped
from .errors import InvalidEntriesError, PipelineInterrupted
from .file_data import FileData

if TYPE_CHECKING:
    from pathlib import Path

    from ._cache import DownloadCache
    from ._inputs import CheckedEntries
    from ._stop_signal import StopSignal
    from .executor import StageSpec

logger = logging.getLogger(__name__)

#: How often a thread waiting on a queue looks at the stop signal, in seconds.
POLL_INTERVAL = 0.1

#: The end-of-stream marker on both queues.
END = object()


class EntryFlow:
    """The in-flight table, the bounded queues between the stages and the hand-offs.

    ``downloaded`` holds at most ``download_queue_size`` entries waiting for a
    processing worker (backpressure on downloads); ``finished`` holds at most
    ``finished_queue_size`` entries waiting for the post-processor.  Every
    method is safe to call from any thread of the run.
    """

    def __init__(
        self,
        entries: CheckedEntries,
        stop: StopSignal,
        cache: DownloadCache,
        download_queue_size: int,
        finished_queue_size: int,
    ) -> None:
        self.stop = stop
        self.cache = cache
        #: The error that ended reading the input during the run, if one did.
        self.input_failure: Exception | None = None
        self._source = entries
        # Idle standard input must not hold the run past a stop.
        entries.stop_reading_at(stop.event)
        self._entries = enumerate(entries)
        self._entries_lock = threading.Lock()
        self._in_flight: dict[int, FileData] = {}
        # When each entry in flight was taken, for a progress view's "waiting on" list.
        self._taken_at: dict[int, float] = {}
        self._in_flight_lock = threading.Lock()
        # Entries taken out of the table and on their way into ``finished``.
        self._handoffs = 0
        self._handoffs_done = threading.Condition(self._in_flight_lock)
        self._downloaded: queue.Queue[Any] = queue.Queue(maxsize=download_queue_size)
        self._finished: queue.Queue[Any] = queue.Queue(maxsize=finished_queue_size)
        self._bytes_lock = threading.Lock()
        self._bytes = 0
        #: Bytes written so far of the files still downloading: the download
        #: stage's count, once the run's stage is set up (see :meth:`bytes_in_flight`).
        self.downloading: Callable[[], int] | None = None

    # -- the input ----------------------------------------------------------------

    def next_entry(self) -> tuple[int, FileData] | None:
        """The next entry and its sequence number, now in flight; None at a stop or the end."""
        with self._entries_lock:
            if self.stop.is_set() or self.input_failure is not None:
                return None
            try:
                item = next(self._entries, None)
            except ReadStopped:
                return None  # the stop came while standard input was idle
            except InvalidEntriesError as exc:
                # Standard input is checked as it is read.
                self.input_failure = exc
                logger.error(
                    "stopped reading the input at an invalid entry (the files already "
                    "started finish): %s",
                    exc,
                )
                return None
            except Exception as exc:  # noqa: BLE001 - reported once, ends the input
                # A file was checked up front, so this means it changed under the run.
                self.input_failure = exc
                logger.error("reading the file list failed during the run: %s", exc)
                return None
            if item is not None:
                with self._in_flight_lock:
                    self._in_flight[item[0]] = item[1]
                    self._taken_at[item[0]] = time.monotonic()
            return item

    def input_ready(self) -> bool:
        """Whether :meth:`next_entry` would return now, without waiting for more input.

        A feed of batches (a distributed executor's worker) waits for the
        next batch; a caller that must not block (a multiplexing downloader
        with transfers in flight) asks this first.
        """
        return self.stop.is_set() or self.input_failure is not None or self._source.ready()

    @property
    def not_started(self) -> int:
        """Entries never taken from the input, from the checking pass's count."""
        # Reading the rest of a long list at a stop would delay the exit by as
        # long as the reading takes.
        with self._entries_lock:
            return self._source.remaining

    @property
    def invalid(self) -> tuple[int, list[str]]:
        """Invalid entries passed over so far (``--skip-invalid``): how many, the first reasons."""
        with self._entries_lock:
            return self._source.invalid.count, list(self._source.invalid.reasons)

    @property
    def in_flight(self) -> int:
        """How many entries are taken from the input and not yet handed to the post-processor."""
        with self._in_flight_lock:
            return len(self._in_flight)

    def oldest_in_flight(self, limit: int) -> list[tuple[FileData, float]]:
        """Up to ``limit`` entries in flight, longest first, each with when it was taken."""
        with self._in_flight_lock:
            # The table is in the order entries were taken: the first are the oldest.
            oldest: list[tuple[FileData, float]] = []
            for sequence, file_data in self._in_flight.items():
                if len(oldest) >= limit:
                    break
                oldest.append((file_data, self._taken_at.get(sequence, 0.0)))
            return oldest

    @property
    def entries_read(self) -> int:
        """Entries read from the input so far, journal-skipped ones included."""
        return self._source.taken

    @property
    def entries_total(self) -> int | None:
        """Entries of the whole input, when known before the run reads them all."""
        count: int | None = getattr(self._source, "count", None)
        return count

    # -- downloaded entries -------------------------------------------------------

    def count_bytes(self, size: int) -> None:
        """Add ``size`` downloaded bytes to :attr:`bytes_downloaded`."""
        with self._bytes_lock:
            self._bytes += size

    @property
    def bytes_downloaded(self) -> int:
        """Bytes of every file downloaded so far."""
        return self._bytes

    def bytes_in_flight(self) -> int:
        """Bytes written so far of the files still downloading (0 once the cache is closed)."""
        downloading = self.downloading
        if downloading is None or not self.cache.is_open:
            return 0
        return downloading()

    def queue_downloaded(self, sequence: int, file_data: FileData, wait: bool = True) -> bool:
        """Queue a downloaded entry for processing; False if it was not queued.

        With ``wait``, waits for room until the run is stopping (then the entry
        stays in flight and :meth:`abandon_in_flight` reports it); without,
        gives up at once when the queue is full.
        """
        if not wait:
            try:
                self._downloaded.put_nowait((sequence, file_data))
            except queue.Full:
                return False
            return True
        return self._put(self._downloaded, (sequence, file_data))

    def end_downloads(
        self, processing_workers: int, while_waiting: Callable[[], object] | None = None
    ) -> None:
        """Tell each of ``processing_workers`` that no more entries come (unless stopping).

        ``while_waiting`` is called each time round while the queue is full.
        """
        for _ in range(processing_workers):
            if not self._put(self._downloaded, END, while_waiting):
                break

    def downloaded_entries(self) -> Iterator[tuple[int, FileData]]:
        """Downloaded entries for one processing worker, until the end or a stop."""
        while not self.stop.is_set():
            try:
                item = self._downloaded.get(timeout=POLL_INTERVAL)
            except queue.Empty:
                continue
            if item is END:
                return
            yield item

    # -- hand-offs to the post-processor -------------------------------------------

    def finish(self, sequence: int, file_data: FileData, result: Any) -> None:
        """Send an entry to the post-processor unless a stop already abandoned it.

        An entry abandoned already has its cached file discarded here instead.
        """
        with self._in_flight_lock:
            owned = self._in_flight.pop(sequence, None) is not None
            self._taken_at.pop(sequence, None)
            if owned:
                self._handoffs += 1
        if not owned:
            self.discard(file_data.local_path)
            return
        # Not under the lock: a full queue would stall every worker behind it.
        try:
            self._finished.put((file_data, result))
        finally:
            with self._in_flight_lock:
                self._handoffs -= 1
                if not self._handoffs:
                    self._handoffs_done.notify_all()

    def abandon_in_flight(self) -> int:
        """Report every entry still in flight as interrupted, at the stage it was in.

        Each goes to the post-processor once: a worker finishing one later
        finds it gone from the table.  Returns how many were abandoned.
        """
        with self._in_flight_lock:
            abandoned = sorted(self._in_flight.items())
            self._in_flight.clear()
            self._taken_at.clear()
        for _, file_data in abandoned:
            stage = "download" if file_data.local_path is None else "process"
            file_data.fail(stage, PipelineInterrupted("run stopped before this file finished"))
            self.discard(file_data.local_path)
            self._finished.put((file_data, None))
        return len(abandoned)

    def end_finished(self) -> None:
        """Tell the post-processor no more entries come, once every hand-off under way landed."""
        with self._in_flight_lock:
            # No late hand-off may land behind the end-of-stream marker.
            while self._handoffs:
                self._handoffs_done.wait()
        self._finished.put(END)

    def finished_entries(self) -> Iterator[tuple[FileData, Any]]:
        """Entries and their results for the post-processor, until :meth:`end_finished`."""
        while (item := self._finished.get()) is not END:
            yield item

    # -- the cache ----------------------------------------------------------------

    def discard(self, path: Path | None) -> Exception | None:
        """Remove a cached file (see :meth:`DownloadCache.discard`); the error if any is left.

        Nothing is removed while this run's cache is not open: an executor
        downloading elsewhere hands back paths of another process's cache
        (another machine's, maybe), which are never this process's to touch.
        """
        if not self.cache.is_open:
            return None
        try:
            error: Exception | None = self.cache.discard(path)
        except Exception as exc:  # noqa: BLE001 - clean-up must never end a pipeline thread
            error = exc
        if error is not None:
            # What is left goes with the run's folder at the end.
            logger.warning("could not remove %s from the cache: %s", path, error)
        return error

    def _put(
        self,
        target: queue.Queue[Any],
        item: Any,
        while_waiting: Callable[[], object] | None = None,
    ) -> bool:
        """Put ``item`` on a bounded queue, giving up (False) once the run is stopping."""
        while True:
            try:
                target.put(item, timeout=POLL_INTERVAL)
                return True
            except queue.Full:
                if self.stop.is_set():
                    return False
                if while_waiting is not None:
                    while_waiting()


class RunWork:
    """A run's :class:`~.executor.ExecutorWork`: its flow, its stage spec, its start notice.

    The built-in ``local`` executor reaches the whole :attr:`flow` (the queues
    between its stages); other executors use the public methods only.
    """

    def __init__(self, spec: StageSpec, flow: EntryFlow, on_started: Callable[[], None]) -> None:
        self.spec = spec
        self.flow = flow
        self.stop_event = flow.stop.event
        self._on_started = on_started
        self._grace_ends: float | None = None

    def started(self) -> None:
        """Notify the run's observers that the work is starting."""
        self._on_started()

    def next_entry(self) -> tuple[int, FileData] | None:
        """The next entry of the input, now in flight (see :meth:`EntryFlow.next_entry`)."""
        return self.flow.next_entry()

    def finish(self, sequence: int, file_data: FileData, result: Any) -> None:
        """Hand an entry to the post-processor (see :meth:`EntryFlow.finish`)."""
        self.flow.finish(sequence, file_data, result)

    def count_bytes(self, size: int) -> None:
        """Add downloaded bytes to the run's count."""
        self.flow.count_bytes(size)

    def stop_deadline(self) -> float | None:
        """None until a stop; then when the grace period for in-flight work ends."""
        if not self.stop_event.is_set():
            return None
        if self._grace_ends is None:
            self._grace_ends = time.monotonic() + self.spec.settings.stop_grace
        return self._grace_ends
