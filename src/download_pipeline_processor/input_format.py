"""What an input format plugin provides: the entries of a list, read from a binary stream.

A plugin registers a format from its ``register_input_formats(register)``
hook::

    register("parquet", read_parquet, suffixes=(".parquet",), position="row")

``read(stream)`` takes the input as a binary stream and yields its entries in
order, each a dict of fields (``url`` and any others) or an
:class:`InputEntry` when it names its own position or could not be read.
The stream is the file opened ``rb`` (seekable) for a plain file, and a
forward-only stream (``seekable()`` is False) for standard input and for
gzip-compressed input; either has ``name``, how messages name the input.

The framework checks every entry the same way whatever its format (the
``url``, the fields with a meaning), and names a bad one by the input and its
position: ``files.parquet: row 7: field 'url' has no scheme``.  A dict
yielded as is stands at the position of its count, from 1.  A problem that
leaves nothing readable (not the format at all) is an exception:
:class:`~.errors.InputError` with the message to show, or any other
exception, shown with its type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any, Callable, Union

__all__ = ["InputEntry", "InputFormat", "ReadEntries"]


@dataclass(frozen=True)
class InputEntry:
    """One entry as a format read it, with its position."""

    #: Where it stands, as messages name it with the format's ``position``
    #: word: a 1-based line or row number.
    number: int
    #: The entry's fields (a dict with ``url``); None when it has a problem.
    fields: Any = None
    #: Why it could not be read at all (``malformed JSON at column 3``), or None.
    problem: str | None = None


#: ``read(stream)``: the entries of the input on a binary stream, in order.
ReadEntries = Callable[[IO[bytes]], Iterable[Union[Mapping[str, Any], InputEntry]]]


@dataclass(frozen=True)
class InputFormat:
    """A registered input format: its name, its reader, the file names it claims."""

    #: What ``--input-format NAME`` selects it by.
    name: str
    #: The function that reads it (see :data:`ReadEntries`).
    read: Callable[[Any], Iterable[Any]]
    #: File name endings it claims, lower case with their dot (``.parquet``);
    #: ``.gz`` after any of them is read decompressed.
    suffixes: tuple[str, ...] = ()
    #: The word messages name an entry's position with: ``line`` or ``row``.
    position: str = "line"
