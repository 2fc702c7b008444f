"""Tests of gcp.visual: the offline vis-network HTML and the plotly figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gcp import visual
from gcp.graph import ConceptGraph, ConceptNode

DEMO_GRAPH = Path(__file__).resolve().parents[1] / "assets" / "demo" / "graph.json"
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def graph() -> ConceptGraph:
    return ConceptGraph.load(DEMO_GRAPH)


def _dataset(html: str, name: str) -> list[dict]:
    match = re.search(rf"{name} = new vis\.DataSet\((\[.*?\])\);", html, re.S)
    assert match is not None, f"no {name} DataSet in the HTML"
    return json.loads(match.group(1))


def test_graph_html_offline(graph):
    html = visual.graph_html(graph)
    assert "vis.Network" in html
    assert "cdnjs" not in html
    assert "cdn.jsdelivr" not in html
    assert not re.search(r"<(script|link)\b[^>]*\b(src|href)=[\"']https?://", html)


def test_graph_html_layered_top_down(graph):
    html = visual.graph_html(graph)
    nodes = {node["id"]: node for node in _dataset(html, "nodes")}
    assert set(nodes) == set(graph.names)
    for name in graph.names:
        assert nodes[name]["level"] == graph.depth(name)
    assert nodes[graph.output]["level"] == max(graph.depth(n) for n in graph.names)
    options = json.loads(re.search(r"var options = (\{.*?\});\n", html, re.S).group(1))
    assert options["layout"]["hierarchical"]["enabled"] is True
    assert options["layout"]["hierarchical"]["direction"] == "UD"
    edges = {(e["from"], e["to"]) for e in _dataset(html, "edges")}
    assert edges == set(graph.edges)


def test_graph_html_grey_without_metrics(graph):
    nodes = _dataset(visual.graph_html(graph), "nodes")
    assert {node["color"] for node in nodes} == {visual.NO_DATA_COLOR}


def test_graph_html_colours_by_metric(graph):
    metrics = {"accuracy": {"tone": 0.95, "ironic": 0.2}, "uncertainty": {"tone": 0.9}}
    nodes = {n["id"]: n for n in _dataset(visual.graph_html(graph, metrics=metrics), "nodes")}
    assert nodes["tone"]["color"] == visual.metric_color(0.95)
    assert nodes["ironic"]["color"] == visual.metric_color(0.2)
    assert nodes["mixed"]["color"] == visual.NO_DATA_COLOR
    assert "node accuracy: 0.95" in nodes["tone"]["title"]
    assert "mean uncertainty: 0.90" in nodes["tone"]["title"]
    by_uncertainty = {
        n["id"]: n for n in _dataset(
            visual.graph_html(graph, metrics=metrics, color_by="uncertainty"), "nodes")
    }
    assert by_uncertainty["tone"]["color"] == visual.metric_color(0.9, higher_is_better=False)


def test_graph_html_unknown_metric(graph):
    with pytest.raises(ValueError, match="unknown metric 'speed'"):
        visual.graph_html(graph, color_by="speed")


def test_graph_html_title_is_plain_text(graph):
    node = ConceptNode("injected", f"{XSS} see href", ("no", "yes"), description=XSS)
    html = visual.graph_html(graph.add_node(node, children=["tone"]))
    # The markup only travels as escaped JSON, never as raw HTML.
    assert XSS not in html
    # pyvis switches to an innerHTML popup when a title contains "href"; ours never does.
    assert "popup.innerHTML" not in html
    title = {n["id"]: n for n in _dataset(html, "nodes")}["injected"]["title"]
    assert f"Question: {XSS} see href" in title
    assert f"Description: {XSS}" in title


def test_metric_color_scale():
    assert visual.metric_color(1.0) == "#2ca25f"
    assert visual.metric_color(0.0) == "#d73027"
    assert visual.metric_color(0.0, higher_is_better=False) == "#2ca25f"
    assert visual.metric_color(None) == visual.NO_DATA_COLOR
    assert visual.metric_color(float("nan")) == visual.NO_DATA_COLOR
    assert visual.metric_color(7.0) == visual.metric_color(1.0)


def test_uncertainty_heatmap_sorted_by_total():
    frame = pd.DataFrame(
        {"a": [0.1, 0.9, 0.5], "b": [0.0, 0.8, 0.1]}, index=["t1", "t2", "t3"]
    )
    figure = visual.uncertainty_heatmap(frame)
    heatmap = figure.data[0]
    assert heatmap.type == "heatmap"
    assert list(heatmap.y) == ["t2", "t3", "t1"]
    assert list(heatmap.x) == ["a", "b"]
    np.testing.assert_allclose(np.asarray(heatmap.z)[0], [0.9, 0.8])
    unsorted = visual.uncertainty_heatmap(frame, sort_by_total=False, max_rows=2)
    assert list(unsorted.data[0].y) == ["t1", "t2"]


def test_round_uncertainty_heatmap_rows():
    frame = pd.DataFrame({"a": [0.5, 0.3], "b": [0.4, 0.2]}, index=[1, 2])
    heatmap = visual.round_uncertainty_heatmap(frame).data[0]
    assert list(heatmap.y) == ["round 1", "round 2"]


def test_learning_curve_one_line_per_strategy_and_metric():
    curve = pd.DataFrame({
        "round": [1, 2, 1, 2],
        "strategy": ["graph", "graph", "random", "random"],
        "labels": [20, 40, 20, 40],
        "cost": [0.1, 0.2, 0.1, 0.2],
        "accuracy": [0.6, 0.7, 0.55, 0.6],
        "teacher_agreement": [0.65, 0.75, 0.6, 0.62],
    })
    figure = visual.learning_curve_figure(curve, x="cost")
    names = sorted(trace.name for trace in figure.data)
    assert names == [
        "graph: accuracy (gold)", "graph: agreement with teacher",
        "random: accuracy (gold)", "random: agreement with teacher",
    ]
    assert list(figure.data[0].x) == [0.1, 0.2]
    with pytest.raises(ValueError, match="unknown x axis 'time'"):
        visual.learning_curve_figure(curve, x="time")


def test_attribution_sentence_rounds_percent():
    assert visual.attribution_sentence("ironic", 0.312) == "correcting `ironic` fixes 31 % of errors"


def test_confusion_and_bar_figures():
    confusion = pd.DataFrame([[5, 1], [2, 7]], index=["no", "yes"], columns=["no", "yes"])
    heatmap = visual.confusion_figure(confusion, title="tone").data[0]
    assert list(heatmap.x) == ["pred no", "pred yes"]
    assert heatmap.text[1][1] == "7"
    bars = visual.node_accuracy_figure({"a": 0.9, "b": 0.4}).data[0]
    assert list(bars.y) == ["b", "a"]
    shares = visual.attribution_figure([("a", 0.1), ("b", 0.3)]).data[0]
    assert list(shares.y) == ["a", "b"]
    assert list(shares.x) == pytest.approx([10.0, 30.0])


@pytest.mark.parametrize("name", ["praises_performances", "tone", "_x", "a__b", "x_", "criticizes_story"])
def test_wrap_name_keeps_every_character(name):
    wrapped = visual.wrap_name(name)
    assert wrapped.replace("\n", "") == name
    assert all(len(line) <= max(12, len(part) + 1)
               for line, part in zip(wrapped.split("\n"), name.split("_")))


def test_graph_html_labels_wrap_names(graph):
    nodes = {n["id"]: n for n in _dataset(visual.graph_html(graph), "nodes")}
    assert nodes["positive_evidence"]["label"] == "positive_\nevidence"
    assert nodes["tone"]["label"] == "tone"


def test_breakdown_summary_skips_neutral_diversity():
    neutral = {"nodes": {"tone": 0.4}, "representativeness": 0.117, "diversity_factor": 1.0}
    assert visual.breakdown_summary(neutral) == "representativeness 0.117"
    assert visual.breakdown_summary({**neutral, "diversity_factor": 0.5}) == (
        "representativeness 0.117, diversity factor 0.5"
    )
