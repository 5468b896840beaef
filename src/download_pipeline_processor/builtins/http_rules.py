"""What an HTTP answer means for a download, shared by both transports."""

from __future__ import annotations

import contextlib
import time
from urllib.parse import quote, urljoin, urlsplit

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


#: What requests leaves unquoted when it re-quotes a URL for the wire.
WIRE_SAFE_CHARACTERS = "!#$%&'()*+,/:;=?@[]~"


def wire_url(url: str) -> str:
    """``url`` as it goes on the wire: http or https, an ASCII (IDNA) host, re-quoted.

    Re-quoted as requests re-quotes it, so that every downloader requests the
    same bytes for the same entry, and no space, CR or LF can reach a request
    line.  The fragment is dropped; userinfo is kept (it is the request's
    credentials).
    """
    from .http1 import ascii_host  # the one IDNA rule of the downloaders

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise PermanentDownloadError(f"invalid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise PermanentDownloadError("only http and https URLs can be downloaded")
    hostname = parts.hostname
    if not hostname:
        raise PermanentDownloadError("URL has no host")
    if ":" in hostname:  # an IPv6 literal
        if not hostname.replace(":", "").replace(".", "").isalnum():
            raise PermanentDownloadError("URL has an invalid host")
        host = f"[{hostname}]"
    else:
        host = ascii_host(hostname)
    authority = host if port is None else f"{host}:{port}"
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        authority = f"{quote(userinfo, safe=WIRE_SAFE_CHARACTERS)}@{authority}"
    target = quote(parts.path or "/", safe=WIRE_SAFE_CHARACTERS)
    if parts.query:
        target = f"{target}?{quote(parts.query, safe=WIRE_SAFE_CHARACTERS)}"
    return f"{scheme}://{authority}{target}"


def too_many_redirects(max_redirects: int) -> PermanentDownloadError:
    """The error of a file whose redirects loop or outnumber ``max_redirects``."""
    return PermanentDownloadError(f"redirect loop or more than {max_redirects} redirects")


def truncated_body(received: int, expected: int | None, detail: str = "") -> TransientDownloadError:
    """The error of a body that ended before its length (None: a chunked body)."""
    if expected is None:
        text = f"truncated body: connection closed after {received} bytes of a chunked body"
    elif detail:
        text = f"truncated body: connection broken after {received} of {expected} bytes: {detail}"
    else:
        text = f"truncated body: got {received} of {expected} bytes"
    return TransientDownloadError(text)
