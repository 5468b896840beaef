"""The URL an entry is fetched by, worked out once at input and carried with the entry.

The input check makes each entry's :class:`Target` (the URL to send and the
host key of ``--max-per-host``) when it builds the entry's
:class:`~.file_data.FileData`; the download stage, the host gate and every
downloader read it from there instead of parsing the URL again.  It travels
with the entry wherever the entry goes (a copy, a pickle to a worker), and
it is only trusted for the URL it was made from: an entry whose ``url`` was
changed since (by a processor's ``result_without_download``, say) has its
target made anew, and checked, at its download.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from .errors import PermanentDownloadError
from .http_rules import origin_of, wire_target

if TYPE_CHECKING:
    from .file_data import FileData

__all__ = ["Target", "origin_for", "remember_target", "target_of"]

#: The attribute of a FileData's ``__dict__`` that holds its target (not a dataclass
#: field: ``dataclasses.fields``, ``asdict`` and ``==`` stay as documented).
_SLOT = "_target"


class Target(NamedTuple):
    """An entry's URL as the download side uses it."""

    #: The entry's ``url`` this was made from.
    url: str
    #: The URL to GET: checked, host in ASCII, re-quoted, no fragment.
    wire: str
    #: (scheme, host, port): the unit of ``--max-per-host``.
    origin: tuple[str, str, int]


def remember_target(file_data: FileData) -> None:
    """Make ``file_data``'s target now, at input; a URL no downloader could fetch gets none.

    Such a URL fails at its download with the error of :func:`target_of`, as
    it did before targets were carried (input checking refuses those unless a
    library caller skipped it).
    """
    url = file_data.url
    made: Target | None = vars(file_data).get(_SLOT)
    if made is not None and made.url == url:
        return  # an entry given twice (a FileData the caller built from a checked list)
    try:
        wire, origin = wire_target(url)
    except PermanentDownloadError:
        return
    vars(file_data)[_SLOT] = Target(url, wire, origin)


def target_of(file_data: FileData) -> Target:
    """``file_data``'s target: the one made at input, or made now if its URL changed since.

    Raises :class:`PermanentDownloadError` for a URL no downloader could fetch.
    """
    target: Target | None = vars(file_data).get(_SLOT)
    url = file_data.url
    if target is not None and target.url == url:
        return target
    wire, origin = wire_target(url)
    target = Target(url, wire, origin)
    vars(file_data)[_SLOT] = target
    return target


def origin_for(file_data: FileData) -> tuple[str, str, int]:
    """The host key of ``file_data``'s URL; never raises (a bad URL fails at its request)."""
    target: Target | None = vars(file_data).get(_SLOT)
    if target is not None and target.url == file_data.url:
        return target.origin
    try:
        return target_of(file_data).origin
    except PermanentDownloadError:
        return origin_of(file_data.url)
