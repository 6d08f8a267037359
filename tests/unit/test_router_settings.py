"""The router's config: the ConfigMap shape, its validation, reloads and the environment."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from ponder_router.config_watch import ConfigWatcher
from ponder_router.settings import (
    ConfigError,
    ProcessSettings,
    RouterConfig,
    load_config,
    parse_config,
)

MINIMAL = {"service": "qwen", "modelName": "qwen-7b", "tritonModel": "qwen",
           "endpoints": ["127.0.0.1:8001"]}  # fmt: skip


def with_fields(**fields: Any) -> dict[str, Any]:
    return {**MINIMAL, **fields}


BEST_OF_N_TIER = {"name": "all", "maxDifficulty": 1.0, "maxTokens": 10, "maxSamples": 4,
                  "initialSamples": 4, "strategy": "best-of-n"}  # fmt: skip


def test_a_minimal_config_gets_the_default_policy() -> None:
    config = RouterConfig.model_validate(MINIMAL)
    assert [t.name for t in config.budgets.tiers] == ["easy", "medium", "hard"]
    assert config.admission.max_queue_length > 0
    assert config.discovery is None


def test_a_full_config_in_yaml_loads_with_camel_case_keys() -> None:
    text = """
service: qwen
namespace: ml
modelName: qwen-7b
tritonModel: qwen
discovery: {namespace: ml, labelSelector: "app=qwen-triton", grpcPort: 9001}
budgets:
  tiers:
    - {name: easy, maxDifficulty: 0.3, maxTokens: 512, maxSamples: 1, initialSamples: 1,
       strategy: single}
    - {name: hard, maxDifficulty: 1.0, maxTokens: 4096, maxSamples: 8, initialSamples: 4,
       strategy: vote, escalateTo: qwen-72b}
  effortTiers: {low: easy, high: hard}
stopping: {rule: window, window: 3}
answers: {extractor: boxed}
admission: {maxQueueLength: 10, maxConcurrencyPerTenant: 2, maxPromptChars: 1000,
            maxConcurrentRequests: 4, requestTimeoutSeconds: 30, sampleTimeoutSeconds: 20}
apiKeysFile: /etc/keys
escalation: {qwen-72b: "http://qwen-72b-router.ml.svc:8080"}
capacity: {atCeiling: true, replicas: 2, tokensPerSecondPerReplica: 2500}
verifier: {model: prm}
"""
    config = parse_config(text)
    assert config.discovery is not None
    assert config.discovery.grpc_port == 9001
    assert config.budgets.tiers[1].escalate_to == "qwen-72b"
    assert config.capacity.tokens_per_second == 5000
    assert config.admission.max_concurrent_requests == 4
    dumped = config.model_dump(by_alias=True, mode="json")
    assert RouterConfig.model_validate(dumped) == config


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"endpoints": []}, "exactly one of endpoints"),
        ({"discovery": {"namespace": "ml", "labelSelector": "a=b"}}, "exactly one of endpoints"),
        ({"endpoints": ["no-port"]}, "host:port"),
        ({"endpoints": ["a:1", "a:1"]}, "must not repeat"),
        ({"answers": {"extractor": "magic"}}, "extractor"),
        ({"escalation": {"big": "ftp://x"}}, "http"),
        ({"admission": {"maxQueueLength": -1}}, "maxQueueLength"),
        ({"admission": {"requestTimeoutSeconds": 0}}, "requestTimeoutSeconds"),
        ({"colour": "red"}, "colour"),
        ({"budgets": {"tiers": [{"name": "a", "maxDifficulty": 1.0, "maxTokens": 10,
                                 "maxSamples": 1, "initialSamples": 1, "strategy": "single",
                                 "escalateTo": "big"}]}}, "escalates to"),
        ({"budgets": {"tiers": [BEST_OF_N_TIER],
                      "estimator": {"bias": 0.0, "coefficients": {"sentiment": 1.0}}}},
         "coefficients name unknown features ['sentiment']; known: log_chars, "),
    ],
)  # fmt: skip
def test_an_invalid_config_is_refused_with_the_reason(fields: dict[str, Any],
                                                      fragment: str) -> None:  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        parse_config(json.dumps(with_fields(**fields)))
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("tier_model", "service_verifier", "expected"),
    [
        (None, None, None),
        (None, {"model": "svc-prm", "timeoutSeconds": 3}, ("svc-prm", 3.0)),
        ("tier-prm", None, ("tier-prm", 10.0)),
        ("tier-prm", {"model": "svc-prm", "timeoutSeconds": 3}, ("tier-prm", 3.0)),
    ],
)  # fmt: skip
def test_a_tiers_verifier_model_wins_and_takes_the_service_wide_timeout(
    tier_model: str | None, service_verifier: dict[str, Any] | None,
    expected: tuple[str, float] | None,
) -> None:  # fmt: skip
    tier = {**BEST_OF_N_TIER, "verifierModel": tier_model}
    config = RouterConfig.model_validate(
        with_fields(budgets={"tiers": [tier]}, verifier=service_verifier))
    verifier = config.verifier_for("all")
    got = None if verifier is None else (verifier.model, verifier.timeout_seconds)
    assert got == expected


def test_estimator_weights_load_from_the_budgets_section() -> None:
    config = parse_config(json.dumps(with_fields(budgets={
        "tiers": [BEST_OF_N_TIER],
        "estimator": {"bias": -1.5, "coefficients": {"log_chars": 0.25, "diagram": 2.0}},
    })))  # fmt: skip
    weights = config.budgets.estimator
    assert weights is not None
    assert weights.bias == -1.5
    assert weights.coefficients == {"log_chars": 0.25, "diagram": 2.0}
    assert config.budgets.feature_estimator().weights == weights
    assert RouterConfig.model_validate(MINIMAL).budgets.estimator is None


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


async def test_a_changed_file_is_applied_and_an_invalid_one_is_kept_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "router.yaml"
    path.write_text(json.dumps(MINIMAL))
    applied: list[RouterConfig] = []

    async def apply(config: RouterConfig) -> None:
        applied.append(config)

    watcher = ConfigWatcher(path, apply)
    assert not await watcher.check()  # unchanged since start
    path.write_text(json.dumps(with_fields(answers={"extractor": "boxed"})))
    os.utime(path, ns=(1, 10**18))
    assert await watcher.check()
    assert applied[-1].answers.extractor == "boxed"
    path.write_text(json.dumps(with_fields(answers={"extractor": "magic"})))
    os.utime(path, ns=(1, 2 * 10**18))
    with caplog.at_level(logging.ERROR):
        assert not await watcher.check()
    assert len(applied) == 1
    assert "keeping the running config" in caplog.text


def test_process_settings_come_from_the_environment() -> None:
    settings = ProcessSettings.from_env({"PONDER_ROUTER_CONFIG": "/c.yaml",
                                         "PONDER_ROUTER_PORT": "9000"})  # fmt: skip
    assert settings.host == "127.0.0.1"
    assert settings.port == 9000
    assert settings.config_path == Path("/c.yaml")
    with pytest.raises(ConfigError, match="PONDER_ROUTER_CONFIG"):
        ProcessSettings.from_env({})
    with pytest.raises(ConfigError, match="PORT"):
        ProcessSettings.from_env({"PONDER_ROUTER_CONFIG": "/c", "PONDER_ROUTER_PORT": "0"})
