"""The ``dask`` executor on a real local cluster: 2 worker processes, real HTTP on 127.0.0.1.

Most runs share one cluster (``--executor-option scheduler=...``); the
command-line success run, the interrupt runs and the secrets run let the
executor start its own (``n_workers=2``), and the worker-loss tests start
the cluster whose workers they kill.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from dask_helpers import (
    CLI,
    SHA256,
    SIGNAL_EXIT_CODES,
    Recorder,
    alive,
    body,
    cli_env,
    descendants,
    error_lines,
    failure_groups,
    invoke,
    port_taken,
    read_jsonl,
    run_bounded,
    run_pipeline_bounded,
    start_cluster,
    wait_until,
    write_list,
)
from dask_test_processors import BatchSha256, SettlesEveryFourth, Sha256

import dpp_dask.plugin
from download_pipeline_processor import ProcessingPipeline
from download_pipeline_processor.testing import FileServer, make_plugin_manager

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc; POSIX signals")


def serve(server: FileServer, count: int, prefix: str = "f") -> list[dict[str, Any]]:
    """``count`` files with distinct bodies, ids ``{prefix}0``..."""
    return [
        {"id": f"{prefix}{i}", "url": server.add(f"/{prefix}{i}.bin", body(i))}
        for i in range(count)
    ]


def dask_pipeline(
    scheduler: str | None, post_processors: list[Any], **settings: Any
) -> ProcessingPipeline:
    """A pipeline on the ``dask`` executor (the shared cluster's scheduler, or its own cluster)."""
    options = dict(settings.pop("executor_options", {}))
    if scheduler is not None:
        options["scheduler"] = scheduler
    settings.setdefault("retry_backoff", 0.0)
    return ProcessingPipeline(
        settings.pop("processor", Sha256),
        post_processors,
        executor="dask",
        executor_options=options,
        plugin_manager=settings.pop("plugin_manager", None) or make_plugin_manager(dpp_dask.plugin),
        **settings,
    )


def curl_pipeline(processor: type, scheduler: str, recorder: Recorder) -> ProcessingPipeline:
    """A pipeline on the shared cluster in batches of 8, downloading with ``curl``."""
    dpp_curl_plugin = pytest.importorskip("dpp_curl.plugin")
    return dask_pipeline(
        scheduler,
        [recorder],
        processor=processor,
        executor_options={"batch_size": 8},
        downloader="curl",
        plugin_manager=make_plugin_manager(dpp_dask.plugin, dpp_curl_plugin),
    )


def dask_args(scheduler: str | None, *options: str) -> list[str]:
    """``--executor dask`` with the shared cluster's scheduler, or a local cluster of 2 workers."""
    where = f"scheduler={scheduler}" if scheduler is not None else "n_workers=2"
    args = ["--executor", "dask", "--executor-option", where]
    for option in options:
        args += ["--executor-option", option]
    return args


def report_args(listing: Path | str, out: Path, summary: Path, *more: str) -> list[str]:
    """A run of the test processor, one jsonl line per file and the summary as JSON."""
    return [
        "--files",
        str(listing),
        "--processor",
        SHA256,
        *more,
        "--post-processor",
        "jsonl",
        "--post-processor-option",
        f"path={out}",
        "--summary-json",
        str(summary),
        "--retry-backoff",
        "0",
    ]


def assert_each_once(ids: list[str], expected: list[dict[str, Any]]) -> None:
    """Every expected id reported exactly once, and nothing else."""
    assert len(ids) == len(expected), f"{len(ids)} reported for {len(expected)} files"
    assert sorted(ids) == sorted(entry["id"] for entry in expected)


class TestRuns:
    """Whole runs: right content once per file, failures at the right stage with their reason."""

    def test_cli_checksums_each_file_once(self, tmp_path: Path, file_server: FileServer) -> None:
        """The console script on its own 2-worker cluster reports 200 files once, right sha256."""
        files = serve(file_server, 200)
        listing = write_list(tmp_path / "files.json", files)
        out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
        args = [
            "--files",
            str(listing),
            "--processor",
            "checksum",
            "--post-processor",
            "jsonl",
            "--post-processor-option",
            f"path={out}",
            "--summary-json",
            str(summary),
            *dask_args(None, "batch_size=16"),
        ]
        # Dask's default HTTP port taken, as by another run on the machine.
        with port_taken(8787):
            completed = run_bounded(args)
        assert completed.returncode == 0, completed.stderr
        # The summary, and no word from Dask.
        lines = error_lines(completed.stderr)
        assert lines[0] == "200 files: 200 succeeded, 0 failed", completed.stderr
        assert len(lines) == 2, completed.stderr
        rows = read_jsonl(out)
        assert_each_once([row["id"] for row in rows], files)
        for row in rows:
            index = int(row["id"][1:])
            assert row["status"] == "succeeded"
            assert row["result"]["sha256"] == hashlib.sha256(body(index)).hexdigest()
            assert row["result"]["size"] == len(body(index))
        report = json.loads(summary.read_text())
        assert (report["total"], report["succeeded"], report["failed"]) == (200, 200, 0)
        assert report["bytes_downloaded"] == sum(len(body(i)) for i in range(200))
        assert file_server.request_count() == 200

    @pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
    def test_worker_processes_keep_dask_logs_off_stderr(
        self, tmp_path: Path, file_server: FileServer, debug: bool
    ) -> None:
        """Dask's own log lines in the local cluster's workers stay off stderr unless --debug."""
        files = serve(file_server, 20)
        listing = write_list(tmp_path / "files.json", files)
        out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
        args = report_args(
            listing,
            out,
            summary,
            "--processor-option",
            f"noise_ids={files[3]['id']},{files[17]['id']}",
            *dask_args(None, "batch_size=4"),
            *(["--debug"] if debug else []),
        )
        completed = run_bounded(args)
        assert completed.returncode == 0, completed.stderr
        assert_each_once([row["id"] for row in read_jsonl(out)], files)
        assert ("dask-internal-noise" in completed.stderr) is debug, completed.stderr[-3000:]

    def test_download_failures_reported_once(
        self, tmp_path: Path, file_server: FileServer, scheduler: str
    ) -> None:
        """404s and a permanent 503 (no retries) fail once each at stage download, exit 1."""
        good = serve(file_server, 30)
        missing = [{"id": f"gone{i}", "url": file_server.url(f"/gone{i}.bin")} for i in range(3)]
        busy = {"id": "busy", "url": file_server.add("/busy.bin", b"b", statuses=(503,))}
        files = good[:10] + missing[:2] + good[10:20] + [busy, missing[2]] + good[20:]
        listing = write_list(tmp_path / "files.json", files)
        out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
        args = report_args(listing, out, summary, "--max-retries", "0", *dask_args(scheduler))
        result = invoke(args)
        assert result.exit_code == 1, result.stderr
        rows = read_jsonl(out)
        assert_each_once([row["id"] for row in rows], files)
        failed = {row["id"]: row["error"] for row in rows if row["status"] != "succeeded"}
        assert set(failed) == {"gone0", "gone1", "gone2", "busy"}
        assert {error["stage"] for error in failed.values()} == {"download"}
        report = json.loads(summary.read_text())
        assert (report["succeeded"], report["failed"]) == (30, 4)
        assert failure_groups(report) == {("download", "HTTP 404"): 3, ("download", "HTTP 503"): 1}
        assert "3  HTTP 404 (download)" in result.stderr
        assert "1  HTTP 503 (download)" in result.stderr
        assert file_server.request_count("/busy.bin") == 1

    def test_processor_failures_reported_once(
        self, file_server: FileServer, scheduler: str
    ) -> None:
        """A processor raising for chosen files fails each once at stage process, named by type."""
        files = serve(file_server, 40)
        chosen = {"f3", "f17", "f38"}
        recorder = Recorder()
        pipeline = dask_pipeline(
            scheduler,
            [recorder],
            processor_options={"fail_ids": ",".join(sorted(chosen))},
            executor_options={"batch_size": 8},
        )
        assert run_pipeline_bounded(pipeline, files) == 1
        assert_each_once(recorder.ids, files)
        failed = {str(f.id): f.error for f in recorder.files if f.error is not None}
        assert set(failed) == chosen
        for error in failed.values():
            assert error.stage == "process"
            assert type(error.error).__name__ == "ChosenFailure"
        for file_data, result in zip(recorder.files, recorder.results):
            if file_data.error is None:
                index = int(str(file_data.id)[1:])
                assert result["sha256"] == hashlib.sha256(body(index)).hexdigest()
        summary = pipeline.summary
        assert (summary.succeeded, summary.failed) == (37, 3)
        assert {(g.stage, g.reason): g.count for g in summary.failures} == {
            ("process", "ChosenFailure"): 3
        }
        # The work ran on the cluster's workers, not here.
        assert os.getpid() not in {result["pid"] for result in recorder.results if result}


class TestWorkerLoss:
    """A worker process dying mid-run loses no file and doubles none."""

    def test_sigkill_of_a_busy_worker(self, file_server: FileServer) -> None:
        """SIGKILL of a busy worker: every file reported once, all succeeded, the run ends."""
        files = serve(file_server, 300)
        cluster, client = start_cluster()
        killed: list[tuple[int, float, int]] = []  # (pid, when, batches it was running)
        try:
            pids = client.run(os.getpid)

            def kill_a_busy_worker(reported: int) -> None:
                if reported != 60:
                    return
                # The worker with the most batches running: its work must be redone elsewhere.
                address, keys = max(client.processing().items(), key=lambda item: len(item[1]))
                os.kill(pids[address], signal.SIGKILL)  # a worker process Dask named, by PID
                killed.append((pids[address], time.monotonic(), len(keys)))

            recorder = Recorder(kill_a_busy_worker)
            pipeline = dask_pipeline(
                str(cluster.scheduler_address),
                [recorder],
                processor_options={"delay": 0.03},
                executor_options={"batch_size": 10},
            )
            code = run_pipeline_bounded(pipeline, files, timeout=120)
            ended = time.monotonic()
        finally:
            client.close()
            cluster.close()
        assert killed, "the run ended before 60 files were reported"
        _, when, running = killed[0]
        assert running >= 1, "the killed worker was running no batch"
        assert code == 0
        assert_each_once(recorder.ids, files)
        assert all(file_data.error is None for file_data in recorder.files)
        # The bound: a hang guard, not a measure of speed.
        assert ended - when < 60

    def test_poison_entry_fails_alone(self, file_server: FileServer) -> None:
        """A file that kills every worker it runs on fails alone, with WorkerLostError."""
        files = serve(file_server, 24)
        cluster, client = start_cluster(**{"distributed.scheduler.allowed-failures": 1})
        try:
            recorder = Recorder()
            pipeline = dask_pipeline(
                str(cluster.scheduler_address),
                [recorder],
                processor_options={"exit_ids": "f9"},
                executor_options={"batch_size": 6},
            )
            code = run_pipeline_bounded(pipeline, files, timeout=120)
        finally:
            client.close()
            cluster.close()
        assert code == 1
        assert_each_once(recorder.ids, files)
        failed = {str(f.id): f.error for f in recorder.files if f.error is not None}
        assert set(failed) == {"f9"}
        assert failed["f9"].stage == "process"
        assert type(failed["f9"].error).__name__ == "WorkerLostError"
        assert {(g.stage, g.reason): g.count for g in pipeline.summary.failures} == {
            ("process", "worker lost"): 1
        }


class TestInterrupt:
    """A stopped run on its own cluster: usual exit code, no file twice, no process left."""

    @pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
    def test_signal_stops_the_run_and_its_cluster(
        self, tmp_path: Path, file_server: FileServer, signum: signal.Signals
    ) -> None:
        """SIGINT (130) or SIGTERM (143) mid-run: summary printed, counts add up, workers gone."""
        files = serve(file_server, 400)
        listing = write_list(tmp_path / "files.json", files)
        out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
        args = report_args(
            listing,
            out,
            summary,
            "--processor-option",
            "delay=0.1",
            *dask_args(None, "batch_size=16"),
        )
        stderr_path = tmp_path / "stderr.txt"
        with stderr_path.open("w") as stderr:
            proc = subprocess.Popen(
                [str(CLI), *args], stdout=subprocess.DEVNULL, stderr=stderr, env=cli_env()
            )
        try:
            wait_until(lambda: len(read_jsonl(out)) >= 20, 60, "20 files reported")
            family = descendants(proc.pid)
            proc.send_signal(signum)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()  # the process this test started
                proc.wait()
        assert code == SIGNAL_EXIT_CODES[signum], stderr_path.read_text()[-3000:]
        assert len(family) >= 2, f"expected the cluster's worker processes, saw {family}"
        wait_until(
            lambda: not any(alive(pid, start) for pid, start in family),
            10,
            "every process of the run to end",
        )
        stderr_text = stderr_path.read_text()
        assert "Traceback" not in stderr_text
        assert_interrupted_apart(read_jsonl(out), json.loads(summary.read_text()), files, signum)

    def test_ctrl_c_in_a_terminal(self, tmp_path: Path, file_server: FileServer) -> None:
        """Ctrl-C (SIGINT to the whole process group, workers too): no traceback, exit 130,
        the files in flight interrupted and not failed, the headline counting them apart."""
        files = serve(file_server, 400)
        listing = write_list(tmp_path / "files.json", files)
        out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
        args = report_args(
            listing,
            out,
            summary,
            "--processor-option",
            "delay=1",
            *dask_args(None, "batch_size=16"),
        )
        master, slave = os.openpty()
        proc = subprocess.Popen(
            [str(CLI), *args],
            stdin=slave,
            stdout=subprocess.DEVNULL,
            stderr=slave,
            env={**cli_env(), "TERM": "xterm-256color"},
            # Its own process group, as a shell gives a foreground job: the
            # signal below goes to the group, as a terminal's Ctrl-C does.
            start_new_session=True,
        )
        os.close(slave)
        screen = bytearray()
        try:
            # The terminal is read as the run goes on: a full one would block the run.
            wait_until(
                lambda: read_terminal(master, screen) >= 0 and len(read_jsonl(out)) >= 20,
                60,
                "20 files reported",
            )
            family = descendants(proc.pid)
            os.killpg(proc.pid, signal.SIGINT)
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                read_terminal(master, screen)
                time.sleep(0.05)
            code = proc.wait(timeout=5)
            while read_terminal(master, screen):
                pass
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the group this test started
                proc.wait()
            os.close(master)
        text = screen.decode("utf-8", errors="replace")
        assert code == 130, text[-3000:]
        assert len(family) >= 2, f"expected the cluster's worker processes, saw {family}"
        for word in ("Traceback", "KeyboardInterrupt", "CancelledError"):
            assert word not in text, text[-3000:]
        report = json.loads(summary.read_text())
        assert_interrupted_apart(read_jsonl(out), report, files, signal.SIGINT)
        assert report["interrupted"] > 0, "no file was in flight at the signal"
        assert f"{report['failed']} failed, {report['interrupted']} interrupted" in text


def read_terminal(master: int, screen: bytearray) -> int:
    """Append what the terminal shows now to ``screen``; how many bytes came (0: none yet)."""
    ready, _, _ = select.select([master], [], [], 0)
    if not ready:
        return 0
    try:
        chunk = os.read(master, 65536)
    except OSError:  # EIO: every writer closed the terminal
        return 0
    screen.extend(chunk)
    return len(chunk)


def assert_interrupted_apart(
    rows: list[dict[str, Any]],
    report: dict[str, Any],
    files: list[dict[str, Any]],
    signum: signal.Signals,
) -> None:
    """Each file reported once; those in flight at the stop interrupted, none failed."""
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids))
    assert report["stopped_with"] == SIGNAL_EXIT_CODES[signum]
    assert report["total"] == len(files)
    assert len(ids) + report["not_started"] == len(files)
    assert report["not_started"] > 0, "the run finished before the signal"
    statuses = [row["status"] for row in rows]
    assert set(statuses) <= {"succeeded", "interrupted"}
    assert (report["succeeded"], report["interrupted"], report["failed"]) == (
        statuses.count("succeeded"),
        statuses.count("interrupted"),
        0,
    )
    assert report["failures"] == []
    for row in rows:
        if row["status"] == "interrupted":
            assert row["error"]["reason"] == "interrupted"
            assert not row["error"]["message"].startswith("PipelineInterrupted")


class TestJournal:
    """``--journal`` is shared by the executors: a rerun on either skips what the other finished."""

    @pytest.mark.parametrize(("first", "second"), [("local", "dask"), ("dask", "local")])
    def test_rerun_skips_succeeded_and_retries_failed(
        self, tmp_path: Path, file_server: FileServer, scheduler: str, first: str, second: str
    ) -> None:
        """Files the first run finished are skipped, not requested; its failures run again."""
        served = serve(file_server, 12, "ok")
        late = [{"id": f"late{i}", "url": file_server.url(f"/late{i}.bin")} for i in range(4)]
        files = served[:6] + late + served[6:]
        listing = write_list(tmp_path / "files.json", files)
        journal = tmp_path / "journal.db"
        where = {"local": [], "dask": dask_args(scheduler)}

        def run(executor: str, name: str) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
            out, summary = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.json"
            args = report_args(listing, out, summary, "--max-retries", "0", *where[executor])
            result = invoke([*args, "--journal", str(journal)])
            return result.exit_code, read_jsonl(out), json.loads(summary.read_text())

        code, rows, report = run(first, "first")
        assert code == 1
        assert_each_once([row["id"] for row in rows], files)
        assert (report["succeeded"], report["failed"]) == (12, 4)
        # The server starts serving what failed; the rerun must ask for those alone.
        for i in range(4):
            file_server.add(f"/late{i}.bin", body(100 + i))
        asked_before = len(file_server.requests)
        code, rows, report = run(second, "second")
        assert code == 0
        assert_each_once([row["id"] for row in rows], late)
        assert all(row["status"] == "succeeded" for row in rows)
        assert (report["succeeded"], report["failed"], report["skipped"]) == (4, 0, 12)
        asked = sorted(request.target for request in file_server.requests[asked_before:])
        assert asked == [f"/late{i}.bin" for i in range(4)]


class TestOptions:
    """Bad executor options are a one-line usage error; listings and dry runs start no cluster."""

    @pytest.mark.parametrize(
        ("options", "expected"),
        [
            (["bogus=1"], "bogus"),
            (["batch_size=0"], "batch_size=0: must be >= 1"),
            (["n_workers=2", "scheduler=tcp://127.0.0.1:1"], "n_workers"),
            (["scheduler=tcp://127.0.0.1:1", "connect_timeout=1"], "tcp://127.0.0.1:1"),
        ],
        ids=["unknown", "batch-size-0", "n-workers-with-scheduler", "unreachable"],
    )
    def test_bad_option_is_one_line(
        self, tmp_path: Path, file_server: FileServer, options: list[str], expected: str
    ) -> None:
        """Each gives exit 2, one line naming the problem, no traceback and no request."""
        listing = write_list(tmp_path / "files.json", serve(file_server, 3))
        args = ["--files", str(listing), "--executor", "dask"]
        for option in options:
            args += ["--executor-option", option]
        result = invoke(args)
        assert result.exit_code == 2
        (line,) = error_lines(result.stderr)
        assert expected in line
        assert "Traceback" not in result.output + result.stderr
        assert file_server.request_count() == 0

    def test_process_mode_refused(self, tmp_path: Path, file_server: FileServer) -> None:
        """``--processing-mode process`` with dask is exit 2, one line naming it."""
        listing = write_list(tmp_path / "files.json", serve(file_server, 3))
        args = ["--files", str(listing), "--processing-mode", "process"]
        result = invoke([*args, *dask_args(None)])
        assert result.exit_code == 2
        (line,) = error_lines(result.stderr)
        assert "--processing-mode process" in line
        assert file_server.request_count() == 0

    def test_plugins_lists_dask_with_its_options(self) -> None:
        """``plugins`` names ``dask`` as an executor, with every option it takes."""
        result = invoke(["plugins"])
        assert result.exit_code == 0, result.stderr
        (row,) = [line for line in result.output.splitlines() if line.startswith("dask ")]
        assert row.split()[:2] == ["dask", "executor"]
        for name in (
            "scheduler",
            "n_workers",
            "threads_per_worker",
            "batch_size",
            "batches_in_flight",
            "connect_timeout",
            "idle_timeout",
        ):
            assert f"--executor-option {name}=" in result.output

    def test_dry_run_contacts_no_scheduler(self, tmp_path: Path, file_server: FileServer) -> None:
        """A dry run with an unreachable scheduler succeeds: it names the executor, asks nothing."""
        listing = write_list(tmp_path / "files.json", serve(file_server, 3))
        args = ["--files", str(listing), "--dry-run", "--executor", "dask"]
        result = invoke([*args, "--executor-option", "scheduler=tcp://127.0.0.1:1"])
        assert result.exit_code == 0, result.stderr
        assert "executor 'dask' (scheduler=tcp://127.0.0.1:1)" in result.output
        assert file_server.request_count() == 0

    def test_dry_run_starts_no_cluster(self, tmp_path: Path, file_server: FileServer) -> None:
        """A dry run on a would-be local cluster never even imports Dask in its process."""
        listing = write_list(tmp_path / "files.json", serve(file_server, 3))
        args = ["--files", str(listing), "--dry-run", *dask_args(None)]
        # The command line's own main(), in a fresh interpreter that can say what it imported.
        script = (
            "import sys\n"
            "from download_pipeline_processor.cli import main\n"
            f"main({args!r}, standalone_mode=False)\n"
            "print('distributed imported:', 'distributed' in sys.modules)\n"
        )
        completed = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env=cli_env(),
            timeout=60,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        assert "executor 'dask' (n_workers=2)" in completed.stdout
        assert "distributed imported: False" in completed.stdout
        assert file_server.request_count() == 0


class TestSecrets:
    """A dask run keeps URL tokens and header values out of every log and report."""

    def test_no_secret_in_logs_or_reports(self, tmp_path: Path, file_server: FileServer) -> None:
        """No query token or Authorization value reaches stderr, log file, jsonl or summary.

        Run with ``--debug`` (Dask's own logs too) and with a file that kills
        its workers: Dask logs a failed task with its arguments.
        """
        token, bearer = "SECRET123", "SECRET456"
        files = [
            {"id": f"s{i}", "url": file_server.add(f"/s{i}.bin", body(i)) + f"?token={token}"}
            for i in range(20)
        ]
        files += [
            {"id": f"gone{i}", "url": file_server.url(f"/gone{i}.bin") + f"?token={token}"}
            for i in range(3)
        ]
        listing = write_list(tmp_path / "files.json", files)
        out, summary, log = tmp_path / "out.jsonl", tmp_path / "summary.json", tmp_path / "run.log"
        args = report_args(listing, out, summary, "--processor-option", "fail_ids=s7")
        args += ["--processor-option", "exit_ids=s12", "--debug"]
        args += ["--header", f"Authorization: Bearer {bearer}", "--log-file", str(log)]
        args += ["--max-retries", "0", *dask_args(None, "batch_size=4")]
        # The subprocess's own scheduler gives up on a task after 2 worker deaths, not 4.
        env = {**cli_env(), "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}
        completed = run_bounded(args, env)
        assert completed.returncode == 1, completed.stderr[-3000:]
        assert not completed.stdout
        rows = read_jsonl(out)
        assert_each_once([row["id"] for row in rows], files)
        report = json.loads(summary.read_text())
        assert failure_groups(report) == {
            ("download", "HTTP 404"): 3,
            ("process", "ChosenFailure"): 1,
            ("process", "worker lost"): 1,
        }
        # The secrets did reach the server: the run used them, it only kept them out of sight.
        # (A file may be requested twice: its batch reran when s12 killed their worker.)
        samples = [r for r in file_server.requests if r.target.startswith("/s0.bin")]
        assert samples
        for sample in samples:
            assert token in sample.target
            sent = [v for name, v in sample.headers.items() if name.lower() == "authorization"]
            assert sent == [f"Bearer {bearer}"]
        for name, text in (
            ("stderr", completed.stderr),
            ("log file", log.read_text()),
            ("jsonl", out.read_text()),
            ("summary", summary.read_text()),
        ):
            assert text, f"the {name} is empty: nothing was checked"
            assert token not in text, name
            assert bearer not in text, name


class TestBatches:
    """Batching keeps every entry once, whatever the input's size or source."""

    def test_small_batches_few_in_flight(self, file_server: FileServer, scheduler: str) -> None:
        """batch_size=7 with 2 batches in flight over 50 files (a partial last batch): each once."""
        files = serve(file_server, 50)
        recorder = Recorder()
        pipeline = dask_pipeline(
            scheduler, [recorder], executor_options={"batch_size": 7, "batches_in_flight": 2}
        )
        assert run_pipeline_bounded(pipeline, files) == 0
        assert_each_once(recorder.ids, files)
        for file_data, result in zip(recorder.files, recorder.results):
            index = int(str(file_data.id)[1:])
            assert result["sha256"] == hashlib.sha256(body(index)).hexdigest()

    def test_process_batch_on_the_workers(self, file_server: FileServer, scheduler: str) -> None:
        """A processor with process_batch gets batches on the workers, with the same failure rules.

        An exception instance in its list fails that file alone; a raise fails its whole batch.
        """
        files = serve(file_server, 24)
        recorder = Recorder()
        pipeline = dask_pipeline(
            scheduler,
            [recorder],
            processor=BatchSha256,
            processor_options={"fail_ids": "f5", "raise_ids": "f20"},
            processing_batch_size=4,
            processing_batch_wait=5.0,
            download_workers=1,
            processing_limit=1,
            executor_options={"batch_size": 8},
        )
        assert run_pipeline_bounded(pipeline, files) == 1
        assert_each_once(recorder.ids, files)
        failed = {str(f.id): f.error for f in recorder.files if f.error is not None}
        assert "f5" in failed
        assert "f20" in failed
        # f20's batch failed whole; f5's batch lost f5 alone.
        assert 2 <= len(failed) <= 5
        for error in failed.values():
            assert error.stage == "process"
            assert type(error.error).__name__ == "ChosenFailure"
        batch_sizes = {result["batch"] for result in recorder.results if result}
        assert max(batch_sizes) > 1
        assert max(batch_sizes) <= 4
        assert os.getpid() not in {result["pid"] for result in recorder.results if result}

    def test_standard_input(self, tmp_path: Path, file_server: FileServer, scheduler: str) -> None:
        """``--files -`` streams the list from standard input through the dask executor."""
        files = serve(file_server, 30)
        text = "".join(json.dumps(entry) + "\n" for entry in files)
        out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
        args = report_args("-", out, summary, *dask_args(scheduler, "batch_size=8"))
        result = invoke(args, input=text)
        assert result.exit_code == 0, result.stderr
        rows = read_jsonl(out)
        assert_each_once([row["id"] for row in rows], files)
        assert all(row["status"] == "succeeded" for row in rows)
        assert json.loads(summary.read_text())["succeeded"] == 30


class TestMultiplexingDownloader:
    """A downloader that drives every transfer from one thread (``curl``) works on the workers."""

    def test_curl_downloads_every_batch(self, file_server: FileServer, scheduler: str) -> None:
        """``--downloader curl`` over 100 files in batches finishes each once, without stalling."""
        files = serve(file_server, 100)
        recorder = Recorder()
        assert run_pipeline_bounded(curl_pipeline(Sha256, scheduler, recorder), files, 45) == 0
        assert_each_once(recorder.ids, files)
        for file_data, result in zip(recorder.files, recorder.results):
            index = int(str(file_data.id)[1:])
            assert result["sha256"] == hashlib.sha256(body(index)).hexdigest()

    def test_curl_with_files_settled_without_download(
        self, file_server: FileServer, scheduler: str
    ) -> None:
        """A batch's last entry settled without a download does not hold the curl loop either."""
        files = serve(file_server, 100)
        recorder = Recorder()
        pipeline = curl_pipeline(SettlesEveryFourth, scheduler, recorder)
        assert run_pipeline_bounded(pipeline, files, 45) == 0
        assert_each_once(recorder.ids, files)
        for file_data, result in zip(recorder.files, recorder.results):
            index = int(str(file_data.id)[1:])
            if index % 4 == 3:
                assert result == {"settled": True}
            else:
                assert result["sha256"] == hashlib.sha256(body(index)).hexdigest()
        assert file_server.request_count() == 75
