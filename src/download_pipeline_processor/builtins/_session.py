"""The requests.Session transport, for URLs that need what only a session does.

Environment proxies, credentials in the URL and ``.netrc`` are honoured here
exactly as requests honours them.  Importing this module imports requests, so
the downloader only does it when such a URL turns up.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import requests
from requests.adapters import HTTPAdapter

from ..errors import PermanentDownloadError
from ..http_rules import (
    check_status,
    describe,
    network_error,
    not_http_redirect,
    redirect_target,
    too_many_redirects,
)
from ..options import merge_headers
from ._pooled import framing_error, request_hops, stream_to_file
from ._watched_pools import WATCHED_POOLS

if TYPE_CHECKING:
    from ..backend import DownloadRequest


def has_environment_proxy(origin: str) -> bool:
    """True when the environment sends ``scheme://host[:port]`` through a proxy."""
    return bool(requests.utils.get_environ_proxies(origin))


class _Session(requests.Session):
    """A session that follows redirects by :func:`.http_rules.redirect_target`, noting each hop.

    requests keeps its own redirect handling (netrc and proxies per hop,
    credentials dropped across hosts); only where a Location leads is decided
    by the rule every downloader shares.  ``hops`` lists the URLs the current
    attempt visited, so that no error message shows their secrets.
    """

    hops: list[str]

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        if not resp.is_redirect:
            return None
        target = redirect_target(resp.url or "", resp.headers["location"])
        self.hops.append(target)
        return target


class _WatchedAdapter(HTTPAdapter):
    """An adapter whose connections, direct or through an http proxy, hang up at the deadline.

    (A SOCKS proxy's connections are not watched: ``--timeout`` alone bounds them.)
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        known = proxy in self.proxy_manager
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not known and not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = WATCHED_POOLS
        return manager


class SessionTransport:
    """One requests.Session per worker thread, with requests' own redirect handling."""

    def __init__(
        self, *, timeout: float, chunk_size: int, max_redirects: int, headers: dict[str, str]
    ) -> None:
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.max_redirects = max_redirects
        self.headers = headers
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def _session(self) -> _Session:
        session: _Session | None = getattr(self._local, "session", None)
        if session is None:
            session = _Session()
            adapter = _WatchedAdapter(pool_connections=4, pool_maxsize=4, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.max_redirects = self.max_redirects
            session.headers.update(self.headers)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def fetch(self, request: DownloadRequest) -> int:
        """One attempt through the thread's session; same rules as the pooled transport.

        The request's headers go over the session's name by name; requests
        drops credentials on a redirect to another host.
        """
        timeout = (self.timeout, self.timeout)
        session = self._session()
        hops = session.hops = request_hops(request)
        writer = request.writer
        ranged = writer.range_headers()
        headers = merge_headers(request.headers, ranged) if ranged else request.headers
        try:
            response = session.get(request.url, stream=True, timeout=timeout, headers=headers)
        except requests.TooManyRedirects as exc:
            raise too_many_redirects(self.max_redirects) from exc
        except (requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema) as exc:
            raise not_http_redirect() from exc
        except requests.exceptions.InvalidURL as exc:
            raise PermanentDownloadError(describe(exc, *hops)) from exc
        except requests.exceptions.InvalidHeader as exc:
            refused = framing_error(exc)
            if refused is None:
                raise PermanentDownloadError(describe(exc, *hops)) from exc
            raise refused from exc
        except (requests.ConnectionError, requests.Timeout) as exc:  # SSLError among them
            raise network_error(exc, *hops) from exc
        with response:
            check_status(
                response.status_code, response.reason or "", response.headers.get("Retry-After")
            )
            return stream_to_file(response.raw, writer, request.stop, hops, self.chunk_size)

    def close(self) -> None:
        """Close every thread's session."""
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()
