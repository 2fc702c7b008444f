"""Figures for the app: the concept graph as offline vis-network HTML, and plotly charts.

Every function here is pure: it takes plain data (a `ConceptGraph`, dicts, DataFrames) and
returns an HTML string or a plotly figure, so the pages stay thin and the figures are
testable without a browser. This module does not import Streamlit and does not compute
metrics; it only draws what it is given. It does not check that DataFrames have sensible
values beyond the columns each function names.

Node names, questions and values are user text. They reach the browser only as JSON
inside a script (Jinja's ``tojson`` escapes ``<``, ``>``, ``&`` and quotes) and are shown
by vis-network 9.1.2 as text: its tooltip sets ``innerText`` for string titles and labels
are drawn on a canvas. `graph_html` never enables pyvis's link-tooltip mode, which would
insert the title with ``innerHTML``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go

from gcp.graph import ConceptGraph

__all__ = [
    "NODE_METRICS",
    "attribution_figure",
    "attribution_sentence",
    "breakdown_summary",
    "graph_html",
    "wrap_name",
    "learning_curve_figure",
    "metric_color",
    "node_contributions",
    "node_accuracy_figure",
    "confusion_figure",
    "round_uncertainty_heatmap",
    "uncertainty_heatmap",
]

# Metric key -> (label shown to people, True if higher is better). All lie in [0, 1].
NODE_METRICS: dict[str, tuple[str, bool]] = {
    "accuracy": ("node accuracy", True),
    "uncertainty": ("mean uncertainty", False),
    "error_share": ("error share", False),
}
NO_DATA_COLOR = "#c8c8c8"
_GOOD, _MIDDLE, _BAD = (44, 162, 95), (254, 224, 139), (215, 48, 39)
_REMOTE_TAG = re.compile(r"<(link|script)\b[^>]*\bhttps?://[^>]*>(\s*</script>)?", re.I | re.S)
_EMPTY_HEADING = re.compile(r"<center>\s*<h1>\s*</h1>\s*</center>", re.I)


def metric_color(value: float | None, *, higher_is_better: bool = True) -> str:
    """Map a metric in [0, 1] to a hex colour from red (bad) through yellow to green (good).

    ``None`` or NaN gives grey. Values outside [0, 1] are clipped.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NO_DATA_COLOR
    goodness = min(max(float(value), 0.0), 1.0)
    if not higher_is_better:
        goodness = 1.0 - goodness
    if goodness < 0.5:
        start, end, t = _BAD, _MIDDLE, goodness / 0.5
    else:
        start, end, t = _MIDDLE, _GOOD, (goodness - 0.5) / 0.5
    rgb = [round(a + (b - a) * t) for a, b in zip(start, end)]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _depths(graph: ConceptGraph) -> dict[str, int]:
    depths: dict[str, int] = {}
    for name in graph.topological_order:
        depths[name] = max((depths[p] + 1 for p in graph.parents(name)), default=0)
    return depths


def wrap_name(name: str, width: int = 12) -> str:
    """Break a node name after underscores into lines of about `width` characters.

    The label keeps every character of the name, e.g. ``"positive_\nevidence"``, so that
    long names make narrow boxes and the drawing is not scaled down as much.
    """
    lines: list[str] = []
    for part in name.split("_"):
        piece = part + "_"
        if lines and len(lines[-1]) + len(piece) <= width:
            lines[-1] += piece
        else:
            lines.append(piece)
    lines[-1] = lines[-1][:-1]  # the last part has no underscore after it
    return "\n".join(line for line in lines if line)


def _node_title(
    graph: ConceptGraph, name: str, metrics: Mapping[str, Mapping[str, float]] | None
) -> str:
    node = graph.node(name)
    lines = [name, f"Question: {node.question}", f"Values: {', '.join(node.values)}"]
    if node.description:
        lines.append(f"Description: {node.description}")
    parents = graph.parents(name)
    lines.append(f"Parents: {', '.join(parents) if parents else '(text embedding)'}")
    for key, (label, _) in NODE_METRICS.items():
        value = (metrics or {}).get(key, {}).get(name)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            lines.append(f"{label}: {value:.2f}")
    return "\n".join(lines)


def _network_options(height: int) -> dict:
    return {
        "layout": {
            "hierarchical": {
                "enabled": True,
                "direction": "UD",
                "sortMethod": "directed",
                "levelSeparation": 110,
                "nodeSpacing": 135,
                "shakeTowards": "roots",
            }
        },
        "physics": {"enabled": False},
        "interaction": {"hover": True, "tooltipDelay": 150, "navigationButtons": False},
        "nodes": {"shape": "box", "margin": 8, "font": {"size": 17, "face": "sans-serif"}},
        "edges": {
            "arrows": {"to": {"enabled": True, "scaleFactor": 0.6}},
            "color": {"color": "#8a8a8a"},
            "smooth": {"type": "cubicBezier", "forceDirection": "vertical", "roundness": 0.4},
        },
    }


def graph_html(
    graph: ConceptGraph,
    *,
    metrics: Mapping[str, Mapping[str, float]] | None = None,
    color_by: str = "accuracy",
    height: int = 520,
) -> str:
    """Draw `graph` as a self-contained vis-network page in a top-down layered layout.

    Parameters
    ----------
    graph : ConceptGraph
    metrics : mapping, optional
        Metric key (one of `NODE_METRICS`) -> {node name: value in [0, 1]}. Nodes without a
        value of `color_by` are grey, and so is every node when `metrics` is None.
    color_by : str, default="accuracy"
        Key of `NODE_METRICS` that sets node colours.
    height : int, default=520
        Height of the drawing in pixels.

    Returns
    -------
    str
        HTML with vis-network inlined and no outside request, for an iframe ``srcdoc``.
        Each node sits on the level of its depth (longest path from a root).

    Raises
    ------
    ValueError
        If `color_by` is not a key of `NODE_METRICS`.
    """
    from pyvis.network import Network

    if color_by not in NODE_METRICS:
        raise ValueError(f"unknown metric {color_by!r}: use one of {list(NODE_METRICS)}")
    higher_is_better = NODE_METRICS[color_by][1]
    colored = (metrics or {}).get(color_by, {})
    net = Network(height=f"{height}px", width="100%", directed=True, cdn_resources="in_line")
    for name, depth in _depths(graph).items():
        value = colored.get(name)
        label = wrap_name(name) if value is None else f"{wrap_name(name)}\n{value:.2f}"
        net.add_node(
            name,
            label=label,
            title=_node_title(graph, name, metrics),
            level=depth,
            color=metric_color(value, higher_is_better=higher_is_better),
            shape="box",
            borderWidth=3 if name == graph.output else 1,
        )
    for parent, child in graph.edges:
        net.add_edge(parent, child)
    net.set_options(json.dumps(_network_options(height)))
    return _render(net)


def _render(net: "object") -> str:
    # Same call as pyvis 0.3.2's Network.generate_html, except that tooltip_link is always
    # False: generate_html switches to an innerHTML popup when a title contains "href".
    nodes, edges, heading, height, width, options = net.get_network_data()
    template = net.templateEnv.get_template(net.path)
    html = template.render(
        height=height, width=width, nodes=nodes, edges=edges, heading=heading,
        options=options, physics_enabled=False, use_DOT=False, dot_lang=None,
        widget=False, bgcolor=net.bgcolor, conf=False, tooltip_link=False,
        neighborhood_highlight=False, select_menu=False, filter_menu=False,
        notebook=False, cdn_resources="in_line",
    )
    html = _REMOTE_TAG.sub("", html)  # the Bootstrap CSS/JS tags from cdn.jsdelivr.net
    return _EMPTY_HEADING.sub("", html)


# ---------------------------------------------------------------------- plotly figures


def uncertainty_heatmap(
    uncertainty: pd.DataFrame, *, sort_by_total: bool = True, max_rows: int = 200
) -> go.Figure:
    """Heatmap of texts (rows) x nodes (columns) uncertainty.

    Parameters
    ----------
    uncertainty : DataFrame
        One row per text (the index is the text id), one column per node, values in [0, 1].
    sort_by_total : bool, default=True
        Put the texts with the highest total uncertainty on top.
    max_rows : int, default=200
        Show at most this many texts, after sorting.
    """
    frame = uncertainty
    if sort_by_total and not frame.empty:
        frame = frame.loc[frame.sum(axis=1).sort_values(ascending=False).index]
    frame = frame.head(max_rows)
    figure = go.Figure(
        go.Heatmap(
            z=frame.to_numpy(dtype=float),
            x=[str(c) for c in frame.columns],
            y=[str(i) for i in frame.index],
            colorscale="Reds",
            zmin=0.0,
            zmax=1.0,
            colorbar={"title": {"text": "uncertainty"}},
            hovertemplate="text %{y}<br>node %{x}<br>uncertainty %{z:.2f}<extra></extra>",
        )
    )
    figure.update_layout(
        height=max(320, 16 * len(frame) + 160),
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis={"autorange": "reversed", "title": {"text": "text"}},
        xaxis={"side": "top", "tickangle": -35},
    )
    return figure


def round_uncertainty_heatmap(by_round: pd.DataFrame) -> go.Figure:
    """Heatmap of acquisition rounds (rows, the index) x nodes (columns) mean uncertainty."""
    figure = go.Figure(
        go.Heatmap(
            z=by_round.to_numpy(dtype=float),
            x=[str(c) for c in by_round.columns],
            y=[f"round {r}" for r in by_round.index],
            colorscale="Reds",
            zmin=0.0,
            zmax=1.0,
            colorbar={"title": {"text": "mean uncertainty"}},
            hovertemplate="%{y}<br>node %{x}<br>mean uncertainty %{z:.2f}<extra></extra>",
        )
    )
    figure.update_layout(
        height=max(260, 28 * len(by_round) + 180),
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis={"autorange": "reversed"},
        xaxis={"side": "top", "tickangle": -35},
    )
    return figure


def learning_curve_figure(curve: pd.DataFrame, *, x: str = "labels") -> go.Figure:
    """Line chart of accuracy and teacher agreement against labels or money, per strategy.

    Parameters
    ----------
    curve : DataFrame
        Columns ``strategy``, ``labels``, ``cost``, ``accuracy``, ``teacher_agreement``;
        one row per round and strategy.
    x : {"labels", "cost"}, default="labels"
        Horizontal axis: number of labelled texts, or money spent (USD).
    """
    if x not in ("labels", "cost"):
        raise ValueError(f"unknown x axis {x!r}: use 'labels' or 'cost'")
    figure = go.Figure()
    metrics = [("accuracy", "accuracy (gold)", "solid"),
               ("teacher_agreement", "agreement with teacher", "dash")]
    for strategy, rows in curve.groupby("strategy", sort=True):
        rows = rows.sort_values(x)
        for column, label, dash in metrics:
            if column not in rows or rows[column].isna().all():
                continue
            figure.add_trace(
                go.Scatter(
                    x=rows[x], y=rows[column], mode="lines+markers",
                    name=f"{strategy}: {label}", line={"dash": dash},
                )
            )
    figure.update_layout(
        height=380,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis={"title": {"text": "labelled texts" if x == "labels" else "money spent (USD)"}},
        yaxis={"title": {"text": "score"}, "range": [0, 1]},
        legend={"orientation": "h", "y": -0.2},
    )
    return figure


def node_accuracy_figure(accuracy: Mapping[str, float]) -> go.Figure:
    """Horizontal bar chart of per-node accuracy, worst node on top."""
    items = sorted(accuracy.items(), key=lambda item: item[1])
    figure = go.Figure(
        go.Bar(
            x=[value for _, value in items],
            y=[name for name, _ in items],
            orientation="h",
            marker={"color": [metric_color(value) for _, value in items]},
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    figure.update_layout(
        height=max(260, 26 * len(items) + 80),
        margin={"l": 10, "r": 10, "t": 20, "b": 10},
        xaxis={"range": [0, 1], "title": {"text": "accuracy"}},
    )
    return figure


def confusion_figure(confusion: pd.DataFrame, *, title: str = "") -> go.Figure:
    """Annotated heatmap of a confusion matrix (rows: reference value, columns: predicted)."""
    z = confusion.to_numpy(dtype=float)
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=[f"pred {c}" for c in confusion.columns],
            y=[f"true {i}" for i in confusion.index],
            colorscale="Blues",
            text=[[f"{int(v)}" for v in row] for row in z],
            texttemplate="%{text}",
            showscale=False,
        )
    )
    figure.update_layout(
        title={"text": title}, height=300, margin={"l": 10, "r": 10, "t": 40, "b": 10},
        yaxis={"autorange": "reversed"},
    )
    return figure


def attribution_sentence(node: str, share: float) -> str:
    """Phrase one error-attribution entry, e.g. "correcting `ironic` fixes 31 % of errors"."""
    return f"correcting `{node}` fixes {100 * share:.0f} % of errors"


def attribution_figure(shares: Sequence[tuple[str, float]]) -> go.Figure:
    """Bar chart of the share of output errors that correcting each node would fix."""
    items = sorted(shares, key=lambda item: item[1])
    figure = go.Figure(
        go.Bar(
            x=[100 * share for _, share in items],
            y=[name for name, _ in items],
            orientation="h",
            marker={"color": "#d7301f"},
            hovertemplate="correcting %{y} fixes %{x:.0f} % of errors<extra></extra>",
        )
    )
    figure.update_layout(
        height=max(240, 26 * len(items) + 80),
        margin={"l": 10, "r": 10, "t": 20, "b": 10},
        xaxis={"title": {"text": "% of output errors fixed"}},
    )
    return figure


def node_contributions(breakdown: Mapping[str, object] | None, names: Sequence[str]) -> list[float]:
    """Per-node parts of an acquisition score, in the order of `names`.

    For the ``gcp`` strategy a node's part is its weighted uncertainty plus its weighted
    disagreement (``breakdown["nodes"]`` and ``breakdown["disagreement"]``), times the
    diversity factor. Other strategies score only the output node and give all zeros.
    """
    breakdown = breakdown or {}
    uncertainty = breakdown.get("nodes") or {}
    disagreement = breakdown.get("disagreement") or {}
    factor = float(breakdown.get("diversity_factor", 1.0) or 0.0)
    if not isinstance(uncertainty, Mapping) or not isinstance(disagreement, Mapping):
        return [0.0] * len(names)
    return [
        factor * (float(uncertainty.get(name, 0.0)) + float(disagreement.get(name, 0.0)))
        for name in names
    ]


def breakdown_summary(breakdown: Mapping[str, object] | None) -> str:
    """Phrase the scalar parts of a score breakdown, e.g. ``"entropy 0.69"``.

    A diversity factor of 1 leaves the score unchanged, which is every candidate's value
    when diversity is off (the default), so it is left out.
    """
    parts = [
        f"{key.replace('_', ' ')} {float(value):.3g}"
        for key, value in (breakdown or {}).items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
        and not (key == "diversity_factor" and value == 1.0)
    ]
    return ", ".join(parts)
