"""Diagnostics page: uncertainty heatmaps, per-node accuracy and confusion, error
attribution, and the intervention playground."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from gcp import visual
from gcp.exceptions import GCPError
from pages.shared import common
from pages.shared import engine

PREDICTED = "(predicted)"


def render() -> None:
    st.title("Diagnostics")
    common.job_status()
    studio = common.open_or_stop()
    if studio.student is None:
        st.info("No trained student yet. Label texts (Acquisition) and train the student "
                "(Training); its diagnostics appear here.")
        return
    with st.spinner("Computing diagnostics..."):
        report = common.diagnosis(studio)
    if report is None:
        st.info("Retrain the student on the Training page after the graph edit.")
        return
    st.caption(f"Measured on {report['n_texts']} evaluation texts against the "
               f"{report['target']} labels: {report['n_errors']} wrong outputs.")
    tabs = st.tabs(["Uncertainty", "Accuracy and confusion", "Error attribution",
                    "Intervention playground"])
    with tabs[0]:
        _uncertainty(studio, report)
    with tabs[1]:
        _accuracy(report)
    with tabs[2]:
        _attribution(report)
    with tabs[3]:
        _playground(studio)


def _uncertainty(studio, report: dict) -> None:
    st.subheader("Texts x nodes uncertainty")
    rounds = studio.project.rounds()
    finished = rounds["status"].isin(["annotated", "trained", "done"])
    numbers = [int(n) for n in rounds.loc[finished, "number"]]
    cols = st.columns(3)
    source = cols[0].selectbox("Texts", ["evaluation texts"] + [f"round {n}" for n in numbers],
                               key="diagnostics_texts")
    sort = cols[1].checkbox("Sort by total uncertainty", value=True, key="diagnostics_sort")
    errors_only = cols[2].checkbox("Only wrong output predictions", key="diagnostics_errors")

    if source == "evaluation texts":
        frame = report["uncertainty"]
        wrong = frame.index.isin(set(report["errors"]["id"]))
        reference = f"the {report['target']} labels"
    else:
        frame, wrong_series = engine.round_text_uncertainty(studio, int(source.split()[1]))
        wrong = wrong_series.reindex(frame.index).fillna(False).to_numpy(dtype=bool)
        reference = "the teacher's labels"
    shown = frame[wrong] if errors_only else frame
    if shown.empty:
        st.info("No text matches these filters.")
    else:
        st.caption(f"{len(shown)} texts (at most 200 drawn); 0 = certain, 1 = maximally "
                   f"uncertain (normalised entropy). Wrong outputs are measured against {reference}.")
        st.plotly_chart(visual.uncertainty_heatmap(shown, sort_by_total=sort), width="stretch",
                        key="diagnostics_heatmap")

    st.subheader("Rounds x nodes mean uncertainty")
    by_round = studio.round_uncertainty()
    if by_round.empty:
        st.caption("Appears once rounds have been annotated.")
    else:
        st.plotly_chart(visual.round_uncertainty_heatmap(by_round), width="stretch",
                        key="diagnostics_round_heatmap")


def _accuracy(report: dict) -> None:
    accuracy: pd.DataFrame = report["node_accuracy"]
    st.subheader("Per-node accuracy on the test texts (against the teacher's values)")
    st.plotly_chart(visual.node_accuracy_figure(
        accuracy.set_index("node")["accuracy"].dropna().to_dict()),
                    width="stretch", key="diagnostics_accuracy")
    confusion: dict = report["confusion"]
    if confusion:
        node = st.selectbox("Confusion matrix of node", list(confusion), key="diagnostics_confusion_node")
        st.plotly_chart(visual.confusion_figure(confusion[node], title=node), width="stretch",
                        key="diagnostics_confusion")


def _attribution(report: dict) -> None:
    attribution: pd.DataFrame = report["attribution"]
    st.subheader("Which concept's errors cause the output errors")
    if attribution.empty or attribution["share_fixed"].fillna(0).sum() == 0:
        st.info("No output error to attribute.")
        return
    shares = attribution.set_index("node")["share_fixed"].sort_values(ascending=False)
    for node, share in shares.head(5).items():
        st.markdown("- " + visual.attribution_sentence(node, share))
    st.plotly_chart(visual.attribution_figure(list(shares.items())), width="stretch",
                    key="diagnostics_attribution")
    st.caption("Share of the wrong output predictions on the test texts that become right "
               "when this node alone is set to the teacher's value.")


def _copy_example() -> None:
    picked = st.session_state["diagnostics_example"]
    st.session_state["diagnostics_text"] = "" if picked == "(type your own)" else picked


def _playground(studio) -> None:
    graph = studio.graph
    st.subheader("Intervention playground")
    st.caption("Type a text or pick one, then override any concept and see how the output changes.")
    examples = studio.project.texts(split="test")["text"].head(50).tolist()
    st.selectbox("Pick a test text", ["(type your own)"] + examples, key="diagnostics_example",
                 on_change=_copy_example)
    text = st.text_area("Text", key="diagnostics_text")
    if not text.strip():
        st.info("Enter a text to see the student's predictions.")
        return

    interventions = _override_widgets(graph)
    try:
        before = studio.node_predictions(text)
        after = studio.node_predictions(text, interventions or None)
    except GCPError as err:
        st.error(str(err))
        return
    _show_predictions(graph, before, after)


def _override_widgets(graph) -> dict[str, str]:
    """Show one selectbox per non-output node; return the chosen ``do()`` values."""
    interventions = {}
    cols = st.columns(4)
    for i, name in enumerate(n for n in graph.topological_order if n != graph.output):
        choice = cols[i % 4].selectbox(name, [PREDICTED] + list(graph.node(name).values),
                                       key=f"diagnostics_do_{name}")
        if choice != PREDICTED:
            interventions[name] = choice
    return interventions


def _show_predictions(graph, before: pd.DataFrame, after: pd.DataFrame) -> None:
    output_before = before.set_index("node").loc[graph.output]
    output_after = after.set_index("node").loc[graph.output]
    changed = output_after["value"] != output_before["value"]
    left, right = st.columns(2)
    left.metric("Output without overrides", str(output_before["value"]),
                help=f"probability {output_before['probability']:.2f}")
    right.metric("Output with overrides", str(output_after["value"]),
                 delta="changed" if changed else "unchanged", delta_arrow="off",
                 delta_color="inverse" if changed else "off",
                 help=f"probability {output_after['probability']:.2f}")

    after = after.drop(columns=["distribution"], errors="ignore")
    table = after.rename(columns={"value": "with overrides", "probability": "probability (with)"})
    table.insert(1, "predicted", before["value"].to_numpy())
    table.insert(2, "probability (predicted)", before["probability"].to_numpy())
    bar = st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="%.2f")
    st.dataframe(table, hide_index=True, width="stretch", key="diagnostics_playground_table",
                 column_config={"probability (predicted)": bar, "probability (with)": bar})


render()
