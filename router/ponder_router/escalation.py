"""Escalation: a request whose tier escalates is answered by a larger service's router.

Role: the thin adapter (httpx) behind a tier's ``escalate_to``. The request goes to that
ReasoningService's router with this router's budget as its caps (max tokens per sample,
``ponder.max_samples``, the difficulty estimate as ``ponder.difficulty``), marked with the
``x-ponder-escalated-from`` header so the larger service serves it itself (no loops); its
response says which service answered (``ponder.answered_by``) and where it came from
(``ponder.escalated_from``). Neighbours: ``app`` decides to escalate, ``executor`` plans
the budget this module forwards.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from .errors import UpstreamError

if TYPE_CHECKING:
    from .executor import RequestRun

ESCALATED_HEADER = "x-ponder-escalated-from"


@dataclass
class Forwarded:
    """An escalated request's answer from the other router: a body or a byte stream."""

    status: int
    content_type: str
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    completion_tokens: int = 0


class Escalator:
    """Forwards requests whose tier escalates to another ReasoningService's router."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(transport=transport,
                                         timeout=httpx.Timeout(30.0, connect=5.0))  # fmt: skip
        self._models: dict[str, str] = {}

    async def _model_of(self, base_url: str) -> str:
        """The model name the other router serves (``GET /v1/models``, cached)."""
        model = self._models.get(base_url)
        if model is None:
            response = await self._client.get(base_url.rstrip("/") + "/v1/models")
            response.raise_for_status()
            model = str(response.json()["data"][0]["id"])
            self._models[base_url] = model
        return model

    def _body(self, run: RequestRun, body: bytes, model: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(body)
        data["model"] = model
        ponder = dict(data.get("ponder") or {})
        ponder.update(difficulty=round(run.estimate.score, 6),
                      max_samples=run.budget.max_samples)  # fmt: skip
        data["ponder"] = ponder
        budget = run.budget  # the other service may spend up to this tier's envelope
        cap = budget.max_tokens_after_first_wave or budget.max_tokens_per_sample
        if "messages" in data:
            data.pop("max_tokens", None)
            data["max_completion_tokens"] = cap
        else:
            data["max_tokens"] = cap
        return data

    async def forward(self, run: RequestRun, path: str, body: bytes,
                      authorization: str | None) -> Forwarded:  # fmt: skip
        target = run.budget.escalate_to or ""
        base_url = run.config.escalation[target].rstrip("/")
        headers = {ESCALATED_HEADER: run.config.service}
        if authorization:
            headers["authorization"] = authorization
        try:
            data = self._body(run, body, await self._model_of(base_url))
            request = self._client.build_request(
                "POST", base_url + path, json=data, headers=headers,
                timeout=httpx.Timeout(max(run.remaining_seconds(), 0.001), connect=5.0),
            )  # fmt: skip
            response = await self._client.send(request, stream=True)
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
            raise UpstreamError(f"escalation to {target} failed: {type(exc).__name__}") from exc
        content_type = response.headers.get("content-type", "application/json")
        if data.get("stream") and response.status_code == 200:
            return Forwarded(response.status_code, content_type, stream=_relay(response))
        try:
            content = await response.aread()
        except httpx.HTTPError as exc:
            raise UpstreamError(f"escalation to {target} failed: {type(exc).__name__}") from exc
        finally:
            await response.aclose()
        forwarded = Forwarded(response.status_code, content_type, content)
        if response.status_code == 200:
            answer = json.loads(content)
            answer.setdefault("ponder", {})["escalated_from"] = run.config.service
            forwarded.body = json.dumps(answer).encode()
            forwarded.completion_tokens = int(answer.get("usage", {}).get("completion_tokens", 0))
        return forwarded

    async def close(self) -> None:
        await self._client.aclose()


async def _relay(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    finally:
        await response.aclose()
