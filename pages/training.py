"""Training page: train or retrain the student, the history of runs, the learning curve."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from gcp import visual
from gcp.training import TrainConfig
from pages.shared import common
from pages.shared import engine


def render() -> None:
    st.title("Training")
    common.job_status()
    studio = common.open_or_stop()
    status = studio.status()
    if not status["labels"]:
        st.info("No labelled texts yet. Propose a round on the Acquisition page and send it "
                "to the teacher, then come back to train the student.")
    else:
        _train_controls(studio, status)
    runs = studio.project.training_runs()
    _history(runs)
    _learning_curve(studio)


def _train_controls(studio, status: dict) -> None:
    st.caption(f"{status['labels']:,} labelled texts. Current accuracy on the test texts: "
               f"{common.format_share(status.get('accuracy'))}.")
    with st.expander("Training settings"):
        epochs = st.number_input(
            "Maximum epochs", min_value=1, max_value=1000, value=TrainConfig().epochs,
            key="training_epochs",
            help="Passes over the labelled texts; training stops earlier when the held-out "
                 "loss stops improving.")
    left, right = st.columns(2)
    with left.container(border=True):
        st.markdown("**Train every module** of the student on all labelled texts.")
        common.run_job_button(
            "Train the student", key="training_full", kind="train",
            job_label="Training the student",
            work=lambda studio, on_progress: engine.train_and_close(
                studio, targeted=False, top_k=2, epochs=epochs, on_progress=on_progress),
            describe=_describe,
        )
    with right.container(border=True):
        st.markdown("**Targeted retraining**: retrain only the modules whose errors cost the "
                    "most downstream (largest counterfactual impact), keeping the others.")
        top_k = st.number_input("Modules to retrain (top k)", min_value=1,
                                max_value=len(studio.graph), value=2, key="training_top_k")
        has_student = bool(status.get("training_runs"))
        common.run_job_button(
            "Retrain the top modules", key="training_targeted", kind="train",
            job_label=f"Retraining the top {top_k} modules",
            work=lambda studio, on_progress: engine.train_and_close(
                studio, targeted=True, top_k=int(top_k), epochs=epochs, on_progress=on_progress),
            describe=_describe, disabled=not has_student,
            help=None if has_student else "Train the student once first",
        )


def _describe(result: dict) -> str:
    metrics = result.get("metrics") or {}
    chosen = result.get("trained_nodes") if result.get("kind") == "targeted" else None
    parts = []
    if metrics.get("accuracy") is not None:
        parts.append(f"accuracy {common.format_share(metrics['accuracy'])}")
    if chosen:
        parts.append("retrained " + ", ".join(chosen))
    if result.get("closed_round"):
        parts.append(f"round {result['closed_round']} closed")
    return "; ".join(parts) or "done"


def _history(runs: pd.DataFrame) -> None:
    st.subheader("Training runs")
    if runs.empty:
        st.caption("No training run yet.")
        return
    table = pd.DataFrame({
        "run": runs["id"],
        "round": runs["round"],
        "kind": runs["kind"],
        "modules trained": [", ".join(nodes or []) for nodes in runs["trained_nodes"]],
        "accuracy": [(m or {}).get("accuracy") for m in runs["metrics"]],
        "teacher agreement": [(m or {}).get("teacher_agreement") for m in runs["metrics"]],
        "seconds": runs["seconds"].round(1),
        "when": runs["created_at"],
    })
    st.dataframe(table.iloc[::-1], hide_index=True, width="stretch",
                 column_config={"accuracy": st.column_config.NumberColumn(format="%.3f"),
                                "teacher agreement": st.column_config.NumberColumn(format="%.3f")})
    scored = runs[runs["scores"].apply(lambda s: bool(s))]
    for _, run in scored.iloc[::-1].head(5).iterrows():
        if run["kind"] == "targeted":
            title = f"Why run {int(run['id'])} retrained {', '.join(run['trained_nodes'])}"
        else:
            title = f"Counterfactual impact of each node after run {int(run['id'])}"
        with st.expander(title):
            scores = sorted(run["scores"].items(), key=lambda item: -item[1])
            st.caption("Counterfactual impact of each node: how much the output loss drops "
                       "when the node is set to the teacher's value. The largest were retrained.")
            st.dataframe(
                pd.DataFrame({"node": [n for n, _ in scores], "impact": [v for _, v in scores],
                              "retrained": [n in run["trained_nodes"] for n, _ in scores]}),
                hide_index=True, width="stretch",
            )


def _learning_curve(studio) -> None:
    st.subheader("Learning curve")
    curve = studio.learning_curve()
    if curve.empty:
        st.caption("The curve appears after the first trained round.")
        return
    axis = st.radio("Horizontal axis", ["labels", "cost"], horizontal=True, key="training_curve_x",
                    format_func={"labels": "labelled texts", "cost": "money spent"}.get)
    st.plotly_chart(visual.learning_curve_figure(curve, x=axis), width="stretch")
    if "random" not in set(curve["strategy"]):
        st.caption("No random-strategy rounds yet, so there is no baseline curve to compare with.")


render()
