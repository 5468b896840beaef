"""Tests for cache_budget.py: --cache-size and full disks, through the real pipeline over HTTP."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from download_helpers import SHIPPED_DOWNLOADERS, SHIPPED_PLUGINS, use_downloader
from download_pipeline_processor import BaseProcessor, FileData
from download_pipeline_processor._cache_budget import CacheBudget, GaveWay, RoomWanted
from download_pipeline_processor.errors import PipelineInterrupted
from download_pipeline_processor.sink import BodyWriter
from download_pipeline_processor.testing import (
    Answer,
    FileServer,
    Pause,
    PipelineOutcome,
    leftover_files,
    run_pipeline,
)

KIB = 1024


@pytest.fixture(params=SHIPPED_DOWNLOADERS)
def downloader(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Run the test once per shipped downloader set-up; the downloader's registered name."""
    return use_downloader(request.param, tmp_path, monkeypatch)


def cache_contents(file_data: FileData) -> dict[str, int]:
    """Every file in the run's cache folder (partial ones too) and its size.

    Counted by inode: a finished download gets its final name as a hard link
    before its ``.part`` name goes, and one file under two names is held once.
    """
    assert file_data.local_path is not None
    run_folder = file_data.local_path.parent.parent
    sizes = {}
    for folder, _, names in os.walk(run_folder):
        for name in names:
            path = os.path.join(folder, name)  # noqa: PTH118 - os.walk gives strings
            with contextlib.suppress(FileNotFoundError):  # discarded meanwhile
                info = os.stat(path)  # noqa: PTH116
                sizes[str(info.st_ino)] = info.st_size
    return sizes


def budgeted_writer(budget: CacheBudget, part: Path, stop: threading.Event) -> BodyWriter:
    """A body writer for ``part`` whose room comes from ``budget``, under its path as key."""

    def room(size: int, on_disk: int, wait: bool, exact: bool, ahead: int) -> int:
        return budget.need(str(part), size, on_disk, stop, wait=wait, exact=exact, ahead=ahead)

    return BodyWriter(part, room=room)


def started_writer(
    budget: CacheBudget, part: Path, stop: threading.Event, headers: dict[str, str] | None = None
) -> BodyWriter:
    """A ``budgeted_writer`` with an attempt begun on a 200 answer with ``headers``."""
    writer = budgeted_writer(budget, part, stop)
    writer.new_attempt()
    writer.begin(200, (headers or {}).get, None)
    return writer


def reserved(bound: int, *rooms: tuple[str, int | None]) -> tuple[CacheBudget, threading.Event]:
    """A budget of ``bound`` bytes with each ``(key, size)`` room reserved in order; its stop."""
    budget = CacheBudget(bound)
    stop = threading.Event()
    for key, size in rooms:
        budget.reserve(key, size, stop)
    return budget, stop


def read_records(report: Path) -> dict[str, dict[str, Any]]:
    """The jsonl report's records by id; none if the run wrote no report."""
    if not report.exists():
        return {}
    records = (json.loads(line) for line in report.read_text().splitlines())
    return {record["id"]: record for record in records}


def assert_hashed(records: dict[str, dict[str, Any]], bodies: dict[str, bytes]) -> None:
    """Each record's SHA-256 result is its body's, and there is one record per body."""
    digests = {name: hashlib.sha256(body).hexdigest() for name, body in bodies.items()}
    assert {name: record["result"]["sha256"] for name, record in records.items()} == digests


def attempts(records: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Each record's attempt count, by id."""
    return {name: record["attempts"] for name, record in records.items()}


class CacheWatcher(BaseProcessor):
    """Records what the cache holds each time a file is processed, then takes a moment."""

    seen: ClassVar[list[tuple[str, dict[str, int]]]] = []

    def process(self, file_data: FileData) -> Any:
        self.seen.append((file_data.id, cache_contents(file_data)))
        time.sleep(0.01)  # slower than the loopback downloads, so they would pile up
        return file_data.id


def run_shipped(
    files: list[dict[str, Any]], processor: Any, downloader: str, cache: Path, **settings: Any
) -> PipelineOutcome:
    """``run_pipeline`` with ``downloader`` (shipped plugins loaded) and ``cache`` as its cache."""
    return run_pipeline(
        files,
        processor,
        downloader=downloader,
        plugins=SHIPPED_PLUGINS,
        download_cache=cache,
        **settings,
    )


@pytest.fixture
def watcher() -> Iterator[type[CacheWatcher]]:
    """The CacheWatcher class with an empty record."""
    CacheWatcher.seen = []
    yield CacheWatcher
    CacheWatcher.seen = []


class TestCacheSizeBound:
    """--cache-size bounds the bytes held in the cache, and the run still gets every file."""

    @pytest.mark.parametrize("announced", [False, True], ids=["unknown-size", "size-field"])
    def test_cache_never_holds_more_than_the_bound(
        self,
        file_server: FileServer,
        cache_root: Path,
        downloader: str,
        watcher: type[CacheWatcher],
        announced: bool,
    ) -> None:
        """20 files of 100 KiB under a 250 KiB bound: the cache never holds more than 250 KiB."""
        files = []
        for index in range(20):
            entry: dict[str, Any] = {
                "id": str(index),
                "url": file_server.add(f"/f{index}.bin", bytes([index]) * (100 * KIB)),
            }
            if announced:
                entry["size"] = 100 * KIB
            files.append(entry)
        outcome = run_shipped(
            files,
            watcher,
            downloader,
            cache_root,
            cache_size=250 * KIB,
            download_workers=8,
            processing_limit=2,
        )
        assert outcome.exit_code == 0, outcome.failures
        assert sorted(outcome.results, key=int) == [str(i) for i in range(20)]
        held = [sum(contents.values()) for _, contents in watcher.seen]
        assert max(held) <= 250 * KIB
        assert leftover_files(cache_root) == []

    def test_larger_file_runs_alone(
        self,
        file_server: FileServer,
        cache_root: Path,
        downloader: str,
        watcher: type[CacheWatcher],
    ) -> None:
        """A file announced larger than the bound succeeds, with nothing else in the cache."""
        files = [
            {
                "id": f"small{i}",
                "url": file_server.add(f"/s{i}", b"s" * (100 * KIB)),
                "size": 100 * KIB,
            }
            for i in range(6)
        ]
        files.insert(
            3, {"id": "big", "url": file_server.add("/big", b"B" * (400 * KIB)), "size": 400 * KIB}
        )
        outcome = run_shipped(
            files, watcher, downloader, cache_root, cache_size=250 * KIB, download_workers=4
        )
        assert outcome.exit_code == 0, outcome.failures
        assert len(outcome.results) == 7
        seen = dict(watcher.seen)
        assert list(seen["big"].values()) == [400 * KIB]  # the big file, and nothing else
        assert all(
            sum(contents.values()) <= 250 * KIB for name, contents in seen.items() if name != "big"
        )


SLOW_CHECKSUM_MODULE = '''
import os
import time
from download_pipeline_processor.builtins import ChecksumProcessor

class SlowChecksum(ChecksumProcessor):
    """Hashes the file after a pause, so downloaded files wait in the cache for processing."""

    def process(self, file_data):
        time.sleep(float(os.environ["SLOW_CHECKSUM_DELAY"]))
        return super().process(file_data)
'''

MIB = 1024 * KIB


class CacheSampler:
    """Samples the real bytes in a cache folder every few ms, from a thread of the test.

    A walk of the folder is not atomic, so each sample counts only the files
    still there, as large or larger, when the walk ends: files only grow while
    they exist, so the sum is bytes the cache really held at once at the
    walk's end (one file under two names, its final one and ``.part``, once).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.stop = threading.Event()
        #: Each sample: inode -> bytes.
        self.samples: list[dict[int, int]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CacheSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(10)

    def _run(self) -> None:
        while not self.stop.wait(0.002):
            seen: dict[str, os.stat_result] = {}
            for folder, _, names in os.walk(self.root):
                for name in names:
                    path = os.path.join(folder, name)  # noqa: PTH118 - os.walk gives strings
                    with contextlib.suppress(FileNotFoundError):
                        seen[path] = os.stat(path)  # noqa: PTH116
            sample: dict[int, int] = {}
            for path, before in seen.items():
                with contextlib.suppress(FileNotFoundError):
                    after = os.stat(path)  # noqa: PTH116
                    if after.st_ino == before.st_ino and after.st_size >= before.st_size:
                        sample[before.st_ino] = before.st_size
            self.samples.append(sample)

    def over(self, limit: int) -> list[dict[int, int]]:
        """The samples holding more than ``limit`` bytes in more than one file.

        An empty file holds no bytes (a file waiting for room has one, made
        once the earlier attempt's bytes were gone).
        """
        return [
            sample
            for sample in self.samples
            if sum(sample.values()) > limit and len([s for s in sample.values() if s]) > 1
        ]


def run_cli_over_cache(
    tmp_path: Path,
    cli_path: Path,
    downloader: str,
    entries: list[dict[str, Any]],
    cache: Path,
    *,
    processor: tuple[str, str],
    env: dict[str, str],
    flags: list[str],
    timeout: float,
) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, Any]]]:
    """Run the CLI over ``entries`` into ``cache`` with ``flags``; the run and its records by id.

    ``processor``: ``module:Class`` and the module's source, written out into
    ``tmp_path`` (the run's ``PYTHONPATH``); ``env`` is added to the run's
    environment; the records are those of its jsonl report.
    """
    name, source = processor
    (tmp_path / f"{name.split(':')[0]}.py").write_text(source)
    listing = tmp_path / "files.json"
    listing.write_text(json.dumps(entries))
    report = tmp_path / "report.jsonl"
    command = [
        str(cli_path),
        "--files",
        str(listing),
        "--processor",
        name,
        "--post-processor",
        "jsonl",
        "--post-processor-option",
        f"path={report}",
        "--downloader",
        downloader,
        "--download-cache",
        str(cache),
        *flags,
    ]
    run = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path), **env},
        timeout=timeout,
        check=False,
    )
    return run, read_records(report)


def run_bounded_cli(
    tmp_path: Path,
    cli_path: Path,
    downloader: str,
    entries: list[dict[str, Any]],
    delay: float,
) -> tuple[subprocess.CompletedProcess[str], CacheSampler, dict[str, dict[str, Any]]]:
    """Run the CLI with ``--cache-size 1M`` over ``entries``, sampling its cache folder.

    The processor hashes each file after ``delay`` seconds; returns the run,
    the sampler and the report's records by id.
    """
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    flags = ["--cache-size", "1M", "--download-workers", "4", "--processing-limit", "2"]
    with CacheSampler(cache) as sampler:
        run, records = run_cli_over_cache(
            tmp_path,
            cli_path,
            downloader,
            entries,
            cache,
            processor=("slow_checksum_module:SlowChecksum", SLOW_CHECKSUM_MODULE),
            env={"SLOW_CHECKSUM_DELAY": str(delay)},
            flags=flags,
            timeout=60,
        )
    return run, sampler, records


def issue_entries(
    file_server: FileServer, framing: str
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Eight 400 KiB files and one 3 MiB file, without ``size``; and each id's SHA-256."""
    bodies = {f"small{i}": bytes([i + 1]) * (400 * KIB) for i in range(8)}
    bodies["big"] = os.urandom(3 * MIB)
    order = ["small0", "small1", "small2", "big", *[f"small{i}" for i in range(3, 8)]]
    entries = [
        {"id": name, "url": file_server.add(f"/{name}", bodies[name], framing=framing)}  # type: ignore[arg-type]
        for name in order
    ]
    digests = {name: hashlib.sha256(body).hexdigest() for name, body in bodies.items()}
    return entries, digests


class TestCacheBoundInRealBytes:
    """--cache-size holds in real bytes on disk for files of unannounced size, per downloader."""

    @pytest.mark.parametrize(
        "case",
        [("chunked", 0.02), ("length", 0.02), ("chunked", 0.3)],
        ids=["chunked", "content-length", "slow-processor"],
    )
    def test_cache_never_holds_more_than_the_bound_on_disk(
        self,
        tmp_path: Path,
        file_server: FileServer,
        cli_path: Path,
        downloader: str,
        case: tuple[str, float],
    ) -> None:
        """8 x 400 KiB and 3 MiB, no size: at most 1 MiB on disk unless the big file is alone.

        ``case``: the bodies' framing (chunked, or with a Content-Length) and
        the processor's delay (a slow one leaves downloaded files waiting).
        """
        framing, delay = case
        entries, digests = issue_entries(file_server, framing)
        run, sampler, records = run_bounded_cli(tmp_path, cli_path, downloader, entries, delay)
        assert run.returncode == 0, run.stderr
        assert "Traceback" not in run.stderr
        assert {name: record["result"]["sha256"] for name, record in records.items()} == digests
        assert len(sampler.samples) > 20
        assert max(sum(s.values()) for s in sampler.samples) > 0  # the watcher saw the files
        assert sampler.over(MIB) == []
        assert leftover_files(tmp_path / "cache") == []

    def test_two_large_files_of_unannounced_size_do_not_deadlock(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path, downloader: str
    ) -> None:
        """Two 2 MiB files outgrow their room at once: one waits, one gives way; both succeed."""
        bodies = {f"small{i}": bytes([i + 1]) * (400 * KIB) for i in range(2)}
        bodies.update(big1=os.urandom(2 * MIB), big2=os.urandom(2 * MIB))
        entries = [{"id": "small0", "url": file_server.add("/small0", bodies["small0"])}]
        for name in ("big1", "big2"):
            # Streamed slowly, so both are under way when they outgrow their room.
            entries.append(
                {"id": name, "url": file_server.script(f"/{name}", slow_chunked(bodies[name]))}
            )
        entries.append({"id": "small1", "url": file_server.add("/small1", bodies["small1"])})
        run, sampler, records = run_bounded_cli(tmp_path, cli_path, downloader, entries, 0.02)
        assert run.returncode == 0, run.stderr
        assert_hashed(records, bodies)
        assert sampler.over(MIB) == []
        assert leftover_files(tmp_path / "cache") == []


def slow_chunked(body: bytes, piece: int = 64 * KIB, pause: float = 0.01) -> Answer:
    """A chunked 200 answer of ``body``, ``piece`` bytes a chunk, ``pause`` seconds apart."""
    steps: list[Any] = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
    for start in range(0, len(body), piece):
        data = body[start : start + piece]
        steps += [f"{len(data):x}\r\n".encode() + data + b"\r\n", Pause(pause)]
    steps.append(b"0\r\n\r\n")
    return Answer(*steps)


HOLDER_MODULE = '''
import time
from download_pipeline_processor import BaseProcessor

class Holder(BaseProcessor):
    """Keeps every file for a long time, so the downloads behind it wait for room."""

    def process(self, file_data):
        time.sleep(30)
        return None
'''


class TestStopWhileWaiting:
    """A stop wakes downloads that wait for room in the cache."""

    def test_sigint_during_wait_stops_promptly(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path, downloader: str
    ) -> None:
        """SIGINT while downloads wait for room ends the run in seconds, exit 130, cache empty."""
        (tmp_path / "holder_module.py").write_text(HOLDER_MODULE)
        entries = [
            {"id": str(i), "url": file_server.add(f"/h{i}", b"h" * (10 * KIB))} for i in range(20)
        ]
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps(entries))
        cache = tmp_path / "cache"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(tmp_path)}
        proc = subprocess.Popen(
            [
                str(cli_path),
                "--files",
                str(listing),
                "--processor",
                "holder_module:Holder",
                "--downloader",
                downloader,
                "--download-cache",
                str(cache),
                "--cache-size",
                "1K",
                "--download-workers",
                "4",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            # The first file is in the cache (held by the processor): the rest wait for room.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and file_server.request_count() < 1:
                time.sleep(0.05)
            time.sleep(0.5)
            assert file_server.request_count() == 1
            proc.send_signal(signal.SIGINT)
            sent = time.monotonic()
            _, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert time.monotonic() - sent < 6  # the 2 s grace for the held file, then out
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        assert leftover_files(cache) == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, private to the user, mounted for the test: a disk that really fills up."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if sys.platform != "linux" or mount is None or umount is None:
        pytest.skip("mounting a tmpfs needs Linux and mount(8)")
    result = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run([umount, str(mount_point)], check=False)


class DiskFullLog(logging.Handler):
    """Sets ``event`` when the download stage logs that the disk was full."""

    def __init__(self, event: threading.Event) -> None:
        super().__init__(logging.INFO)
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if "no space left on device" in record.getMessage():
            self.event.set()


class TestDiskFull:
    """A full disk (ENOSPC) is retried once the cache has drained."""

    def test_enospc_retried_after_the_cache_drains(
        self, file_server: FileServer, small_disk: Path, downloader: str
    ) -> None:
        """A big file meeting a full disk while others are held succeeds once they are processed."""
        disk_full = threading.Event()
        handler = DiskFullLog(disk_full)
        stage_logger = logging.getLogger("download_pipeline_processor._download_stage")
        stage_logger.addHandler(handler)
        previous_level = stage_logger.level
        stage_logger.setLevel(logging.INFO)

        class HoldUntilDiskFull(BaseProcessor):
            def process(self, file_data: FileData) -> Any:
                if file_data.id.startswith("small"):
                    disk_full.wait(10)  # keep the small files in the cache until the disk fills
                assert file_data.local_path is not None
                return file_data.local_path.stat().st_size

        # 3 x 200 KiB held, then 500 KiB: more than the 1 MiB disk.
        files = [
            {"id": f"small{i}", "url": file_server.add(f"/small{i}", b"s" * (200 * KIB))}
            for i in range(3)
        ]
        files.append({"id": "big", "url": file_server.add("/big", b"B" * (500 * KIB))})
        try:
            outcome = run_shipped(
                files,
                HoldUntilDiskFull,
                downloader,
                small_disk,
                download_workers=1,
                processing_limit=3,
            )
        finally:
            stage_logger.removeHandler(handler)
            stage_logger.setLevel(previous_level)
        assert outcome.exit_code == 0, [str(f.error) for f in outcome.failures]
        assert disk_full.is_set()
        assert sorted(outcome.results) == [200 * KIB] * 3 + [500 * KIB]
        assert file_server.request_count("/big") == 2  # failed once on the full disk, then done
        assert leftover_files(small_disk) == []

    def test_enospc_fails_with_a_clear_message_when_retries_run_out(
        self, file_server: FileServer, small_disk: Path, downloader: str
    ) -> None:
        """A file larger than the whole disk fails at stage download, naming the full disk."""
        files = [{"id": "huge", "url": file_server.add("/huge", b"H" * (2048 * KIB))}]
        outcome = run_shipped(files, "dummy", downloader, small_disk, max_retries=1)
        assert outcome.exit_code == 1
        [failure] = outcome.failures
        assert failure.error is not None
        assert failure.error.stage == "download"
        assert "no space left on device while writing the cache" in str(failure.error.error)
        assert file_server.request_count("/huge") == 2
        assert leftover_files(small_disk) == []


class TestCacheBudget:
    """The budget's own rules, without a run."""

    def test_waits_in_order_and_a_larger_file_waits_for_an_empty_cache(self) -> None:
        """A download larger than the bound starts only once everything held is released."""
        budget = CacheBudget(100)
        stop = threading.Event()
        assert budget.try_reserve("a", 60)
        started = threading.Event()
        waiter = threading.Thread(
            target=lambda: (budget.reserve("big", 500, stop), started.set()), daemon=True
        )
        waiter.start()
        time.sleep(0.2)
        assert not started.is_set()
        assert not budget.try_reserve("b", 10)  # no jumping the queue
        budget.complete("a", "a-done", 60)
        time.sleep(0.2)
        assert not started.is_set()
        budget.release("a-done")
        waiter.join(5)
        assert started.is_set()
        assert budget.held == 500
        assert not budget.has_room()

    def test_stop_wakes_a_waiting_reservation(self) -> None:
        """reserve() raises PipelineInterrupted soon after the stop event is set."""
        budget = CacheBudget(10)
        stop = threading.Event()
        budget.try_reserve("a", 10)
        errors: list[BaseException] = []

        def wait() -> None:
            try:
                budget.reserve("b", 5, stop)
            except PipelineInterrupted as exc:
                errors.append(exc)

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        time.sleep(0.1)
        stop.set()
        waiter.join(2)
        assert not waiter.is_alive()
        assert len(errors) == 1
        assert budget.held == 10


def in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    """Start ``call`` on a daemon thread; its outcome (result or exception) lands in the list."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


class TestCacheBudgetGrowth:
    """need(): the room corrected in real bytes, and the waits that cannot deadlock."""

    def test_announced_length_corrects_the_room_down_and_up(self) -> None:
        """An exact need shrinks the guess to the announced length, and grows into free room."""
        budget, stop = reserved(100, ("a", None))  # the first guess: the whole bound
        assert budget.held == 100
        assert budget.need("a", 30, 0, stop, exact=True) == 30
        assert budget.held == 30
        assert budget.try_reserve("b", 60)
        assert budget.need("a", 40, 10, stop, exact=True) == 40
        assert budget.held == 100

    def test_a_grower_waits_for_room_and_blocks_new_downloads(self) -> None:
        """A file that outgrows its room waits until others leave; nothing new starts meanwhile."""
        budget, stop = reserved(100, ("big", 40), ("small", 40))
        thread, outcome = in_thread(lambda: budget.need("big", 300, 40, stop))
        time.sleep(0.2)
        assert outcome == []
        assert not budget.try_reserve("new", 10)  # the waiting file comes first
        assert not budget.has_room()
        budget.complete("small", "small-done", 40)
        time.sleep(0.2)
        assert outcome == []  # a downloaded file counts until it leaves the cache
        budget.release("small-done")
        thread.join(5)
        assert outcome == [300]  # alone: it may pass the bound
        assert budget.held == 300

    def test_a_second_grower_with_bytes_gives_way(self) -> None:
        """While one file waits for room, another that outgrows its own gives its bytes back."""
        budget, stop = reserved(100, ("a", 50), ("b", 50))
        thread, outcome = in_thread(lambda: budget.need("a", 200, 50, stop))
        time.sleep(0.2)
        give_up = threading.Event()
        other, verdict = in_thread(lambda: budget.need("b", 60, 50, give_up))
        other.join(5)
        give_up.set()  # a second waiter would wait for ever: end it, failing the test
        assert len(verdict) == 1
        assert isinstance(verdict[0], GaveWay)
        assert budget.need("b", 0, 0, stop, exact=True) == 0  # its writer emptied the file
        thread.join(5)
        assert outcome == [200]

    def test_a_file_without_bytes_waits_holding_nothing(self) -> None:
        """A file with nothing written that must wait gives its room back, ahead of new ones."""
        budget, stop = reserved(100, ("a", 60), ("b", 40))
        thread, outcome = in_thread(lambda: budget.need("b", 80, 0, stop, exact=True))
        time.sleep(0.2)
        assert outcome == []
        assert budget.held == 60  # b's room was given back
        assert not budget.try_reserve("new", 10)  # it goes before any new download
        budget.release("a")
        thread.join(5)
        assert outcome == [80]

    def test_a_loop_is_told_instead_of_waiting(self) -> None:
        """need(wait=False) raises RoomWanted at once where it would wait."""
        budget, stop = reserved(100, ("a", 60), ("b", 40))
        with pytest.raises(RoomWanted):
            budget.need("b", 80, 10, stop, wait=False)
        assert budget.held == 100

    def test_stop_wakes_a_waiting_grower(self) -> None:
        """A grower waiting for room raises PipelineInterrupted soon after the stop."""
        budget, stop = reserved(100, ("a", 60), ("b", 40))
        thread, outcome = in_thread(lambda: budget.need("b", 80, 10, stop))
        time.sleep(0.1)
        stop.set()
        thread.join(2)
        assert len(outcome) == 1
        assert isinstance(outcome[0], PipelineInterrupted)


class TestBodyWriterRoom:
    """The body writer keeps its file within the room the cache gave it."""

    def test_giving_way_empties_the_file(self, tmp_path: Path) -> None:
        """A writer told to give way truncates its file to nothing and gives its room back."""
        part = tmp_path / "a.part"
        budget, stop = reserved(100, (str(part), 50), ("other", 50))
        give_up = threading.Event()
        writer = started_writer(budget, part, give_up)
        writer.write(b"x" * 50)
        thread, _ = in_thread(lambda: budget.need("other", 500, 50, stop))
        time.sleep(0.2)
        writing, verdict = in_thread(lambda: writer.write(b"x"))
        writing.join(5)
        give_up.set()  # a writer that waited instead would wait for ever: end it, failing the test
        assert len(verdict) == 1
        assert isinstance(verdict[0], GaveWay)
        assert part.stat().st_size == 0
        assert writer.size == 0
        thread.join(5)
        assert budget.held == 500

    def test_no_write_past_the_room_before_it_is_given(self, tmp_path: Path) -> None:
        """A write past the room waits; the file never holds more than the room granted."""
        part = tmp_path / "a.part"
        budget, stop = reserved(100, (str(part), 10), ("other", 90))
        writer = started_writer(budget, part, stop)
        writer.write(b"x" * 10)
        thread, outcome = in_thread(lambda: writer.write(b"y" * 50))
        time.sleep(0.2)
        assert part.stat().st_size == 10
        budget.release("other")
        thread.join(5)
        assert outcome == [None]
        assert part.stat().st_size == 60

    def test_a_resumed_file_counts_the_bytes_it_kept(self, tmp_path: Path) -> None:
        """A 206 that continues a file sets its room to the whole file, kept bytes included."""
        part = tmp_path / "a.part"
        # The first guess: the whole bound.
        budget, stop = reserved(1000, (str(part), None))
        writer = started_writer(budget, part, stop, {"etag": '"v1"'})
        writer.write(b"x" * 30)
        writer.new_attempt()  # the transfer broke: the next attempt asks for the rest
        assert writer.range_headers()["Range"] == "bytes=30-"
        writer.begin(206, {"content-range": "bytes 30-99/100"}.get, 70)
        assert budget.held == 100
        writer.write(b"y" * 70)
        assert part.stat().st_size == 100

    def test_make_room_waits_for_a_file_written_otherwise(self, tmp_path: Path) -> None:
        """make_room() waits until the cache has room for the bytes a downloader will write."""
        part = tmp_path / "a.part"
        budget, stop = reserved(100, (str(part), 10), ("other", 90))
        writer = budgeted_writer(budget, part, stop)
        writer.new_attempt()
        thread, outcome = in_thread(lambda: writer.make_room(60))
        time.sleep(0.2)
        assert outcome == []
        budget.release("other")
        thread.join(5)
        stop.set()  # ends a wait that would not end, failing the test
        assert outcome == [None]
        assert budget.held == 60


PER_FILE_DELAY_MODULE = '''
import json
import os
import time
from download_pipeline_processor.builtins import ChecksumProcessor

class PerFileDelay(ChecksumProcessor):
    """Hashes the file after the pause its id is given in PER_FILE_DELAY (JSON), if any."""

    def process(self, file_data):
        time.sleep(json.loads(os.environ["PER_FILE_DELAY"]).get(file_data.id, 0))
        return super().process(file_data)
'''


def run_cli_with_room(
    tmp_path: Path,
    cli_path: Path,
    downloader: str,
    entries: list[dict[str, Any]],
    *,
    flags: list[str],
    delays: dict[str, float] | None = None,
) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, Any]]]:
    """Run the CLI over ``entries`` with ``flags``; the run and the jsonl records by id.

    The processor hashes each file after its pause in ``delays``; the run is
    killed (failing the test) if it takes more than 40 seconds.
    """
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    try:
        run, records = run_cli_over_cache(
            tmp_path,
            cli_path,
            downloader,
            entries,
            cache,
            processor=("per_file_delay_module:PerFileDelay", PER_FILE_DELAY_MODULE),
            env={"PER_FILE_DELAY": json.dumps(delays or {})},
            flags=flags,
            timeout=40,
        )
    except subprocess.TimeoutExpired as exc:  # the child is killed: a hang fails the test
        pytest.fail(f"the run hung: {exc.stderr!r}")
    assert leftover_files(cache) == []
    return run, records


#: A 100 KiB cache, two download workers and two processing workers.
HUNDRED_K_TWO_WORKERS = (
    "--cache-size",
    "100K",
    "--download-workers",
    "2",
    "--processing-limit",
    "2",
)


def small_held_and_late(
    file_server: FileServer,
) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    """Files ``s`` (10 KiB), ``a`` (60 KiB) and ``w`` (50 KiB, served last); bodies, entries.

    None has a ``size``: ``w``, guessed at the room left, announces more once
    ``a`` is downloaded.
    """
    bodies = {"s": b"s" * (10 * KIB), "a": os.urandom(60 * KIB), "w": os.urandom(50 * KIB)}
    entries = [
        {"id": "s", "url": file_server.add("/s", bodies["s"])},
        {"id": "a", "url": file_server.add("/a", bodies["a"], delay=0.1)},
        {"id": "w", "url": file_server.add("/w", bodies["w"], delay=0.5)},
    ]
    return bodies, entries


class TestRoomAndHostSlots:
    """Waiting for room in the cache never holds a host slot, a deadline or an attempt."""

    def test_retry_holding_room_and_a_waiter_holding_the_slot_do_not_deadlock(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path, downloader: str
    ) -> None:
        """A retry keeping its room and a file refused room on the only host slot both finish.

        ``x`` holds 60 KiB of room through a 503 and its backoff; ``w``, guessed
        at 10 KiB, announces 50 KiB on the host's only slot: 60 + 50 > 100 KiB.
        """
        bodies = {
            "s": b"s" * (10 * KIB),
            "x": os.urandom(60 * KIB),
            "w": os.urandom(50 * KIB),
        }
        entries = [
            {"id": "s", "url": file_server.add("/s", bodies["s"])},
            {
                "id": "x",
                "url": file_server.add("/x", bodies["x"], statuses=(503, 200)),
                "size": 60 * KIB,
            },
            {"id": "w", "url": file_server.add("/w", bodies["w"], delay=0.2)},
        ]
        flags = ["--cache-size", "100K", "--max-per-host", "1", "--download-workers", "2"]
        flags += ["--retry-backoff", "1", "--max-retries", "2"]
        run, records = run_cli_with_room(tmp_path, cli_path, downloader, entries, flags=flags)
        assert run.returncode == 0, run.stderr
        assert_hashed(records, bodies)
        assert records["x"]["attempts"] == 2

    def test_waiting_for_room_does_not_count_against_the_file_timeout(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path, downloader: str
    ) -> None:
        """A file that waits for room longer than --file-timeout succeeds with no retries.

        ``a`` (60 KiB) stays in the cache for 2.5 s of processing; ``w``,
        guessed at 10 KiB, announces 50 KiB and must wait for ``a`` to leave.
        """
        bodies, entries = small_held_and_late(file_server)
        flags = [*HUNDRED_K_TWO_WORKERS, "--file-timeout", "1.5", "--max-retries", "0"]
        run, records = run_cli_with_room(
            tmp_path, cli_path, downloader, entries, flags=flags, delays={"a": 2.5}
        )
        assert run.returncode == 0, run.stderr
        assert_hashed(records, bodies)
        assert attempts(records) == {"s": 1, "a": 1, "w": 1}

    def test_a_restart_for_room_is_not_counted_as_an_attempt(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path, downloader: str
    ) -> None:
        """A file whose attempt ended for want of room, answered once, records one attempt.

        ``w``, guessed at 10 KiB, announces 50 KiB while ``a`` (60 KiB) is
        held for processing: its attempt ends, waits for room, and starts again.
        """
        _, entries = small_held_and_late(file_server)
        flags = [*HUNDRED_K_TWO_WORKERS]
        run, records = run_cli_with_room(
            tmp_path, cli_path, downloader, entries, flags=flags, delays={"a": 0.5}
        )
        assert run.returncode == 0, run.stderr
        assert attempts(records) == {"s": 1, "a": 1, "w": 1}
        assert file_server.request_count("/w") >= 1


class TestRoomInSteps:
    """A body that outgrows its room asks the cache for more in steps, not per chunk."""

    def test_a_growing_body_asks_a_few_times(self, tmp_path: Path) -> None:
        """1 MiB written in 1 KiB chunks from 1 KiB of room asks for room about log2(1024) times."""
        part = tmp_path / "a.part"
        budget, stop = reserved(10 * MIB, (str(part), KIB))
        asked: list[int] = []

        def room(size: int, on_disk: int, wait: bool, exact: bool, ahead: int = 0) -> int:
            asked.append(size)
            return budget.need(str(part), size, on_disk, stop, wait=wait, exact=exact, ahead=ahead)

        writer = BodyWriter(part, room=room)
        writer.new_attempt()
        writer.begin(200, {}.get, None)
        for _ in range(1024):
            writer.write(b"z" * KIB)
        assert part.stat().st_size == MIB
        assert len(asked) <= 12
        assert budget.held >= MIB

    def test_steps_never_take_more_than_fits(self, tmp_path: Path) -> None:
        """A step is capped at the room left under the bound; the body still gets what it needs."""
        part = tmp_path / "a.part"
        budget, stop = reserved(100 * KIB, ("other", 30 * KIB), (str(part), KIB))
        writer = started_writer(budget, part, stop)
        for _ in range(60):
            writer.write(b"z" * KIB)
            assert budget.held <= 100 * KIB
        assert part.stat().st_size == 60 * KIB
