"""Room in the download cache: :class:`CacheBudget`, the bytes a run holds there at once.

A download takes room before it starts and keeps it until its cached file is
discarded after processing.  With a bound (``--cache-size``) a download starts
only when its room fits under the bound; one that does not fit waits, in the
order the downloads asked, and one larger than the whole bound waits until the
cache is empty and then runs alone.  Without a bound nothing waits, but the
bytes are still counted, so that a download that met a full disk can wait for
the cache to drain before it tries again.

The room taken first is a guess when the entry announces no size; the body
writer corrects it in real bytes (:meth:`CacheBudget.need`): to the length an
answer announces, and before writing past the room held (in steps: up to
twice the room, where that fits).  An attempt holds a host slot
(``--max-per-host``), so it never waits for room: refused, it ends
(:class:`RoomWanted`; not a failure, not a retry, not counted as an
attempt), gives its slot and connection back, and the file waits for the
room between attempts, holding no slot and outside any attempt's
``--file-timeout`` clock; the next attempt resumes the file where the
server allows, else starts it over.  Of the files waiting for room, one
with bytes in the cache waits, holding them, until the others leave (alone,
it may grow past the bound); only one such file waits at a time, and while
it does no new download starts.  Another file that outgrows its room
meanwhile gives way instead: one with no bytes yet gives its room back and
waits with nothing held; one with bytes discards them (:class:`GaveWay`)
and does the same.  A host slot is held only by an attempt, which never
waits for room, and a file waiting for room holds no slot: nothing held
waits on anything else held, so nothing deadlocks.
"""

from __future__ import annotations

import collections
import errno
import itertools
import threading
import time
from typing import TYPE_CHECKING, Callable

from .errors import DiskFullError, PipelineInterrupted, TransientDownloadError

if TYPE_CHECKING:
    from .file_data import FileData

#: How often a wait for room looks at the run's stop flag, in seconds.
WAIT_POLL = 0.1
#: Downloads whose sizes estimate the room a file of unknown size takes.
RECENT_SIZES = 16
#: ``OSError`` numbers that mean the cache's disk (or the user's quota) is full.
DISK_FULL_ERRNOS = frozenset(
    code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None
)


def disk_full_error(error: BaseException) -> DiskFullError | None:
    """The retryable error a full disk is reported as, or None when ``error`` is another one."""
    if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        return DiskFullError("no space left on device while writing the cache")
    return None


class RoomWanted(TransientDownloadError):
    """A body needs more room in the cache than it holds, where its writer may not wait.

    An attempt (it holds a host slot) never waits: it ends, and the file
    waits for the room holding no slot, then starts a new attempt; neither a
    retry nor a counted attempt.
    """


class GaveWay(RoomWanted):
    """A body outgrew its room while another file waited for room: its bytes were given back.

    The file starts over (not counted as a retry) once there is room again.
    """


def expected_size(file_data: FileData) -> int | None:
    """The size the entry announces in its ``size`` field, if it is a usable one."""
    size = file_data.additional_fields.get("size")
    if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
        return size
    return None


class CacheBudget:
    """Counts the bytes held in a run's cache; thread-safe.

    Room is held under a key (the path of the file it is for): :meth:`reserve`
    or :meth:`try_reserve` before the download, :meth:`complete` once the file
    is whole (its real size replaces the reservation), :meth:`release` when
    the file leaves the cache.  A reservation is the entry's announced size,
    or, when it has none, the largest of the last :data:`RECENT_SIZES`
    downloads (the whole bound before the first one), so a list of files of
    similar sizes keeps within the bound without knowing them up front.
    """

    def __init__(self, limit: int | None = None) -> None:
        #: The most bytes held at once; None: no bound.  At least 1, as the
        #: settings check (``cache_size``): not checked again here.
        self.limit = limit
        self._held: dict[str, int] = {}  # key -> bytes (a reservation or a whole file)
        self._whole: set[str] = set()  # keys of complete files
        self._total = 0
        self._stored = 0  # bytes of complete files
        self._recent: collections.deque[int] = collections.deque(maxlen=RECENT_SIZES)
        self._queue: collections.deque[int] = collections.deque()  # waiting downloads, in order
        self._grower: str | None = None  # the one file waiting for room with bytes in the cache
        self._waiting = 0  # files waiting for room with no bytes in the cache yet
        self._tickets = itertools.count()
        self._changed = threading.Condition()

    # -- what is held ---------------------------------------------------------------

    @property
    def held(self) -> int:
        """Bytes held: complete files not yet discarded plus the room of downloads in flight."""
        with self._changed:
            return self._total

    # -- taking room ----------------------------------------------------------------------

    def try_reserve(self, key: str, size: int | None) -> bool:
        """Take room for a download at once, or return False when it would have to wait."""
        with self._changed:
            if key in self._held:
                return True
            room = self._room_for(size)
            if self._queue or not self._fits_new(room):
                return False
            self._hold(key, room)
            return True

    def reserve(self, key: str, size: int | None, should_stop: threading.Event) -> None:
        """Take room for a download, waiting for it (first come, first served).

        Raises :class:`PipelineInterrupted` when ``should_stop`` is set meanwhile.
        Holding room under ``key`` already (a retry) returns at once.
        """
        with self._changed:
            if key in self._held:
                return
            room = self._room_for(size)
            if not self._queue and self._fits_new(room):
                self._hold(key, room)
                return
            ticket = next(self._tickets)
            self._queue.append(ticket)
            try:
                while self._queue[0] != ticket or not self._fits_new(room):
                    if should_stop.is_set():
                        raise PipelineInterrupted("run stopped while waiting for room in the cache")
                    self._changed.wait(WAIT_POLL)
                self._hold(key, room)
            finally:
                self._queue.remove(ticket)
                self._changed.notify_all()  # the next in line may fit too

    def has_room(self) -> bool:
        """Whether a download of unknown size could start now without waiting."""
        with self._changed:
            return not self._queue and self._fits_new(self._room_for(None))

    def wait_for_room(self, timeout: float) -> None:
        """Block until the held bytes change, or ``timeout`` seconds pass."""
        with self._changed:
            self._changed.wait(timeout)

    # -- correcting it in real bytes ----------------------------------------------------

    def need(
        self,
        key: str,
        size: int,
        on_disk: int,
        should_stop: threading.Event,
        *,
        wait: bool = True,
        exact: bool = False,
        ahead: int = 0,
    ) -> int:
        """Make the room held under ``key`` at least ``size`` bytes (exactly, with ``exact``).

        ``on_disk``: the bytes the file holds in the cache now.  Returns the
        room held after the call.  ``ahead``: when growing into free room,
        take up to that many bytes, as many as fit, so that a growing body
        asks again only now and then.  Shrinking (``exact``, never below
        ``on_disk``) and growing into free room happen at once; otherwise the
        call waits (see the module's text), or raises :class:`RoomWanted`
        when ``wait`` is false, :class:`GaveWay` when the file must give its
        bytes back (its writer discards them, then calls ``need(key, 0, 0,
        ..., exact=True)``), and :class:`PipelineInterrupted` at a stop.
        """
        with self._changed:
            room = self._held.get(key, 0)
            if size <= room:
                if exact and max(size, on_disk) < room:
                    self._set(key, max(size, on_disk))
                return self._held.get(key, room)
            if self._fits_growth(key, room, size):
                return self._grant(key, size, ahead)
            if not wait:
                raise RoomWanted("no room in the cache yet: the file waits on a worker thread")
            if on_disk == 0:
                # Nothing in the cache yet: wait holding nothing, behind a file that waits
                # with bytes, and before any new download.
                self._set(key, 0)
                self._waiting += 1
                try:
                    self._wait(
                        lambda: self._grower is None and self._fits_growth(key, 0, size),
                        should_stop,
                    )
                finally:
                    self._waiting -= 1
                    self._changed.notify_all()
            elif self._grower is not None and self._grower != key:
                raise GaveWay("gave its room in the cache to a larger file; starting over")
            else:
                self._grower = key
                try:
                    self._wait(
                        lambda: self._fits_growth(key, self._held.get(key, 0), size), should_stop
                    )
                finally:
                    self._grower = None
                    self._changed.notify_all()
            return self._grant(key, size, ahead)

    def _grant(self, key: str, size: int, ahead: int) -> int:
        """Set the room under ``key`` to ``size``, or up to ``ahead`` as far as it fits."""
        grant = size
        if ahead > size:
            others = self._total - self._held.get(key, 0)
            fits = ahead if self.limit is None else self.limit - others
            grant = max(size, min(ahead, fits))
        self._set(key, grant)
        return grant

    def _wait(self, done: Callable[[], bool], should_stop: threading.Event) -> None:
        while not done():
            if should_stop.is_set():
                raise PipelineInterrupted("run stopped while waiting for room in the cache")
            self._changed.wait(WAIT_POLL)

    # -- giving it back ---------------------------------------------------------------------

    def complete(self, key: str, new_key: str, size: int) -> None:
        """The download under ``key`` is whole, ``size`` bytes, now named ``new_key``."""
        with self._changed:
            self._total -= self._held.pop(key, 0)
            self._whole.discard(key)
            self._held[new_key] = size
            self._whole.add(new_key)
            self._total += size
            self._stored += size
            self._recent.append(size)
            self._changed.notify_all()

    def release(self, key: str) -> None:
        """The file under ``key`` left the cache (or its download failed); no-op if not held."""
        with self._changed:
            size = self._held.pop(key, None)
            if size is None:
                return
            self._total -= size
            if key in self._whole:
                self._whole.discard(key)
                self._stored -= size
            self._changed.notify_all()

    def wait_drained(self, should_stop: threading.Event, timeout: float) -> bool:
        """Wait until every complete file held now has left the cache; True if they did.

        Files completed meanwhile are not waited for, so a busy run cannot keep
        the wait going; it ends after ``timeout`` seconds or at a stop anyway.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            waiting_for = set(self._whole)
            while not waiting_for.isdisjoint(self._whole):
                left = deadline - time.monotonic()
                if left <= 0 or should_stop.is_set():
                    return False
                self._changed.wait(min(left, WAIT_POLL))
            return True

    # -- rules -----------------------------------------------------------------------------

    def _room_for(self, size: int | None) -> int:
        if size is not None:
            return size
        if self.limit is None:
            return 0
        return max(self._recent) if self._recent else self.limit

    def _fits(self, room: int) -> bool:
        # An empty cache takes any file, so one larger than the bound still runs, alone.
        return self.limit is None or self._total == 0 or self._total + room <= self.limit

    def _fits_new(self, room: int) -> bool:
        # No new download while a file already under way waits for room.
        return self._grower is None and not self._waiting and self._fits(room)

    def _fits_growth(self, key: str, room: int, size: int) -> bool:
        others = self._total - room
        return self.limit is None or others == 0 or others + size <= self.limit

    def _hold(self, key: str, room: int) -> None:
        self._held[key] = room
        self._total += room

    def _set(self, key: str, room: int) -> None:
        self._total += room - self._held.get(key, 0)
        self._held[key] = room
        self._changed.notify_all()
