"""Medians per tool, the Markdown table, the acceptance checks and RESULTS.md."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .runner import RunRecord

#: The peers every row's files/s is divided by: (column, the rows that stand for
#: it in a case, first found wins).  In the ``cpu`` case "÷ dpp" is process
#: mode over thread mode.
PEERS = (
    ("÷ dpp", ("dpp", "dpp threads")),
    ("÷ dpp fast", ("dpp fast",)),
    ("÷ aria2c", ("aria2c",)),
    ("÷ curl CLI", ("curl CLI",)),
)
TABLE_HEAD = (
    "| case | fs | tool | median wall s | min-max s | files/s | MB/s | CPU ms/file "
    "| peak RSS MiB | peak threads | "
    + " | ".join(column for column, _ in PEERS)
    + " | ok runs |\n"
    "|---|---|---|--:|--:|--:|--:|--:|--:|--:|" + "--:|" * len(PEERS) + "--:|"
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
    #: The most threads the tool's process had in any verified run.
    peak_threads: int | None = None
    #: Requests per protocol over the verified runs (jobs with a protocol log).
    protocols: dict[str, int] | None = None
    #: Jobs that sample the process tree: the largest peak summed RSS and PSS (MiB) over the
    #: verified runs, and the most processes.
    tree_rss_mib: float | None = None
    tree_pss_mib: float | None = None
    tree_processes: int | None = None
    #: The job's files and bytes (the same for every run of the job).
    files: int = 0
    bytes: int = 0


def unmeasured_row(
    case: str,
    fs: str,
    tool: str,
    *,
    runs: int,
    error: str | None,
    skipped: bool,
    files: int = 0,
    size: int = 0,
) -> Row:
    """The row of a tool with no verified run: every figure absent, the reason kept."""
    return Row(
        case=case,
        fs=fs,
        tool=tool,
        ok_runs=0,
        runs=runs,
        wall_s=None,
        wall_min_s=None,
        wall_max_s=None,
        files_per_s=None,
        mb_per_s=None,
        cpu_ms_per_file=None,
        rss_mib=None,
        error=error,
        skipped=skipped,
        files=files,
        bytes=size,
    )


def _largest(values: Sequence[int | None]) -> int | None:
    present = [value for value in values if value is not None]
    return max(present) if present else None


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
                unmeasured_row(
                    case,
                    fs,
                    tool,
                    runs=0 if skipped else len(runs),
                    error=errors[0] if errors else None,
                    skipped=skipped,
                    files=runs[0].files,
                    size=runs[0].bytes,
                )
            )
            continue
        wall = statistics.median(r.wall_s for r in good)
        files = good[0].files
        size = good[0].bytes
        cpu = statistics.median(r.user_s + r.sys_s for r in good)
        threads = [r.peak_threads for r in good if r.peak_threads is not None]
        protocols: Counter[str] | None = None
        for r in good:
            if r.protocols is not None:
                protocols = (protocols or Counter()) + Counter(r.protocols)
        tree_rss = _largest([r.tree_rss_kib for r in good])
        tree_pss = _largest([r.tree_pss_kib for r in good])
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
                peak_threads=max(threads) if threads else None,
                protocols=None if protocols is None else dict(protocols),
                tree_rss_mib=None if tree_rss is None else tree_rss / 1024,
                tree_pss_mib=None if tree_pss is None else tree_pss / 1024,
                tree_processes=_largest([r.tree_processes for r in good]),
                files=files,
                bytes=size,
            )
        )
    return rows


def _peer(rows: Sequence[Row], case: str, fs: str, names: Sequence[str]) -> Row | None:
    for name in names:
        for row in rows:
            if (row.case, row.fs, row.tool) == (case, fs, name):
                return row
    return None


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def ratio(rows: Sequence[Row], row: Row, peer_names: Sequence[str]) -> float | None:
    """This row's files/s over the peer's in the same case and fs (> 1: this row is faster)."""
    peer = _peer(rows, row.case, row.fs, peer_names)
    if peer is None or peer is row:
        return None
    if not peer.files_per_s or row.files_per_s is None:
        return None
    return row.files_per_s / peer.files_per_s


def markdown_table(rows: Sequence[Row]) -> str:
    """The results table."""
    lines = [TABLE_HEAD]
    for row in rows:
        if row.ok_runs == 0:
            label = "n/a" if row.skipped else "FAILED"
            blanks = " | " * (7 + len(PEERS))
            lines.append(
                f"| {row.case} | {row.fs} | {row.tool} | {label}{blanks}{row.ok_runs}/{row.runs} |"
            )
            continue
        ratios = []
        for _, names in PEERS:
            found = ratio(rows, row, names)
            ratios.append("—" if found is None else f"{found:.2f}x")
        threads = "—" if row.peak_threads is None else str(row.peak_threads)
        lines.append(
            f"| {row.case} | {row.fs} | {row.tool} | {_num(row.wall_s, 2)} "
            f"| {_num(row.wall_min_s, 2)}-{_num(row.wall_max_s, 2)} "
            f"| {_num(row.files_per_s)} | {_num(row.mb_per_s, 0)} "
            f"| {_num(row.cpu_ms_per_file, 2)} | {_num(row.rss_mib, 0)} | {threads} "
            f"| {' | '.join(ratios)} | {row.ok_runs}/{row.runs} |"
        )
    return "\n".join(lines)


def protocol_lines(rows: Sequence[Row]) -> list[str]:
    """Per row with a protocol log: the requests nginx served per protocol, over its runs."""
    lines = []
    for row in rows:
        if row.protocols is None:
            continue
        total = sum(row.protocols.values())
        parts = [
            f"{name} {count:,} ({count / total:.0%})"
            for name, count in sorted(row.protocols.items())
        ]
        lines.append(f"{row.case}/{row.fs}/{row.tool}: {', '.join(parts) or 'nothing logged'}")
    return lines


def failures(rows: Sequence[Row]) -> list[str]:
    """One line per row that had a failed or skipped run."""
    return [f"{r.case}/{r.fs}/{r.tool}: {r.error}" for r in rows if r.error]


# -- the acceptance targets ---------------------------------------------------------------

#: (target, measured, verdict)
Check = tuple[str, str, str]

CURL = "dpp curl"
FAST = "dpp fast"
FAST_PINNED = "dpp fast, pinned"
CURL_CLI = "curl CLI"
#: ``dpp curl`` within this factor of ``dpp fast`` on every shared row keeps ``curl`` alone.
FATE_FACTOR = 0.9


def _find(rows: Sequence[Row], case: str, fs: str, tool: str) -> Row | None:
    for row in rows:
        if (row.case, row.fs, row.tool) == (case, fs, tool) and row.ok_runs:
            return row
    return None


def _ran(rows: Sequence[Row], case: str, fs: str) -> bool:
    return any((row.case, row.fs) == (case, fs) for row in rows)


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "**MISS**")


def _fs_of(rows: Sequence[Row], case: str) -> list[str]:
    """The file systems ``case`` ran on, in order."""
    return list(dict.fromkeys(row.fs for row in rows if row.case == case))


def _times(measured: float, factor: float) -> str:
    """``measured`` as ``0.93x``; with a third digit where two would round up to ``factor``."""
    if measured < factor <= round(measured, 2):
        return f"{measured:.3f}x"
    return f"{measured:.2f}x"


def _rates(mine: Row, theirs: Row) -> str:
    """Both rows' throughput, in MB/s where files/s is too coarse to tell them apart."""
    assert mine.files_per_s is not None
    assert theirs.files_per_s is not None
    if min(mine.files_per_s, theirs.files_per_s) < 100 and mine.mb_per_s and theirs.mb_per_s:
        return f"{mine.mb_per_s:,.0f} vs {theirs.mb_per_s:,.0f} MB/s"
    return f"{mine.files_per_s:,.0f} vs {theirs.files_per_s:,.0f} files/s"


def _ratio_check(
    rows: Sequence[Row],
    case: str,
    fs: str,
    ours: str,
    peer: str,
    *,
    factor: float = 1.0,
    skip_absent: bool = False,
) -> Check | None:
    """``ours`` throughput ≥ ``factor`` times ``peer``'s (same files: the ratio of wall times).

    None when the case did not run on ``fs``, or (``skip_absent``) when
    ``ours`` was not among its tools.
    """
    if not _ran(rows, case, fs):
        return None
    if skip_absent and not any((r.case, r.fs, r.tool) == (case, fs, ours) for r in rows):
        return None
    target = f"{case}/{fs}: {ours} ≥ {factor:g}x {peer}"
    mine, theirs = _find(rows, case, fs, ours), _find(rows, case, fs, peer)
    if mine is None or theirs is None or not mine.files_per_s or not theirs.files_per_s:
        return target, "not measured", _verdict(None)
    measured = mine.files_per_s / theirs.files_per_s
    figures = f"{_times(measured, factor)} ({_rates(mine, theirs)})"
    return target, figures, _verdict(measured >= factor)


def _cpu_check(rows: Sequence[Row], case: str, fs: str, ours: str, peer: str) -> Check | None:
    """``ours`` CPU ms per file ≤ ``peer``'s."""
    if not _ran(rows, case, fs):
        return None
    target = f"{case}/{fs}: {ours} CPU per file ≤ {peer}'s"
    mine, theirs = _find(rows, case, fs, ours), _find(rows, case, fs, peer)
    if mine is None or theirs is None or mine.cpu_ms_per_file is None:
        return target, "not measured", _verdict(None)
    if theirs.cpu_ms_per_file is None:
        return target, "not measured", _verdict(None)
    figures = f"{mine.cpu_ms_per_file:.2f} vs {theirs.cpu_ms_per_file:.2f} ms"
    return target, figures, _verdict(mine.cpu_ms_per_file <= theirs.cpu_ms_per_file)


def _limit_check(
    rows: Sequence[Row], case: str, fs: str, ours: str, *, what: str, limit: float
) -> Check | None:
    """``ours``'s peak RSS (``what="rss"``, MiB) or peak thread count below ``limit``."""
    if not _ran(rows, case, fs):
        return None
    mine = _find(rows, case, fs, ours)
    if what == "rss":
        target = f"{case}/{fs}: {ours} peak RSS < {limit:g} MiB"
        value = None if mine is None else mine.rss_mib
        shown = "" if value is None else f"{value:.0f} MiB"
    else:
        target = f"{case}/{fs}: {ours} peak threads < {limit:g}"
        value = None if mine is None or mine.peak_threads is None else float(mine.peak_threads)
        shown = "" if value is None else f"{value:.0f} threads"
    if value is None:
        return target, "not measured", _verdict(None)
    return target, shown, _verdict(value < limit)


def fate_check(rows: Sequence[Row]) -> Check | None:
    """``dpp curl`` within 10 % of ``dpp fast`` or better on every row where ``fast`` ran."""
    target = (
        f"every row: {CURL} ≥ {FATE_FACTOR:g}x {FAST} (PASS: delete `fast`; "
        "MISS: move it to plugins/dpp-fast)"
    )
    pairs = [(row, _find(rows, row.case, row.fs, CURL)) for row in rows if row.tool == FAST]
    pairs = [(fast, curl) for fast, curl in pairs if fast.ok_runs]
    if not pairs:
        return None
    worst: tuple[float, str] | None = None
    below = []
    for fast, curl in pairs:
        where = f"{fast.case}/{fast.fs}"
        if curl is None or not curl.files_per_s or not fast.files_per_s:
            below.append(f"{where} (no {CURL} figure)")
            continue
        measured = curl.files_per_s / fast.files_per_s
        if worst is None or measured < worst[0]:
            worst = (measured, where)
        if measured < FATE_FACTOR:
            below.append(f"{where} {_times(measured, FATE_FACTOR)}")
    if worst is None:
        return target, "not measured", _verdict(None)
    summary = f"lowest {worst[0]:.2f}x ({worst[1]}); {len(pairs) - len(below)} of {len(pairs)} rows"
    if below:
        summary += "; below: " + ", ".join(below)
    return target, summary, _verdict(not below)


def curl_targets(rows: Sequence[Row]) -> list[Check]:
    """The targets for the ``curl`` downloader, as the issue words them."""
    checks: list[Check | None] = [
        _ratio_check(rows, "https-small", "tmpfs", CURL, "aria2c"),
        _ratio_check(rows, "https-small", "tmpfs", CURL, "dpp", factor=2.0),
        _cpu_check(rows, "https-small", "tmpfs", CURL, "aria2c"),
        _ratio_check(rows, "small", "tmpfs", CURL, FAST),
        _ratio_check(rows, "small", "tmpfs", CURL, FAST_PINNED, factor=0.9),
    ]
    for case in ("medium", "https-medium"):
        for fs in _fs_of(rows, case):
            checks.append(_ratio_check(rows, case, fs, CURL, "aria2c"))
            checks.append(_ratio_check(rows, case, fs, CURL, CURL_CLI, factor=0.8))
    for fs in _fs_of(rows, "large"):
        checks.append(_ratio_check(rows, "large", fs, CURL, CURL_CLI))
        checks.append(_limit_check(rows, "large", fs, CURL, what="rss", limit=64))
    checks.append(_ratio_check(rows, "latency-256", "tmpfs", CURL, CURL_CLI, factor=0.8))
    checks.append(_limit_check(rows, "latency-256", "tmpfs", CURL, what="threads", limit=20))
    checks.append(fate_check(rows))
    return [check for check in checks if check is not None]


#: This project's rows in the corpus and latency cases: the default downloader,
#: the ``fast`` one, ``fast`` with ``--pin-threads``, and the ``curl`` plugin.
OUR_VARIANTS = ("dpp", FAST, FAST_PINNED, CURL)
#: ... and in the simulated case.
SIM_VARIANTS = ("dpp simulated", "dpp simulated, pinned")


def earlier_targets(rows: Sequence[Row]) -> list[Check]:
    """The earlier issues' targets, for each of this project's rows in each case it ran in."""
    checks: list[Check | None] = []
    present = {row.tool for row in rows}

    def ratio(case: str, fs: str, ours: str, peer: str, factor: float = 1.0) -> Check | None:
        return _ratio_check(rows, case, fs, ours, peer, factor=factor, skip_absent=True)

    for ours in (variant for variant in OUR_VARIANTS if variant in present):
        checks += [
            ratio("small", "tmpfs", ours, "requests+threads", factor=2.0),
            ratio("small", "tmpfs", ours, "aria2c"),
            ratio("small", "ext4", ours, "aria2c"),
            ratio("small", "ext4", ours, CURL_CLI, factor=0.8),
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
            checks.append(ratio("medium", fs, ours, "aria2c"))
            checks.append(ratio("large", fs, ours, "aria2c"))
            checks.append(ratio("large", fs, ours, CURL_CLI))
            if _find(rows, "large", fs, ours) is not None:
                checks.append(_limit_check(rows, "large", fs, ours, what="rss", limit=64))
        checks.append(ratio("latency-64", "tmpfs", ours, "aria2c"))
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


# -- the images case ----------------------------------------------------------------------

IMAGES_PREFIX = "images"
I2D = "img2dataset"
DPP_IMAGES = "dpp"
DPP_DASK = "dpp dask"
#: Local mode with the dask row's downloader, when that is not the main row's.
DPP_DASK_PEER = "dpp, requests"
#: (a) this project's images/s over img2dataset's at least, CPU per image at most.
IMAGES_SPEED_FACTOR = 2.0
IMAGES_CPU_FACTOR = 0.5
#: (b) the dask executor's images/s over the local one's at least.
IMAGES_DASK_FACTOR = 0.9
#: (c) peak memory over the list five times as long, at most this many times the short one's.
IMAGES_RSS_FACTOR = 1.1
IMAGES_HEAD = (
    "| case | tool | flags | median wall s | min-max s | images/s | CPU ms/image "
    "| peak RSS MiB | peak PSS MiB | processes | ÷ img2dataset | ok runs |\n"
    "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
)


def is_images_case(case: str) -> bool:
    """Whether ``case`` is one of the ``images`` case's jobs (reported in their own section)."""
    return case.startswith(IMAGES_PREFIX)


def _best_peer(rows: Sequence[Row], case: str) -> Row | None:
    """The fastest verified img2dataset row of ``case``."""
    peers = [r for r in rows if r.case == case and r.tool.startswith(I2D) and r.files_per_s]
    return max(peers, key=lambda r: r.files_per_s or 0.0) if peers else None


def images_table(rows: Sequence[Row], flags: dict[str, str]) -> str:
    """The ``images`` rows: per image, the whole process tree's memory, ÷ best img2dataset."""
    lines = [IMAGES_HEAD]
    for row in rows:
        flag_text = f"`{flags[row.tool]}`" if row.tool in flags else ""
        if row.ok_runs == 0:
            label = "n/a" if row.skipped else "FAILED"
            lines.append(
                f"| {row.case} | {row.tool} | {flag_text} | {label} |  |  |  |  |  |  |  "
                f"| {row.ok_runs}/{row.runs} |"
            )
            continue
        peer = _best_peer(rows, row.case)
        versus = "—"
        if peer is not None and peer is not row and peer.files_per_s and row.files_per_s:
            versus = f"{row.files_per_s / peer.files_per_s:.2f}x"
        processes = "—" if row.tree_processes is None else str(row.tree_processes)
        lines.append(
            f"| {row.case} | {row.tool} | {flag_text} | {_num(row.wall_s, 2)} "
            f"| {_num(row.wall_min_s, 2)}-{_num(row.wall_max_s, 2)} "
            f"| {_num(row.files_per_s)} | {_num(row.cpu_ms_per_file, 2)} "
            f"| {_num(row.tree_rss_mib)} | {_num(row.tree_pss_mib)} | {processes} "
            f"| {versus} | {row.ok_runs}/{row.runs} |"
        )
    return "\n".join(lines)


def images_targets(rows: Sequence[Row]) -> list[Check]:
    """(a) this project against img2dataset's best row, (b) dask against local, (c) flat memory."""
    checks: list[Check] = []
    cases = sorted(
        {r.case for r in rows if is_images_case(r.case) and r.case.split("-")[-1].isdigit()},
        key=lambda case: int(case.split("-")[-1]),
    )
    if not cases:
        return checks
    short = cases[0]
    mine = _find(rows, short, "tmpfs", DPP_IMAGES)
    peer = _best_peer(rows, short)
    speed = f"{short}: {DPP_IMAGES} ≥ {IMAGES_SPEED_FACTOR:g}x img2dataset's images/s"
    cpu = f"{short}: {DPP_IMAGES} CPU per image < {IMAGES_CPU_FACTOR:g}x img2dataset's"
    if mine is None or peer is None or not mine.files_per_s or not peer.files_per_s:
        checks += [(speed, "not measured", _verdict(None)), (cpu, "not measured", _verdict(None))]
    else:
        measured = mine.files_per_s / peer.files_per_s
        checks.append(
            (
                speed,
                f"{_times(measured, IMAGES_SPEED_FACTOR)} ({mine.files_per_s:,.1f} vs "
                f"{peer.files_per_s:,.1f} images/s; {peer.tool})",
                _verdict(measured >= IMAGES_SPEED_FACTOR),
            )
        )
        if mine.cpu_ms_per_file is None or not peer.cpu_ms_per_file:
            checks.append((cpu, "not measured", _verdict(None)))
        else:
            share = mine.cpu_ms_per_file / peer.cpu_ms_per_file
            checks.append(
                (
                    cpu,
                    f"{share:.2f}x ({mine.cpu_ms_per_file:.2f} vs "
                    f"{peer.cpu_ms_per_file:.2f} ms; {peer.tool})",
                    _verdict(share < IMAGES_CPU_FACTOR),
                )
            )
    local = DPP_DASK_PEER if _find(rows, short, "tmpfs", DPP_DASK_PEER) else DPP_IMAGES
    dask = _ratio_check(rows, short, "tmpfs", DPP_DASK, local, factor=IMAGES_DASK_FACTOR)
    if dask is not None:
        checks.append(dask)
    for long in cases[1:]:
        target = f"{long} vs {short}: {DPP_IMAGES} peak RSS (process tree) ≤ {IMAGES_RSS_FACTOR:g}x"
        big = _find(rows, long, "tmpfs", DPP_IMAGES)
        if mine is None or big is None or not mine.tree_rss_mib or big.tree_rss_mib is None:
            checks.append((target, "not measured", _verdict(None)))
            continue
        grown = big.tree_rss_mib / mine.tree_rss_mib
        checks.append(
            (
                target,
                f"{grown:.2f}x ({big.tree_rss_mib:.0f} vs {mine.tree_rss_mib:.0f} MiB)",
                _verdict(grown <= IMAGES_RSS_FACTOR),
            )
        )
    return checks


IMAGES_SECTION = """\
## Images (`images` case)

img2dataset's job (download, resize to 256 with a border, JPEG at quality
95, WebDataset shards of 1,000 with the captions) over seeded JPEGs from
nginx on tmpfs; see [README.md](README.md#images) for the commands. Every
run's tars are checked: every entry once (by its unique caption), each a
256x256 JPEG. `images-sweep` ran each tool's grid of flags to find its
best; the other rows use those best flags. Memory is the whole process
tree's (the tool and every process it forked), sampled every 50 ms: "peak
RSS" sums each process's resident set (pages a fork shares with its parent
count twice), "peak PSS" splits shared pages between processes.
"÷ img2dataset" is the row's images/s over the fastest img2dataset row of
the same case. CPU is user + system of the whole tree (the children's
rusage).

{table}

| target | measured | verdict |
|---|---|---|
{targets}

"""


def images_section(rows: Sequence[Row], flags: dict[str, str]) -> str:
    """The ``images`` case's section of RESULTS.md; empty when it did not run."""
    mine = [row for row in rows if is_images_case(row.case)]
    if not mine:
        return ""
    return IMAGES_SECTION.format(
        table=images_table(mine, flags), targets=_check_table(images_targets(mine))
    )


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


#: The line in a results file above which a run writes everything, below which nothing.
HAND_WRITTEN_MARKER = "<!-- Below: written by hand, kept as it is by every run of the harness. -->"


def hand_written(old: str) -> str:
    """The part of a results file from :data:`HAND_WRITTEN_MARKER` on; empty without it."""
    start = old.find(HAND_WRITTEN_MARKER)
    return "" if start < 0 else "\n" + old[start:]


PROTOCOL_SECTION = """\
## Protocols nginx served (`http2` case)

Requests per protocol, from the HTTP/2 server's log, summed over each
row's verified runs. Tools that do not offer HTTP/2 get HTTP/1.1 from the
same server.

"""


def _check_table(checks: Sequence[Check]) -> str:
    return "\n".join(f"| {t} | {m} | {v} |" for t, m, v in checks) or "| — | — | — |"


def render(
    rows: Sequence[Row],
    info: dict[str, str],
    *,
    command: str,
    started: datetime,
    load: tuple[tuple[float, ...], tuple[float, ...]],
    notes: Sequence[str],
    images_flags: dict[str, str] | None = None,
    targets: str = "",
) -> str:
    """The whole RESULTS.md; ``targets``: the "Targets" section, after the results table."""
    finished = datetime.now(timezone.utc)
    images = images_section(rows, images_flags or {})
    failed = failures(rows)
    rows = [row for row in rows if not is_images_case(row.case)]
    machine = "\n".join(f"- {key}: {value}" for key, value in info.items())
    curl_checks = curl_targets(rows)
    # An earlier target that is also one of the curl downloader's is listed once.
    listed = {target for target, _, _ in curl_checks}
    earlier = [check for check in earlier_targets(rows) if check[0] not in listed]
    protocols = protocol_lines(rows)
    protocol_section = ""
    if protocols:
        protocol_section = PROTOCOL_SECTION + "".join(f"- {line}\n" for line in protocols) + "\n"
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
the runs. "peak threads" is the most threads the tool's own process had
at any 50 ms sample. Each "÷ peer" column is this row's files/s divided by
that peer's in the same case and file system (above 1: this row is faster;
"÷ dpp" is the default `requests` downloader, and in the `cpu` case process
mode over thread mode). `curl CLI` is the curl command line; `dpp curl`
is this project with the `curl` downloader plugin.

{markdown_table(rows)}

{targets}{protocol_section}{images}## Targets for the `curl` downloader

Figures are this project's `dpp curl` row against the named row of the same
case and file system (medians); the last line is the rule that decides the
`fast` downloader's fate.

| target | measured | verdict |
|---|---|---|
{_check_table(curl_checks)}

## Earlier targets

The earlier issues' targets, for each of this project's rows that ran.

| target | measured | verdict |
|---|---|---|
{_check_table(earlier)}

## Failed or skipped runs

{failed_text}

## Notes

{note_text}
"""
