"""``--file-timeout`` on blocking sockets: the attempt's connection closed at its deadline.

A blocking transport reads a status line or a body with one ``recv`` at a
time, each bounded by ``--timeout`` only: a server that sends a byte a second,
or ``100 Continue`` over and over, keeps a worker thread and its socket however
long the attempt's deadline is past.  One :class:`DeadlineWatcher` thread per
downloader waits for the nearest deadline of every attempt in flight and
shuts down (``SHUT_RDWR``) the sockets the attempt is using then, which wakes
the blocked ``recv`` at once; the attempt then fails with the file-timeout
error.  A transport tells the attempt of the calling thread (set by
:meth:`DeadlineWatcher.attempt`) which connection carries it: urllib3's
through the pool classes of ``_watched_pools``, a plain socket through
:func:`watch_socket`.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from typing import Protocol

__all__ = ["Connection", "DeadlineWatcher", "WatchedAttempt", "hang_up", "note", "watch_socket"]

_current = threading.local()


class Connection(Protocol):
    """What an attempt hangs up: a connection that knows the attempt it carries now."""

    #: The attempt it carries now (None once that attempt is over, or back in a pool).
    attempt: WatchedAttempt | None

    def hang_up(self) -> None:
        """Shut the socket down both ways."""


class WatchedAttempt:
    """One attempt under watch: the connections it uses, and whether its deadline struck."""

    def __init__(self, watcher: DeadlineWatcher, deadline: float) -> None:
        self.watcher = watcher
        self.deadline = deadline
        #: True once the deadline struck while the attempt ran: its sockets were shut down.
        self.fired = False
        self.done = False
        self.connections: list[Connection] = []

    def use(self, connection: Connection) -> None:
        """``connection`` now carries this attempt; shut it down at once past the deadline."""
        with self.watcher.lock:
            if self.done:
                return
            connection.attempt = self
            self.connections.append(connection)
            if self.fired:
                connection.hang_up()

    def fire(self) -> None:
        """The deadline struck: hang up every connection still carrying this attempt."""
        # Called with the watcher's lock held.
        if self.done:
            return
        self.fired = True
        for connection in self.connections:
            if connection.attempt is self:
                connection.hang_up()

    def end(self) -> None:
        """The attempt is over: its connections are no longer its to hang up."""
        with self.watcher.lock:
            self.done = True
            if not self.fired:
                self.watcher.forget_one()
            for connection in self.connections:
                if connection.attempt is self:
                    connection.attempt = None
            self.connections.clear()


class DeadlineWatcher:
    """One thread that hangs up each watched attempt's connections at its deadline.

    Started with the first watched attempt, stopped by :meth:`close`.
    """

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self._due: list[tuple[float, int, WatchedAttempt]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._ended = 0  # attempts over before their deadline, still in _due

    @contextlib.contextmanager
    def attempt(self, deadline: float) -> Iterator[WatchedAttempt]:
        """Watch the attempt this thread makes inside the block, until ``deadline``."""
        watched = WatchedAttempt(self, deadline)
        with self.lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, name="dpp-file-timeout", daemon=True
                )
                self._thread.start()
            heapq.heappush(self._due, (deadline, next(self._order), watched))
            if self._due[0][2] is watched:
                self.lock.notify()
        outer = getattr(_current, "attempt", None)
        _current.attempt = watched
        try:
            yield watched
        finally:
            _current.attempt = outer
            watched.end()

    def _run(self) -> None:
        with self.lock:
            while not self._closed:
                now = time.monotonic()
                while self._due and self._due[0][0] <= now:
                    attempt = heapq.heappop(self._due)[2]
                    if attempt.done:
                        self._ended -= 1
                    else:
                        attempt.fire()
                self.lock.wait(self._due[0][0] - now if self._due else None)

    @property
    def queued(self) -> int:
        """Attempts waiting in the queue for their deadline (some may have ended)."""
        with self.lock:
            return len(self._due)

    def forget_one(self) -> None:
        """An attempt ended before its deadline (called with the lock held).

        Its entry waits in the queue for its deadline; once most entries are
        such, the queue is rebuilt without them, so that a long deadline over
        many quick files keeps no more than the attempts in flight.
        """
        self._ended += 1
        if self._ended > 64 and self._ended * 2 > len(self._due):
            self._due = [entry for entry in self._due if not entry[2].done]
            heapq.heapify(self._due)
            self._ended = 0

    def close(self) -> None:
        """Stop the thread; attempts still watched are no longer hung up."""
        with self.lock:
            self._closed = True
            self._due.clear()
            self.lock.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)


def note(connection: Connection) -> None:
    """``connection`` carries the calling thread's watched attempt, if there is one."""
    attempt: WatchedAttempt | None = getattr(_current, "attempt", None)
    if attempt is not None:
        attempt.use(connection)


def hang_up(sock: socket.socket | None) -> None:
    """Shut ``sock`` down both ways: a ``recv`` blocked on it returns at once."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        # socket.socket's own shutdown, also on a TLS socket: SSLSocket.shutdown would
        # drop the TLS state under the thread reading through it.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Socket:
    """A plain socket the calling thread's attempt uses."""

    __slots__ = ("attempt", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.attempt: WatchedAttempt | None = None

    def hang_up(self) -> None:
        hang_up(self.sock)


def watch_socket(sock: socket.socket) -> None:
    """``sock`` carries the calling thread's watched attempt, if there is one (a blocking
    transport of its own calls this for each socket it sends a request on)."""
    if getattr(_current, "attempt", None) is not None:
        note(_Socket(sock))
