"""The framework's side of a multiplexing backend: :class:`RunFeed`.

A backend with :meth:`~.backend.Downloader.fetch_many` runs on one thread
and takes its jobs from a :class:`RunFeed`.  The feed keeps the rules the
download worker threads keep otherwise: at most ``--download-workers`` files
at once, counting the ones handed back to worker threads; no new file while a
finished one cannot enter the full downloaded queue, or while the cache has no
room (``--cache-size``); every entry reaches the post-processor once.
Retries and hand-offs run on a few helper threads through
:meth:`~._download_workers.DownloadWorkers.download`, as the worker threads do; entries come
from and go to the run's :class:`~._flow.EntryFlow`.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import threading
from typing import TYPE_CHECKING, Any

from ._cache_budget import RoomWanted, disk_full_error, expected_size
from ._flow import POLL_INTERVAL
from ._threads import worker_thread
from .backend import Attempt, DownloadJob
from .errors import DownloadError, TransientDownloadError

if TYPE_CHECKING:
    from ._download_workers import DownloadWorkers
    from ._hosts import HostSlot
    from .backend import Downloader

logger = logging.getLogger(__name__)

#: How often ``take`` must be called while a finished file waits for room, or
#: while helper threads hold download slots (a slot they free is seen this soon).
BACKLOG_POLL = 0.005


class RunFeed:
    """Jobs for one ``fetch_many`` call; only the backend's thread calls its feed methods."""

    def __init__(self, workers: DownloadWorkers) -> None:
        self.workers = workers
        self.stage = workers.stage
        self.flow = workers.flow
        self.should_stop = workers.flow.stop.event
        self.limit = workers.count
        self.entries = workers.entries
        self.hosts = workers.stage.hosts
        #: The host slot of each job the backend holds, by sequence.
        self._host_slots: dict[int, HostSlot] = {}
        #: Jobs the backend holds, by sequence.
        self.out: dict[int, DownloadJob] = {}
        #: Downloaded entries waiting for room in the downloaded queue.
        self.backlog: collections.deque[tuple[int, Any]] = collections.deque()
        self.exhausted = False
        # Helper threads: retries and hand-offs, which block.
        self._tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._helpers: list[threading.Thread] = []
        self._busy = 0  # tasks queued or running, each holding a download slot (and a helper)
        self._slots = threading.Condition()

    # -- what the backend calls ---------------------------------------------------

    @property
    def poll_interval(self) -> float:
        return BACKLOG_POLL if self.backlog or self._busy else POLL_INTERVAL

    def take(self, wait: bool = False) -> DownloadJob | None:
        if wait and self.out:
            # It would wait for slots only the caller itself can free.
            raise RuntimeError("take(wait=True) while jobs are out; use take() and poll")
        if not self._flush(wait):
            return None
        budget = self.stage.cache.budget
        while True:
            with self._slots:
                while len(self.out) + self._busy >= self.limit:
                    if not wait or self.should_stop.is_set():
                        return None
                    self._slots.wait(self.poll_interval)
            # --cache-size: no new file while the cache is full; processing makes room.
            while not budget.has_room():
                if not wait or self.should_stop.is_set():
                    return None
                budget.wait_for_room(self.poll_interval)
            # The next entry whose host has room (--max-per-host, a pause): a full
            # or paused host's entries wait aside and never hold up other hosts'.
            item = self.entries.next(self.should_stop, wait)
            if item is None:
                if self.entries.exhausted:
                    self.exhausted = True
                return None
            sequence, file_data, slot = item
            cache = self.stage.cache
            try:
                target = cache.target_for(sequence, file_data)
            except OSError as exc:  # the shard folder could not be made
                self.hosts.forget(slot)
                file_data.fail("download", exc)
                self.flow.finish(sequence, file_data, None)
                continue
            part = cache.part_path(target)
            try:
                request = self.stage.request(file_data, os.fspath(part))
            except DownloadError as exc:  # announced past --max-file-size, a bad URL: no request
                self.hosts.forget(slot)
                file_data.fail("download", exc)
                self.flow.finish(sequence, file_data, None)
                continue
            job = DownloadJob(sequence, file_data, part, target, request)
            if not budget.try_reserve(str(job.destination), expected_size(file_data)):
                # Announced larger than the room left: a helper thread waits its turn.
                self.hosts.forget(slot)
                self._submit(job, None, None)
                continue
            self.stage.begin_attempt(request)  # it never waits for room: the loop
            self.out[sequence] = job
            self._host_slots[sequence] = slot
            return job

    def done(self, job: DownloadJob, size: int) -> None:
        file_data = job.file_data
        writer = job.request.writer
        try:
            writer.close()
            self.stage.verify(file_data, writer, size)
        except (DownloadError, OSError) as exc:  # a mismatch is retried as a failure is
            self.failed(job, exc)
            return
        self._give_back(job)
        self.hosts.release(self._host_slots.pop(job.sequence))
        self.stage.forget(job.request.destination)
        try:
            self.stage.cache.commit(job.destination, job.target)
        except OSError as exc:
            self._fail(job, exc)
            return
        self.stage.cache.budget.complete(str(job.destination), str(job.target), size)
        file_data.local_path = job.target
        self.flow.count_bytes(size)
        self.backlog.append((job.sequence, file_data))
        self._flush(block=False)

    def failed(self, job: DownloadJob, error: BaseException) -> None:
        self._give_back(job)
        # A 429 or a Retry-After holds the host back before this file's retry waits its turn.
        self.hosts.release(self._host_slots.pop(job.sequence), error)
        self.stage.record_answer(job.file_data, job.request.writer, error)
        if isinstance(error, RoomWanted):
            # Refused room in the cache: the file waits for it on a helper thread and
            # starts a new attempt; this one is not counted.
            job.file_data.download.attempts -= 1
        full = disk_full_error(error)
        if full is not None:
            full.__cause__ = error
            error = full
        if isinstance(error, TransientDownloadError):
            # The stage decides, as for fetch(): no retries left, a stop, or a retry.
            self._submit(job, None, error)
        else:
            self._fail(job, error)

    def hand_off(self, job: DownloadJob, attempt: Attempt | None = None) -> None:
        self._give_back(job)
        slot: HostSlot | None = self._host_slots.pop(job.sequence)
        if attempt is None:
            # No request was made: fetch() makes the attempt, and counts it.
            job.file_data.download.attempts -= 1
            # It holds the host's slot while it waits for a helper: no one else may take it.
        self._submit(job, attempt, None, slot)

    # -- the rest ---------------------------------------------------------------------

    def _give_back(self, job: DownloadJob) -> None:
        if self.out.pop(job.sequence, None) is None:
            raise RuntimeError(f"{job!r} was given back twice or never taken")

    def _fail(self, job: DownloadJob, error: BaseException) -> None:
        self.stage.forget(job.request.destination)
        self.stage.cache.discard(job.destination)
        job.file_data.fail("download", error)
        self.flow.finish(job.sequence, job.file_data, None)

    def _flush(self, block: bool) -> bool:
        """Move the backlog into the downloaded queue; False while some of it must wait."""
        backlog = self.backlog
        flow = self.flow
        while backlog:
            if not flow.queue_downloaded(*backlog[0], wait=block):
                return False
            backlog.popleft()
        return True

    def _submit(
        self,
        job: DownloadJob,
        attempt: Attempt | None,
        failure: TransientDownloadError | None,
        slot: HostSlot | None = None,
    ) -> None:
        with self._slots:
            self._busy += 1
            # Each task keeps a helper busy until it ends, and _busy never passes the limit.
            start = len(self._helpers) < self._busy
        if start:
            helper = worker_thread(self._helper, f"download-helper-{len(self._helpers)}")
            self._helpers.append(helper)
            helper.start()
        self._tasks.put((job, attempt, failure, slot))

    def _helper(self) -> None:
        self.workers.pinning.pin()
        while (task := self._tasks.get()) is not None:
            job, attempt, failure, slot = task
            try:
                self.workers.download(job.sequence, job.file_data, attempt, failure, slot)
            finally:
                with self._slots:
                    self._busy -= 1
                    self._slots.notify_all()

    def close(self, error: BaseException | None = None) -> None:
        """After ``fetch_many`` returned or raised ``error``: settle every job, end the helpers."""
        if self.out:
            if error is None:
                error = RuntimeError("the downloader returned without finishing this file")
            for job in list(self.out.values()):
                self.failed(job, error)
        self._flush(block=True)  # at a stop, what is left stays in flight and is abandoned
        for _ in self._helpers:
            self._tasks.put(None)
        for helper in self._helpers:
            helper.join()


def drive_fetch_many(downloader: Downloader, workers: DownloadWorkers) -> None:
    """Run a multiplexing backend's ``fetch_many`` on this one thread.

    If the backend gives up before the input ends, the rest of the entries
    go through ``fetch()`` on worker threads, this one among them.
    """
    workers.pinning.pin()
    feed = RunFeed(workers)
    error: BaseException | None = None
    try:
        downloader.fetch_many(feed)
    except BaseException as exc:
        logger.error("the downloader failed: %s", exc, exc_info=logger.isEnabledFor(logging.DEBUG))
        error = exc
    feed.close(error)
    if feed.exhausted or feed.should_stop.is_set():
        return
    # The backend gave up before the list ended: the rest must not be lost.
    logger.warning("the downloader stopped taking files; the rest go through fetch()")
    threads = workers.threads(first=1)
    for thread in threads:
        thread.start()
    workers.work()
    for thread in threads:
        thread.join()
