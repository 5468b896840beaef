"""Turning untrusted names into safe single path components."""

from __future__ import annotations

import re
import unicodedata

#: Longest component we produce, in UTF-8 bytes (file systems allow 255).
MAX_COMPONENT_BYTES = 200

#: Names that need no change: ASCII word characters, dashes and inner dots or spaces.
_ORDINARY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_. -]*[A-Za-z0-9_-]|[A-Za-z0-9_-]")
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{i}" for i in range(1, 10)}
    | {f"LPT{i}" for i in range(1, 10)}
)


def _truncate_utf8(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


def safe_filename(name: str, fallback: str = "file", max_bytes: int = MAX_COMPONENT_BYTES) -> str:
    """A single, harmless path component made from ``name``.

    Separators, control characters (NUL included) and characters that some
    file systems reject become ``_``; leading dots and spaces go, so the result
    is never ``.``, ``..`` or hidden; over-long names are cut on a character
    boundary keeping the extension.  An empty result becomes ``fallback``.
    """
    if (
        _ORDINARY.fullmatch(name)
        and len(name) <= max_bytes
        and name.partition(".")[0].upper() not in _WINDOWS_RESERVED
    ):
        # Already safe (the common case); this runs for every file.
        return name
    cleaned = unicodedata.normalize("NFC", str(name))
    cleaned = _UNSAFE.sub("_", cleaned).strip().lstrip(". ").rstrip(". ")
    if not cleaned:
        cleaned = fallback
    if cleaned.split(".", 1)[0].upper() in _WINDOWS_RESERVED:
        cleaned = "_" + cleaned
    if len(cleaned.encode("utf-8")) > max_bytes:
        stem, dot, extension = cleaned.rpartition(".")
        if dot and 0 < len(extension.encode("utf-8")) <= 16 and stem:
            suffix = "." + extension
            cleaned = _truncate_utf8(stem, max_bytes - len(suffix.encode("utf-8"))) + suffix
        else:
            cleaned = _truncate_utf8(cleaned, max_bytes)
    return cleaned
