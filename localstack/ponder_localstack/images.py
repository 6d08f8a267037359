"""Image emulation for the local kubelet: what each container image provides locally.

Test and demo infrastructure. A pod names an image; the local kubelet (``runner``) runs
host binaries instead, and this table says which: the Triton image's ``tritonserver``
is the CPU build ``hack/setup.sh triton`` installed (``paths``), its ``python3`` the
python-backend interpreter; the router image's ``ponder-router`` is this checkout's
router on the current interpreter. Each image also provides its environment (``PATH``
and what the local build needs), as an image's own ``ENV`` lines do.

The only thing added to what the pod says is the pod network: every pod has its own
loopback address (``127.64.B.N``), which stands in for the pod's network namespace, so
Triton gets ``--http-address/--grpc-address/--metrics-address`` set to it and the router
``PONDER_ROUTER_HOST`` (the pod renders ``0.0.0.0``, its own namespace's every address),
plus a kubeconfig for the API server where a real pod has its ServiceAccount token.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ponder_localstack.paths import triton_python_dir, tritonserver_dir
from ponder_localstack.sandbox import Image

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KUBECONFIG_MOUNT = "/var/run/secrets/ponder.dev/kubeconfig"
"""Where the router's stand-in for its ServiceAccount token (a kubeconfig) is mounted."""


def _triton_network(ip: str) -> Sequence[str]:
    return [f"--http-address={ip}", f"--grpc-address={ip}", f"--metrics-address={ip}"]


def triton_image() -> Image:
    """``nvcr.io/nvidia/tritonserver:*``: the CPU tritonserver and the python backend's
    interpreter (numpy and the stand-in models' imports)."""
    root = tritonserver_dir()
    python = triton_python_dir()
    return Image(
        env={"PATH": f"{python}:{SYSTEM_PATH}"},
        commands={
            # The real image's tritonserver finds its backends in /opt/tritonserver (its
            # default); the local build keeps them beside its binary. Without a GPU it
            # warns about pinned memory and GPU metrics and goes on.
            "tritonserver": (str(root / "bin" / "tritonserver"),
                             f"--backend-directory={root / 'backends'}"),
            "python3": (str(python / "python3"),),
            "sleep": ("/bin/sleep",),
        },
        network={"tritonserver": _triton_network},
    )


def _python_path() -> str:
    """This checkout's packages, absolute (the tests run with relative PYTHONPATH)."""
    entries = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(str(Path(p).resolve()) for p in entries)


def router_image() -> Image:
    """``ghcr.io/ponder-dev/ponder``: ``ponder-router`` is this checkout's router."""
    def host_env(ip: str) -> Mapping[str, str]:
        return {"PONDER_ROUTER_HOST": ip, "KUBECONFIG": KUBECONFIG_MOUNT}
    return Image(
        env={"PATH": f"{Path(sys.executable).parent}:{SYSTEM_PATH}",
             "PYTHONPATH": _python_path(), "PYTHONDONTWRITEBYTECODE": "1"},
        commands={"ponder-router": (sys.executable, "-m", "ponder_router"),
                  "sleep": ("/bin/sleep",)},
        host_env=host_env,
    )


def image_for(name: str) -> Image:
    """The emulation of ``name``: Triton's images by their repository, else the router."""
    table: Mapping[str, Callable[[], Image]] = {"tritonserver": triton_image}
    for key, build in table.items():
        if key in name:
            return build()
    return router_image()
