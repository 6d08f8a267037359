"""Plan one container of a pod as a sandboxed local process: root, mounts, argv, env.

Test and demo infrastructure. ``plan_container`` turns a pod (as the API server returns
it, camelCase) and one of its containers into a ``ContainerPlan`` that
``sandbox_init`` carries out inside Linux user and mount namespaces, as unprivileged
container runtimes (bubblewrap, rootless runc) do. Pure: no I/O but the listing of host
directories, which callers may inject. Neighbours: ``runner`` (the local kubelet, which
materialises the volumes and starts ``sandbox_init``), ``images`` (what each image
provides).

What a plan honours from the pod:

- the container's ``command``/``args`` (the image's entrypoint when ``command`` is
  unset), with ``$(VAR)`` references expanded from its environment, as the kubelet does;
- exactly its ``env`` and ``envFrom`` (``valueFrom`` field, ConfigMap and Secret
  references resolved), plus what the image provides (``PATH`` and the like);
- ``runAsUser``/``runAsGroup`` (container over pod) as the process's uid and gid;
  ``runAsNonRoot`` refuses a container that would run as uid 0, and
  ``allowPrivilegeEscalation: false`` sets ``no_new_privs``, as the kubelet does;
- ``readOnlyRootFilesystem``: the root is a tmpfs holding only mount points, made
  read-only; the host's directories are bound read-only on it (they stand in for the
  image's layers), ``/proc`` bound, ``/dev`` a few device nodes;
- every ``volumeMount`` (``subPath``, ``readOnly``): emptyDirs as folders of the pod's
  state folder (``medium: Memory`` as a tmpfs of its ``sizeLimit``), ConfigMaps, Secrets
  and projected files as folders the runner writes, hostPath as it is;
- ``/dev/shm``: a 64 MiB tmpfs, the container runtimes' default, unless a volume mounts
  there.

Not honoured: capabilities and seccomp (the process has none either way once it runs as
a non-zero uid; a container that runs as uid 0 keeps them inside its user namespace),
``fsGroup`` and supplementary groups (the host's files and the volumes belong to the
container's user, which maps to the runner's own), CPU limits and GPUs, the pid and
network namespaces (``images`` binds each server to the pod's own loopback address),
``imagePullSecrets`` and ``runtimeClassName``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_SHM_BYTES = 64 * 1024**2
"""``/dev/shm`` when no volume mounts there: containerd's and Docker's default."""
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
SKIPPED_HOST_DIRS = frozenset({"proc", "dev", "sys", "tmp", "lost+found"})
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


class PodSpecError(ValueError):
    """The pod asks for something the local kubelet cannot run; the pod is not started."""


@dataclass(frozen=True)
class Mount:
    """One step of building the root: ``kind`` is bind, file, tmpfs, dir or symlink."""

    kind: str
    target: str
    source: str = ""
    read_only: bool = False
    size_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "source": self.source,
                "readOnly": self.read_only, "sizeBytes": self.size_bytes}


@dataclass(frozen=True)
class ContainerPlan:
    """What ``sandbox_init`` does: the JSON it reads is ``to_json()``."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    uid: int
    gid: int
    root: str
    mounts: tuple[Mount, ...]
    read_only_root: bool
    working_dir: str = "/"
    cgroup_procs: str = ""
    no_new_privileges: bool = False

    def mount_at(self, target: str) -> Mount | None:
        return next((m for m in reversed(self.mounts) if m.target == target), None)

    def to_json(self) -> dict[str, Any]:
        return {"argv": list(self.argv), "env": dict(self.env), "uid": self.uid,
                "gid": self.gid, "root": self.root, "readOnlyRoot": self.read_only_root,
                "workingDir": self.working_dir, "cgroupProcs": self.cgroup_procs,
                "noNewPrivileges": self.no_new_privileges,
                "mounts": [m.to_json() for m in self.mounts]}


@dataclass(frozen=True)
class Image:
    """What an image provides: its entrypoint, environment and commands.

    ``commands`` maps a command name to the local argv that stands in for it; ``network``
    gives, for a command, the arguments that put a server on the pod's address.
    """

    entrypoint: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    commands: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    network: Mapping[str, Callable[[str], Sequence[str]]] = field(default_factory=dict)
    host_env: Callable[[str], Mapping[str, str]] | None = None
    """Extra environment the runner adds for the pod's address (the pod network)."""


@dataclass(frozen=True)
class PodContext:
    """What the kubelet knows beside the pod object: its address and volume folders."""

    pod_ip: str
    pod_dir: Path
    volume_dirs: Mapping[str, Path] = field(default_factory=dict)
    """Folders the runner wrote for ConfigMap, Secret, projected and PVC volumes."""
    lookup: Callable[[str, str, str], str | None] = lambda kind, name, key: None
    """(configMap|secret, name, key) -> value, for env references."""
    cgroup_procs: str = ""


def quantity_bytes(quantity: str | int) -> int:
    """Bytes in a Kubernetes quantity (64Mi, 1G, 1024)."""
    text = str(quantity)
    number = text.rstrip("kKMGTPEi")
    suffix = text[len(number):]
    factor = {"": 1, "k": 1000, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
              "P": 1000**5, "E": 1000**6, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3,
              "Ti": 1024**4, "Pi": 1024**5, "Ei": 1024**6}[suffix]
    return int(float(number) * factor)


def expand(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion: known names replaced, ``$$`` an escaped ``$``."""
    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))
    return _VAR_REF.sub(sub, text)


def _field_value(pod: Mapping[str, Any], path: str, ctx: PodContext) -> str:
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    values = {"metadata.name": meta.get("name", ""), "metadata.namespace":
              meta.get("namespace", ""), "metadata.uid": meta.get("uid", ""),
              "spec.nodeName": spec.get("nodeName", ""),
              "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
              "status.podIP": ctx.pod_ip, "status.hostIP": "127.0.0.1"}
    if path not in values:
        raise PodSpecError(f"fieldRef {path} is not supported by the local kubelet")
    return str(values[path])


def container_env(pod: Mapping[str, Any], container: Mapping[str, Any],
                  ctx: PodContext) -> dict[str, str]:
    """The container's own environment: ``envFrom`` first, then ``env`` in order."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or ():
        ref_kind = "configMap" if source.get("configMapRef") else "secret"
        ref = source.get("configMapRef") or source.get("secretRef") or {}
        found = ctx.lookup(ref_kind, ref["name"], "")
        if found is None and not ref.get("optional"):
            raise PodSpecError(f"envFrom {ref_kind} {ref['name']} not found")
        for line in (found or "").splitlines():  # lookup with key "" gives KEY=VALUE lines
            key, _, value = line.partition("=")
            env[source.get("prefix", "") + key] = value
    for var in container.get("env") or ():
        if "valueFrom" not in var or var["valueFrom"] is None:
            env[var["name"]] = expand(var.get("value") or "", env)
            continue
        source = var["valueFrom"]
        if source.get("fieldRef"):
            env[var["name"]] = _field_value(pod, source["fieldRef"]["fieldPath"], ctx)
            continue
        ref_kind = "configMap" if source.get("configMapKeyRef") else "secret"
        ref = source.get("configMapKeyRef") or source.get("secretKeyRef")
        if ref is None:
            raise PodSpecError(f"env {var['name']}: valueFrom {sorted(source)} not supported")
        looked_up = ctx.lookup(ref_kind, ref["name"], ref["key"])
        if looked_up is None and not ref.get("optional"):
            raise PodSpecError(f"env {var['name']}: {ref_kind} {ref['name']} has no "
                               f"key {ref['key']}")
        if looked_up is not None:
            env[var["name"]] = looked_up
    return env


def container_argv(container: Mapping[str, Any], image: Image,
                   env: Mapping[str, str], pod_ip: str) -> tuple[str, ...]:
    """The process's argv: command (or the image's entrypoint) and args, expanded, with
    the stand-in for the first word and, for a server, the pod's address appended."""
    command = [expand(w, env) for w in container.get("command") or image.entrypoint]
    args = [expand(w, env) for w in container.get("args") or ()]
    words = [*command, *args]
    if not words:
        raise PodSpecError(f"container {container['name']} has no command")
    name = words[0]
    local = image.commands.get(name)
    if local is None and "/" not in name:
        raise PodSpecError(f"image {container.get('image')} has no command {name!r}")
    network = image.network.get(name)
    extra = list(network(pod_ip)) if network is not None else []
    return (*(local or (name,)), *words[1:], *extra)


def _security(pod: Mapping[str, Any], container: Mapping[str, Any], key: str) -> Any:
    own = (container.get("securityContext") or {}).get(key)
    return own if own is not None else (pod.get("spec", {}).get("securityContext") or {}).get(key)


def host_entries(directory: str) -> list[tuple[str, str]]:
    """(name, kind) of a host directory's entries, sorted: kind is ``dir``, ``file`` or
    ``-> TARGET`` for a symbolic link; other kinds (sockets, devices) are left out."""
    found: list[tuple[str, str]] = []
    if not os.path.isdir(directory):
        return found
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_symlink():
                found.append((entry.name, "-> " + os.readlink(entry.path)))
            elif entry.is_dir():
                found.append((entry.name, "dir"))
            elif entry.is_file():
                found.append((entry.name, "file"))
    return sorted(found)


ListDir = Callable[[str], list[tuple[str, str]]]


def host_binds(targets: Sequence[str], directory: str = "/",
               list_dir: ListDir = host_entries) -> list[Mount]:
    """Read-only binds of the host's tree, with room made for ``targets``: a directory on
    the way to a target is not bound whole but rebuilt on the root, entry by entry."""
    mounts: list[Mount] = []
    for name, kind in list_dir(directory):
        if directory == "/" and name in SKIPPED_HOST_DIRS:
            continue
        path = os.path.join(directory, name)
        if kind.startswith("-> "):
            mounts.append(Mount("symlink", path, kind[3:]))
        elif path in targets:
            continue  # a volume takes its place
        elif kind == "dir" and any(t.startswith(path + "/") for t in targets):
            mounts.append(Mount("dir", path))
            mounts += host_binds(targets, path, list_dir)
        else:
            mounts.append(Mount("bind" if kind == "dir" else "file", path, path,
                                read_only=True))
    return mounts


def resolve_target(target: str, list_dir: ListDir = host_entries) -> str:
    """``target`` with the image's symbolic links on its way followed, as the container
    runtime resolves a mount point inside the root (``/var/run/x`` is ``/run/x`` where
    ``/var/run`` links to ``/run``)."""
    for _ in range(40):  # the kernel's own limit on links followed
        parts = [p for p in target.split("/") if p]
        for depth in range(len(parts) - 1):
            parent = "/" + "/".join(parts[:depth])
            kind = dict(list_dir(parent)).get(parts[depth], "") if _listable(parent) else ""
            if kind.startswith("-> "):
                link = kind[3:]
                base = link if link.startswith("/") else os.path.join(parent, link)
                target = os.path.normpath(os.path.join(base, *parts[depth + 1:]))
                break
        else:
            return target
    raise PodSpecError(f"mount point {target} goes through too many symbolic links")


def _listable(directory: str) -> bool:
    top = directory.strip("/").split("/")[0]
    return top not in SKIPPED_HOST_DIRS


def _volume_mount(volume: Mapping[str, Any], mount: Mapping[str, Any], ctx: PodContext,
                  memory_limit_bytes: int, list_dir: ListDir) -> Mount:
    target = resolve_target(mount["mountPath"], list_dir)
    read_only = bool(mount.get("readOnly"))
    sub_path = mount.get("subPath") or ""
    name = volume["name"]
    if "emptyDir" in volume and volume["emptyDir"] is not None:
        empty = volume["emptyDir"]
        if empty.get("medium") == "Memory":
            size = empty.get("sizeLimit")
            size_bytes = quantity_bytes(size) if size else memory_limit_bytes
            return Mount("tmpfs", target, "", read_only, size_bytes)
        source = ctx.pod_dir / "volumes" / name
    elif volume.get("hostPath"):
        source = Path(volume["hostPath"]["path"])
    elif name in ctx.volume_dirs:
        source = ctx.volume_dirs[name]
        read_only = read_only or not volume.get("persistentVolumeClaim")
    else:
        kinds = sorted(k for k, v in volume.items() if k != "name" and v is not None)
        raise PodSpecError(f"volume {name} ({', '.join(kinds)}) is not supported locally")
    if sub_path:
        source = source / sub_path
    kind = "file" if source.is_file() else "bind"
    return Mount(kind, target, str(source), read_only)


def plan_container(pod: Mapping[str, Any], container: Mapping[str, Any], image: Image,
                   ctx: PodContext, *, list_dir: ListDir = host_entries) -> ContainerPlan:
    """The plan for one of ``pod``'s containers (init or main)."""
    env = container_env(pod, container, ctx)
    argv = container_argv(container, image, env, ctx.pod_ip)
    volumes = {v["name"]: v for v in pod.get("spec", {}).get("volumes") or ()}
    limits = (container.get("resources") or {}).get("limits") or {}
    memory_limit = quantity_bytes(limits["memory"]) if limits.get("memory") else 0
    volume_mounts = []
    for mount in container.get("volumeMounts") or ():
        if mount["name"] not in volumes:
            raise PodSpecError(f"volumeMount {mount['name']} names no volume of the pod")
        volume_mounts.append(_volume_mount(volumes[mount["name"]], mount, ctx,
                                           memory_limit or DEFAULT_SHM_BYTES, list_dir))
    volume_mounts.sort(key=lambda m: m.target.count("/"))
    targets = [m.target for m in volume_mounts]
    mounts = host_binds(targets, list_dir=list_dir)
    mounts += [Mount("dir", "/dev"), *(Mount("file", f"/dev/{d}", f"/dev/{d}")
                                       for d in DEVICES)]
    mounts += [Mount("bind", "/proc", "/proc"), Mount("dir", "/tmp")]
    if "/dev/shm" not in targets:
        mounts.append(Mount("tmpfs", "/dev/shm", "", False, DEFAULT_SHM_BYTES))
    mounts += volume_mounts
    uid = _security(pod, container, "runAsUser")
    gid = _security(pod, container, "runAsGroup")
    uid = 0 if uid is None else int(uid)  # the local images, like Triton's, run as root
    if uid == 0 and _security(pod, container, "runAsNonRoot"):
        raise PodSpecError(f"container {container['name']} has runAsNonRoot and would run "
                           "as root (set runAsUser)")
    full_env = {**image.env, **env, **(image.host_env(ctx.pod_ip) if image.host_env else {})}
    return ContainerPlan(
        argv=argv, env=full_env, uid=uid, gid=uid if gid is None else int(gid),
        root=str(ctx.pod_dir / "containers" / container["name"] / "root"),
        mounts=tuple(mounts),
        read_only_root=bool(_security(pod, container, "readOnlyRootFilesystem")),
        working_dir=container.get("workingDir") or "/",
        cgroup_procs=ctx.cgroup_procs,
        no_new_privileges=_security(pod, container, "allowPrivilegeEscalation") is False,
    )
