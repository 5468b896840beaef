"""Plugin options: declared by a plugin class, parsed from ``KEY=VALUE`` strings.

A processor or post-processor may declare the keyword arguments it accepts::

    class SaveProcessor(BaseProcessor):
        options = (
            Option("dest", type=Path, required=True, help="Folder to keep files in."),
            Option("overwrite", type=bool, default=False, help="Replace existing files."),
        )

The CLI then rejects an unknown key, a value of the wrong type and a missing
required option before any download starts, and ``plugins`` lists them.  A
class that declares nothing receives the raw strings as keyword arguments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

from .errors import PluginOptionError

__all__ = [
    "SIZE_SUFFIXES",
    "Option",
    "check_entry_headers",
    "check_header",
    "declared_options",
    "merge_headers",
    "parse_header",
    "parse_key_values",
    "parse_size",
    "resolve_options",
]


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _to_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected one of true/false, yes/no, on/off, 1/0")


_CONVERTERS: dict[Any, Callable[[str], Any]] = {bool: _to_bool, Path: Path}


@dataclass(frozen=True)
class Option:
    """One keyword argument a plugin class accepts."""

    name: str
    type: Callable[[str], Any] = str
    default: Any = None
    required: bool = False
    help: str = ""
    #: The value names a file the plugin writes (``-``: standard output).  A run
    #: refuses two post-processors whose output options name one file: their
    #: lines would interleave.
    output: bool = False
    #: A bool option saying the plugin appends to its output file instead of
    #: replacing it.  Under ``--journal`` it defaults to true, so a rerun never
    #: shrinks what earlier runs wrote; an explicit false is honoured, with a
    #: warning.
    appends_under_journal: bool = False
    #: The value may hold credentials (a key, a token): ``--dry-run`` shows it
    #: as REDACTED.
    secret: bool = False

    def convert(self, raw: str) -> Any:
        """Turn the command line's string into the declared type."""
        converter = _CONVERTERS.get(self.type, self.type)
        return converter(raw)

    @property
    def type_name(self) -> str:
        """The type as shown in listings and errors."""
        return getattr(self.type, "__name__", str(self.type))

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description for ``plugins --json``."""
        return {
            "name": self.name,
            "type": self.type_name,
            "required": self.required,
            "default": None if self.default is None else str(self.default),
            "help": self.help,
            "output": self.output,
            "secret": self.secret,
        }


#: Multipliers of the size suffixes: powers of 1024, as curl and wget read them.
SIZE_SUFFIXES = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE_PATTERN = re.compile(r"(\d+(?:\.\d+)?)([KMGT]?)", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from ``"512"``, ``"250K"``, ``"1.5G"``: a number and an optional K, M, G or T.

    Shared by every size option.  Raises :class:`ValueError` with a message
    that names what was given and what was expected.
    """
    match = _SIZE_PATTERN.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"expected a number of bytes with an optional K, M, G or T suffix"
            f" (powers of 1024), not {text!r}"
        )
    number, suffix = match.groups()
    size = Decimal(number) * SIZE_SUFFIXES[suffix.upper()]
    if size != size.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number of bytes")
    return int(size)


def check_header(name: str, value: str) -> None:
    """Raise ValueError for a request header name or value that would break or split a request.

    The message names the header, never its value (it may be a secret).
    """
    if not name or name.strip() != name or ":" in name or not name.isprintable():
        raise ValueError(f"invalid request header name {name!r}")
    if not value.isprintable():
        raise ValueError(f"invalid request header {name!r}: unprintable characters")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"invalid request header {name!r}: not Latin-1") from None


def check_entry_headers(headers: object) -> None:
    """Raise ValueError unless ``headers`` (an entry's ``headers`` field) is an object of
    string names to string values that :func:`check_header` accepts."""
    if not isinstance(headers, Mapping):
        raise ValueError("must be an object of header names to values")
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ValueError(f"header {name!r}: names and values must be strings")
        check_header(name, value)


def parse_header(text: str) -> tuple[str, str]:
    """``("Name", "value")`` from a ``--header`` argument ``"Name: value"``.

    Raises ValueError naming the header (never its value: it may be a secret).
    """
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not name:
        raise ValueError("expected 'Name: value'")
    check_header(name, value)
    return name, value


def merge_headers(*layers: Mapping[str, str]) -> dict[str, str]:
    """One header dict from ``layers``: a later layer's header replaces an earlier one of
    the same name, whatever the case of either (as in requests' header dict)."""
    by_name: dict[str, tuple[str, str]] = {}
    for layer in layers:
        for name, value in layer.items():
            by_name[name.lower()] = (name, value)
    return dict(by_name.values())


def parse_key_values(pairs: Iterable[str], flag: str) -> dict[str, str]:
    """Split repeated ``KEY=VALUE`` arguments; a malformed one is a usage error."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise PluginOptionError(f"{flag} {pair!r}: expected KEY=VALUE")
        parsed[key.replace("-", "_")] = value
    return parsed


def declared_options(plugin_class: type) -> Sequence[Option] | None:
    """The options a class declares, or None when it declares none."""
    declared = getattr(plugin_class, "options", None)
    if declared is None:
        return None
    return tuple(declared)


def resolve_options(
    plugin_class: type, raw: Mapping[str, Any], plugin_label: str
) -> dict[str, Any]:
    """Check ``raw`` against the class's declaration and convert the values.

    Values that are not strings (programmatic use) are passed through as given.
    """
    declared = declared_options(plugin_class)
    if declared is None:
        return dict(raw)
    by_name = {option.name: option for option in declared}
    unknown = sorted(set(raw) - set(by_name))
    if unknown:
        accepted = ", ".join(sorted(by_name)) or "none"
        raise PluginOptionError(
            f"{plugin_label}: unknown option {unknown[0]!r}; accepted options: {accepted}"
        )
    resolved: dict[str, Any] = {}
    for option in declared:
        if option.name not in raw:
            if option.required:
                raise PluginOptionError(
                    f"{plugin_label}: missing required option {option.name!r}"
                    f" ({option.help or option.type_name})"
                )
            continue
        value = raw[option.name]
        if isinstance(value, str):
            try:
                value = option.convert(value)
            except (TypeError, ValueError) as exc:
                raise PluginOptionError(
                    f"{plugin_label}: option {option.name}={value!r}: {exc}"
                ) from exc
        resolved[option.name] = value
    return resolved
