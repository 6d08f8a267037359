"""kopf handlers: thin glue from Kubernetes events to ``reconcile`` and the autoscaler.

Handlers (explicit ids, so kopf's stored progress survives renames):

- ``reconcile-create`` / ``reconcile-update`` / ``reconcile-resume`` — apply the children
  of a ReasoningService and write its status;
- ``services`` — an index of ReasoningServices, so child events find their owner cheaply;
- ``children`` — a managed Deployment changed (hand edit, deletion, rollout progress):
  re-apply it (reverting hand edits, except ``replicas``) and refresh the owner's status;
- ``autoscale`` — a daemon per ReasoningService running the scaling loop every
  ``spec.scaling.intervalSeconds`` (see ``autoscale``).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from ponder_operator import autoscale
from ponder_operator.adapters.kube import Kube, load_api_client
from ponder_operator.api import GROUP, PLURAL, VERSION
from ponder_operator.api.spec import parse_spec
from ponder_operator.api.status import (
    Condition,
    ConditionType,
    Reason,
    ReasoningServiceStatus,
    with_condition,
)
from ponder_operator.errors import SpecError
from ponder_operator.policy.status import UNKNOWN_GPU_PRODUCT
from ponder_operator.reconcile import (
    Capacity,
    apply_children,
    owner_of,
    refresh_status,
    render_children,
    write_status,
)
from ponder_operator.render import MANAGED_BY, SERVICE_LABEL, RenderOptions
from ponder_operator.settings import OperatorSettings

log = logging.getLogger(__name__)
RETRY_DELAY_SECONDS = 30


@kopf.on.startup()
def configure(*, settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="ponder.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="ponder.dev", key="last-handled-configuration")
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 16
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    operator_settings: OperatorSettings = memo.get("settings") or OperatorSettings.from_env()
    kube = Kube(load_api_client())
    memo["settings"] = operator_settings
    memo["kube"] = kube
    memo["options"] = RenderOptions(
        router_image=operator_settings.router_image,
        service_monitor=kube.has_kind("monitoring.coreos.com/v1", "ServiceMonitor"),
    )


def _previous_status(body: Mapping[str, Any]) -> ReasoningServiceStatus:
    return ReasoningServiceStatus.model_validate(body.get("status") or {})


def _capacity(status: ReasoningServiceStatus) -> Capacity:
    return Capacity(at_ceiling=bool(status.at_ceiling), replicas=status.ready_replicas or 0)


def reconcile_body(body: kopf.Body, memo: Any) -> None:
    """Apply children and write status; invalid or unsatisfiable specs set Ready=False."""
    kube: Kube = memo["kube"]
    owner = owner_of(body)
    generation = int(body["metadata"].get("generation") or 0)
    previous = _previous_status(body)
    try:
        spec = parse_spec(body)
    except SpecError as exc:
        ready = Condition(type=ConditionType.READY, status="False", reason=Reason.INVALID_SPEC,
                          message=str(exc), last_transition_time=datetime.now(UTC),
                          observed_generation=generation)
        write_status(kube, owner, previous.model_copy(
            update={"conditions": with_condition(previous.conditions, ready)}))
        kopf.warn(body, reason=Reason.INVALID_SPEC, message=str(exc))
        raise kopf.PermanentError(str(exc)) from exc
    apply_children(kube, owner, spec, memo["options"], _capacity(previous))
    status = refresh_status(kube, owner, spec, generation, previous)
    write_status(kube, owner, status)
    now_ready = status.condition(ConditionType.READY)
    if now_ready is not None and now_ready.reason == UNKNOWN_GPU_PRODUCT:
        kopf.warn(body, reason=UNKNOWN_GPU_PRODUCT, message=now_ready.message)
        raise kopf.TemporaryError(now_ready.message, delay=RETRY_DELAY_SECONDS)


BACKOFF_SECONDS, TIMEOUT_SECONDS = 5, 300


@kopf.on.resume(GROUP, VERSION, PLURAL, id="reconcile-resume",
                backoff=BACKOFF_SECONDS, timeout=TIMEOUT_SECONDS)
@kopf.on.create(GROUP, VERSION, PLURAL, id="reconcile-create",
                backoff=BACKOFF_SECONDS, timeout=TIMEOUT_SECONDS)
@kopf.on.update(GROUP, VERSION, PLURAL, id="reconcile-update", field="spec",
                backoff=BACKOFF_SECONDS, timeout=TIMEOUT_SECONDS)
def reconcile(*, body: kopf.Body, memo: Any, **_: Any) -> None:
    reconcile_body(body, memo)


@kopf.index(GROUP, VERSION, PLURAL, id="services")
def services(
    *, namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], dict[str, Any]]:
    return {(namespace, name): copy.deepcopy(dict(body))}


@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": MANAGED_BY},
               id="children")
def children(*, type: str, body: kopf.Body, memo: Any, **kwargs: Any) -> None:
    """Re-apply a changed child Deployment and refresh its owner's status."""
    services: kopf.Index[tuple[str, str], dict[str, Any]] = kwargs["services"]
    if type is None:  # the initial listing: resume handlers cover it
        return
    meta = body["metadata"]
    key = (meta["namespace"], meta.get("labels", {}).get(SERVICE_LABEL, ""))
    for owner_body in services.get(key, []):
        if owner_body["metadata"].get("deletionTimestamp"):
            continue
        try:
            spec = parse_spec(owner_body)
        except SpecError:
            continue  # reported by the reconcile handler
        kube: Kube = memo["kube"]
        owner = owner_of(owner_body)
        previous = _previous_status(owner_body)
        for child in render_children(owner, spec, memo["options"], _capacity(previous)):
            if child["kind"] == "Deployment" and child["metadata"]["name"] == meta["name"]:
                kube.apply(child)
        live = kube.get(f"{GROUP}/{VERSION}", "ReasoningService", owner.name, owner.namespace)
        if live is None:
            continue
        status = refresh_status(kube, owner, spec, int(live["metadata"].get("generation") or 0),
                                _previous_status(live))
        write_status(kube, owner, status)


@kopf.daemon(GROUP, VERSION, PLURAL, id="autoscale", cancellation_timeout=10,
             initial_delay=1)
async def autoscaler(
    *, stopped: kopf.DaemonStopped, body: kopf.Body, memo: Any,
    logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any,
) -> None:
    """One scaling loop per ReasoningService; every failure is logged and retried."""
    state = autoscale.LoopState()
    while not stopped:
        interval = autoscale.interval_seconds(body)
        try:
            state = await asyncio.to_thread(autoscale.tick, body, memo, state)
        except kopf.PermanentError as exc:
            logger.warning("autoscaling skipped: %s", exc)
        except Exception:  # last-resort boundary: the loop must outlive any single failure
            logger.exception("autoscaling tick failed")
        await stopped.wait(interval)
