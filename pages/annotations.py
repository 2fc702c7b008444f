"""Annotations page: browse and filter annotations, correct values, undo from the audit log."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from gcp.exceptions import GCPError
from pages.shared import common
from pages.shared import engine

MAX_ROWS = 300  # rows shown in the editor; filter to reach the others
META_COLUMNS = ["text_id", "text", "split", "gold_label", "round", "sources", "disagreements"]


def render() -> None:
    st.title("Annotations")
    common.job_status()
    studio = common.open_or_stop()
    annotations = studio.project.annotations()
    if annotations.empty:
        st.info("No annotations yet. Propose a round on the Acquisition page and send the "
                "approved texts to the teacher; their answers appear here.")
    else:
        _browse(studio, annotations)
    _audit_log(studio)


def _wide(studio, annotations: pd.DataFrame) -> pd.DataFrame:
    """Build one row per text with its metadata and the current value of every node."""
    graph = studio.graph
    values = annotations.pivot_table(index="text_id", columns="node", values="value",
                                     aggfunc="last")
    values = values.reindex(columns=[n for n in graph.names])
    meta = annotations.groupby("text_id").agg(
        round=("round", "max"),
        sources=("source", lambda s: ", ".join(sorted(set(s)))),
    )
    texts = studio.project.texts(ids=list(values.index)).set_index("id")
    wide = pd.concat([texts[["text", "split", "gold_label"]], meta], axis=1).join(values)
    predictions = engine.student_predictions(studio, list(wide.index))
    if predictions is None:
        wide["disagreements"] = pd.NA
    else:
        shared = [n for n in graph.names if n in predictions.columns]
        given = wide[shared].notna()
        differs = (wide[shared] != predictions.reindex(wide.index)[shared]) & given
        wide["disagreements"] = differs.sum(axis=1).astype(int)
    wide.index.name = "text_id"
    return wide.reset_index()[META_COLUMNS + graph.names]


def _filters(studio, wide: pd.DataFrame, annotations: pd.DataFrame) -> pd.DataFrame:
    graph = studio.graph
    cols = st.columns(5)
    rounds = sorted(int(r) for r in annotations["round"].dropna().unique())
    chosen_rounds = cols[0].multiselect("Round", rounds, key="annotations_rounds")
    node = cols[1].selectbox("Node", ["(any)"] + graph.names, key="annotations_node")
    value = "(any)"
    if node != "(any)":
        value = cols[2].selectbox("Value", ["(any)"] + list(graph.node(node).values),
                                  key="annotations_value")
    sources = sorted(annotations["source"].unique())
    source = cols[3].selectbox("Source", ["(any)"] + sources, key="annotations_source")
    no_student = wide["disagreements"].isna().all()
    disagree = cols[4].checkbox("Only student-teacher disagreements", key="annotations_disagree",
                                disabled=no_student,
                                help="Needs a trained student" if no_student else None)
    mask = pd.Series(True, index=wide.index)
    if chosen_rounds:
        ids = set(annotations.loc[annotations["round"].isin(chosen_rounds), "text_id"])
        mask &= wide["text_id"].isin(ids)
    if node != "(any)":
        mask &= wide[node].notna() if value == "(any)" else wide[node] == value
    if source != "(any)":
        mask &= wide["sources"].str.contains(source, regex=False)
    if disagree and not no_student:
        mask &= wide["disagreements"].fillna(0) > 0
    return wide[mask]


def _browse(studio, annotations: pd.DataFrame) -> None:
    graph = studio.graph
    wide = _wide(studio, annotations)
    shown = _filters(studio, wide, annotations)
    st.caption(f"{len(shown):,} of {len(wide):,} annotated texts match"
               + (f"; showing the first {MAX_ROWS}" if len(shown) > MAX_ROWS else "")
               + ". Change a node value to correct it; corrections are stored as human "
               "values, logged and undoable.")
    shown = shown.head(MAX_ROWS).reset_index(drop=True)
    locked = common.job_running()
    config = {
        name: st.column_config.SelectboxColumn(name, options=list(graph.node(name).values))
        for name in graph.names
    }
    config["text"] = st.column_config.TextColumn("text", width="large")
    edited = st.data_editor(
        shown, key="annotations_editor", hide_index=True, width="stretch", column_config=config,
        disabled=True if locked else META_COLUMNS,
    )
    user = st.text_input("Your name (recorded with corrections)", value="user",
                         key="annotations_user")
    if st.button("Save corrections", key="annotations_save", disabled=locked):
        _save_corrections(studio, shown, edited, user.strip() or "user")


def _save_corrections(studio, before: pd.DataFrame, after: pd.DataFrame, user: str) -> None:
    changes = []
    for name in studio.graph.names:
        for i in before.index:
            old, new = before.at[i, name], after.at[i, name]
            if pd.isna(new) or (not pd.isna(old) and old == new):
                continue
            changes.append((before.at[i, "text_id"], name, str(new)))
    if not changes:
        st.info("No value changed.")
        return
    try:
        for text_id, node, value in changes:
            studio.correct(text_id, node, value, user=user)
    except GCPError as err:
        st.error(str(err))
        return
    st.session_state.pop("annotations_editor", None)
    st.toast(f"Saved {len(changes)} correction(s).")
    st.rerun()


def _audit_log(studio) -> None:
    st.subheader("Audit log")
    log = studio.project.audit_log()
    if log.empty:
        st.caption("No human edits yet.")
        return
    locked = common.job_running()
    for _, entry in log.iloc[::-1].head(50).iterrows():
        left, right = st.columns([6, 1])
        undone = pd.notna(entry["undone_by"])
        left.text(_describe(entry) + (f"  (undone by #{int(entry['undone_by'])})" if undone else ""))
        if right.button("Undo", key=f"annotations_undo_{int(entry['id'])}",
                        disabled=locked or undone):
            try:
                studio.undo(int(entry["id"]))
            except GCPError as err:
                st.error(str(err))
            else:
                st.rerun()


def _describe(entry: pd.Series) -> str:
    """Describe one audit entry in one line, e.g. "#3 <time> user: correct_annotation ..."."""
    target = entry["target"] or {}
    what = ", ".join(f"{k}={v}" for k, v in target.items()) if isinstance(target, dict) else str(target)
    before, after = entry["before"], entry["after"]
    return (f"#{int(entry['id'])} {entry['created_at']} {entry['edited_by'] or ''}: "
            f"{entry['action']} {what} {before} -> {after}")


render()
