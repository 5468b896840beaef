"""Medians per tool, the Markdown table, the acceptance checks and RESULTS.md."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .runner import RunRecord

#: The row each group's ratios are taken against.
REFERENCE_TOOLS = ("dpp", "dpp processes")
TABLE_HEAD = (
    "| case | fs | tool | median wall s | min-max s | files/s | MB/s | CPU ms/file "
    "| peak RSS MiB | dpp ÷ tool | ok runs |\n"
    "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"
)


@dataclass(frozen=True)
class Row:
    """One tool on one case and file system: medians over its verified runs."""

    case: str
    fs: str
    tool: str
    ok_runs: int
    runs: int
    wall_s: float | None
    wall_min_s: float | None
    wall_max_s: float | None
    files_per_s: float | None
    mb_per_s: float | None
    cpu_ms_per_file: float | None
    rss_mib: float | None
    error: str | None
    skipped: bool


def aggregate(records: Sequence[RunRecord]) -> list[Row]:
    """One row per (case, fs, tool), in the order they first ran."""
    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    for record in records:
        groups.setdefault((record.case, record.fs, record.tool), []).append(record)
    rows = []
    for (case, fs, tool), runs in groups.items():
        good = [r for r in runs if r.ok]
        errors = [r.error for r in runs if r.error]
        skipped = all(r.skipped for r in runs)
        if not good:
            rows.append(
                Row(
                    case=case,
                    fs=fs,
                    tool=tool,
                    ok_runs=0,
                    runs=0 if skipped else len(runs),
                    wall_s=None,
                    wall_min_s=None,
                    wall_max_s=None,
                    files_per_s=None,
                    mb_per_s=None,
                    cpu_ms_per_file=None,
                    rss_mib=None,
                    error=errors[0] if errors else None,
                    skipped=skipped,
                )
            )
            continue
        wall = statistics.median(r.wall_s for r in good)
        files = good[0].files
        size = good[0].bytes
        cpu = statistics.median(r.user_s + r.sys_s for r in good)
        rows.append(
            Row(
                case=case,
                fs=fs,
                tool=tool,
                ok_runs=len(good),
                runs=len(runs),
                wall_s=wall,
                wall_min_s=min(r.wall_s for r in good),
                wall_max_s=max(r.wall_s for r in good),
                files_per_s=files / wall if wall > 0 else None,
                mb_per_s=size / wall / 1e6 if size and wall > 0 else None,
                cpu_ms_per_file=cpu * 1000 / files if files else None,
                rss_mib=max(r.max_rss_kib for r in good) / 1024,
                error=errors[0] if errors else None,
                skipped=False,
            )
        )
    return rows


def _reference(rows: Sequence[Row], case: str, fs: str) -> Row | None:
    for name in REFERENCE_TOOLS:
        for row in rows:
            if (row.case, row.fs, row.tool) == (case, fs, name):
                return row
    return None


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def ratio(rows: Sequence[Row], row: Row) -> float | None:
    """The group's reference throughput over this row's (> 1: this project is faster)."""
    reference = _reference(rows, row.case, row.fs)
    if reference is None or reference is row:
        return None
    if reference.files_per_s is None or row.files_per_s is None:
        return None
    return reference.files_per_s / row.files_per_s


def markdown_table(rows: Sequence[Row]) -> str:
    """The results table."""
    lines = [TABLE_HEAD]
    for row in rows:
        if row.ok_runs == 0:
            label = "n/a" if row.skipped else "FAILED"
            lines.append(
                f"| {row.case} | {row.fs} | {row.tool} | {label} | | | | | | | "
                f"{row.ok_runs}/{row.runs} |"
            )
            continue
        found = ratio(rows, row)
        lines.append(
            f"| {row.case} | {row.fs} | {row.tool} | {_num(row.wall_s, 2)} "
            f"| {_num(row.wall_min_s, 2)}-{_num(row.wall_max_s, 2)} "
            f"| {_num(row.files_per_s)} | {_num(row.mb_per_s, 0)} "
            f"| {_num(row.cpu_ms_per_file, 2)} | {_num(row.rss_mib, 0)} "
            f"| {'—' if found is None else f'{found:.2f}x'} | {row.ok_runs}/{row.runs} |"
        )
    return "\n".join(lines)


def failures(rows: Sequence[Row]) -> list[str]:
    """One line per row that had a failed or skipped run."""
    return [f"{r.case}/{r.fs}/{r.tool}: {r.error}" for r in rows if r.error]


# -- the acceptance targets -------------------------------------------------------


def _find(rows: Sequence[Row], case: str, fs: str, tool: str) -> Row | None:
    for row in rows:
        if (row.case, row.fs, row.tool) == (case, fs, tool) and row.ok_runs:
            return row
    return None


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


#: This project's rows in the corpus and latency cases: the default downloader,
#: the ``fast`` one, and ``fast`` with ``--pin-threads``.
OUR_VARIANTS = ("dpp", "dpp fast", "dpp fast, pinned")
#: ... and in the simulated case.
SIM_VARIANTS = ("dpp simulated", "dpp simulated, pinned")


def _throughput_check(
    rows: Sequence[Row], case: str, fs: str, ours_label: str, peer: str, *, factor: float = 1.0
) -> tuple[str, str, str] | None:
    ours = _find(rows, case, fs, ours_label)
    if ours is None:
        return None
    theirs = _find(rows, case, fs, peer)
    target = f"{case}/{fs}: {ours_label} ≥ {factor:g}x {peer}"
    if theirs is None or not ours.files_per_s or not theirs.files_per_s:
        return target, "not measured", _verdict(None)
    measured = ours.files_per_s / theirs.files_per_s
    return target, f"{measured:.2f}x", _verdict(measured >= factor)


def acceptance(rows: Sequence[Row]) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for each of the issue's targets, per variant of this project."""
    checks: list[tuple[str, str, str] | None] = []
    for ours in OUR_VARIANTS:
        checks += [
            _throughput_check(rows, "small", "tmpfs", ours, "requests+threads", factor=2.0),
            _throughput_check(rows, "small", "tmpfs", ours, "aria2c", factor=1.0),
            _throughput_check(rows, "small", "ext4", ours, "aria2c", factor=1.0),
            _throughput_check(rows, "small", "ext4", ours, "curl", factor=0.8),
        ]
        small = _find(rows, "small", "tmpfs", ours)
        if small is not None and small.cpu_ms_per_file is not None:
            checks.append(
                (
                    f"small/tmpfs: {ours} ≤ 1 ms CPU per file",
                    f"{small.cpu_ms_per_file:.2f} ms",
                    _verdict(small.cpu_ms_per_file <= 1.0),
                )
            )
        for fs in ("tmpfs", "ext4"):
            checks.append(_throughput_check(rows, "medium", fs, ours, "aria2c", factor=1.0))
            checks.append(_throughput_check(rows, "large", fs, ours, "aria2c", factor=1.0))
            checks.append(_throughput_check(rows, "large", fs, ours, "curl", factor=1.0))
            large = _find(rows, "large", fs, ours)
            if large is not None and large.rss_mib is not None:
                checks.append(
                    (
                        f"large/{fs}: {ours} peak RSS < 64 MiB",
                        f"{large.rss_mib:.0f} MiB",
                        _verdict(large.rss_mib < 64),
                    )
                )
        checks.append(_throughput_check(rows, "latency-64", "tmpfs", ours, "aria2c", factor=1.0))
    threads = _find(rows, "cpu", "tmpfs", "dpp threads")
    processes = _find(rows, "cpu", "tmpfs", "dpp processes")
    if threads is not None:
        target = "cpu: processes ≥ 1.7x threads"
        if processes is None or not processes.files_per_s or not threads.files_per_s:
            checks.append((target, "process mode not available", "n/a"))
        else:
            measured = processes.files_per_s / threads.files_per_s
            checks.append((target, f"{measured:.2f}x", _verdict(measured >= 1.7)))
    for label in SIM_VARIANTS:
        sim = _find(rows, "sim", "tmpfs", label)
        if sim is None or sim.files_per_s is None or sim.rss_mib is None:
            continue
        checks.append(
            (
                f"sim: {label} ≥ 10,000 files/s",
                f"{sim.files_per_s:,.0f} files/s",
                _verdict(sim.files_per_s >= 10_000),
            )
        )
        rss_mb = sim.rss_mib * 1024 * 1024 / 1e6
        checks.append(
            (f"sim: {label} peak RSS < 100 MB", f"{rss_mb:.0f} MB", _verdict(rss_mb < 100))
        )
    return [check for check in checks if check is not None]


# -- the machine and the file -------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(repo: Path, *args: str) -> str:
    """``git -C repo args``'s output; OSError when git cannot run."""
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.strip()


def _git_commit(repo: Path) -> str:
    try:
        commit = _git(repo, "rev-parse", "--short", "HEAD") or "unknown"
        dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
    except OSError:
        return "unknown"
    return commit + (" (with uncommitted changes)" if dirty else "")


def machine_info(repo: Path, versions: dict[str, str]) -> dict[str, str]:
    """nproc, CPU, memory, kernel, Python, tool versions, commit."""
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f"{pages / 2**30:.0f} GiB"
    except (OSError, ValueError):
        memory = "unknown"
    info = {
        "nproc": str(os.cpu_count()),
        "CPU": _cpu_model(),
        "memory": memory,
        "kernel": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_version()} ({platform.python_implementation()})",
        "commit": _git_commit(repo),
    }
    info.update(versions)
    return info


def render(
    rows: Sequence[Row],
    info: dict[str, str],
    *,
    command: str,
    started: datetime,
    load: tuple[tuple[float, ...], tuple[float, ...]],
    notes: Sequence[str],
) -> str:
    """The whole RESULTS.md."""
    finished = datetime.now(timezone.utc)
    machine = "\n".join(f"- {key}: {value}" for key, value in info.items())
    checks = acceptance(rows)
    check_lines = "\n".join(f"| {t} | {m} | {v} |" for t, m, v in checks) or "| — | — | — |"
    failed = failures(rows)
    failed_text = "\n".join(f"- {line}" for line in failed) if failed else "- none"
    note_text = "\n".join(f"- {note}" for note in notes)
    load_before = ", ".join(f"{x:.2f}" for x in load[0])
    load_after = ", ".join(f"{x:.2f}" for x in load[1])
    return f"""# Benchmark results

Produced by `{command}` from {started:%Y-%m-%d %H:%M} to {finished:%H:%M} UTC.
How to re-run and what each case means: [README.md](README.md).

**Noise:** this machine may be shared with other work while figures are
taken (load average before: {load_before}; after:
{load_after}), on 2 cores that also run nginx and the client under test.
Expect differences of 10-30 % between runs; medians of several
repetitions, tools run in alternation, take some of that out.

## Machine

{machine}

## Results

Medians over the verified runs; "min-max s" is the fastest and the slowest
of them. MB = 10^6 bytes; RSS in MiB (2^20 bytes), the largest peak over
the runs. "dpp ÷ tool" is this project's files/s
divided by that row's (above 1: this project is faster); in the `cpu` case
it is process mode over thread mode.

{markdown_table(rows)}

## The issue's targets

| target | measured | verdict |
|---|---|---|
{check_lines}

## Failed or skipped runs

{failed_text}

## Notes

{note_text}
"""
