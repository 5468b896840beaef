"""Keeping secrets in URLs out of logs, errors and reports, and long values short in them."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit, urlunsplit

__all__ = [
    "REDACTED",
    "SHOWN_LENGTH",
    "redact_url",
    "scrub",
    "scrub_error",
    "scrub_urls",
    "secrets_of",
    "shorten",
    "shorten_words",
    "shown_url",
]


REDACTED = "REDACTED"

#: Longest id or URL a message shows whole (:func:`shorten`); results keep every value whole.
SHOWN_LENGTH = 200

#: Characters requests leaves unescaped when it re-quotes a URL for the wire (and
#: for its error messages): a secret is also looked for in that form.
_WIRE_SAFE = "!#$%&'()*+,/:;=?@[]~"


def redact_url(url: str) -> str:
    """The URL without userinfo, query string or fragment.

    ``https://user:pw@host/a/b.mp3?token=x`` gives ``https://host/a/b.mp3?REDACTED``.
    """
    if url.isascii():
        # Fast paths for the common shapes; this runs for every file reported.
        _scheme, sep, rest = url.partition("://")
        authority = rest.partition("/")[0].partition("?")[0].partition("#")[0]
        plain_host, colon, port_text = authority.partition(":")
        plain_port = not colon or (port_text.isdigit() and int(port_text) <= 65535)
        if sep and plain_host and plain_port and not any(c in authority for c in "@["):
            base, query_mark, query = url.partition("#")[0].partition("?")
            return base + ("?" + REDACTED if query_mark and query else "")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    query = REDACTED if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def secrets_of(url: str) -> list[str]:
    """The parts of ``url`` that must never be shown: query string and credentials."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found: list[str] = []
    for secret in (parts.query, parts.fragment, parts.username, parts.password):
        if secret:
            found.extend(
                {secret, unquote(secret), quote(secret, safe=""), quote(secret, safe=_WIRE_SAFE)}
            )
    # Longest first so that a secret containing another is removed whole.
    return sorted({s for s in found if s}, key=len, reverse=True)


#: A query string in anything that looks like a URL or a request target (an
#: absolute URL, or a path such as urllib3's "Max retries exceeded with url:
#: /z?sig=..."), up to the next space or quote.
_QUERY_IN_TEXT = re.compile(r"((?:[A-Za-z][A-Za-z0-9+.-]*://|/)[^\s'\"<>?]*)\?[^\s'\"<>]+")
#: Userinfo in an absolute URL: ``scheme://user:password@``.
_USERINFO_IN_TEXT = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^\s'\"<>/?#@]*@")


def scrub_urls(text: str) -> str:
    """``text`` with the query string and userinfo of every URL-looking part removed.

    For text no one can vouch for, such as a library's exception message that
    may quote a URL this program never saw (a redirect's target).
    """
    if "?" in text:
        text = _QUERY_IN_TEXT.sub(rf"\1?{REDACTED}", text)
    if "@" in text:
        text = _USERINFO_IN_TEXT.sub(r"\1", text)
    return text


def scrub(text: str, *urls: str) -> str:
    """``text`` with every secret part of each of ``urls`` replaced by a marker.

    Any other URL-looking part loses its query string and userinfo too
    (:func:`scrub_urls`): a message may quote a URL, such as a redirect's
    target, whose secrets the caller did not know.
    """
    for url in urls:
        for secret in secrets_of(url):
            text = text.replace(secret, REDACTED)
    return scrub_urls(text)


def scrub_error(error: BaseException, *urls: str) -> BaseException:
    """``error`` with :func:`scrub` applied to its message, in place; returns it.

    Only an exception whose message is its single text argument (the usual
    shape, and that of every error this package raises) is changed: that is
    what ``str(error)`` shows.
    """
    args = error.args
    if len(args) == 1 and isinstance(args[0], str):
        scrubbed = scrub(args[0], *urls)
        if scrubbed != args[0]:
            error.args = (scrubbed,)
    return error


def shorten(text: str, limit: int = SHOWN_LENGTH) -> str:
    """``text`` as a message shows it: whole up to ``limit`` characters, else its start and
    end around ``...`` and its length, about ``limit`` characters in all.

    For ids and URLs in log lines, errors and summaries; never for results
    (jsonl, the journal), which keep each value whole.
    """
    if len(text) <= limit:
        return text
    marker = f"...[{len(text)} characters]..."
    keep = max(limit - len(marker), 2)
    head = keep * 2 // 3
    return text[:head] + marker + text[len(text) - (keep - head) :]


def shown_url(url: str) -> str:
    """The URL as a message shows it: :func:`redact_url`, then :func:`shorten`."""
    return shorten(redact_url(url))


#: A run of more than SHOWN_LENGTH characters with no space: an id or URL inside a text.
_LONG_WORD = re.compile(rf"\S{{{SHOWN_LENGTH + 1},}}")


def shorten_words(text: str) -> str:
    """``text`` with every run of more than :data:`SHOWN_LENGTH` non-space characters
    :func:`shorten` ed: for a message (a library's error) that may quote a long URL or id."""
    if len(text) <= SHOWN_LENGTH:
        return text
    return _LONG_WORD.sub(lambda match: shorten(match.group(0)), text)
