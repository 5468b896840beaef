"""Reading and validating the list of files before anything is downloaded."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Union
from urllib.parse import urlsplit

from .errors import InputError
from .file_data import FileData

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


def validate_entry(
    entry: Any, index: int, source: str, allowed_schemes: Sequence[str] = ("http", "https")
) -> FileData:
    """Check one input entry and build its :class:`FileData`.

    Raises :class:`InputError` naming ``source``, the 0-based ``index`` and the field.
    """
    where = f"{source}: entry {index}"
    if isinstance(entry, FileData):
        entry_dict: Mapping[str, Any] = {"url": entry.url}
    elif isinstance(entry, Mapping):
        entry_dict = entry
    else:
        raise InputError(f"{where}: expected an object, got {_type_name(entry)}")
    if "url" not in entry_dict:
        raise InputError(f"{where}: missing required field 'url'")
    url = entry_dict["url"]
    if not isinstance(url, str):
        raise InputError(f"{where}: field 'url' must be a string, got {_type_name(url)}")
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError as exc:
        raise InputError(f"{where}: field 'url' is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in allowed_schemes:
        shown = parts.scheme or "none"
        raise InputError(
            f"{where}: field 'url' has unsupported scheme {shown!r} "
            f"(allowed: {', '.join(allowed_schemes)})"
        )
    if not host:
        raise InputError(f"{where}: field 'url' has no host")
    for key in ("id", "name"):
        value = entry_dict.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InputError(
                f"{where}: field {key!r} must be a string or number, got {_type_name(value)}"
            )
    if isinstance(entry, FileData):
        return entry
    # Download the URL that was validated, not one with stray whitespace around it.
    return FileData.from_dict({**entry_dict, "url": url.strip()})


def read_file_list(path: str | os.PathLike[str]) -> list[Any]:
    """Parse the JSON file at ``path``; it must hold a list."""
    label = os.fspath(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{label}: is a directory, expected a JSON file") from None
    except OSError as exc:
        raise InputError(f"{label}: cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{label}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except UnicodeDecodeError:
        raise InputError(f"{label}: not UTF-8 text") from None
    if not isinstance(data, list):
        raise InputError(f"{label}: expected a JSON list of objects, got {_type_name(data)}")
    return data


def load_file_list(
    source: FileListSource, allowed_schemes: Sequence[str] = ("http", "https")
) -> Iterator[FileData]:
    """Validate every entry of ``source`` up front, then yield them as :class:`FileData`.

    ``source`` is a path to a JSON file, or a sequence of dicts or
    :class:`FileData`.  Any invalid entry raises :class:`InputError` before the
    first one is yielded, so no download starts on bad input.
    """
    if isinstance(source, (str, os.PathLike)):
        label = os.fspath(source)
        entries: Iterable[Any] = read_file_list(source)
    else:
        label = "<files>"
        entries = source
    validated = [
        validate_entry(entry, index, label, allowed_schemes) for index, entry in enumerate(entries)
    ]
    return iter(validated)
