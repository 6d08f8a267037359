"""Replica affinity: a request's samples, probes and forced answers share one replica.

Role: the pure choice behind ``endpoints.EndpointPool.pick``. Each request has a home
replica (its first sample's); its later samples go there too, so Triton's prefix cache
serves the prompt they share (and a probe or forced answer, which always runs where its
sample runs, the sample's text as well), instead of every replica prefilling it again. A
request spreads to another replica only while its home is saturated: this router already
has ``max_samples_per_replica`` samples and probes running there (the router's own
count; other routers' work is not seen), or it is down or gone. Without a home, or when it
cannot be used, the choice is as before: the replica with the least outstanding work,
unsaturated ones first, down ones only when nothing else is up, ties taking turns.
``AffinityConfig`` is the router config's ``affinity`` section. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class AffinityConfig(BaseModel):
    """Where a request's samples run: all on one replica until it is saturated."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )

    enabled: bool = Field(
        default=True,
        description="Send a request's samples to its first sample's replica (prefix cache "
                    "reuse); false: each sample goes to the least loaded replica.",
    )  # fmt: skip
    max_samples_per_replica: int = Field(
        default=64, ge=1, le=100_000,
        description="Samples and probes this router runs on one replica at once before a "
                    "request's further samples spill to another replica.",
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ReplicaLoad:
    """What the router knows about one replica when it picks."""

    address: str
    running: int = 0
    outstanding_tokens: float = 0.0
    up: bool = True


def is_saturated(replica: ReplicaLoad, max_running: int | None) -> bool:
    """Whether ``replica`` runs ``max_running`` samples or more (None: no limit)."""
    return max_running is not None and replica.running >= max_running


def choose_replica(replicas: Sequence[ReplicaLoad], *, home: str | None = None,
                   max_running: int | None = None, turn: int = 0) -> str | None:  # fmt: skip
    """The address a sample should run on (None: no replica).

    ``home`` when it is among ``replicas``, up and not saturated; otherwise the least
    outstanding work among the unsaturated up replicas (all up ones when every one is
    saturated, all when none is up), ties broken by ``turn`` (round-robin).
    """
    if not replicas:
        return None
    up = [r for r in replicas if r.up] or list(replicas)
    if home is not None:
        for replica in up:
            if replica.address == home and replica.up and not is_saturated(replica, max_running):
                return home
    room = [r for r in up if not is_saturated(r, max_running)] or up
    start = turn % len(room)
    rotated = room[start:] + room[:start]
    return min(rotated, key=lambda r: (r.outstanding_tokens, r.running)).address
