"""The provisioned Grafana dashboard queries only metrics the app exports, and shows what the
team watches: requests, tokens/s, time to first token p50/p95 by model, errors, logins."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from core import metrics
from tests.support.deploy import ROOT, load_yaml

DASHBOARD = ROOT / "deploy/grafana/dashboards/ledger.json"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "bool", "offset", "inf", "nan"}  # fmt: skip


def exported_series_names() -> set[str]:
    """Every sample name core.metrics can put on /metrics (``_total``, ``_bucket``...)."""
    names = set()
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            for family in obj.describe():
                names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels, keywords dropped)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors, $__rate_interval
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    found = set()
    for match in re.finditer(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", text):
        name, is_call = match.groups()
        if not is_call and name.lower() not in KEYWORDS:
            found.add(name)
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and templating query."""
    found = [
        (f"panel {p['title']!r} {t['refId']}", t["expr"])
        for p in dashboard["panels"]
        for t in p.get("targets", [])
    ]
    for var in dashboard["templating"]["list"]:
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        label_values = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
        found.append((f"variable {var['name']}", label_values.group(1) if label_values else query))
    return found


def test_the_parser_finds_metric_names_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, model) (rate(ledger_x_bucket{model=~"$model",'
        'outcome="error"}[$__rate_interval]))) / clamp_min(sum(rate(ledger_y_total[5m])), 1e-9)'
    )
    assert metric_names(expr) == {"ledger_x_bucket", "ledger_y_total"}
    assert metric_names("sum(up) by (job) and on (job) ledger_z") == {"up", "ledger_z"}


def test_the_contract_metrics_are_all_exported() -> None:
    assert {
        "ledger_llm_requests_total",
        "ledger_llm_time_to_first_token_seconds_bucket",
        "ledger_llm_request_duration_seconds_bucket",
        "ledger_llm_prompt_tokens_total",
        "ledger_llm_completion_tokens_total",
        "ledger_llm_tokens_per_second_bucket",
        "ledger_llm_active_streams",
        "ledger_logins_total",
        "ledger_lockouts_total",
        "ledger_quota_refusals_total",
        "ledger_storage_errors_total",
    } <= exported_series_names()


def test_every_query_names_only_metrics_the_app_exports(dashboard: dict[str, Any]) -> None:
    exported = exported_series_names()
    unknown = {
        where: sorted(metric_names(expr) - exported)
        for where, expr in queries(dashboard)
        if metric_names(expr) - exported
    }
    assert unknown == {}
    assert all(metric_names(expr) for _, expr in queries(dashboard)), "a query selects nothing"


def test_every_panel_reads_the_provisioned_prometheus(dashboard: dict[str, Any]) -> None:
    provisioned = load_yaml(ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml")
    uid = provisioned["datasources"][0]["uid"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert all(t["datasource"]["uid"] == uid for t in panel["targets"])
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def _panel(dashboard: dict[str, Any], title_part: str) -> list[str]:
    matches = [p for p in dashboard["panels"] if title_part.lower() in p["title"].lower()]
    assert matches, f"no panel titled like {title_part!r}"
    return [t["expr"] for p in matches for t in p["targets"]]


def test_time_to_first_token_shows_p50_and_p95_by_model(dashboard: dict[str, Any]) -> None:
    exprs = " ".join(_panel(dashboard, "time to first token"))
    for q in ("0.5", "0.95"):
        assert re.search(
            rf"histogram_quantile\({q}, sum by \(le, model\) \(rate\("
            r"ledger_llm_time_to_first_token_seconds_bucket",
            exprs,
        ), q


@pytest.mark.parametrize(
    ("title", "metric"),
    [
        ("requests / s by model", "ledger_llm_requests_total"),
        ("tokens / s", "ledger_llm_tokens_per_second_bucket"),
        ("tokens / s", "ledger_llm_completion_tokens_total"),
        ("errors", "ledger_storage_errors_total"),
        ("errors", "ledger_llm_requests_total"),
        ("logins", "ledger_logins_total"),
        ("logins", "ledger_lockouts_total"),
    ],
)
def test_the_dashboard_has_the_panels_the_team_watches(
    dashboard: dict[str, Any], title: str, metric: str
) -> None:
    assert any(metric in metric_names(e) for e in _panel(dashboard, title))
