"""What a run did, in numbers, and why its failures failed.

:func:`failure_reason` is the one rule that turns a file's error into the
short reason failures are grouped by (``HTTP 404``, ``timeout``, ``sha256
mismatch``, a processor's exception type); the CLI's summary text and
``--summary-json`` both read the groups :class:`RunSummary` keeps.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import PipelineError, PipelineInterrupted, ProcessingTimeoutError
from .file_data import FileData, StageError
from .redact import shorten

__all__ = [
    "EXAMPLES",
    "FAILED",
    "INTERRUPTED",
    "SUCCEEDED",
    "FailureGroup",
    "RunSummary",
    "failure_reason",
    "human_bytes",
    "human_seconds",
    "outcome_status",
    "plural",
    "reason_from_message",
]


#: The words of how a file ended (:func:`outcome_status`), in every report.
SUCCEEDED = "succeeded"
FAILED = "failed"
INTERRUPTED = "interrupted"

#: Example ids kept for each failure reason.
EXAMPLES = 3

# "HTTP 404 Not Found" -> "HTTP 404": the status is the reason, the phrase varies by server.
_HTTP_STATUS = re.compile(r"HTTP \d{3}\b")
# A reason reads "what: detail" ("sha256 mismatch: expected ..., got ...",
# "ConnectionResetError: ...", "ValueError: bad header"): the detail (digests,
# byte counts, a library's words) would split one reason into many groups.
_DOWNLOAD_REASONS = {"timed out": "timeout"}


def failure_reason(error: StageError) -> str:
    """The short reason ``error`` is grouped by in a summary.

    Read from the error's text (:attr:`StageError.message`, the words every
    report shows) by :func:`reason_from_message`: one rule for the run's
    summary and for a journal that keeps only the text.
    """
    return reason_from_message(error.message)


def reason_from_message(message: str) -> str:
    """The group of a failed file's reason text (``HTTP 404 Not Found`` gives ``HTTP 404``).

    A download error gives its kind without the details (``HTTP 404``,
    ``timeout``, ``sha256 mismatch``, ``truncated body``), a stop
    ``interrupted``, any other exception its type's name (``ValueError``).
    Texts of journals written before the reasons were words
    (``PermanentDownloadError: HTTP 404``) give the same groups.
    """
    text = message.strip()
    name, _, rest = text.partition(": ")
    if name in _framework_error_names():
        # An older record: "FrameworkClass: text".
        if name == PipelineInterrupted.__name__:
            return INTERRUPTED
        if name == ProcessingTimeoutError.__name__:
            return "processing timeout"
        text = rest.strip()
        if not text:
            return FAILED
    status = _HTTP_STATUS.match(text)
    if status:
        return status.group(0)
    head = text.split(":", 1)[0].strip()
    if head and len(head) <= 60:
        return _DOWNLOAD_REASONS.get(head, head)
    return shorten(head, 60)


def _framework_error_names(kind: type[BaseException] = PipelineError) -> set[str]:
    """The names of :class:`PipelineError` and its subclasses, plugins' included."""
    names = {kind.__name__}
    for subclass in kind.__subclasses__():
        names |= _framework_error_names(subclass)
    return names


def outcome_status(file_data: FileData) -> str:
    """The one word for how a file ended, the same in every report.

    ``succeeded``, ``failed``, or ``interrupted`` (in flight when the run was
    stopped: not counted as failed).
    """
    error = file_data.error
    if error is None:
        return SUCCEEDED
    return INTERRUPTED if isinstance(error.error, PipelineInterrupted) else FAILED


@dataclass
class FailureGroup:
    """Failed files that share a stage and a :func:`failure_reason`."""

    reason: str
    stage: str
    count: int = 0
    #: The ids of the first :data:`EXAMPLES` files of the group.
    examples: list[str] = field(default_factory=list)


@dataclass
class RunSummary:
    """Counts, bytes and time of one run; ``pipeline_finished`` observers get it."""

    #: Entries of the input: ``succeeded + failed + interrupted + skipped + not_started``.
    total: int = 0
    succeeded: int = 0
    #: Files that failed; those stopped by the run's stop are :attr:`interrupted` instead.
    failed: int = 0
    #: Files in flight when the run was stopped: not finished, not counted as failed.
    interrupted: int = 0
    #: Failed files by the stage they failed in.
    failed_by_stage: Counter[str] = field(default_factory=Counter)
    #: Invalid entries passed over (``--skip-invalid``), counted in ``failed``
    #: and in ``failed_by_stage["input"]``; they never reach a post-processor.
    invalid: int = 0
    #: The first 20 of their reasons, each naming its entry (``files.csv: line 3: ...``).
    invalid_reasons: list[str] = field(default_factory=list)
    #: Entries left out because the journal holds them as done (``--journal``).
    skipped: int = 0
    #: Entries never started because the run was stopped first.
    not_started: int = 0
    bytes_downloaded: int = 0
    elapsed: float = 0.0
    #: The exit code of a stop request (130, 143), or None if the run was not stopped.
    stopped_with: int | None = None
    #: Failed files grouped by stage and reason, keyed by ``(stage, reason)``.
    failure_groups: dict[tuple[str, str], FailureGroup] = field(default_factory=dict)

    def record(self, file_data: FileData) -> None:
        """Count one file the post-processors are done with, successful or failed."""
        error = file_data.error
        if error is None:
            self.succeeded += 1
            return
        if isinstance(error.error, PipelineInterrupted):
            self.interrupted += 1
            return
        self.failed += 1
        self.failed_by_stage[error.stage] += 1
        reason = failure_reason(error)
        group = self.failure_groups.get((error.stage, reason))
        if group is None:
            group = self.failure_groups[(error.stage, reason)] = FailureGroup(reason, error.stage)
        group.count += 1
        if len(group.examples) < EXAMPLES:
            group.examples.append(shorten(str(file_data.id)))

    def finish(self) -> None:
        """Set :attr:`total` from the counts, once the run has ended."""
        self.total = (
            self.succeeded + self.failed + self.interrupted + self.skipped + self.not_started
        )

    @property
    def stopped(self) -> bool:
        """True when the run was stopped before it could finish its input."""
        return self.stopped_with is not None

    @property
    def finished(self) -> int:
        """Files that went through the pipeline: ``succeeded + failed``."""
        return self.succeeded + self.failed

    @property
    def files_per_second(self) -> float:
        """Finished files (succeeded or failed) per second of wall time."""
        return self.finished / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def failures(self) -> list[FailureGroup]:
        """The failure groups, largest first."""
        return sorted(self.failure_groups.values(), key=lambda g: (-g.count, g.stage, g.reason))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (what ``--summary-json`` writes)."""
        data = asdict(self)
        del data["failure_groups"]
        data["failed_by_stage"] = dict(self.failed_by_stage)
        data["stopped"] = self.stopped
        data["files_per_second"] = self.files_per_second
        data["failures"] = [asdict(group) for group in self.failures]
        return data

    def lines(self) -> list[str]:
        """The summary as text: a headline, then one line per failure reason."""
        head = f"{plural(self.total, 'file')}: {self.succeeded} succeeded, {self.failed} failed"
        if self.interrupted or self.stopped:
            head += f", {self.interrupted} interrupted"
        if self.skipped:
            head += f", {self.skipped} skipped (journal)"
        if self.not_started or self.stopped:
            head += f", {self.not_started} not started"
        rate = f"{self.files_per_second:.1f} files/s"
        if self.elapsed > 0 and self.bytes_downloaded:
            rate += f", {human_bytes(self.bytes_downloaded / self.elapsed)}/s"
        lines = [
            head,
            f"{human_bytes(self.bytes_downloaded)} downloaded in {human_seconds(self.elapsed)}"
            f" ({rate})",
        ]
        return lines + self._failure_lines()

    def _failure_lines(self) -> list[str]:
        failures = self.failures
        if not failures:
            return []
        lines = ["failures by reason:"]
        width = len(str(failures[0].count))
        for group in failures:
            more = ", ..." if group.count > len(group.examples) else ""
            lines.append(
                f"  {group.count:>{width}}  {group.reason} ({group.stage})"
                f"  e.g. {', '.join(group.examples)}{more}"
            )
        return lines

    def failure_lines(self) -> list[str]:
        """What ``--quiet`` shows: the failures, and what a stop left undone.

        Nothing when every file succeeded.
        """
        if not (self.failed or self.interrupted or self.not_started or self.stopped):
            return []
        head = f"{self.failed} of {plural(self.total, 'file')} failed"
        if self.interrupted or self.stopped:
            head += f", {self.interrupted} interrupted"
        if self.not_started or self.stopped:
            head += f", {self.not_started} not started"
        return [head, *self._failure_lines()]

    def __str__(self) -> str:
        return "\n".join(self.lines())


def plural(count: int, noun: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def human_bytes(count: float) -> str:
    """``512 B``, ``1.50 kB``, ``12.3 MB``, ``205 GB``: decimal units, as download tools use."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    value = float(count)
    unit = 0
    while value >= 999.5 and unit < len(units) - 1:
        value /= 1000
        unit += 1
    if unit == 0:
        return f"{value:.0f} B"
    digits = 2 if value < 10 else 1 if value < 100 else 0
    return f"{value:.{digits}f} {units[unit]}"


def human_seconds(seconds: float) -> str:
    """``0.42 s``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
