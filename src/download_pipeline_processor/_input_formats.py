"""Reading the input's formats one entry at a time: JSON list, JSON Lines, CSV, URL lists.

Each reader yields a :class:`RawEntry` per entry, in order, with where it
stands in the input (``files.json: entry 3``, 0-based, for a JSON list;
``files.csv: line 4``, 1-based, for every other format), so every error
names it the same way.  An entry that cannot even be read (a malformed JSON
line, a CSV row with too many cells) comes with its problem instead, so
checking can name every bad entry, not only the first.  A problem that
leaves nothing readable after it (a JSON list's syntax error, a CSV file
without a ``url`` column, bytes that are not UTF-8) raises
:class:`InputError`.

Nothing here holds more than one entry (and one chunk of the file): memory
does not grow with the input.  A ``.gz`` suffix, or gzip's magic bytes, is
read decompressed; the path ``-`` is standard input, whose format, unless
given, is sniffed (``[`` JSON, ``{`` JSON Lines, a first line naming a
``url`` column with a comma CSV, anything else a URL list), as is that of a
file whose extension says nothing.  A whole input that is one JSON object
is one error saying so, not one per line.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import os
import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from ._input_stream import (
    BOM,
    CHUNK,
    GZIP_MAGIC,
    BufferedView,
    InputReader,
    ReadStopped,
    StdinStream,
    StopWatch,
)
from ._integrity import check_field
from ._json_stream import ByteSource, LineDecoder, iter_json_elements, one_object_error
from .errors import (
    DuplicatePluginError,
    InputError,
    InvalidEntriesError,
    UnknownPluginError,
)
from .input_format import InputEntry, InputFormat
from .redact import redact_url

#: The path that means standard input, and how errors name it.
STDIN_PATH = "-"
STDIN_LABEL = "<stdin>"

#: The most text held to find out whether JSON Lines that do not parse are one object.
ONE_OBJECT_LIMIT = 16 << 20


@dataclass(frozen=True)
class RawEntry:
    """One entry as read, before checking."""

    #: Where it stands, as errors name it: ``files.jsonl: line 3``.
    where: str
    #: The decoded entry (an object, or for a URL list ``{"url": ...}``); None with a problem.
    entry: Any
    #: Why the entry could not be read at all (the whole message), or None.
    problem: str | None = None


def input_label(path: str | os.PathLike[str]) -> str:
    """How errors name the input at ``path``."""
    text = os.fspath(path)
    return STDIN_LABEL if text == STDIN_PATH else text


def is_network_url(path: str | os.PathLike[str]) -> bool:
    """Whether ``--files`` was given an http(s) URL rather than a path."""
    return re.match(r"(?i)https?://", os.fspath(path)) is not None


def _network_url_error(url: str) -> InputError:
    shown = redact_url(url)
    # The URL as the user gave it, unless that would print a secret.
    command_url = shlex.quote(url) if shown == url else "URL"
    return InputError(
        f"{shown}: --files reads a file or '-' (standard input), not a URL; to read a list "
        f"from the network: curl -s {command_url} | download-pipeline-processor --files -"
    )


def _open(path: str, label: str) -> IO[bytes]:
    try:
        return open(path, "rb")  # noqa: PTH123 - closed by read_entries
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{label}: is a directory, expected a file") from None
    except OSError as exc:
        raise InputError(f"{label}: cannot read: {exc.strerror or exc}") from None


def read_entries(
    path: str | os.PathLike[str],
    input_format: str | None = None,
    *,
    stop: StopWatch | None = None,
    formats: InputFormats | None = None,
) -> Iterator[RawEntry]:
    """Yield the entries of the input at ``path`` (``-``: standard input) one at a time.

    ``input_format`` is the name of one of ``formats`` (the built-in ones
    unless given), or None to go by the file's name (sniffing the content
    when it says nothing).  Nothing is read before the first entry is asked
    for.  Standard input, while idle, gives up with :class:`ReadStopped`
    once ``stop`` is set.
    """
    formats = formats if formats is not None else InputFormats.builtin()
    named = None if input_format is None else formats.get(input_format)
    text = os.fspath(path)
    if is_network_url(text):
        raise _network_url_error(text)
    label = input_label(text)
    stdin = text == STDIN_PATH
    file = None if stdin else _open(text, label)
    handle: ByteSource = StdinStream(stop or StopWatch()) if file is None else file
    compressed = file is not None and text.lower().endswith(".gz")
    try:
        stream = gzip.GzipFile(fileobj=file, mode="rb") if compressed else handle
        reader = InputReader(stream, label, compressed)
        magic = not compressed and reader.peek(lambda data: len(data) >= 2).startswith(GZIP_MAGIC)
        if magic:
            # Compressed whatever the name says (a pipe has none): read through it.
            reader = InputReader(gzip.GzipFile(fileobj=reader, mode="rb"), label, compressed=True)
        chosen = named or (None if stdin else formats.by_suffix(text))
        if chosen is None:
            chosen = formats.get(reader.sniff())
        source: Any = reader
        if chosen.read not in _OWN_READS:
            if file is not None and not compressed and not magic:
                # A plain file: the format gets it whole, seekable (a column store reads its end).
                file.seek(0)
                source = file
            else:
                # A forward-only binary file object: readline, iteration, read(n).
                source = io.BufferedReader(BufferedView(reader), CHUNK)
        yield from _read_with(chosen, source, label)
    finally:
        if file is not None:
            file.close()


def _read_with(chosen: InputFormat, stream: Any, label: str) -> Iterator[RawEntry]:
    """The entries ``chosen`` reads from ``stream``, each named by its position."""
    if chosen.read in _OWN_READS:  # the framework's own: entries already named
        yield from chosen.read(stream)
        return
    where = f"{label}: {chosen.position}"
    try:
        for count, item in enumerate(chosen.read(stream), start=1):
            if isinstance(item, InputEntry):
                at = f"{where} {item.number}"
                problem = None if item.problem is None else f"{at}: {item.problem}"
                yield RawEntry(at, item.fields, problem)
            else:
                yield RawEntry(f"{where} {count}", item)
    except (ReadStopped, InvalidEntriesError):
        raise
    except InputError as exc:
        message = str(exc)
        raise InputError(message if message.startswith(label) else f"{label}: {message}") from None
    except Exception as exc:  # noqa: BLE001 - a plugin's reader: bad input, not a crash
        raise InputError(
            f"{label}: cannot read as {chosen.name}: {type(exc).__name__}: {exc}"
        ) from None


class InputFormats:
    """The input formats a run can read: by name (``--input-format``) and by file suffix.

    Built from the ``register_input_formats`` registrations, each with the
    distribution that made it: a name two distributions register cannot be
    selected (the error names both).
    """

    def __init__(self, registrations: Iterable[tuple[InputFormat, str]]) -> None:
        self._by_name: dict[str, list[tuple[InputFormat, str]]] = {}
        for registered, distribution in registrations:
            self._by_name.setdefault(registered.name, []).append((registered, distribution))

    @classmethod
    def builtin(cls) -> InputFormats:
        """The framework's own formats alone (a library run with no plugin manager)."""
        return cls((registered, "download-pipeline-processor") for registered in BUILTIN_FORMATS)

    @property
    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._by_name)

    def get(self, name: str) -> InputFormat:
        """The format registered as ``name``; a usage error (did you mean...) when none is."""
        found = self._by_name.get(name)
        if not found:
            raise UnknownPluginError("input format", name, self.names)
        distributions = {distribution for _, distribution in found}
        if len(distributions) > 1:
            raise DuplicatePluginError("input format", name, distributions)
        return found[-1][0]

    def by_suffix(self, path: str | os.PathLike[str]) -> InputFormat | None:
        """The format whose suffix ends the file's name (``.gz`` looked through), or None."""
        name = os.fspath(path).lower().removesuffix(".gz")
        best: tuple[int, str] | None = None
        for format_name, found in self._by_name.items():
            for suffix in found[-1][0].suffixes:
                if name.endswith(suffix) and (best is None or len(suffix) > best[0]):
                    best = (len(suffix), format_name)
        return None if best is None else self.get(best[1])


def _json_entries(reader: InputReader, label: str) -> Iterator[RawEntry]:
    for index, element in enumerate(iter_json_elements(reader, label)):
        # A list of URL strings is a list of entries with only a URL.
        entry = {"url": element} if isinstance(element, str) else element
        yield RawEntry(f"{label}: entry {index}", entry)


def _lines(reader: InputReader, label: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, text with its newline) for each line; only ``\\n`` ends a line."""
    pending = b""
    number = 0
    first = True
    while True:
        chunk = reader.read(CHUNK)
        if first and chunk:
            first = False
            chunk = chunk.removeprefix(BOM)
        if not chunk:
            break
        pending += chunk
        *whole, pending = pending.split(b"\n")
        for raw in whole:
            number += 1
            yield number, _decode(raw + b"\n", label, number)
    if pending:
        yield number + 1, _decode(pending, label, number + 1)


def _decode(raw: bytes, label: str, number: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{label}: line {number}: not UTF-8 text") from None


def _jsonl_entries(reader: InputReader, label: str) -> Iterator[RawEntry]:
    decoder = LineDecoder()
    lines: Iterator[tuple[int, str]] = _lines(reader, label)
    first = True
    while (item := next(lines, None)) is not None:
        number, text = item
        if not text.strip():
            continue
        where = f"{label}: line {number}"
        try:
            # Without the line end, an error at the end of the line has its column.
            entry = decoder.decode(text.rstrip("\r\n"), where)
        except InputError as exc:
            if first and text.lstrip().startswith("{") and _cut_short(text):
                # Perhaps one object over many lines (pretty-printed), not JSON Lines.
                lines = _unless_one_object(text, lines, label)
            first = False
            yield RawEntry(where, None, str(exc))
            continue
        first = False
        yield RawEntry(where, entry)


def _cut_short(text: str) -> bool:
    """Whether a line that is not JSON only ends too soon, as an object's first line does."""
    line = text.rstrip()
    try:
        json.loads(line)
    except json.JSONDecodeError as exc:
        return exc.pos >= len(line)
    except (ValueError, RecursionError):
        return False
    return False


def _unless_one_object(
    text: str, lines: Iterator[tuple[int, str]], label: str
) -> Iterator[tuple[int, str]]:
    """The lines after ``text``, a first line that is not JSON; or, when the whole input
    is one JSON object, an :class:`InputError` saying so (one line, not one per line).

    The lines are held to find out, up to :data:`ONE_OBJECT_LIMIT` characters.
    """
    held: list[tuple[int, str]] = []
    size = len(text)
    for item in lines:
        held.append(item)
        size += len(item[1])
        if size > ONE_OBJECT_LIMIT:
            return itertools.chain(held, lines)
    try:
        document = json.loads(text + "".join(line for _, line in held))
    except (ValueError, RecursionError):
        document = None
    if isinstance(document, dict):
        raise one_object_error(label, document)
    return iter(held)


def _url_entries(reader: InputReader, label: str) -> Iterator[RawEntry]:
    for number, text in _lines(reader, label):
        url = text.strip()
        if url and not url.startswith("#"):
            yield RawEntry(f"{label}: line {number}", {"url": url})


def _csv_entries(reader: InputReader, label: str) -> Iterator[RawEntry]:
    rows = csv.reader(text for _, text in _lines(reader, label))
    try:
        header: list[str] = []
        while not any(cell.strip() for cell in header):
            header = next(rows)
        names = [cell.strip() for cell in header]
        header_line = rows.line_num
        _check_header(names, f"{label}: line {header_line}")
        previous = header_line
        for row in rows:
            start, previous = previous + 1, rows.line_num
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue
            where = f"{label}: line {start}"
            if len(cells) > len(names):
                problem = f"{where}: {len(cells)} cells, but the header has {len(names)} columns"
                yield RawEntry(where, None, problem)
                continue
            # An empty cell is an absent field.
            fields: dict[str, Any] = {name: cell for name, cell in zip(names, cells) if cell}
            size = fields.get("size")
            if size is not None and _is_size_text(size):
                fields["size"] = int(size)
            yield RawEntry(where, fields)
    except StopIteration:
        raise InputError(f"{label}: empty, expected a header row with a 'url' column") from None
    except csv.Error as exc:
        raise InputError(f"{label}: line {rows.line_num}: malformed CSV: {exc}") from None


def _is_size_text(text: str) -> bool:
    """Whether a CSV cell is a size; one that is not stays text, for checking to refuse."""
    try:
        check_field("size", text, from_text=True)
    except ValueError:
        return False
    return True


def _check_header(names: list[str], where: str) -> None:
    if "url" not in names:
        shown = ", ".join(repr(name) for name in names[:10])
        raise InputError(f"{where}: the header has no 'url' column (it has {shown})")
    for position, name in enumerate(names, start=1):
        if not name:
            raise InputError(f"{where}: column {position} of the header has no name")
        if names.index(name) != position - 1:
            raise InputError(f"{where}: the header names column {name!r} twice")


def _reader_of(stream: Any) -> InputReader:
    if isinstance(stream, InputReader):
        return stream
    label = str(getattr(stream, "name", "<input>"))
    return InputReader(stream, label, compressed=False)


def read_json(stream: Any) -> Iterator[RawEntry]:
    """The built-in ``json`` format: a JSON list of objects or of URL strings."""
    reader = _reader_of(stream)
    return _json_entries(reader, reader.label)


def read_jsonl(stream: Any) -> Iterator[RawEntry]:
    """The built-in ``jsonl`` format: one JSON object a line."""
    reader = _reader_of(stream)
    return _jsonl_entries(reader, reader.label)


def read_csv(stream: Any) -> Iterator[RawEntry]:
    """The built-in ``csv`` format: a header row with a ``url`` column."""
    reader = _reader_of(stream)
    return _csv_entries(reader, reader.label)


def read_urls(stream: Any) -> Iterator[RawEntry]:
    """The built-in ``urls`` format: one URL a line."""
    reader = _reader_of(stream)
    return _url_entries(reader, reader.label)


#: The framework's own formats, which the built-in plugin registers.
BUILTIN_FORMATS = (
    InputFormat("json", read_json, (".json",), position="entry"),
    InputFormat("jsonl", read_jsonl, (".jsonl", ".ndjson")),
    InputFormat("csv", read_csv, (".csv",)),
    InputFormat("urls", read_urls, (".txt", ".urls")),
)
#: Their readers, which name their entries themselves.
_OWN_READS = tuple(registered.read for registered in BUILTIN_FORMATS)
