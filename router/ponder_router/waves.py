"""How large a vote's later waves are: the trade between samples and sequential rounds.

Role: ``aggregate.plan_next_wave`` decides *whether* a request that has not stopped
launches more samples (only when the samples still running could not fire the stopping
rule even if they all agreed with the leader); this module decides *how many*
(``later_wave_size``). Each wave is a sequential round, and rounds are the latency a
user waits and the time a request holds the pool; each sample is compute. The methods,
spelled as in the CRD's ``spec.budgets.stopping.laterWaves``:

- ``minimal``: just enough samples that the rule could fire if they all agree with the
  leader (the optimistic bound). Fewest samples; a contested request takes many rounds,
  often of one or two samples.
- ``first-wave``: never fewer than the first wave (``Budget.wave_size``).
- ``doubling``: never fewer than the samples launched so far, so the samples launched
  double with each wave and a request reaches ``max_samples`` in about
  log2(max_samples / first wave) rounds.
- ``lookahead`` (the default): the samples the rule is expected to need, projecting the
  tally forward at its own rates (leader and runner-up votes per sample so far: the
  plug-in estimate of Wald's expected sample number), never fewer than the first wave
  and never more than the samples launched so far (at most doubling: a projection from
  a few votes is noisy). Measured on every set (``bench/bench_waves.py``), it takes
  about as few rounds as ``doubling`` for fewer samples, and in the fleet simulator its
  shorter tail costs less than the samples it cancels.

Every method launches at least the optimistic bound, never more than the budget has left,
and counts the samples still running against the wave. Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum


class WaveSizing(StrEnum):
    """The later-wave sizing methods (see the module docstring)."""

    MINIMAL = "minimal"
    FIRST_WAVE = "first-wave"
    DOUBLING = "doubling"
    LOOKAHEAD = "lookahead"


def later_wave_size(
    sizing: WaveSizing,
    *,
    needed_samples: int,
    running_samples: int,
    launched_samples: int,
    first_wave_samples: int,
    remaining_samples: int,
    expected_samples: Callable[[], int],
) -> int:
    """Samples a later wave launches (0: wait for the running ones).

    ``needed_samples`` is the optimistic bound (more samples, counted from the finished
    ones, that could fire the rule); ``remaining_samples`` what the budget has not launched;
    ``expected_samples`` the projected need (``lookahead`` only, computed on demand).
    """
    if needed_samples <= running_samples or remaining_samples <= 0:
        return 0
    if sizing is WaveSizing.FIRST_WAVE:
        target = max(needed_samples, running_samples + first_wave_samples)
    elif sizing is WaveSizing.DOUBLING:
        target = max(needed_samples, running_samples + launched_samples)
    elif sizing is WaveSizing.LOOKAHEAD:
        ceiling = max(first_wave_samples, launched_samples)
        floor = min(first_wave_samples, ceiling)
        projected = min(max(expected_samples(), running_samples + floor),
                        running_samples + ceiling)  # fmt: skip
        target = max(needed_samples, projected)
    else:
        target = needed_samples
    return min(target - running_samples, remaining_samples)


def projected_samples(
    *,
    samples: int,
    leader_votes: int,
    runner_up_votes: int,
    remaining_samples: int,
    stops: Callable[[int, int, int], bool],
) -> int:
    """The fewest more samples after which ``stops(more, leader, runner_up)`` holds for the
    tally projected at its own rates: ``more`` samples add ``more * leader_votes /
    samples`` to the leader and ``more * runner_up_votes / samples`` to the runner-up
    (rounded half up to whole votes); ``remaining_samples`` when it never holds within
    the budget."""
    if samples <= 0:
        return remaining_samples
    for more in range(1, remaining_samples + 1):
        leader = leader_votes + int(more * leader_votes / samples + 0.5)
        runner_up = runner_up_votes + int(more * runner_up_votes / samples + 0.5)
        if stops(more, leader, runner_up):
            return more
    return remaining_samples
