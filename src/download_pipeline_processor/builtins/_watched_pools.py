"""urllib3 pools whose connections are hung up at an attempt's ``--file-timeout`` (``_deadlines``).

A connection tells the calling thread's watched attempt that it carries it
when it connects and when it sends a request; given back to its pool, it
carries none.
"""

from __future__ import annotations

import socket
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ._deadlines import WatchedAttempt, hang_up, note

__all__ = ["WATCHED_POOLS"]


class _Watched(HTTPConnection):
    """A urllib3 connection that tells the current thread's watched attempt it carries it."""

    #: The attempt this connection carries now (None while in the pool).
    attempt: WatchedAttempt | None = None
    #: The socket as connected, before any TLS: what a hang-up shuts down during a handshake.
    _raw: socket.socket | None = None

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self._raw = sock
        note(self)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        note(self)  # a kept-alive connection carries a new attempt
        super().request(*args, **kwargs)

    def hang_up(self) -> None:
        """Shut the socket down both ways: a ``recv`` blocked on it returns at once."""
        hang_up(self.sock if self.sock is not None else self._raw)


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
