"""The benchmark cases: what each downloads, with which tools, on which file system."""

from __future__ import annotations

import hashlib
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .corpus import Corpus, Entry, corpus_entries, write_lists
from .peers import (
    PROCESS_MODE_FLAG,
    PROCESS_MODE_VALUE,
    Invocation,
    Job,
    ProjectCli,
    Tool,
    aria2_tool,
    baseline_tool,
    curl_tool,
    project_tool,
    wget_tool,
)
from .processes import ChildServer, free_port
from .runner import Runner
from .slow_server import make_body
from .verify import verify_batches

THROUGHPUT_CASES = ("small", "medium", "large")
#: The cases over TLS, and the corpora each downloads.
TLS_CASES = {"https": ("small", "medium"), "http2": ("small",)}
#: Model-inference-like processing, per file against per batch (``batch_processor.py``).
BATCH_CASE = "batch"
ALL_CASES = (*THROUGHPUT_CASES, *TLS_CASES, "latency", "cpu", "sim", BATCH_CASE, "images")
#: ``--cases targets``: exactly the cases the targets of the results' "Targets" section need.
TARGETS_ALIAS = "targets"
TARGET_CASES = ("small", "medium", "large", "https", "latency", "sim", BATCH_CASE)
#: Seconds one run of one tool may take, per case, before it is killed and marked failed.
TIMEOUTS = {
    "small": 300.0,
    "medium": 300.0,
    "large": 600.0,
    "https": 300.0,
    "http2": 300.0,
    "latency": 300.0,
    "cpu": 300.0,
    "sim": 600.0,
    "batch": 300.0,
}
DOWNLOAD_CONCURRENCY = 16
#: The downloader on plain sockets, and its rows' label.
FAST_DOWNLOADER = "fast"
FAST_LABEL = "dpp fast"
PIN_FLAG = "--pin-threads"
#: The libcurl downloader of the ``dpp-curl`` plugin package, and its rows' label.
CURL_DOWNLOADER = "curl"
CURL_LABEL = "dpp curl"
LATENCY_WORKERS = (64, 256)
LATENCY_DELAY = 0.05
LATENCY_BODY = 4 * 1024
CPU_PROCESSOR = "benchmarks.cpu_processor:CpuBoundProcessor"
CPU_PROCESSING_LIMIT = 2
#: Few download workers in the CPU case: downloads are not what it measures.
CPU_DOWNLOAD_WORKERS = 4
#: (full, quick) sizes of the cases that are not corpora.
LATENCY_FILES = (4000, 500)
CPU_FILES = (300, 100)
SIM_FILES = (100_000, 10_000)
BATCH_FILES = (4000, 500)
#: The flag the batch row needs; a CLI without it gets that row as n/a.
BATCH_SIZE_FLAG = "--processing-batch-size"
BATCH_SIZE = 32
#: One processing thread: one device, as a GPU host would have.
BATCH_PROCESSING_LIMIT = 1
BATCH_MODULE = "benchmarks.batch_processor"
PER_FILE_LABEL = "dpp per file"
BATCHED_LABEL = f"dpp batch {BATCH_SIZE}"


@dataclass(frozen=True)
class Context:
    """What every case needs."""

    runner: Runner
    cli: ProjectCli
    fs_roots: dict[str, Path]
    logs_dir: Path
    reps: int
    quick: bool
    #: The latency case's concurrencies (``--cases targets`` needs only 256).
    latency_workers: tuple[int, ...] = LATENCY_WORKERS

    def size(self, pair: tuple[int, int]) -> int:
        """The full or the quick figure."""
        return pair[1] if self.quick else pair[0]


def _job(
    ctx: Context,
    *,
    case: str,
    fs: str,
    entries: list[Entry],
    expected: Counter[str],
    total_bytes: int,
    concurrency: int,
    ca_bundle: Path | None = None,
    protocol_log: Path | None = None,
) -> Job:
    root = ctx.fs_roots[fs]
    out_dir = root / "out"
    lists = write_lists(root / "lists" / case, entries, out_dir)
    return Job(
        case=case,
        fs=fs,
        files=len(entries),
        total_bytes=total_bytes,
        expected=expected,
        lists=lists,
        out_dir=out_dir,
        cache_dir=root / "cache",
        results_path=root / "results" / "dpp.jsonl",
        concurrency=concurrency,
        timeout=TIMEOUTS.get(case.split("-", maxsplit=1)[0], 300.0),
        ca_bundle=ca_bundle,
        protocol_log=protocol_log,
    )


def _banner(text: str) -> None:
    print(f"== {text}", file=sys.stderr, flush=True)


def _fast_tools(ctx: Context, processor: str | None = None, pinned: bool = True) -> list[Tool]:
    """This project with the ``fast`` downloader (and pinned threads), when installed.

    Built in before, the ``dpp-fast`` plugin package now: its runs load that
    package's entry points and no other plugin, as the ``curl`` rows do.
    """
    env = ctx.cli.downloader_env(FAST_DOWNLOADER)
    if env is None:
        return []
    fast = ["--downloader", FAST_DOWNLOADER]
    tools = [project_tool(ctx.cli, FAST_LABEL, processor, fast, env=env)]
    if pinned and ctx.cli.has_flag(PIN_FLAG):
        tools.append(
            project_tool(ctx.cli, f"{FAST_LABEL}, pinned", processor, [*fast, PIN_FLAG], env=env)
        )
    return tools


def _curl_tools(ctx: Context, processor: str | None = None) -> list[Tool]:
    """This project with the ``curl`` downloader, when a plugin package provides it.

    Its runs load that package's entry points and no other plugin.
    """
    env = ctx.cli.downloader_env(CURL_DOWNLOADER)
    if env is None:
        return []
    return [project_tool(ctx.cli, CURL_LABEL, processor, ["--downloader", CURL_DOWNLOADER], env)]


@dataclass(frozen=True)
class Transport:
    """How a corpus case reaches nginx: URL, case-name prefix, CA, curl's flags."""

    base_url: str
    prefix: str = ""
    ca_bundle: Path | None = None
    protocol_log: Path | None = None
    curl_flags: tuple[str, ...] = ()


def throughput_case(
    ctx: Context,
    corpus: Corpus,
    transport: Transport,
    filesystems: list[str],
) -> None:
    """A corpus from nginx with this project and every peer at 16 connections."""
    entries = corpus_entries(corpus, transport.base_url)
    tools = [
        project_tool(ctx.cli),
        *_fast_tools(ctx),
        *_curl_tools(ctx),
        aria2_tool(),
        curl_tool(extra=transport.curl_flags),
        wget_tool(),
        baseline_tool(),
    ]
    case = f"{transport.prefix}{corpus.spec.name}"
    for fs in filesystems:
        _banner(f"{case}: {len(entries)} files from {transport.base_url} on {fs}")
        job = _job(
            ctx,
            case=case,
            fs=fs,
            entries=entries,
            expected=corpus.expected(),
            total_bytes=corpus.total_bytes,
            concurrency=DOWNLOAD_CONCURRENCY,
            ca_bundle=transport.ca_bundle,
            protocol_log=transport.protocol_log,
        )
        ctx.runner.run_job(job, tools, ctx.reps)


def latency_case(ctx: Context) -> None:
    """A server that answers after 50 ms: throughput against concurrency."""
    files = ctx.size(LATENCY_FILES)
    port = free_port()
    server = ChildServer(
        "slow server",
        [
            sys.executable,
            "-m",
            "benchmarks.slow_server",
            "--port",
            str(port),
            "--delay",
            str(LATENCY_DELAY),
            "--size",
            str(LATENCY_BODY),
        ],
        ctx.logs_dir / "slow_server.log",
        cwd=Path(__file__).resolve().parent.parent,
    )
    server.start(port)
    try:
        digest = hashlib.sha256(make_body(LATENCY_BODY)).hexdigest()
        entries = [
            Entry(f"l{index:05d}.bin", f"http://127.0.0.1:{port}/latency/l{index:05d}.bin")
            for index in range(files)
        ]
        tools = [
            project_tool(ctx.cli, processor="checksum"),
            *_fast_tools(ctx, processor="checksum", pinned=False),
            *_curl_tools(ctx, processor="checksum"),
            aria2_tool(),
            curl_tool(),
        ]
        for workers in ctx.latency_workers:
            _banner(
                f"latency: {files} files of {LATENCY_BODY // 1024} KiB, 50 ms each, "
                f"{workers} at once"
            )
            job = _job(
                ctx,
                case=f"latency-{workers}",
                fs="tmpfs",
                entries=entries,
                expected=Counter({digest: files}),
                total_bytes=files * LATENCY_BODY,
                concurrency=workers,
            )
            ctx.runner.run_job(job, tools, ctx.reps)
    finally:
        server.stop()


def cpu_case(ctx: Context, corpus: Corpus, base_url: str) -> None:
    """A pure-Python processor of ~20 ms per file: threads against processes."""
    files = ctx.size(CPU_FILES)
    entries = corpus_entries(corpus, base_url, limit=files)
    expected = Counter(f.sha256 for f in corpus.files[:files])
    _banner(f"cpu: {files} files, ~20 ms of pure Python each, {CPU_PROCESSING_LIMIT} workers")
    job = _job(
        ctx,
        case="cpu",
        fs="tmpfs",
        entries=entries,
        expected=expected,
        total_bytes=files * corpus.spec.size,
        concurrency=CPU_DOWNLOAD_WORKERS,
    )
    limit = ["--processing-limit", str(CPU_PROCESSING_LIMIT)]
    threads = project_tool(ctx.cli, "dpp threads", CPU_PROCESSOR, limit)
    processes = project_tool(
        ctx.cli, "dpp processes", CPU_PROCESSOR, [*limit, PROCESS_MODE_FLAG, PROCESS_MODE_VALUE]
    )
    if ctx.cli.has_process_mode:
        ctx.runner.run_job(job, [processes, threads], ctx.reps)
    else:
        ctx.runner.run_job(job, [threads], ctx.reps)
        ctx.runner.skip(job, processes.label, f"the CLI has no {PROCESS_MODE_FLAG} yet")


def sim_case(ctx: Context) -> None:
    """Simulated downloads, no delay: the pipeline's own overhead and memory."""
    files = ctx.size(SIM_FILES)
    entries = [
        Entry(f"s{index:06d}.bin", f"http://127.0.0.1:9/sim/s{index:06d}.bin")
        for index in range(files)
    ]
    job = _job(
        ctx,
        case="sim",
        fs="tmpfs",
        entries=entries,
        expected=Counter(),
        total_bytes=0,
        concurrency=0,
    )

    def build(job: Job, extra: tuple[str, ...] = ()) -> Invocation:
        argv = [
            str(ctx.cli.executable),
            *extra,
            "--files",
            str(job.lists.json_list),
            "--simulate-downloads",
            "--no-sleep",
            "--download-cache",
            str(job.cache_dir),
            "--processor",
            "dummy",
            "--post-processor",
            "jsonl",
            "--post-processor-option",
            "path=/dev/null",
            "--quiet",
        ]
        # Exit 0 means every entry succeeded; there is nothing on disk to check.
        return Invocation(argv, ctx.cli.env, None)

    _banner(f"sim: {files} simulated entries, no delay, cache on tmpfs")
    tools = [Tool("dpp simulated", build)]
    if ctx.cli.has_flag(PIN_FLAG):
        tools.append(Tool("dpp simulated, pinned", lambda job: build(job, (PIN_FLAG,))))
    ctx.runner.run_job(job, tools, ctx.reps)
    # The same command on one entry: the fixed cost (interpreter, imports,
    # plugin discovery) that every other case's wall time of this project includes.
    startup = _job(
        ctx,
        case="startup",
        fs="tmpfs",
        entries=entries[:1],
        expected=Counter(),
        total_bytes=0,
        concurrency=0,
    )
    _banner("startup: the same command with one simulated entry")
    ctx.runner.run_job(startup, [Tool("dpp, 1 entry", build)], ctx.reps)


def batch_case(ctx: Context) -> None:
    """A model-like processor (a call costs 2 ms + 0.1 ms per file) per file and per batch.

    Downloads are simulated (``--no-sleep``), so the figure is the processing
    stage's and not a downloader's; one processing thread, as one device.
    The batch row needs ``--processing-batch-size``: an installed CLI
    without it shows that row as n/a, saying so; the per-file row runs anyway.
    """
    files = ctx.size(BATCH_FILES)
    entries = [
        Entry(f"b{index:06d}.bin", f"http://127.0.0.1:9/batch/b{index:06d}.bin")
        for index in range(files)
    ]
    job = _job(
        ctx,
        case=BATCH_CASE,
        fs="tmpfs",
        entries=entries,
        expected=Counter(),
        total_bytes=0,
        concurrency=DOWNLOAD_CONCURRENCY,
    )

    def tool(label: str, processor: str, extra: tuple[str, ...], batched: bool) -> Tool:
        def build(job: Job) -> Invocation:
            argv = [
                str(ctx.cli.executable),
                "--files",
                str(job.lists.json_list),
                "--simulate-downloads",
                "--no-sleep",
                "--download-workers",
                str(job.concurrency),
                "--download-cache",
                str(job.cache_dir),
                "--processor",
                f"{BATCH_MODULE}:{processor}",
                "--processing-limit",
                str(BATCH_PROCESSING_LIMIT),
                "--post-processor",
                "jsonl",
                "--post-processor-option",
                f"path={job.results_path}",
                "--quiet",
                *extra,
            ]
            return Invocation(
                argv,
                ctx.cli.env,
                lambda: verify_batches(job.results_path, job.files, batched=batched),
            )

        return Tool(label, build)

    per_file = tool(PER_FILE_LABEL, "PerFileInference", (), batched=False)
    batched = tool(
        BATCHED_LABEL, "BatchInference", (BATCH_SIZE_FLAG, str(BATCH_SIZE)), batched=True
    )
    _banner(
        f"batch: {files} simulated files, a call of 2 ms + 0.1 ms per file, "
        f"per file and in batches of {BATCH_SIZE}"
    )
    if ctx.cli.has_flag(BATCH_SIZE_FLAG):
        ctx.runner.run_job(job, [per_file, batched], ctx.reps)
    else:
        ctx.runner.run_job(job, [per_file], ctx.reps)
        ctx.runner.skip(
            job, BATCHED_LABEL, f"needs {BATCH_SIZE_FLAG}: the installed CLI lacks the flag"
        )
