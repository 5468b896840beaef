"""``--file-timeout`` for the requests downloader: the attempt's connection closed at its deadline.

urllib3 reads a status line or a body with one blocking ``recv`` at a time,
each bounded by ``--timeout`` only: a server that sends a byte a second, or
``100 Continue`` over and over, keeps a worker thread and its socket however
long the attempt's deadline is past.  One :class:`DeadlineWatcher` thread per
downloader waits for the nearest deadline of every attempt in flight and
shuts down (``SHUT_RDWR``) the sockets the attempt is using then, which wakes
the blocked ``recv`` at once; the attempt then fails with the file-timeout
error.  The connections learn which attempt uses them through a thread-local
set by :meth:`DeadlineWatcher.attempt`: :data:`WATCHED_POOLS` are the pool
classes that make them so.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["WATCHED_POOLS", "DeadlineWatcher", "WatchedAttempt"]

_current = threading.local()


class WatchedAttempt:
    """One attempt under watch: the connections it uses, and whether its deadline struck."""

    def __init__(self, watcher: DeadlineWatcher, deadline: float) -> None:
        self.watcher = watcher
        self.deadline = deadline
        #: True once the deadline struck while the attempt ran: its sockets were shut down.
        self.fired = False
        self.done = False
        self.connections: list[_Watched] = []

    def use(self, connection: _Watched) -> None:
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


class _Watched(HTTPConnection):
    """A urllib3 connection that tells the current thread's watched attempt it carries it."""

    #: The attempt this connection carries now (None while in the pool).
    attempt: WatchedAttempt | None = None
    #: The socket as connected, before any TLS: what a hang-up shuts down during a handshake.
    _raw: socket.socket | None = None

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self._raw = sock
        _note(self)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _note(self)  # a kept-alive connection carries a new attempt
        super().request(*args, **kwargs)

    def hang_up(self) -> None:
        """Shut the socket down both ways: a ``recv`` blocked on it returns at once."""
        sock = self.sock if self.sock is not None else self._raw
        if sock is None:
            return
        with contextlib.suppress(OSError):
            # socket.socket's own shutdown, also on a TLS socket: SSLSocket.shutdown would
            # drop the TLS state under the thread reading through it.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _note(connection: _Watched) -> None:
    attempt: WatchedAttempt | None = getattr(_current, "attempt", None)
    if attempt is not None:
        attempt.use(connection)


class _WatchedHTTPConnection(_Watched):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _Released:
    """A pool mixin: a connection given back carries no attempt any more."""

    def _put_conn(self, conn: Any) -> None:
        if isinstance(conn, _Watched):
            attempt = conn.attempt
            if attempt is not None:
                with attempt.watcher.lock:
                    if conn.attempt is attempt:
                        conn.attempt = None
        super()._put_conn(conn)  # type: ignore[misc]


class _WatchedHTTPPool(_Released, HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(_Released, HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


#: ``PoolManager.pool_classes_by_scheme`` for pools whose connections are watched.
WATCHED_POOLS: dict[str, type[HTTPConnectionPool]] = {
    "http": _WatchedHTTPPool,
    "https": _WatchedHTTPSPool,
}
