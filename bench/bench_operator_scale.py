"""Benchmark: 1,000 ReasoningServices in one cluster, reconciled by one operator.

Starts the local control plane (etcd, kube-apiserver, controller-manager, scheduler,
KWOK with fake GPU nodes), creates N ReasoningServices (one Triton replica and one router
each) before the operator starts, then starts the real operator and measures the time
until every service reports Ready=True, the operator's CPU time and its peak RSS.

Targets: all Ready within 120 s, peak RSS under 400 MB.
Usage: .venv/bin/python bench/bench_operator_scale.py [--services 1000]
Writes bench/results/operator_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from ponder_localstack.cluster import Cluster, NodeSpec
from ponder_localstack.proc import Process, free_port, http_ok

REPO = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def service(i: int) -> dict[str, object]:
    return {
        "apiVersion": "ponder.dev/v1alpha1", "kind": "ReasoningService",
        "metadata": {"name": f"svc-{i:04d}", "namespace": f"team-{i % 10}"},
        "spec": {"model": {"name": f"model-{i}", "repository": {"configMap": {"name": "m"}}},
                 "scaling": {"minReplicas": 1, "maxReplicas": 2},
                 "router": {"replicas": 1}},
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ready_count(cluster: Cluster) -> int:
    out = cluster.kubectl("get", "rsvc", "-A", "-o", "json")
    count = 0
    for item in json.loads(out)["items"]:
        for cond in item.get("status", {}).get("conditions", []):
            if cond["type"] == "Ready" and cond["status"] == "True":
                count += 1
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--timeout-seconds", type=float, default=600)
    args = parser.parse_args()
    n = args.services
    big = {"cpu": "4096", "memory": "64Ti", "pods": 1000}
    pools = max(1, n // 50)
    nodes = [NodeSpec(f"gpu-{i}", gpus=64, **big) for i in range(pools)]  # type: ignore[arg-type]
    nodes += [NodeSpec(f"cpu-{i}", gpus=0, **big) for i in range(pools)]  # type: ignore[arg-type]
    state = Path(tempfile.mkdtemp(prefix="ponder-bench-"))
    cluster = Cluster(state, controller_qps=200).start(nodes=nodes)
    operator: Process | None = None
    try:
        for path in ("crds/reasoningservices.ponder.dev.yaml", "crds/kopf-peering.yaml"):
            cluster.kubectl("apply", "--server-side", "-f", str(REPO / path))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                        "crd/reasoningservices.ponder.dev")
        for ns in range(10):
            cluster.kubectl("create", "namespace", f"team-{ns}")
        items = [service(i) for i in range(n)]
        for start in range(0, n, 200):
            cluster.kubectl("apply", "-f", "-", input_text=json.dumps(
                {"apiVersion": "v1", "kind": "List", "items": items[start:start + 200]}))
        port = free_port()
        t0 = time.monotonic()
        operator = Process("operator", [sys.executable, "-m", "ponder_operator"],
                           state / "operator.log",
                           env={**cluster.env(), "PONDER_STANDALONE": "1",
                                "PONDER_HEALTH_PORT": str(port),
                                "PONDER_LOG_LEVEL": os.environ.get("PONDER_LOG_LEVEL",
                                                                   "WARNING")}).start()
        assert operator.popen is not None
        pid = operator.popen.pid
        operator.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60)
        ready, timeline = 0, []
        while ready < n and time.monotonic() - t0 < args.timeout_seconds:
            time.sleep(2)
            ready = ready_count(cluster)
            timeline.append((round(time.monotonic() - t0, 1), ready))
            print(f"{timeline[-1][0]:7.1f} s  {ready:5d}/{n} Ready", flush=True)
        elapsed = time.monotonic() - t0
        if ready < n:  # leave a clue for whoever reads the result
            items = json.loads(cluster.kubectl("get", "rsvc", "-A", "-o", "json"))["items"]
            late = [i for i in items if not any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in i.get("status", {}).get("conditions", []))]
            print("not Ready:", late[0]["metadata"]["namespace"], late[0]["metadata"]["name"],
                  json.dumps(late[0].get("status"), indent=1))
        result = {
            "services": n, "all_ready": ready == n, "seconds_to_all_ready": round(elapsed, 1),
            "operator_cpu_seconds": round(cpu_seconds(pid), 1),
            "operator_peak_rss_mb": round(peak_rss_mb(pid), 1),
            "targets": {"seconds_to_all_ready": 120, "operator_peak_rss_mb": 400},
            "timeline": timeline,
        }
    finally:
        if operator is not None:
            operator.stop()
        cluster.stop()
    print()
    print(f"{'services':>10} {'all Ready':>10} {'time (s)':>10} {'op CPU (s)':>11} "
          f"{'peak RSS (MB)':>14}")
    print(f"{n:>10} {result['all_ready']!s:>10} {result['seconds_to_all_ready']:>10} "
          f"{result['operator_cpu_seconds']:>11} {result['operator_peak_rss_mb']:>14}")
    out = REPO / "bench" / "results" / "operator_scale.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
