"""``python -m benchmarks``: install, generate, serve, run, verify, report."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

from . import report, targets
from .cases import (
    ALL_CASES,
    BATCH_CASE,
    BATCH_SIZE_FLAG,
    CURL_DOWNLOADER,
    TARGET_CASES,
    TARGETS_ALIAS,
    THROUGHPUT_CASES,
    TLS_CASES,
    Context,
    Transport,
    batch_case,
    cpu_case,
    latency_case,
    sim_case,
    throughput_case,
)
from .corpus import FULL_SPECS, QUICK_SPECS, Corpus, ensure_corpus
from .images import IMAGES_CASE, ImagesOutcome, ensure_image_corpus, image_versions, images_case
from .install import ensure_tools
from .nginx import NginxServer
from .peers import REPO_ROOT, ProjectCli, tool_versions
from .profiling import ProfilingRunner
from .runner import Runner
from .tls import make_tls_files

BENCH_DIR = Path(__file__).resolve().parent
EXT4_WORK = BENCH_DIR / "work"
TMPFS_WORK = Path("/dev/shm/dpp-bench")
FILESYSTEMS = ("tmpfs", "ext4")
#: The targets' latency row is at 256 at once; ``--cases targets`` runs only that one.
TARGET_LATENCY_WORKERS = (256,)
#: ``--profile`` job names and the harness case that makes each job.
PROFILE_JOBS = {
    **{name: name for name in THROUGHPUT_CASES},
    **{f"{prefix}-{name}": prefix for prefix, names in TLS_CASES.items() for name in names},
    "latency-64": "latency",
    "latency-256": "latency",
    "cpu": "cpu",
    "sim": "sim",
    BATCH_CASE: BATCH_CASE,
}


def _parse_list(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in allowed]
    if unknown or not chosen:
        raise SystemExit(f"--{what}: choose from {', '.join(allowed)} (got {text!r})")
    return chosen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark this project against aria2c, curl, wget and requests + threads.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small corpora; writes work/RESULTS-quick.md"
    )
    parser.add_argument(
        "--cases",
        default=",".join(ALL_CASES),
        help=f"comma list of {', '.join(ALL_CASES)}; or {TARGETS_ALIAS!r}: "
        f"{','.join(TARGET_CASES)} on tmpfs, latency at 256 only",
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions per tool and case")
    parser.add_argument(
        "--fs",
        help="comma list of tmpfs, ext4 (corpus cases; default both, tmpfs with targets)",
    )
    parser.add_argument(
        "--profile",
        metavar="JOB",
        help=f"run this project once on JOB under py-spy (or cProfile) and write its top "
        f"functions to work/ instead of measuring; one of {', '.join(PROFILE_JOBS)}",
    )
    parser.add_argument(
        "--profile-tool",
        metavar="LABEL",
        help="with --profile: the row to profile (default: dpp curl, or the case's own row)",
    )
    parser.add_argument(
        "--no-install", action="store_true", help="do not apt-get/pip install missing tools"
    )
    parser.add_argument(
        "--sweep-reps",
        type=int,
        help="images case: runs of each point of each tool's grid of flags "
        "(default 1; 0 skips the sweep and uses fixed flags)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="write the results here (default: RESULTS.md, or work/RESULTS-quick.md with --quick)",
    )
    args = parser.parse_args(argv)
    chosen = _parse_list(args.cases, (*ALL_CASES, TARGETS_ALIAS), "cases")
    # The alias in place, each case once, in the order given.
    expanded = [
        case for item in chosen for case in (TARGET_CASES if item == TARGETS_ALIAS else (item,))
    ]
    args.cases = list(dict.fromkeys(expanded))
    if args.fs is None:
        args.fs = "tmpfs" if TARGETS_ALIAS in chosen else ",".join(FILESYSTEMS)
    args.fs = _parse_list(args.fs, FILESYSTEMS, "fs")
    args.latency_workers = (
        TARGET_LATENCY_WORKERS if TARGETS_ALIAS in chosen and "latency" not in chosen else None
    )
    if args.profile is not None:
        if args.profile not in PROFILE_JOBS:
            raise SystemExit(
                f"--profile: choose from {', '.join(PROFILE_JOBS)} (got {args.profile!r})"
            )
        args.cases = [PROFILE_JOBS[args.profile]]
        args.reps = 1
        # One job is profiled: on the first file system asked for (tmpfs by default).
        args.fs = args.fs[:1]
        if args.profile.startswith("latency-"):
            args.latency_workers = (int(args.profile.split("-")[1]),)
    elif args.profile_tool is not None:
        raise SystemExit("--profile-tool goes with --profile")
    if args.reps < 1:
        raise SystemExit("--reps must be at least 1")
    if args.sweep_reps is not None and args.sweep_reps < 0:
        raise SystemExit("--sweep-reps must be 0 or more")
    return args


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _corpora(args: argparse.Namespace) -> dict[str, Corpus]:
    specs = QUICK_SPECS if args.quick else FULL_SPECS
    needed = [name for name in THROUGHPUT_CASES if name in args.cases]
    extra = [name for case in args.cases for name in TLS_CASES.get(case, ())]
    if "cpu" in args.cases:
        extra.append("small")
    needed += [name for name in dict.fromkeys(extra) if name not in needed]
    corpora = {}
    for name in needed:
        corpus, made = ensure_corpus(EXT4_WORK / "corpus", specs[name])
        _say(f"corpus {corpus.spec.folder}: {'generated' if made else 'reused'}")
        corpus.warm()
        corpora[name] = corpus
    return corpora


def main(argv: list[str] | None = None) -> int:
    """Run the selected cases and write the results."""
    args = parse_args(argv)
    command = "python -m benchmarks " + shlex.join(sys.argv[1:] if argv is None else argv)
    started = datetime.now(timezone.utc)
    load_before = os.getloadavg()
    if not args.no_install:
        for step in ensure_tools(args.cases, profiler=args.profile is not None):
            _say(f"installed: {step}")
    stamp = started.strftime("%Y%m%d-%H%M%S")
    fs_roots = {"ext4": EXT4_WORK, "tmpfs": TMPFS_WORK}
    logs_dir = EXT4_WORK / "logs" / stamp
    cli = ProjectCli()
    runner: Runner
    profiler: ProfilingRunner | None = None
    if args.profile is None:
        runner = Runner(logs_dir, EXT4_WORK / f"runs-{stamp}.jsonl")
    else:
        profiler = ProfilingRunner(
            logs_dir,
            EXT4_WORK / f"profile-runs-{stamp}.jsonl",
            case=args.profile,
            tool=args.profile_tool,
            python=str(cli.executable.with_name("python")),
            out_dir=EXT4_WORK,
            stamp=stamp,
        )
        runner = profiler
    cli.byte_compile()
    # Taken before the run: the commit and versions are those that were measured.
    info = report.machine_info(REPO_ROOT, tool_versions(cli))
    if IMAGES_CASE in args.cases:
        info.update(image_versions(cli))
    # The download cases' notes, when any of them runs (not for `images` alone).
    notes = (
        []
        if set(args.cases) <= {IMAGES_CASE}
        else [
            "this project's runs use the `save` processor (files verified on disk)"
            if cli.has_save
            else "no `save` processor is installed yet: this project's runs use `checksum` and "
            "write one jsonl line per file; the reported sha256 values are verified",
            "this project's modules are byte-compiled before the runs, as `pip install` does",
            "latency, cpu, sim and batch cases run on tmpfs only; the simulation case is "
            "verified by its exit code (0: every entry succeeded)",
            "`curl CLI` is the curl command line; `dpp curl` is this project with the `curl` "
            "downloader of the dpp-curl plugin package, run with only that package's plugins "
            "loaded",
        ]
    )
    if notes and cli.downloader_env(CURL_DOWNLOADER) is None:
        notes.append(
            "no `curl` downloader is installed (plugins/dpp-curl): the `dpp curl` rows "
            "and the targets that need them are missing"
        )
    if "uncommitted" in info["commit"]:
        notes.append(
            "the working tree had uncommitted changes when this run started (work in progress): "
            "the figures are those of that tree, not of the commit alone"
        )
    if BATCH_CASE in args.cases and not cli.has_flag(BATCH_SIZE_FLAG):
        notes.append(
            f"the `batch` case's batched row needs {BATCH_SIZE_FLAG}, which the installed CLI "
            "lacks: only the per-file row ran"
        )
    if notes and not cli.has_process_mode:
        notes.append("the CLI has no processing-process mode yet: the `cpu` case shows n/a for it")
    ctx = Context(runner, cli, fs_roots, logs_dir, args.reps, args.quick)
    if args.latency_workers is not None:
        ctx = replace(ctx, latency_workers=args.latency_workers)
    nginx: NginxServer | None = None
    images_outcome = ImagesOutcome()
    try:
        corpora = _corpora(args)
        image_corpus = ensure_image_corpus(args.quick) if IMAGES_CASE in args.cases else None
        if corpora or image_corpus is not None:
            # A new CA and certificate on every run, only when a TLS case needs them.
            tls = None
            if any(case in TLS_CASES for case in args.cases):
                tls = make_tls_files(EXT4_WORK / "tls")
            extra = {} if image_corpus is None else {image_corpus.spec.folder: image_corpus.folder}
            (EXT4_WORK / "corpus").mkdir(parents=True, exist_ok=True)
            nginx = NginxServer(EXT4_WORK / "corpus", EXT4_WORK / "nginx", tls=tls, extra=extra)
            nginx.start()
            _say(f"nginx (pid {nginx.pid}) on {nginx.base_url}")
            if tls is not None:
                _say(f"  HTTPS on {nginx.https_url}, HTTPS with HTTP/2 on {nginx.h2_url}")
        for case in args.cases:
            if case in THROUGHPUT_CASES:
                assert nginx is not None
                throughput_case(ctx, corpora[case], Transport(nginx.base_url), args.fs)
            elif case in TLS_CASES:
                assert nginx is not None
                assert nginx.tls is not None
                transport = (
                    Transport(nginx.https_url, "https-", nginx.tls.ca_bundle)
                    if case == "https"
                    else Transport(
                        nginx.h2_url,
                        "http2-",
                        nginx.tls.ca_bundle,
                        protocol_log=nginx.protocol_log,
                        curl_flags=("--http2",),
                    )
                )
                for name in TLS_CASES[case]:
                    throughput_case(ctx, corpora[name], transport, args.fs)
            elif case == "latency":
                latency_case(ctx)
            elif case == "cpu":
                assert nginx is not None
                cpu_case(ctx, corpora["small"], nginx.base_url)
            elif case == "sim":
                sim_case(ctx)
            elif case == BATCH_CASE:
                batch_case(ctx)
            elif case == IMAGES_CASE:
                assert nginx is not None
                assert image_corpus is not None
                images_outcome = images_case(ctx, image_corpus, nginx.base_url, args.sweep_reps)
                notes += images_outcome.notes
    finally:
        if nginx is not None:
            nginx.stop()
        # Free the memory tmpfs holds; lists and outputs are rebuilt every run.
        shutil.rmtree(TMPFS_WORK, ignore_errors=True)
    if profiler is not None:
        _say(profiler.message)
        return 0 if profiler.summary is not None else 1
    rows = report.aggregate(runner.records)
    text = report.render(
        rows,
        info,
        command=command,
        started=started,
        load=(load_before, os.getloadavg()),
        notes=notes,
        images_flags=images_outcome.flags,
        targets=targets.section(rows),
    )
    results = EXT4_WORK / "RESULTS-quick.md" if args.quick else BENCH_DIR / "RESULTS.md"
    if args.results is not None:
        results = args.results
    if results.exists():
        # What was written by hand below the marker (dated figures of other
        # scripts, decisions) outlives a run that rewrites the generated part.
        text += report.hand_written(results.read_text(encoding="utf-8"))
    results.write_text(text)
    raw = {
        "command": command,
        "machine": info,
        "runs": [asdict(r) for r in runner.records],
        "rows": [asdict(r) for r in rows],
    }
    (EXT4_WORK / f"runs-{stamp}.json").write_text(json.dumps(raw, indent=1))
    print(report.markdown_table([row for row in rows if not report.is_images_case(row.case)]))
    images_rows = [row for row in rows if report.is_images_case(row.case)]
    if images_rows:
        print(report.images_table(images_rows, images_outcome.flags))
    _say(f"written: {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
