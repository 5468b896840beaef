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
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable

from ._batches import BatchChannel
from ._input_stream import ReadStopped
from ._threads import ThreadPinning
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

#: The most finished entries the post-processor takes at once.
FINISHED_BATCH = 1024

#: A downloaded entry waiting for processing: its sequence number and itself.
Downloaded = tuple[int, FileData]


class EntryFlow:
    """The in-flight table, the bounded queues between the stages and the hand-offs.

    ``downloaded`` holds at most ``download_queue_size`` entries waiting for a
    processing worker (backpressure on downloads); ``finished`` holds at most
    ``finished_queue_size`` entries waiting for the post-processor.  Both are
    :class:`~._batches.BatchChannel`: entries go in and come out in batches,
    one hand-off between threads for many files.  Every method is safe to
    call from any thread of the run.
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
        self._downloaded: BatchChannel[Downloaded] = BatchChannel(download_queue_size)
        self._finished: BatchChannel[tuple[FileData, Any]] = BatchChannel(finished_queue_size)
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
            return self._downloaded.put([(sequence, file_data)], 0)
        return self._put(self._downloaded, [(sequence, file_data)])

    def queue_downloaded_batch(self, downloaded: list[Downloaded], wait: bool = True) -> int:
        """Queue downloaded entries for processing, as many as there is room for; how many.

        With ``wait``, waits for room for each until the run is stopping;
        without, queues what fits now.  The entries not queued stay the caller's.
        """
        channel = self._downloaded
        queued = 0
        while queued < len(downloaded):
            moved = channel.put_some(downloaded[queued:], POLL_INTERVAL if wait else 0)
            queued += moved
            if not moved and (not wait or self.stop.is_set()):
                break
        return queued

    def end_downloads(self) -> None:
        """Tell every processing worker that no more entries come (they drain what is queued)."""
        self._downloaded.close()

    def downloaded_batch(
        self, most: int, fill_wait: float = 0.0, *, hold: bool = False
    ) -> list[Downloaded] | None:
        """Up to ``most`` downloaded entries for one processing worker; None at the end or a stop.

        Waits for the first, then at most ``fill_wait`` seconds for the batch
        to fill.  With ``hold``, the entries keep their room in the queue
        until :meth:`release_downloaded` (a worker that processes them one by
        one: those it has not begun still count as waiting).
        """
        channel = self._downloaded
        while not self.stop.is_set():
            batch = channel.take(most, POLL_INTERVAL, fill_wait, hold=hold)
            if batch is None:
                return None
            if batch:
                return batch
        return None

    def release_downloaded(self, count: int = 1) -> None:
        """Give back the queue's room of ``count`` entries taken with ``hold``."""
        self._downloaded.release(count)

    def downloaded_entries(self) -> Iterator[Downloaded]:
        """Downloaded entries for one processing worker, one by one, until the end or a stop."""
        while (batch := self.downloaded_batch(1)) is not None:
            yield from batch

    # -- hand-offs to the post-processor -------------------------------------------

    def finish(self, sequence: int, file_data: FileData, result: Any) -> None:
        """Send an entry to the post-processor unless a stop already abandoned it.

        An entry abandoned already has its cached file discarded here instead.
        """
        self.finish_batch([(sequence, file_data, result)])

    def finish_batch(self, finished: list[tuple[int, FileData, Any]]) -> None:
        """:meth:`finish` for many entries, handed to the post-processor in one batch."""
        owned: list[tuple[FileData, Any]] = []
        abandoned: list[FileData] = []
        with self._in_flight_lock:
            in_flight = self._in_flight
            taken_at = self._taken_at
            for sequence, file_data, result in finished:
                if in_flight.pop(sequence, None) is None:
                    abandoned.append(file_data)
                    continue
                taken_at.pop(sequence, None)
                owned.append((file_data, result))
            if owned:
                self._handoffs += 1
        for file_data in abandoned:
            self.discard(file_data.local_path)
        if not owned:
            return
        # Not under the lock: a full queue would stall every worker behind it.
        try:
            self._finished.put(owned)
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
        # Whatever the room: the post-processor is draining, and a stop must not wait.
        self._finished.put([(file_data, None) for _, file_data in abandoned], force=True)
        return len(abandoned)

    def end_finished(self) -> None:
        """Tell the post-processor no more entries come, once every hand-off under way landed."""
        with self._in_flight_lock:
            # No late hand-off may land behind the end of the stream.
            while self._handoffs:
                self._handoffs_done.wait()
        self._finished.close()

    def finished_batches(self) -> Iterator[list[tuple[FileData, Any]]]:
        """Batches of entries and results for the post-processor, until :meth:`end_finished`."""
        while (batch := self._finished.take(FINISHED_BATCH, POLL_INTERVAL)) is not None:
            if batch:
                yield batch

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
        target: BatchChannel[Any],
        items: list[Any],
        while_waiting: Callable[[], object] | None = None,
    ) -> bool:
        """Put ``items`` on a bounded channel, giving up (False) once the run is stopping."""
        while not target.put(items, POLL_INTERVAL):
            if self.stop.is_set():
                return False
            if while_waiting is not None:
                while_waiting()
        return True


class RunWork:
    """A run's :class:`~.executor.ExecutorWork`: its flow, its stage spec, its start notice.

    The built-in ``local`` executor reaches the whole :attr:`flow` (the queues
    between its stages); other executors use the public methods only.
    """

    def __init__(self, spec: StageSpec, flow: EntryFlow, on_started: Callable[[], None]) -> None:
        self.spec = spec
        self.flow = flow
        #: Where the run's threads go (``--pin-threads``): one for the whole run,
        #: the executor's threads and the post-processor's alike.
        self.pinning = ThreadPinning(spec.settings.pin_threads)
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

    def finish_batch(self, finished: list[tuple[int, FileData, Any]]) -> None:
        """Hand many entries to the post-processor at once (see :meth:`EntryFlow.finish_batch`)."""
        self.flow.finish_batch(finished)

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
