"""Later-wave sizing (``ponder_router.waves``) and how ``plan_next_wave`` applies it."""

from __future__ import annotations

import pytest

from ponder_router.aggregate import StopRule, StopRuleKind, plan_next_wave, tally
from ponder_router.budgets import Budget, Strategy
from ponder_router.waves import WaveSizing, later_wave_size, projected_samples


def budget(max_samples: int = 32, wave_size: int = 4) -> Budget:
    return Budget(tier="hard", strategy=Strategy.VOTE, max_tokens_per_sample=4096,
                  max_samples=max_samples, wave_size=wave_size,
                  expected_tokens=1000.0)  # fmt: skip


def size(sizing: WaveSizing, needed: int, running: int, launched: int,
         remaining: int = 64, expected: int = 0) -> int:  # fmt: skip
    return later_wave_size(sizing, needed_samples=needed, running_samples=running,
                           launched_samples=launched, first_wave_samples=4,
                           remaining_samples=remaining,
                           expected_samples=lambda: expected)  # fmt: skip


@pytest.mark.parametrize(
    ("sizing", "needed", "running", "launched", "remaining", "expected", "wave"),
    [
        (WaveSizing.MINIMAL, 2, 0, 8, 64, 0, 2),  # just enough that the rule could fire
        (WaveSizing.FIRST_WAVE, 2, 0, 8, 64, 0, 4),  # never below the first wave
        (WaveSizing.DOUBLING, 2, 0, 8, 64, 0, 8),  # never below what was launched
        (WaveSizing.DOUBLING, 12, 0, 8, 64, 0, 12),  # the optimistic bound comes first
        (WaveSizing.LOOKAHEAD, 2, 0, 8, 64, 6, 6),  # the projected need ...
        (WaveSizing.LOOKAHEAD, 2, 0, 8, 64, 1, 4),  # ... at least the first wave ...
        (WaveSizing.LOOKAHEAD, 2, 0, 8, 64, 30, 8),  # ... at most doubling
        (WaveSizing.LOOKAHEAD, 3, 2, 8, 64, 6, 4),  # the running samples count against it
        (WaveSizing.DOUBLING, 2, 0, 8, 3, 0, 3),  # never past the budget
        (WaveSizing.MINIMAL, 2, 2, 8, 64, 0, 0),  # the running ones could still settle it
        (WaveSizing.DOUBLING, 2, 2, 8, 64, 0, 0),
        (WaveSizing.FIRST_WAVE, 3, 2, 8, 64, 0, 4),
    ],
)
def test_a_later_wave_is_sized_by_its_method(sizing: WaveSizing, needed: int, running: int,
                                             launched: int, remaining: int, expected: int,
                                             wave: int) -> None:  # fmt: skip
    assert size(sizing, needed, running, launched, remaining, expected) == wave


def test_the_projection_extends_the_tally_at_its_own_rates() -> None:
    seen: list[tuple[int, int, int]] = []

    def stops(more: int, leader: int, runner_up: int) -> bool:
        seen.append((more, leader, runner_up))
        return leader - runner_up >= 4

    # 3 leader and 1 runner-up votes in 4 samples: each more sample adds 0.75 and 0.25.
    assert projected_samples(samples=4, leader_votes=3, runner_up_votes=1,
                             remaining_samples=20, stops=stops) == 4  # fmt: skip
    assert seen[-1] == (4, 6, 2)


def test_a_projection_that_never_stops_asks_for_the_whole_budget() -> None:
    assert projected_samples(samples=4, leader_votes=2, runner_up_votes=2,
                             remaining_samples=9, stops=lambda *_: False) == 9  # fmt: skip


@pytest.mark.parametrize("sizing", list(WaveSizing))
def test_every_method_waits_while_an_agreeing_first_wave_runs(sizing: WaveSizing) -> None:
    envelope = budget().model_copy(update={"stop_on_first_wave_agreement": True})
    rule = StopRule(kind=StopRuleKind.BETA, later_waves=sizing)
    assert plan_next_wave(envelope, 4, tally(["7", "7"]), rule) == 0


@pytest.mark.parametrize(
    ("sizing", "first_wave", "wave"),
    [(WaveSizing.MINIMAL, 4, 2), (WaveSizing.FIRST_WAVE, 4, 4), (WaveSizing.DOUBLING, 4, 8),
     (WaveSizing.LOOKAHEAD, 2, 4)],
)
def test_a_contested_vote_launches_what_its_method_says(sizing: WaveSizing, first_wave: int,
                                                        wave: int) -> None:  # fmt: skip
    # 6 votes to 2 after 8: the beta rule could fire after 2 more agreeing votes; at the
    # tally's own rates (6/8, 2/8) it is expected to after 4.
    state = tally(["1", "2", "1", "1", "2", "1", "1", "1"])
    limits = budget(wave_size=first_wave)
    rule = StopRule(kind=StopRuleKind.BETA, later_waves=sizing)
    assert plan_next_wave(limits, 8, state, rule) == wave


def test_lookahead_for_the_margin_rule_projects_the_lead() -> None:
    # 6 to 2 after 8, margin 6: the lead grows by 0.5 a sample, so 4 more are expected
    # (the first wave), where the optimistic bound asks for 2.
    rule = StopRule(kind=StopRuleKind.MARGIN, margin=6, later_waves=WaveSizing.LOOKAHEAD)
    state = tally(["1", "1", "2", "1", "1", "2", "1", "1"])
    assert plan_next_wave(budget(), 8, state, rule.model_copy(
        update={"later_waves": WaveSizing.MINIMAL})) == 2  # fmt: skip
    assert plan_next_wave(budget(), 8, state, rule) == 4


def test_the_crd_spells_the_method_in_camel_case() -> None:
    rule = StopRule.model_validate({"rule": "beta", "laterWaves": "lookahead"})
    assert rule.later_waves is WaveSizing.LOOKAHEAD
    with pytest.raises(ValueError, match="laterWaves"):
        StopRule.model_validate({"laterWaves": "sometimes"})
