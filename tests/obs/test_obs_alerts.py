"""The alert rules (docs/alerts.yml) and the Grafana dashboard (docs/grafana/vmd.json).

`promtool check rules` and `promtool test rules` (Debian's package "prometheus"; .ci/run
installs it) run on the real files; every rule has a severity and annotations; VmdDown
covers the three scrape jobs; and every metric an expression names (rules and dashboard)
is one the processes export: the families of the daemon's, the agent's and the gateway's
registries (each built as the process builds it), with the sample names Prometheus sees.
A metric added to a registry is accepted here as soon as it exists.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vmd.api.metrics import ApiMetrics
from vmd.obs.metrics import AgentMetrics, DaemonMetrics

DOCS = Path(__file__).resolve().parents[2] / "docs"
RULES = DOCS / "alerts.yml"
RULE_TESTS = DOCS / "alerts.test.yml"
DASHBOARD = DOCS / "grafana" / "vmd.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package: prometheus)")
JOBS = ("vmd", "vmd-agent", "vmd-api")
SEVERITIES = {"critical", "warning", "info"}
# Series Prometheus makes itself, not the processes.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
             "summary": ("", "_count", "_sum"), "info": ("_info",), "gauge": ("",),
             "unknown": ("",), "stateset": ("",), "gaugehistogram": ("_bucket", "_gcount",
                                                                     "_gsum")}


def exported() -> set[str]:
    """Every series name the three processes can export (labelled families included
    before their first child exists)."""
    names: set[str] = set()
    for registry in (DaemonMetrics().registry, AgentMetrics().registry,
                     ApiMetrics().registry):
        for family in registry.collect():
            names.update(family.name + s for s in _SUFFIXES.get(family.type, ("",)))
            names.update(sample.name for sample in family.samples)
    return names


_FUNCTION_OR_KEYWORD = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (strings, label matchers, ranges,
    grouping clauses and function names left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, legends)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    found = set()
    for match in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _FUNCTION_OR_KEYWORD:
            continue
        found.add(name)
    return found


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in board["templating"]["list"]:
        if isinstance(variable.get("query"), dict):
            # label_values(<selector>, <label>): the selector names the metric.
            selector = re.fullmatch(r"label_values\((.*),\s*\w+\)", variable["query"]["query"])
            assert selector is not None, variable
            yield f"variable {variable['name']}", selector[1]


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


@needs_promtool
def test_promtool_runs_the_rule_tests() -> None:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, "test", "rules", str(RULE_TESTS)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    tested = {t["alertname"] for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
              for t in test["alert_rule_test"]}
    assert {"VmdDown", "VmdApiErrors", "VmdApiTimeouts"} <= tested


def test_every_rule_has_a_severity_and_annotations() -> None:
    found = rules()
    assert len(found) >= 15
    for rule in found:
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]
    names = [rule["alert"] for rule in found]
    assert len(names) == len(set(names))


def test_vmd_down_covers_the_three_jobs_and_the_gateway_has_alerts() -> None:
    by_name = {rule["alert"]: rule for rule in rules()}
    jobs = re.search(r'job=~"([^"]+)"', by_name["VmdDown"]["expr"])
    assert jobs is not None and set(jobs[1].split("|")) == set(JOBS)
    assert 'code=~"5.."' in by_name["VmdApiErrors"]["expr"]
    assert 'code="504"' in by_name["VmdApiTimeouts"]["expr"]


def test_every_metric_in_the_rules_is_exported() -> None:
    known = exported() | SYNTHETIC
    unknown = {rule["alert"]: sorted(metric_names(rule["expr"]) - known) for rule in rules()}
    assert not {k: v for k, v in unknown.items() if v}, unknown
    assert all(metric_names(rule["expr"]) for rule in rules())


def test_every_metric_in_the_dashboard_is_exported() -> None:
    known = exported() | SYNTHETIC
    exprs = list(dashboard_exprs())
    assert len(exprs) >= 25
    unknown = {title: sorted(metric_names(e) - known) for title, e in exprs}
    assert not {k: v for k, v in unknown.items() if v}, unknown


def test_the_dashboard_covers_the_three_processes() -> None:
    board = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    text = " ".join(e for _, e in dashboard_exprs())
    for family in ("vmd_requests_total", "vmd_vmadm_calls_total", "vmd_api_requests_total"):
        assert family in text
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert [variables[f"{role}_job"]["query"] for role in ("daemon", "agent", "api")] == list(JOBS)


@pytest.mark.parametrize(("expr", "names"), [
    pytest.param('up{job=~"vmd|vmd-api"} == 0', {"up"}, id="selector"),
    pytest.param("sum by (action) (rate(vmd_tasks_total{outcome=~\"failure\"}[15m]))"
                 " / sum by (action) (rate(vmd_tasks_total[15m])) > 0.2",
                 {"vmd_tasks_total"}, id="grouping"),
    pytest.param("histogram_quantile(0.95, sum by (le) (rate(x_bucket[$__rate_interval])))",
                 {"x_bucket"}, id="grafana-variable"),
    pytest.param("a + on (job) group_left (instance) b offset 5m", {"a", "b"}, id="matching"),
])
def test_metric_names_parses_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
