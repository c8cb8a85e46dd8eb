"""The Prometheus alert rules and the Grafana dashboard in deploy/ stay honest.

No Prometheus or Grafana runs here, so the files are parsed and every PromQL expression is
checked against what the server really exports: each `voicebot_*` series name must be one that
prometheus_client produces from `bot.metrics` (NAME_bucket/_sum/_count for a histogram,
NAME_total for a counter, NAME for a gauge), and each label an expression matches on, groups by
or asks `label_values` for must be a label of that metric (plus `le` for a histogram's buckets).
The checker is regex based, not a PromQL parser; `test_checker_*` prove it catches mistakes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import prometheus_client
import yaml
from prometheus_client.metrics import MetricWrapperBase

import bot.metrics

REPO = Path(__file__).resolve().parents[1]
ALERTS = REPO / "deploy/prometheus/alerts.yml"
DASHBOARD = REPO / "deploy/grafana/voicebot-dashboard.json"
README = REPO / "deploy/README.md"

STAGE_P95_HISTOGRAMS = [
    "voicebot_voice_to_voice_seconds",
    "voicebot_stt_latency_seconds",
    "voicebot_llm_first_token_seconds",
    "voicebot_tts_first_chunk_seconds",
    "voicebot_turn_end_decision_seconds",
]

METRIC_NAME = re.compile(r"\bvoicebot_[a-z0-9_]+")
SELECTOR = re.compile(r"\b(voicebot_[a-z0-9_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*(,|$)')
GROUPING = re.compile(r"\b(by|without)\s*\(([^)]*)\)")
VECTOR_MATCHING = re.compile(r"\b(on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
LABEL_VALUES = re.compile(r"label_values\(\s*(?:(.*),\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$")
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


# -- what the server exports -----------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One series name the server exposes on /metrics."""

    family: str
    labels: frozenset[str]


@cache
def exported() -> dict[str, Series]:
    """Series name -> its metric family and labels, from the live registry and `bot.metrics`."""
    labels_of = {
        m._name: frozenset(m._labelnames)
        for m in vars(bot.metrics).values()
        if isinstance(m, MetricWrapperBase)
    }
    series: dict[str, Series] = {}
    for family in prometheus_client.REGISTRY.collect():
        if not family.name.startswith("voicebot_"):
            continue
        labels = labels_of.get(family.name)
        assert labels is not None, f"{family.name} is exported but not defined in bot.metrics"
        if family.type == "histogram":
            series[f"{family.name}_bucket"] = Series(family.name, labels | {"le"})
            series[f"{family.name}_sum"] = Series(family.name, labels)
            series[f"{family.name}_count"] = Series(family.name, labels)
        elif family.type == "counter":
            # prometheus_client strips `_total` from the family name and puts it back on samples.
            series[f"{family.name}_total"] = Series(family.name, labels)
        else:
            series[family.name] = Series(family.name, labels)
    return series


# -- the checker -----------------------------------------------------------------------------


def _matching_paren(text: str, at: int) -> int:
    """Index of the parenthesis that pairs with the one at `at` (forwards from a `(`,
    backwards from a `)`)."""
    step, inward = (1, "(") if text[at] == "(" else (-1, ")")
    depth = 0
    for i in range(at, len(text) if step == 1 else -1, step):
        if text[i] in "()":
            depth += 1 if text[i] == inward else -1
            if depth == 0:
                return i
    raise ValueError(f"unbalanced parentheses in {text!r}")


def _label_list(text: str) -> list[str]:
    return [label.strip() for label in text.split(",") if label.strip()]


def _aggregated_body(expr: str, match: re.Match[str]) -> str | None:
    """The expression a `by (...)` / `without (...)` clause groups: `sum by (l) (BODY)` or
    `sum(BODY) by (l)`."""
    after = expr[match.end() :].lstrip()
    if after.startswith("("):
        start = len(expr) - len(after)
        return expr[start + 1 : _matching_paren(expr, start)]
    before = expr[: match.start()].rstrip()
    if before.endswith(")"):
        end = len(before) - 1
        return expr[_matching_paren(expr, end) + 1 : end]
    return None


def check_expr(expr: str) -> list[str]:
    """Problems with one PromQL expression: unknown series names, labels a metric does not
    have, histogram buckets aggregated without `le`. Empty when the expression is fine."""
    series = exported()
    problems = []
    names = set(METRIC_NAME.findall(expr))
    for name in sorted(names - series.keys()):
        problems.append(f"unknown metric {name}")
    known = {name: series[name] for name in names if name in series}

    for selector in SELECTOR.finditer(expr):
        name, body = selector.groups()
        if name not in known:
            continue
        matchers = list(MATCHER.finditer(body))
        if "".join(m.group(0) for m in matchers).strip() != body.strip():
            problems.append(f"cannot read the matchers of {name}{{{body}}}")
        for matcher in matchers:
            if matcher.group(1) not in known[name].labels:
                problems.append(f"{name} has no label {matcher.group(1)!r}")

    for grouping in GROUPING.finditer(expr):
        labels = _label_list(grouping.group(2))
        body = _aggregated_body(expr, grouping)
        if body is None:
            problems.append(f"cannot find what {grouping.group(0)!r} aggregates")
            continue
        for name in set(METRIC_NAME.findall(body)) & known.keys():
            for label in labels:
                if label not in known[name].labels:
                    problems.append(f"{grouping.group(0)!r}: {name} has no label {label!r}")
            if grouping.group(1) == "by" and name.endswith("_bucket") and "le" not in labels:
                problems.append(f"{grouping.group(0)!r} aggregates {name} without `le`")

    every_label = set().union(*(s.labels for s in known.values()))
    for matching in VECTOR_MATCHING.finditer(expr):
        for label in _label_list(matching.group(2)):
            if label not in every_label:
                problems.append(f"{matching.group(0)!r}: no metric here has label {label!r}")
    return problems


def unguarded_divisions(expr: str) -> list[str]:
    """Right-hand operands of `/` not guarded against zero: each must be `clamp_min(...)` or a
    parenthesised expression filtered with `> 0`."""
    problems = []
    for slash in re.finditer(r"/", expr):
        rest = expr[slash.end() :].lstrip()
        start = len(expr) - len(rest)
        if rest.startswith("clamp_min("):
            continue
        if rest.startswith("("):
            inner = expr[start + 1 : _matching_paren(expr, start)]
            if re.search(r">\s*0\s*$", inner):
                continue
        problems.append(f"unguarded denominator: /{rest[:60]}")
    return problems


def check_label_values(query: str) -> list[str]:
    """Problems with a Grafana `label_values([selector,] label)` variable query."""
    match = LABEL_VALUES.search(query)
    if match is None:
        return [f"not a label_values query: {query!r}"]
    selector, label = match.groups()
    if selector is None:
        return [f"label_values without a metric: {query!r}"]
    problems = check_expr(selector)
    for name in set(METRIC_NAME.findall(selector)) & exported().keys():
        if label not in exported()[name].labels:
            problems.append(f"label_values: {name} has no label {label!r}")
    return problems


# -- the files -------------------------------------------------------------------------------


def alert_rules() -> list[dict]:
    return [
        rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
    ]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in dashboard()["panels"]
        for target in panel["targets"]
    ]


def _one_line(expr: str) -> str:
    return " ".join(expr.split())


# -- the checker catches mistakes ------------------------------------------------------------


def test_checker_accepts_a_correct_expression() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, transport, pipeline, provider) "
        '(rate(voicebot_stt_latency_seconds_bucket{transport=~"$transport"}[5m]))) > 0.8'
    )
    assert check_expr(expr) == []
    assert (
        check_expr('sum(rate(voicebot_calls_ended_total{outcome="error"}[5m])) by (pipeline)') == []
    )
    assert check_expr("sum by (transport) (voicebot_active_calls)") == []


def test_checker_reports_a_wrong_metric_name() -> None:
    assert check_expr("sum(rate(voicebot_calls_startd_total[5m]))") == [
        "unknown metric voicebot_calls_startd_total"
    ]
    # A counter without `_total` and a histogram without a sample suffix are not series.
    assert check_expr("rate(voicebot_turns[5m])") == ["unknown metric voicebot_turns"]
    assert check_expr("rate(voicebot_stt_latency_seconds[5m])") == [
        "unknown metric voicebot_stt_latency_seconds"
    ]
    assert check_expr("rate(voicebot_turns_total_bucket[5m])") == [
        "unknown metric voicebot_turns_total_bucket"
    ]


def test_checker_reports_a_label_the_metric_does_not_have() -> None:
    assert check_expr("sum by (provider) (rate(voicebot_calls_started_total[5m]))") == [
        "'by (provider)': voicebot_calls_started_total has no label 'provider'"
    ]
    assert check_expr("sum(rate(voicebot_turns_total[5m])) by (outcome)") == [
        "'by (outcome)': voicebot_turns_total has no label 'outcome'"
    ]
    # The ICE counter is WebRTC only: it has no transport label.
    assert check_expr(
        'rate(voicebot_webrtc_ice_state_transitions_total{transport="webrtc"}[5m])'
    ) == ["voicebot_webrtc_ice_state_transitions_total has no label 'transport'"]
    # `le` only on buckets.
    assert check_expr("sum by (le) (rate(voicebot_stt_latency_seconds_count[5m]))") == [
        "'by (le)': voicebot_stt_latency_seconds_count has no label 'le'"
    ]
    assert check_expr(
        "histogram_quantile(0.95, sum by (transport) "
        "(rate(voicebot_voice_to_voice_seconds_bucket[5m])))"
    ) == ["'by (transport)' aggregates voicebot_voice_to_voice_seconds_bucket without `le`"]
    assert check_label_values("label_values(voicebot_turns_total, provider)") == [
        "label_values: voicebot_turns_total has no label 'provider'"
    ]


def test_checker_reports_an_unguarded_division() -> None:
    assert unguarded_divisions("sum(rate(a[5m])) / sum(rate(b[5m]))") != []
    assert unguarded_divisions("sum(rate(a[5m])) / (sum(rate(b[5m])))") != []
    assert unguarded_divisions("sum(rate(a[5m])) / (sum(rate(b[5m])) > 0)") == []
    assert unguarded_divisions("sum(rate(a[5m])) / clamp_min(sum(rate(b[5m])), 1)") == []


# -- alert rules -----------------------------------------------------------------------------


def test_alert_rules_have_the_rule_file_shape() -> None:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    assert document["groups"]
    names = []
    for group in document["groups"]:
        assert isinstance(group["name"], str) and group["name"]
        assert group["rules"], group["name"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert isinstance(rule["alert"], str) and re.fullmatch(
                r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"]
            )
            assert isinstance(rule["expr"], str) and rule["expr"].strip(), rule["alert"]
            assert DURATION.match(str(rule["for"])), rule["alert"]
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
            assert rule["annotations"]["summary"].strip(), rule["alert"]
            assert rule["annotations"]["description"].strip(), rule["alert"]
            names.append(rule["alert"])
    assert len(names) == len(set(names)), "alert names repeat"


def test_alert_exprs_use_only_exported_metrics_and_their_labels() -> None:
    problems = {rule["alert"]: check_expr(rule["expr"]) for rule in alert_rules()}
    assert {name: found for name, found in problems.items() if found} == {}
    for rule in alert_rules():
        assert METRIC_NAME.search(rule["expr"]), rule["alert"]


def test_alert_ratios_guard_zero_denominators() -> None:
    problems = {rule["alert"]: unguarded_divisions(rule["expr"]) for rule in alert_rules()}
    assert {name: found for name, found in problems.items() if found} == {}


def test_each_stage_has_a_p95_alert_at_800_ms() -> None:
    exprs = [_one_line(rule["expr"]) for rule in alert_rules()]
    for histogram in STAGE_P95_HISTOGRAMS:
        matching = [
            expr
            for expr in exprs
            if f"{histogram}_bucket" in expr and expr.startswith("histogram_quantile(0.95,")
        ]
        assert len(matching) == 1, histogram
        assert re.search(r"\)\s*>\s*0\.8$", matching[0]), matching[0]
        assert "by (le, transport, pipeline" in matching[0], matching[0]
        assert "rate(" in matching[0], matching[0]


def test_error_rate_and_health_alerts_exist() -> None:
    exprs = [_one_line(rule["expr"]) for rule in alert_rules()]

    def find(*needles: str) -> str:
        found = [expr for expr in exprs if all(needle in expr for needle in needles)]
        assert len(found) == 1, needles
        return found[0]

    assert re.search(
        r"\)\s*>\s*\d", find("histogram_quantile(0.95,", "voicebot_call_setup_seconds_bucket")
    )
    calls = find('voicebot_calls_ended_total{outcome="error"}')
    assert calls.endswith("> 0.05") and " / " in calls
    llm = find("voicebot_llm_errors_total", "voicebot_llm_first_token_seconds_count")
    assert llm.endswith("> 0.05") and " / " in llm
    find("voicebot_llm_failovers_total")
    find("voicebot_tts_stalls_total")
    find("voicebot_stt_reconnections_total")
    ice = find('state="failed"', 'state="checking"', "voicebot_webrtc_ice_state_transitions_total")
    assert ice.endswith("> 0.1")
    confidence = find("histogram_quantile(0.5,", "voicebot_stt_confidence_bucket")
    assert re.search(r"<\s*0\.6$", confidence)


# -- dashboard -------------------------------------------------------------------------------


def test_dashboard_has_the_grafana_shape() -> None:
    board = dashboard()
    assert board["uid"] and board["title"]
    assert 36 <= board["schemaVersion"] <= 41
    assert board["panels"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in board["panels"]:
        title = panel["title"]
        assert panel["type"] in {"timeseries", "stat", "heatmap"}, title
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, title
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["targets"], title
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), title
        for target in panel["targets"]:
            assert isinstance(target["expr"], str) and target["expr"].strip(), title
            assert "legendFormat" in target, title


def test_dashboard_template_variables() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("transport", "pipeline"):
        variable = variables[name]
        assert variable["type"] == "query"
        query = (
            variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        )
        assert query.startswith("label_values(") and query.rstrip(")").endswith(name), query
        assert check_label_values(query) == [], query


def test_dashboard_exprs_use_only_exported_metrics_and_their_labels() -> None:
    problems = {}
    for title, expr in dashboard_exprs():
        found = check_expr(expr) + unguarded_divisions(expr)
        if found:
            problems[f"{title}: {expr}"] = found
    assert problems == {}


def test_dashboard_filters_on_its_variables() -> None:
    for title, expr in dashboard_exprs():
        for series in SELECTOR.findall(expr):
            name, matchers = series
            labels = exported()[name].labels
            if "pipeline" in labels:  # not on process-wide counts (refused call starts)
                assert 'pipeline=~"$pipeline"' in matchers, (title, expr)
            if "transport" in labels:
                assert 'transport=~"$transport"' in matchers, (title, expr)
        for name in METRIC_NAME.finditer(expr):
            assert expr[name.end() :].lstrip().startswith("{"), f"{title}: unfiltered {expr}"


def test_dashboard_shows_every_exported_metric() -> None:
    used = {
        exported()[name].family
        for _, expr in dashboard_exprs()
        for name in METRIC_NAME.findall(expr)
        if name in exported()
    }
    families = {series.family for series in exported().values()}
    assert families - used == set()
    heatmaps = [panel for panel in dashboard()["panels"] if panel["type"] == "heatmap"]
    assert any(
        "voicebot_stt_confidence_bucket" in target["expr"]
        for panel in heatmaps
        for target in panel["targets"]
    )


def test_readme_says_how_to_load_them() -> None:
    text = README.read_text()
    for needle in ("rule_files", "alerts.yml", "voicebot-dashboard.json", "/metrics", "7860"):
        assert needle in text, needle
