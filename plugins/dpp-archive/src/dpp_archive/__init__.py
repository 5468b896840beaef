"""Safe zip and tar extraction for download-pipeline-processor: the ``extract`` processor."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (
    ArchiveError,
    CorruptArchiveError,
    DestinationExistsError,
    LimitExceededError,
    MemberWriteError,
    NotAnArchiveError,
    SpecialFileError,
    TooLargeError,
    TooManyMembersError,
    UnsafeLinkError,
    UnsafeMemberError,
)
from .processor import ExtractProcessor
from .readers import ExtractionLimits, extract_archive

__all__ = [
    "ArchiveError",
    "CorruptArchiveError",
    "DestinationExistsError",
    "ExtractProcessor",
    "ExtractionLimits",
    "LimitExceededError",
    "MemberWriteError",
    "NotAnArchiveError",
    "SpecialFileError",
    "TooLargeError",
    "TooManyMembersError",
    "UnsafeLinkError",
    "UnsafeMemberError",
    "__version__",
    "extract_archive",
]
