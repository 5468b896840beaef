"""Writing bodies on writing threads: in order, every rule of a write kept, errors handed back."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from download_pipeline_processor.errors import PermanentDownloadError
from download_pipeline_processor.sink import BodyWriter, Chunk
from download_pipeline_processor.write_behind import WriteBehind


def started(path: Path, **limits: int) -> BodyWriter:
    """A writer of ``path`` whose body has begun (a 200 without a length)."""
    writer = BodyWriter(path, max_size=limits.get("max_size"))
    writer.begin(200, {}.get, None)
    return writer


class WatchedWriter(BodyWriter):
    """A real writer that notes the thread and the lane's bytes ahead at each write."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.threads: set[str] = set()
        self.ahead: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.lane_queued = lambda: 0

    def write_many(self, chunks: object) -> None:
        self.gate.wait(5)
        self.threads.add(threading.current_thread().name)
        self.ahead.append(self.lane_queued())
        super().write_many(chunks)  # type: ignore[arg-type]


class TestLanes:
    def test_blocks_of_many_bodies_arrive_whole_and_in_order(self, tmp_path: Path) -> None:
        """Bodies written block by block through lanes on two threads match their digests."""
        behind = WriteBehind(threads=2, name="test-writes")
        bodies = {f"f{index}": os.urandom(300_000) for index in range(5)}
        writers = {name: started(tmp_path / name) for name in bodies}
        lanes = {name: behind.lane(writer) for name, writer in writers.items()}
        try:
            for offset in range(0, 300_000, 16_384):
                for name, body in bodies.items():
                    block: list[Chunk] = [
                        body[offset : offset + 8192],
                        body[offset + 8192 : offset + 16_384],
                    ]
                    lanes[name].write(block)
            for lane in lanes.values():
                lane.finish()
        finally:
            behind.close()
        for name, body in bodies.items():
            writers[name].close()
            assert (tmp_path / name).read_bytes() == body
            assert writers[name].sha256 == hashlib.sha256(body).hexdigest()
            assert writers[name].size == len(body)

    def test_writes_run_on_the_writing_thread(self, tmp_path: Path) -> None:
        """The caller only queues: write_many runs on a thread of the WriteBehind."""
        behind = WriteBehind(threads=1, name="test-writes")
        writer = WatchedWriter(tmp_path / "out")
        writer.begin(200, {}.get, None)
        lane = behind.lane(writer)
        try:
            lane.write([b"x" * 1000])
            lane.finish()
        finally:
            behind.close()
        assert writer.threads == {"dpp-test-writes-0"}

    def test_a_lane_stays_within_its_limit(self, tmp_path: Path) -> None:
        """The caller waits while a lane holds ``limit`` bytes: memory stays bounded."""
        behind = WriteBehind(limit=40_000, threads=1, name="test-writes")
        writer = WatchedWriter(tmp_path / "out")
        writer.begin(200, {}.get, None)
        lane = behind.lane(writer)
        writer.lane_queued = lambda: lane.queued
        writer.gate.clear()  # the disk is slow: the first write waits
        threading.Timer(0.2, writer.gate.set).start()
        try:
            for _ in range(20):
                lane.write([b"y" * 10_000])
                assert lane.queued <= 40_000
            lane.finish()
        finally:
            behind.close()
        assert max(writer.ahead) <= 40_000
        assert writer.size == 200_000

    def test_a_write_error_comes_back_and_stops_the_body(self, tmp_path: Path) -> None:
        """Past --max-file-size a write fails on the thread; the next call raises it."""
        behind = WriteBehind(threads=1, name="test-writes")
        writer = started(tmp_path / "out", max_size=25_000)
        lane = behind.lane(writer)
        try:
            with pytest.raises(PermanentDownloadError, match="file too large"):  # noqa: PT012
                for _ in range(100):
                    lane.write([b"z" * 10_000])
                lane.finish()
            with pytest.raises(PermanentDownloadError, match="file too large"):
                lane.finish()  # the error is given to every later call
        finally:
            behind.close()
        assert (tmp_path / "out").stat().st_size <= 20_000

    def test_close_ends_the_threads_after_the_queued_blocks(self, tmp_path: Path) -> None:
        """close() writes what is queued, then the writing threads are gone."""
        behind = WriteBehind(threads=2, name="test-close")
        writer = started(tmp_path / "out")
        lane = behind.lane(writer)
        lane.write([b"q" * 50_000])
        behind.close()
        assert writer.size == 50_000
        assert not [t for t in threading.enumerate() if t.name.startswith("dpp-test-close")]
        with pytest.raises(RuntimeError):
            behind.lane(writer)
