"""The built-in ``processes`` executor: the stages in N spawned worker processes.

Real parts throughout: worker processes started with ``spawn``, a real HTTP
server on 127.0.0.1, the command line in this process (click's runner) or as
a real subprocess, real signals (SIGKILL to a worker, SIGINT and SIGTERM to
the run).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cli_helpers import checksum_report_args, write_list
from download_pipeline_processor._plugins import LOAD_PLUGINS_ENV, create_plugin_manager
from download_pipeline_processor.cli import main
from download_pipeline_processor.testing import FileServer, leftover_files

PLUGIN_MODULES = Path(__file__).resolve().parent / "plugin_modules"
CLI = str(Path(sys.executable).parent / "download-pipeline-processor")


@pytest.fixture(autouse=True)
def _plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test plugin modules importable by name (the worker processes get sys.path too)."""
    monkeypatch.syspath_prepend(str(PLUGIN_MODULES))
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "")


def invoke(args: list[str]) -> Result:
    manager = create_plugin_manager()
    return CliRunner().invoke(main, args, obj={"plugin_manager": manager}, catch_exceptions=False)


def serve(server: FileServer, count: int, delay: float = 0.0) -> dict[str, str]:
    """``count`` distinct bodies served; ids mapped to their sha256."""
    digests = {}
    for index in range(count):
        body = f"body {index} ".encode() * (index % 7 + 1)
        server.add(f"/f{index}.bin", body, delay=delay)
        digests[f"f{index}"] = hashlib.sha256(body).hexdigest()
    return digests


def listing_of(server: FileServer, folder: Path, ids: list[str]) -> Path:
    entries = [{"id": entry_id, "url": server.url(f"/{entry_id}.bin")} for entry_id in ids]
    return write_list(folder / "l.json", entries)


def read_report(report: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def worker_pids(pid: int) -> list[int]:
    """The spawned worker processes among ``pid``'s children."""
    pids = []
    for child in children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            pids.append(child)
    return pids


def running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class TestExactlyOnce:
    """Every file reported once, with the right content, whatever its outcome."""

    def test_200_files_404_and_processor_failure_each_once(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        digests = serve(file_server, 200)
        file_server.add("/bad1.bin", b"unreadable")
        ids = [*digests, "bad1", "missing"]
        listing = listing_of(file_server, tmp_path, ids)
        report, summary = tmp_path / "out.jsonl", tmp_path / "s.json"
        args = checksum_report_args(listing, report, tmp_path / "cache", "--retry-backoff", "0")
        args[args.index("checksum")] = "executor_plugins:ChecksumOrFail"
        result = invoke(
            [
                *args,
                "--summary-json",
                str(summary),
                "--executor",
                "processes",
                "--executor-option",
                "processes=2",
                "--executor-option",
                "batch_size=16",
            ]
        )
        assert result.exit_code == 1, result.stderr
        assert "Traceback" not in result.stderr
        records = read_report(report)
        assert sorted(r["id"] for r in records) == sorted(ids)
        by_id = {r["id"]: r for r in records}
        assert {i: by_id[i]["result"]["sha256"] for i in digests} == digests
        assert by_id["missing"]["error"]["stage"] == "download"
        assert by_id["bad1"]["error"]["stage"] == "process"
        assert "cannot read bad1" in by_id["bad1"]["error"]["message"]
        for entry_id in digests:
            assert file_server.request_count(f"/{entry_id}.bin") == 1
        totals = json.loads(summary.read_text())
        assert (totals["succeeded"], totals["failed"]) == (200, 2)
        assert leftover_files(tmp_path / "cache") == []

    def test_processor_set_up_failure_fails_each_file_once(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        """Processors that cannot be built in the workers: every file fails once, nothing hangs."""
        digests = serve(file_server, 10)
        listing = listing_of(file_server, tmp_path, list(digests))
        report = tmp_path / "out.jsonl"
        args = checksum_report_args(listing, report, tmp_path / "cache")
        args[args.index("checksum")] = "executor_plugins:BrokenSetUpProcessor"
        result = invoke([*args, "--executor", "processes"])
        assert result.exit_code == 1
        assert "Traceback" not in result.stderr
        # The workers' log lines reach this process's log handlers.
        assert "model weights missing" in result.stderr
        records = read_report(report)
        assert sorted(r["id"] for r in records) == sorted(digests)
        for record in records:
            assert record["error"]["stage"] == "process"
            assert "model weights missing" in record["error"]["message"]
        assert file_server.request_log == []


class TestPoisonEntry:
    """A file that kills every worker process running it fails alone; the others succeed."""

    def test_only_the_poison_entry_fails(self, tmp_path: Path, file_server: FileServer) -> None:
        digests = serve(file_server, 30)
        file_server.add("/poison.bin", b"deadly")
        ids = [*list(digests)[:10], "poison", *list(digests)[10:]]
        listing = listing_of(file_server, tmp_path, ids)
        report = tmp_path / "out.jsonl"
        args = checksum_report_args(listing, report, tmp_path / "cache", "--retry-backoff", "0")
        args[args.index("checksum")] = "process_plugins:KillingChecksum"
        result = invoke([*args, "--executor", "processes", "--executor-option", "batch_size=8"])
        assert result.exit_code == 1, result.stderr
        assert "Traceback" not in result.stderr
        records = read_report(report)
        assert sorted(r["id"] for r in records) == sorted(ids)
        by_id = {r["id"]: r for r in records}
        assert {i: by_id[i]["result"]["sha256"] for i in digests} == digests
        assert by_id["poison"]["status"] == "failed"
        assert by_id["poison"]["error"]["message"].startswith("worker lost: worker process")


class TestBadOptions:
    """What cannot be divided between processes, or makes no sense there: exit 2, one line."""

    @pytest.mark.parametrize(
        ("extra", "words"),
        [
            (["--executor-option", "processes=0"], "processes=0: must be >= 1"),
            (["--executor-option", "batch_size=x"], "batch_size"),
            (["--download-workers", "1"], "--download-workers 1 is a limit of the whole run"),
            (["--max-per-host", "1"], "--max-per-host 1 is a limit of the whole run"),
            (["--limit-rate", "1"], "--limit-rate 1 is a limit of the whole run"),
            (["--cache-size", "1M"], "--cache-size cannot be shared"),
            (["--processing-mode", "process"], "--processing-mode process does not run"),
        ],
    )
    def test_refused_before_any_request(
        self, tmp_path: Path, file_server: FileServer, extra: list[str], words: str
    ) -> None:
        listing = write_list(tmp_path / "l.json", [{"url": file_server.add("/o", b"o")}])
        result = invoke(
            [
                "--files",
                str(listing),
                "--executor",
                "processes",
                "--executor-option",
                "processes=2",
                *extra,
            ]
        )
        assert result.exit_code == 2, result.stderr
        (line,) = [line for line in result.stderr.splitlines() if line.strip()]
        assert words in line
        assert "Traceback" not in result.stderr
        assert file_server.request_log == []


def start_run(tmp_path: Path, listing: Path, *extra: str) -> subprocess.Popen[str]:
    """The command line as a real process, with the test plugin modules on its path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PLUGIN_MODULES), env.get("PYTHONPATH", "")])
    env[LOAD_PLUGINS_ENV] = ""
    args = checksum_report_args(listing, tmp_path / "out.jsonl", tmp_path / "cache", *extra)
    return subprocess.Popen(
        [
            CLI,
            *args,
            "--executor",
            "processes",
            "--executor-option",
            "processes=2",
            "--executor-option",
            "batch_size=4",
            "--download-workers",
            "4",
            "--retry-backoff",
            "0",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


class TestProcessesAndSignals:
    """A worker killed, a run interrupted: files once, no process left behind."""

    def test_sigkilled_worker_files_retried_on_another(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        digests = serve(file_server, 40, delay=0.2)
        listing = listing_of(file_server, tmp_path, list(digests))
        run = start_run(tmp_path, listing)
        try:
            wait_for(lambda: len(worker_pids(run.pid)) == 2 and file_server.request_count() >= 6)
            victim = worker_pids(run.pid)[0]
            os.kill(victim, signal.SIGKILL)
            _, stderr = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
        assert run.returncode == 0, stderr
        assert "Traceback" not in stderr
        assert "died" in stderr  # the loss is reported, the files retried
        records = read_report(tmp_path / "out.jsonl")
        assert sorted(r["id"] for r in records) == sorted(digests)
        assert {r["id"]: r["result"]["sha256"] for r in records} == digests
        assert not running(victim)

    @pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
    def test_signal_stops_cleanly_and_journal_rerun_fetches_the_rest(
        self, tmp_path: Path, file_server: FileServer, sig: int, code: int
    ) -> None:
        digests = serve(file_server, 40, delay=0.3)
        slow = ["slow0", "slow1"]  # still downloading when the stop's grace period ends
        for entry_id in slow:
            file_server.add(f"/{entry_id}.bin", b"late", delay=60)
        listing = listing_of(file_server, tmp_path, [*slow, *digests])
        journal = tmp_path / "journal.db"
        run = start_run(tmp_path, listing, "--journal", str(journal))
        try:
            wait_for(lambda: len(worker_pids(run.pid)) == 2 and file_server.request_count() >= 6)
            workers = worker_pids(run.pid)
            stopped = time.monotonic()
            # Ctrl-C (and a service manager's stop) signal the whole process group.
            os.killpg(run.pid, sig)
            _, stderr = run.communicate(timeout=60)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
        assert run.returncode == code, stderr
        assert time.monotonic() - stopped < 20  # the slow files were not waited for
        assert "Traceback" not in stderr
        wait_for(lambda: not any(running(pid) for pid in workers), timeout=10)
        first = read_report(tmp_path / "out.jsonl")
        ids = [r["id"] for r in first]
        assert len(ids) == len(set(ids))
        by_id = {r["id"]: r for r in first}
        for entry_id in slow:
            assert by_id[entry_id]["status"] == "interrupted"
            file_server.add(f"/{entry_id}.bin", b"late")  # the rerun gets them at once
        done = {r["id"] for r in first if r["status"] == "succeeded"}
        assert done
        assert done != set(digests)
        assert leftover_files(tmp_path / "cache") == []
        before = {i: file_server.request_count(f"/{i}.bin") for i in digests}
        report2 = tmp_path / "two.jsonl"
        rerun = invoke(
            checksum_report_args(
                listing,
                report2,
                tmp_path / "cache",
                "--journal",
                str(journal),
                "--executor",
                "processes",
                "--retry-backoff",
                "0",
            )
        )
        assert rerun.exit_code == 0, rerun.stderr
        again = {
            entry_id
            for entry_id in digests
            if file_server.request_count(f"/{entry_id}.bin") > before[entry_id]
        }
        assert again == set(digests) - done
        rerun_ids = {r["id"]: r for r in read_report(report2)}
        assert set(rerun_ids) == again | set(slow)
        assert {i: rerun_ids[i]["result"]["sha256"] for i in again} == {
            i: digests[i] for i in again
        }
