"""The requests.Session transport, for URLs that need what only a session does.

Environment proxies, credentials in the URL and ``.netrc`` are honoured here
exactly as requests honours them.  Importing this module imports requests, so
the downloader only does it when such a URL turns up.
"""

from __future__ import annotations

import threading
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter

from ..errors import PermanentDownloadError, TransientDownloadError
from .http_rules import check_status, describe, is_certificate_error
from .pooled import stream_to_file


def has_environment_proxy(origin: str) -> bool:
    """True when the environment sends ``scheme://host[:port]`` through a proxy."""
    return bool(requests.utils.get_environ_proxies(origin))


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

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=4, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.max_redirects = self.max_redirects
            session.headers.update(self.headers)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def fetch(self, url: str, destination: Path, should_stop: threading.Event) -> int:
        """One attempt through the thread's session; same rules as the pooled transport."""
        timeout = (self.timeout, self.timeout)
        try:
            response = self._session().get(url, stream=True, timeout=timeout)
        except requests.TooManyRedirects as exc:
            raise PermanentDownloadError(
                f"redirect loop or more than {self.max_redirects} redirects"
            ) from exc
        except (requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema) as exc:
            raise PermanentDownloadError("redirected to a URL that is not http or https") from exc
        except requests.exceptions.InvalidURL as exc:
            raise PermanentDownloadError(describe(exc, url)) from exc
        except requests.exceptions.SSLError as exc:
            # A certificate that fails verification fails again: as in the other transports.
            if is_certificate_error(exc):
                raise PermanentDownloadError(describe(exc, url)) from exc
            raise TransientDownloadError(describe(exc, url)) from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientDownloadError(describe(exc, url)) from exc
        with response:
            check_status(
                response.status_code, response.reason or "", response.headers.get("Retry-After")
            )
            return stream_to_file(response.raw, destination, should_stop, url, self.chunk_size)

    def close(self) -> None:
        """Close every thread's session."""
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()
