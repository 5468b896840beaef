"""Scaling out on Dask: the ``dask`` executor against the local one, on one machine.

Run from the repository root, with the project and ``plugins/dpp-dask`` installed
in ``.venv``::

    .venv/bin/python -m benchmarks.dask_scaling                 # all cases, 3 reps (~10 min)
    .venv/bin/python -m benchmarks.dask_scaling --quick         # smoke run (~1-2 min)
    .venv/bin/python -m benchmarks.dask_scaling --cases cpu --reps 5

Every run is the command line as a real process (the venv's entry point),
``PYTHONPATH`` set to the repository root so that Dask's worker processes
import the benchmark's processor by reference.  Files come from
``benchmarks.slow_server`` on 127.0.0.1 with no delay (16 KiB bodies, in a
process of its own, started once for all cases).  Within a case the modes run
in turns, the order rotated every repetition, so a drift of the machine's
load spreads over all of them; figures are medians of the repetitions.

Cases:

- ``cpu``: ``--files`` (2,000) files through ``benchmarks.cpu_processor``
  (pure Python, ``--iterations`` FNV-1a steps, ~7 ms a file here, holding
  the GIL): local threads (default ``--processing-limit`` and 2), local
  ``--processing-mode process --processing-limit 2``, and ``--executor dask``
  with 2 worker processes at ``--processing-limit`` 1 and 2;
- ``download``: ``--small-files`` (5,000) files with the ``dummy`` processor:
  local defaults against dask with 2 workers, defaults otherwise;
- ``batch``: ``--sim-files`` simulated files (``--simulate-downloads
  --no-sleep``, nothing downloaded, a file costs the engine only) through
  dask at each of ``--batch-sizes``, and locally for reference.  A least-squares
  fit of time against the number of batches gives the cost of one batch (a
  Dask task: submit, schedule, run, send back, hand back) and of one file.

Each case also runs every mode over an empty list: the fixed cost of a run
(interpreter, imports, and for dask the start and close of the local
cluster, for process mode the processing pool).  ``marginal`` figures are a
mode's run minus its empty run: the files alone.

Measured per run: wall seconds (start of the process to its exit), the
run's own ``elapsed`` from ``--summary-json`` (after the executor is open,
up to the end of its close), CPU seconds of the process and every process it
reaped (``os.wait4``: the Dask workers, the processing pool), and the CPU of
the command-line process alone (the client: input, post-processors, summary,
and with a local cluster also Dask's scheduler and nannies), sampled from
``/proc`` through psutil every 20 ms, so its last 20 ms are not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

from benchmarks.journal_cost import free_port, start_server

ROOT = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).with_name("download-pipeline-processor")
CPU_PROCESSOR = "benchmarks.cpu_processor:CpuBoundProcessor"
DISCARD = "benchmarks.journal_cost:Discard"
DASK_2 = ("--executor", "dask", "--executor-option", "n_workers=2")
SAMPLE_INTERVAL = 0.02


@dataclass
class Run:
    """One measured command-line run."""

    mode: str
    files: int
    wall: float
    elapsed: float
    cpu: float
    client_cpu: float


@dataclass
class Mode:
    """A way of running a case: its label and the command line's extra arguments."""

    label: str
    args: tuple[str, ...]
    runs: list[Run] = field(default_factory=list)
    empty: list[Run] = field(default_factory=list)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def sample_client(pid: int, latest: list[float], done: threading.Event) -> None:
    """Keep ``latest[0]`` at the CPU seconds process ``pid`` used itself (children apart)."""
    try:
        process = psutil.Process(pid)
        while not done.is_set():
            times = process.cpu_times()
            latest[0] = times.user + times.system
            done.wait(SAMPLE_INTERVAL)
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        pass


def run_cli(mode: Mode, listing: Path, files: int, work: Path, common: tuple[str, ...]) -> Run:
    """Run the command line once over ``listing``; what it took."""
    summary = work / "summary.json"
    summary.unlink(missing_ok=True)
    log = work / "stderr.txt"
    argv = [
        str(CLI),
        *("--files", str(listing), "--post-processor", DISCARD, "--quiet", "--no-progress"),
        *("--download-cache", str(work / "cache"), "--summary-json", str(summary)),
        *common,
        *mode.args,
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        # The dask executor alone: no other installed plugin's import in the runs.
        "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "dask",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    latest = [0.0]
    done = threading.Event()
    with log.open("wb") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=env
        )
        sampler = threading.Thread(target=sample_client, args=(proc.pid, latest, done))
        sampler.start()
        # wait4: the child's CPU with that of every process it reaped (workers, pools).
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise SystemExit(f"{mode.label}: exit {proc.returncode}: " + " | ".join(tail))
    data = json.loads(summary.read_text())
    if data["succeeded"] != files:
        raise SystemExit(f"{mode.label}: {data['succeeded']} of {files} files succeeded")
    return Run(
        mode.label,
        files,
        wall,
        data["elapsed"],
        usage.ru_utime + usage.ru_stime,
        latest[0],
    )


def write_listing(path: Path, files: int, url: str) -> Path:
    path.write_text(
        json.dumps([{"id": f"f{i:06d}", "url": f"{url}/f{i:06d}.bin"} for i in range(files)])
    )
    return path


def run_case(
    name: str,
    modes: list[Mode],
    files: int,
    url: str,
    *,
    reps: int,
    common: tuple[str, ...],
    work_root: str | None,
) -> dict[str, Any]:
    """Every mode over ``files`` files and over none, ``reps`` times in rotating order."""
    before = load_average()
    started = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory(prefix=f"dask-scaling-{name}-", dir=work_root) as folder:
        work = Path(folder)
        listing = write_listing(work / "files.json", files, url)
        empty = write_listing(work / "empty.json", 0, url)
        # Warm-up: imports into the page cache, the server's first connections.
        run_cli(modes[0], listing, files, work, common)
        run_cli(modes[-1], listing, files, work, common)
        for rep in range(reps):
            shift = rep % len(modes)
            order = modes[shift:] + modes[:shift]
            if rep % 2:
                order.reverse()
            for mode in order:
                mode.runs.append(run_cli(mode, listing, files, work, common))
                mode.empty.append(run_cli(mode, empty, 0, work, common))
                print(
                    f"  {name} rep {rep + 1}/{reps} {mode.label:<26} "
                    f"{mode.runs[-1].wall:6.2f} s (empty run {mode.empty[-1].wall:5.2f} s)",
                    flush=True,
                )
    after = load_average()
    return {
        "case": name,
        "files": files,
        "reps": reps,
        "started_utc": started.strftime("%Y-%m-%d %H:%M"),
        "load_before": before,
        "load_after": after,
        "modes": {mode.label: summarize(mode, files) for mode in modes},
        "raw": {mode.label: [asdict(r) for r in mode.runs + mode.empty] for mode in modes},
    }


def summarize(mode: Mode, files: int) -> dict[str, float]:
    wall = median([r.wall for r in mode.runs])
    empty_wall = median([r.wall for r in mode.empty])
    # Marginal: each run minus the empty run that followed it (paired, same load).
    marginal = median([r.wall - e.wall for r, e in zip(mode.runs, mode.empty)])
    cpu_marginal = median([r.cpu - e.cpu for r, e in zip(mode.runs, mode.empty)])
    client_marginal = median([r.client_cpu - e.client_cpu for r, e in zip(mode.runs, mode.empty)])
    return {
        "wall": wall,
        "elapsed": median([r.elapsed for r in mode.runs]),
        "files_per_s": files / wall,
        "empty_wall": empty_wall,
        "empty_elapsed": median([r.elapsed for r in mode.empty]),
        "empty_cpu": median([r.cpu for r in mode.empty]),
        "marginal_wall": marginal,
        "marginal_files_per_s": files / marginal if marginal > 0 else float("nan"),
        "cpu": median([r.cpu for r in mode.runs]),
        "cpu_ms_per_file": cpu_marginal / files * 1000,
        "client_cpu_ms_per_file": client_marginal / files * 1000,
        "walls": [round(r.wall, 2) for r in mode.runs],
    }


def print_case(result: dict[str, Any]) -> None:
    print(
        f"\n{result['case']}: {result['files']} files, {result['reps']} reps, medians; "
        f"started {result['started_utc']} UTC, load {result['load_before']} -> "
        f"{result['load_after']}"
    )
    print(
        f"{'mode':<26} {'wall s':>7} {'files/s':>8} {'empty s':>8} {'marg. s':>8} "
        f"{'marg. f/s':>9} {'CPU s':>6} {'CPU ms/f':>8} {'client ms/f':>11}   walls"
    )
    for label, m in result["modes"].items():
        print(
            f"{label:<26} {m['wall']:>7.2f} {m['files_per_s']:>8,.0f} {m['empty_wall']:>8.2f} "
            f"{m['marginal_wall']:>8.2f} {m['marginal_files_per_s']:>9,.0f} {m['cpu']:>6.1f} "
            f"{m['cpu_ms_per_file']:>8.3f} {m['client_cpu_ms_per_file']:>11.3f}   "
            f"{', '.join(f'{w:.2f}' for w in m['walls'])}"
        )


def ratio_line(result: dict[str, Any], top: str, bottom: str, target: float) -> str:
    modes = result["modes"]
    whole = modes[top]["files_per_s"] / modes[bottom]["files_per_s"]
    marginal = modes[top]["marginal_files_per_s"] / modes[bottom]["marginal_files_per_s"]
    verdict = "met" if whole >= target else "MISSED"
    marginal_verdict = "met" if marginal >= target else "missed"
    return (
        f"{top} / {bottom}: {whole:.2f}x with start and close ({verdict}, target >= "
        f"{target}x); {marginal:.2f}x for the files alone ({marginal_verdict})"
    )


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares ``y = a + b x``: (a, b)."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0
    return mean_y - slope * mean_x, slope


def batch_fit(result: dict[str, Any], sizes: list[int]) -> dict[str, float]:
    """Per batch and per file costs from the dask runs at every batch size (all reps)."""
    files = result["files"]
    wall: list[tuple[float, float]] = []
    cpu: list[tuple[float, float]] = []
    client: list[tuple[float, float]] = []
    for size in sizes:
        runs = result["raw"][f"dask b={size}"]
        full = [r for r in runs if r["files"]]
        empty = [r for r in runs if not r["files"]]
        batches = -(-files // size)
        for r, e in zip(full, empty):
            wall.append((batches, r["wall"] - e["wall"]))
            cpu.append((batches, r["cpu"] - e["cpu"]))
            client.append((batches, r["client_cpu"] - e["client_cpu"]))
    (wall_a, wall_b), (cpu_a, cpu_b), (client_a, client_b) = fit(wall), fit(cpu), fit(client)
    return {
        "wall_ms_per_batch": wall_b * 1000,
        "wall_ms_per_file": wall_a / files * 1000,
        "cpu_ms_per_batch": cpu_b * 1000,
        "cpu_ms_per_file": cpu_a / files * 1000,
        "client_cpu_ms_per_batch": client_b * 1000,
        "client_cpu_ms_per_file": client_a / files * 1000,
    }


def _eight(value: int) -> list[int]:
    """A trivial task: its cost is Dask's own."""
    return [value] * 8


def dask_floor(tasks: int, in_flight: int) -> dict[str, Any]:
    """Dask's own cost per task on a local cluster of 2 worker processes, no pipeline.

    Trivial tasks, submitted as the ``dask`` executor does (one ``submit`` per
    task, ``in_flight`` at a time, the next when one lands) and all at once
    with one ``client.map``.  CPU of this process (client and scheduler) and of
    the worker processes, from psutil.
    """
    import logging

    from distributed import Client, LocalCluster, as_completed

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=2, processes=True, host="127.0.0.1",
        scheduler_port=0, dashboard_address=None, silence_logs=logging.ERROR,
    )  # fmt: skip
    client = Client(cluster, set_as_default=False)
    out: dict[str, Any] = {"tasks": tasks, "in_flight": in_flight}
    try:
        client.wait_for_workers(2)
        me = psutil.Process()
        workers = me.children(recursive=True)

        def cpu() -> tuple[float, float]:
            own = me.cpu_times()
            rest = 0.0
            for worker in workers:
                try:
                    times = worker.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                rest += times.user + times.system
            return own.user + own.system, rest

        client.gather(client.map(_eight, range(100), pure=False))  # warm-up
        for how in ("one submit per task", "one map for all"):
            (client0, workers0), started = cpu(), time.perf_counter()
            if how == "one map for all":
                client.gather(client.map(_eight, range(tasks), pure=False))
            else:
                numbers = iter(range(tasks))
                landed = as_completed(loop=client.loop)
                for _ in range(min(in_flight, tasks)):
                    landed.add(client.submit(_eight, next(numbers), pure=False))
                for future in landed:
                    future.result()
                    value = next(numbers, -1)
                    if value >= 0:
                        landed.add(client.submit(_eight, value, pure=False))
            wall = time.perf_counter() - started
            client1, workers1 = cpu()
            out[how] = {
                "wall_ms_per_task": wall / tasks * 1000,
                "client_cpu_ms_per_task": (client1 - client0) / tasks * 1000,
                "worker_cpu_ms_per_task": (workers1 - workers0) / tasks * 1000,
            }
    finally:
        client.close()
        cluster.close()
    return out


def print_floor(result: dict[str, Any]) -> None:
    print(
        f"\nfloor: Dask alone, {result['tasks']} trivial tasks on 2 worker processes "
        f"(load {result['load_before']} -> {result['load_after']})"
    )
    print(
        f"{'submitted':<28} {'wall ms/task':>12} {'client+scheduler CPU ms':>24} "
        f"{'workers CPU ms':>15}"
    )
    for how in ("one submit per task", "one map for all"):
        figures = result[how]
        label = how if how != "one submit per task" else f"{how}, {result['in_flight']} out"
        print(
            f"{label:<28} {figures['wall_ms_per_task']:>12.2f} "
            f"{figures['client_cpu_ms_per_task']:>24.2f} {figures['worker_cpu_ms_per_task']:>15.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000, help="files of the cpu case")
    parser.add_argument("--small-files", type=int, default=5000, help="files of the download case")
    parser.add_argument("--sim-files", type=int, default=10000, help="files of the batch case")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=30_000, help="CPU processor loop steps")
    parser.add_argument("--batch-sizes", default="8,16,64,256")
    parser.add_argument("--cases", default="cpu,download,batch,floor")
    parser.add_argument("--floor-tasks", type=int, default=1000, help="tasks of the floor case")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small corpora, 1 rep")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--work", default=None, help="folder for caches (default: temp dir)")
    args = parser.parse_args()
    if args.quick:
        args.files, args.small_files, args.sim_files, args.reps = 200, 500, 1000, 1
        args.batch_sizes = "8,64"
        args.floor_tasks = 200
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    cases = args.cases.split(",")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    print(
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit}, "
        f"{os.cpu_count()} cores, load {load_average()}",
        flush=True,
    )
    results: list[dict[str, Any]] = []
    port = free_port()
    server = start_server(port)
    url = f"http://127.0.0.1:{port}/d"
    try:
        if "cpu" in cases:
            cpu_args = (
                *("--processor", CPU_PROCESSOR),
                *("--processor-option", f"iterations={args.iterations}"),
            )
            modes = [
                Mode("threads (limit 3)", ()),
                Mode("threads (limit 2)", ("--processing-limit", "2")),
                Mode(
                    "process (limit 2)", ("--processing-mode", "process", "--processing-limit", "2")
                ),
                Mode("dask 2w (limit 1)", (*DASK_2, "--processing-limit", "1")),
                Mode("dask 2w (limit 2)", (*DASK_2, "--processing-limit", "2")),
            ]
            result = run_case(
                "cpu", modes, args.files, url, reps=args.reps, common=cpu_args, work_root=args.work
            )
            print_case(result)
            for bottom, target in (("threads (limit 3)", 1.7), ("threads (limit 2)", 1.7),
                                   ("process (limit 2)", 0.9)):  # fmt: skip
                for top in ("dask 2w (limit 1)", "dask 2w (limit 2)"):
                    line = ratio_line(result, top, bottom, target)
                    result.setdefault("ratios", []).append(line)
                    print(line)
            results.append(result)
        if "download" in cases:
            modes = [Mode("local", ()), Mode("dask 2w", DASK_2)]
            result = run_case(
                "download", modes, args.small_files, url, reps=args.reps,
                common=("--processor", "dummy"), work_root=args.work,
            )  # fmt: skip
            print_case(result)
            line = ratio_line(result, "dask 2w", "local", 0.5)
            result["ratios"] = [line]
            print(line)
            results.append(result)
        if "batch" in cases:
            modes = [Mode("local", ())] + [
                Mode(f"dask b={size}", (*DASK_2, "--executor-option", f"batch_size={size}"))
                for size in sizes
            ]
            result = run_case(
                "batch", modes, args.sim_files, "http://sim.invalid/s", reps=args.reps,
                common=("--simulate-downloads", "--no-sleep", "--processor", "dummy"),
                work_root=args.work,
            )  # fmt: skip
            print_case(result)
            costs = batch_fit(result, sizes)
            result["fit"] = costs
            local = result["modes"]["local"]
            print(
                f"fit over {len(sizes)} batch sizes (time = a + b x batches), wall: "
                f"{costs['wall_ms_per_batch']:.2f} ms per batch + "
                f"{costs['wall_ms_per_file']:.3f} ms per file (local: "
                f"{local['marginal_wall'] / result['files'] * 1000:.3f} ms per file); CPU: "
                f"{costs['cpu_ms_per_batch']:.2f} ms per batch + {costs['cpu_ms_per_file']:.3f} "
                f"ms per file (local {local['cpu_ms_per_file']:.3f}); client CPU: "
                f"{costs['client_cpu_ms_per_batch']:.2f} ms per batch + "
                f"{costs['client_cpu_ms_per_file']:.3f} ms per file"
            )
            results.append(result)
        if "floor" in cases:
            before = load_average()
            for _rep in range(args.reps):
                result = dask_floor(args.floor_tasks, in_flight=8)
                result["load_before"], result["load_after"] = before, load_average()
                result["case"] = "floor"
                print_floor(result)
                results.append(result)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)
    print(f"\nload at the end {load_average()}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"commit": commit, "results": results}, indent=1))


if __name__ == "__main__":
    main()
