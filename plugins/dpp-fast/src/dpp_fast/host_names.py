"""Host-name lookups for the ``fast`` downloader's event loop, off its thread.

``getaddrinfo`` blocks, so the loop cannot call it: it asks a
:class:`HostNames` for an address, gets None while the lookup runs on a
small thread pool, and hands those files to worker threads meanwhile (they
look the name up themselves).  Answers are kept for :data:`DNS_TTL`
seconds, as curl does; an expired answer still serves while it is renewed.
"""

from __future__ import annotations

import functools
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["DNS_TTL", "MAX_HOSTS", "RESOLVERS", "Address", "HostNames"]


#: How long a resolved host name is used, in seconds (curl keeps them 60 s too).
DNS_TTL = 60.0
#: Host name lookups at once (getaddrinfo blocks, so it runs on threads).
RESOLVERS = 4
#: Host names whose lookups are kept; beyond that the cache starts again.
MAX_HOSTS = 4096

Address = tuple[int, Any]  # (family, sockaddr)
_Key = tuple[str, int]


class HostNames:
    """Addresses of host names, looked up on threads; used from one thread only."""

    def __init__(self) -> None:
        self._known: dict[_Key, tuple[float, list[Address]]] = {}
        self._pending: dict[_Key, Future[Any]] = {}
        self._pool: ThreadPoolExecutor | None = None

    def addresses(self, host: str, port: int, now: float) -> list[Address] | None:
        """Where ``host`` is, in the resolver's order, or None while it is being looked up."""
        family = _literal_family(host)
        if family is not None:
            return [(family, (host, port))]
        key = (host, port)
        known = self._known.get(key)
        if known is not None and known[0] > now:
            return known[1]
        pending = self._pending.get(key)
        if pending is None:
            self._look_up(key)
        elif pending.done():
            del self._pending[key]
            try:
                found = [(entry[0], entry[4]) for entry in pending.result()]
            except OSError:
                found = []  # the worker thread's own lookup reports it for each file
            if found:
                self._known[key] = (now + DNS_TTL, found)
                return found
        # Until a new lookup is done, an expired one still serves.
        return known[1] if known is not None else None

    def _look_up(self, key: _Key) -> None:
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(RESOLVERS, thread_name_prefix="dpp-resolve")
        if len(self._known) >= MAX_HOSTS:
            self._known.clear()
        host, port = key
        self._pending[key] = self._pool.submit(
            socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM
        )

    def close(self) -> None:
        """Stop the lookups: queued ones are for files that are done, so none delays the exit."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


@functools.lru_cache(maxsize=1024)
def _literal_family(host: str) -> int | None:
    """The address family of an IP literal, or None for a name."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    return None
