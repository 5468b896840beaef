"""Batches between the stages of a run, and a processor's call on one batch.

Files move from the download workers to the processing workers, and from
those to the post-processor thread, through :class:`BatchChannel`: a thread
takes every item waiting (up to a limit) at once, so a hand-off between
threads, with its lock and its wake-up, is paid per batch instead of per
file.  :func:`process_files` calls a processor on a batch: its
``process_batch`` when it has one, else ``process`` once per file.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .errors import PipelineError

if TYPE_CHECKING:
    from .base_processor import BaseProcessor
    from .file_data import FileData

T = TypeVar("T")


class BatchError(PipelineError):
    """A processor's ``process_batch`` broke its contract (not one result per file)."""


class BatchChannel(Generic[T]):
    """A hand-off between threads, put and taken in batches, holding at most ``capacity`` items.

    ``capacity`` None: unbounded.  A put waits while the channel is full,
    then adds its whole batch (so a batch of several may take it past
    ``capacity``, by less than the batch).  :meth:`close` ends it: takers
    get what is left, then None.
    """

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        self._items: collections.deque[T] = collections.deque()
        lock = threading.Lock()
        self._readable = threading.Condition(lock)
        self._writable = threading.Condition(lock)
        self._closed = False
        self._fill_turn = threading.Lock()
        #: How many waiting items wake a taker: more than one while a taker fills a batch.
        self._wanted = 1
        #: Items taken with ``hold`` whose room is not given back yet.
        self._held = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, items: Sequence[T], timeout: float | None = None, *, force: bool = False) -> bool:
        """Add ``items`` once there is room; False if ``timeout`` (0: none at all) passed first.

        ``force`` adds them whatever the room (what a stop hands on must never wait).
        """
        if not items:
            return True
        with self._writable:
            if not force and not self._has_room():
                if timeout is not None and timeout <= 0:
                    return False
                if not self._writable.wait_for(self._has_room, timeout):
                    return False
            self._items.extend(items)
            # A taker filling a batch is woken once for many items, not once per item.
            if len(self._items) >= self._wanted:
                self._readable.notify()
        return True

    def put_some(self, items: Sequence[T], timeout: float) -> int:
        """Add as many of ``items`` as there is room for, waiting at most ``timeout`` for
        some room (0: not at all); how many were added, from the front."""
        with self._writable:
            if not self._has_room() and (
                timeout <= 0 or not self._writable.wait_for(self._has_room, timeout)
            ):
                return 0
            room = len(items)
            if self.capacity is not None:
                room = min(room, self.capacity - len(self._items) - self._held)
            self._items.extend(items[:room])
            if len(self._items) >= self._wanted:
                self._readable.notify()
            return room

    def _has_room(self) -> bool:
        capacity = self.capacity
        return capacity is None or len(self._items) + self._held < capacity

    def take(
        self, most: int, timeout: float, fill_wait: float = 0.0, *, hold: bool = False
    ) -> list[T] | None:
        """Up to ``most`` items, oldest first; None once closed and empty.

        Waits at most ``timeout`` for a first item ([] if none came), then at
        most ``fill_wait`` more for the batch to fill.  While it fills, one
        put wakes it only once enough items wait (or the channel is full), and
        one taker fills at a time, so that concurrent takers do not split
        the batches.  With ``hold``, the items taken keep their room until
        :meth:`release` gives it back (a taker that works through its batch one
        item at a time: the items it has not begun still wait, for the bound).
        """
        if fill_wait <= 0 or most <= 1:
            with self._readable:
                return self._take_now(most, timeout, hold)
        if not self._fill_turn.acquire(timeout=timeout):
            return []
        try:
            with self._readable:
                batch = self._take_now(most, timeout, hold)
                if not batch:
                    return batch
                deadline = time.monotonic() + fill_wait
                # A full channel ends the wait: no put can come while this taker holds
                # the room (``hold``), and the room left is what comes at most.
                while len(batch) < most and not self._closed and self._has_room():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    room = most if self.capacity is None else self.capacity - self._held
                    self._wanted = max(1, min(most - len(batch), room))
                    try:
                        self._readable.wait(left)
                    finally:
                        self._wanted = 1
                    batch.extend(self._pop(most - len(batch), hold))
                return batch
        finally:
            self._fill_turn.release()

    def _take_now(self, most: int, timeout: float, hold: bool) -> list[T] | None:
        """What :meth:`take` returns without filling (the lock held)."""
        if not self._items:
            if self._closed:
                return None
            self._readable.wait(timeout)
            if not self._items:
                return None if self._closed else []
        batch = self._pop(most, hold)
        if self._items:
            # More than this taker wanted: the next one need not wait for a put.
            self._readable.notify()
        return batch

    def _pop(self, most: int, hold: bool) -> list[T]:
        """Up to ``most`` items off the front; their room given back unless ``hold``."""
        items = self._items
        count = min(most, len(items))
        if not count:
            return []
        batch = [items.popleft() for _ in range(count)]
        if hold:
            self._held += count
        else:
            self._writable.notify(count)
        return batch

    def release(self, count: int = 1) -> None:
        """Give back the room of ``count`` items taken with ``hold``."""
        if count:
            with self._writable:
                self._held -= count
                self._writable.notify(count)

    def close(self) -> None:
        """No more puts come: takers drain what is left, then get None."""
        with self._readable:
            self._closed = True
            self._readable.notify_all()
            self._writable.notify_all()


class Failed:
    """A file's failure among a batch's results: the exception it failed with."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __reduce__(self) -> tuple[Any, ...]:
        return (Failed, (self.error,))


class BatchRunner:
    """A stand-in processor that runs batches itself (process mode's worker processes).

    :func:`process_files` hands it the whole batch through :meth:`process_files`.
    """

    def process_files(self, files: list[FileData]) -> list[Any]:
        raise NotImplementedError


def takes_batches(processor_class: type) -> bool:
    """True when ``processor_class`` defines ``process_batch`` (see ``BaseProcessor``)."""
    return callable(getattr(processor_class, "process_batch", None))


def process_files(processor: BaseProcessor, files: list[FileData]) -> list[Any]:
    """One result per file of ``files``, in order; a file that failed has a :class:`Failed`.

    A processor with ``process_batch`` is called once for the batch; what it
    raises, or a list of the wrong length, is raised here (every file of the
    batch fails with it), and an exception instance in its list fails that
    file alone.  Any other processor is called once per file, and what
    ``process`` raises is that file's failure alone.
    """
    if isinstance(processor, BatchRunner):
        return processor.process_files(files)
    batch_call = getattr(processor, "process_batch", None)
    if batch_call is None:
        results: list[Any] = []
        for file_data in files:
            try:
                results.append(processor.process(file_data))
            except BaseException as exc:  # noqa: BLE001 - this file's failure alone
                results.append(Failed(exc))
        return results
    return [
        Failed(result) if isinstance(result, BaseException) else result
        for result in checked_batch(batch_call(files), len(files))
    ]


def checked_batch(results: Any, expected: int) -> list[Any]:
    """``process_batch``'s return value as a list, or :class:`BatchError` saying what is wrong."""
    if isinstance(results, (str, bytes)) or not isinstance(results, Sequence):
        raise BatchError(
            f"process_batch returned {type(results).__name__}, not a list of one result per file"
        )
    if len(results) != expected:
        raise BatchError(
            f"process_batch returned {len(results)} result(s) for {expected} file(s); "
            "it must return one result per file, in order"
        )
    return list(results)
