"""A running pipeline's live numbers, for observers that show progress.

``pipeline_started`` observers get a :class:`RunProgress` and may read it
from any thread while the run goes on (a progress display polls it a few
times a second).  Reading it never changes what the run does, and costs the
run nothing between reads: no hook is called per chunk or per file for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .redact import shorten, shown_url
from .summary import RunSummary

if TYPE_CHECKING:
    from ._flow import EntryFlow


__all__ = ["InFlightFile", "RunProgress"]


@dataclass(frozen=True)
class InFlightFile:
    """One file the run is working on."""

    #: The id, shortened past 200 characters (:func:`~.redact.shorten`).
    id: str
    #: The URL without query string or userinfo, shortened past 200 characters.
    url: str
    #: ``download`` until the file is downloaded, then ``process``.
    stage: str
    #: Seconds since the run took the entry from the input.
    seconds: float


class RunProgress:
    """Read-only live counts of one run: done, failed, skipped, total, bytes, files in flight."""

    def __init__(self, summary: RunSummary, flow: EntryFlow) -> None:
        self._summary = summary
        self._flow = flow

    @property
    def total(self) -> int | None:
        """Entries of the input, or None when not known ahead (standard input)."""
        return self._flow.entries_total

    @property
    def read(self) -> int:
        """Entries read from the input so far, journal-skipped ones included."""
        return self._flow.entries_read

    @property
    def succeeded(self) -> int:
        """Files through every stage without an error."""
        return self._summary.succeeded

    @property
    def failed(self) -> int:
        """Files that failed at some stage."""
        return self._summary.failed

    @property
    def skipped(self) -> int:
        """Entries left out because the journal holds them as done."""
        return self._summary.skipped

    @property
    def done(self) -> int:
        """Entries the run is finished with: succeeded, failed or skipped."""
        summary = self._summary
        return summary.succeeded + summary.failed + summary.skipped

    @property
    def bytes_downloaded(self) -> int:
        """Bytes of the files downloaded so far, those still downloading included."""
        return self._flow.bytes_downloaded + self._flow.bytes_in_flight()

    @property
    def in_flight(self) -> int:
        """How many files are being downloaded, waiting or being processed."""
        return self._flow.in_flight

    def oldest_in_flight(self, limit: int = 3) -> list[InFlightFile]:
        """Up to ``limit`` files in flight, the longest-running first."""
        now = time.monotonic()
        return [
            InFlightFile(
                id=shorten(str(file_data.id)),
                url=shown_url(file_data.url),
                stage="download" if file_data.local_path is None else "process",
                seconds=now - taken_at,
            )
            for file_data, taken_at in self._flow.oldest_in_flight(limit)
        ]
