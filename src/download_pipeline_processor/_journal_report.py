"""What ``download-pipeline-processor journal PATH`` shows: counts and failures by reason."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ._journal import STATUSES, SUCCEEDED, connect
from .summary import reason_from_message

#: Example ids shown for each failure reason.
EXAMPLES = 3

# Each failure group with its size and its first few entries, in one pass.
_FAILURES_SQL = """
    SELECT stage, reason, total, id FROM (
        SELECT stage, reason, id,
            count(*) OVER (PARTITION BY stage, reason) AS total,
            row_number() OVER (PARTITION BY stage, reason ORDER BY recorded_at, id) AS nth
        FROM entries WHERE status != ?
    )
    WHERE nth <= ?
    ORDER BY total DESC, stage, reason, nth
"""


def describe_journal(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The journal's counts by status, its runs and its failures grouped by reason.

    Raises :class:`~.errors.JournalError` for a missing file or one that is
    not a journal.  Reads only; a run may be writing the journal meanwhile.
    """
    journal = Path(path)
    connection = connect(journal, create=False)
    try:
        by_status = dict.fromkeys(STATUSES, 0)
        for status, count in connection.execute(
            "SELECT status, count(*) FROM entries GROUP BY status"
        ):
            by_status[status] = count
        # The journal keeps each message whole; failures are grouped as the run's
        # summary groups them (HTTP 404, sha256 mismatch...), one rule for both.
        failures: dict[tuple[str, str], dict[str, Any]] = {}
        counted: set[tuple[str, str]] = set()
        for stage, message, total, ident in connection.execute(
            _FAILURES_SQL, (SUCCEEDED, EXAMPLES)
        ):
            reason = reason_from_message(message or "")
            group = failures.setdefault(
                (stage, reason), {"stage": stage, "reason": reason, "count": 0, "examples": []}
            )
            if (stage, message) not in counted:
                counted.add((stage, message))
                group["count"] += total
            if len(group["examples"]) < EXAMPLES:
                group["examples"].append(ident)
        runs = connection.execute(
            "SELECT count(*), max(run) FROM runs",
        ).fetchone()
        last = None
        if runs[1] is not None:
            started, finished = connection.execute(
                "SELECT started_at, finished_at FROM runs WHERE run = ?", (runs[1],)
            ).fetchone()
            last = {"run": runs[1], "started_at": started, "finished_at": finished}
    finally:
        connection.close()
    return {
        "journal": str(journal),
        "entries": sum(by_status.values()),
        "by_status": by_status,
        "runs": runs[0],
        "last_run": last,
        "failures": sorted(
            failures.values(), key=lambda g: (-g["count"], g["stage"], g["reason"])
        ),
    }


def format_journal(description: dict[str, Any]) -> str:
    """The text ``journal PATH`` prints for :func:`describe_journal`'s answer."""
    lines = [f"{description['journal']}: {description['entries']} entries"]
    last = description["last_run"]
    if last is not None:
        ended = f"finished {last['finished_at']}" if last["finished_at"] else "did not finish"
        lines[0] += (
            f", {description['runs']} run(s); the last started {last['started_at']}, {ended}"
        )
    width = max(len(str(count)) for count in description["by_status"].values())
    for status, count in description["by_status"].items():
        lines.append(f"  {status:<12} {count:>{width}}")
    if description["failures"]:
        lines.append("failures by reason:")
        for group in description["failures"]:
            examples = ", ".join(group["examples"])
            more = ", ..." if group["count"] > len(group["examples"]) else ""
            lines.append(
                f"  {group['count']:>{width}}  {group['stage']}: {group['reason']}"
                f"  (e.g. {examples}{more})"
            )
    return "\n".join(lines)
