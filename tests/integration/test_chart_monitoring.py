"""The chart's alerts fire when they should, and its dashboard and alerts query real metrics.

The alert rules are checked and unit-tested with promtool (Debian's prometheus package);
every ``ponder_router_*`` series they or the dashboard query must be one the router
exports, and every ``ponder_reasoningservice_*`` series one the chart's kube-state-metrics
configuration produces.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import require
from ponder_localstack.paths import debian_tool, go_tool
from ponder_router.admission import AdmissionRejectedError, AuthError
from ponder_router.api import RequestError
from ponder_router.app import error_response
from ponder_router.endpoints import NoEndpointError
from ponder_router.errors import OverloadedError, PonderRouterError
from ponder_router.metrics import RouterMetrics

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "ponder"
MONITORING = CHART / "ci" / "monitoring-values.yaml"

pytestmark = pytest.mark.helm


@pytest.fixture(scope="module")
def monitoring_objects() -> list[dict[str, Any]]:
    helm = require(lambda: go_tool("helm"))
    out = subprocess.run(
        [str(helm), "template", "ponder", str(CHART), "--namespace", "ponder-system",
         "-f", str(MONITORING)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module")
def rule_groups(monitoring_objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rule = next(o for o in monitoring_objects if o["kind"] == "PrometheusRule")
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


@pytest.fixture(scope="module")
def dashboard(monitoring_objects: list[dict[str, Any]]) -> dict[str, Any]:
    config_map = next(o for o in monitoring_objects
                      if o["kind"] == "ConfigMap" and "ponder.json" in o.get("data", {}))
    loaded: dict[str, Any] = json.loads(config_map["data"]["ponder.json"])
    return loaded


@pytest.fixture(scope="module")
def promtool() -> Path:
    return require(lambda: debian_tool("promtool"))


@pytest.mark.promtool
def test_the_alert_rules_pass_promtool_check(
    promtool: Path, rule_groups: list[dict[str, Any]], tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups}))
    result = subprocess.run([str(promtool), "check", "rules", str(rules)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 rules found" in result.stdout


ALERT_CASES = {
    "PonderOperatorDown": {
        "series": [('kube_deployment_status_replicas_available'
                    '{namespace="ponder-system", deployment="ponder"}', "0x20")],
        "fires_at": "6m", "quiet_at": "4m",
        "labels": {"severity": "critical"},
    },
    "PonderReasoningServiceDegraded": {
        "series": [('ponder_reasoningservice_status_condition{namespace="team-a", '
                    'reasoningservice="math", type="Degraded", reason="MetricsStale"}', "1x20"),
                   ('ponder_reasoningservice_status_condition{namespace="team-a", '
                    'reasoningservice="math", type="Ready", reason="ReplicasReady"}', "1x20")],
        "fires_at": "11m", "quiet_at": "9m",
        "labels": {"severity": "warning", "namespace": "team-a", "reasoningservice": "math",
                   "reason": "MetricsStale"},
    },
    "PonderReasoningServiceUnschedulable": {
        "series": [('ponder_reasoningservice_status_condition{namespace="team-a", '
                    'reasoningservice="big", type="Unschedulable", reason="InsufficientGPU"}',
                    "1x20")],
        "fires_at": "16m", "quiet_at": "14m",
        "labels": {"severity": "warning", "namespace": "team-a", "reasoningservice": "big",
                   "reason": "InsufficientGPU"},
    },
    "PonderRouterRejecting": {
        # 2 rejections per second (120 a minute) from one router pod; a second service at
        # 0.5 per second stays below the threshold of 1.
        "series": [('ponder_router_rejections_total{namespace="team-a", '
                    'reasoningservice="math", pod="math-router-1", reason="queue"}',
                    "0+120x25"),
                   ('ponder_router_rejections_total{namespace="team-a", '
                    'reasoningservice="calm", pod="calm-router-1", reason="queue"}',
                    "0+30x25")],
        "fires_at": "16m", "quiet_at": "8m",
        "labels": {"severity": "warning", "namespace": "team-a", "reasoningservice": "math"},
    },
}


@pytest.mark.promtool
@pytest.mark.parametrize("alert", sorted(ALERT_CASES))
def test_each_alert_fires_after_its_for_duration_and_not_before(
    promtool: Path, rule_groups: list[dict[str, Any]], tmp_path: Path, alert: str
) -> None:
    case = ALERT_CASES[alert]
    labels = {**case["labels"], "team": "ml-platform"}  # alertLabels of the scenario
    _promtool_test(promtool, rule_groups, tmp_path, case["series"], [
        {"eval_time": case["quiet_at"], "alertname": alert, "exp_alerts": []},
        {"eval_time": case["fires_at"], "alertname": alert,
         "exp_alerts": [{"exp_labels": labels}]},
    ])


def test_client_faults_alone_do_not_fire_the_overload_alert(
    promtool: Path, rule_groups: list[dict[str, Any]], tmp_path: Path
) -> None:
    # A client with a bad key (and one sending oversized bodies) at 2 refusals per second
    # each, for longer than the alert's for: duration.
    series = [(f'ponder_router_rejections_total{{namespace="team-a", reasoningservice="math", '
               f'pod="math-router-1", reason="{reason}"}}', "0+120x25")
              for reason in CLIENT_FAULT_REASONS]
    _promtool_test(promtool, rule_groups, tmp_path, series, [
        {"eval_time": "16m", "alertname": "PonderRouterRejecting", "exp_alerts": []},
    ])


def _promtool_test(promtool: Path, rule_groups: list[dict[str, Any]], tmp_path: Path,
                   series: list[tuple[str, str]], alert_rule_test: list[Any]) -> None:
    # Annotations are templated text, checked by promtool check; compare labels only.
    bare = [{**g, "rules": [{k: v for k, v in r.items() if k != "annotations"}
                            for r in g["rules"]]} for g in rule_groups]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": bare}))
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "alert_rule_test": alert_rule_test,
        }],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    result = subprocess.run([str(promtool), "test", "rules", "tests.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# Every refusal the router counts in ponder_router_rejections_total, as it raises it.
ROUTER_REFUSALS = [
    AuthError("missing API key", status=401),
    AuthError("key not allowed", status=403),
    RequestError("body too large", status=413, code="request_too_large"),
    RequestError("prompt too long", code="context_length_exceeded"),
    AdmissionRejectedError("tenant limit", retry_after_seconds=1, reason="tenant"),
    AdmissionRejectedError("queue full", retry_after_seconds=1, reason="queue"),
    AdmissionRejectedError("queue timeout", retry_after_seconds=1, reason="queue-timeout",
                           status=503),
    OverloadedError("saturated", retry_after_seconds=1),
    NoEndpointError("no replica", retry_after_seconds=1),
]
CLIENT_FAULT_REASONS = ["authentication_error", "permission_denied", "request_too_large",
                        "context_length_exceeded"]


def _overload_reason_pattern() -> str:
    """The ``reason=~`` matcher of PonderRouterRejecting, read from the template."""
    template = (CHART / "templates" / "_alerts.tpl").read_text()
    rule = template.split("- alert: PonderRouterRejecting", 1)[1]
    match = re.search(r'ponder_router_rejections_total\{reason=~"([^"]+)"\}', rule)
    assert match, "PonderRouterRejecting does not select rejections by reason"
    return match.group(1)


@pytest.mark.parametrize("error", ROUTER_REFUSALS, ids=lambda e: type(e).__name__ + ":" + str(e))
def test_the_overload_alert_counts_a_refusal_exactly_when_the_router_answers_429_or_503(
    error: PonderRouterError,
) -> None:
    response, reason = error_response(error), error.reason
    counted = re.fullmatch(_overload_reason_pattern(), reason) is not None
    assert counted == (response.status_code in (429, 503)), (reason, response.status_code)


def test_the_client_fault_cases_here_are_the_reasons_the_router_gives() -> None:
    reasons = {e.reason for e in ROUTER_REFUSALS if error_response(e).status_code not in (429, 503)}
    assert reasons == set(CLIENT_FAULT_REASONS)


def _queried_series(exprs: list[str], prefix: str) -> set[str]:
    return {m for e in exprs for m in re.findall(rf"\b{prefix}\w*", e)}


def _router_series() -> set[str]:
    names: set[str] = set()
    for family in RouterMetrics("x").registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{s}" for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def _ksm_series() -> set[str]:
    config = yaml.safe_load((CHART / "files" / "kube-state-metrics.yaml").read_text())
    return {f"{r['metricNamePrefix']}_{m['name']}"
            for r in config["spec"]["resources"] for m in r["metrics"]}


def _exprs(rule_groups: list[dict[str, Any]], dashboard: dict[str, Any]) -> list[str]:
    exprs = [r["expr"] for g in rule_groups for r in g["rules"]]
    exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"]
              if isinstance(v.get("query"), dict)]
    return exprs


def test_the_dashboard_and_alerts_query_only_series_the_router_exports(
    rule_groups: list[dict[str, Any]], dashboard: dict[str, Any]
) -> None:
    queried = _queried_series(_exprs(rule_groups, dashboard), "ponder_router_")
    assert queried, "no router series queried"
    assert queried <= _router_series(), queried - _router_series()


def test_the_dashboard_and_alerts_query_only_series_kube_state_metrics_is_configured_for(
    rule_groups: list[dict[str, Any]], dashboard: dict[str, Any]
) -> None:
    queried = _queried_series(_exprs(rule_groups, dashboard), "ponder_reasoningservice_")
    assert queried <= _ksm_series(), queried - _ksm_series()


@pytest.mark.parametrize("needle", [
    "status_desired_replicas", "ponder_router_demand_tokens", "ponder_router_queue_depth",
    "ponder_router_budget_tokens_total", "ponder_router_early_stops_total",
    "status_hourly_cost",
])
def test_the_dashboard_has_a_panel_for(dashboard: dict[str, Any], needle: str) -> None:
    assert any(needle in t["expr"] for p in dashboard["panels"] for t in p["targets"])


def test_every_dashboard_panel_has_a_title_a_description_and_a_unique_id(
    dashboard: dict[str, Any],
) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["title"], panel["id"]
        assert panel["description"], panel["id"]
        assert panel["datasource"]["uid"] == "${datasource}"
