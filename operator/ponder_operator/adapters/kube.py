"""Kubernetes API access for the operator: server-side apply of children, reads, scale.

Every write goes through server-side apply with the field manager ``ponder-operator``
(``force`` so hand edits of fields the operator owns are taken back). The Triton
Deployment's ``spec.replicas`` is written by a separate field manager,
``ponder-autoscaler``, so a reconcile of the rest of the Deployment never resets it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from kubernetes import client, config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import (
    BadRequestError,
    NotFoundError,
    ResourceNotFoundError,
    UnprocessibleEntityError,
)

from ponder_operator.errors import ChildRejected

log = logging.getLogger(__name__)

FIELD_MANAGER = "ponder-operator"
AUTOSCALER_FIELD_MANAGER = "ponder-autoscaler"


CONNECTION_POOL_SIZE = 64
"""Kept-alive API connections: at least the handler and autoscaler threads that share them
(urllib3's default of 10 discards the rest after each call, and every new connection
costs a TLS handshake)."""


def load_api_client() -> client.ApiClient:
    """An API client from the in-cluster service account, else from KUBECONFIG."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:
        config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    return client.ApiClient(configuration)


def _json(response: Any) -> Any:
    """The decoded JSON body of a raw response (``serialize=False``): plain dicts, not the
    dynamic client's attribute-access wrappers, which cost more CPU than the call itself."""
    return json.loads(response.data)


def api_message(exc: Exception) -> str:
    """The API server's own message from a refused request (it names the field), else
    the exception's own text."""
    try:
        return str(json.loads(getattr(exc, "body", "") or "{}").get("message") or exc)
    except ValueError:
        return str(exc)


class Kube:
    """Generic access by apiVersion/kind, built on the dynamic client (discovery cached)."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._dynamic = DynamicClient(api_client)

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one Kube per process
    def _resource(self, api_version: str, kind: str) -> Any:
        return self._dynamic.resources.get(api_version=api_version, kind=kind)

    def has_kind(self, api_version: str, kind: str) -> bool:
        """Whether the cluster serves this kind (e.g. monitoring.coreos.com ServiceMonitor)."""
        try:
            self._dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            return False
        return True

    def apply(
        self, body: Mapping[str, Any], field_manager: str = FIELD_MANAGER
    ) -> dict[str, Any]:
        """Server-side apply ``body`` (a full object with apiVersion, kind, metadata);
        ``ChildRejected`` when the API server refuses it as invalid."""
        meta = body["metadata"]
        try:
            result = self._dynamic.server_side_apply(
                self._resource(body["apiVersion"], body["kind"]),
                body=dict(body),
                name=meta["name"],
                namespace=meta.get("namespace"),
                field_manager=field_manager,
                force_conflicts=True,
                serialize=False,
            )
        except (BadRequestError, UnprocessibleEntityError) as exc:
            raise ChildRejected(body["kind"], meta["name"], api_message(exc)) from exc
        applied: dict[str, Any] = _json(result)
        return applied

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        try:
            found = self._dynamic.get(
                self._resource(api_version, kind), name=name, namespace=namespace,
                serialize=False,
            )
        except NotFoundError:
            return None
        obj: dict[str, Any] = _json(found)
        return obj

    def list(
        self, api_version: str, kind: str, namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        found = self._dynamic.get(
            self._resource(api_version, kind), namespace=namespace,
            label_selector=label_selector, serialize=False,
        )
        items: list[dict[str, Any]] = _json(found)["items"]
        return items

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> dict[str, Any]:
        """Set ``spec.replicas`` of a Deployment as the autoscaler's own field manager;
        returns the Deployment as applied."""
        return self.apply(
            {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": name, "namespace": namespace},
             "spec": {"replicas": replicas}},
            field_manager=AUTOSCALER_FIELD_MANAGER,
        )

    def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> bool:
        """Merge ``annotations`` into a pod's; False when the pod is gone."""
        try:
            self._dynamic.patch(
                self._resource("v1", "Pod"), body={"metadata": {"annotations": dict(annotations)}},
                name=name, namespace=namespace, content_type="application/merge-patch+json",
                serialize=False,
            )
        except NotFoundError:
            return False
        return True

    def patch_status(
        self, api_version: str, kind: str, name: str, namespace: str,
        status: Mapping[str, Any],
    ) -> None:
        """Merge-patch the status subresource."""
        resource = self._resource(api_version, kind)
        self._dynamic.patch(
            resource.subresources["status"], body={"status": dict(status)}, name=name,
            namespace=namespace, content_type="application/merge-patch+json", serialize=False,
        )
