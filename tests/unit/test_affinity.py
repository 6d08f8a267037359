"""Replica affinity, the pure choice: home while it has room, else the least loaded."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ponder_router.affinity import AffinityConfig, ReplicaLoad, choose_replica

A, B, C = "a:1", "b:1", "c:1"


def test_affinity_is_on_by_default() -> None:
    assert AffinityConfig().enabled


@pytest.mark.parametrize(("replicas", "home", "limit", "chosen"), [
    # the home replica while it has room, even when another is idler
    ([ReplicaLoad(A, 3, 300.0), ReplicaLoad(B)], A, 4, A),
    # saturated: spill to the least loaded replica with room
    ([ReplicaLoad(A, 4, 400.0), ReplicaLoad(B, 2, 200.0), ReplicaLoad(C, 1, 100.0)], A, 4, C),
    # no limit: never saturated
    ([ReplicaLoad(A, 400, 4e4), ReplicaLoad(B)], A, None, A),
    # a home that is down, or gone, is left
    ([ReplicaLoad(A, up=False), ReplicaLoad(B, 1, 10.0)], A, 4, B),
    ([ReplicaLoad(B, 1, 10.0), ReplicaLoad(C, 2, 5.0)], A, 4, C),
    # no home: the least outstanding work
    ([ReplicaLoad(A, 1, 50.0), ReplicaLoad(B, 3, 20.0)], None, None, B),
    # every replica saturated: the least loaded of them all
    ([ReplicaLoad(A, 4, 400.0), ReplicaLoad(B, 5, 300.0)], A, 4, B),
    # unsaturated replicas before saturated ones, even with less outstanding work
    ([ReplicaLoad(A, 4, 10.0), ReplicaLoad(B, 1, 300.0)], None, 4, B),
    # nothing up: down ones still serve
    ([ReplicaLoad(A, up=False)], A, 4, A),
    ([], A, 4, None),
])  # fmt: skip
def test_a_sample_goes_home_unless_home_is_saturated_or_down(
    replicas: list[ReplicaLoad], home: str | None, limit: int | None, chosen: str | None,
) -> None:
    assert choose_replica(replicas, home=home, max_running=limit) == chosen


def test_idle_replicas_take_turns_when_nothing_else_decides() -> None:
    idle = [ReplicaLoad(A), ReplicaLoad(B), ReplicaLoad(C)]
    assert [choose_replica(idle, turn=t) for t in range(4)] == [A, B, C, A]


loads = st.builds(ReplicaLoad, st.sampled_from([A, B, C]), st.integers(0, 8),
                  st.floats(0, 1e4), st.booleans())  # fmt: skip


@given(st.lists(loads, min_size=1, max_size=3, unique_by=lambda r: r.address),
       st.sampled_from([A, B, C, None]), st.one_of(st.none(), st.integers(1, 8)),
       st.integers(0, 5))  # fmt: skip
def test_the_choice_is_always_a_replica_and_home_whenever_home_has_room(
    replicas: list[ReplicaLoad], home: str | None, limit: int | None, turn: int,
) -> None:
    chosen = choose_replica(replicas, home=home, max_running=limit, turn=turn)
    assert chosen in {r.address for r in replicas}
    usable = [r for r in replicas if r.address == home and r.up
              and (limit is None or r.running < limit)]  # fmt: skip
    if usable:
        assert chosen == home
    elif any(r.up for r in replicas):
        assert next(r for r in replicas if r.address == chosen).up
