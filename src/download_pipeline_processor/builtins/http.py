"""The default download backend, built on requests.

Plain URLs go through :class:`~.pooled.PooledTransport`, the urllib3 pool
under requests without requests' per-request set-up; URLs that need what only
a ``requests.Session`` does (an environment proxy, credentials in the URL, a
``.netrc``) go through a session per worker thread.  Both follow the same
rules: identity encoding, bounded redirects to http/https only, the same
retryable statuses, and a body shorter than its Content-Length is an error.
"""

from __future__ import annotations

import email.utils
import os
import threading
import time
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter

from ..downloader import Downloader
from ..errors import PermanentDownloadError, TransientDownloadError
from ..file_data import FileData
from ..redact import scrub
from ..settings import PipelineSettings
from .pooled import PooledTransport, check_status, stream_to_file


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _describe(error: BaseException, url: str) -> str:
    # requests' messages embed the URL, query string and all: scrub them.
    return scrub(f"{type(error).__name__}: {error}", url)


class RequestsDownloader(Downloader):
    """Streams each body to disk in chunks; memory does not grow with file size."""

    def __init__(self, settings: PipelineSettings) -> None:
        super().__init__(settings)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        from .. import __version__

        self._headers = {
            "User-Agent": f"download-pipeline-processor/{__version__}",
            # The bytes as served: no transparent decompression, exact lengths.
            "Accept-Encoding": "identity",
            **settings.headers,
        }
        # Looked up once, not per request: requests would read these every time.
        self._netrc = any(
            Path(candidate).expanduser().exists()
            for candidate in (os.environ.get("NETRC") or "~/.netrc", "~/_netrc")
        )
        self._proxied: dict[str, bool] = {}
        self._pooled = PooledTransport(
            workers=settings.download_workers,
            timeout=settings.timeout,
            chunk_size=settings.chunk_size,
            max_redirects=settings.max_redirects,
            headers=self._headers,
            ca_bundle=os.environ.get("REQUESTS_CA_BUNDLE")
            or os.environ.get("CURL_CA_BUNDLE")
            or requests.utils.DEFAULT_CA_BUNDLE_PATH,
        )

    def _needs_session(self, url: str) -> bool:
        """True when only a requests.Session handles ``url`` right (proxy, credentials)."""
        if self._netrc:
            return True
        scheme, _, rest = url.partition("://")
        authority = rest.partition("/")[0].partition("?")[0].partition("#")[0]
        if "@" in authority:
            return True
        key = f"{scheme.lower()}://{authority.lower()}"
        proxied = self._proxied.get(key)
        if proxied is None:
            proxied = bool(requests.utils.get_environ_proxies(key))
            self._proxied[key] = proxied
        return proxied

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=4, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.max_redirects = self.settings.max_redirects
            session.headers.update(self._headers)
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def fetch(self, file_data: FileData, destination: Path, should_stop: threading.Event) -> int:
        url = file_data.url
        if not self._needs_session(url):
            return self._pooled.fetch(url, destination, should_stop)
        timeout = self.settings.timeout
        try:
            response = self._session().get(url, stream=True, timeout=(timeout, timeout))
        except requests.TooManyRedirects as exc:
            raise PermanentDownloadError(
                f"redirect loop or more than {self.settings.max_redirects} redirects"
            ) from exc
        except (requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema) as exc:
            raise PermanentDownloadError("redirected to a URL that is not http or https") from exc
        except requests.exceptions.InvalidURL as exc:
            raise PermanentDownloadError(_describe(exc, url)) from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientDownloadError(_describe(exc, url)) from exc
        with response:
            self._check_status(response)
            return stream_to_file(
                response.raw, destination, should_stop, url, self.settings.chunk_size
            )

    @staticmethod
    def _check_status(response: requests.Response) -> None:
        check_status(
            response.status_code,
            response.reason or "",
            parse_retry_after(response.headers.get("Retry-After")),
        )

    def close(self) -> None:
        self._pooled.close()
        with self._sessions_lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()
