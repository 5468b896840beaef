"""What an HTTP answer means for a download: the rules every downloader calls.

Each rule and each message text lives here once, so that the transports of
the ``requests`` downloader, the ``fast`` downloader and any other backend
(a libcurl one calls the same functions) say the same thing about the same
answer.  Nothing here imports a transport library.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from .errors import DownloadError, PermanentDownloadError, TransientDownloadError
from .options import check_entry_headers, check_header
from .redact import scrub
from .urls import URLProblem, canonical_url, check_characters

__all__ = [
    "CHUNKED",
    "CREDENTIAL_HEADERS",
    "REDIRECT_STATUSES",
    "SAFE_URL_CHARACTERS",
    "UNTIL_CLOSE",
    "announced_too_large",
    "body_framing",
    "ca_bundle",
    "certificate_error",
    "certificate_rejected",
    "check_headers",
    "check_status",
    "connection_refused",
    "describe",
    "entry_headers",
    "file_timed_out",
    "grew_too_large",
    "integrity_mismatch",
    "invalid_content_length",
    "is_certificate_error",
    "keeps_credentials",
    "lookup_failed",
    "network_error",
    "not_http_redirect",
    "origin_of",
    "parse_content_length",
    "parse_retry_after",
    "quote_target",
    "quoted_url",
    "range_refused",
    "redirect_target",
    "request_url",
    "size_mismatch",
    "timed_out",
    "too_many_redirects",
    "truncated",
    "truncated_chunked",
    "without_credentials",
]


#: Statuses that redirect when they carry a Location header.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

#: Request headers that carry credentials: never sent on to another host.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


_DEFAULT_PORTS = {"http": 80, "https": 443}

#: What requests leaves unquoted when it re-quotes a URL (``requests.utils.requote_uri``).
SAFE_URL_CHARACTERS = "!#$%&'()*+,/:;=?@[]~"

#: How a body ends when no Content-Length says it (see :func:`body_framing`).
CHUNKED = -1
UNTIL_CLOSE = -2


def request_url(url: str) -> str:
    """The URL a downloader requests for ``url``: checked, its host in ASCII (``urls``).

    Raises :class:`PermanentDownloadError` for a URL no downloader could
    fetch (input checking refuses those before a run; this is for callers of
    the library that skip it).
    """
    try:
        return canonical_url(url)
    except URLProblem as exc:
        raise PermanentDownloadError(f"URL {exc}") from None


def quote_target(text: str) -> str:
    """A URL, or its path or query, re-quoted as requests re-quotes it.

    Spaces and non-ASCII characters become %-escapes, an existing escape is
    kept: every downloader requests the same bytes for the same URL, and no
    space, CR or LF can reach a request line.
    """
    return quote(text, safe=SAFE_URL_CHARACTERS)


def quoted_url(url: str) -> str:
    """``url`` re-quoted whole as requests re-quotes it (:func:`quote_target`), less its fragment.

    For a transport that is handed a whole URL and sends it as given
    (libcurl refuses a space and cannot take non-ASCII).  ``url`` has passed
    :func:`request_url` or :func:`redirect_target` already: this checks
    nothing.  Userinfo is kept, escaped: it is the request's credentials.
    """
    return quote_target(url.partition("#")[0])


#: A URL that is its own wire form: http(s), a plain ASCII host, an optional port,
#: and a path and query of characters :func:`quote_target` keeps (no fragment).
_PLAIN_WIRE = re.compile(
    r"(?i)https?://(?P<host>[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*\.?)"
    r"(?::(?P<port>\d{1,5}))?(?:[/?][!$-;=?-\[\]_a-z~]*)?"
)


def wire_url(url: str) -> str:
    """The URL a downloader sends for an entry's ``url``: :func:`request_url`, :func:`quoted_url`.

    Worked out once per file (the framework carries it in the request); a
    plain URL, the common case, is its own wire form and costs one match.
    Raises :class:`PermanentDownloadError` for a URL no downloader could fetch.
    """
    plain = _PLAIN_WIRE.fullmatch(url)
    if (
        plain is not None
        and len(plain["host"]) <= 253
        and (plain["port"] is None or int(plain["port"]) <= 65535)
    ):
        return url
    return quoted_url(request_url(url))


def check_headers(headers: dict[str, str]) -> None:
    """Raise ValueError for a header name or value that would break or split a request.

    Every downloader refuses them when it is built, before any request.
    """
    for name, value in headers.items():
        check_header(name, value)


def entry_headers(fields: Mapping[str, Any]) -> dict[str, str]:
    """The request headers an entry gives (its ``headers`` field), for its requests only.

    Input checking refuses a bad one before a run (:func:`check_entry_headers`);
    a library caller that skips it gets a :class:`PermanentDownloadError` here.
    """
    headers = fields.get("headers")
    if not headers:
        return {}
    try:
        check_entry_headers(headers)
    except ValueError as exc:
        raise PermanentDownloadError(f"field 'headers': {exc}") from None
    return dict(headers)


def origin_of(url: str) -> tuple[str, str, int]:
    """A URL's (scheme, host, port), the port filled in: the unit of ``--max-per-host``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ("", url, 0)  # fails at its request; here only a host it alone holds
    scheme = parts.scheme.lower()
    return (scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme, 0))


def body_framing(
    status: int, transfer_encoding: str | None, content_length: str | None
) -> tuple[int, bool]:
    """(the body's length, or CHUNKED or UNTIL_CLOSE; whether the connection must close after it).

    RFC 9112 section 6.3: a Transfer-Encoding wins over a Content-Length,
    which is then ignored (and the connection not reused: a server that sends
    both cannot be trusted with the next answer).  A Content-Length that is
    not a non-negative decimal number, or a list of differing ones, makes the
    framing unknowable: an unrecoverable error, :class:`PermanentDownloadError`.
    """
    if status in (204, 304) or 100 <= status < 200:
        return 0, False
    if transfer_encoding is not None:
        codings = [
            coding
            for coding in transfer_encoding.lower().replace(" ", "").split(",")
            if coding and coding != "identity"
        ]
        if codings:
            if codings[-1] == "chunked":
                return CHUNKED, content_length is not None
            # Another final coding: only the close tells where the body ends.
            return UNTIL_CLOSE, True
    if content_length is None:
        return UNTIL_CLOSE, True
    return parse_content_length(content_length), False


def parse_content_length(text: str) -> int:
    """The value of a Content-Length header; :class:`PermanentDownloadError` when invalid.

    Repeated equal values (``10, 10``) are one value; ``isdigit`` alone would
    let '²' through, and more than 18 digits is no real length.
    """
    values = {value.strip() for value in text.split(",")}
    value = values.pop() if len(values) == 1 else ""
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise invalid_content_length(text)
    return int(value)


def invalid_content_length(text: str | None) -> PermanentDownloadError:
    """The error of a Content-Length no body can be framed by (not retried: RFC 9112 6.3).

    ``text`` is None for a transport that refuses the header without showing
    it to its caller (libcurl): the value is then not quoted.
    """
    if text is None:
        return PermanentDownloadError("invalid Content-Length in the response")
    return PermanentDownloadError(f"invalid Content-Length {text[:40]!r} in the response")


def truncated(got: int, expected: int) -> TransientDownloadError:
    """The error of a body that ended after ``got`` of its ``expected`` bytes."""
    return TransientDownloadError(f"truncated body: got {got} of {expected} bytes")


def truncated_chunked(got: int) -> TransientDownloadError:
    """The error of a chunked body that ended before its last chunk."""
    return TransientDownloadError(
        f"truncated body: connection closed after {got} bytes of a chunked body"
    )


def too_many_redirects(max_redirects: int) -> PermanentDownloadError:
    """The error of a redirect loop, or of a chain longer than ``max_redirects``."""
    return PermanentDownloadError(f"redirect loop or more than {max_redirects} redirects")


def not_http_redirect() -> PermanentDownloadError:
    """The error of a redirect to a scheme other than http or https."""
    return PermanentDownloadError("redirected to a URL that is not http or https")


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
    """The absolute URL a Location header names; only http and https are followed.

    Userinfo in the Location (``http://alice:pw@host/``) is dropped: no
    downloader sends credentials a server hands out.  A relative Location
    keeps the current URL's authority, the entry's own userinfo included:
    it stays on the entry's host.
    """
    # Headers arrive decoded as Latin-1; a UTF-8 Location is re-read as UTF-8,
    # as requests does, instead of being escaped twice.
    with contextlib.suppress(UnicodeError):
        location = location.encode("latin-1").decode("utf-8")
    try:
        # Checked before urljoin, which drops TAB, CR and LF without a word.
        check_characters(location, spaces=True)
    except URLProblem as exc:
        raise PermanentDownloadError(f"redirected to an invalid URL: the target {exc}") from None
    try:
        target = urljoin(current, _without_userinfo(location))
        urlsplit(target).port  # noqa: B018 - raises ValueError on a bad port or IPv6 literal
    except ValueError as exc:
        raise PermanentDownloadError(f"redirected to an invalid URL: {exc}") from None
    if not target.lower().startswith(("http://", "https://")):
        raise not_http_redirect()
    try:
        # The same rule as for the first URL; a space in a Location is percent-encoded.
        return canonical_url(target, spaces=True)
    except URLProblem as exc:
        raise PermanentDownloadError(f"redirected to an invalid URL: the target {exc}") from None


def _without_userinfo(location: str) -> str:
    """``location`` less the userinfo of its authority, if it names one; as written otherwise."""
    authority = urlsplit(location).netloc
    if "@" not in authority:
        return location
    # The first "//" + authority is the authority itself: the scheme comes before it.
    return location.replace("//" + authority, "//" + authority.rpartition("@")[2], 1)


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
    """Raise the download error an HTTP status means: 5xx, 408 and 429 are retried.

    The error carries ``status`` (``http_status``): the download stage records
    it on the file's download record, whichever downloader made the request.
    """
    if status < 400:
        return
    text = f"HTTP {status} {reason}".strip()
    error: DownloadError
    if status >= 500 or status in (408, 429):
        error = TransientDownloadError(text, retry_after=parse_retry_after(retry_after))
    else:
        error = PermanentDownloadError(text)
    error.http_status = status
    raise error


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and every exception it wraps: causes, contexts, arguments, ``reason``."""
    seen: set[int] = set()
    found: list[BaseException] = []
    pending: list[object] = [error]
    while pending:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        found.append(current)
        # urllib3's MaxRetryError keeps what went wrong in ``reason``.
        pending += [current.__cause__, current.__context__, *current.args]
        pending.append(getattr(current, "reason", None))
    return found


def is_certificate_error(error: BaseException) -> bool:
    """Whether ``error`` is, or wraps, a failed certificate check (never worth a retry).

    Other TLS failures (a handshake cut off by a busy balancer) are transient.
    """
    return any(
        "CERTIFICATE_VERIFY_FAILED" in str(current)
        or type(current).__name__ == "SSLCertVerificationError"
        for current in _chain(error)
    )


def certificate_error(error: BaseException) -> PermanentDownloadError:
    """The error of a failed certificate check, worded the same by every downloader."""
    for current in _chain(error):
        reason = getattr(current, "verify_message", None)  # ssl.SSLCertVerificationError
        if isinstance(reason, str) and reason:
            return certificate_rejected(reason)
    return certificate_rejected("")


def certificate_rejected(reason: str) -> PermanentDownloadError:
    """The error of a failed certificate check, for OpenSSL's ``reason`` ("self-signed ...")."""
    text = "TLS certificate check failed: CERTIFICATE_VERIFY_FAILED"
    return PermanentDownloadError(f"{text}: {reason}" if reason else text)


def timed_out() -> TransientDownloadError:
    """The error of a connect, send or receive that waited longer than the timeout."""
    return TransientDownloadError("timed out")


def connection_refused() -> TransientDownloadError:
    """The error of a connection the server's host refused (nothing listening)."""
    return TransientDownloadError("connection refused")


def lookup_failed(reason: str) -> TransientDownloadError:
    """The error of a host name that could not be resolved, for ``reason``."""
    return TransientDownloadError(f"host name lookup failed: {reason}")


def network_error(
    error: BaseException, *urls: str
) -> PermanentDownloadError | TransientDownloadError:
    """The download error a failed connect, send or receive is reported as.

    The common failures read the same on every downloader, whatever library
    raised them and however deeply it wrapped the cause: ``timed out``,
    ``connection refused``, ``host name lookup failed: ...``, and a failed
    certificate check (permanent).  Anything else is transient and described
    as the library said it, without the secrets of ``urls`` (every hop).
    """
    if is_certificate_error(error):
        return certificate_error(error)
    chain = _chain(error)
    for current in chain:
        if isinstance(current, socket.gaierror):
            return lookup_failed(str(current.strerror))
    for current in chain:
        if isinstance(current, ConnectionRefusedError):
            return connection_refused()
    for current in chain:
        # socket.timeout (an alias of TimeoutError from Python 3.10), and the
        # timeouts urllib3 and requests wrap it in.
        if isinstance(current, (TimeoutError, socket.timeout)) or type(current).__name__.endswith(
            ("TimeoutError", "Timeout")
        ):
            return timed_out()
    return TransientDownloadError(describe(error, *urls))


def describe(error: BaseException, *urls: str) -> str:
    """``Type: message`` of a transport error, without the secrets of any of ``urls``.

    Pass every URL the attempt visited (each redirect hop): transport
    messages embed the URL they failed on, query string and all.  Any other
    URL-looking text loses its query string and userinfo too.
    """
    return scrub(f"{type(error).__name__}: {error}", *urls)


def ca_bundle() -> str:
    """The CA bundle TLS is verified against, as requests chooses it; every downloader uses it."""
    # requests' own order: REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, then certifi.
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        return bundle
    import certifi

    return str(certifi.where())


def integrity_mismatch(check: str, expected: str, actual: str) -> TransientDownloadError:
    """The error of a file whose ``check`` (``size``, ``sha256``...) is not what its entry says.

    Retried like a truncated body: the next attempt may bring the right bytes.
    """
    return TransientDownloadError(f"{check} mismatch: expected {expected}, got {actual}")


def size_mismatch(expected: int, actual: int) -> TransientDownloadError:
    """The error of a file of ``actual`` bytes whose entry says ``expected``."""
    return integrity_mismatch("size", f"{expected} bytes", f"{actual} bytes")


def announced_too_large(size: int, limit: int) -> PermanentDownloadError:
    """The error of a file announced larger than ``--max-file-size``; not retried."""
    return PermanentDownloadError(
        f"file too large: {size} bytes announced, --max-file-size is {limit} bytes"
    )


def grew_too_large(limit: int) -> PermanentDownloadError:
    """The error of a body cut off when it grew past ``--max-file-size``; not retried."""
    return PermanentDownloadError(f"file too large: cut off past --max-file-size of {limit} bytes")


def file_timed_out(seconds: float) -> TransientDownloadError:
    """The error of an attempt that ran past ``--file-timeout``; retried like a timeout."""
    return TransientDownloadError(f"file timeout: attempt took longer than {seconds:g} s")


def range_refused(offset: int, content_range: str | None) -> TransientDownloadError:
    """The error of a 206 answer that does not continue the file at byte ``offset``."""
    shown = "none" if content_range is None else repr(content_range[:60])
    return TransientDownloadError(
        f"partial answer does not continue at byte {offset} (Content-Range {shown})"
    )
