"""The soak test: a long job with random faults, a kill -9 and a rerun, checked against the truth.

2,000 small files, about 10 % of them faulty (connection resets, 503s,
truncated bodies, stalls, dripping bodies, wrong bytes), most faults
transient and some permanent, so the final outcome of every entry is known
in advance.  The real CLI runs it with a journal, is killed with SIGKILL once
a few hundred files are done, and a rerun with the same journal finishes the
job.  The fault plan is drawn from a seeded generator: set ``DPP_SOAK_SEED``
to replay a failing run (the seed is in every assertion message).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from download_pipeline_processor.testing import (
    RESET,
    Answer,
    FileServer,
    Pause,
    RangeOptions,
    raw_ok,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SEED = int(os.environ.get("DPP_SOAK_SEED", "20240611"))
FILES = 2000
FAULT_RATE = 0.10
#: Files reported before the kill.
KILL_AFTER = 300
MAX_RETRIES = 3
#: --timeout: a stalled answer costs this much per attempt.
TIMEOUT = 1.0
#: --file-timeout: a dripping body (each read in time, the whole too slow) costs this much.
FILE_TIMEOUT = 2.0
#: Faults that go away: each fails the first one or two requests, then serves right.
TRANSIENT = ("503", "reset", "truncate", "stall", "drip", "wrong_bytes")
#: Faults that stay, with the reason and HTTP status the journal must give them.
PERMANENT = {
    "always_503": ("HTTP 503", 503, MAX_RETRIES + 1),
    "always_wrong_bytes": ("sha256 mismatch", 200, MAX_RETRIES + 1),
    "not_found": ("HTTP 404", 404, 1),
}


@dataclass(frozen=True)
class Planned:
    """One entry of the plan: what the server holds and what must become of it."""

    id: str
    body: bytes
    fault: str | None
    #: Requests that fail before the right answer (transient faults).
    failures: int = 0

    @property
    def path(self) -> str:
        return f"/{self.id}"

    @property
    def can_succeed(self) -> bool:
        return self.fault not in PERMANENT


def head(length: int) -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n".encode()


def add_options(item: Planned) -> dict[str, Any] | None:
    """``FileServer.add`` options that serve ``item`` with its fault; None for a scripted fault."""
    body, failing = item.body, item.failures
    wrong = bytes(255 - byte for byte in body)
    options: dict[str | None, dict[str, Any]] = {
        None: {},
        "503": {"statuses": (503,) * failing + (200,)},
        # Cut after a third once or twice; the retry asks for the rest (206).
        "truncate": {
            "range_options": RangeOptions(
                cut_after=len(body) // 3, cut_requests=failing, etags=('"v1"',)
            )
        },
        "wrong_bytes": {
            "range_options": RangeOptions(ranges=False, bodies=(wrong,) * failing + (body,))
        },
        "always_503": {"statuses": (503,)},
        "always_wrong_bytes": {"range_options": RangeOptions(ranges=False, bodies=(wrong,))},
        "not_found": {"statuses": (404,)},
    }
    return options.get(item.fault)


def broken_answer(item: Planned, rng: random.Random) -> Answer:
    """The raw answer of one failing request of ``item``: a reset, a stall or a drip."""
    body = item.body
    if item.fault == "reset":
        return Answer(head(len(body)) + body[: rng.randrange(len(body))], RESET)
    if item.fault == "stall":
        return Answer(head(len(body)) + body[:1], Pause(10 * TIMEOUT), RESET)
    assert item.fault == "drip", item.fault
    # Every byte within --timeout, the whole body past --file-timeout.
    steps: list[Any] = [head(len(body))]
    for byte in body[: int(4 * FILE_TIMEOUT / 0.05)]:
        steps += [Pause(0.05), bytes([byte])]
    return Answer(*steps, RESET)


def serve(server: FileServer, item: Planned, rng: random.Random) -> str:
    """Put ``item`` on ``server`` with its fault; return its URL."""
    options = add_options(item)
    if options is not None:
        return server.add(item.path, item.body, **options)
    broken = broken_answer(item, rng)
    return server.script(item.path, *([broken] * item.failures), Answer(raw_ok(item.body)))


def make_plan(rng: random.Random) -> list[Planned]:
    """FILES entries, FAULT_RATE of them faulty; one in six faults permanent."""
    plan = []
    for index in range(FILES):
        body = rng.randbytes(rng.randint(200, 4000))
        fault = None
        failures = 0
        if rng.random() < FAULT_RATE:
            if rng.random() < 1 / 6:
                fault = rng.choice(sorted(PERMANENT))
            else:
                fault = rng.choice(TRANSIENT)
                # Slow faults once: each costs a worker a timeout.
                failures = 1 if fault in ("stall", "drip") else rng.randint(1, 2)
        plan.append(Planned(f"f{index:04}", body, fault, failures))
    return plan


def report_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    # A killed run may leave its last line half written.
    return [json.loads(line) for line in lines if line.strip().endswith("}")]


def journal_rows(path: Path) -> dict[str, dict[str, Any]]:
    connection = sqlite3.connect(path)
    connection.row_factory = sqlite3.Row
    try:
        return {row["id"]: dict(row) for row in connection.execute("SELECT * FROM entries")}
    finally:
        connection.close()


def cli(downloader: str, listing: Path, journal: Path, report: Path, cache: Path) -> list[str]:
    script = Path(sys.executable).with_name("download-pipeline-processor")
    return [
        str(script),
        *("--files", str(listing), "--journal", str(journal)),
        *("--processor", "checksum", "--post-processor", "jsonl"),
        *("--post-processor-option", f"path={report}", "--download-cache", str(cache)),
        *("--downloader", downloader, "--download-workers", "16"),
        *("--max-retries", str(MAX_RETRIES), "--retry-backoff", "0"),
        *("--timeout", str(TIMEOUT), "--file-timeout", str(FILE_TIMEOUT), "--quiet"),
    ]


# Only the downloader plugins under test: the broken test plugins stay out.
ENV = {**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "fast,curl"}


class TestSoak:
    """Faults, a kill -9 and a rerun: every entry reported once per run, the truth kept."""

    @pytest.mark.parametrize("downloader", ["requests", "curl", "fast"])
    def test_faults_kill_and_rerun(self, downloader: str, tmp_path: Path) -> None:
        """2,000 files with 10 % random faults, kill -9 mid-run, rerun: the journal, the
        reports, the checksums and the empty cache all agree with the server's truth."""
        rng = random.Random(f"{SEED}-{downloader}")  # noqa: S311 - a fault plan, not a secret
        tag = f"seed {SEED}, {downloader}"
        plan = make_plan(rng)
        truth = {item.id: item for item in plan}
        faults = Counter(item.fault for item in plan if item.fault)
        assert set(faults) == set(TRANSIENT) | set(PERMANENT), faults
        listing, journal = tmp_path / "list.json", tmp_path / "journal.db"
        cache = tmp_path / "cache"
        first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
        with FileServer() as server:
            entries = [
                {
                    "id": item.id,
                    "url": serve(server, item, rng),
                    "sha256": hashlib.sha256(item.body).hexdigest(),
                }
                for item in plan
            ]
            listing.write_text(json.dumps(entries), encoding="utf-8")

            # The first run, killed once a few hundred files are reported.
            with (tmp_path / "first.err").open("w") as errors:
                proc = subprocess.Popen(
                    cli(downloader, listing, journal, first, cache), stderr=errors, env=ENV
                )
                deadline = time.monotonic() + 60
                while (
                    len(report_lines(first)) < KILL_AFTER
                    and proc.poll() is None
                    and time.monotonic() < deadline
                ):
                    time.sleep(0.05)
                time.sleep(rng.uniform(0, 0.2))
                proc.send_signal(signal.SIGKILL)  # killed whatever happened: no stray process
                proc.wait(timeout=30)
            # Killed while running (not finished early), after KILL_AFTER files.
            assert proc.returncode == -signal.SIGKILL, (tag, (tmp_path / "first.err").read_text())
            assert len(report_lines(first)) >= KILL_AFTER, f"{tag}: first run too slow"
            assert list(cache.iterdir()), f"{tag}: the killed run left no run folder to remove"
            done_before = {
                i for i, row in journal_rows(journal).items() if row["status"] == "succeeded"
            }
            assert len(done_before) >= KILL_AFTER // 2, tag
            requests_before = len(server.requests)

            # The rerun with the same journal finishes the job.
            rerun = subprocess.run(
                cli(downloader, listing, journal, second, cache),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                env=ENV,
            )
            assert rerun.returncode == 1, (tag, rerun.stderr[-3000:])
            rerun_requests = server.requests[requests_before:]
            counts = {item.id: server.request_count(item.path) for item in plan}
            ranged = [r for r in server.requests if "Range" in r.headers]

        # Every entry reported exactly once per run.
        first_ids = [line["id"] for line in report_lines(first)]
        second_ids = [line["id"] for line in report_lines(second)]
        assert len(first_ids) == len(set(first_ids)), tag
        assert len(second_ids) == len(set(second_ids)), tag
        # The rerun reports everything the journal did not hold as succeeded.
        assert set(second_ids) == set(truth) - done_before, tag
        # No entry recorded as succeeded was requested again.
        assert not {r.path[1:] for r in rerun_requests} & done_before, tag

        # The journal's final counts are the server's truth.
        rows = journal_rows(journal)
        assert set(rows) == set(truth), tag
        statuses = Counter(row["status"] for row in rows.values())
        can_succeed = {i for i, item in truth.items() if item.can_succeed}
        assert statuses == {"succeeded": len(can_succeed), "failed": FILES - len(can_succeed)}, tag
        for ident, row in rows.items():
            item = truth[ident]
            expected_sha = hashlib.sha256(item.body).hexdigest()
            if item.can_succeed:
                assert row["status"] == "succeeded", (tag, ident, item.fault, row)
                assert (row["sha256"], row["bytes"]) == (expected_sha, len(item.body)), (tag, row)
            else:
                reason, status, attempts = PERMANENT[str(item.fault)]
                assert row["status"] == "failed", (tag, ident, row)
                assert row["stage"] == "download", (tag, row)
                assert reason in row["reason"], (tag, row)
                assert (row["http_status"], row["attempts"]) == (status, attempts), (tag, row)

        # No file content is wrong: the checksum processor saw the served bytes.
        for line in report_lines(first) + report_lines(second):
            item = truth[line["id"]]
            if item.can_succeed:
                assert line["status"] == "succeeded", (tag, line)
                expected = {"sha256": hashlib.sha256(item.body).hexdigest(), "size": len(item.body)}
                assert line["result"] == expected, (tag, line)
            else:
                assert line["status"] == "failed", (tag, line)

        # The faults really happened: each transient one was asked for again.
        for item in plan:
            if item.fault in TRANSIENT:
                assert counts[item.id] >= item.failures + 1, (tag, item.id, item.fault)
        assert any(
            r.path in {item.path for item in plan if item.fault == "truncate"} for r in ranged
        ), tag

        # The cache is empty: the rerun removed the killed run's folder and its own.
        assert not list(cache.iterdir()), (tag, list(cache.rglob("*")))
