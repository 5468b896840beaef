"""Child servers started by the harness, stopped by their own PID only."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

#: Every server still running, so atexit can stop what a crash left behind.
_RUNNING: dict[int, subprocess.Popen[bytes]] = {}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: the probes stay bound until all are chosen."""
    probes = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for children: no proxy may turn loopback traffic into network traffic."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    if extra:
        env.update(extra)
    return env


class ChildServer:
    """A long-running child process (nginx, the slow server) with a readiness check."""

    def __init__(self, name: str, argv: list[str], log_path: Path, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The child's PID while it runs."""
        return self.process.pid if self.process is not None else None

    def start(self, port: int, ready_timeout: float = 15.0) -> None:
        """Start the child and wait until ``port`` on 127.0.0.1 accepts connections."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            env=clean_env(),
        )
        _RUNNING[self.process.pid] = self.process
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"{self.name} exited at start-up: {self.tail_log()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                pass
            else:
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen on port {port}: {self.tail_log()}")

    def tail_log(self, limit: int = 2000) -> str:
        """The end of the child's log, for error messages."""
        try:
            return self.log_path.read_text(errors="replace")[-limit:].strip()
        except OSError:
            return "(no log)"

    def stop(self, grace: float = 5.0) -> None:
        """Stop the child by its PID: SIGTERM, then SIGKILL after ``grace`` seconds."""
        process = self.process
        if process is not None:
            _stop(process, grace)
            _RUNNING.pop(process.pid, None)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


def _stop(process: subprocess.Popen[bytes], grace: float) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait()


@atexit.register
def _stop_all() -> None:
    for process in list(_RUNNING.values()):
        _stop(process, 2.0)
    _RUNNING.clear()
