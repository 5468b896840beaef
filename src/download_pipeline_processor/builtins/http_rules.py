"""What an HTTP answer means for a download, shared by both transports."""

from __future__ import annotations

import contextlib
import time
from urllib.parse import urljoin, urlsplit

from ..errors import PermanentDownloadError, TransientDownloadError
from ..redact import scrub

#: Statuses that redirect when they carry a Location header.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

#: Request headers that carry credentials: never sent on to another host.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


_DEFAULT_PORTS = {"http": 80, "https": 443}


def keeps_credentials(current: str, target: str) -> bool:
    """Whether credentials headers may follow a redirect from ``current`` to ``target``.

    requests' rule: only to the same host, on the same scheme and port, or
    as an upgrade from http on port 80 to https on port 443.
    """
    old, new = urlsplit(current), urlsplit(target)
    if old.hostname != new.hostname:
        return False
    old_port = old.port or _DEFAULT_PORTS.get(old.scheme)
    new_port = new.port or _DEFAULT_PORTS.get(new.scheme)
    if (old.scheme, old_port, new.scheme, new_port) == ("http", 80, "https", 443):
        return True
    return old.scheme == new.scheme and old_port == new_port


def redirect_target(current: str, location: str) -> str:
    """The absolute URL a Location header names; only http and https are followed."""
    # Headers arrive decoded as Latin-1; a UTF-8 Location is re-read as UTF-8,
    # as requests does, instead of being escaped twice.
    with contextlib.suppress(UnicodeError):
        location = location.encode("latin-1").decode("utf-8")
    try:
        target = urljoin(current, location)
        urlsplit(target).port  # noqa: B018 - raises ValueError on a bad port or IPv6 literal
    except ValueError as exc:
        raise PermanentDownloadError(f"redirected to an invalid URL: {exc}") from None
    if not target.lower().startswith(("http://", "https://")):
        raise PermanentDownloadError("redirected to a URL that is not http or https")
    return target


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
    if value.isascii() and value.isdigit():
        return float(value)
    import email.utils  # only for an HTTP-date: the import costs start-up time

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
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


def is_certificate_error(error: BaseException) -> bool:
    """Whether ``error`` is, or wraps, a failed certificate check (never worth a retry).

    Other TLS failures (a handshake cut off by a busy balancer) are transient.
    """
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if "CERTIFICATE_VERIFY_FAILED" in str(current) or type(current).__name__ == (
            "SSLCertVerificationError"
        ):
            return True
        pending += [current.__cause__, current.__context__, *current.args]
    return False


def describe(error: BaseException, url: str) -> str:
    """``Type: message`` of a transport error, with the URL's secrets removed."""
    # Transport messages embed the URL, query string and all.
    return scrub(f"{type(error).__name__}: {error}", url)
