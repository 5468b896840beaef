"""Reading and validating the list of files before anything is downloaded."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Callable, Union

from ._integrity import check_fields
from ._json_stream import iter_json_array
from .errors import InputError
from .file_data import FileData
from .options import check_entry_headers
from .urls import URLProblem, check_url

FileListSource = Union[str, "os.PathLike[str]", Iterable[Union[Mapping[str, Any], FileData]]]

_TYPE_NAMES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


#: URLs that need no closer look: http(s), a plain host name or IPv4 (labels of
#: 1 to 63 characters), an optional port, no userinfo, no space or control
#: character.  Anything else goes through :func:`.urls.check_url`.
_PLAIN_URL = re.compile(
    r"(?i)(?:http|https)://(?P<host>[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*\.?)"
    r"(?::\d{1,5})?(?:[/?#][^\x00-\x20\x7f]*)?"
)


def check_entry(
    entry: Any, index: int, source: str, allowed_schemes: Sequence[str] = ("http", "https")
) -> Mapping[str, Any] | FileData:
    """Check one input entry without building anything; return it unchanged.

    Raises :class:`InputError` naming ``source``, the 0-based ``index`` and the field.
    """
    if isinstance(entry, (FileData, Mapping)):
        entry_dict: Any = entry
    else:
        raise InputError(f"{source}: entry {index}: expected an object, got {_type_name(entry)}")
    url = entry.url if isinstance(entry, FileData) else entry_dict.get("url")
    if not isinstance(url, str):
        where = f"{source}: entry {index}"
        if "url" not in entry_dict:
            raise InputError(f"{where}: missing required field 'url'")
        raise InputError(f"{where}: field 'url' must be a string, got {_type_name(url)}")
    plain = allowed_schemes == ("http", "https") and _PLAIN_URL.fullmatch(url)
    if not plain or len(plain["host"]) > 253:
        _check_url(url.strip(), f"{source}: entry {index}", allowed_schemes)
    if isinstance(entry, FileData):
        return entry
    for key in ("id", "name"):
        value = entry_dict.get(key)
        if value is None or type(value) is str:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InputError(
                f"{source}: entry {index}: field {key!r} must be a string or number, "
                f"got {_type_name(value)}"
            )
    bad = check_fields(entry_dict)
    if bad is not None:
        raise InputError(f"{source}: entry {index}: field {bad[0]!r} {bad[1]}")
    headers = entry_dict.get("headers")
    if headers is not None:
        try:
            check_entry_headers(headers)
        except ValueError as exc:
            raise InputError(f"{source}: entry {index}: field 'headers' {exc}") from None
    return entry


def _check_url(url: str, where: str, allowed_schemes: Sequence[str]) -> None:
    try:
        check_url(url, allowed_schemes)
    except URLProblem as exc:
        raise InputError(f"{where}: field 'url' {exc}") from None


def to_file_data(entry: Mapping[str, Any] | FileData) -> FileData:
    """Build the :class:`FileData` of an entry that passed :func:`check_entry`."""
    if isinstance(entry, FileData):
        return entry
    fields = dict(entry)
    # Download the URL that was validated, not one with stray whitespace around it.
    fields["url"] = fields["url"].strip()
    return FileData.from_dict(fields)


class CheckedEntries(Iterator[FileData]):
    """Entries that passed validation, turned into :class:`FileData` one at a time.

    Handing this to :func:`load_file_list` again (the CLI validates before the
    pipeline runs) returns it as it is instead of checking every entry twice.
    """

    def __init__(self, entries: Iterable[Mapping[str, Any] | FileData], count: int) -> None:
        self._entries = iter(entries)
        #: How many entries there are in all, known from the checking pass.
        self.count = count
        #: How many have been read so far, skipped ones included.
        self.taken = 0
        self._skip: Callable[[FileData], bool] | None = None

    def skipping(self, skip: Callable[[FileData], bool]) -> CheckedEntries:
        """Leave out the entries ``skip`` says are done (the journal's); returns ``self``.

        A skipped entry counts as read: it is not among the :attr:`remaining`
        ones a stop reports as not started.
        """
        self._skip = skip
        return self

    def __next__(self) -> FileData:
        while True:
            file_data = to_file_data(next(self._entries))
            if file_data.input_index is None:
                file_data.input_index = self.taken
            self.taken += 1
            if self._skip is None or not self._skip(file_data):
                return file_data

    @property
    def remaining(self) -> int:
        """Entries not read yet, without reading them."""
        return self.count - self.taken


def load_file_list(
    source: FileListSource, allowed_schemes: Sequence[str] = ("http", "https")
) -> CheckedEntries:
    """Validate every entry of ``source`` up front, then yield them as :class:`FileData`.

    ``source`` is a path to a JSON file, or a sequence of dicts or
    :class:`FileData`.  Any invalid entry raises :class:`InputError` before the
    first one is yielded, so no download starts on bad input.
    """
    if isinstance(source, CheckedEntries):
        return source
    if isinstance(source, (str, os.PathLike)):
        # Two passes over the file, holding one entry at a time: every entry is
        # checked before the first download, and memory does not grow with the
        # list.  (The file must not change while the run reads it.)
        label = os.fspath(source)
        count = 0
        for count, entry in enumerate(iter_json_array(source), start=1):
            check_entry(entry, count - 1, label, allowed_schemes)
        return CheckedEntries(iter_json_array(source), count)
    checked: list[Mapping[str, Any] | FileData] = [
        check_entry(entry, index, "<files>", allowed_schemes) for index, entry in enumerate(source)
    ]
    return CheckedEntries(checked, len(checked))
