"""The results' "Targets" section: each target of the framework's cost issue, with a verdict.

Every figure comes from the run's rows (medians of the verified runs); the
wording of a row (files, sizes) too, so a ``--quick`` run says what it ran.
A target whose case did not run is left out; one whose row failed or was
skipped says "not measured" with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .cases import BATCHED_LABEL as BATCHED
from .cases import CURL_LABEL as OURS
from .cases import PER_FILE_LABEL as PER_FILE
from .report import Row

SIM = "dpp simulated"
ARIA2 = "aria2c"
CURL_CLI = "curl CLI"
FS = "tmpfs"
MIB = 1024 * 1024


@dataclass(frozen=True)
class TargetLine:
    """One line of the table: what, the bound, our figure, the reference's, the verdict."""

    row: str
    target: str
    measured: str
    reference: str
    verdict: str


def _find(rows: Sequence[Row], case: str, tool: str) -> Row | None:
    for row in rows:
        if (row.case, row.fs, row.tool) == (case, FS, tool):
            return row
    return None


def _ok(row: Row | None) -> Row | None:
    return row if row is not None and row.ok_runs else None


def _absent(row: Row | None, tool: str) -> str:
    """Why ``tool``'s figure is missing."""
    if row is None:
        return f"not measured: no `{tool}` row"
    if row.skipped and row.error:
        return f"not measured: {row.error}"
    return f"not measured: `{tool}` failed ({row.runs} runs)"


def _size(size: float) -> str:
    if size >= MIB:
        return f"{size / MIB:,.0f} MiB"
    return f"{size / 1024:,.0f} KiB"


def _files(row: Row) -> str:
    """``5,000 x 16 KiB`` from the row's own job."""
    if row.files and row.bytes:
        return f"{row.files:,} x {_size(row.bytes / row.files)}"
    return f"{row.files:,} files"


def _rate(row: Row, in_mb: bool) -> str:
    if in_mb and row.mb_per_s is not None:
        return f"{row.mb_per_s:,.0f} MB/s"
    return f"{row.files_per_s or 0:,.0f} files/s"


def _met_at_least(measured: float, bound: float) -> str:
    """Met, or how far below ``bound`` (a share of it)."""
    if measured >= bound:
        return "met"
    return f"missed by {(bound - measured) / bound:.0%}"


def _met_at_most(measured: float, bound: float, *, strict: bool = False) -> str:
    """Met, or how far above ``bound`` (a share of it)."""
    if measured < bound or (not strict and measured == bound):
        return "met"
    return f"missed by {(measured - bound) / bound:.0%}" if bound else "missed"


def _versus(
    rows: Sequence[Row],
    label: str,
    case: str,
    *,
    ours: str,
    peer: str,
    factor: float,
    in_mb: bool = False,
) -> TargetLine:
    """``ours``'s throughput at least ``factor`` times ``peer``'s in ``case``."""
    target = f"≥ {factor:g}x {peer}" + (" (MB/s)" if in_mb else " (files/s)")
    mine, theirs = _find(rows, case, ours), _find(rows, case, peer)
    if _ok(mine) is None:
        return TargetLine(label, target, _absent(mine, ours), "", "n/a")
    assert mine is not None
    if _ok(theirs) is None or not (theirs and theirs.files_per_s) or not mine.files_per_s:
        return TargetLine(label, target, _rate(mine, in_mb), _absent(theirs, peer), "n/a")
    ratio = mine.files_per_s / theirs.files_per_s
    return TargetLine(
        label,
        target,
        f"{_rate(mine, in_mb)} ({ratio:.2f}x)",
        f"{peer} {_rate(theirs, in_mb)}",
        _met_at_least(ratio, factor),
    )


def _cpu_versus(rows: Sequence[Row], label: str, case: str, ours: str, peer: str) -> TargetLine:
    """``ours``'s CPU per file at most ``peer``'s."""
    target = f"CPU per file ≤ {peer}'s"
    mine, theirs = _find(rows, case, ours), _find(rows, case, peer)
    if _ok(mine) is None or mine is None or mine.cpu_ms_per_file is None:
        return TargetLine(label, target, _absent(mine, ours), "", "n/a")
    shown = f"{mine.cpu_ms_per_file:.2f} ms"
    if _ok(theirs) is None or theirs is None or theirs.cpu_ms_per_file is None:
        return TargetLine(label, target, shown, _absent(theirs, peer), "n/a")
    return TargetLine(
        label,
        target,
        shown,
        f"{peer} {theirs.cpu_ms_per_file:.2f} ms",
        _met_at_most(mine.cpu_ms_per_file, theirs.cpu_ms_per_file),
    )


def _pipeline(rows: Sequence[Row]) -> list[TargetLine]:
    row = _find(rows, "sim", SIM)
    if row is None:
        return []
    label = f"pipeline alone, {row.files:,} simulated entries (`{SIM}`)"
    found = _ok(row)
    if found is None or found.files_per_s is None or found.cpu_ms_per_file is None:
        return [TargetLine(label, "≥ 10,000 files/s", _absent(row, SIM), "", "n/a")]
    cpu_us = found.cpu_ms_per_file * 1000
    rss_mb = (found.rss_mib or 0) * MIB / 1e6
    return [
        TargetLine(
            label,
            "≥ 10,000 files/s",
            f"{found.files_per_s:,.0f} files/s",
            "",
            _met_at_least(found.files_per_s, 10_000),
        ),
        TargetLine(
            label, "≤ 100 µs CPU per file", f"{cpu_us:,.0f} µs", "", _met_at_most(cpu_us, 100)
        ),
        TargetLine(
            label,
            "peak RSS < 100 MB",
            f"{rss_mb:,.0f} MB",
            "",
            _met_at_most(rss_mb, 100, strict=True),
        ),
    ]


def _label(rows: Sequence[Row], case: str, what: str) -> str | None:
    """``5,000 x 16 KiB, http, tmpfs``, from any row of ``case``; None if it did not run."""
    any_row = next((r for r in rows if (r.case, r.fs) == (case, FS)), None)
    if any_row is None:
        return None
    return f"{_files(any_row)}, {what}, {FS}"


def _small(rows: Sequence[Row]) -> list[TargetLine]:
    lines = []
    for case, what in (("small", "http"), ("https-small", "https (TLS 1.3)")):
        label = _label(rows, case, what)
        if label is None:
            continue
        lines += [
            _versus(rows, label, case, ours=OURS, peer=ARIA2, factor=1.0),
            _cpu_versus(rows, label, case, OURS, ARIA2),
        ]
    return lines


def _latency(rows: Sequence[Row]) -> list[TargetLine]:
    case = "latency-256"
    label = _label(rows, case, "server 50 ms away, 256 at once")
    if label is None:
        return []
    lines = [_versus(rows, label, case, ours=OURS, peer=CURL_CLI, factor=0.8)]
    lines.append(
        _below(
            rows,
            label,
            case,
            field="peak_threads",
            bound=20,
            target="peak threads < 20",
            shown="{}",
        )
    )
    return lines


def _medium(rows: Sequence[Row]) -> list[TargetLine]:
    lines = []
    for case, what in (("medium", "http"), ("https-medium", "https (TLS 1.3)")):
        label = _label(rows, case, what)
        if label is None:
            continue
        lines += [
            _versus(rows, label, case, ours=OURS, peer=ARIA2, factor=1.0, in_mb=True),
            _versus(rows, label, case, ours=OURS, peer=CURL_CLI, factor=0.8, in_mb=True),
        ]
    return lines


def _large(rows: Sequence[Row]) -> list[TargetLine]:
    case = "large"
    label = _label(rows, case, "http")
    if label is None:
        return []
    lines = [_versus(rows, label, case, ours=OURS, peer=CURL_CLI, factor=1.0, in_mb=True)]
    lines.append(
        _below(
            rows,
            label,
            case,
            field="rss_mib",
            bound=64,
            target="peak RSS < 64 MiB",
            shown="{:.0f} MiB",
        )
    )
    return lines


def _below(
    rows: Sequence[Row], label: str, case: str, *, field: str, bound: float, target: str, shown: str
) -> TargetLine:
    """Our row's ``field`` strictly under ``bound``, beside the curl command line's."""
    row = _find(rows, case, OURS)
    mine = _ok(row)
    value = None if mine is None else getattr(mine, field)
    if value is None:
        return TargetLine(label, target, _absent(row, OURS), "", "n/a")
    curl = _ok(_find(rows, case, CURL_CLI))
    theirs = None if curl is None else getattr(curl, field)
    reference = "" if theirs is None else f"{CURL_CLI} {shown.format(theirs)}"
    return TargetLine(
        label, target, shown.format(value), reference, _met_at_most(value, bound, strict=True)
    )


def _batch(rows: Sequence[Row]) -> list[TargetLine]:
    case = "batch"
    any_row = next((r for r in rows if r.case == case), None)
    if any_row is None:
        return []
    label = f"batch processing, {any_row.files:,} simulated files, a call of 2 ms + 0.1 ms per file"
    return [_versus(rows, label, case, ours=BATCHED, peer=PER_FILE, factor=8.0)]


def issue_targets(rows: Sequence[Row]) -> list[TargetLine]:
    """The targets of the cases that ran, in the issue's order."""
    return [
        *_pipeline(rows),
        *_small(rows),
        *_latency(rows),
        *_medium(rows),
        *_large(rows),
        *_batch(rows),
    ]


SECTION = """\
## Targets

The targets of the framework's cost issue (one request per attempt, batches
end to end), from this run's medians: this project with the `curl`
downloader (`{ours}`, `--download-workers 16`) unless the row names
another, against the reference tool of the same case on {fs}. "missed by
X" is how far the figure falls short of the target, as a share of the
target. Explain each miss with its profile: `python -m benchmarks --profile
JOB` (see README.md).

| row | target | measured | reference | verdict |
|---|---|---|---|---|
{lines}

"""


def section(rows: Sequence[Row]) -> str:
    """The section; empty when none of its cases ran."""
    lines = issue_targets(rows)
    if not lines:
        return ""
    body = "\n".join(
        f"| {t.row} | {t.target} | {t.measured} | {t.reference or '—'} | {t.verdict} |"
        for t in lines
    )
    return SECTION.format(ours=OURS, fs=FS, lines=body)
