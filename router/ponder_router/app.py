"""``create_app()``: the router's HTTP service (Starlette).

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions`` (JSON or SSE),
``GET /v1/models``, ``GET /v1/usage`` (the caller's tenant's usage, ``usage``),
``GET /openapi.json`` (``api.openapi_schema``), ``GET /healthz`` (the process is alive),
``GET /readyz``, ``GET /metrics``. A handler validates (``api``), authenticates and plans
the budget (``admission``, ``executor``), forwards an escalated tier to another service's
router (``escalation``), or admits the request and runs it (``executor``), then renders
OpenAI's response shape. An escalating tier with first-wave agreement runs its first wave
here and forwards only when that is contested (a streamed request is forwarded at once).

Handlers are module-level functions; what they share (config, executor, endpoint pool,
escalator, metrics, usage, config watcher) is the ``Router`` that ``create_app`` puts on
``app.state.router``, and its lifespan starts and stops it.

Readiness: ready once a valid config is loaded and the router is not shutting down —
not "once a Triton replica exists". At zero replicas the router must stay in the
Service so that requests reach it, wait in its queue (holding until a replica appears or
the request deadline passes, then 503 with ``Retry-After``) and show up as demand for the
autoscaler; a router that went unready at zero replicas would keep the pool at zero.
``/readyz`` reports the endpoint count for people.

Status codes: invalid input 400 (unknown model 404, oversized body 413), missing or
refused API key 401/403, admission full 429 with ``Retry-After``, no replica before the
deadline or queue timeout 503 with ``Retry-After``, Triton failure 502, deadline with no
sample finished 504; errors use OpenAI's JSON shape. Each error class carries its status,
body fields and metric labels (``errors``), so one exception handler answers them all. A
client that disconnects cancels its samples on Triton, streaming or not. A body not
declared ``application/json`` is 415 (a web page cannot send JSON across origins without
the CORS preflight the router never grants), one still incomplete at the request deadline
408; unknown paths 404 and wrong methods 405 also answer in OpenAI's shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .admission import ANONYMOUS, Admission, ApiKeys, AuthError
from .api import (
    AnyRequest,
    ChatCompletionRequest,
    CompletionRequest,
    ModelCard,
    ModelList,
    RequestError,
    check_content_type,
    completion_body,
    content_event,
    count_tokens,
    error_body,
    openapi_schema,
    parse_request,
    problem_text,
    render_prompt,
    separate_reasoning,
    sse,
    stream_chunk,
    usage_chunk,
)
from .chat import Part, ReasoningSplitter
from .config_watch import ConfigWatcher
from .endpoints import BackendFactory, EndpointPool, PodWatcher
from .errors import PonderRouterError
from .escalation import ESCALATED_HEADER, Escalator
from .executor import EscalationNeededError, Executor, RequestRun, RequestSpec
from .metrics import CONTENT_TYPE_LATEST, RouterMetrics
from .settings import RouterConfig
from .triton import TritonBackend
from .usage import UsageLedger

if TYPE_CHECKING:
    from .prior_model import LearnedPrior

logger = logging.getLogger(__name__)

_JSON = "application/json"
_BODY_OVERHEAD_BYTES = 1 << 20


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(content, status_code=status, media_type=_JSON, headers=headers)


def error_response(exc: PonderRouterError) -> Response:
    """The answer to a router error, from what its class says (``errors``)."""
    headers: dict[str, str] = {}
    if exc.retry_after_seconds is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_seconds)))
    body = error_body(str(exc), exc.error_type, exc.param, exc.code)
    return json_response(body, exc.status, headers)


class Router:
    """A running router: config, executor, endpoint discovery and config reloads."""

    def __init__(
        self,
        config: RouterConfig,
        *,
        backend_factory: BackendFactory | None = None,
        config_path: Path | None = None,
        config_poll_seconds: float = 2.0,
        kubeconfig: Path | None = None,
        escalator: Escalator | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._custom_factory = backend_factory
        self.pool = EndpointPool(self._factory(config), clock=clock)
        self.metrics = RouterMetrics(config.service)
        self.executor = Executor(config, self.pool, Admission(config.admission), self.metrics,
                                 clock=clock)  # fmt: skip
        if config.prior.enabled:
            self.executor.prior = _load_prior(config)
        self.metrics.bind_prior(lambda: self.executor.prior.seen if self.executor.prior else 0)
        self.escalator = escalator or Escalator()
        self.api_keys = ApiKeys(config.api_keys_file) if config.api_keys_file else None
        self.usage = UsageLedger(time.time())
        self.kubeconfig = kubeconfig
        self.watcher: PodWatcher | None = None
        self.config_watcher = (
            ConfigWatcher(config_path, self.apply_config, poll_seconds=config_poll_seconds)
            if config_path is not None else None
        )  # fmt: skip
        self.draining = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def config(self) -> RouterConfig:
        return self.executor.config

    def _factory(self, config: RouterConfig) -> BackendFactory:
        if self._custom_factory is not None:
            return self._custom_factory
        model = config.triton_model
        return lambda address: TritonBackend(address, model)

    def _start_endpoints(self, config: RouterConfig) -> None:
        if config.discovery is None:
            self.pool.update(config.endpoints)
            return
        self.watcher = PodWatcher(config.discovery, self.pool.update, kubeconfig=self.kubeconfig)
        self.watcher.start()

    async def start(self) -> None:
        self._start_endpoints(self.config)
        if self.config_watcher is not None:
            self._tasks.append(asyncio.create_task(self.config_watcher.run()))
        self._tasks.append(asyncio.create_task(self._save_prior_periodically()))

    async def stop(self) -> None:
        self.draining = True
        for task in self._tasks:
            task.cancel()
        self.save_prior()
        if self.watcher is not None:
            self.watcher.stop()
        await self.pool.close()
        await self.escalator.close()

    def save_prior(self) -> None:
        """Save the prompt prior's state where the config says, if it has a prior and a path
        (a failed write is logged: the router serves on without it)."""
        snapshot = self._prior_snapshot()
        if snapshot is not None:
            _write_prior(*snapshot)

    def _prior_snapshot(self) -> tuple[dict[str, Any], str] | None:
        prior, path = self.executor.prior, self.config.prior.state_path
        if prior is None or path is None:
            return None
        return prior.state(), path

    async def _save_prior_periodically(self) -> None:
        """Every ``saveIntervalSeconds``: a copy of the state taken here, compressed and
        written in a thread (a large prior takes a while, and requests keep learning)."""
        while True:
            await asyncio.sleep(self.config.prior.save_interval_seconds)
            snapshot = self._prior_snapshot()
            if snapshot is not None:
                await asyncio.to_thread(_write_prior, *snapshot)

    def _apply_prior(self, config: RouterConfig) -> None:
        """A new config's prior section: keep what was learned unless the layout changed."""
        current: LearnedPrior | None = self.executor.prior
        if not config.prior.enabled:
            self.executor.prior = None
        elif current is None:
            self.executor.prior = _load_prior(config)
        else:
            self.executor.prior = current.reconfigure(config.prior)

    async def apply_config(self, config: RouterConfig) -> None:
        """Switch to a new valid config; endpoints, keys and the prior follow it."""
        old = self.config
        self.executor.update(config)
        if config.prior != old.prior:
            self._apply_prior(config)
        if config.api_keys_file != old.api_keys_file:
            self.api_keys = ApiKeys(config.api_keys_file) if config.api_keys_file else None
        if config.triton_model != old.triton_model:
            self.pool.update([])  # running samples finish on the old backends
            self.pool.backend_factory = self._factory(config)
        if (config.discovery, config.endpoints, config.triton_model) != (
            old.discovery, old.endpoints, old.triton_model
        ):  # fmt: skip
            if self.watcher is not None:
                self.watcher.stop()
                self.watcher = None
            self._start_endpoints(config)

    def tenant(self, request: Request, user: str | None) -> str:
        if self.api_keys is None:
            return user or ANONYMOUS
        return self.api_keys.tenant_for(request.headers.get("authorization"))

    def observe(self, run: RequestRun | None, outcome: str, started: float) -> None:
        """Record a finished request: its duration, and, once planned, its tokens, samples
        and outcome (metrics by tier, usage by tenant)."""
        self.metrics.request_duration.observe(time.perf_counter() - started)
        if run is None:
            return
        used = sum(s.tokens for s in run.samples) + run.escalated_tokens
        self.metrics.observe_request(tier=run.budget.tier, outcome=outcome, tokens=used,
                                     samples=len(run.samples),
                                     budget_tokens=run.budget_tokens)  # fmt: skip
        self.usage.record(run.spec.tenant, outcome, samples=len(run.samples),
                          prompt_tokens=run.spec.prompt_tokens, completion_tokens=used)


def _load_prior(config: RouterConfig) -> LearnedPrior:
    """The config's prompt prior, from its state file when usable. Imported here: only a
    router with the prior enabled loads scikit-learn (about 85 MB resident)."""
    from .prior_store import load_prior

    return load_prior(config.prior, config.prior.state_path)


def _write_prior(arrays: dict[str, Any], path: str) -> None:
    from .prior_store import write_state

    try:
        write_state(arrays, path)
    except OSError as exc:
        logger.warning("cannot save the prompt prior to %s: %s", path, exc)


def _router(request: Request) -> Router:
    """The app's ``Router``, put on ``app.state`` by ``create_app``."""
    router: Router = request.app.state.router
    return router


def _spec(parsed: AnyRequest, tenant: str, config: RouterConfig) -> RequestSpec:
    if isinstance(parsed, ChatCompletionRequest):
        prompt = render_prompt(parsed.messages, config.chat)
        problem, prefix = problem_text(parsed.messages), "chatcmpl-"
    else:
        prompt = problem = parsed.prompt_text
        prefix = "cmpl-"
    chars = len(prompt)
    if chars > config.admission.max_prompt_chars:
        raise RequestError(
            f"the prompt has {chars} characters; this service accepts at most "
            f"{config.admission.max_prompt_chars}",
            param="messages" if prefix == "chatcmpl-" else "prompt",
            code="context_length_exceeded",
        )  # fmt: skip
    options = parsed.ponder
    return RequestSpec(
        request_id=prefix + uuid.uuid4().hex, prompt=prompt, problem=problem,
        prompt_tokens=count_tokens(prompt), tenant=tenant, effort=parsed.reasoning_effort,
        temperature=parsed.temperature, top_p=parsed.top_p, seed=parsed.seed,
        stop=tuple(parsed.stop_list), max_tokens=parsed.token_limit,
        max_samples=options.max_samples if options else None,
        strategy=options.strategy if options else None,
        difficulty_hint=options.difficulty if options else None, streaming=parsed.stream,
    )  # fmt: skip


class _QueueSink:
    """Streaming events into a queue the SSE generator drains."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def token(self, text: str) -> None:
        self.queue.put_nowait(("token", text))

    def progress(self, report: dict[str, object]) -> None:
        self.queue.put_nowait(("progress", report))


@contextlib.contextmanager
def _cancel_on_disconnect(request: Request) -> Iterator[Callable[[], bool]]:
    """Cancel the current task if the client disconnects; yields "has it gone?".

    For non-streamed answers: Starlette notices a gone client only when it writes, and a
    request may think for minutes; its samples should stop on Triton at once.
    """
    handler = asyncio.current_task()
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await request.receive())["type"] != "http.disconnect":
            pass
        gone = True
        if handler is not None:
            handler.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        yield lambda: gone
    finally:
        watcher.cancel()
        if gone and handler is not None:
            handler.uncancel()


async def chat_completions(request: Request) -> Response:
    return await _complete(request, ChatCompletionRequest)


async def completions(request: Request) -> Response:
    return await _complete(request, CompletionRequest)


async def _complete(request: Request, kind: type[AnyRequest]) -> Response:
    """A completion request end to end. A ``PonderRouterError`` is counted here, then
    answered by ``_router_error``; the outcome is recorded once (a stream records its own
    when it ends)."""
    router = _router(request)
    started = time.perf_counter()
    outcome, run = "ok", None
    try:
        body, parsed = await _read_request(request, router, kind)
        run = router.executor.plan(_spec(parsed, router.tenant(request, parsed.user),
                                         router.config))  # fmt: skip
        if run.budget.escalate_to is not None and ESCALATED_HEADER not in request.headers:
            if parsed.stream or not run.escalates_on_evidence:
                outcome = "escalated"
                return await _escalate(request, run, body)
            run.escalate_when_contested = True  # its first wave runs here first
        await run.admit()
        if parsed.stream:
            outcome = "streaming"
            return StreamingResponse(_stream(router, run, parsed, started),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})  # fmt: skip
        with _cancel_on_disconnect(request) as gone:
            try:
                result = await run.execute()
            except EscalationNeededError:
                outcome = "escalated"
                return await _escalate(request, run, body)
            except asyncio.CancelledError:
                if not gone():
                    raise
                outcome = "cancelled"  # its samples were cancelled on Triton
                return Response(status_code=499)
        if kind is ChatCompletionRequest:
            result = separate_reasoning(result, run.config.chat, run.spec.prompt)
        return json_response(completion_body(kind is ChatCompletionRequest, run.spec.request_id,
                                             int(time.time()), parsed.model, result))  # fmt: skip
    except PonderRouterError as exc:
        outcome = exc.outcome
        if exc.counts_as_rejection:
            router.metrics.reject(exc.reason)
        raise
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    except Exception:
        outcome = "error"  # the last-resort handler answers 500
        raise
    finally:
        if outcome != "streaming":
            router.observe(run, outcome, started)


async def _read_request(request: Request, router: Router,
                        kind: type[AnyRequest]) -> tuple[bytes, AnyRequest]:  # fmt: skip
    """The body and the validated request; 404 for a model this service does not serve."""
    admission = router.config.admission
    limit = admission.max_prompt_chars * 4 + _BODY_OVERHEAD_BYTES
    body = await _read_body(request, limit, admission.request_timeout_seconds)
    parsed = parse_request(body, kind)
    model = router.config.model_name  # the config may have been reloaded meanwhile
    if parsed.model != model:
        raise RequestError(f"the model {parsed.model!r} does not exist; this service "
                           f"serves {model!r}", param="model",
                           code="model_not_found", status=404)  # fmt: skip
    return body, parsed


async def _read_body(request: Request, limit: int, timeout_seconds: float) -> bytes:
    """The JSON body: 415 if not declared JSON, 413 past ``limit`` bytes (declared or sent),
    408 if it has not all arrived within the request deadline (a slow or stalled client)."""
    check_content_type(request.headers.get("content-type"))
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"request body larger than {limit} bytes", status=413,
                           code="request_too_large")  # fmt: skip
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestError(f"request body larger than {limit} bytes", status=413,
                                       code="request_too_large")  # fmt: skip
                chunks.append(chunk)
    except TimeoutError as exc:
        raise RequestError(f"request body not received within {timeout_seconds:g} s",
                           status=408, code="request_timeout") from exc  # fmt: skip
    except ClientDisconnect as exc:  # nobody to answer; not a server error to log
        raise RequestError("the client left before sending its body", status=499,
                           code="cancelled") from exc  # fmt: skip
    return b"".join(chunks)


async def _escalate(request: Request, run: RequestRun, body: bytes) -> Response:
    """The larger service's answer to a request whose tier escalates (``escalation``)."""
    forwarded = await _router(request).escalator.forward(
        run, request.url.path, body, request.headers.get("authorization"))
    run.escalated_tokens = forwarded.completion_tokens
    if forwarded.stream is not None:
        return StreamingResponse(forwarded.stream, media_type=forwarded.content_type)
    return Response(forwarded.body, status_code=forwarded.status,
                    media_type=forwarded.content_type)  # fmt: skip


async def _stream(router: Router, run: RequestRun, parsed: AnyRequest,
                  started: float) -> AsyncIterator[str]:  # fmt: skip
    """A streamed run's SSE events: its tokens or progress, then the answer and report; a
    failure after the stream began ends it with an error event. Records the outcome. A
    chat's thinking streams as ``reasoning_content`` deltas, its answer as ``content``."""
    sink = _QueueSink()
    work = asyncio.ensure_future(run.execute(sink))
    work.add_done_callback(lambda _: sink.queue.put_nowait(("done", None)))
    chat = isinstance(parsed, ChatCompletionRequest)
    head = (chat, run.spec.request_id, int(time.time()), parsed.model)
    outcome = "cancelled"
    try:
        if chat:
            yield sse(stream_chunk(*head, "", role=True))
        text_event, flush = _text_events(run, head)
        finished = False
        while not finished:
            events, finished = await _next_events(sink, head, text_event)
            if events:
                yield events
        try:
            result = work.result()
        except PonderRouterError as exc:
            outcome = exc.reason  # the request ran: its failure, not a refusal
            yield "data: " + bytes(error_response(exc).body).decode() + "\n\n"
            return
        if chat:
            result = separate_reasoning(result, run.config.chat, run.spec.prompt)
        if run.budget.max_samples == 1:
            if held := flush():
                yield held
        else:
            if result.reasoning is not None:
                yield sse(stream_chunk(*head, reasoning=result.reasoning))
            yield sse(stream_chunk(*head, result.text))
        yield sse(stream_chunk(*head, finish_reason=result.finish_reason,
                               ponder=result.report.model_dump()))  # fmt: skip
        if parsed.include_usage:
            yield sse(usage_chunk(*head, result))
        yield "data: [DONE]\n\n"
        outcome = "ok"
    finally:
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
        router.observe(run, outcome, started)


def _text_events(run: RequestRun, head: tuple[bool, str, int, str],
                 ) -> tuple[Callable[[str], str], Callable[[], str]]:  # fmt: skip
    """The SSE text of a streamed piece of the answering sample, and of what is held back
    at its end: a chat's pieces are split into thinking and answer as they come."""
    chat_format = run.config.chat
    answer_event = content_event(*head)
    if not head[0] or chat_format.delimiters is None:
        return answer_event, lambda: ""
    splitter = ReasoningSplitter(chat_format.delimiters,
                                 opened=chat_format.opens_thinking(run.spec.prompt))
    thinking_event = content_event(*head, reasoning=True)

    def render(pieces: list[tuple[Part, str]]) -> str:
        return "".join(answer_event(text) if part == "content" else thinking_event(text)
                       for part, text in pieces
                       if part == "content" or chat_format.return_reasoning)  # fmt: skip

    return lambda text: render(splitter.feed(text)), lambda: render(splitter.close())


async def _next_events(sink: _QueueSink, head: tuple[bool, str, int, str],
                       text_event: Callable[[str], str]) -> tuple[str, bool]:  # fmt: skip
    """The SSE text of every event queued now, waiting for the first (tokens come in
    bursts: they go out in one write), and whether the run is done."""
    batch = [await sink.queue.get()]
    while not sink.queue.empty():
        batch.append(sink.queue.get_nowait())
    events, finished = [], False
    for kind, payload in batch:
        if kind == "done":
            finished = True
        elif kind == "token":
            events.append(text_event(payload))
        else:
            events.append(sse(stream_chunk(*head, ponder=payload)))
    return "".join(events), finished


async def models(request: Request) -> Response:
    config = _router(request).config
    card = ModelCard(id=config.model_name, created=0, owned_by=config.service)
    return json_response(ModelList(data=[card]).model_dump_json().encode())


async def usage(request: Request) -> Response:
    """The caller's tenant's usage; a refused key answers 401/403 (not counted as a
    rejection: the request was for a report, not a completion)."""
    router = _router(request)
    if router.api_keys is None:
        raise AuthError("usage is reported per API key; this service has no API keys "
                        "configured", status=403)  # fmt: skip
    return json_response(router.usage.report(router.tenant(request, None)))


async def openapi(request: Request) -> Response:
    return json_response(openapi_schema(_router(request).config.model_name))


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    router = _router(request)
    body = {"ready": not router.draining, "service": router.config.service,
            "endpoints": len(router.pool), "queued": router.executor.queued}  # fmt: skip
    return json_response(body, 503 if router.draining else 200)


async def metrics(request: Request) -> Response:
    return Response(_router(request).metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


async def _router_error(request: Request, exc: Exception) -> Response:
    """Every ``PonderRouterError`` a handler raises, in OpenAI's error shape."""
    if not isinstance(exc, PonderRouterError):  # registered for PonderRouterError only
        return await _unexpected(request, exc)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (unknown path 404, wrong method 405) in OpenAI's error shape."""
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        return await _unexpected(request, exc)
    message, where = exc.detail, f"{request.method} {request.url.path}"
    if exc.status_code == 404:
        message = f"Invalid URL ({where})"
    elif exc.status_code == 405:
        message = f"Invalid method ({where}); allowed: {(exc.headers or {}).get('Allow')}"
    body = error_body(message, "invalid_request_error")
    return json_response(body, exc.status_code, dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> Response:
    """The process's last-resort boundary: log, answer 500 (Starlette then re-raises)."""
    logger.exception("unexpected error", exc_info=exc)
    return json_response(error_body("internal error", "server_error"), 500)


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    router: Router = app.state.router
    await router.start()
    try:
        yield
    finally:
        await router.stop()


def create_app(config: RouterConfig, **router_options: Any) -> Starlette:
    """The router's ASGI app; ``router_options`` go to ``Router`` (fakes, reload path)."""
    router = Router(config, **router_options)
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/usage", usage, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        exception_handlers={
            PonderRouterError: _router_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
        lifespan=_lifespan,
    )
    app.state.router = router
    return app
