"""The endpoint pool: least outstanding work, down marks, retirement, readiness of pods."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from ponder_router.endpoints import EndpointPool, ready_address
from test_router_fakes import FakeFleet, Script, constant
from virtual_time import VirtualTime


def pool(*addresses: str, clock: Any = None) -> tuple[EndpointPool, FakeFleet]:
    fleet = FakeFleet(constant(Script()))
    endpoints = EndpointPool(fleet.factory, clock=clock or (lambda: 0.0))
    endpoints.update(addresses)
    return endpoints, fleet


async def test_the_replica_with_the_least_outstanding_work_is_picked() -> None:
    endpoints, _ = pool("a:1", "b:1", "c:1")
    busy = {"a:1": 900.0, "b:1": 100.0, "c:1": 500.0}
    for address, tokens in busy.items():
        endpoint = endpoints.pick(frozenset(set(busy) - {address}))
        assert endpoint is not None
        endpoint.start(tokens)
    picked = endpoints.pick()
    assert picked is not None
    assert picked.address == "b:1"


async def test_idle_replicas_take_turns() -> None:
    endpoints, _ = pool("a:1", "b:1")
    picks = {endpoints.pick().address for _ in range(4)}  # type: ignore[union-attr]
    assert picks == {"a:1", "b:1"}


async def test_a_replica_marked_down_is_skipped_until_it_is_the_only_choice() -> None:
    now = [0.0]
    endpoints, _ = pool("a:1", "b:1", clock=lambda: now[0])
    down = endpoints.pick(frozenset({"b:1"}))
    assert down is not None
    endpoints.mark_down(down)
    assert {endpoints.pick().address for _ in range(4)} == {"b:1"}  # type: ignore[union-attr]
    assert endpoints.pick(frozenset({"b:1"})) is down  # nothing else: try it anyway
    now[0] = 10.0
    assert {endpoints.pick().address for _ in range(4)} == {"a:1", "b:1"}  # type: ignore[union-attr]


async def test_a_home_replica_is_picked_until_it_runs_its_limit_then_the_least_loaded() -> None:
    endpoints, _ = pool("a:1", "b:1", "c:1")
    for _ in range(2):
        home = endpoints.pick(home="a:1", max_running=2)
        assert home is not None
        assert home.address == "a:1"
        home.start(100.0)
    spill = endpoints.pick(home="a:1", max_running=2)
    assert spill is not None
    assert spill.address in {"b:1", "c:1"}
    assert endpoints.usable("a:1")
    assert not endpoints.usable("z:1")


async def test_a_replica_that_leaves_is_closed_once_its_samples_end() -> None:
    endpoints, fleet = pool("a:1", "b:1")
    leaving = endpoints.pick(frozenset({"b:1"}))
    assert leaving is not None
    leaving.start(10)
    endpoints.update(["b:1"])
    assert endpoints.addresses == ["b:1"]
    await asyncio.sleep(0)
    assert not fleet.backends["a:1"].closed
    endpoints.release(leaving, 10)
    await asyncio.sleep(0)
    assert fleet.backends["a:1"].closed


async def test_waiting_for_a_replica_ends_when_one_appears_or_at_the_timeout(
    virtual_time: VirtualTime,
) -> None:
    endpoints, _ = pool(clock=virtual_time.time)
    started = virtual_time.now
    assert not await endpoints.wait_for_endpoint(0.5)
    assert virtual_time.now - started == pytest.approx(0.5)
    waiting = asyncio.ensure_future(endpoints.wait_for_endpoint(5))
    await asyncio.sleep(0.01)
    endpoints.update(["a:1"])
    assert await asyncio.wait_for(waiting, 1)
    assert virtual_time.now - started < 1.0


def pod(ip: str | None, ready: bool, deleting: bool = False) -> SimpleNamespace:
    condition = SimpleNamespace(type="Ready", status="True" if ready else "False")
    return SimpleNamespace(
        metadata=SimpleNamespace(name="p", deletion_timestamp="now" if deleting else None),
        status=SimpleNamespace(pod_ip=ip, conditions=[condition]),
    )


@pytest.mark.parametrize(
    ("candidate", "address"),
    [(pod("10.0.0.5", True), "10.0.0.5:8001"), (pod("fd00::5", True), "[fd00::5]:8001"),
     (pod(None, True), None), (pod("10.0.0.5", False), None),
     (pod("10.0.0.5", True, deleting=True), None)],
)  # fmt: skip
def test_only_ready_pods_with_an_ip_are_endpoints(candidate: Any, address: str | None) -> None:
    assert ready_address(candidate, 8001) == address
