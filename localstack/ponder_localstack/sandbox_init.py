"""The container's first process: enter user and mount namespaces, build the root, exec.

Test and demo infrastructure (``python -m ponder_localstack.sandbox_init SPEC.json``), the
local stand-in for what an unprivileged container runtime does before it starts a
container's command. ``sandbox`` writes the spec (a ``ContainerPlan``); this module only
carries it out, standard library only, single-threaded (so ``unshare(CLONE_NEWUSER)`` is
allowed):

1. join the pod's memory cgroup (while still in the host's user namespace);
2. ``unshare(CLONE_NEWUSER | CLONE_NEWNS)`` and map the container's ``runAsUser`` and
   ``runAsGroup`` to the caller's own uid and gid (one id each, ``setgroups`` denied). The
   process keeps every capability in the new namespace until ``execve`` as that non-zero
   uid drops them: from then on it is exactly the container's unprivileged user;
3. mount a tmpfs as the new root and, in order, the plan's mounts on it (recursive binds of
   the host's directories, the pod's volumes, tmpfs for ``/dev/shm`` and memory-backed
   emptyDirs), each made read-only with ``mount_setattr`` where asked; then the root
   itself read-only when the container asks for ``readOnlyRootFilesystem``;
4. ``chroot``, ``chdir``, ``no_new_privs`` where the container forbids privilege
   escalation, and ``execve`` the container's command with exactly its
   environment. A failure before the exec exits 127 with the reason on stderr.

An exec hook (``joinPid`` in the spec) instead enters the running container's
namespaces with ``setns`` and its root with ``chroot``, and execs there.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
AT_RECURSIVE = 0x8000
PR_SET_NO_NEW_PRIVS = 38
MOUNT_ATTR_RDONLY = 0x1
SYS_MOUNT_SETATTR = 442  # x86_64 and aarch64 alike (the new mount API's numbers are shared)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.syscall.restype = ctypes.c_long


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(),
                       fstype.encode() if fstype else None, flags,
                       data.encode() if data else None), f"mount {source} on {target}")


def _read_only(target: str, recursive: bool) -> None:
    attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    result = _libc.syscall(SYS_MOUNT_SETATTR, -100, target.encode(), flags,
                           ctypes.byref(attr), ctypes.sizeof(attr))
    _check(int(result), f"mount_setattr read-only {target}")


def _enter_namespaces(uid: int, gid: int) -> None:
    host_uid, host_gid = os.getuid(), os.getgid()
    _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare")
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {host_uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {host_gid} 1")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount leaks to the host


def _mount_one(root: str, mount: dict[str, Any]) -> None:
    target = root + mount["target"]
    kind = mount["kind"]
    if kind == "symlink":
        os.symlink(mount["source"], target)
        return
    parent = os.path.realpath(os.path.dirname(target))
    if parent != root and not parent.startswith(root + "/"):
        raise OSError(f"mount point {mount['target']} leads out of the root ({parent})")
    if kind == "file":
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).touch()
        _mount(mount["source"], target, None, MS_BIND)
    else:
        os.makedirs(target, exist_ok=True)
    if kind == "dir":
        return
    if kind == "bind":
        _mount(mount["source"], target, None, MS_BIND | MS_REC)
    elif kind == "tmpfs":
        _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV,
               f"size={int(mount['sizeBytes'])},mode=1777")
    if mount.get("readOnly"):
        _read_only(target, recursive=kind == "bind")


def _join(pid: int, root: str) -> None:
    """Enter the user and mount namespaces of the container ``pid`` and its root (an exec
    hook: ``preStop``)."""
    for kind, flag in (("user", CLONE_NEWUSER), ("mnt", CLONE_NEWNS)):
        fd = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY)
        try:
            _check(_libc.setns(fd, flag), f"setns {kind} of {pid}")
        finally:
            os.close(fd)
    os.chroot(root)


def run(plan: dict[str, Any]) -> None:
    """Carry out ``plan`` and exec its command; returns only by raising.

    With ``joinPid``, join that running container instead of building a new one.
    """
    if plan.get("cgroupProcs"):  # while still in the host's user namespace
        try:
            Path(plan["cgroupProcs"]).write_text(str(os.getpid()))
        except OSError as exc:
            print(f"sandbox: memory limit not applied: {exc}", file=sys.stderr)  # noqa: T201
    if plan.get("joinPid"):
        _join(int(plan["joinPid"]), plan["root"])
    else:
        _build(plan)
    os.chdir(plan["workingDir"])
    if plan.get("noNewPrivileges"):
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl no_new_privs")
    os.execvpe(plan["argv"][0], plan["argv"], plan["env"])


def _build(plan: dict[str, Any]) -> None:
    """Enter new namespaces, build the root and enter it."""
    _enter_namespaces(int(plan["uid"]), int(plan["gid"]))
    root = plan["root"]
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for mount in plan["mounts"]:
        _mount_one(root, mount)
    if plan["readOnlyRoot"]:
        _read_only(root, recursive=False)
    os.chroot(root)


def main(argv: list[str]) -> int:
    (spec_path,) = argv
    try:
        run(json.loads(Path(spec_path).read_text()))
    except OSError as exc:
        print(f"sandbox: cannot start the container: {exc}", file=sys.stderr)  # noqa: T201
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
