"""kopf handlers: thin glue from Kubernetes events to ``reconcile`` and the autoscaler.

Handlers (explicit ids, so kopf's stored progress survives renames):

- ``reconcile-create`` / ``reconcile-update`` / ``reconcile-resume`` — apply the children
  of a ReasoningService and write its status;
- ``services``, ``deployments``, ``triton_pods``, ``gpu_products`` — in-memory indexes fed
  by the watches (see ``views``): the loops read the cluster from these, not from the API;
- ``children`` — a managed Deployment was edited by hand or deleted: re-apply it
  (``replicas`` excepted, it belongs to the autoscaler);
- ``autoscale`` — a daemon per ReasoningService running the scaling loop every
  ``spec.scaling.intervalSeconds`` (see ``autoscale``); it also keeps the status current;
- ``login`` — kopf's own login, over a bounded connection pool (``adapters.kopf_session``);
- ``configure`` — kopf's settings, and the clients of the ``OperatorContext`` (``context``)
  that ``main`` passes as kopf's ``memo``: every handler receives it as ``memo``.

A spec the models refuse sets ``Ready=False``/``InvalidSpec`` for good; a child the API
server refuses sets ``Ready=False``/``ChildRejected`` and is retried.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from ponder_operator import autoscale, views
from ponder_operator.adapters import kopf_session
from ponder_operator.adapters.kube import (
    AUTOSCALER_FIELD_MANAGER,
    FIELD_MANAGER,
    Kube,
    api_message,
)
from ponder_operator.api import GROUP, PLURAL, VERSION
from ponder_operator.api.spec import parse_spec
from ponder_operator.api.status import (
    Condition,
    ConditionType,
    Reason,
    ReasoningServiceStatus,
    with_condition,
)
from ponder_operator.context import OperatorContext
from ponder_operator.errors import ChildRejected, SpecError
from ponder_operator.reconcile import (
    Capacity,
    apply_children,
    owner_of,
    render_children,
    status_after_apply,
    write_status,
)
from ponder_operator.render import (
    COMPONENT_LABEL,
    GPU_PRODUCT_LABEL,
    MANAGED_BY,
    SERVICE_LABEL,
    Owner,
    router_name,
    triton_name,
)

log = logging.getLogger(__name__)
RETRY_DELAY_SECONDS = 30
_MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}
# Writers of a child's spec that are not hand edits: the operator itself and the autoscaler
# (server-side apply), and kube-controller-manager (e.g. the deployment controller).
_OWN_MANAGERS = frozenset({FIELD_MANAGER, AUTOSCALER_FIELD_MANAGER, "kube-controller-manager"})
_INDEXES = ("services", "deployments", "triton_pods", "gpu_products")


kopf.on.login(id="login")(kopf_session.login)


@kopf.on.startup(id="configure")
def configure(*, settings: kopf.OperatorSettings, memo: OperatorContext, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="ponder.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="ponder.dev", key="last-handled-configuration")
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 32
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    if not isinstance(memo, OperatorContext):
        raise kopf.PermanentError("start the operator with ponder-operator (ponder_operator.main)")
    settings.peering.lifetime = memo.settings.peering_lifetime_seconds
    memo.connect()


def _previous_status(body: Mapping[str, Any]) -> ReasoningServiceStatus:
    return ReasoningServiceStatus.model_validate(body.get("status") or {})


def _capacity(status: ReasoningServiceStatus) -> Capacity:
    return Capacity(at_ceiling=bool(status.at_ceiling), replicas=status.ready_replicas or 0)


def _refuse(body: kopf.Body, kube: Kube, owner: Owner, generation: int,
            previous: ReasoningServiceStatus, reason: Reason, message: str) -> None:
    """Ready=False with ``reason`` in status, and a Warning Event saying why."""
    ready = Condition(type=ConditionType.READY, status="False", reason=reason, message=message,
                      last_transition_time=datetime.now(UTC), observed_generation=generation)
    write_status(kube, owner, previous.model_copy(
        update={"conditions": with_condition(previous.conditions, ready)}))
    kopf.warn(body, reason=reason, message=message)


def reconcile_body(body: kopf.Body, context: OperatorContext,
                   indexes: Mapping[str, Any]) -> None:
    """Apply children and write status; invalid or unsatisfiable specs set Ready=False."""
    kube = context.kube
    owner = owner_of(body)
    generation = int(body["metadata"].get("generation") or 0)
    previous = _previous_status(body)
    try:
        spec = parse_spec(body)
    except SpecError as exc:
        _refuse(body, kube, owner, generation, previous, Reason.INVALID_SPEC, str(exc))
        raise kopf.PermanentError(str(exc)) from exc
    try:
        applied = apply_children(kube, owner, spec, context.options, _capacity(previous))
    except ChildRejected as exc:  # the spec passed the CRD, not the child's own validation
        _refuse(body, kube, owner, generation, previous, Reason.CHILD_REJECTED, str(exc))
        raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY_SECONDS) from exc
    except ApiException as exc:
        if not _namespace_terminating(exc):
            raise
        # The service goes with its namespace: nothing to create, nothing to retry.
        log.warning("not reconciling %s/%s: %s", owner.namespace, owner.name, api_message(exc))
        return
    view = views.service_view(indexes, owner.namespace, triton_name(owner), router_name(owner),
                              owner.name, spec.resources.gpu_product)
    status = status_after_apply(owner, applied, view.pods, view.gpu_product_known, generation,
                                previous)
    write_status(kube, owner, status)
    now_ready = status.condition(ConditionType.READY)
    if now_ready is not None and now_ready.reason == Reason.UNKNOWN_GPU_PRODUCT:
        kopf.warn(body, reason=Reason.UNKNOWN_GPU_PRODUCT, message=now_ready.message)
        raise kopf.TemporaryError(now_ready.message, delay=RETRY_DELAY_SECONDS)
    context.reconciled[owner.uid] = generation


def _namespace_terminating(exc: ApiException) -> bool:
    """A 403 because the namespace is being deleted (no new objects may be created in it)."""
    return exc.status == 403 and "NamespaceTerminating" in str(exc.body or "")


BACKOFF_SECONDS, TIMEOUT_SECONDS = 5, 300


def _not_reconciled_yet(body: kopf.Body, memo: OperatorContext, **_: Any) -> bool:
    """Whether this process has yet to apply this generation of the object.

    Under load kopf can hand a handler the same generation twice: an object created before
    the operator started gets its create handler and then, marked as not yet resumed, a
    resume cause on its next event; and an event older than kopf's own annotation patch
    looks unhandled again once kopf stops waiting for the newer one. Applying it all again
    changes nothing but costs a dozen API calls, so each generation is applied once per
    process (a restarted operator resumes everything).
    """
    meta = body["metadata"]
    return memo.reconciled.get(meta["uid"]) != int(meta.get("generation") or 0)


@kopf.on.resume(GROUP, VERSION, PLURAL, id="reconcile-resume", when=_not_reconciled_yet,
                backoff=BACKOFF_SECONDS, timeout=TIMEOUT_SECONDS)
@kopf.on.create(GROUP, VERSION, PLURAL, id="reconcile-create", when=_not_reconciled_yet,
                backoff=BACKOFF_SECONDS, timeout=TIMEOUT_SECONDS)
@kopf.on.update(GROUP, VERSION, PLURAL, id="reconcile-update", field="spec",
                when=_not_reconciled_yet, backoff=BACKOFF_SECONDS, timeout=TIMEOUT_SECONDS)
def reconcile(*, body: kopf.Body, memo: OperatorContext, **kwargs: Any) -> None:
    reconcile_body(body, memo, {name: kwargs[name] for name in _INDEXES})


@kopf.index(GROUP, VERSION, PLURAL, id="services")
async def services(
    *, namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], dict[str, Any]]:
    meta = body.get("metadata", {})
    kept = {k: meta[k] for k in ("name", "namespace", "uid", "generation", "deletionTimestamp")
            if k in meta}
    return {(namespace, name): {"metadata": kept, "spec": copy.deepcopy(dict(body.spec))}}


@kopf.index("apps", "v1", "deployments", labels=_MANAGED, id="deployments")
async def deployments(
    *, namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], views.Summary]:
    return {(namespace, name): views.summarize_deployment(body)}


@kopf.index("", "v1", "pods", labels={**_MANAGED, COMPONENT_LABEL: "triton"}, id="triton_pods")
async def triton_pods(
    *, namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], views.Summary]:
    return {(namespace, labels.get(SERVICE_LABEL, "")): views.summarize_pod(body)}


@kopf.index("", "v1", "nodes", labels={GPU_PRODUCT_LABEL: kopf.PRESENT}, id="gpu_products")
async def gpu_products(*, labels: Mapping[str, str], name: str, **_: Any) -> dict[str, str]:
    return {labels[GPU_PRODUCT_LABEL]: name}


def hand_edited(body: Mapping[str, Any]) -> bool:
    """Whether a manager other than the operator, the autoscaler or a controller wrote spec."""
    for entry in body.get("metadata", {}).get("managedFields") or []:
        fields = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if entry.get("manager") in _OWN_MANAGERS or entry.get("subresource"):
            continue
        if set(fields) - {"f:replicas"}:
            return True
    return False


@kopf.on.event("apps", "v1", "deployments", labels=_MANAGED, id="children")
async def children(
    *, type: str, body: kopf.Body, memo: OperatorContext, **kwargs: Any
) -> None:
    """Revert a hand edit (or deletion) of a child Deployment by re-applying it.

    Async, so the many events that need nothing (status updates) stay on the event loop;
    only a re-apply goes to a thread.
    """
    if type is None or (type != "DELETED" and not hand_edited(body)):
        return
    services: kopf.Index[tuple[str, str], dict[str, Any]] = kwargs["services"]
    meta = body["metadata"]
    key = (meta["namespace"], meta.get("labels", {}).get(SERVICE_LABEL, ""))
    for owner_body in services.get(key, []):
        if owner_body["metadata"].get("deletionTimestamp"):
            continue
        try:
            spec = parse_spec(owner_body)
        except SpecError:
            continue  # reported by the reconcile handler
        owner = owner_of(owner_body)
        for child in render_children(owner, spec, memo.options, Capacity()):
            if child["kind"] == "Deployment" and child["metadata"]["name"] == meta["name"]:
                try:
                    await asyncio.get_running_loop().run_in_executor(
                        memo.tick_executor, memo.kube.apply, child)
                except (ApiException, ChildRejected) as exc:
                    # e.g. 403 while the namespace terminates, before the owner's deletion
                    # reached the index; the next reconcile re-applies anyway.
                    why = str(exc) if isinstance(exc, ChildRejected) else api_message(exc)
                    log.warning("could not restore Deployment %s/%s: %s", meta["namespace"],
                                meta["name"], why)


@kopf.daemon(GROUP, VERSION, PLURAL, id="autoscale", cancellation_timeout=10,
             initial_delay=1)
async def autoscaler(
    *, stopped: kopf.DaemonStopped, body: kopf.Body, memo: OperatorContext,
    logger: logging.Logger | logging.LoggerAdapter[Any], **kwargs: Any,
) -> None:
    """One scaling loop per ReasoningService; every failure is logged and retried."""
    indexes = {name: kwargs[name] for name in _INDEXES}
    state = autoscale.LoopState()
    while not stopped:
        interval = autoscale.interval_seconds(body)
        try:
            # In kopf's context (kopf.event needs its settings), on the loops' own threads.
            context = contextvars.copy_context()
            state = await asyncio.get_running_loop().run_in_executor(
                memo.tick_executor, context.run, autoscale.tick, body, memo, indexes, state)
        except kopf.PermanentError as exc:
            logger.warning("autoscaling skipped: %s", exc)
        except Exception:  # last-resort boundary: the loop must outlive any single failure
            logger.exception("autoscaling tick failed")
        await stopped.wait(interval)
    meta = body.get("metadata", {})
    memo.metrics.forget(meta.get("namespace", ""), meta.get("name", ""))
    memo.reconciled.pop(meta.get("uid"), None)
