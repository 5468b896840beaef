"""RunProgress: the live numbers a pipeline_started observer may poll during a run."""

from __future__ import annotations

import threading
import time
from typing import Any

from download_pipeline_processor import hookimpl
from download_pipeline_processor.run_progress import RunProgress
from download_pipeline_processor.testing import Answer, FileServer, Pause, run_pipeline


class Poller:
    """An observer that keeps the RunProgress it is given, for the test to read."""

    __name__ = "poller"

    def __init__(self) -> None:
        self.progress: RunProgress | None = None

    @hookimpl
    def pipeline_started(self, settings: Any, progress: RunProgress) -> None:
        self.progress = progress


class TestRunProgress:
    """Counts, bytes and the files in flight, read from another thread."""

    def test_counts_reach_the_input_total(self, file_server: FileServer, cache_root: Any) -> None:
        """At the end, done equals total, failed counts the 404 and bytes every downloaded body."""
        files = [{"id": f"f{i}", "url": file_server.add(f"/f{i}", b"x" * 10)} for i in range(5)]
        files.append({"id": "gone", "url": file_server.url("/gone")})
        poller = Poller()
        outcome = run_pipeline(files, "dummy", plugins=[poller], download_cache=cache_root)
        assert outcome.exit_code == 1
        progress = poller.progress
        assert progress is not None
        assert (progress.total, progress.read, progress.done) == (6, 6, 6)
        assert (progress.succeeded, progress.failed, progress.skipped) == (5, 1, 0)
        assert progress.bytes_downloaded == 50
        assert progress.in_flight == 0

    def test_oldest_in_flight_names_the_slow_file_redacted(
        self, file_server: FileServer, cache_root: Any
    ) -> None:
        """While a slow file downloads, it is listed first, its URL without the query string."""
        slow = file_server.add("/slow.bin", b"s", delay=1.5) + "?token=SECRET"
        files = [{"id": "slow", "url": slow}]
        files += [{"id": f"q{i}", "url": file_server.add(f"/q{i}", b"q")} for i in range(3)]
        poller = Poller()
        seen: list[Any] = []

        def watch() -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not seen:
                progress = poller.progress
                if progress is not None and progress.done == 3:
                    seen.extend(progress.oldest_in_flight(3))
                time.sleep(0.02)

        watcher = threading.Thread(target=watch)
        watcher.start()
        outcome = run_pipeline(
            files, "dummy", plugins=[poller], download_cache=cache_root, download_workers=4
        )
        watcher.join()
        assert outcome.exit_code == 0
        assert [(entry.id, entry.stage) for entry in seen] == [("slow", "download")]
        assert "/slow.bin" in seen[0].url
        assert "SECRET" not in seen[0].url

    def test_long_id_and_url_in_flight_are_shortened(
        self, file_server: FileServer, cache_root: Any
    ) -> None:
        """A 100 kB id and URL of a file in flight are shown in about 200 characters each."""
        slow = file_server.add("/" + "p" * 100_000, b"s", delay=1.0)
        long_id = "i" * 100_000
        poller = Poller()
        seen: list[Any] = []

        def watch() -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not seen:
                progress = poller.progress
                if progress is not None and progress.in_flight:
                    seen.extend(progress.oldest_in_flight(1))
                time.sleep(0.02)

        watcher = threading.Thread(target=watch)
        watcher.start()
        outcome = run_pipeline(
            [{"id": long_id, "url": slow}], "dummy", plugins=[poller], download_cache=cache_root
        )
        watcher.join()
        assert outcome.exit_code in (0, 1)
        assert seen
        assert len(seen[0].id) <= 200
        assert len(seen[0].url) <= 200
        assert seen[0].url.startswith(file_server.url("/ppp"))
        assert seen[0].seconds > 0

    def test_bytes_count_while_a_file_downloads(
        self, file_server: FileServer, cache_root: Any
    ) -> None:
        """A body paused halfway already counts its first half: the rate is live, not per file."""
        half = b"a" * 100_000
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {2 * len(half)}\r\n\r\n".encode()
        url = file_server.script("/big.bin", Answer(head + half, Pause(1.5), half))
        poller = Poller()
        during: list[int] = []

        def watch() -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not during:
                progress = poller.progress
                if progress is not None and progress.bytes_downloaded > 0:
                    during.append(progress.bytes_downloaded)
                time.sleep(0.02)

        watcher = threading.Thread(target=watch)
        watcher.start()
        outcome = run_pipeline(
            # 64 KiB reads: the first half's first block reaches the writer before the pause.
            [{"url": url}],
            "dummy",
            plugins=[poller],
            download_cache=cache_root,
            chunk_size=65536,
        )
        watcher.join()
        assert outcome.exit_code == 0
        assert during
        assert 0 < during[0] <= len(half)
        assert poller.progress is not None
        assert poller.progress.bytes_downloaded == 2 * len(half)
