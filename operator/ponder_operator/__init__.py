"""Ponder's Kubernetes operator: ReasoningService in, Triton pools sized to demand out.

The package is layered; each layer imports only the ones above it::

    api        the ReasoningService spec and status as frozen pydantic models, and the CRD
               generated from them (no I/O)
    policy     pure functions over those models: demand to replicas, usage to cost; no
               clock, I/O or logging, so the simulator and the live operator share them
    adapters   thin clients of the outside world: the Kubernetes API, Prometheus
    handlers   kopf handlers: validate the spec, call adapters, call policy, write
               children, status, conditions and Events

``errors`` is shared by all layers; ``settings`` and ``main`` build the process.
"""
