"""Turning untrusted names into safe single path components; checking output paths."""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from pathlib import Path

__all__ = ["MAX_COMPONENT_BYTES", "output_path_problem", "safe_filename"]

#: Longest component we produce, in UTF-8 bytes (file systems allow 255).
MAX_COMPONENT_BYTES = 200

#: Names that need no change: ASCII word characters, dashes and inner dots or spaces.
_ORDINARY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_. -]*[A-Za-z0-9_-]|[A-Za-z0-9_-]")
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
#: Unicode categories that become ``_`` like ASCII controls: every control (the
#: C1 range too: U+0085 is a line break), lone surrogates (no file system name
#: can hold them) and the line and paragraph separators.
_BREAKING_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
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


def _visible_characters(text: str) -> str:
    """``text`` without invisible format characters and with line-breaking ones as ``_``.

    Format characters (category Cf) are dropped: bidirectional controls make a
    name display other than it is (``evil``, U+202E, ``gpj.exe`` shows as
    ``evilexe.jpg``), and zero-width spaces, joiners and byte-order marks make
    names that look alike differ.  Dropping them, rather than writing ``_``,
    keeps names that use a joiner honestly (Persian words, emoji sequences)
    readable.
    """
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category == "Cf":
            continue
        kept.append("_" if category in _BREAKING_CATEGORIES else char)
    return "".join(kept)


def safe_filename(name: str, fallback: str = "file", max_bytes: int = MAX_COMPONENT_BYTES) -> str:
    """A single, harmless path component made from ``name``.

    Separators, control characters (NUL and C1 included), lone surrogates,
    line separators and characters that some file systems reject become
    ``_``; invisible format characters (Unicode category Cf: bidirectional
    controls such as U+202E, zero-width spaces and joiners, U+FEFF) are
    dropped; leading dots and spaces go, so the result is never ``.``, ``..``
    or hidden; over-long names are cut on a character boundary keeping the
    extension.  An empty result becomes ``fallback``.
    """
    if (
        _ORDINARY.fullmatch(name)
        and len(name) <= max_bytes
        and name.partition(".")[0].upper() not in _WINDOWS_RESERVED
    ):
        # Already safe (the common case); this runs for every file.
        return name
    cleaned = str(name)
    if not cleaned.isascii():
        cleaned = _visible_characters(unicodedata.normalize("NFC", cleaned))
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


def output_path_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a run could not write the file ``path``, or None when it could.

    Checked before a run does any work, so a bad path is a usage error and
    not a failure after hours of downloads.  Nothing is written: an existing
    file is opened for appending (not truncated) and closed; for a new file,
    an unnamed temporary file is made in its folder and dropped at once.
    A real attempt, not ``os.access``: root passes every permission check
    there, yet cannot write to ``/sys`` or a read-only mount.
    """
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        return f"{target} is a folder"
    if not folder.is_dir():
        return f"no such folder {folder}"
    try:
        if target.exists():
            os.close(os.open(target, os.O_WRONLY | os.O_APPEND))
        else:
            with tempfile.TemporaryFile(dir=folder):
                pass
    except OSError as exc:
        what = target if target.exists() else f"folder {folder}"
        return f"{what} cannot be written: {exc.strerror}"
    return None
