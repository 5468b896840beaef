"""HTTP/1.1 as the ``fast`` downloader reads it: request lines and response heads.

Pure functions over strings and bytes, shared by the blocking transport
(:mod:`.fast`) and the event loop (:mod:`.fast_loop`), so both read every
answer by the same rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from download_pipeline_processor.errors import PermanentDownloadError
from download_pipeline_processor.http_rules import (
    CHUNKED,
    UNTIL_CLOSE,
    body_framing,
    quote_target,
    request_url,
)
from download_pipeline_processor.urls import URLProblem, canonical_host, check_characters

__all__ = [
    "CHUNKED",
    "MAX_HEAD",
    "UNTIL_CLOSE",
    "Origin",
    "ProtocolError",
    "Request",
    "ascii_host",
    "framing",
    "head_end",
    "interim",
    "number",
    "parse_head",
    "split_head",
]

if TYPE_CHECKING:
    import mmap

#: The longest response head accepted; a longer one is a protocol error.
MAX_HEAD = 64 * 1024

Origin = tuple[bool, str, int]  # (tls, host, port)


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.x as this transport reads it."""


def number(text: str, what: str) -> int:
    """A decimal header value; ``isdigit`` alone lets '²' through, and huge ones are refused."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ProtocolError(f"invalid {what} {text[:40]!r}")
    return int(text)


def ascii_host(host: str) -> str:
    """The ASCII form of ``host`` by the rule of every downloader (:mod:`..urls`)."""
    try:
        return canonical_host(host)
    except URLProblem as exc:
        raise PermanentDownloadError(f"URL {exc}") from None


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
    """(the body's length or CHUNKED or UNTIL_CLOSE, whether the connection must close after it).

    ``headers`` as :func:`parse_head` gives them; the rule is :func:`.http_rules.body_framing`.
    """
    return body_framing(status, headers.get("transfer-encoding"), headers.get("content-length"))


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

    def __init__(self, url: str, host_header: str | None, *, wire: bool = False) -> None:
        """``wire``: ``url`` is a request's, checked and quoted once at input: not again."""
        try:
            if not wire:
                check_characters(url, spaces=True)  # a redirect's target may hold spaces
            parts = urlsplit(url)
            port = parts.port
            scheme = parts.scheme.lower()
            hostname = parts.hostname
        except (URLProblem, ValueError):
            hostname = scheme = ""
        if scheme not in ("http", "https") or not hostname:
            request_url(url)  # raises the error every downloader gives for this URL
            raise PermanentDownloadError("URL cannot be requested")
        tls = scheme == "https"
        if ":" in hostname:  # an IPv6 literal
            host = hostname
            if not host.replace(":", "").replace(".", "").isalnum():
                raise PermanentDownloadError("URL has an invalid host")
            authority = f"[{host}]"
        else:
            host = ascii_host(hostname)
            authority = host
        if port is not None:
            authority = f"{authority}:{port}"
        # Re-quoted as requests does (a wire URL is already): the same URL gives the
        # same request, and no CR, LF or space can split it.
        path = parts.path or "/"
        target = path if wire else quote_target(path)
        if parts.query:
            target = f"{target}?{parts.query if wire else quote_target(parts.query)}"
        self.host = host
        self.origin: Origin = (tls, host, (443 if tls else 80) if port is None else port)
        self.start = f"GET {target} HTTP/1.1\r\nHost: {host_header or authority}\r\n".encode(
            "latin-1"
        )
