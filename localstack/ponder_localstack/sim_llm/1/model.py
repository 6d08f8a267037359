"""Triton python-backend model ``ponder-sim-llm``: a simulator standing in for a GPU LLM.

Decoupled, on CPU, with the inputs and outputs of Triton's vLLM backend: ``text_input``,
optional ``stream``, ``sampling_parameters`` (JSON) and ``exclude_input_in_output``, and
``text_output``; and its additional outputs (r24.12+) when their optional BOOL inputs ask
for them: ``finish_reason`` (``"None"`` until the final response, as vLLM's backend sends
it), ``cumulative_logprob`` (simulated and calibrated, see ``behaviour.py``) and
``num_output_tokens`` (the tokens in this response). What it writes comes from
``behaviour.py`` (beside this version folder): reasoning words, then
``The answer is \\boxed{X}.``, right or wrong as calibrated.

Each request generates on a worker thread. Tokens come out at the per-token latency
(one streamed response per token, coalesced when the sender falls behind) and the
request's cancellation is checked between tokens, at most every ``_CANCEL_CHECK_SECONDS``
(each check is a call into the server), with ``response_sender.is_cancelled()`` as
Triton's vLLM backend does: a cancelled request generates at most that long more, then
ends with a ``CANCELLED`` error as its final response and sends nothing after it. At most
``max_concurrency`` requests generate at once per instance; ``execute`` blocks while
every slot is taken, so further requests wait in Triton's queue
(``nv_inference_pending_request_count``). With the parameter ``queue`` set to ``engine``
they wait inside the model instead, as they do in a vLLM engine at its ``max_num_seqs``
(the vLLM backend takes every request at once).

With the model parameter ``REPORT_CUSTOM_METRICS`` set to ``true`` it exports, through
the python backend's custom metrics, the ``vllm:`` series Triton's vLLM backend reports
(labels ``model`` and ``version``): ``vllm:num_requests_running`` (generating now),
``vllm:num_requests_waiting`` (handed to the model, waiting for a slot),
``vllm:prompt_tokens_total`` (prompt words) and ``vllm:generation_tokens_total``
(tokens sent).

It runs under the Triton virtualenv's interpreter (numpy and the standard library only)
and never logs prompts or completions.
"""

import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

_MODEL_DIR = Path(__file__).resolve().parent.parent
if str(_MODEL_DIR) not in sys.path:
    sys.path.insert(0, str(_MODEL_DIR))

import behaviour  # noqa: E402

_CANCEL_CHECK_SECONDS = 0.02
_PUBLISH_SECONDS = 0.05
_SIGNALS = ("finish_reason", "cumulative_logprob", "num_output_tokens")
_INPUT_NAMES = (
    "text_input", "stream", "sampling_parameters", "exclude_input_in_output",
    *(f"return_{name}" for name in _SIGNALS),
)  # fmt: skip


def _param(config: dict[str, Any], key: str, default: str) -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return str(value) if value != "" else default


def _input(request: Any, name: str) -> Any:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    return tensor.as_numpy().reshape(-1)[0]


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _response(text: str, signals: dict[str, Any] | None = None) -> Any:
    """A response with ``text`` and the additional outputs in ``signals`` (name: value)."""
    out = [pb_utils.Tensor("text_output", np.array([text.encode("utf-8")], dtype=np.object_))]
    for name, value in (signals or {}).items():
        if name == "finish_reason":
            array = np.array([str(value).encode()], dtype=np.object_)
        elif name == "cumulative_logprob":
            array = np.array([value], dtype=np.float32)
        else:
            array = np.array([value], dtype=np.uint32)
        out.append(pb_utils.Tensor(name, array))
    return pb_utils.InferenceResponse(output_tensors=out)


_ENGINE_SERIES = {
    "running": ("vllm:num_requests_running", "Number of requests currently running."),
    "waiting": ("vllm:num_requests_waiting", "Number of requests waiting to be processed."),
    "prompt_tokens": ("vllm:prompt_tokens_total", "Number of prefill tokens processed."),
    "generation_tokens": ("vllm:generation_tokens_total", "Number of generation tokens processed."),
}  # fmt: skip
_ENGINE_GAUGES = ("running", "waiting")


class _EngineMetrics:
    """The vLLM backend's ``vllm:`` series for one model version (``REPORT_CUSTOM_METRICS``).

    The worker threads count in Python (``add``); one publisher thread hands the counts to
    Triton every ``_PUBLISH_SECONDS``, as the vLLM backend's own logger thread does
    (calling the metrics from the generating threads at once crashed the stub, signal 11).
    """

    def __init__(self, model: str, version: str, stopping: threading.Event) -> None:
        labels = {"model": model, "version": version}
        self._families: list[Any] = []  # a family dropped is a family unregistered
        self._metrics: dict[str, Any] = {}
        for key, (name, description) in _ENGINE_SERIES.items():
            gauge = key in _ENGINE_GAUGES
            kind = pb_utils.MetricFamily.GAUGE if gauge else pb_utils.MetricFamily.COUNTER
            family = pb_utils.MetricFamily(name=name, description=description, kind=kind)
            self._families.append(family)
            self._metrics[key] = family.Metric(labels=labels)
        self._counts = dict.fromkeys(_ENGINE_SERIES, 0)
        self._published = dict.fromkeys(_ENGINE_SERIES, 0)
        self._lock = threading.Lock()
        self._stopping = stopping
        self._thread = threading.Thread(target=self._publish, name="sim-llm-metrics", daemon=True)
        self._thread.start()

    def add(self, key: str, amount: int) -> None:
        with self._lock:
            self._counts[key] += amount

    def _publish(self) -> None:
        while not self._stopping.wait(_PUBLISH_SECONDS):
            with self._lock:
                counts = dict(self._counts)
            for key, value in counts.items():
                if value != self._published[key]:
                    if key in _ENGINE_GAUGES:
                        self._metrics[key].set(value)
                    else:
                        self._metrics[key].increment(value - self._published[key])
                    self._published[key] = value

    def stop(self) -> None:
        self._thread.join()


def _error(message: str, code: Any) -> Any:
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self._token_latency_ms = float(_param(config, "token_latency_ms", "5"))
        self._max_concurrency = max(1, int(_param(config, "max_concurrency", "8")))
        spread = _param(config, "spread_logit", "")
        settings = behaviour.SimSettings(
            length_scale=float(_param(config, "length_scale", "0.0625")),
            skill_logit_offset=float(_param(config, "skill_logit_offset", "0")),
            spread_logit=float(spread) if spread else None,
            reasoning_mode=_param(config, "reasoning_mode", "false").lower() == "true",
        )
        # Set by ponder_localstack.triton (SimModelOptions); this interpreter has no ponder_tools.
        data_dir = _param(config, "data_dir", os.environ.get("PONDER_DATA_DIR", ""))
        if not data_dir:
            raise behaviour.CalibrationDataError(
                "the model parameter data_dir (or PONDER_DATA_DIR) must name the shared data"
            )
        self._sim = behaviour.SimModel.load(Path(data_dir), settings)
        # vLLM writes its compile cache at start, under VLLM_CACHE_ROOT, else
        # $XDG_CACHE_HOME/vllm, else ~/.cache/vllm (relative to the working directory when
        # the user has no home); so does the stand-in, and fails where vLLM would.
        cache_root = os.environ.get("VLLM_CACHE_ROOT") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vllm")
        cache = Path(cache_root) / "ponder-sim-llm"
        cache.mkdir(parents=True, exist_ok=True)  # fails on a read-only HOME, as vLLM does
        (cache / "engine.json").write_text(json.dumps({"model": args["model_name"]}))
        self._slots = threading.BoundedSemaphore(self._max_concurrency)
        self._pool = ThreadPoolExecutor(
            max_workers=self._max_concurrency, thread_name_prefix="sim-llm"
        )
        self._stopping = threading.Event()
        self._engine_queue = _param(config, "queue", "triton") == "engine"
        self._metrics: _EngineMetrics | None = None
        if _param(config, "REPORT_CUSTOM_METRICS", "false") == "true":  # as the vLLM backend
            self._metrics = _EngineMetrics(
                args["model_name"], args["model_version"], self._stopping
            )
        pb_utils.Logger.log_info(
            f"{args['model_name']} (simulator) ready: {len(self._sim.catalog.problems)} known "
            f"problems, {self._token_latency_ms} ms/token, "
            f"max_concurrency {self._max_concurrency}"
        )

    def execute(self, requests: list[Any]) -> None:
        for request in requests:
            if self._engine_queue:  # the pool's max_concurrency workers take them in turn
                self._add("waiting", 1)
                self._pool.submit(self._run_queued, request)
                continue
            acquired = False
            self._add("waiting", 1)
            while not acquired and not self._stopping.is_set():
                acquired = self._slots.acquire(timeout=0.5)
            self._add("waiting", -1)
            if not acquired:
                request.get_response_sender().send(
                    _error("model is shutting down", pb_utils.TritonError.UNAVAILABLE),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
                )
                continue
            self._pool.submit(self._run, request)
        return None

    def _add(self, series: str, amount: int) -> None:
        if self._metrics is not None:
            self._metrics.add(series, amount)

    def _run_queued(self, request: Any) -> None:
        self._add("waiting", -1)
        self._slots.acquire()  # free: as many slots as the pool has workers
        self._run(request)

    def _run(self, request: Any) -> None:
        sender = request.get_response_sender()
        self._add("running", 1)
        try:
            self._generate(request, sender)
        except behaviour.SimLLMError as exc:
            sender.send(
                _error(str(exc), pb_utils.TritonError.INVALID_ARG),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
            )
        except Exception as exc:  # the worker's last-resort boundary
            pb_utils.Logger.log_error(f"simulated generation failed: {exc!r}")
            sender.send(
                _error(f"generation failed: {exc}", pb_utils.TritonError.INTERNAL),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
            )
        finally:
            self._add("running", -1)
            self._slots.release()

    def _generate(self, request: Any, sender: Any) -> None:
        prompt = _text(_input(request, "text_input"))
        stream = bool(_input(request, "stream") or False)
        exclude = _input(request, "exclude_input_in_output")
        # As vLLM's backend: the prompt is prepended unless excluded, and never streamed.
        prepend = (not bool(exclude)) if exclude is not None else not stream
        if prepend and stream:
            raise behaviour.SamplingParameterError(
                "When streaming, `exclude_input_in_output` = False is not allowed."
            )
        raw = _input(request, "sampling_parameters")
        params = behaviour.parse_sampling_parameters(
            _text(raw) if raw is not None else request.parameters(), ignore=_INPUT_NAMES
        )
        completion = self._sim.complete(prompt, params)
        self._add("prompt_tokens", len(prompt.split()))
        wanted = [name for name in _SIGNALS if bool(_input(request, f"return_{name}") or False)]

        def signals(sent_before: int, sent: int) -> dict[str, Any]:
            final = sent == len(completion.tokens)
            values = {"finish_reason": completion.finish_reason if final else None,
                      "cumulative_logprob": completion.cumulative_logprob(sent),
                      "num_output_tokens": sent - sent_before}  # fmt: skip
            return {name: values[name] for name in wanted}

        latency_ms = params.token_latency_ms
        latency_s = (self._token_latency_ms if latency_ms is None else latency_ms) / 1000.0
        tokens = completion.tokens
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL

        start = time.monotonic()
        last_check = start
        sent = 0
        while sent < len(tokens):
            if stream:
                due = start + (sent + 1) * latency_s
            else:
                due = min(start + len(tokens) * latency_s, time.monotonic() + 0.05)
            delay = due - time.monotonic()
            if delay > 0 and self._stopping.wait(delay):
                sender.send(
                    _error("model is shutting down", pb_utils.TritonError.UNAVAILABLE), flags=final
                )
                return
            now = time.monotonic()
            if now - last_check >= _CANCEL_CHECK_SECONDS or not stream:
                last_check = now
                if sender.is_cancelled():  # the response factory's flag, as vLLM's backend
                    sender.send(
                        _error("Request was cancelled", pb_utils.TritonError.CANCELLED), flags=final
                    )
                    return
            if latency_s > 0:
                ready = int((now - start) / latency_s)
            else:
                ready = sent + 1 if stream else len(tokens)
            if not stream:
                if ready >= len(tokens):
                    self._add("generation_tokens", len(tokens))
                    text = (prompt if prepend else "") + completion.text
                    sender.send(_response(text, signals(0, len(tokens))), flags=final)
                    return
                continue
            upto = min(len(tokens), max(sent + 1, ready))
            chunk = "".join(tokens[sent:upto])
            before, sent = sent, upto
            self._add("generation_tokens", sent - before)
            sender.send(
                _response(chunk, signals(before, sent)), flags=final if sent == len(tokens) else 0
            )

    def finalize(self) -> None:
        self._stopping.set()
        self._pool.shutdown(wait=True)
        if self._metrics is not None:
            self._metrics.stop()
