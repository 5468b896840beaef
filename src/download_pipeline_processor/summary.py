"""What a run did, in numbers."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RunSummary:
    """Counts, bytes and time of one run; ``pipeline_finished`` observers get it."""

    #: Entries taken from the input and sent through the pipeline: ``succeeded +
    #: failed``.  The input held ``total + skipped + not_started`` entries.
    total: int = 0
    succeeded: int = 0
    failed: int = 0
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

    @property
    def interrupted(self) -> bool:
        """True when the run was stopped before it could finish its input."""
        return self.stopped_with is not None

    @property
    def files_per_second(self) -> float:
        """Finished files per second of wall time."""
        return self.total / self.elapsed if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        data = asdict(self)
        data["failed_by_stage"] = dict(self.failed_by_stage)
        data["interrupted"] = self.interrupted
        return data

    def __str__(self) -> str:
        parts = [f"{self.total} files: {self.succeeded} succeeded, {self.failed} failed"]
        if self.failed_by_stage:
            by_stage = ", ".join(f"{n} in {s}" for s, n in sorted(self.failed_by_stage.items()))
            parts[0] += f" ({by_stage})"
        if self.skipped:
            parts.append(f"{self.skipped} skipped (journal)")
        if self.interrupted:
            parts.append(f"interrupted, {self.not_started} not started")
        megabytes = self.bytes_downloaded / 1e6
        parts.append(f"{megabytes:.1f} MB downloaded in {self.elapsed:.2f}s")
        return "; ".join(parts)
