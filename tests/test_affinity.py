"""Tests for affinity.py: pinned threads, and widening one for a large copy."""

from __future__ import annotations

import os
import threading
from typing import Callable, TypeVar

import pytest

from download_pipeline_processor import affinity

T = TypeVar("T")

EVERYTHING = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()

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
            with affinity.widened():
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
            with pytest.raises(OSError, match="copy failed"), affinity.widened():
                raise OSError("the copy failed")
            return cores()

        assert in_thread(work) == {cpu}

    def test_widened_leaves_an_unpinned_thread_alone(self) -> None:
        def work() -> tuple[frozenset[int], bool]:
            with affinity.widened():
                return cores(), affinity.is_pinned()

        assert in_thread(work) == (EVERYTHING, False)

    def test_pinning_is_per_thread(self) -> None:
        affinity_before = cores()
        in_thread(lambda: affinity.pin_thread(min(EVERYTHING)))
        assert cores() == affinity_before
        assert not affinity.is_pinned()


class TestWidenedFor:
    @pytest.mark.parametrize(
        ("length", "widens"),
        [
            (0, False),
            (affinity.WIDEN_ABOVE, False),
            (affinity.WIDEN_ABOVE + 1, True),
            (512 * 1024 * 1024, True),
            (None, True),  # chunked or read to the close: size unknown
        ],
    )
    def test_threshold(self, length: int | None, widens: bool) -> None:
        cpu = min(EVERYTHING)

        def work() -> frozenset[int]:
            affinity.pin_thread(cpu)
            with affinity.widened_for(length):
                return cores()

        assert in_thread(work) == (EVERYTHING if widens else {cpu})
