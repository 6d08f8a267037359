"""Compute-optimal allocation across difficulty bins: concave hulls and greedy marginal gain.

Role: the pure optimiser under ``calibrate``. Each bin ``b`` (a share ``w_b`` of requests)
has candidate operating points ``(cost, accuracy)`` — a strategy and a sample cap, on one
model or another — and we want one point per bin maximising expected accuracy
``sum_b w_b acc_b`` subject to expected compute ``sum_b w_b cost_b <= budget``.

Why greedy is right here: replace each bin's points by their upper concave hull (points
under the hull are never worth choosing: mixing the two hull points around them, i.e.
splitting the bin, gives more accuracy for the same cost). On a concave piecewise-linear
curve the marginal gain per unit of compute falls segment by segment, so the problem is a
fractional knapsack over segments: taking segments in order of decreasing slope is optimal
for the relaxation in which a bin may mix its two neighbouring hull points, and concavity
guarantees a bin's segments come out of the global order in their own order. We stop at
the first segment that does not fit; the integral answer is then within that one segment's
gain of the relaxed optimum. Because a larger budget takes a longer prefix of the same
segment order, every bin's allocation is monotone (never smaller) in the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Point:
    """One candidate's mean cost and accuracy in a bin; ``label`` indexes the candidate."""

    cost: float
    accuracy: float
    label: int


@dataclass(frozen=True)
class AllocationStep:
    """The allocation after taking some prefix of the segments: a hull index per bin."""

    choice: tuple[int, ...]
    cost: float
    accuracy: float


def upper_hull(points: Sequence[Point]) -> list[Point]:
    """The upper concave hull from the cheapest point: accuracy rises, slopes fall.

    Of equally cheap points the most accurate starts the hull; on ties of slope the
    farther point wins, so no hull point lies on a segment between two others.
    """
    if not points:
        raise ValueError("a bin needs at least one candidate point")
    start = min(points, key=lambda p: (p.cost, -p.accuracy, p.label))
    hull = [start]
    while True:
        here = hull[-1]
        ahead = [p for p in points if p.cost > here.cost and p.accuracy > here.accuracy]
        if not ahead:
            return hull
        hull.append(max(ahead, key=lambda p: (
            (p.accuracy - here.accuracy) / (p.cost - here.cost), p.cost, -p.label)))


def greedy_path(hulls: Sequence[Sequence[Point]], weights: Sequence[float]) -> list[AllocationStep]:
    """Every allocation the greedy passes through, cheapest first (see the module doc)."""
    if len(hulls) != len(weights) or not hulls:
        raise ValueError("one weight per bin, and at least one bin")
    segments = sorted(
        ((hull[j + 1].accuracy - hull[j].accuracy) / (hull[j + 1].cost - hull[j].cost), b, j)
        for b, hull in enumerate(hulls) for j in range(len(hull) - 1)
    )  # fmt: skip
    segments.sort(key=lambda s: (-s[0], s[1], s[2]))
    choice = [0] * len(hulls)

    def step() -> AllocationStep:
        cost = sum(w * hulls[b][choice[b]].cost for b, w in enumerate(weights))
        acc = sum(w * hulls[b][choice[b]].accuracy for b, w in enumerate(weights))
        return AllocationStep(tuple(choice), cost, acc)

    path = [step()]
    for _, b, j in segments:
        if choice[b] != j:  # pragma: no cover - concave hulls keep each bin's order
            raise AssertionError("hull segments out of order")
        choice[b] = j + 1
        path.append(step())
    return path


def allocate_budget(path: Sequence[AllocationStep], budget: float) -> AllocationStep:
    """The last step of ``path`` within ``budget`` (the cheapest step when none is)."""
    within = [s for s in path if s.cost <= budget + 1e-12]
    return within[-1] if within else path[0]


def allocate_accuracy(path: Sequence[AllocationStep], target: float) -> AllocationStep:
    """The first (cheapest) step of ``path`` reaching ``target`` accuracy, else the last."""
    return next((s for s in path if s.accuracy >= target - 1e-12), path[-1])
