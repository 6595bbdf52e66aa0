"""Every PromQL expression the project ships: Grafana dashboard, alert rules, HPA metrics.

Each becomes a plain instant query a test can send to Prometheus:

* dashboard: every panel target and every query variable, with the dashboard
  variables set to "all" and ``$__rate_interval`` to a fixed window;
* alert rules: the query an alert compares with its threshold (every alert is
  ``<query> <op> <number>``, so that its query can be checked on its own while
  nothing is firing); recording rules whole;
* Prometheus Adapter rules: ``metricsQuery`` with its template filled in the
  way the adapter fills it for one namespace's pods.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.stack import DOCKER

DASHBOARD = DOCKER / "grafana" / "dashboards" / "ds-triton.json"
RULES = DOCKER / "prometheus" / "rules.yml"
ADAPTER = DOCKER / "kubernetes" / "prometheus-adapter.yaml"

DASHBOARD_VARIABLES = {"$__rate_interval": "1m", "$model": ".*", "$instance": ".*"}
THRESHOLD = re.compile(r"^(?P<query>.*?)\s*(?:==|!=|>=|<=|>|<)\s*-?[0-9.]+(?:e[+-]?[0-9]+)?\s*$", re.DOTALL)
LABEL_VALUES = re.compile(r"^label_values\((?P<metric>.+),\s*(?P<label>\w+)\)$")


@dataclass(frozen=True)
class Query:
    source: str  # where it comes from, for failure messages
    expr: str

    @property
    def metrics(self) -> set[str]:
        """Metric names the expression reads (words followed by a selector or a range)."""
        names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]", self.expr))
        return {name for name in names if "_" in name and name not in {"label_values"}}


def _substitute(expr: str) -> str:
    for name, value in DASHBOARD_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def dashboard_queries(path: Path = DASHBOARD) -> list[Query]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets") or []:
            source = f"dashboard panel {panel['title']!r} target {target['refId']}"
            queries.append(Query(source, _substitute(target["expr"])))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = LABEL_VALUES.match(variable["query"])
        if match is None:
            raise AssertionError(f"dashboard variable {variable['name']}: not label_values(metric, label)")
        expr = f"group by ({match['label']}) ({match['metric']})"
        queries.append(Query(f"dashboard variable ${variable['name']}", expr))
    return queries


def rule_queries(path: Path = RULES) -> list[Query]:
    rules: dict[str, Any] = yaml.safe_load(path.read_text())
    queries = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                queries.append(Query(f"recording rule {rule['record']}", rule["expr"]))
                continue
            match = THRESHOLD.match(rule["expr"].strip())
            if match is None:
                raise AssertionError(f"alert {rule['alert']}: expr is not '<query> <op> <number>'")
            queries.append(Query(f"alert {rule['alert']}", match["query"]))
    return queries


def adapter_queries(path: Path = ADAPTER, group_by: str = "instance") -> list[Query]:
    """The adapter's per-pod queries; in a test, replicas stand for pods (``group_by``)."""
    config_map: dict[str, Any] = yaml.safe_load(path.read_text())
    config: dict[str, Any] = yaml.safe_load(config_map["data"]["config.yaml"])
    queries = []
    for rule in config["rules"]:
        series = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"])
        assert series is not None, rule["seriesQuery"]
        expr = (
            rule["metricsQuery"]
            .replace("<<.Series>>", series.group(0))
            .replace("<<.LabelMatchers>>", 'job="triton"')
            .replace("<<.GroupBy>>", group_by)
        )
        queries.append(Query(f"adapter metric {rule['name']['as']}", expr))
    return queries
