"""Triton Inference Server (CPU) on loopback, serving the stand-in LLM.

Role: build a model repository from the ``sim_llm`` template — one or more simulated
models, a simulator standing in for a GPU LLM, each with its own parameters — and, where
asked, the ``sim_rm`` template (a simulated reward model, the router's verifier); start the
``tritonserver`` binary from the nvidia-pytriton wheel on free loopback ports, wait until
the server and every model are ready, and stop it. Neighbours: ``paths`` (where
``hack/setup.sh triton`` put the binary and the python-backend interpreter), ``proc``
(the child process and its log), ``sim_llm`` and ``sim_rm`` (the model templates); the
pytest fixtures in ``tests/fixtures_triton.py`` and the demo use it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from ponder_localstack.paths import triton_python_dir, tritonserver_dir
from ponder_localstack.proc import LOOPBACK, Process, StartupError, free_port, http_ok
from ponder_localstack.sim_llm import MODEL_NAME, TEMPLATE_DIR
from ponder_localstack.sim_rm import MODEL_NAME as RM_MODEL_NAME
from ponder_localstack.sim_rm import TEMPLATE_DIR as RM_TEMPLATE_DIR
from ponder_tools.data import shared_data_dir

logger = logging.getLogger(__name__)

_ADDITIONAL_OUTPUT_LINE = (
    r'^(input|output) \{ name: "(return_)?(finish_reason|cumulative_logprob|num_output_tokens)"'
    r".*\n"
)
_PORT_IN_USE = ("address already in use", "failed to start")


@dataclass(frozen=True)
class SimModelOptions:
    """One simulated model in the repository; fields mirror its config parameters."""

    name: str = MODEL_NAME
    token_latency_ms: float = 5.0
    max_concurrency: int = 8
    """Requests generating at once per instance; the rest queue in Triton."""
    engine_queue: bool = False
    """Queue the requests beyond ``max_concurrency`` inside the model, as the vLLM backend
    does (Triton's pending count then stays 0; ``vllm:num_requests_waiting`` shows them)."""
    instance_count: int = 1
    length_scale: float = 1 / 16
    skill_logit_offset: float = 0.0
    spread_logit: float | None = None
    """None: the spread calibrated from the data."""
    reasoning_mode: bool = False
    """R1-length traces whose answer converges and honours a cue mid-stream (simulated)."""
    data_dir: Path | None = None
    """None: ``ponder_tools.data.shared_data_dir()``."""
    additional_outputs: bool = True
    """Declare the vLLM backend's ``return_*`` inputs and their outputs (r24.12+); False
    serves a model without them, as an older vLLM backend is."""

    def parameters(self) -> dict[str, str]:
        return {
            "token_latency_ms": repr(float(self.token_latency_ms)),
            "max_concurrency": str(int(self.max_concurrency)),
            "queue": "engine" if self.engine_queue else "triton",
            "length_scale": repr(float(self.length_scale)),
            "skill_logit_offset": repr(float(self.skill_logit_offset)),
            "spread_logit": "" if self.spread_logit is None else repr(float(self.spread_logit)),
            "reasoning_mode": "true" if self.reasoning_mode else "false",
            "data_dir": str(self.data_dir or shared_data_dir()),
        }


@dataclass(frozen=True)
class SimRewardModelOptions:
    """The simulated reward model (``sim_rm``) in the repository: a verifier to score
    the simulated LLM's samples."""

    name: str = RM_MODEL_NAME
    instance_count: int = 1
    data_dir: Path | None = None
    """None: ``ponder_tools.data.shared_data_dir()``."""

    def parameters(self) -> dict[str, str]:
        return {"data_dir": str(self.data_dir or shared_data_dir())}


ModelOptions = SimModelOptions | SimRewardModelOptions


def render_model_config(template: str, options: ModelOptions) -> str:
    """The template's ``config.pbtxt`` with the model's name, instances and parameters."""
    text, found = re.subn(r'^name: "[^"]*"', f'name: "{options.name}"', template, flags=re.M)
    if found != 1:
        raise ValueError("model config template has no top-level name")
    text, found = re.subn(
        r"(instance_group \[ \{ count: )\d+", rf"\g<1>{int(options.instance_count)}", text
    )
    if found != 1:
        raise ValueError("model config template has no instance_group count")
    if isinstance(options, SimModelOptions) and not options.additional_outputs:
        text, found = re.subn(_ADDITIONAL_OUTPUT_LINE, "", text, flags=re.M)
        if found != 6:
            raise ValueError("model config template lacks the additional outputs' lines")
    for key, value in options.parameters().items():
        if '"' in value or "\\" in value:
            raise ValueError(f"parameter {key} must not contain quotes or backslashes: {value}")
        pattern = rf'(key: "{re.escape(key)}", value: \{{ string_value: ")[^"]*(")'
        text, found = re.subn(pattern, rf"\g<1>{value}\g<2>", text)
        if found != 1:
            raise ValueError(f"model config template has no parameter {key}")
    return text


def _template_files(options: ModelOptions) -> tuple[Path, dict[str, Path]]:
    """The model's config template and its files (path in the model folder: source)."""
    if isinstance(options, SimRewardModelOptions):
        return RM_TEMPLATE_DIR / "config.pbtxt", {
            "behaviour.py": TEMPLATE_DIR / "behaviour.py",
            "scoring.py": RM_TEMPLATE_DIR / "scoring.py",
            "1/reward_model.py": RM_TEMPLATE_DIR / "1" / "reward_model.py",
        }
    return TEMPLATE_DIR / "config.pbtxt", {
        "behaviour.py": TEMPLATE_DIR / "behaviour.py",
        "1/model.py": TEMPLATE_DIR / "1" / "model.py",
    }


def build_model_repository(directory: Path, models: Sequence[ModelOptions]) -> Path:
    """Write one model folder per entry of ``models`` under ``directory``; return it."""
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique: {names}")
    directory.mkdir(parents=True, exist_ok=True)
    for options in models:
        model_dir = directory / options.name
        shutil.rmtree(model_dir, ignore_errors=True)
        (model_dir / "1").mkdir(parents=True)
        template, files = _template_files(options)
        (model_dir / "config.pbtxt").write_text(render_model_config(template.read_text(), options))
        for target, source in files.items():
            shutil.copy2(source, model_dir / target)
    return directory


def repository_configmap(
    name: str, models: Sequence[ModelOptions]
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """A ConfigMap holding the repository ``build_model_repository`` writes, and the
    ``items`` that lay its keys out as Triton's folders (``spec.model.repository.configMap``).

    Keys cannot hold ``/``: the file ``<model>/1/model.py`` is the key
    ``<model>_1_model.py``.
    """
    data: dict[str, str] = {}
    items: list[dict[str, str]] = []
    for options in models:
        template, files = _template_files(options)
        texts = {"config.pbtxt": render_model_config(template.read_text(), options),
                 **{target: source.read_text() for target, source in files.items()}}
        for target, text in texts.items():
            path = f"{options.name}/{target}"
            key = path.replace("/", "_")
            data[key] = text
            items.append({"key": key, "path": path})
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                 "data": data}
    return configmap, items


@dataclass
class TritonServer:
    """``tritonserver`` on 127.0.0.1 serving simulated models from ``workdir/models``.

    ``start()`` returns once the server and every model are ready and sets
    ``startup_seconds``; ``stop()`` terminates it. Usable as a context manager.
    """

    workdir: Path
    models: Sequence[ModelOptions] = (SimModelOptions(),)
    startup_timeout_seconds: float = 180.0
    exit_timeout_seconds: int = 5
    log_verbose: int = 0
    extra_args: Sequence[str] = ()
    host: str = LOOPBACK  # any 127.0.0.0/8 address: the local runner gives each pod its own
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    startup_seconds: float | None = field(default=None, init=False)
    process: Process | None = field(default=None, init=False)

    @property
    def repository(self) -> Path:
        return self.workdir / "models"

    @property
    def log_path(self) -> Path:
        return self.workdir / "tritonserver.log"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """``host:port``, the form ``tritonclient.grpc`` takes as its ``url``."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    def argv(self) -> list[str]:
        root = tritonserver_dir()
        return [
            str(root / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={root / 'backends'}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            "--pinned-memory-pool-byte-size=0",
            "--allow-sagemaker=false",
            "--allow-vertex-ai=false",
            "--strict-readiness=true",
            f"--exit-timeout-secs={self.exit_timeout_seconds}",
            f"--log-verbose={self.log_verbose}",
            *self.extra_args,
        ]

    def environment(self) -> dict[str, str]:
        """PATH with the Triton virtualenv first: the python backend runs its python3."""
        return {"PATH": f"{triton_python_dir()}{os.pathsep}{os.environ.get('PATH', '')}"}

    def ready(self) -> bool:
        if not http_ok(f"{self.http_url}/v2/health/ready"):
            return False
        return all(http_ok(f"{self.http_url}/v2/models/{m}/ready") for m in self.model_names)

    def start(self) -> TritonServer:
        argv = self.argv()  # raises MissingComponentError before anything is written
        build_model_repository(self.repository, self.models)
        for attempt in range(3):
            self.process = Process("tritonserver", argv, self.log_path, self.environment())
            started = time.monotonic()
            self.process.start()
            try:
                self.process.wait_until(self.ready, self.startup_timeout_seconds, "ready")
            except StartupError as exc:
                self.process.stop()
                if attempt == 2 or not any(s in str(exc).lower() for s in _PORT_IN_USE):
                    raise
                logger.warning("tritonserver could not bind its ports; retrying on new ones")
                self.http_port, self.grpc_port, self.metrics_port = (
                    free_port(),
                    free_port(),
                    free_port(),
                )
                argv = self.argv()
                continue
            self.startup_seconds = time.monotonic() - started
            break
        logger.info(
            "tritonserver ready in %.1f s",
            self.startup_seconds,
            extra={
                "http_url": self.http_url,
                "grpc_url": self.grpc_url,
                "models": self.model_names,
            },
        )
        return self

    def stop(self, timeout_seconds: float = 30.0) -> None:
        if self.process is not None:
            self.process.stop(timeout_seconds)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.alive

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
