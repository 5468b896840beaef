"""``--profile CASE``: one run of this project under a profiler, and its top functions.

With ``py-spy`` installed (the harness installs it from PyPI unless
``--no-install``), the run is sampled from outside, every thread, with
``py-spy record --format raw``: the raw stacks are kept, and the top
functions by self and by cumulative samples are written beside them. Without
it, the run goes through ``python -m benchmarks.profiling``, which profiles
every thread with ``cProfile`` and writes the same two lists from ``pstats``.

Either way the profiled run is slower than a measured one: its figures are
not reported, only where its time went.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import runpy
import shutil
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from .cases import BATCHED_LABEL, CURL_LABEL, PER_FILE_LABEL
from .peers import Invocation, Job, Tool
from .runner import Runner

#: The rows profiled by default, first found in the case wins: this project's.
DEFAULT_TOOLS = (CURL_LABEL, BATCHED_LABEL, PER_FILE_LABEL, "dpp simulated", "dpp threads", "dpp")
#: Functions listed per ordering.
TOP = 40
#: Samples per second of py-spy.
PY_SPY_RATE = 250


def py_spy() -> str | None:
    """The ``py-spy`` executable beside the running interpreter, or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    if beside.is_file():
        return str(beside)
    return shutil.which("py-spy")


def _function(frame: str) -> str:
    """``name (file:line)`` as ``name (file)``: samples add up per function, not per line."""
    name, _, where = frame.rpartition(" (")
    if not name:
        return frame
    return f"{name} ({where.rsplit(':', 1)[0].rstrip(')')})"


def summarize_raw(raw: str, top: int = TOP) -> str:
    """py-spy's collapsed stacks as two lists: by self samples and by cumulative samples."""
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_function(frame) for frame in stack.split(";") if frame]
        if not frames:
            continue
        own[frames[-1]] += count
        for function in set(frames):
            cumulative[function] += count
    if not total:
        return "no samples (the run ended before py-spy attached?)\n"

    def listing(title: str, counts: Counter[str]) -> str:
        lines = [f"## {title} ({total:,} samples, every thread, idle waits excluded)", ""]
        lines += [
            f"{count / total:7.1%} {count:8,}  {function}"
            for function, count in counts.most_common(top)
        ]
        return "\n".join(lines) + "\n"

    return listing("By self samples", own) + "\n" + listing("By cumulative samples", cumulative)


def summarize_pstats(path: Path, top: int = TOP) -> str:
    """A cProfile dump as two lists: by own time (``tottime``) and by ``cumulative`` time."""
    parts = []
    for order, title in (("tottime", "By self time"), ("cumulative", "By cumulative time")):
        stream = io.StringIO()
        pstats.Stats(str(path), stream=stream).sort_stats(order).print_stats(top)
        parts.append(f"## {title} (cProfile, every thread)\n\n{stream.getvalue()}")
    return "\n".join(parts)


def wrap(invocation: Invocation, python: str, out_base: Path) -> tuple[Invocation, Path]:
    """``invocation`` run under py-spy (or the cProfile wrapper); the profile's raw path."""
    spy = py_spy()
    script, *args = invocation.argv
    if spy is not None:
        raw = out_base.with_suffix(".pyspy.txt")
        argv = [
            spy,
            "record",
            "--rate",
            str(PY_SPY_RATE),
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(raw),
            "--",
            python,
            script,
            *args,
        ]
    else:
        raw = out_base.with_suffix(".prof")
        argv = [python, "-m", "benchmarks.profiling", str(raw), script, *args]
    return replace(invocation, argv=argv), raw


class ProfilingRunner(Runner):
    """Runs one tool of one job once, under a profiler, and writes its top functions.

    Every other job of the selected cases is passed over: the harness sets
    up the case as for a measured run (corpus, servers, lists) and this
    runner picks the job named ``case`` on the first file system it meets.
    """

    def __init__(
        self,
        logs_dir: Path,
        raw_path: Path,
        *,
        case: str,
        tool: str | None,
        python: str,
        out_dir: Path,
        stamp: str,
    ) -> None:
        super().__init__(logs_dir, raw_path)
        self.case = case
        self.tool = tool
        self.python = python
        self.out_dir = out_dir
        self.stamp = stamp
        #: The summary written, once the job ran.
        self.summary: Path | None = None
        self.message = f"no job named {case!r} ran"

    def _pick(self, tools: Sequence[Tool]) -> Tool | None:
        wanted = (self.tool,) if self.tool else DEFAULT_TOOLS
        for label in wanted:
            for tool in tools:
                if tool.label == label:
                    return tool
        return None

    def run_job(self, job: Job, tools: Sequence[Tool], reps: int) -> None:
        """Profile the chosen tool once if this is the job asked for."""
        if job.case != self.case or self.summary is not None:
            return
        tool = self._pick(tools)
        if tool is None:
            labels = ", ".join(t.label for t in tools)
            self.message = f"{job.case}: no tool {self.tool or DEFAULT_TOOLS} (it has {labels})"
            return
        slug = f"profile-{job.case}-{tool.label}-{self.stamp}".replace(" ", "_").replace(",", "")
        out_base = self.out_dir / slug
        raw_holder: list[Path] = []

        def build(job: Job) -> Invocation:
            wrapped, raw = wrap(tool.build(job), self.python, out_base)
            raw_holder.append(raw)
            return wrapped

        record = self.run_once(job, Tool(tool.label, build), 0)
        raw = raw_holder[0]
        if not raw.exists():
            self.message = f"the profiled run wrote no profile ({record.error or 'no error'})"
            return
        if raw.suffix == ".prof":
            text = summarize_pstats(raw)
            profiler = "cProfile (py-spy not installed)"
        else:
            text = summarize_raw(raw.read_text(encoding="utf-8", errors="replace"))
            profiler = f"py-spy record --rate {PY_SPY_RATE} --nonblocking (raw stacks: {raw.name})"
        status = "ok" if record.ok else f"FAILED: {record.error}"
        header = (
            f"# Profile of {tool.label} on {job.case}/{job.fs}, {job.files:,} files\n\n"
            f"- profiler: {profiler}\n"
            f"- run: {record.wall_s:.2f} s wall, {record.user_s + record.sys_s:.2f} s CPU "
            f"under the profiler ({status})\n\n"
        )
        self.summary = out_base.with_suffix(".txt")
        self.summary.write_text(header + text, encoding="utf-8")
        self.message = f"profile written: {self.summary}"


# -- the cProfile wrapper: python -m benchmarks.profiling OUT SCRIPT ARGS... ----------------


def _profile_threads(profiles: list[cProfile.Profile]) -> Callable[[], None]:
    """Give every thread started from now on a profiler of its own; undo function."""
    original = threading.Thread.run

    def run(self: threading.Thread, *args: Any, **kwargs: Any) -> None:
        profile = cProfile.Profile()
        try:
            profile.enable()
        except ValueError:
            # Python 3.12+: one profiler for the whole process is already active.
            original(self, *args, **kwargs)
            return
        profiles.append(profile)
        try:
            original(self, *args, **kwargs)
        finally:
            profile.disable()

    threading.Thread.run = run  # type: ignore[method-assign]

    def undo() -> None:
        threading.Thread.run = original  # type: ignore[method-assign]

    return undo


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``SCRIPT ARGS`` as ``__main__`` with every thread profiled; dump stats to ``OUT``."""
    out, script, *args = list(sys.argv[1:] if argv is None else argv)
    profiles: list[cProfile.Profile] = []
    undo = _profile_threads(profiles)
    main_profile = cProfile.Profile()
    sys.argv = [script, *args]
    code = 0
    main_profile.enable()
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        main_profile.disable()
        undo()
        stats = pstats.Stats(main_profile)
        for profile in profiles:
            try:
                stats.add(profile)
            except TypeError:
                continue  # a thread that never ran Python code: nothing recorded
        stats.dump_stats(out)
    return code


if __name__ == "__main__":
    sys.exit(main())
