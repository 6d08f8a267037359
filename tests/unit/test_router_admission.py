"""Admission: API keys and tenants, bounded concurrency, the queue, quotas and deadlines."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ponder_router.admission import (
    Admission,
    AdmissionRejectedError,
    ApiKeys,
    AuthError,
    parse_api_keys,
)
from ponder_router.settings import AdmissionConfig
from virtual_time import VirtualTime


def limits(**fields: int | float) -> AdmissionConfig:
    return AdmissionConfig.model_validate(fields)


def test_key_lines_map_keys_to_tenants_and_hide_bare_keys() -> None:
    keys = parse_api_keys("# comment\nsk-a:team-a\n\nsk-b\n sk-c : team-c \n")
    assert keys["sk-a"] == "team-a"
    assert keys["sk-c"] == "team-c"
    assert keys["sk-b"].startswith("key-")
    assert "sk-b" not in keys["sk-b"]


@pytest.mark.parametrize(
    ("header", "status"),
    [(None, 401), ("", 401), ("Basic abc", 401), ("Bearer ", 401), ("Bearer sk-x", 403)],
)
def test_a_missing_or_unknown_key_is_refused(tmp_path: Path, header: str | None,
                                             status: int) -> None:  # fmt: skip
    path = tmp_path / "keys"
    path.write_text("sk-a:team-a\n")
    with pytest.raises(AuthError) as caught:
        ApiKeys(path).tenant_for(header)
    assert caught.value.status == status


def test_a_known_key_gives_its_tenant_and_new_keys_apply_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("sk-a:team-a\n")
    now = [0.0]
    keys = ApiKeys(path, check_seconds=1.0, clock=lambda: now[0])
    assert keys.tenant_for("Bearer sk-a") == "team-a"
    path.write_text("sk-a:team-a\nsk-b:team-b\n")
    now[0] = 5.0
    assert keys.tenant_for("bearer sk-b") == "team-b"


async def test_requests_beyond_the_slots_wait_in_order() -> None:
    admission = Admission(limits(maxConcurrentRequests=1, maxQueueLength=5))
    await admission.acquire("t1", 1)
    order: list[str] = []

    async def later(tenant: str) -> None:
        await admission.acquire(tenant, 1)
        order.append(tenant)

    waiters = [asyncio.ensure_future(later(t)) for t in ("t2", "t3")]
    await asyncio.sleep(0.01)
    assert admission.queued == 2
    admission.release("t1", 0.1)
    await asyncio.sleep(0.01)
    admission.release("t2", 0.1)
    await asyncio.gather(*waiters)
    assert order == ["t2", "t3"]
    assert admission.running == 1


async def test_a_full_queue_is_refused_at_once_with_a_retry_after() -> None:
    admission = Admission(limits(maxConcurrentRequests=1, maxQueueLength=1))
    await admission.acquire("a", 1)
    waiting = asyncio.ensure_future(admission.acquire("b", 1))
    await asyncio.sleep(0.01)
    with pytest.raises(AdmissionRejectedError) as caught:
        await admission.acquire("c", 1)
    assert caught.value.status == 429
    assert caught.value.reason == "queue"
    assert caught.value.retry_after_seconds >= 1
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert admission.queued == 0


async def test_a_tenant_over_its_quota_is_refused_while_others_get_in() -> None:
    admission = Admission(limits(maxConcurrencyPerTenant=2))
    await admission.acquire("greedy", 1)
    await admission.acquire("greedy", 1)
    with pytest.raises(AdmissionRejectedError) as caught:
        await admission.acquire("greedy", 1)
    assert caught.value.reason == "tenant"
    await admission.acquire("modest", 1)
    admission.release("greedy", 0.1)
    await admission.acquire("greedy", 1)


async def test_a_request_still_queued_at_its_deadline_gets_503(virtual_time: VirtualTime) -> None:
    admission = Admission(limits(maxConcurrentRequests=1))
    await admission.acquire("a", 1)
    started = virtual_time.now
    with pytest.raises(AdmissionRejectedError) as caught:
        await admission.acquire("b", 0.5)
    assert virtual_time.now - started == pytest.approx(0.5)
    assert caught.value.status == 503
    assert caught.value.reason == "queue-timeout"
    assert admission.queued == 0
    admission.release("a", 0.1)
    assert admission.running == 0


async def test_a_cancelled_waiter_gives_its_place_on() -> None:
    admission = Admission(limits(maxConcurrentRequests=1))
    await admission.acquire("a", 1)
    gone = asyncio.ensure_future(admission.acquire("b", 1))
    stays = asyncio.ensure_future(admission.acquire("c", 1))
    await asyncio.sleep(0.01)
    gone.cancel()
    admission.release("a", 0.1)
    await asyncio.wait_for(stays, 1)
    assert admission.running == 1


async def test_more_slots_from_a_config_reload_wake_waiters() -> None:
    admission = Admission(limits(maxConcurrentRequests=1))
    await admission.acquire("a", 1)
    waiting = asyncio.ensure_future(admission.acquire("b", 1))
    await asyncio.sleep(0.01)
    admission.update(limits(maxConcurrentRequests=2))
    await asyncio.wait_for(waiting, 1)
    assert admission.running == 2
