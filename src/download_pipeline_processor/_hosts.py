"""Per-host limits and politeness, the same for every downloader.

:class:`HostGate` counts the downloads in flight to each host (scheme, host
and port) and lets a new one start only while its host has room:
``--max-per-host``, or ``--download-workers`` without it.  What a host
answers moves its own limit:

- a 429 (Too Many Requests) halves it, down to one, and notes the level it
  happened at;
- each success adds one back, quickly up to just below that level and then
  only after :data:`PROBE_AFTER` successes in a row per step, so a host that
  refuses above some level is asked above it rarely (AIMD, as TCP backs off);
- a 429 or 503 with Retry-After pauses the whole host until then, for every
  worker and every retry, while other hosts go on.

:class:`EntryScheduler` hands out entries in input order, except that one
whose host is full or paused steps aside (up to a bounded look-ahead) so
other hosts' entries go first: the download worker threads and a
multiplexing backend's feed both take their entries through it.
"""

from __future__ import annotations

import collections
import enum
import threading
import time
from typing import TYPE_CHECKING, Callable

from ._targets import origin_for
from .errors import TransientDownloadError
from .http_rules import origin_of

if TYPE_CHECKING:
    from .file_data import FileData

#: Successes in a row, per allowed download, before a host gets one more
#: download at or above the level it last refused at.
PROBE_AFTER = 16
#: How long a waiting thread sleeps at most before it looks again (stop, pauses).
WAIT_SLICE = 0.1

Origin = tuple[str, str, int]


class HostSlot:
    """One download's place in its host's limit, from :meth:`HostGate.acquire` to ``release``."""

    __slots__ = ("origin", "released")

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.released = False


class HostState:
    """What the gate knows of one host."""

    __slots__ = ("credit", "in_flight", "limit", "paused_until", "refused_at")

    def __init__(self, limit: int) -> None:
        self.in_flight = 0
        #: Downloads allowed at once now (AIMD), never above the gate's ceiling.
        self.limit = limit
        #: The fewest in flight when the host last answered 429; None: never did.
        self.refused_at: int | None = None
        #: Successes since the limit last grew, at or above ``refused_at - 1``.
        self.credit = 0
        #: ``time.monotonic()`` until which nothing new starts on this host.
        self.paused_until = 0.0


class HostGate:
    """The downloads in flight to each host, shared by every thread of a run.

    ``ceiling``: the most at once to one host (``--max-per-host``, else
    ``--download-workers``); ``max_pause``: the longest pause a Retry-After
    may ask for (``retry_backoff_max``).
    """

    def __init__(self, ceiling: int, max_pause: float) -> None:
        self.ceiling = max(ceiling, 1)
        self.max_pause = max_pause
        self._hosts: dict[Origin, HostState] = {}
        self._changed = threading.Condition()
        #: Counts every release and pause: a waiter that saw one number waits for the next.
        self.changes = 0

    def _host(self, origin: Origin) -> HostState:
        state = self._hosts.get(origin)
        if state is None:
            state = self._hosts[origin] = HostState(self.ceiling)
        return state

    def has_room(self, url: str) -> bool:
        """Whether a download of ``url`` could start now."""
        with self._changed:
            return self._wait_for(self._host(origin_of(url)), time.monotonic()) == 0.0

    @staticmethod
    def _wait_for(state: HostState, now: float) -> float | None:
        """0.0: room now; seconds: paused that long; None: full."""
        if state.paused_until > now:
            return state.paused_until - now
        return 0.0 if state.in_flight < state.limit else None

    def try_acquire(self, url: str, origin: Origin | None = None) -> HostSlot | None:
        """A slot for a download of ``url`` (of ``origin``) if its host has room now, else None."""
        if origin is None:
            origin = origin_of(url)
        with self._changed:
            state = self._host(origin)
            if self._wait_for(state, time.monotonic()) != 0.0:
                return None
            state.in_flight += 1
            return HostSlot(origin)

    def acquire(
        self, url: str, stop: threading.Event, origin: Origin | None = None
    ) -> HostSlot | None:
        """A slot for a download of ``url`` (of ``origin``), waiting for room; None once
        ``stop`` is set."""
        if origin is None:
            origin = origin_of(url)
        with self._changed:
            state = self._host(origin)
            while not stop.is_set():
                wait = self._wait_for(state, time.monotonic())
                if wait == 0.0:
                    state.in_flight += 1
                    return HostSlot(origin)
                self._changed.wait(WAIT_SLICE if wait is None else min(wait, WAIT_SLICE))
        return None

    def wait_for_change(self, seen: int, timeout: float) -> None:
        """Wait until :attr:`changes` passes ``seen``, or ``timeout`` seconds."""
        with self._changed:
            if self.changes == seen:
                self._changed.wait(timeout)

    def release(self, slot: HostSlot, error: BaseException | None = None) -> None:
        """The download holding ``slot`` ended: with ``error``, or a success when None.

        Only a 429 or a Retry-After changes anything beyond the count; other
        failures say nothing about the host's load.
        """
        if slot.released:
            return
        slot.released = True
        with self._changed:
            state = self._host(slot.origin)
            if error is None:
                self._succeeded(state)
            elif isinstance(error, TransientDownloadError):
                self._refused(state, error)
            state.in_flight -= 1
            self.changes += 1
            self._changed.notify_all()

    def forget(self, slot: HostSlot) -> None:
        """Give ``slot`` back without a verdict: no request was made with it."""
        if slot.released:
            return
        slot.released = True
        with self._changed:
            self._host(slot.origin).in_flight -= 1
            self.changes += 1
            self._changed.notify_all()

    def _succeeded(self, state: HostState) -> None:
        if state.limit >= self.ceiling:
            return
        if state.refused_at is None or state.limit + 1 < state.refused_at:
            state.limit += 1  # well below where it refused: grow back at once
            return
        # At the level it refused at: probe it again only now and then.
        state.credit += 1
        if state.credit >= PROBE_AFTER * state.limit:
            state.credit = 0
            state.limit += 1

    def _refused(self, state: HostState, error: TransientDownloadError) -> None:
        if error.http_status == 429:
            load = min(state.in_flight, state.limit)
            state.refused_at = load if state.refused_at is None else min(state.refused_at, load)
            state.limit = max(1, state.limit // 2)
            state.credit = 0
        if error.http_status in (429, 503) and error.retry_after is not None:
            until = time.monotonic() + min(max(error.retry_after, 0.0), self.max_pause)
            state.paused_until = max(state.paused_until, until)

    def limit_of(self, url: str) -> int:
        """The number of downloads ``url``'s host may have at once now."""
        with self._changed:
            return self._host(origin_of(url)).limit


#: An entry and its sequence number, as the flow hands them out.
Entry = tuple[int, "FileData"]


class NotReady(enum.Enum):
    """What an :class:`EntryScheduler`'s ``take`` gives when the input has nothing ready yet."""

    NOT_READY = "not ready"


#: The input has no entry ready now, and it is not over.
NOT_READY = NotReady.NOT_READY


class EntryScheduler:
    """The next entry whose host has room, with its slot; the input's order otherwise.

    ``take`` gives the next entry of the input (None at its end or at a
    stop, :data:`NOT_READY` when it would have to wait for more input);
    ``ready``, if given, says whether ``take`` would return without waiting
    for the input (a feed of batches waits for the next batch), so a call
    without ``wait`` never blocks on it.  An entry whose host is full or
    paused waits aside, up to ``look_ahead`` of them in all, and goes before
    any later entry of its host once there is room.  Thread-safe.
    """

    def __init__(
        self,
        gate: HostGate,
        take: Callable[[], Entry | NotReady | None],
        look_ahead: int,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.gate = gate
        self._take = take
        self._ready = ready
        self.look_ahead = look_ahead
        self._waiting: dict[Origin, collections.deque[Entry]] = {}
        self._count = 0
        self._ended = False
        self._lock = threading.Lock()

    @property
    def exhausted(self) -> bool:
        """True once the input ended and no entry waits aside."""
        with self._lock:
            return self._ended and self._count == 0

    def next(
        self, stop: threading.Event, wait: bool = True
    ) -> tuple[int, FileData, HostSlot] | None:
        """The next entry that can start, with its host slot.

        With ``wait``, blocks until one can; None then means the input ended
        (:attr:`exhausted`) or ``stop`` was set.  Without, None also means
        "not now".
        """
        while True:
            seen = self.gate.changes
            with self._lock:
                found = self._next_now(wait)
                done = self._ended and self._count == 0
            if found is not None:
                return found
            if done or not wait or stop.is_set():
                return None
            self.gate.wait_for_change(seen, WAIT_SLICE)

    def _next_now(self, wait: bool) -> tuple[int, FileData, HostSlot] | None:
        # Entries set aside come first, oldest first, as soon as their host has room.
        for origin, queue in sorted(self._waiting.items(), key=lambda item: item[1][0][0]):
            sequence, file_data = queue[0]
            slot = self.gate.try_acquire(file_data.url, origin)
            if slot is not None:
                queue.popleft()
                self._count -= 1
                if not queue:
                    del self._waiting[origin]
                return sequence, file_data, slot
        while not self._ended and self._count < self.look_ahead:
            if not wait and self._ready is not None and not self._ready():
                break  # "not now": the input has nothing yet, and it is not over
            entry = self._take()
            if isinstance(entry, NotReady):
                break
            if entry is None:
                self._ended = True
                break
            sequence, file_data = entry
            origin = origin_for(file_data)  # the host key made at input
            waiting = self._waiting.get(origin)
            if waiting is None:  # nothing of this host waits: it may start now
                slot = self.gate.try_acquire(file_data.url, origin)
                if slot is not None:
                    return sequence, file_data, slot
                waiting = self._waiting[origin] = collections.deque()
            waiting.append(entry)
            self._count += 1
        return None
