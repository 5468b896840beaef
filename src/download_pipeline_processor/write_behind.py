"""Writing large bodies on a thread of their own, beside a downloader's event loop.

A downloader that drives every transfer from one thread (an event loop, a
libcurl multi handle) would otherwise also write and hash every body on that
thread, one core for the whole run.  With a :class:`WriteBehind` it hands
each block of a large body to a writing thread and goes back to the network:
``os.writev`` and the digests release the GIL, so the copy to the file and
the hashing run on another core while the next bytes arrive.

Each body gets a :class:`Lane`: its blocks are written in order, through the
file's :class:`~download_pipeline_processor.sink.BodyWriter` (so every rule
of a write holds: ``--max-file-size``, ``--file-timeout``, ``--cache-size``,
``--limit-rate``, the digests), at most ``limit`` bytes ahead of the disk.
What a write raised comes back from the lane's next :meth:`Lane.write` or
from :meth:`Lane.finish`, which the downloader calls before it closes the
file::

    lane = write_behind.lane(writer)
    lane.write(chunks)  # queued; raises an earlier block's error
    ...
    lane.finish()  # every block written; raises what a write raised
    writer.close()
"""

from __future__ import annotations

import collections
import os
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

from . import affinity

if TYPE_CHECKING:
    from .sink import BodyWriter, Chunk

__all__ = ["DEFAULT_LIMIT", "Lane", "WriteBehind", "default_threads"]

#: (the lane, its block, the block's bytes); no lane: the thread ends.
_Job = tuple[Optional["Lane"], Sequence["Chunk"], int]

#: Bytes a lane may hold in memory ahead of its file, by default.
DEFAULT_LIMIT = 4 * 1024 * 1024


def default_threads() -> int:
    """Writing threads by default: one per CPU this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class Lane:
    """One body's queue of blocks to a writing thread; used by one thread (the downloader's)."""

    __slots__ = ("error", "queued", "worker", "writer")

    def __init__(self, worker: _Worker, writer: BodyWriter) -> None:
        self.worker = worker
        self.writer = writer
        #: Bytes handed over and not yet written.
        self.queued = 0
        #: What a write raised; the blocks after it are dropped.
        self.error: BaseException | None = None

    def write(self, chunks: Sequence[Chunk]) -> None:
        """Queue ``chunks`` for ``writer.write_many``; wait while the lane is ``limit`` ahead.

        Raises what an earlier block's write raised.  The list is the lane's
        from now on: the caller must not change it.
        """
        self.worker.submit(self, chunks)

    def finish(self) -> None:
        """Wait until every queued block is written, give the lane up; raise a write's error."""
        self.worker.finish(self)


class _Worker:
    """One writing thread and its queue; it starts with its first block."""

    __slots__ = ("condition", "jobs", "lanes", "limit", "name", "thread", "work")

    def __init__(
        self, lock: threading.Lock, condition: threading.Condition, limit: int, name: str
    ) -> None:
        #: Notified when a lane's queue shrinks (its lock is every worker's).
        self.condition = condition
        #: Notified when this thread has a job.
        self.work = threading.Condition(lock)
        self.limit = limit
        self.name = name
        self.jobs: collections.deque[_Job] = collections.deque()
        self.lanes = 0  # lanes not finished yet
        self.thread: threading.Thread | None = None

    def submit(self, lane: Lane, chunks: Sequence[Chunk]) -> None:
        size = sum(len(chunk) for chunk in chunks)
        condition = self.condition
        with condition:
            # At least one block is always let through, however large.
            while lane.error is None and lane.queued and lane.queued + size > self.limit:
                condition.wait()
            if lane.error is not None:
                raise lane.error
            lane.queued += size
            self.jobs.append((lane, chunks, size))
            if self.thread is None:
                self._start()
            elif len(self.jobs) == 1:
                self.work.notify()

    def finish(self, lane: Lane) -> None:
        with self.condition:
            while lane.queued:
                self.condition.wait()
            if lane.worker is self:
                self.lanes -= 1
                lane.worker = _FINISHED
        if lane.error is not None:
            raise lane.error

    def stop(self) -> threading.Thread | None:
        """Queue the end of the thread (the condition held); the thread to join, if any."""
        if self.thread is not None:
            self.jobs.append((None, (), 0))
            self.work.notify()
        return self.thread

    def _start(self) -> None:
        thread = threading.Thread(target=self._run, name=f"dpp-{self.name}", daemon=True)
        # A thread inherits its starter's CPUs: a pinned loop's writer would share
        # its one core (see affinity), so it starts from a widened thread.
        with affinity.widened_for(sys.maxsize):
            thread.start()
        self.thread = thread

    def _run(self) -> None:
        condition = self.condition
        work = self.work
        jobs = self.jobs
        while True:
            with condition:
                while not jobs:
                    work.wait()
                lane, chunks, size = jobs.popleft()
            if lane is None:
                return
            if lane.error is None:
                try:
                    lane.writer.write_many(chunks)
                except BaseException as exc:  # noqa: BLE001 - the lane's owner raises it
                    lane.error = exc
            with condition:
                lane.queued -= size
                condition.notify_all()


class _Finished:
    """The worker of a finished lane: it takes no more blocks."""

    def submit(self, lane: Lane, chunks: Sequence[Chunk]) -> None:
        raise RuntimeError("Lane.write after finish()")

    def finish(self, lane: Lane) -> None:
        if lane.error is not None:
            raise lane.error


_FINISHED: Any = _Finished()


class WriteBehind:
    """Writing threads shared by the lanes of one event loop; each starts with its first block.

    ``threads``: how many (by default one per CPU), each taking the lanes of
    its share of the bodies: a body is written and hashed on one thread, in order.
    """

    def __init__(
        self, limit: int = DEFAULT_LIMIT, *, threads: int | None = None, name: str = "write-behind"
    ) -> None:
        self.limit = limit
        lock = threading.Lock()
        self._condition = threading.Condition(lock)
        count = threads if threads is not None else default_threads()
        self._workers = [
            _Worker(lock, self._condition, limit, f"{name}-{index}")
            for index in range(max(1, count))
        ]
        self._closed = False

    def lane(self, writer: BodyWriter) -> Lane:
        """A lane for the body being written through ``writer``, on the least busy thread."""
        with self._condition:
            if self._closed:
                raise RuntimeError("WriteBehind.lane after close()")
            worker = min(self._workers, key=lambda worker: worker.lanes)
            worker.lanes += 1
        return Lane(worker, writer)

    def close(self) -> None:
        """Write what is queued, then end the threads."""
        with self._condition:
            if self._closed:
                return
            self._closed = True
            threads = [worker.stop() for worker in self._workers]
        for thread in threads:
            if thread is not None and thread is not threading.current_thread():
                thread.join()
