"""Every operator setting is read from its ``PONDER_*`` environment variable."""

from __future__ import annotations

import dataclasses

import pytest

from ponder_operator.settings import OperatorSettings

# A value differing from each field's default, as the environment spells it.
ENV_VALUES = {
    "prometheus_url": ("http://prometheus:9090", "http://prometheus:9090"),
    "router_image": ("registry.example/ponder:9.9", "registry.example/ponder:9.9"),
    "peering_name": ("team-a", "team-a"),
    "peering_lifetime_seconds": ("15", 15),
    "namespace": ("team-a", "team-a"),
    "health_host": ("0.0.0.0", "0.0.0.0"),
    "health_port": ("18081", 18081),
    "metrics_host": ("0.0.0.0", "0.0.0.0"),
    "metrics_port": ("19090", 19090),
    "prometheus_timeout_seconds": ("2.5", 2.5),
    "metrics_max_age_seconds": ("90", 90.0),
}


def test_every_setting_has_a_case_here() -> None:
    assert {f.name for f in dataclasses.fields(OperatorSettings)} == set(ENV_VALUES)


@pytest.mark.parametrize("name", sorted(ENV_VALUES))
def test_each_setting_is_read_from_its_ponder_variable(name: str) -> None:
    text, expected = ENV_VALUES[name]
    assert expected != getattr(OperatorSettings(), name)
    settings = OperatorSettings.from_env({f"PONDER_{name.upper()}": text})
    assert getattr(settings, name) == expected


def test_an_empty_environment_gives_the_defaults() -> None:
    assert OperatorSettings.from_env({}) == OperatorSettings()
