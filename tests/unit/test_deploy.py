"""deploy/: the alerting rules and the Grafana dashboard read only metrics that /metrics exports.

The metric names come from the code (`SUBSCRIBER_METRICS`, `LEADER_METRICS`), so renaming a
family without the rules and the dashboard fails here. promtool, where it is installed (Debian's
`prometheus` package), checks the rules and runs their unit tests (alerts_test.yml).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgsync_dossier import metrics
from pgsync_dossier.models import LINK_STATES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "pgsync-dossier.json"

METRIC = re.compile(r"pgsync_dossier_[a-z0-9_]+")
#: A metric and its label matchers, if any: `name{a="b", c=~"d"}`.
SELECTOR = re.compile(r"(pgsync_dossier_[a-z0-9_]+)\s*(\{[^}]*\})?")
#: Matchers on the labels whose values the code enumerates.
ENUM_MATCHER = re.compile(r'\b(state|wal_status)\s*(?:=~|=)\s*"([^"]*)"')
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    found = []
    for panel in panels:
        found.append(panel)
        found.extend(_panels(panel.get("panels", [])))
    return found


def _dashboard_exprs() -> list[str]:
    dashboard = _dashboard()
    exprs = [target["expr"] for panel in _panels(dashboard["panels"]) for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if variable["type"] == "query":
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def _declared() -> tuple[set[str], set[str]]:
    """The metric families the Subscriber's and the Leader's /metrics export, as the code says."""
    missing = [name for name in ("SUBSCRIBER_METRICS", "LEADER_METRICS") if not hasattr(metrics, name)]
    assert not missing, f"pgsync_dossier.metrics declares no {' or '.join(missing)}"
    subscriber, leader = set(metrics.SUBSCRIBER_METRICS), set(metrics.LEADER_METRICS)
    assert subscriber and leader and not subscriber & leader, (subscriber, leader)
    return subscriber, leader


def test_every_metric_used_is_exported() -> None:
    subscriber, leader = _declared()
    used = {
        where: set(METRIC.findall(expr))
        for where, expr in [(rule["alert"], rule["expr"]) for rule in _alerts()]
        + [(f"dashboard: {expr}", expr) for expr in _dashboard_exprs()]
    }
    assert sum(len(names) for names in used.values()) > 40, "the metric pattern finds nothing"
    unknown = {
        where: names - subscriber - leader for where, names in used.items() if names - subscriber - leader
    }
    assert not unknown, f"metrics that /metrics does not export: {unknown}"


def test_each_expression_reads_one_side() -> None:
    """A Subscriber's series and the Leader's come from different targets and never match."""
    subscriber, leader = _declared()
    for expr in [rule["expr"] for rule in _alerts()] + _dashboard_exprs():
        names = set(METRIC.findall(expr))
        assert names <= subscriber or names <= leader, f"mixes both sides: {expr}"


def test_the_dashboard_shows_every_exported_metric() -> None:
    subscriber, leader = _declared()
    shown = {name for expr in _dashboard_exprs() for name in METRIC.findall(expr)}
    assert not (subscriber | leader) - shown, f"add to the dashboard: {sorted((subscriber | leader) - shown)}"


def test_state_and_wal_status_values_exist() -> None:
    allowed = {"state": set(LINK_STATES), "wal_status": set(metrics.WAL_STATUSES)}
    for expr in [rule["expr"] for rule in _alerts()] + _dashboard_exprs():
        for label, values in ENUM_MATCHER.findall(expr):
            assert set(values.split("|")) <= allowed[label], f"{label}={values!r} in {expr}"


def test_every_alert_is_documented_and_graded() -> None:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    assert [group["name"] for group in groups] == ["pgsync-dossier"]
    rules = _alerts()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), names
    for rule in rules:
        assert rule["alert"].startswith("PgsyncDossier"), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert "for" in rule, f"{rule['alert']} has no for:"
        for key in ("summary", "description"):
            assert rule["annotations"].get(key, "").strip(), f"{rule['alert']} has no {key}"


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    tests = yaml.safe_load(ALERTS_TEST.read_text())
    assert tests["rule_files"] == [ALERTS.name]
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert not {rule["alert"] for rule in _alerts()} - fired


def test_the_dashboard_is_importable_and_filtered() -> None:
    subscriber, leader = _declared()
    dashboard = _dashboard()
    assert dashboard["uid"] == "pgsync-dossier" and dashboard["title"]
    assert dashboard["schemaVersion"] >= 36
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("instance", "subscriber"):
        assert variables[name]["type"] == "query" and variables[name]["datasource"] == DATASOURCE, name

    panels = _panels(dashboard["panels"])
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), ids
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel[
            "title"
        ]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            for name, matchers in SELECTOR.findall(target["expr"]):
                assert name in subscriber | leader, name
                wanted = 'instance=~"$instance"' if name in subscriber else 'subscriber=~"$subscriber"'
                assert wanted in matchers, f"{panel['title']}: {name}{matchers} is not filtered by {wanted}"


def _promtool(*args: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_rules() -> None:
    _promtool("check", "rules", str(ALERTS))


def test_promtool_runs_the_rule_unit_tests() -> None:
    _promtool("test", "rules", str(ALERTS_TEST))
