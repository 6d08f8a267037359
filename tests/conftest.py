"""Session fixtures for the real components: the local cluster and Prometheus.

Triton fixtures live in ``fixtures_triton``. Slow components start once per session;
a failing test's report carries the tail of every component log.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from components import LOG_FILES, require
from ponder_localstack.cluster import Cluster, NodeSpec
from ponder_localstack.proc import log_tail
from ponder_localstack.prometheus import Prometheus

pytest_plugins = ["fixtures_triton", "fixtures_operator", "fixtures_router"]

GPU_NODES = (
    NodeSpec("gpu-h100-0", gpus=4),
    NodeSpec("gpu-h100-1", gpus=4),
    NodeSpec("gpu-l4-0", gpus=2, gpu_product="NVIDIA-L4"),
    NodeSpec("cpu-0", gpus=0),
)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """etcd, kube-apiserver, controller-manager, scheduler and KWOK with fake GPU nodes."""
    state = tmp_path_factory.mktemp("cluster")
    local = Cluster(state)
    LOG_FILES.extend(local.logs_dir / f"{n}.log" for n in (
        "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"))
    require(lambda: local.start(nodes=GPU_NODES))
    yield local
    local.stop()


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    slug = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower())[:40].strip("-")
    name = f"t-{slug}-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    """Start Prometheus servers scraping given static targets; all stopped afterwards."""
    started: list[Prometheus] = []

    def start(jobs: dict[str, list[str]], scrape_interval_seconds: float = 0.5) -> Prometheus:
        server = Prometheus(tmp_path / f"prometheus-{len(started)}", scrape_interval_seconds,
                            jobs=jobs)
        LOG_FILES.append(server.state_dir / "prometheus.log")
        started.append(server)
        return require(server.start)

    yield start
    for server in started:
        server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None]:
    report = yield
    if report.failed and call.when in {"setup", "call"}:
        for path in LOG_FILES:
            if path.exists():
                report.sections.append((f"log {path.name}", log_tail(path, 25)))
    return report


API_KEY = re.compile(rb"\bsk-[A-Za-z0-9_-]+")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The log audit of the whole run: no API key may appear in any component's log.

    Every key the tests hand out has the ``sk-`` form; every process the tests start logs
    into a file in ``LOG_FILES``. A key found fails the run, naming the file.
    """
    leaks = []
    for path in dict.fromkeys(LOG_FILES):
        if path.exists():
            found = API_KEY.search(path.read_bytes())
            if found:
                leaks.append(f"{path}: {found.group(0)[:12].decode(errors='replace')}…")
    if leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line("LOG AUDIT FAILED: API keys in component logs:", red=True)
            for leak in leaks:
                reporter.write_line(f"  {leak}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
