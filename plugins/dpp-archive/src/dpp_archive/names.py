"""Turning untrusted archive member names into relative path components.

The rules are the same on every platform, so an archive extracts (or is
refused) identically on Linux, macOS and Windows:

* ``\\`` is a separator, like ``/`` (Windows tools write zips that way, and
  ``..\\evil`` must not pass as one harmless name on POSIX and escape on Windows);
* absolute paths, drive letters (``C:``) and UNC paths are refused, not stripped;
* any ``..`` component is refused, even one that would stay inside;
* empty and ``.`` components are dropped (``./a//b`` is ``a/b``);
* a NUL character is refused.
"""

from __future__ import annotations

import os
import re

from .errors import UnsafeMemberError

__all__ = ["display", "is_absolute", "member_parts", "split_path"]


_DRIVE = re.compile(r"^[A-Za-z]:")
#: Characters Windows refuses in names (or reads as a stream separator, ``:``).
_WINDOWS_FORBIDDEN = frozenset('<>:"|?*')


def split_path(text: str) -> list[str]:
    """Split on ``/`` and ``\\`` alike, keeping empty, ``.`` and ``..`` parts."""
    return text.replace("\\", "/").split("/")


def is_absolute(text: str) -> bool:
    """True for ``/x``, ``\\x``, ``//host/share`` and drive paths like ``C:x``."""
    unified = text.replace("\\", "/")
    return unified.startswith("/") or bool(_DRIVE.match(unified))


def _windows_problem(part: str) -> str | None:
    if any(char in _WINDOWS_FORBIDDEN or ord(char) < 32 for char in part):
        return f"component {part!r} is not a valid Windows file name"
    if part.endswith((".", " ")):
        return f"component {part!r} ends with a dot or space, which Windows drops"
    return None


def member_parts(name: str) -> tuple[str, ...]:
    """The safe relative components of member ``name``; may be empty for ``./``.

    Raises :class:`UnsafeMemberError` for any name that is absolute or could
    climb out of the destination.
    """
    if "\x00" in name:
        raise UnsafeMemberError(name, "name contains a NUL character")
    if is_absolute(name):
        raise UnsafeMemberError(name, "absolute path or drive letter")
    parts = tuple(part for part in split_path(name) if part not in ("", "."))
    if ".." in parts:
        raise UnsafeMemberError(name, "'..' in the path could escape the destination")
    if os.name == "nt":
        for part in parts:
            problem = _windows_problem(part)
            if problem:
                raise UnsafeMemberError(name, problem)
    return parts


def display(parts: tuple[str, ...]) -> str:
    """The posix form of ``parts``, as returned to the post-processor."""
    return "/".join(parts)
