"""The framework's exceptions.

Library code raises these; only ``cli.py`` turns them into messages and exit
codes.  Every message is one line that names the problem.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "CacheError",
    "DiskFullError",
    "DownloadError",
    "DuplicatePluginError",
    "ExecutorError",
    "InputError",
    "InvalidEntriesError",
    "JournalBusyError",
    "JournalError",
    "PermanentDownloadError",
    "PipelineError",
    "PipelineInterrupted",
    "PluginError",
    "PluginLoadError",
    "PluginOptionError",
    "ProcessingTimeoutError",
    "RemoteProcessingError",
    "TransientDownloadError",
    "UnknownPluginError",
    "UsageError",
    "error_text",
    "portable_error",
]


class PipelineError(Exception):
    """Base class of every error this package raises on purpose."""


class UsageError(PipelineError):
    """The run cannot start: bad input, options or plugin choice (exit 2)."""


class CacheError(UsageError):
    """The cache root cannot be used, or not safely: a link, someone else's, writable by others."""


class InputError(UsageError):
    """The file list is missing, malformed, or holds an invalid entry."""


class InvalidEntriesError(InputError):
    """Entries of the input failed checking: all counted, the first few named.

    With one bad entry the message is that entry's one line; with more, a
    line per named entry follows a first line with the count.
    """

    def __init__(self, label: str, reasons: list[str], count: int) -> None:
        self.reasons = list(reasons)
        self.count = count
        if count == 1 and self.reasons:
            message = self.reasons[0]
        else:
            lines = [f"{label}: {count} invalid entries (--skip-invalid runs the valid ones):"]
            lines += [f"  {reason}" for reason in self.reasons]
            if count > len(self.reasons):
                lines.append(f"  ... and {count - len(self.reasons)} more")
            message = "\n".join(lines)
        super().__init__(message)


class JournalError(UsageError):
    """The journal cannot be used: not a journal, unreadable, or of a newer schema."""


class JournalBusyError(JournalError):
    """Another run holds the journal."""


class PluginError(UsageError):
    """A plugin cannot be selected or built."""


class UnknownPluginError(PluginError):
    """No plugin of that kind is registered under that name."""

    def __init__(self, kind: str, name: str, available: Iterable[str]) -> None:
        names = sorted(available)
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        choices = ", ".join(names) or "none"
        super().__init__(f"unknown {kind} {name!r}{hint}; available: {choices}")
        self.kind = kind
        self.name = name


class DuplicatePluginError(PluginError):
    """Two distributions register one name, so the choice is ambiguous."""

    def __init__(self, kind: str, name: str, sources: Iterable[str]) -> None:
        both = " and ".join(sorted(set(sources)))
        super().__init__(
            f"{kind} {name!r} is registered by more than one package ({both}); "
            "uninstall one of them or select the class as module:ClassName"
        )
        self.kind = kind
        self.name = name


class PluginLoadError(PluginError):
    """The plugin that would provide a name failed to import."""


class PluginOptionError(PluginError):
    """An option given to a plugin is unknown, malformed or missing."""


class DownloadError(PipelineError):
    """A file could not be downloaded."""

    #: The HTTP status of the answer that failed, when an answer's status was the
    #: failure (set by ``http_rules.check_status``); None for any other failure.
    http_status: int | None = None


class TransientDownloadError(DownloadError):
    """A failure worth retrying: network trouble, 5xx, 408, 429, a short body."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DiskFullError(TransientDownloadError):
    """The cache's disk or quota is full (ENOSPC, EDQUOT): retried once the cache drains."""


class PermanentDownloadError(DownloadError):
    """A failure that another attempt will not fix: 404 and most 4xx, bad redirects."""


class ProcessingTimeoutError(PipelineError):
    """A file's processing ran past ``--processing-timeout`` and was abandoned."""


class ExecutorError(PipelineError):
    """The executor cannot go on (its workers or scheduler are gone); the run stops."""


class PipelineInterrupted(PipelineError):
    """The run was stopped before this file could finish."""


class RemoteProcessingError(PipelineError):
    """An exception that could not be pickled in another process, carried back as text."""


#: The word a framework error reads as when it is not an HTTP answer's.
_ERROR_WORDS: dict[type[PipelineError], str] = {
    PipelineInterrupted: "interrupted",
    ProcessingTimeoutError: "processing timeout",
}


def error_text(error: BaseException) -> str:
    """The one line every message and report gives as the reason of a failed file.

    Words, never a class of this framework: a download error reads as its
    message (``HTTP 404 File not found``, ``timed out: ...``), a stop as
    ``interrupted: ...``, a processing timeout as ``processing timeout: ...``;
    any other exception (a processor's) keeps its type, which is what a user
    needs (``ValueError: bad header``).  Only the first line of a message.
    """
    lines = str(error).strip().splitlines()
    detail = lines[0].strip() if lines else ""
    if not isinstance(error, PipelineError):
        name = type(error).__name__
        return f"{name}: {detail}" if detail else name
    for kind, word in _ERROR_WORDS.items():
        if isinstance(error, kind):
            if detail.startswith(word):
                return detail
            return f"{word}: {detail}" if detail else word
    status = getattr(error, "http_status", None)
    if status is not None and not detail.startswith(f"HTTP {status}"):
        return f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
    if detail:
        return detail
    return "download failed" if isinstance(error, DownloadError) else "failed"


def portable_error(error: BaseException) -> BaseException:
    """``error`` if it survives pickling (to cross to another process), else a stand-in
    carrying its type's name and text."""
    import pickle

    try:
        pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes, just made
    except Exception:  # noqa: BLE001 - any pickling failure means "send the text"
        return RemoteProcessingError(f"{type(error).__name__}: {error}")
    return error
