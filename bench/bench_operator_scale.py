"""Benchmark: 1,000 ReasoningServices in one cluster, reconciled by one operator.

Two runs side by side, each on a fresh local control plane (etcd, kube-apiserver,
controller-manager, scheduler, KWOK with fake GPU nodes), each starting from N
ReasoningServices that already exist (one Triton replica and one router each):

- ``kubectl`` (the floor): the very children the operator would render, applied in bulk
  with ``kubectl apply --server-side``; timed until every Triton and router Deployment has
  its replica ready. No operator runs: this is what the cluster itself needs to bring up
  2N Deployments, and no operator can beat it.
- ``operator``: the real operator starts; timed until every service reports Ready=True,
  with the operator's CPU time and peak RSS.

Both runs report the control plane's own CPU time (kube-apiserver, etcd, controllers)
and the API requests served, so the operator's share of the work is visible.

Targets: all Ready within 120 s, operator peak RSS under 400 MB.
Usage: .venv/bin/python bench/bench_operator_scale.py [--services 1000] [--runs kubectl,operator]
Writes bench/results/operator_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ponder_localstack.cluster import Cluster, NodeSpec
from ponder_localstack.proc import Process, free_port, http_ok
from ponder_operator.api.spec import parse_spec
from ponder_operator.reconcile import Capacity, owner_of, render_children
from ponder_operator.render import RenderOptions

REPO = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TARGET_SECONDS, TARGET_RSS_MB = 120.0, 400.0
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
NAMESPACES = 10
APPLY_CHUNK = 400
POLL_SECONDS = 5.0  # each poll lists every object: the watcher must not be the load


def service(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "ponder.dev/v1alpha1", "kind": "ReasoningService",
        "metadata": {"name": f"svc-{i:04d}", "namespace": f"team-{i % NAMESPACES}"},
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


def control_plane_cpu(state: Path) -> dict[str, float]:
    """CPU seconds of each control-plane process of the cluster under ``state``."""
    totals: dict[str, float] = {}
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            argv = (pid_dir / "cmdline").read_bytes().split(b"\0")
            if str(state).encode() not in b" ".join(argv):
                continue
            binary = Path(argv[0].decode()).name
            if binary in CONTROL_PLANE:
                totals[binary] = totals.get(binary, 0.0) + cpu_seconds(int(pid_dir.name))
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
    return {name: round(seconds, 1) for name, seconds in sorted(totals.items())}


def api_requests(cluster: Cluster) -> dict[str, int]:
    """Requests the API server answered, by verb and resource, most first."""
    counts: Counter[str] = Counter()
    for line in cluster.kubectl("get", "--raw", "/metrics").splitlines():
        if line.startswith("apiserver_request_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            key = " ".join(filter(None, (labels.get("verb"), labels.get("resource"),
                                         labels.get("subresource"))))
            counts[key] += int(float(line.rsplit(" ", 1)[1]))
    return dict(counts.most_common(16))


def ready_services(cluster: Cluster) -> int:
    out = cluster.kubectl("get", "rsvc", "-A", "-o", "json")
    return sum(
        any(c["type"] == "Ready" and c["status"] == "True"
            for c in item.get("status", {}).get("conditions", []))
        for item in json.loads(out)["items"])


def ready_deployments(cluster: Cluster) -> int:
    out = cluster.kubectl("get", "deploy", "-A", "-l", "app.kubernetes.io/managed-by",
                          "-o", "jsonpath={range .items[*]}{.status.readyReplicas}{\"\\n\"}{end}")
    return sum(1 for line in out.splitlines() if line.strip() not in ("", "0"))


def new_cluster(n: int) -> tuple[Cluster, Path]:
    big = {"cpu": "4096", "memory": "64Ti", "pods": 1000}
    pools = max(1, n // 50)
    nodes = [NodeSpec(f"gpu-{i}", gpus=64, **big) for i in range(pools)]
    nodes += [NodeSpec(f"cpu-{i}", gpus=0, **big) for i in range(pools)]
    state = Path(tempfile.mkdtemp(prefix="ponder-bench-"))
    # KWOK renews 2N pods' and the nodes' state from one process on these shared cores;
    # a run past five minutes saw every lease late and every pod turned NotReady, which
    # measures KWOK, not the operator: the fake nodes get an hour of grace here.
    cluster = Cluster(state, controller_qps=200, node_monitor_grace="1h").start(nodes=nodes)
    for path in ("crds/reasoningservices.ponder.dev.yaml", "crds/kopf-peering.yaml"):
        cluster.kubectl("apply", "--server-side", "-f", str(REPO / path))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                    "crd/reasoningservices.ponder.dev")
    for ns in range(NAMESPACES):
        cluster.kubectl("create", "namespace", f"team-{ns}")
    items = [service(i) for i in range(n)]
    for start in range(0, n, 200):
        cluster.kubectl("apply", "-f", "-", input_text=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": items[start:start + 200]}))
    return cluster, state


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_for(count: Callable[[], int], want: int, t0: float, timeout_seconds: float,
             label: str, pid: int | None = None) -> tuple[int, list[tuple[float, ...]]]:
    """Poll ``count`` until ``want``; the timeline has (seconds, count[, operator RSS MB])."""
    done, timeline = 0, []
    while done < want and time.monotonic() - t0 < timeout_seconds:
        time.sleep(POLL_SECONDS)
        done = count()
        point: tuple[float, ...] = (round(time.monotonic() - t0, 1), done)
        if pid is not None:
            point += (round(rss_mb(pid), 1),)
        timeline.append(point)
        print(f"  {label} {point[0]:7.1f} s  {done:5d}/{want}"
              + (f"  RSS {point[2]:.0f} MB" if pid is not None else ""), flush=True)
    return done, timeline


def run_kubectl(n: int, timeout_seconds: float) -> dict[str, Any]:
    """The floor: the operator's children applied in bulk, no operator running."""
    cluster, state = new_cluster(n)
    try:
        owners = json.loads(cluster.kubectl("get", "rsvc", "-A", "-o", "json"))["items"]
        children = [child for body in owners
                    for child in render_children(owner_of(body), parse_spec(body),
                                                 RenderOptions(), Capacity())]
        t0 = time.monotonic()
        for start in range(0, len(children), APPLY_CHUNK):
            cluster.kubectl("apply", "--server-side", "--field-manager=ponder-operator",
                            "-f", "-", input_text=json.dumps(
                                {"apiVersion": "v1", "kind": "List",
                                 "items": children[start:start + APPLY_CHUNK]}))
        applied_seconds = time.monotonic() - t0
        ready, timeline = wait_for(lambda: ready_deployments(cluster), 2 * n, t0,
                                   timeout_seconds, "kubectl: Deployments ready")
        return {
            "run": "kubectl", "objects_applied": len(children),
            "apply_seconds": round(applied_seconds, 1), "all_ready": ready == 2 * n,
            "seconds_to_all_ready": round(time.monotonic() - t0, 1),
            "control_plane_cpu_seconds": control_plane_cpu(state),
            "api_requests": api_requests(cluster), "timeline": timeline,
        }
    finally:
        cluster.stop()


def run_operator(n: int, timeout_seconds: float) -> dict[str, Any]:
    """The real operator reconciling N existing services from a cold start."""
    cluster, state = new_cluster(n)
    operator: Process | None = None
    try:
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
        ready, timeline = wait_for(lambda: ready_services(cluster), n, t0, timeout_seconds,
                                   "operator: services Ready", pid)
        elapsed = time.monotonic() - t0
        result = {
            "run": "operator", "all_ready": ready == n, "seconds_to_all_ready": round(elapsed, 1),
            "operator_cpu_seconds": round(cpu_seconds(pid), 1),
            "operator_peak_rss_mb": round(peak_rss_mb(pid), 1),
            "control_plane_cpu_seconds": control_plane_cpu(state),
            "api_requests": api_requests(cluster), "timeline": timeline,
        }
        if ready < n:  # leave a clue for whoever reads the result
            items = json.loads(cluster.kubectl("get", "rsvc", "-A", "-o", "json"))["items"]
            late = [i for i in items if not any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in i.get("status", {}).get("conditions", []))]
            result["first_not_ready"] = {"name": late[0]["metadata"]["name"],
                                         "status": late[0].get("status")}
        return result
    finally:
        if operator is not None:
            operator.stop()
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--timeout-seconds", type=float, default=600)
    parser.add_argument("--runs", default="kubectl,operator")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    n = args.services
    runners = {"kubectl": run_kubectl, "operator": run_operator}
    results = []
    for name in args.runs.split(","):
        print(f"== {name}: {n} services", flush=True)
        results.append(runners[name.strip()](n, args.timeout_seconds))

    print()
    print(f"{'run':>9} {'services':>9} {'all Ready':>10} {'time (s)':>9} {'op CPU (s)':>11} "
          f"{'op RSS (MB)':>12} {'apiserver CPU (s)':>18} {'etcd CPU (s)':>13}")
    for r in results:
        cp = r["control_plane_cpu_seconds"]
        print(f"{r['run']:>9} {n:>9} {r['all_ready']!s:>10} {r['seconds_to_all_ready']:>9} "
              f"{r.get('operator_cpu_seconds', '-')!s:>11} "
              f"{r.get('operator_peak_rss_mb', '-')!s:>12} "
              f"{cp.get('kube-apiserver', 0):>18} {cp.get('etcd', 0):>13}")
    by_run = {r["run"]: r for r in results}
    verdict: dict[str, Any] = {}
    if "operator" in by_run:
        op = by_run["operator"]
        verdict = {
            "all_ready_within_120_s": op["all_ready"]
                                      and op["seconds_to_all_ready"] <= TARGET_SECONDS,
            "peak_rss_under_400_mb": op["operator_peak_rss_mb"] < TARGET_RSS_MB,
        }
        if "kubectl" in by_run and by_run["kubectl"]["all_ready"]:
            floor = by_run["kubectl"]["seconds_to_all_ready"]
            verdict["operator_over_floor"] = round(op["seconds_to_all_ready"] / floor, 2)
            verdict["floor_within_120_s"] = floor <= TARGET_SECONDS
        for key, value in verdict.items():
            print(f"{key}: {value}")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "operator_scale.json"
    out.write_text(json.dumps({
        "services": n, "machine_cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "targets": {"seconds_to_all_ready": TARGET_SECONDS,
                    "operator_peak_rss_mb": TARGET_RSS_MB},
        "verdict": verdict, "runs": results,
    }, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
