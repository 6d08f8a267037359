"""A pod's volumes on the local kubelet: folders it writes and the lookups env needs.

Test and demo infrastructure, used by ``pods``. emptyDirs are folders of the pod's state
folder; ConfigMaps, Secrets and projected volumes are written from the API server's
objects (``items`` honoured, a missing key or object an error unless ``optional``) and
written again while the pod runs, as the kubelet refreshes them; a PersistentVolumeClaim
is its bound PersistentVolume's ``hostPath`` or ``local`` folder. A router pod gets a
kubeconfig for the API server, the stand-in for its ServiceAccount token (``images``).
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ponder_localstack.sandbox import PodSpecError

KUBECONFIG_VOLUME = "ponder-localstack-kubeconfig"


def inline_kubeconfig(path: Path) -> str:
    """``path``'s kubeconfig with the files it names inlined as ``*-data`` (one file
    the container can read wherever it is mounted)."""
    config = yaml.safe_load(path.read_text())
    for section, key in (("clusters", "cluster"), ("users", "user")):
        for entry in config.get(section, ()):
            body = entry[key]
            for name in ("certificate-authority", "client-certificate", "client-key"):
                if name in body:
                    data = Path(body.pop(name)).read_bytes()
                    body[f"{name}-data"] = base64.b64encode(data).decode()
    return str(yaml.safe_dump(config))


@dataclass
class PodVolumes:
    """The volumes of ``pod`` (camelCase, as the API server serves it) under ``pod_dir``."""

    pod: Mapping[str, Any]
    pod_dir: Path
    api: Any
    kubeconfig: Path
    with_kubeconfig: bool = False
    refresh_seconds: float = 1.0
    """How often ``refresh_if_due`` reads the objects again (the kubelet: about a minute;
    shorter here, so a test sees the router's configuration change at once)."""
    _refreshed_at: float = field(default=-math.inf, init=False)

    def volume_dir(self, name: str) -> Path:
        return self.pod_dir / "volumes" / name

    def prepare(self) -> None:
        for volume in self.pod["spec"].get("volumes") or ():
            if volume.get("emptyDir") is not None:
                self.volume_dir(volume["name"]).mkdir(parents=True, exist_ok=True)
        self.refresh()

    def dirs(self) -> dict[str, Path]:
        dirs = {}
        for volume in self.pod["spec"].get("volumes") or ():
            if any(volume.get(k) for k in ("configMap", "secret", "projected")):
                dirs[volume["name"]] = self.volume_dir(volume["name"])
            elif volume.get("persistentVolumeClaim"):
                dirs[volume["name"]] = self._claim_dir(volume["persistentVolumeClaim"])
        if self.with_kubeconfig:
            dirs[KUBECONFIG_VOLUME] = self.pod_dir / "kubeconfig"
        return dirs

    def _claim_dir(self, claim: Mapping[str, Any]) -> Path:
        pvc = self.api.read_namespaced_persistent_volume_claim(
            claim["claimName"], self.pod["metadata"]["namespace"])
        if not pvc.spec.volume_name:
            raise PodSpecError(f"PersistentVolumeClaim {claim['claimName']} is not bound")
        pv = self.api.read_persistent_volume(pvc.spec.volume_name)
        source = pv.spec.host_path or pv.spec.local
        if source is None:
            raise PodSpecError(f"PersistentVolume {pv.metadata.name} is neither hostPath "
                               "nor local")
        return Path(source.path)

    def refresh_if_due(self) -> None:
        if time.monotonic() - self._refreshed_at >= self.refresh_seconds:
            self.refresh()

    def refresh(self) -> None:
        """Write ConfigMap, Secret and projected volumes from the API server's objects."""
        self._refreshed_at = time.monotonic()
        namespace = self.pod["metadata"]["namespace"]
        for volume in self.pod["spec"].get("volumes") or ():
            files: dict[str, bytes] = {}
            if volume.get("configMap"):
                files = self._object_files("configMap", volume["configMap"], namespace)
            elif volume.get("secret"):
                files = self._object_files("secret", volume["secret"], namespace)
            elif volume.get("projected"):
                for source in volume["projected"].get("sources") or ():
                    files.update(self._projected_files(source, namespace))
            else:
                continue
            write_files(self.volume_dir(volume["name"]), files)
        if self.with_kubeconfig:
            target = self.pod_dir / "kubeconfig"
            if not target.exists():
                target.write_text(inline_kubeconfig(self.kubeconfig))

    def _object_files(self, kind: str, source: Mapping[str, Any],
                      namespace: str) -> dict[str, bytes]:
        name = source.get("name") or source.get("secretName")
        data = self.lookup_object(kind, str(name), namespace)
        if data is None:
            if source.get("optional"):
                return {}
            raise PodSpecError(f"{kind} {name} not found for a volume")
        items = source.get("items")
        if not items:
            return data
        missing = [i["key"] for i in items if i["key"] not in data]
        if missing:
            raise PodSpecError(f"{kind} {name} has no key(s) {missing}")
        return {i["path"]: data[i["key"]] for i in items}

    def _projected_files(self, source: Mapping[str, Any], namespace: str) -> dict[str, bytes]:
        if source.get("configMap"):
            return self._object_files("configMap", source["configMap"], namespace)
        if source.get("secret"):
            return self._object_files("secret", {**source["secret"],
                                                 "secretName": source["secret"]["name"]},
                                      namespace)
        if source.get("downwardAPI"):
            return {i["path"]: namespace.encode() for i in source["downwardAPI"]["items"]
                    if i.get("fieldRef", {}).get("fieldPath") == "metadata.namespace"}
        if source.get("serviceAccountToken"):  # a stand-in: the router uses the kubeconfig
            return {source["serviceAccountToken"]["path"]: b""}
        return {}

    def lookup_object(self, kind: str, name: str, namespace: str) -> dict[str, bytes] | None:
        from kubernetes import client

        try:
            if kind == "configMap":
                cm = self.api.read_namespaced_config_map(name, namespace)
                return {k: v.encode() for k, v in (cm.data or {}).items()}
            secret = self.api.read_namespaced_secret(name, namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    def lookup_value(self, kind: str, name: str, key: str) -> str | None:
        data = self.lookup_object(kind, name, self.pod["metadata"]["namespace"])
        if data is None:
            return None
        if key == "":
            return "\n".join(f"{k}={v.decode()}" for k, v in data.items())
        value = data.get(key)
        return None if value is None else value.decode()


def write_files(folder: Path, files: Mapping[str, bytes]) -> None:
    """Write ``files`` (relative path: content) under ``folder``, each replaced whole."""
    for relative, content in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.read_bytes() == content:
            continue
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(content)
        tmp.replace(path)
    folder.mkdir(parents=True, exist_ok=True)
