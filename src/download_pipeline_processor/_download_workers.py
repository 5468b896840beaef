"""The download workers: threads that take entries, download them and queue them for processing."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable

from ._flow import POLL_INTERVAL
from ._hosts import NOT_READY, EntryScheduler
from ._threads import worker_thread
from .base_processor import DOWNLOAD

if TYPE_CHECKING:
    from ._download_stage import DownloadStage
    from ._flow import EntryFlow
    from ._hosts import Entry, HostSlot, NotReady
    from ._threads import ThreadPinning
    from .backend import Attempt
    from .errors import TransientDownloadError
    from .file_data import FileData


#: Entries of full or paused hosts that may wait aside, per download worker.
LOOK_AHEAD_PER_WORKER = 16


class DownloadWorkers:
    """``count`` threads (``--download-workers``) sharing one stage and one flow.

    A multiplexing backend's feed (:mod:`._feed`) downloads the files it hands
    back through :meth:`download` too, and keeps the same limit.
    ``result_without_download``: the processor's
    :meth:`~.base_processor.BaseProcessor.result_without_download`, asked
    about each entry before its download (see :meth:`settled_without_download`).
    """

    def __init__(
        self,
        stage: DownloadStage,
        flow: EntryFlow,
        count: int,
        pinning: ThreadPinning,
        result_without_download: Callable[[FileData], Any] | None = None,
    ) -> None:
        self.stage = stage
        self.flow = flow
        #: At most this many files download at once.
        self.count = count
        self.pinning = pinning
        self.result_without_download = result_without_download
        # One call at a time: the processor instance is written for one thread.
        self._check_lock = threading.Lock()
        #: The entries to download, each with its host's slot (--max-per-host,
        #: 429s, Retry-After): one of a full or paused host waits aside for
        #: later ones of other hosts, up to LOOK_AHEAD_PER_WORKER per worker.
        self.entries = EntryScheduler(
            stage.hosts,
            self._next_to_download,
            max(count * LOOK_AHEAD_PER_WORKER, 64),
            ready=flow.input_ready,
        )

    def threads(self, first: int = 0) -> list[threading.Thread]:
        """Worker threads ``first`` to ``count - 1``, not started."""
        return [worker_thread(self.work, f"download-{i}") for i in range(first, self.count)]

    def work(self) -> None:
        """One worker: download entries until the input ends or the run stops."""
        self.pinning.pin()
        stop = self.flow.stop.event
        while self.wait_for_room() and (item := self.entries.next(stop)) is not None:
            sequence, file_data, slot = item
            if not self.download(sequence, file_data, slot=slot):
                return  # stopping: the entry stays in flight and is abandoned

    def _next_to_download(self) -> Entry | NotReady | None:
        """The next entry of the input the processor did not settle without a download.

        :data:`~._hosts.NOT_READY` once it settled some and the input has no
        more ready: a caller that must not block (a multiplexing downloader)
        is not held here waiting for more input.
        """
        while (item := self.flow.next_entry()) is not None:
            if not self.settled_without_download(*item):
                return item
            if not self.flow.input_ready():
                return NOT_READY
        return None

    def settled_without_download(self, sequence: int, file_data: FileData) -> bool:
        """True when the processor settled the entry without a download: it went on.

        A result goes to the post-processor as the file's, succeeded; an
        exception fails the file at stage ``process``.
        """
        check = self.result_without_download
        if check is None:
            return False
        try:
            with self._check_lock:
                result = check(file_data)
        except BaseException as exc:  # noqa: BLE001 - the processor's verdict on this file
            file_data.fail("process", exc)
            self.flow.finish(sequence, file_data, None)
            return True
        if result is DOWNLOAD:
            return False
        self.flow.finish(sequence, file_data, result)
        return True

    def wait_for_room(self) -> bool:
        """Wait while the cache is full (--cache-size); False once the run is stopping.

        The next entry stays unread until there is room.
        """
        budget = self.stage.cache.budget
        stop = self.flow.stop
        while not budget.has_room():
            if stop.is_set():
                return False
            budget.wait_for_room(POLL_INTERVAL)
        return True

    def download(
        self,
        sequence: int,
        file_data: FileData,
        attempt: Attempt | None = None,
        failure: TransientDownloadError | None = None,
        slot: HostSlot | None = None,
    ) -> bool:
        """Download one entry taken from the flow and queue it for processing.

        ``attempt``, ``failure`` and ``slot`` are as for :meth:`DownloadStage.download`.
        A failed download goes to the post-processor.  False when a stop
        left the entry unqueued (it stays in flight and is abandoned).
        """
        try:
            size = self.stage.download(sequence, file_data, attempt, failure, slot)
        except BaseException as exc:  # noqa: BLE001 - every failure is the file's, not the run's
            file_data.fail("download", exc)
            self.flow.finish(sequence, file_data, None)
            return True
        self.flow.count_bytes(size)
        return self.flow.queue_downloaded(sequence, file_data)
