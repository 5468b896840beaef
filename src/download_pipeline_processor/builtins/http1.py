"""HTTP/1.1 as the ``fast`` downloader reads it: request lines and response heads.

Pure functions over strings and bytes, shared by the blocking transport
(:mod:`.fast`) and the event loop (:mod:`.fast_loop`), so both read every
answer by the same rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from ..errors import PermanentDownloadError

if TYPE_CHECKING:
    import mmap

#: The longest response head accepted; a longer one is a protocol error.
MAX_HEAD = 64 * 1024

#: What requests leaves unquoted when it re-quotes a URL.
_SAFE_URL_CHARACTERS = "!#$%&'()*+,/:;=?@[]~"
#: How a body ends, besides a Content-Length.
CHUNKED = -1
UNTIL_CLOSE = -2

Origin = tuple[bool, str, int]  # (tls, host, port)


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.x as this transport reads it."""


def number(text: str, what: str) -> int:
    """A decimal header value; ``isdigit`` alone lets '²' through, and huge ones are refused."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ProtocolError(f"invalid {what} {text[:40]!r}")
    return int(text)


#: host -> its IDNA (ASCII) form, for hosts already checked; shared, bounded.
_CHECKED_HOSTS: dict[str, str] = {}


def ascii_host(host: str) -> str:
    checked = _CHECKED_HOSTS.get(host)
    if checked is None:
        try:
            # Also refuses empty or over-long labels, which would fail deep in connect().
            checked = host.encode("idna").decode("ascii") if host else ""
        except UnicodeError as exc:
            raise PermanentDownloadError(f"URL has an invalid host name: {exc}") from None
        if len(_CHECKED_HOSTS) >= 4096:
            _CHECKED_HOSTS.clear()
        _CHECKED_HOSTS[host] = checked
    return checked


def parse_head(lines: list[str]) -> tuple[int, str, dict[str, str], bool]:
    """(status, reason, headers, closes) of a response head split into lines.

    Header names are lower-cased; repeated ones are joined with ", ".
    ``closes`` tells that the server closes the connection after this answer.
    """
    status_line = lines[0].rstrip("\r")
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or code < "100":
        raise ProtocolError(f"malformed status line {status_line[:80]!r}")
    status = number(code, "status")  # also refuses non-ASCII digits
    headers: dict[str, str] = {}
    key = ""
    for raw in lines[1:]:
        line = raw.rstrip("\r")
        if line[:1] in (" ", "\t") and key:  # an obsolete folded continuation
            headers[key] = f"{headers[key]} {line.strip()}"
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise ProtocolError(f"malformed header line {line[:80]!r}")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    tokens = headers.get("connection", "").lower()
    closes = "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens)
    return status, reason.strip(), headers, closes


def interim(status: int) -> bool:
    """True for a 1xx answer, which the real answer follows; 101 is refused."""
    if status == 101:
        raise ProtocolError("unexpected 101 Switching Protocols")
    return 100 <= status < 200


def framing(status: int, headers: dict[str, str]) -> tuple[int, bool]:
    """(the body's length or CHUNKED or UNTIL_CLOSE, whether the connection must close after it)."""
    if status in (204, 304):
        return 0, False
    codings = [
        coding
        for coding in headers.get("transfer-encoding", "").lower().replace(" ", "").split(",")
        if coding and coding != "identity"
    ]
    if codings and codings[-1] == "chunked":
        # Both framings at once: do not trust what follows.
        return CHUNKED, "content-length" in headers
    text = headers.get("content-length")
    if text is None:
        return UNTIL_CLOSE, True
    values = {value.strip() for value in text.split(",")}
    if len(values) != 1:
        raise ProtocolError(f"invalid Content-Length {text[:40]!r}")
    return number(values.pop(), "Content-Length"), False


def head_end(buffer: mmap.mmap | bytearray, start: int, end: int) -> tuple[int, int]:
    """(where a head in ``buffer[start:end]`` ends, where its body starts), or (-1, -1)."""
    at = buffer.find(b"\r\n\r\n", start, end)
    if at >= 0:
        return at, at + 4
    # Bare LF line ends: rare, but http.client reads them too.
    at = buffer.find(b"\n\n", start, end)
    if at >= 0:
        return at, at + 2
    return -1, -1


def split_head(head: str) -> list[str]:
    return head.split("\r\n") if "\r\n" in head else head.split("\n")


class Request:
    """A URL taken apart once: where to connect, and the request line and Host."""

    __slots__ = ("host", "origin", "start")

    def __init__(self, url: str, host_header: str | None) -> None:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise PermanentDownloadError(f"invalid URL: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise PermanentDownloadError("only http and https URLs can be downloaded")
        if not parts.hostname:
            raise PermanentDownloadError("URL has no host")
        tls = scheme == "https"
        if ":" in parts.hostname:  # an IPv6 literal
            host = parts.hostname
            if not host.replace(":", "").replace(".", "").isalnum():
                raise PermanentDownloadError("URL has an invalid host")
            authority = f"[{host}]"
        else:
            host = ascii_host(parts.hostname)
            authority = host
        if port is not None:
            authority = f"{authority}:{port}"
        # Always re-quoted as requests does: the same URL gives the same request,
        # and no CR, LF or space can split it.
        target = quote(parts.path or "/", safe=_SAFE_URL_CHARACTERS)
        if parts.query:
            target = f"{target}?{quote(parts.query, safe=_SAFE_URL_CHARACTERS)}"
        self.host = host
        self.origin: Origin = (tls, host, (443 if tls else 80) if port is None else port)
        self.start = f"GET {target} HTTP/1.1\r\nHost: {host_header or authority}\r\n".encode(
            "latin-1"
        )
