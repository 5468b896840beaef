"""What makes a URL fetchable: one rule for input checking and every downloader.

Input checking refuses what no downloader could fetch (exit 2), and every
downloader applies the same rule to the URLs it is given and to the targets
of redirects, so the downloaders never disagree on a URL:

- no control character (C0, DEL) anywhere: libraries either drop CR, LF and
  TAB silently or percent-encode them, so the same URL would mean two things;
- a host name in Unicode is normalised as IDNA 2008 with the UTS #46 mapping
  (what requests does for a ``requests.Session``): full-width digits and
  letters are their ASCII selves (``127.0.0.1``, ``localhost``) on every
  downloader, and a name that does not normalise is refused;
- an ASCII host name is kept as written, but an empty or over-long label is
  refused (no resolver accepts it).

Spaces are refused in input (a list with a space in a URL is more likely two
fields run together than a file name), but a redirect's Location may carry
them: every downloader percent-encodes them there, as browsers do.

Messages never quote the URL, which may hold secrets; one written without a
scheme is quoted without its query string, fragment and userinfo, so the
mistake can be seen.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

__all__ = ["URLProblem", "canonical_host", "canonical_url", "check_characters", "check_url"]

#: The longest host name DNS carries, and the longest label.
_MAX_HOST = 253
_MAX_LABEL = 63


class URLProblem(ValueError):
    """Why no downloader could fetch a URL; the text completes "URL ...": "has no host"."""


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")


def check_characters(url: str, *, spaces: bool = False) -> None:
    """Raise :class:`URLProblem` naming the first control character (or space) in ``url``."""
    found = (_CONTROL if spaces else _CONTROL_OR_SPACE).search(url)
    if found is None:
        return
    character, position = found.group(), found.start()
    if character == " ":
        raise URLProblem(f"contains a space at position {position}")
    raise URLProblem(
        f"contains a control character (U+{ord(character):04X}) at position {position}"
    )


@functools.lru_cache(maxsize=4096)
def canonical_host(host: str) -> str:
    """The ASCII form of a host name; raises :class:`URLProblem` when there is none."""
    if host.isascii():
        name = host
    else:
        import idna  # a dependency of requests; only needed for a non-ASCII host

        try:
            name = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            raise URLProblem("has an invalid host name") from None
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    if len(name) > _MAX_HOST or any(not 0 < len(label) <= _MAX_LABEL for label in labels):
        raise URLProblem("has an invalid host name")
    return name


def check_url(
    url: str, allowed_schemes: Sequence[str] = ("http", "https"), *, spaces: bool = False
) -> None:
    """Raise :class:`URLProblem` when no downloader could fetch ``url``.

    ``spaces``: whether a space is allowed (it is in a redirect's target).
    """
    check_characters(url, spaces=spaces)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for an out-of-range port
    except ValueError as exc:
        raise URLProblem(f"is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in allowed_schemes:
        if not url.strip():
            raise URLProblem("is empty")
        if _lacks_scheme(url, parts.scheme):
            raise URLProblem(
                f"has no scheme ({_shown(url)}); give "
                + " or ".join(f"{scheme}://" for scheme in allowed_schemes)
            )
        shown = parts.scheme
        raise URLProblem(
            f"has unsupported scheme {shown!r} (allowed: {', '.join(allowed_schemes)})"
        )
    if not host:
        raise URLProblem("has no host")
    if ":" not in host:  # an IPv6 literal has no name to normalise
        canonical_host(host)


def _lacks_scheme(url: str, scheme: str) -> bool:
    """Whether ``url`` was written without a scheme: ``example.org/a``, ``localhost:8000/a``.

    ``urlsplit`` reads the host of ``host:8000/a`` as a scheme; a real scheme
    has no dot and is not followed by a port number.
    """
    if not scheme:
        return True
    rest = url[len(scheme) + 1 :]
    return not rest.startswith("//") and ("." in scheme or rest[:1].isdigit())


def _shown(url: str) -> str:
    """``url`` as a message may quote it: no query, fragment or userinfo, at most 60 characters."""
    shown = url.partition("?")[0].partition("#")[0].rpartition("@")[2]
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return repr(shown)


def canonical_url(url: str, *, spaces: bool = False) -> str:
    """``url`` checked by :func:`check_url`, its host in ASCII form (IDNA, UTS #46).

    A URL whose host is ASCII already comes back as it is.
    """
    check_url(url, spaces=spaces)
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host.isascii():
        return url
    netloc = canonical_host(host)
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    userinfo = parts.netloc.rpartition("@")
    if userinfo[1]:
        netloc = f"{userinfo[0]}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
