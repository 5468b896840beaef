"""What an HTTP answer means for a download, shared by both transports."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from ..errors import PermanentDownloadError, TransientDownloadError
from ..redact import scrub

#: Statuses that redirect when they carry a Location header.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

#: Request headers that carry credentials: never sent on to another host.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


def same_host(first: str, second: str) -> bool:
    """True when two URLs name one host (requests' rule for keeping credentials)."""
    return urlsplit(first).hostname == urlsplit(second).hostname


def without_credentials(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` less the ones that carry credentials, for a redirect to another host."""
    return {
        name: value for name, value in headers.items() if name.lower() not in CREDENTIAL_HEADERS
    }


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    import email.utils  # only for an HTTP-date: the import costs start-up time

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def check_status(status: int, reason: str, retry_after: str | None) -> None:
    """Raise the download error an HTTP status means: 5xx, 408 and 429 are retried."""
    if status < 400:
        return
    text = f"HTTP {status} {reason}".strip()
    if status >= 500 or status in (408, 429):
        raise TransientDownloadError(text, retry_after=parse_retry_after(retry_after))
    raise PermanentDownloadError(text)


def describe(error: BaseException, url: str) -> str:
    """``Type: message`` of a transport error, with the URL's secrets removed."""
    # Transport messages embed the URL, query string and all.
    return scrub(f"{type(error).__name__}: {error}", url)
