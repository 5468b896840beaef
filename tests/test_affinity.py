"""Tests for affinity.py: pinned threads, and widening one for a large copy."""

from __future__ import annotations

import os
import threading
from typing import Callable, NoReturn, TypeVar

import pytest

from download_pipeline_processor import affinity

T = TypeVar("T")

EVERYTHING = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()
BIG = affinity.WIDEN_ABOVE + 1

pytestmark = pytest.mark.skipif(
    len(EVERYTHING) < 2, reason="pinning is only observable with two cores or more"
)


def in_thread(work: Callable[[], T]) -> T:
    """Run ``work`` in a fresh thread (pinning must not touch the test's own thread)."""
    box: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            box.append(work())
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(10)
    if errors:
        raise errors[0]
    return box[0]


def cores() -> frozenset[int]:
    return frozenset(os.sched_getaffinity(0))


class TestPinAndWiden:
    def test_pin_then_widen_then_pin_again(self) -> None:
        cpu = min(EVERYTHING)

        def work() -> tuple[frozenset[int], frozenset[int], frozenset[int], bool]:
            affinity.pin_thread(cpu)
            pinned = cores()
            with affinity.widened_for(BIG):
                wide = cores()
            return pinned, wide, cores(), affinity.is_pinned()

        pinned, wide, after, is_pinned = in_thread(work)
        assert pinned == {cpu}
        assert wide == EVERYTHING
        assert after == {cpu}
        assert is_pinned

    def test_pinned_again_after_an_error(self) -> None:
        cpu = max(EVERYTHING)

        def work() -> frozenset[int]:
            affinity.pin_thread(cpu)
            with pytest.raises(OSError, match="copy failed"), affinity.widened_for(BIG):
                raise OSError("the copy failed")
            return cores()

        assert in_thread(work) == {cpu}

    def test_nested_widenings_pin_again_at_the_outermost_end(self) -> None:
        cpu = min(EVERYTHING)

        def work() -> tuple[frozenset[int], frozenset[int]]:
            affinity.pin_thread(cpu)
            with affinity.widened_for(BIG):
                with affinity.widened_for(BIG):
                    pass
                between = cores()  # the outer copy still runs on every core
            return between, cores()

        assert in_thread(work) == (EVERYTHING, {cpu})

    def test_pinning_twice_keeps_the_original_cores(self) -> None:
        def work() -> frozenset[int]:
            affinity.pin_thread(min(EVERYTHING))
            affinity.pin_thread(max(EVERYTHING))
            with affinity.widened_for(BIG):
                return cores()

        assert in_thread(work) == EVERYTHING

    def test_a_thread_started_by_a_pinned_thread_widens_to_what_it_is_given(self) -> None:
        """It inherits one CPU; ``allowed`` (the run's set) is what widening restores."""
        cpu = min(EVERYTHING)

        def child(allowed: set[int] | None) -> frozenset[int]:
            affinity.pin_thread(cpu, allowed)
            with affinity.widened_for(BIG):
                return cores()

        def parent(allowed: set[int] | None) -> frozenset[int]:
            affinity.pin_thread(cpu)
            return in_thread(lambda: child(allowed))

        assert in_thread(lambda: parent(set(EVERYTHING))) == EVERYTHING
        assert in_thread(lambda: parent(None)) == {cpu}  # why the run passes its set

    def test_pinning_is_per_thread(self) -> None:
        affinity_before = cores()
        in_thread(lambda: affinity.pin_thread(min(EVERYTHING)))
        assert cores() == affinity_before
        assert not affinity.is_pinned()

    def test_unpinned_thread_never_changes_cores(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # Patched to observe that no call is made at all (platforms without
        # sched_setaffinity run this code path too).
        def refuse(*args: object) -> NoReturn:
            raise AssertionError("sched_setaffinity called in an unpinned thread")

        monkeypatch.setattr(os, "sched_setaffinity", refuse)

        def work() -> bool:
            with affinity.widened_for(BIG) as widening:
                widening.copied(10 * BIG)
            with affinity.widened_for(None) as widening:
                widening.copied(10 * BIG)
            return affinity.is_pinned()

        assert in_thread(work) is False

    def test_cores_that_vanished_do_not_fail_the_copy(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        cpu = min(EVERYTHING)
        real = os.sched_setaffinity

        def work() -> frozenset[int]:
            affinity.pin_thread(cpu)

            # Patched because shrinking the process's cpuset needs cgroups: this
            # is the error sched_setaffinity gives when the cores are gone.
            def gone(pid: int, cpus: object) -> NoReturn:
                raise OSError(22, "Invalid argument")

            monkeypatch.setattr(os, "sched_setaffinity", gone)
            try:
                with affinity.widened_for(BIG):
                    pass  # the copy goes on, on the pinned core
            finally:
                monkeypatch.setattr(os, "sched_setaffinity", real)
            return cores()

        assert in_thread(work) == {cpu}


class TestWidenedFor:
    @pytest.mark.parametrize(
        ("length", "widens"),
        [
            (0, False),
            (affinity.WIDEN_ABOVE, False),
            (affinity.WIDEN_ABOVE + 1, True),
            (512 * 1024 * 1024, True),
        ],
    )
    def test_known_length(self, length: int, widens: bool) -> None:
        cpu = min(EVERYTHING)

        def work() -> frozenset[int]:
            affinity.pin_thread(cpu)
            with affinity.widened_for(length):
                return cores()

        assert in_thread(work) == (EVERYTHING if widens else {cpu})

    def test_unknown_length_widens_once_the_copy_is_large(self) -> None:
        cpu = min(EVERYTHING)

        def work() -> list[frozenset[int]]:
            affinity.pin_thread(cpu)
            seen = []
            with affinity.widened_for(None) as widening:
                seen.append(cores())  # nothing copied yet: a small body stays pinned
                widening.copied(affinity.WIDEN_ABOVE)
                seen.append(cores())
                widening.copied(1)
                seen.append(cores())
            seen.append(cores())
            return seen

        assert in_thread(work) == [{cpu}, {cpu}, EVERYTHING, {cpu}]
