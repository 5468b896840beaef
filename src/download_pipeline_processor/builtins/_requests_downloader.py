"""The default download backend, ``requests``.

Plain URLs go through :class:`~.pooled.PooledTransport`: the urllib3 pool that
requests is built on, without requests' per-request set-up.  URLs that need
what only a ``requests.Session`` does (an environment proxy, credentials in the
URL, a ``.netrc``) go through :class:`~.session.SessionTransport`.  Both follow
the same rules: identity encoding, at most ``max_redirects`` hops to http or
https only, 5xx/408/429 retried, and a body shorter than its Content-Length is
an error.  Neither transport is imported until the first download, so listing
plugins or simulating stays quick.
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from ..backend import Downloader, DownloadRequest
from ..errors import DownloadError, PipelineInterrupted
from ..http_rules import (
    ca_bundle,
    check_headers,
    parse_retry_after,
)
from ..options import merge_headers
from ..settings import PipelineSettings

if TYPE_CHECKING:
    from ._deadlines import DeadlineWatcher
    from ._session import SessionTransport

__all__ = ["RequestsDownloader", "Transport", "ca_bundle", "parse_retry_after"]

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


def _environment_has_proxies() -> bool:
    return any(name.lower() in _PROXY_VARIABLES and value for name, value in os.environ.items())


class Transport(Protocol):
    """What fetches plain URLs for a downloader: one attempt, redirects included."""

    def fetch(self, request: DownloadRequest) -> int:
        """One attempt at ``request``, redirects followed, the body through its writer; the size."""

    def close(self) -> None:
        """Release every connection."""


class RequestsDownloader(Downloader):
    """Streams each body to disk in chunks; memory does not grow with file size."""

    def __init__(self, settings: PipelineSettings) -> None:
        super().__init__(settings)
        check_headers(settings.headers)
        # The bytes as served: no transparent decompression, exact lengths.
        self._headers = merge_headers({"Accept-Encoding": "identity"}, settings.request_headers)
        # Looked up once, not per request: requests would read these every time.
        self._netrc = any(
            Path(candidate).expanduser().exists()
            for candidate in (os.environ.get("NETRC") or "~/.netrc", "~/_netrc")
        )
        self._proxies = _environment_has_proxies()
        self._proxied: dict[str, bool] = {}
        self._plain = self.plain_transport()
        self._session_transport: SessionTransport | None = None
        self._session_lock = threading.Lock()
        self._watcher: DeadlineWatcher | None = None

    def transport_options(self) -> dict[str, Any]:
        """The keyword arguments every plain transport takes.

        ``workers``, ``timeout``, ``chunk_size``, ``max_redirects``, ``headers``
        (the run's, with identity encoding) and ``ca_bundle``: a subclass's
        :meth:`plain_transport` passes them to its own transport.
        """
        settings = self.settings
        return {
            "workers": settings.download_workers,
            "timeout": settings.timeout,
            "chunk_size": settings.read_size,
            "max_redirects": settings.max_redirects,
            "headers": self._headers,
            "ca_bundle": ca_bundle(),
        }

    def plain_transport(self) -> Transport:
        """The transport of every URL that does not need a requests.Session.

        Called once, while the downloader is made.  A subclass returns its own
        :class:`Transport` here (built from :meth:`transport_options`); URLs for
        which :meth:`needs_session` is true still go through a session.
        """
        from ._pooled import PooledTransport

        return PooledTransport(**self.transport_options())

    def needs_session(self, url: str) -> bool:
        """True when only a requests.Session handles ``url`` right.

        That is when an environment proxy applies to its origin, the URL
        carries credentials (``user:password@``), or a ``.netrc`` exists.
        :meth:`fetch` sends such URLs through a session and the rest through
        :meth:`plain_transport`; a subclass that fetches in its own way (an
        event loop) asks this first and hands those URLs on.
        """
        if self._netrc:
            return True
        scheme, _, rest = url.partition("://")
        authority = rest.partition("/")[0].partition("?")[0].partition("#")[0]
        if "@" in authority:
            return True
        if not self._proxies:
            return False
        origin = f"{scheme.lower()}://{authority.lower()}"
        proxied = self._proxied.get(origin)
        if proxied is None:
            from ._session import has_environment_proxy

            proxied = self._proxied[origin] = has_environment_proxy(origin)
        return proxied

    def _sessions(self) -> SessionTransport:
        with self._session_lock:
            if self._session_transport is None:
                from ._session import SessionTransport

                self._session_transport = SessionTransport(
                    timeout=self.settings.timeout,
                    chunk_size=self.settings.read_size,
                    max_redirects=self.settings.max_redirects,
                    headers=self._headers,
                )
            return self._session_transport

    def fetch(self, request: DownloadRequest) -> int:
        transport = self._sessions() if self.needs_session(request.url) else self._plain
        if request.stop.deadline is None:
            return transport.fetch(request)
        return self.within_deadline(request, functools.partial(transport.fetch, request))

    def within_deadline(self, request: DownloadRequest, attempt: Callable[[], int]) -> int:
        """Run ``attempt``, the current attempt at ``request``, under its --file-timeout.

        At the deadline the connections the attempt uses on this thread are
        hung up (see ``_deadlines``), which ends a read blocked on a server
        that trickles its head or its body; the attempt then fails with the
        file-timeout error.
        """
        deadline = request.stop.deadline
        if deadline is None:
            return attempt()
        with self._deadlines().attempt(deadline) as watched:
            try:
                return attempt()
            except (DownloadError, PipelineInterrupted):
                if watched.fired:
                    raise request.writer.timeout_error() from None
                raise

    def _deadlines(self) -> DeadlineWatcher:
        """The thread that hangs up attempts at their --file-timeout, made on first use."""
        watcher = self._watcher
        if watcher is not None:
            return watcher
        with self._session_lock:
            if self._watcher is None:
                from ._deadlines import DeadlineWatcher

                self._watcher = DeadlineWatcher()
            return self._watcher

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
        self._plain.close()
        if self._session_transport is not None:
            self._session_transport.close()
