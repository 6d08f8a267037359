"""Prometheus (Debian's package) on loopback with a generated scrape configuration.

Scrape jobs are static target lists or raw ``scrape_configs`` entries (for
``kubernetes_sd_configs`` against the local API server). The configuration is rewritten
and hot-reloaded through ``/-/reload`` when jobs change.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ponder_localstack.paths import debian_tool
from ponder_localstack.proc import LOOPBACK, Process, free_port, http_ok


@dataclass
class Prometheus:
    """One Prometheus process; ``jobs`` maps job name to ``host:port`` targets."""

    state_dir: Path
    scrape_interval_seconds: float = 1.0
    jobs: dict[str, list[str]] = field(default_factory=dict)
    extra_scrape_configs: list[Mapping[str, object]] = field(default_factory=list)
    port: int = 0
    process: Process | None = None
    startup_seconds: float = 0.0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "prometheus.yml"

    def render_config(self) -> dict[str, object]:
        interval = f"{int(self.scrape_interval_seconds * 1000)}ms"
        scrape_configs: list[Mapping[str, object]] = [
            {"job_name": name, "static_configs": [{"targets": list(targets)}]}
            for name, targets in sorted(self.jobs.items())
        ]
        scrape_configs.extend(self.extra_scrape_configs)
        return {
            "global": {"scrape_interval": interval, "evaluation_interval": interval,
                       "scrape_timeout": interval},
            "scrape_configs": scrape_configs,
        }

    def _write_config(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.render_config(), sort_keys=False))

    def start(self, port: int | None = None) -> Prometheus:
        self._write_config()
        self.port = port or free_port()
        self.process = Process("prometheus", [
            str(debian_tool("prometheus")),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.state_dir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ], self.state_dir / "prometheus.log").start()
        self.startup_seconds = self.process.wait_until(
            lambda: http_ok(f"{self.url}/-/ready"), 60, "ready"
        )
        return self

    def set_jobs(
        self, jobs: Mapping[str, Sequence[str]],
        extra_scrape_configs: Sequence[Mapping[str, object]] = (),
    ) -> None:
        """Replace the scrape jobs and hot-reload the running server."""
        self.jobs = {name: list(targets) for name, targets in jobs.items()}
        self.extra_scrape_configs = list(extra_scrape_configs)
        self._write_config()
        if self.process is not None and self.process.alive:
            request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
            with urllib.request.urlopen(request, timeout=10) as resp:
                resp.read()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()



def file_discovery_job(targets_file: Path, job: str = "ponder-pods") -> dict[str, object]:
    """A ``file_sd_configs`` job over the targets file the local pod runner keeps.

    Debian's Prometheus 2.42 is built without ``kubernetes_sd_configs``, so the runner,
    which watches the pods through the API server, writes the Ready pods that ask to be
    scraped (``prometheus.io/scrape``) with the labels the Helm chart's relabelling gives
    in a real cluster: ``namespace``, ``pod``, ``ponder_service``, ``reasoningservice``.
    """
    return {"job_name": job,
            "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "1s"}]}
