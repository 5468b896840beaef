"""Reading the entries of a JSON list one at a time, so memory does not grow with its length.

``json.load`` would hold the whole list (and every entry's dict) at once: for
millions of entries that is gigabytes.  This reader decodes one element at a
time with ``JSONDecoder.raw_decode`` from a sliding text buffer, and reports a
syntax error with the same line and column ``json.load`` would give.

What ``json.load`` accepts but a report cannot carry is refused as an input
error naming the entry: ``NaN``, ``Infinity`` and numbers too large for a
float (they would be written back as invalid JSON), integers longer than
Python converts, and elements nested deeper than the decoder can recurse.
"""

from __future__ import annotations

import codecs
import json
import math
import os
import sys
from collections.abc import Iterator
from typing import IO, Any, Protocol

from .errors import InputError

#: Characters read from the file at a time.
CHUNK = 1 << 20
_WHITESPACE = " \t\n\r"
_NUMBER_CHARS = "0123456789+-.eE"
_TYPE_NAMES = {dict: "an object", str: "a string", int: "a number", float: "a number"}
_TYPE_NAMES.update({bool: "a boolean", type(None): "null"})


class ByteSource(Protocol):
    """What the reader reads from: an open binary file, or anything with its ``read``."""

    def read(self, size: int, /) -> bytes: ...


class _Buffer:
    """A window on the file's text that remembers how many lines it has dropped."""

    def __init__(self, handle: ByteSource, label: str) -> None:
        self.handle = handle
        self.label = label
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.text = ""
        self.pos = 0
        self.eof = False
        self.lines_dropped = 0
        self.column_base = 0  # characters of the current line that were dropped

    def more(self) -> bool:
        """Append the next chunk; False at the end of the file."""
        if self.eof:
            return False
        raw = self.handle.read(CHUNK)
        try:
            self.text += self.decoder.decode(raw, final=not raw)
        except UnicodeDecodeError:
            raise InputError(f"{self.label}: not UTF-8 text") from None
        self.eof = not raw
        return True

    def skip_whitespace(self) -> str:
        """The next non-blank character ("" at the end of the file), not consumed."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return ""

    def drop_consumed(self) -> None:
        """Forget text before ``pos`` once enough has piled up."""
        if self.pos < CHUNK:
            return
        dropped = self.text[: self.pos]
        newlines = dropped.count("\n")
        if newlines:
            self.lines_dropped += newlines
            self.column_base = len(dropped) - dropped.rfind("\n") - 1
        else:
            self.column_base += len(dropped)
        self.text = self.text[self.pos :]
        self.pos = 0

    def error(self, message: str, at: int) -> InputError:
        """An InputError for position ``at`` of the current text, as line and column."""
        before = self.text[:at]
        newlines = before.count("\n")
        line = self.lines_dropped + newlines + 1
        column = at - before.rfind("\n") if newlines else self.column_base + at + 1
        return InputError(
            f"{self.label}: malformed JSON at line {line}, column {column}: {message}"
        )


class _NumberCheck:
    """Decoder hooks that note a number JSON cannot carry (``NaN``, ``Infinity``, ``1e999``).

    The element still decodes (to a float); the caller asks :attr:`found`
    afterwards, so the error can name the field that holds it.
    """

    def __init__(self) -> None:
        #: The first such number of the element, as written in the file.
        self.found: str | None = None

    def constant(self, name: str) -> float:
        if self.found is None:
            self.found = name
        return float(name)

    def real(self, text: str) -> float:
        value = float(text)
        if not math.isfinite(value) and self.found is None:
            self.found = text if len(text) <= 20 else text[:17] + "..."
        return value


def _field_holding_non_finite(element: Any) -> str | None:
    """The top-level key of ``element`` whose value holds a non-finite float, if any."""
    if not isinstance(element, dict):
        return None
    for key, value in element.items():
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, float) and not math.isfinite(item):
                return str(key)
            if isinstance(item, dict):
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
    return None


def _unreadable_number(label: str, index: int) -> InputError:
    """The error for an integer longer than Python converts (a ValueError from ``int``)."""
    limit = getattr(sys, "get_int_max_str_digits", lambda: 0)()
    limit_text = f" (the limit is {limit})" if limit else ""
    return InputError(f"{label}: entry {index}: an integer has too many digits{limit_text}")


def _whole_document(buffer: _Buffer, first: str) -> Any:
    """Parse the whole text: only for documents that are not a list (to name what they are)."""
    while buffer.more():
        pass
    label = buffer.label
    try:
        return json.loads(buffer.text)
    except json.JSONDecodeError as exc:
        hint = ""
        if first == "{" and exc.msg == "Extra data":
            hint = " (an object a line is JSON Lines: name it .jsonl or give --input-format jsonl)"
        raise InputError(
            f"{label}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}{hint}"
        ) from None
    except (RecursionError, ValueError):
        # Too deep or a too long integer: not a list either way, which is the error.
        name = "an object" if first == "{" else "a number"
        raise InputError(f"{label}: expected a JSON list of objects, got {name}") from None


def one_object_error(label: str, document: dict[Any, Any]) -> InputError:
    """The error for an input whose whole text is one JSON object (not a list of entries)."""
    hint = ""
    for key, value in document.items():
        if isinstance(value, list):
            hint = f" (its field {key!r} holds a list"
            if isinstance(key, str) and key.isidentifier():
                hint += f"; jq -c '.{key}[]' gives it as JSON Lines"
            hint += ")"
            break
    return InputError(f"{label}: a JSON object, not a list of entries{hint}")


def _open(path: str | os.PathLike[str], label: str) -> IO[bytes]:
    try:
        return open(path, "rb")  # noqa: PTH123 - closed by the caller's with
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{label}: is a directory, expected a JSON file") from None
    except OSError as exc:
        raise InputError(f"{label}: cannot read: {exc.strerror or exc}") from None


def iter_json_array(path: str | os.PathLike[str]) -> Iterator[Any]:
    """Yield the elements of the JSON list in ``path``, one at a time.

    Raises :class:`InputError` (naming the file, and line and column for
    syntax errors) when the file is missing, unreadable, not UTF-8, not JSON,
    or not a list.
    """
    label = os.fspath(path)
    with _open(path, label) as handle:
        yield from iter_json_elements(handle, label)


def iter_json_elements(handle: ByteSource, label: str) -> Iterator[Any]:
    """Yield the elements of the JSON list read from ``handle`` (named ``label`` in errors)."""
    numbers = _NumberCheck()
    decoder = json.JSONDecoder(parse_float=numbers.real, parse_constant=numbers.constant)
    buffer = _Buffer(handle, label)
    first = buffer.skip_whitespace()
    if first != "[":
        document = _whole_document(buffer, first)
        if isinstance(document, dict):
            raise one_object_error(label, document)
        name = _TYPE_NAMES.get(type(document), type(document).__name__)
        raise InputError(f"{label}: expected a JSON list of objects, got {name}")
    buffer.pos += 1
    after_element = False
    index = 0
    while True:
        char = buffer.skip_whitespace()
        if after_element:
            if char == "]":
                buffer.pos += 1
                break
            if char != ",":
                raise buffer.error("Expecting ',' delimiter", buffer.pos)
            buffer.pos += 1
            after_element = False
            if buffer.skip_whitespace() == "]":  # "[1,]" is malformed, as for json.load
                raise buffer.error("Expecting value", buffer.pos)
            continue
        if char == "]":  # only reachable right after "[": the empty list
            buffer.pos += 1
            break
        if char == "":
            raise buffer.error("Expecting value", buffer.pos)
        element, end = _decode_one(decoder, numbers, buffer, index)
        if numbers.found is not None:
            field = _field_holding_non_finite(element)
            where = f"field {field!r} holds" if field is not None else "holds"
            raise InputError(
                f"{label}: entry {index}: {where} {numbers.found}: only finite numbers"
                " are accepted (JSON has no NaN or Infinity)"
            )
        buffer.pos = end
        buffer.drop_consumed()
        after_element = True
        index += 1
        yield element
    if buffer.skip_whitespace():
        raise buffer.error("Extra data", buffer.pos)


def _decode_one(
    decoder: json.JSONDecoder, numbers: _NumberCheck, buffer: _Buffer, index: int
) -> tuple[Any, int]:
    """Decode element ``index`` at ``buffer.pos``, reading more text while it is cut off."""
    while True:
        # Only the last, whole decode counts: a float cut short can overflow
        # ("9" * 309 + ".0" of "...e-10").
        numbers.found = None
        try:
            element, end = decoder.raw_decode(buffer.text, buffer.pos)
        except json.JSONDecodeError as exc:
            # An element cut at the end of the buffer looks malformed: read on.
            if not buffer.more():
                raise buffer.error(exc.msg, exc.pos) from None
            continue
        except RecursionError:
            # The C decoder recurses once per level; past the interpreter's limit
            # it gives up cleanly, however much of the element is read.
            raise InputError(
                f"{buffer.label}: entry {index}: lists or objects nested too deeply"
            ) from None
        except ValueError:
            # Not a syntax error: int() refusing more digits than it converts.
            raise _unreadable_number(buffer.label, index) from None
        # A number cut by the end of the buffer ("12" of "123", "1.5" of "1.5e3")
        # decodes "fine" but short: it is only complete once a character that
        # cannot continue it follows (or the file ends).
        if not isinstance(element, (int, float)):
            return element, end
        text, follow = buffer.text, end
        while follow < len(text) and text[follow] in _NUMBER_CHARS:
            follow += 1
        if follow < len(text) or not buffer.more():
            return element, end


class LineDecoder:
    """Decodes JSON Lines lines one by one, refusing what :func:`iter_json_array` refuses:
    malformed JSON, non-finite numbers, too long integers, too deep nesting.

    One decoder for every line of a file: making one costs more than most lines.
    """

    def __init__(self) -> None:
        self._numbers = _NumberCheck()
        self._decoder = json.JSONDecoder(
            parse_float=self._numbers.real, parse_constant=self._numbers.constant
        )

    def decode(self, text: str, where: str) -> Any:
        """The one JSON value of ``text``; :class:`InputError` starting with ``where``."""
        self._numbers.found = None
        try:
            value = self._decoder.decode(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: malformed JSON at column {exc.colno}: {exc.msg}") from None
        except RecursionError:
            raise InputError(f"{where}: lists or objects nested too deeply") from None
        except ValueError:
            limit = getattr(sys, "get_int_max_str_digits", lambda: 0)()
            limit_text = f" (the limit is {limit})" if limit else ""
            raise InputError(f"{where}: an integer has too many digits{limit_text}") from None
        found = self._found()
        if found is not None:
            field = _field_holding_non_finite(value)
            held = f"field {field!r} holds" if field is not None else "holds"
            raise InputError(
                f"{where}: {held} {found}: only finite numbers"
                " are accepted (JSON has no NaN or Infinity)"
            )
        return value

    def _found(self) -> str | None:
        # A call: the decode above sets it through the hooks, which mypy cannot see.
        return self._numbers.found
