"""EntryFlow (_flow.py): the in-flight table, the queues and the hand-offs of one run."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Callable, TypeVar

import pytest

from download_pipeline_processor._cache import DownloadCache
from download_pipeline_processor._flow import EntryFlow
from download_pipeline_processor._inputs import CheckedEntries
from download_pipeline_processor._stop_signal import StopSignal
from download_pipeline_processor.errors import PipelineInterrupted
from download_pipeline_processor.file_data import FileData

T = TypeVar("T")

#: Generous bound for a thread that must end; reached only when a test fails.
JOIN_LIMIT = 10.0
#: What collect() appends once the end marker came.
END_SEEN: Any = ("end", None)


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[DownloadCache]:
    """An opened cache under tmp_path/root, closed after the test."""
    download_cache = DownloadCache(tmp_path / "root")
    download_cache.open()
    yield download_cache
    download_cache.close()


def files(count: int) -> list[FileData]:
    return [FileData(f"http://127.0.0.1:9/f{i}.bin") for i in range(count)]


def make_flow(
    cache: DownloadCache,
    entries: Iterable[FileData],
    count: int,
    *,
    stop: StopSignal | None = None,
    download_queue_size: int = 10,
    finished_queue_size: int = 100,
) -> EntryFlow:
    return EntryFlow(
        CheckedEntries(entries, count),
        stop or StopSignal(),
        cache,
        download_queue_size=download_queue_size,
        finished_queue_size=finished_queue_size,
    )


def cached_file(cache: DownloadCache, sequence: int, file_data: FileData) -> Path:
    """Put a downloaded body in the cache for ``file_data``, as the download stage does."""
    target = Path(cache.target_for(sequence, file_data))
    target.write_bytes(b"body")
    file_data.local_path = target
    return target


def bounded(call: Callable[[], T]) -> T:
    """``call()`` on a thread of its own, failing the test if it does not return in time."""
    outcome: list[T] = []
    thread = threading.Thread(target=lambda: outcome.append(call()), daemon=True)
    thread.start()
    thread.join(JOIN_LIMIT)
    assert outcome, "the call never returned"
    return outcome[0]


def collect(flow: EntryFlow, end: bool = True) -> list[tuple[FileData, Any]]:
    """Everything handed to the post-processor up to the end marker (sent first if ``end``).

    On a thread of its own, so a flow that never ends its stream fails the
    test instead of hanging it.
    """
    received: list[tuple[FileData, Any]] = []

    def post_processor() -> None:
        if end:
            flow.end_finished()
        received.extend(entry for batch in flow.finished_batches() for entry in batch)
        received.append(END_SEEN)

    thread = threading.Thread(target=post_processor, daemon=True)
    thread.start()
    thread.join(JOIN_LIMIT)
    assert received[-1:] == [END_SEEN], "the end marker never came"
    return received[:-1]


class TestNextEntry:
    """Entries are taken from the input once each, in order, and tracked as in flight."""

    def test_entries_come_numbered_and_in_flight(self, cache: DownloadCache) -> None:
        """Each entry comes once with its 0-based sequence, then None at the end."""
        entries = files(2)
        flow = make_flow(cache, entries, 2)
        assert flow.next_entry() == (0, entries[0])
        assert flow.next_entry() == (1, entries[1])
        assert flow.next_entry() is None
        assert flow.in_flight == 2
        assert flow.not_started == 0

    def test_no_entry_once_stopped(self, cache: DownloadCache) -> None:
        """After a stop nothing more is read, and the unread entries count as not started."""
        stop = StopSignal()
        flow = make_flow(cache, files(5), 5, stop=stop)
        assert flow.next_entry() is not None
        stop.stop(143)
        assert flow.next_entry() is None
        assert flow.not_started == 4

    def test_a_failing_input_ends_the_input_once(self, cache: DownloadCache) -> None:
        """An input that raises mid-run ends the input; the error is kept and not read again."""
        reads = []

        def entries() -> Iterator[FileData]:
            yield FileData("http://127.0.0.1:9/first.bin")
            reads.append("broken")
            raise OSError("the list file changed")

        flow = make_flow(cache, entries(), 3)
        assert flow.next_entry() is not None
        assert flow.next_entry() is None
        assert isinstance(flow.input_failure, OSError)
        assert flow.next_entry() is None
        assert reads == ["broken"]

    def test_concurrent_takers_share_the_entries(self, cache: DownloadCache) -> None:
        """Threads taking at once get every entry exactly once between them."""
        flow = make_flow(cache, files(400), 400)
        taken: list[int] = []
        lock = threading.Lock()

        def take() -> None:
            while (item := flow.next_entry()) is not None:
                with lock:
                    taken.append(item[0])

        threads = [threading.Thread(target=take, daemon=True) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(JOIN_LIMIT)
        assert sorted(taken) == list(range(400))


class TestFinish:
    """An entry reaches the post-processor once, whoever finishes it."""

    def test_finish_hands_off_once(self, cache: DownloadCache) -> None:
        """A second finish of the same entry is dropped and its cached file removed."""
        flow = make_flow(cache, files(1), 1)
        item = flow.next_entry()
        assert item is not None
        sequence, file_data = item
        flow.finish(sequence, file_data, "result")
        path = cached_file(cache, sequence, file_data)
        flow.finish(sequence, file_data, "again")
        assert collect(flow) == [(file_data, "result")]
        assert flow.in_flight == 0
        assert not path.exists()

    def test_a_blocked_handoff_lands_before_the_end(self, cache: DownloadCache) -> None:
        """A hand-off waiting for room in the queue reaches the post-processor before the end."""
        entries = files(2)
        flow = make_flow(cache, entries, 2, finished_queue_size=1)
        first = flow.next_entry()
        second = flow.next_entry()
        assert first is not None
        assert second is not None
        flow.finish(*first, "one")  # fills the queue
        late = threading.Thread(target=flow.finish, args=(*second, "two"), daemon=True)
        late.start()
        while flow.in_flight:  # out of the table: its hand-off is under way
            late.join(0.01)
        ender = threading.Thread(target=flow.end_finished, daemon=True)
        ender.start()
        received = collect(flow, end=False)
        late.join(JOIN_LIMIT)
        ender.join(JOIN_LIMIT)
        assert received == [(entries[0], "one"), (entries[1], "two")]


class TestAbandonInFlight:
    """At a stop, what is still in flight is reported as interrupted, once each."""

    def test_each_in_flight_entry_reported_once_at_its_stage(self, cache: DownloadCache) -> None:
        """Entries still downloading fail at download, downloaded ones at process; none twice."""
        stop = StopSignal()
        entries = files(4)
        flow = make_flow(cache, entries, 4, stop=stop)
        taken = [flow.next_entry() for _ in range(3)]
        assert None not in taken
        flow.finish(0, entries[0], "done")  # finished before the stop
        path = cached_file(cache, 2, entries[2])  # downloaded, not processed yet
        stop.stop()
        assert flow.abandon_in_flight() == 2
        assert flow.abandon_in_flight() == 0
        # A worker that finishes an abandoned entry late must not report it again.
        flow.finish(1, entries[1], "late")
        received = collect(flow)
        assert [(file_data.id, result) for file_data, result in received] == [
            ("f0", "done"),
            ("f1", None),
            ("f2", None),
        ]
        assert entries[0].error is None
        for file_data, stage in ((entries[1], "download"), (entries[2], "process")):
            assert file_data.error is not None
            assert file_data.error.stage == stage
            assert isinstance(file_data.error.error, PipelineInterrupted)
        assert not path.exists()
        assert flow.not_started == 1

    def test_racing_workers_and_abandon_report_each_entry_once(self, cache: DownloadCache) -> None:
        """Workers finishing while the run abandons: every entry reaches the end exactly once."""
        stop = StopSignal()
        count = 300
        # Room for every entry and the end marker: the post-processor drains only at the end.
        flow = make_flow(cache, files(count), count, stop=stop, finished_queue_size=count + 1)
        taken = [flow.next_entry() for _ in range(count)]
        half = count // 2
        started = threading.Barrier(5)

        def finish_all(items: list[Any]) -> None:
            started.wait(JOIN_LIMIT)
            for sequence, file_data in items:
                flow.finish(sequence, file_data, "worked")

        workers = [
            threading.Thread(target=finish_all, args=(taken[i:half:4],), daemon=True)
            for i in range(4)
        ]
        for worker in workers:
            worker.start()
        started.wait(JOIN_LIMIT)
        stop.stop()
        abandoned = flow.abandon_in_flight()
        for worker in workers:
            worker.join(JOIN_LIMIT)
        received = collect(flow)
        ids = sorted(int(file_data.id[1:]) for file_data, _ in received)
        assert ids == list(range(count))
        assert sum(result is None for _, result in received) == abandoned
        assert abandoned >= count - half


class TestQueues:
    """The downloaded queue is bounded, and waiting on it ends at a stop."""

    def test_queue_without_wait_refuses_when_full(self, cache: DownloadCache) -> None:
        """Without waiting, a full downloaded queue refuses the entry at once."""
        entries = files(2)
        flow = make_flow(cache, entries, 2, download_queue_size=1)
        assert bounded(lambda: flow.queue_downloaded(0, entries[0], wait=False))
        assert not bounded(lambda: flow.queue_downloaded(1, entries[1], wait=False))

    def test_waiting_put_gives_up_once_stopped(self, cache: DownloadCache) -> None:
        """A put waiting for room in a full queue returns False once the run stops."""
        stop = StopSignal()
        entries = files(2)
        flow = make_flow(cache, entries, 2, stop=stop, download_queue_size=1)
        assert flow.queue_downloaded(0, entries[0])
        outcome: list[bool] = []
        waiter = threading.Thread(
            target=lambda: outcome.append(flow.queue_downloaded(1, entries[1])), daemon=True
        )
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive()  # still waiting for room
        stop.stop()
        waiter.join(JOIN_LIMIT)
        assert outcome == [False]

    def test_entries_move_in_batches(self, cache: DownloadCache) -> None:
        """The waiting entries go to a worker in one hand-off, and their results on in one."""
        entries = files(5)
        flow = make_flow(cache, entries, 5)
        taken = [flow.next_entry() for _ in entries]
        assert flow.queue_downloaded_batch([item for item in taken if item is not None]) == 5
        batch = bounded(lambda: flow.downloaded_batch(64))
        assert batch == list(enumerate(entries))
        flow.finish_batch([(sequence, file_data, "done") for sequence, file_data in batch])
        flow.end_finished()
        assert list(flow.finished_batches()) == [[(file_data, "done") for file_data in entries]]

    def test_held_entries_keep_their_room(self, cache: DownloadCache) -> None:
        """Entries taken with hold count against the queue's size until released."""
        entries = files(3)
        flow = make_flow(cache, entries, 3, download_queue_size=2)
        for sequence, file_data in enumerate(entries[:2]):
            assert flow.queue_downloaded(sequence, file_data)
        assert bounded(lambda: flow.downloaded_batch(2, hold=True)) is not None
        assert not flow.queue_downloaded(2, entries[2], wait=False)
        flow.release_downloaded(1)
        assert flow.queue_downloaded(2, entries[2], wait=False)

    def test_each_processing_worker_gets_the_end(self, cache: DownloadCache) -> None:
        """end_downloads ends the downloaded entries of every processing worker."""
        entries = files(3)
        flow = make_flow(cache, entries, 3)
        for sequence, file_data in enumerate(entries):
            assert flow.queue_downloaded(sequence, file_data)
        flow.end_downloads()
        first = bounded(lambda: list(flow.downloaded_entries()))
        second = bounded(lambda: list(flow.downloaded_entries()))
        assert first == [(0, entries[0]), (1, entries[1]), (2, entries[2])]
        assert second == []

    def test_downloaded_entries_end_at_a_stop(self, cache: DownloadCache) -> None:
        """A processing worker waiting for entries stops waiting once the run stops."""
        stop = StopSignal()
        flow = make_flow(cache, files(1), 1, stop=stop)
        received: list[Any] = []
        worker = threading.Thread(
            target=lambda: received.extend(flow.downloaded_entries()), daemon=True
        )
        worker.start()
        stop.stop()
        worker.join(JOIN_LIMIT)
        assert not worker.is_alive()
        assert received == []

    def test_bytes_add_up(self, cache: DownloadCache) -> None:
        """count_bytes adds each file's size to the run's total."""
        flow = make_flow(cache, [], 0)
        flow.count_bytes(3)
        flow.count_bytes(4)
        assert flow.bytes_downloaded == 7
