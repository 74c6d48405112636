"""Full collections after call turnover, not heap growth (callserver/gc_policy.py)."""

from __future__ import annotations

import gc

from callserver.gc_policy import MIDDLE_THRESHOLD, NEVER, YOUNG_THRESHOLD, CollectorPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(live: list[int], clock: Clock, collected: list[float]) -> CollectorPolicy:
    return CollectorPolicy(
        lambda: live[0],
        min_ended=3,
        max_interval_s=100.0,
        clock=clock,
        collect=lambda: collected.append(clock.now),
    )


def test_collects_once_as_many_calls_ended_as_are_live() -> None:
    clock, collected, live = Clock(), [], [5]
    policy = make(live, clock, collected)
    assert [policy.call_ended() for _ in range(4)] == [False] * 4  # 4 ended < 5 live
    assert policy.call_ended() is True and collected == [0.0]
    live[0] = 0  # few calls up: at least min_ended between collections
    assert [policy.call_ended() for _ in range(3)] == [False, False, True]
    assert policy.full_collections == 2


def test_interval_bounds_the_wait_when_few_calls_end() -> None:
    clock, collected, live = Clock(), [], [1000]
    policy = make(live, clock, collected)
    assert policy.maybe_collect(timer=True) is False  # nothing ended, interval not passed
    policy.call_ended()
    clock.now = 99.0
    assert policy.maybe_collect(timer=True) is False
    clock.now = 100.0
    assert policy.maybe_collect(timer=True) is True and collected == [100.0]
    clock.now = 250.0  # no call ended: the timer still collects what requests left
    assert policy.maybe_collect(timer=True) is True
    clock.now = 300.0
    policy.call_ended()  # an end alone waits for turnover or the interval
    assert collected == [100.0, 250.0]


def test_install_freezes_and_switches_automatic_full_collections_off() -> None:
    before = gc.get_threshold()
    try:
        CollectorPolicy.install()
        assert gc.get_threshold() == (YOUNG_THRESHOLD, MIDDLE_THRESHOLD, NEVER)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_default_collect_finds_a_dead_cycle() -> None:
    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    policy = CollectorPolicy(lambda: 0, min_ended=1)
    gc.disable()
    try:
        assert policy.call_ended() is True
        assert not [o for o in gc.get_objects() if type(o).__name__ == "Node"]
    finally:
        gc.enable()
