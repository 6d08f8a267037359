"""The local stack: real Kubernetes, Triton and Prometheus processes on loopback.

Test and demo infrastructure, not part of the product. Each module starts one kind of
real component from the binaries that ``hack/setup.sh`` builds or installs into the
cache (``~/.cache/ponder``), waits until it is healthy, and stops it cleanly:

- ``paths``   — where the cached binaries live, and a clear error when one is missing;
- ``proc``    — a started process with a log file, health waiting and clean stop;
- ``cluster`` — etcd, kube-apiserver, controller-manager, scheduler, KWOK GPU nodes;
- ``triton``  — Triton Inference Server (CPU) for a model repository;
- ``prometheus`` — Prometheus with a generated scrape config;
- ``standin`` — evaluation data sampled from the stand-in LLM (``sim_llm``), the
  ``standin-math500`` source of ``ponder evaluate`` (registered as an entry point).
"""
