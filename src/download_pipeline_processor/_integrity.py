"""What an entry says its file must be: ``size``, ``sha256``, ``md5``, ``checksum``.

The field rules live here once: input checking refuses a bad value (exit 2,
before the first request) with :func:`check_fields`, and the download stage
reads the checks of a valid entry with :func:`expected_checks`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The input fields that carry a check.
CHECK_FIELDS = ("size", "sha256", "md5", "checksum")

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True)
class Digest:
    """One expected digest: the check's name (``sha256``, ``sha1``...), and its hex value."""

    algorithm: str
    hex: str


@dataclass(frozen=True)
class Checks:
    """Everything an entry says its file must be; empty when it says nothing."""

    size: int | None = None
    digests: tuple[Digest, ...] = ()

    def __bool__(self) -> bool:
        return self.size is not None or bool(self.digests)


def _digest_size(algorithm: str) -> int:
    """The digest length of ``algorithm`` in bytes; ValueError when hashlib cannot give one."""
    import hashlib  # here: only entries with a digest need it (start-up time)

    if algorithm not in hashlib.algorithms_available:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}")
    if algorithm.startswith("shake_"):
        raise ValueError(f"checksum algorithm {algorithm!r} has no fixed digest length")
    return hashlib.new(algorithm).digest_size


def _check_hex(value: Any, algorithm: str, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string of hex digits, got {type(value).__name__}")
    wanted = 2 * _digest_size(algorithm)
    if len(value) != wanted or not _HEX_DIGITS.issuperset(value):
        raise ValueError(f"must be {wanted} hex digits for {what}, got {value[:80]!r}")
    return value.lower()


def _size(value: Any, from_text: bool) -> int:
    if from_text and isinstance(value, str) and value.strip().isdigit() and value.isascii():
        return int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"must be a non-negative integer (bytes), got {value!r:.80}")
    return value


def _checksum(value: Any) -> Digest:
    if not isinstance(value, str) or ":" not in value:
        raise ValueError(f'must be "ALGORITHM:HEX", got {value!r:.80}')
    algorithm, _, hex_value = value.partition(":")
    algorithm = algorithm.strip().lower()
    return Digest(algorithm, _check_hex(hex_value.strip(), algorithm, algorithm))


def check_field(name: str, value: Any, from_text: bool = False) -> None:
    """Raise ValueError saying what is wrong with ``value`` for the check field ``name``.

    ``from_text``: the value came from a CSV cell, where ``size`` is text
    that must parse as an integer.
    """
    if name == "size":
        _size(value, from_text)
    elif name == "checksum":
        _checksum(value)
    else:
        _check_hex(value, name, name)


def check_fields(fields: Mapping[str, Any], from_text: bool = False) -> tuple[str, str] | None:
    """(the field, the problem) of the first bad check field of an entry, or None."""
    for name in CHECK_FIELDS:
        value = fields.get(name)
        if value is None:
            continue
        try:
            check_field(name, value, from_text)
        except ValueError as exc:
            return name, str(exc)
    return None


def expected_checks(fields: Mapping[str, Any]) -> Checks:
    """The checks of an entry whose fields passed :func:`check_fields` (bad ones are ignored)."""
    size: int | None = None
    digests: list[Digest] = []
    for name in CHECK_FIELDS:
        value = fields.get(name)
        if value is None:
            continue
        try:
            if name == "size":
                size = _size(value, from_text=True)
            elif name == "checksum":
                digests.append(_checksum(value))
            else:
                digests.append(Digest(name, _check_hex(value, name, name)))
        except ValueError:
            continue  # refused by input checking; a library caller that skipped it gets no check
    return Checks(size, tuple(digests))
