"""The Grafana dashboard queries only metrics the service exports, with labels they carry.

Every PromQL expression (panels, and the metrics named in template variables) is parsed with a
real PromQL parser (promql-parser); each series selector must name a sample that
``service.metrics.Metrics().registry`` produces: a gauge's name, a counter's ``_total``, a
histogram's ``_bucket``/``_sum``/``_count``. Rates must be taken of counters or histogram parts,
quantiles of ``_bucket`` series, and matchers and ``by (...)`` labels must exist on the metric.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import promql_parser
import pytest
import yaml

from tests.deploy.helpers import DASHBOARD, ROOT

#: Grafana's interval macros, replaced by a literal duration before parsing.
MACROS = re.compile(r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}")
#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"instance", "job"}
RATE_FUNCTIONS = {"rate", "irate", "increase", "resets"}
REQUIRED_FAMILIES = {  # what issue #9 §3 asks the dashboard to show
    "megaasr_requests_total", "megaasr_request_latency_seconds", "megaasr_real_time_factor",
    "megaasr_queue_depth", "megaasr_batch_size", "megaasr_router_decisions_total",
    "megaasr_websocket_sessions_active", "megaasr_stress_wer",
}


@dataclass(frozen=True)
class Sample:
    family: str
    kind: str  # counter, gauge, histogram
    part: str  # "", "_total", "_bucket", "_sum", "_count", "_created"
    labels: frozenset[str]


def exported_samples() -> dict[str, Sample]:
    """Sample name -> what it is, for every metric the service registers."""
    from service.metrics import Metrics

    metrics = Metrics()
    labels = {}
    for value in vars(metrics).values():
        name = getattr(value, "_name", None)
        if name is not None:
            labels[name] = frozenset(getattr(value, "_labelnames", ()))
    samples: dict[str, Sample] = {}
    for family in metrics.registry.collect():
        parts = {"counter": ("_total", "_created"), "gauge": ("",),
                 "histogram": ("_bucket", "_sum", "_count", "_created")}[family.type]
        names = labels.get(family.name, labels.get(family.name + "_total", frozenset()))
        for part in parts:
            extra = {"le"} if part == "_bucket" else set()
            samples[family.name + part] = Sample(family.name, family.type, part, names | extra)
    return samples


def dashboard_queries(dashboard: dict) -> tuple[list[str], list[str]]:
    """(PromQL expressions of the panels, queries of the template variables)."""
    exprs: list[str] = []

    def visit(panels):
        for panel in panels:
            exprs.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
            visit(panel.get("panels", []))

    visit(dashboard.get("panels", []))
    variables = []
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            variables.append(query)
    return exprs, variables


def check_expression(expr: str, samples: dict[str, Sample]) -> list[str]:
    """Problems with one PromQL expression (empty when it only uses exported metrics correctly)."""
    try:
        tree = promql_parser.parse(MACROS.sub("5m", expr))
    except ValueError as error:
        return [f"does not parse: {error}"]
    problems: list[str] = []

    def selectors(node) -> list:
        found = []

        def collect(n):
            if isinstance(n, promql_parser.VectorSelector):
                found.append(n)

        promql_parser.walk(node, pre_visit=collect)
        return found

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            sample = samples.get(node.name)
            if sample is None:
                problems.append(f"{node.name} is not exported by service/metrics.py")
                return
            for matcher in node.matchers.matchers:
                if matcher.name not in sample.labels | TARGET_LABELS | {"__name__"}:
                    problems.append(f"{node.name} has no label {matcher.name!r}")
        elif isinstance(node, promql_parser.Call):
            inner = [samples.get(s.name) for s in selectors(node)]
            if node.func.name in RATE_FUNCTIONS:
                for sample in filter(None, inner):
                    if sample.kind == "gauge":
                        problems.append(f"{node.func.name}() of the gauge {sample.family}")
            if node.func.name == "histogram_quantile" and not any(s and s.part == "_bucket" for s in inner):
                problems.append("histogram_quantile() without a _bucket series")
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            available = set(TARGET_LABELS)
            for sample in (samples.get(s.name) for s in selectors(node.expr)):
                if sample:
                    available |= sample.labels
            if str(node.modifier.type).endswith("By"):
                for label in node.modifier.labels:
                    if label not in available:
                        problems.append(f"by ({label}) but no series below has that label")

    promql_parser.walk(tree, pre_visit=visit)
    return problems


def check_variable(query: str, samples: dict[str, Sample]) -> list[str]:
    match = re.fullmatch(r"\s*label_values\(\s*([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s*,\s*(\w+)\s*\)\s*", query)
    if not match:
        return [f"unsupported variable query {query!r}"]
    sample = samples.get(match.group(1))
    if sample is None:
        return [f"{match.group(1)} is not exported by service/metrics.py"]
    if match.group(3) not in sample.labels | TARGET_LABELS:
        return [f"{match.group(1)} has no label {match.group(3)!r}"]
    return []


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def samples() -> dict[str, Sample]:
    return exported_samples()


def test_every_query_names_only_exported_metrics(dashboard, samples):
    exprs, variables = dashboard_queries(dashboard)
    assert len(exprs) >= 20
    problems = {expr: check_expression(expr, samples) for expr in exprs}
    problems |= {query: check_variable(query, samples) for query in variables}
    assert {q: p for q, p in problems.items() if p} == {}


def test_dashboard_covers_what_the_issue_asks_for(dashboard, samples):
    exprs, _ = dashboard_queries(dashboard)
    used = set()
    for expr in exprs:
        used |= {samples[n].family for n in re.findall(r"megaasr_\w+", expr) if n in samples}
    families = {s.family for s in samples.values()}
    wanted = {f.removesuffix("_total") if f.removesuffix("_total") in families else f for f in REQUIRED_FAMILIES}
    assert wanted <= used, f"not on the dashboard: {wanted - used}"


def test_the_checker_catches_mistakes(samples):
    assert check_expression("sum(rate(megaasr_requests_total[5m]))", samples) == []
    assert check_expression("rate(megaasr_does_not_exist_total[5m])", samples)
    assert check_expression("megaasr_request_latency_seconds", samples)  # a histogram has no bare sample
    assert check_expression("rate(megaasr_queue_depth[5m])", samples)  # rate of a gauge
    assert check_expression('megaasr_requests_total{adapter="x"}', samples)  # no such label
    assert check_expression("sum by (scenario) (megaasr_queue_depth)", samples)
    assert check_expression("histogram_quantile(0.9, rate(megaasr_batch_size_sum[5m]))", samples)
    assert check_expression("sum(rate(megaasr_requests_total[$__rate_interval]))", samples) == []
    assert check_expression("sum(rate(", samples)
    assert check_variable("label_values(megaasr_stress_wer, scenario)", samples) == []
    assert check_variable("label_values(megaasr_stress_wer, adapter)", samples)


def test_dashboard_structure(dashboard):
    assert dashboard["uid"] and dashboard["title"]
    ids = []
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    datasources = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {d["uid"] for d in datasources["datasources"]} | {"${datasource}"}
    for panel in dashboard["panels"]:
        ids.append(panel["id"])
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] in uids, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids
            for name in re.findall(r"\$(\w+)", MACROS.sub("", target["expr"])):
                assert name in variables, f"{panel['title']}: unknown variable ${name}"
    assert len(ids) == len(set(ids)), "panel ids must be unique"
