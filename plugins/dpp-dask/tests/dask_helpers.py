"""What the dask tests share: running the command line, reading its reports, the workers' PIDs.

A plain module next to the conftest (on ``sys.path`` from there), since
test modules cannot import a conftest in importlib mode.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import pytest
from click.testing import CliRunner, Result

import dpp_dask.plugin
from download_pipeline_processor import BasePostProcessor, FileData, ProcessingPipeline
from download_pipeline_processor.cli import main
from download_pipeline_processor.testing import make_plugin_manager, run_command_bounded

HERE = Path(__file__).resolve().parent
CLI = Path(sys.executable).with_name("download-pipeline-processor")

#: Dask's client: partly typed.
DaskClient = Any

#: The processor class every run here uses, as the command line names it.
SHA256 = "dask_test_processors:Sha256"


def start_cluster(**config: Any) -> tuple[Any, DaskClient]:
    """A LocalCluster of 2 worker processes (2 threads each) on 127.0.0.1, and a client of it.

    ``config`` is Dask configuration in force while the cluster starts (the
    scheduler reads ``distributed.scheduler.allowed-failures`` then).
    """
    import dask
    import distributed

    with dask.config.set(config):
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            processes=True,
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address=None,
            # Its health and metrics server on a free port, not on 8787 (warned about when taken).
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.ERROR,
        )
    client = distributed.Client(cluster, set_as_default=False)
    client.wait_for_workers(2, timeout=60)
    return cluster, client


def cli_env() -> dict[str, str]:
    """The environment of a command-line subprocess: this folder importable, only ``dask`` loaded.

    The local cluster's workers are spawned by that subprocess and inherit
    its PYTHONPATH, so they import ``dask_test_processors`` too.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    env["DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS"] = "dask"
    env["NETRC"] = str(HERE / "no-such-netrc")
    return env


def run_bounded(
    args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a real process; fail the test (and kill that process) if it hangs."""
    return run_command_bounded([str(CLI), *args], env or cli_env(), timeout)


def invoke(args: Sequence[str], input: str | None = None, timeout: float = 90) -> Result:
    """Run the CLI in this process, with the built-ins and the ``dask`` executor only.

    On a thread, so that a run that never ends fails the test instead of hanging it.
    """
    obj = {"plugin_manager": make_plugin_manager(dpp_dask.plugin)}
    results: list[Result] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(
                CliRunner().invoke(main, list(args), obj=obj, input=input, catch_exceptions=False)
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the test below
            errors.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(timeout)
    if runner.is_alive():
        pytest.fail(f"the command line was still running {timeout:.0f} s after it was started")
    if errors:
        raise errors[0]
    return results[0]


def run_pipeline_bounded(pipeline: ProcessingPipeline, files: Any, timeout: float = 90) -> int:
    """Run ``pipeline``, failing the test (instead of hanging it) if the run never ends."""
    codes: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            codes.append(pipeline.run(files))
        except BaseException as exc:  # noqa: BLE001 - handed to the test below
            errors.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(timeout)
    if runner.is_alive():
        pipeline.stop()
        runner.join(10)
        pytest.fail(f"the run did not finish within {timeout:.0f} s")
    if errors:
        raise errors[0]
    return codes[0]


def body(index: int) -> bytes:
    """A distinct body per file, of varying length."""
    return f"file {index}\n".encode() * (1 + index % 17)


def write_list(path: Path, entries: Iterable[Mapping[str, Any]]) -> Path:
    path.write_text(json.dumps(list(entries)), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def failure_groups(summary: Mapping[str, Any]) -> dict[tuple[str, str], int]:
    """``--summary-json``'s failure groups as {(stage, reason): count}."""
    return {(group["stage"], group["reason"]): group["count"] for group in summary["failures"]}


class Recorder(BasePostProcessor):
    """Keeps every file's id, outcome and result; calls ``when(count)`` after each one."""

    def __init__(self, when: Callable[[int], None] | None = None) -> None:
        self.files: list[FileData] = []
        self.results: list[Any] = []
        self.when = when

    def post_process(self, result: Any, file_data: FileData) -> None:
        self.files.append(file_data)
        self.results.append(result)
        if self.when is not None:
            self.when(len(self.files))

    @property
    def ids(self) -> list[str]:
        return [str(file_data.id) for file_data in self.files]


def descendants(pid: int) -> list[tuple[int, str]]:
    """Every process below ``pid`` (children of each of its threads, recursively), with start times.

    The start time (field 22 of /proc/PID/stat) tells a PID reused later
    apart from the process seen now.
    """
    found: list[tuple[int, str]] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:  # the thread or process ended meanwhile
                continue
            for child in map(int, children):
                start = _start_time(child)
                if start is not None:
                    found.append((child, start))
                    todo.append(child)
    return found


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: count the fields after its ')'.
    return stat.rsplit(")", 1)[1].split()[19]


def alive(pid: int, start: str) -> bool:
    """Whether the process seen with ``start`` still runs (a zombie or a reused PID does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] == start and fields[0] != "Z"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 20 ms; fail the test with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.02)


SIGNAL_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


@contextmanager
def port_taken(port: int) -> Iterator[None]:
    """``port`` on 127.0.0.1 is in use meanwhile (held here, or by whoever holds it already)."""
    listener = socket.socket()
    try:
        try:
            listener.bind(("127.0.0.1", port))
            listener.listen()
        except OSError:  # someone else holds it: just as taken
            pass
        yield
    finally:
        listener.close()
