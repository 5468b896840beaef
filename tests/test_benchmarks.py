"""The benchmark harness's own logic: target verdicts, kept sections, profiles, batch checks.

The harness itself (nginx, aria2c, the curl command line) is not run here;
these are the parts that turn a run's figures into the results.  They need
the repository root importable, as ``python -m pytest`` from it gives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks import report, targets
from benchmarks.profiling import summarize_raw
from benchmarks.report import Row, unmeasured_row
from benchmarks.verify import VerificationError, verify_batches

REPO_ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def _row(case: str, tool: str, files: int, wall_s: float, **figures: object) -> Row:
    """A verified row of ``files`` files taking ``wall_s`` (medians), other figures as given."""
    size = int(figures.pop("size", 0))
    cpu_ms = figures.pop("cpu_ms", 0.1)
    values: dict[str, object] = {
        "case": case,
        "fs": "tmpfs",
        "tool": tool,
        "ok_runs": 1,
        "runs": 1,
        "wall_s": wall_s,
        "wall_min_s": wall_s,
        "wall_max_s": wall_s,
        "files_per_s": files / wall_s,
        "mb_per_s": files * size / wall_s / 1e6 if size else None,
        "cpu_ms_per_file": cpu_ms,
        "rss_mib": 30.0,
        "error": None,
        "skipped": False,
        "files": files,
        "bytes": files * size,
    }
    values.update(figures)
    return Row(**values)  # type: ignore[arg-type]


def _lines(rows: list[Row]) -> list[targets.TargetLine]:
    return targets.issue_targets(rows)


class TestTargets:
    def test_pipeline_alone_meets_and_misses_from_its_own_figures(self) -> None:
        """The simulated row's files/s, CPU per file and RSS each get their own verdict."""
        rows = [_row("sim", "dpp simulated", 100_000, 20.0, cpu_ms=0.08, rss_mib=50.0)]
        speed, cpu, rss = _lines(rows)
        assert speed.measured == "5,000 files/s"
        assert speed.verdict == "missed by 50%"
        assert cpu.measured == "80 µs"
        assert cpu.verdict == "met"
        assert rss.verdict == "met"
        assert "100,000 simulated entries" in speed.row

    def test_small_files_against_aria2c(self) -> None:
        """files/s and CPU per file of `dpp curl` are judged against aria2c's in the same job."""
        rows = [
            _row("small", "dpp curl", 5000, 2.5, size=16 * 1024, cpu_ms=0.5),
            _row("small", "aria2c", 5000, 1.25, size=16 * 1024, cpu_ms=0.2),
        ]
        speed, cpu = _lines(rows)
        assert speed.row == "5,000 x 16 KiB, http, tmpfs"
        assert speed.measured == "2,000 files/s (0.50x)"
        assert speed.reference == "aria2c 4,000 files/s"
        assert speed.verdict == "missed by 50%"
        assert cpu.reference == "aria2c 0.20 ms"
        assert cpu.verdict == "missed by 150%"

    def test_large_files_met_in_megabytes(self) -> None:
        """The large row compares MB/s with the curl command line and bounds the peak RSS."""
        rows = [
            _row("large", "dpp curl", 2, 1.0, size=512 * MIB, rss_mib=40.0),
            _row("large", "curl CLI", 2, 1.1, size=512 * MIB, rss_mib=11.0),
        ]
        speed, rss = _lines(rows)
        assert speed.verdict == "met"
        assert "MB/s" in speed.measured
        assert rss.measured == "40 MiB"
        assert rss.verdict == "met"

    def test_batch_row_says_it_needs_the_flag(self) -> None:
        """A batched row skipped for want of the flag is "not measured" with that reason."""
        reason = "needs --processing-batch-size: the installed CLI lacks the flag"
        rows = [
            _row("batch", "dpp per file", 4000, 10.0),
            unmeasured_row(
                "batch", "tmpfs", "dpp batch 32", runs=0, error=reason, skipped=True, files=4000
            ),
        ]
        (line,) = _lines(rows)
        assert line.measured == f"not measured: {reason}"
        assert line.verdict == "n/a"

    def test_batch_ratio_against_per_file(self) -> None:
        """The batched row's files/s over the per-file row's, against 8x."""
        rows = [
            _row("batch", "dpp per file", 4000, 9.0),
            _row("batch", "dpp batch 32", 4000, 1.0),
        ]
        (line,) = _lines(rows)
        assert line.measured == "4,000 files/s (9.00x)"
        assert line.verdict == "met"

    def test_only_jobs_that_ran_and_the_table(self) -> None:
        """No line for a job that did not run; no section at all when none did."""
        assert targets.section([]) == ""
        text = targets.section([_row("latency-256", "dpp curl", 4000, 4.0, peak_threads=7)])
        assert "## Targets\n" in text
        assert "| row | target | measured | reference | verdict |" in text
        assert "| peak threads < 20 | 7 |" in text
        assert "small" not in text.split("|---|")[1]


class TestHandWritten:
    def test_the_part_below_the_marker_is_kept(self) -> None:
        """A run appends what stood below the marker in the old results file."""
        old = f"# generated\n\nold figures\n\n{report.HAND_WRITTEN_MARKER}\n\n## Decision\n\nwhy\n"
        kept = report.hand_written(old)
        assert kept.startswith(f"\n{report.HAND_WRITTEN_MARKER}")
        assert kept.endswith("## Decision\n\nwhy\n")
        assert "old figures" not in kept

    def test_without_the_marker_nothing_is_kept(self) -> None:
        """A results file without the marker is rewritten whole."""
        assert report.hand_written("# generated\n\n## Decision\n") == ""


class TestProfileSummary:
    def test_self_and_cumulative_samples_per_function(self) -> None:
        """py-spy's collapsed stacks add up per function (lines merged), self and cumulative."""
        raw = (
            "main (cli.py:10);work (stage.py:5);put (queue.py:122) 3\n"
            "main (cli.py:10);work (stage.py:7) 1\n"
        )
        text = summarize_raw(raw)
        by_self, by_cumulative = text.split("## By cumulative samples")
        assert "75.0%        3  put (queue.py)" in by_self
        assert "25.0%        1  work (stage.py)" in by_self
        assert "100.0%        4  main (cli.py)" in by_cumulative
        assert "100.0%        4  work (stage.py)" in by_cumulative

    def test_no_samples(self) -> None:
        """A run too short to sample says so."""
        assert summarize_raw("").startswith("no samples")


class TestBatchProcessor:
    def _results(self, path: Path, sizes: list[int]) -> Path:
        path.write_text(
            "".join(
                json.dumps({"status": "succeeded", "result": {"batch": size}}) + "\n"
                for size in sizes
            )
        )
        return path

    def test_a_batched_run_must_show_a_batch(self, tmp_path: Path) -> None:
        """A batched row whose calls all took one file does not count."""
        path = self._results(tmp_path / "r.jsonl", [1, 1, 1])
        verify_batches(path, 3, batched=False)
        with pytest.raises(VerificationError, match="not batched"):
            verify_batches(path, 3, batched=True)

    def test_every_entry_must_succeed(self, tmp_path: Path) -> None:
        """A lost or failed entry fails the run."""
        path = self._results(tmp_path / "r.jsonl", [2, 2])
        with pytest.raises(VerificationError, match="2 of 2 succeeded, 3 expected"):
            verify_batches(path, 3, batched=True)

    def test_the_per_file_processor_through_the_cli(self, tmp_path: Path) -> None:
        """The case's per-file processor runs by ``module:Class`` and passes the case's check."""
        entries = [{"url": f"http://127.0.0.1:9/b{index}.bin"} for index in range(20)]
        listing = tmp_path / "list.json"
        listing.write_text(json.dumps(entries))
        results = tmp_path / "results.jsonl"
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "",
        }
        completed = subprocess.run(
            [
                sys.executable,
                "-c",
                "from download_pipeline_processor.cli import main; main()",
                "--files",
                str(listing),
                "--simulate-downloads",
                "--no-sleep",
                "--download-cache",
                str(tmp_path / "cache"),
                "--processor",
                "benchmarks.batch_processor:PerFileInference",
                "--processing-limit",
                "1",
                "--post-processor",
                "jsonl",
                "--post-processor-option",
                f"path={results}",
                "--quiet",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        verify_batches(results, 20, batched=False)
