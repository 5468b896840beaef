"""Why an archive was not extracted: one exception class per reason, one-line messages.

Member names come from the archive, so they are shown with ``repr()``: a name
holding a newline or a control character still gives a one-line message.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ArchiveError",
    "CorruptArchiveError",
    "DestinationExistsError",
    "LimitExceededError",
    "MemberWriteError",
    "NotAnArchiveError",
    "SpecialFileError",
    "TooLargeError",
    "TooManyMembersError",
    "UnsafeLinkError",
    "UnsafeMemberError",
    "one_line",
]


def one_line(text: object) -> str:
    """``text`` with every run of whitespace, newlines included, made one space."""
    return " ".join(str(text).split())


class ArchiveError(Exception):
    """Base class: the archive was refused or could not be extracted."""


class NotAnArchiveError(ArchiveError):
    """The file is neither a zip nor a tar archive (plain, gzip, bzip2 or xz)."""


class CorruptArchiveError(ArchiveError):
    """The archive could not be read: truncated, bad checksum, encrypted, unsupported."""


class UnsafeMemberError(ArchiveError):
    """A member's path would land outside the destination or is not a usable name."""

    def __init__(self, member: str, reason: str) -> None:
        # Both go to args so that copying and pickling rebuild the exception.
        super().__init__(member, reason)
        self.member = member
        self.reason = reason

    def __str__(self) -> str:
        return f"refusing member {self.member!r}: {self.reason}"


class UnsafeLinkError(UnsafeMemberError):
    """A symbolic or hard link that points outside the destination, or is not allowed."""


class SpecialFileError(UnsafeMemberError):
    """A device, FIFO or other member that is not a file, directory or link."""


class LimitExceededError(ArchiveError):
    """A configured limit (``max_members``, ``max_bytes``) was reached."""


class TooManyMembersError(LimitExceededError):
    """The archive holds more members than ``max_members``."""


class TooLargeError(LimitExceededError):
    """Extracting would write more than ``max_bytes`` in total."""


class MemberWriteError(ArchiveError):
    """The file system refused to write a member (disk full, name too long, ...)."""


class DestinationExistsError(ArchiveError):
    """The destination folder exists and ``overwrite`` is off."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.path = path

    def __str__(self) -> str:
        return (
            f"{self.path.name!r} already exists in {str(self.path.parent)!r};"
            " set overwrite=true to replace it"
        )
