"""Keeping secrets in URLs out of logs, errors and reports."""

from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit, urlunsplit

REDACTED = "REDACTED"

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


def scrub(text: str, url: str) -> str:
    """``text`` with every secret part of ``url`` replaced by a marker."""
    for secret in secrets_of(url):
        text = text.replace(secret, REDACTED)
    return text
