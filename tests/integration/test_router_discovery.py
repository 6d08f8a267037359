"""Endpoint discovery through the real Kubernetes API, with a real Triton behind the pod.

The router watches Pods by label selector and uses ``status.podIP`` of the Ready ones.
The test pods are bound to a node nobody runs (so neither KWOK nor a kubelet touches
them) and their status is written by the test: Ready with podIP 127.0.0.1, where the
session's Triton (serving the ``ponder-sim-llm`` simulator) listens. A router with no
Ready pod holds requests in its queue — visible as demand — until one appears.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from ponder_localstack.cluster import Cluster
from ponder_localstack.sim_llm import MODEL_NAME
from ponder_localstack.triton import TritonServer
from ponder_router.app import create_app
from ponder_router.settings import RouterConfig

pytestmark = [pytest.mark.cluster, pytest.mark.triton]

SELECTOR = "app=sim-triton"
NOBODYS_NODE = "router-test-unmanaged-node"


def create_pod(cluster: Cluster, namespace: str, name: str) -> None:
    cluster.kubectl_apply([{
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "sim-triton"}},
        "spec": {"nodeName": NOBODYS_NODE, "containers": [
            {"name": "triton", "image": "nvcr.io/nvidia/tritonserver:24.10-vllm-python-py3"}]},
    }])  # fmt: skip


def set_status(cluster: Cluster, namespace: str, name: str, *, ready: bool) -> None:
    status = {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
              "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    cluster.kubectl("patch", "pod", name, "-n", namespace, "--subresource=status",
                    "--type=merge", "-p", json.dumps({"status": status}))  # fmt: skip


@asynccontextmanager
async def discovering_router(cluster: Cluster, namespace: str, triton: TritonServer,
                             **admission: Any) -> AsyncIterator[httpx.AsyncClient]:  # fmt: skip
    config = RouterConfig.model_validate({
        "service": "sim", "modelName": "sim", "tritonModel": MODEL_NAME,
        "discovery": {"namespace": namespace, "labelSelector": SELECTOR,
                      "grpcPort": triton.grpc_port},
        "admission": admission})  # fmt: skip
    app = create_app(config, kubeconfig=cluster.kubeconfig)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://router",
                                     timeout=60) as client:  # fmt: skip
            yield client


async def until(check: Any, timeout_seconds: float = 20) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout_seconds} s")
        await asyncio.sleep(0.1)


async def endpoints(client: httpx.AsyncClient) -> int:
    return int((await client.get("/readyz")).json()["endpoints"])


def gauge(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + "{"))
    return float(line.rsplit(" ", 1)[1])


async def test_a_request_waits_for_a_ready_triton_pod_and_is_then_served(
    cluster: Cluster, namespace: str, triton_server: TritonServer
) -> None:
    async with discovering_router(cluster, namespace, triton_server) as client:
        assert await endpoints(client) == 0
        held = asyncio.ensure_future(client.post("/v1/chat/completions", json={
            "model": "sim", "messages": [{"role": "user", "content": "What is 3+4?"}],
            "reasoning_effort": "low"}))  # fmt: skip

        async def queued() -> bool:
            return gauge((await client.get("/metrics")).text, "ponder_router_queue_depth") == 1

        await until(queued)
        metrics = (await client.get("/metrics")).text
        assert gauge(metrics, "ponder_router_demand_tokens") > 0  # the autoscaler sees it
        assert (await client.get("/readyz")).status_code == 200
        assert not held.done()

        create_pod(cluster, namespace, "triton-0")
        await asyncio.sleep(0.5)
        assert await endpoints(client) == 0  # a pod without a Ready condition is not used
        set_status(cluster, namespace, "triton-0", ready=True)
        response = await asyncio.wait_for(held, 30)
        assert response.status_code == 200
        assert response.json()["ponder"]["answer"] is not None
        assert await endpoints(client) == 1

        set_status(cluster, namespace, "triton-0", ready=False)

        async def gone() -> bool:
            return await endpoints(client) == 0

        await until(gone)


async def test_a_request_with_no_pod_until_its_deadline_gets_503(
    cluster: Cluster, namespace: str, triton_server: TritonServer
) -> None:
    async with discovering_router(cluster, namespace, triton_server,
                                  requestTimeoutSeconds=1) as client:  # fmt: skip
        response = await client.post("/v1/chat/completions", json={
            "model": "sim", "messages": [{"role": "user", "content": "What is 3+4?"}]})
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    assert "scaling up from zero" in response.json()["error"]["message"]
