"""Reading and validating the list of files before anything is downloaded."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, Union

from ._input_formats import STDIN_PATH, InputFormats, RawEntry, input_label, read_entries
from ._input_stream import StopWatch
from ._integrity import check_fields
from ._targets import remember_target
from .errors import InputError, InvalidEntriesError, PluginError
from .file_data import FileData
from .options import check_entry_headers
from .urls import URLProblem, check_url

if TYPE_CHECKING:
    import threading

logger = logging.getLogger(__name__)

FileListSource = Union[str, "os.PathLike[str]", Iterable[Union[Mapping[str, Any], FileData, str]]]

#: How many invalid entries an error (or ``--skip-invalid``'s report) names; the rest are counted.
MAX_NAMED = 20

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
    entry: Any, where: str, allowed_schemes: Sequence[str] = ("http", "https")
) -> Mapping[str, Any] | FileData:
    """Check one input entry without building anything; return it unchanged.

    Raises :class:`InputError` starting with ``where`` (``files.json: entry 2``,
    ``files.csv: line 3``) and naming the field.
    """
    if isinstance(entry, (FileData, Mapping)):
        entry_dict: Any = entry
    else:
        raise InputError(f"{where}: expected an object, got {_type_name(entry)}")
    url = entry.url if isinstance(entry, FileData) else entry_dict.get("url")
    if not isinstance(url, str):
        if "url" not in entry_dict:
            raise InputError(f"{where}: missing required field 'url'")
        raise InputError(f"{where}: field 'url' must be a string, got {_type_name(url)}")
    plain = allowed_schemes == ("http", "https") and _PLAIN_URL.fullmatch(url)
    if not plain or len(plain["host"]) > 253:
        _check_url(url.strip(), where, allowed_schemes)
    if isinstance(entry, FileData):
        return entry
    for key in ("id", "name"):
        value = entry_dict.get(key)
        if value is None or type(value) is str:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InputError(
                f"{where}: field {key!r} must be a string or number, got {_type_name(value)}"
            )
    bad = check_fields(entry_dict)
    if bad is not None:
        raise InputError(f"{where}: field {bad[0]!r} {bad[1]}")
    headers = entry_dict.get("headers")
    if headers is not None:
        try:
            check_entry_headers(headers)
        except ValueError as exc:
            raise InputError(f"{where}: field 'headers' {exc}") from None
    return entry


def _check_url(url: str, where: str, allowed_schemes: Sequence[str]) -> None:
    try:
        check_url(url, allowed_schemes)
    except URLProblem as exc:
        raise InputError(f"{where}: field 'url' {exc}") from None


def to_file_data(entry: Mapping[str, Any] | FileData) -> FileData:
    """Build the :class:`FileData` of an entry that passed :func:`check_entry`.

    The entry carries the URL to send and its host key from here on
    (:mod:`._targets`): nothing downstream parses its URL again.
    """
    if isinstance(entry, FileData):
        file_data = entry
    else:
        fields = dict(entry)
        # Download the URL that was validated, not one with stray whitespace around it.
        fields["url"] = fields["url"].strip()
        file_data = FileData.from_dict(fields)
    remember_target(file_data)
    return file_data


def _problem(raw: RawEntry, allowed_schemes: Sequence[str]) -> str | None:
    """Why ``raw`` is not a valid entry (the whole message), or None when it is."""
    if raw.problem is not None:
        return raw.problem
    try:
        check_entry(raw.entry, raw.where, allowed_schemes)
    except InputError as exc:
        return str(exc)
    return None


class InvalidEntries:
    """The entries checking refused: how many, and the first :data:`MAX_NAMED` reasons."""

    def __init__(self, reasons: Sequence[str] = ()) -> None:
        #: Refused entries passed over so far (``--skip-invalid``).
        self.count = 0
        #: The first reasons, each naming its entry (``files.csv: line 3: ...``).
        self.reasons = list(reasons)

    def note(self, reason: str) -> None:
        """Count one more refused entry; keep its reason while there are few."""
        self.count += 1
        if len(self.reasons) < MAX_NAMED:
            self.reasons.append(reason)


class CheckedEntries(Iterator[FileData]):
    """Entries that passed validation, turned into :class:`FileData` one at a time.

    Handing this to :func:`load_file_list` again (the CLI validates before the
    pipeline runs) returns it as it is instead of checking every entry twice.
    ``check``: check each entry as it is read (standard input, read once);
    otherwise they were checked by a pass before, and ``refused`` holds the
    positions of the ones it refused (``--skip-invalid``).
    """

    def __init__(
        self,
        entries: Iterable[RawEntry | Mapping[str, Any] | FileData],
        count: int | None,
        *,
        allowed_schemes: Sequence[str] = ("http", "https"),
        check: bool = False,
        skip_invalid: bool = False,
        refused: Container[int] = (),
        invalid: InvalidEntries | None = None,
        stop_watch: StopWatch | None = None,
    ) -> None:
        self._entries = iter(entries)
        self._stop_watch = stop_watch
        #: How many entries there are in all, invalid ones included, known from
        #: the checking pass; None for standard input, read once.
        self.count = count
        #: How many have been read so far, skipped and invalid ones included.
        self.taken = 0
        #: The invalid entries passed over (``--skip-invalid``).
        self.invalid = invalid if invalid is not None else InvalidEntries()
        self._allowed_schemes = allowed_schemes
        self._check = check
        self._skip_invalid = skip_invalid
        self._refused = refused
        self._skip: Callable[[FileData], bool] | None = None

    def ready(self) -> bool:
        """Whether the next entry (or the end) can be read without waiting for it.

        The entries' source says so with a ``ready()`` method of its own (a
        feed of batches); any other (a list, a file) is always ready.
        """
        ready = getattr(self._entries, "ready", None)
        return True if ready is None else bool(ready())

    def stop_reading_at(self, event: threading.Event) -> None:
        """Let a read of idle standard input give up once ``event`` is set.

        It raises :class:`~._input_stream.ReadStopped` from ``next()`` then.
        """
        if self._stop_watch is not None:
            self._stop_watch.watch(event)

    def skipping(self, skip: Callable[[FileData], bool]) -> CheckedEntries:
        """Leave out the entries ``skip`` says are done (the journal's); returns ``self``.

        A skipped entry counts as read: it is not among the :attr:`remaining`
        ones a stop reports as not started.
        """
        self._skip = skip
        return self

    def __next__(self) -> FileData:
        while True:
            try:
                raw = next(self._entries)
            except InputError as exc:
                if self._check and not isinstance(exc, InvalidEntriesError):
                    # Read once and checked as read: unreadable is invalid, as for a file.
                    raise InvalidEntriesError("", [str(exc)], 1) from None
                raise
            position = self.taken
            self.taken += 1
            if not isinstance(raw, RawEntry):  # entries checked by the caller, as they are
                raw = RawEntry(f"<files>: entry {position}", raw)
            if position in self._refused:
                self.invalid.count += 1  # its reason was kept by the checking pass
                continue
            if self._check or raw.problem is not None:
                # A problem here, unchecked, means the file changed since it was checked.
                problem = _problem(raw, self._allowed_schemes)
                if problem is not None:
                    if not self._check:
                        raise InputError(problem)
                    if not self._skip_invalid:
                        raise InvalidEntriesError("", [problem], 1)
                    if len(self.invalid.reasons) < MAX_NAMED:
                        logger.warning("skipping an invalid entry: %s", problem)
                    self.invalid.note(problem)
                    continue
            file_data = to_file_data(raw.entry)
            if file_data.input_index is None:
                file_data.input_index = position
            if self._skip is None or not self._skip(file_data):
                return file_data

    @property
    def remaining(self) -> int:
        """Entries not read yet, without reading them (0 when the count is unknown)."""
        return 0 if self.count is None else self.count - self.taken


def load_file_list(
    source: FileListSource,
    allowed_schemes: Sequence[str] = ("http", "https"),
    *,
    input_format: str | None = None,
    skip_invalid: bool = False,
    formats: InputFormats | None = None,
) -> CheckedEntries:
    """Validate every entry of ``source`` up front, then yield them as :class:`FileData`.

    ``source`` is the path of an input file in any of ``formats`` (the
    built-in ones unless given; ``input_format`` or its name says which),
    ``-`` for standard input, or an iterable of dicts, URL strings or
    :class:`FileData`.  Invalid entries raise :class:`InvalidEntriesError`
    (every one counted, the first :data:`MAX_NAMED` named) before the first
    one is yielded, so no download starts on bad input; with
    ``skip_invalid`` they are left out instead, and counted in
    :attr:`CheckedEntries.invalid`.  Standard input, read once, is checked
    as it is read: a bad entry raises from ``next()`` then.
    """
    if isinstance(source, CheckedEntries):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = source
        if formats is None:
            formats = InputFormats.builtin()
        if input_format is not None:
            # An unknown name is a usage error now, not at the first read.
            try:
                formats.get(input_format)
            except PluginError as exc:
                raise PluginError(f"--input-format: {exc}") from None
        if os.fspath(path) == STDIN_PATH:
            stop_watch = StopWatch()
            return CheckedEntries(
                read_entries(path, input_format, stop=stop_watch, formats=formats),
                None,
                allowed_schemes=allowed_schemes,
                check=True,
                skip_invalid=skip_invalid,
                stop_watch=stop_watch,
            )
        label = input_label(path)

        # Two passes over the file, holding one entry at a time: every entry is
        # checked before the first download, and memory does not grow with the
        # list.  (The file must not change while the run reads it.)
        def entries() -> Iterable[RawEntry]:
            return read_entries(path, input_format, formats=formats)

    else:
        label = "<files>"
        listed = [
            RawEntry(f"<files>: entry {index}", {"url": item} if isinstance(item, str) else item)
            for index, item in enumerate(source)
        ]

        def entries() -> Iterable[RawEntry]:
            return listed

    invalid = InvalidEntries()
    refused: set[int] = set()
    count = 0
    for count, raw in enumerate(entries(), start=1):
        problem = _problem(raw, allowed_schemes)
        if problem is not None:
            invalid.note(problem)
            refused.add(count - 1)
    if refused and not skip_invalid:
        raise InvalidEntriesError(label, invalid.reasons, invalid.count)
    if refused:
        logger.warning(
            "%s: %d invalid entries are skipped (--skip-invalid):%s%s",
            label,
            invalid.count,
            "".join(f"\n  {reason}" for reason in invalid.reasons),
            f"\n  ... and {invalid.count - len(invalid.reasons)} more"
            if invalid.count > len(invalid.reasons)
            else "",
        )
    return CheckedEntries(
        entries(),
        count,
        allowed_schemes=allowed_schemes,
        refused=refused,
        invalid=InvalidEntries(invalid.reasons),
    )
