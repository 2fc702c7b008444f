"""Concept graph page: draw the DAG, edit it, ask the teacher for one, browse versions."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from gcp import visual
from gcp.exceptions import GCPError, GraphValidationError
from gcp.graph import ConceptGraph, diff
from pages.shared import common
from pages.shared import engine
from pages.shared import graph_edit as edits

GRAPH_HEIGHT = 540
ADD_FORM_KEYS = tuple(f"concept_graph_add_{field}" for field in
                      ("name", "question", "values", "description", "parents", "children"))


def render() -> None:
    st.title("Concept graph")
    common.job_status()
    studio = common.open_or_stop()
    graph = studio.graph
    st.caption(f"Task: {graph.task}")
    st.caption(
        f"{len(graph)} nodes, {len(graph.edges)} edges, output node `{graph.output}` "
        f"with labels {', '.join(graph.labels)}; version hash {graph.content_hash}"
    )
    _show_last_plan()
    _draw(studio, graph)
    _node_details(graph)

    locked = common.job_running()
    if locked:
        st.info("Graph edits are locked while a job runs on this project.")
    tabs = st.tabs(["Edit nodes and edges", "Add node", "Edit or delete a node",
                    "Add or remove an edge", "Ask the teacher", "Version history"])
    with tabs[0]:
        _table_editor(studio, graph, locked)
    with tabs[1]:
        _add_node_form(studio, graph, locked)
    with tabs[2]:
        _edit_node_form(studio, graph, locked)
    with tabs[3]:
        _edge_forms(studio, graph, locked)
    with tabs[4]:
        _teacher_proposal(studio, graph, locked)
    with tabs[5]:
        _history(studio, graph, locked)


def _draw(studio, graph: ConceptGraph) -> None:
    choices = list(visual.NODE_METRICS)
    color_by = st.selectbox(
        "Colour nodes by", choices, key="concept_graph_metric",
        format_func=lambda key: visual.NODE_METRICS[key][0],
    )
    report = common.diagnosis(studio)
    metrics = studio.node_metrics(report) if report else {}
    if not metrics.get(color_by):
        st.caption("Nodes are grey: no trained student for this graph yet. Train one on the "
                   "Training page to colour nodes by accuracy, uncertainty or error share.")
    else:
        st.caption("Green is good, red is bad. Hover a node for its question, values and metrics.")
    st.iframe(visual.graph_html(graph, metrics=metrics, color_by=color_by,
                                height=GRAPH_HEIGHT - 20), height=GRAPH_HEIGHT)


def _node_details(graph: ConceptGraph) -> None:
    with st.expander("Node details"):
        name = st.selectbox("Node", graph.names, key="concept_graph_detail_node")
        node = graph.node(name)
        st.markdown("**Question**")
        st.text(node.question)
        st.markdown("**Values**")
        st.text(", ".join(node.values))
        if node.description:
            st.markdown("**Description**")
            st.text(node.description)
        parents = graph.parents(name)
        st.markdown("**Parents**")
        st.text(", ".join(parents) if parents else "(none: reads the text embedding)")


def _apply(studio, new_graph: ConceptGraph, message: str, *, save=None,
           clear: tuple[str, ...] = ()) -> None:
    """Save `new_graph` (or call `save`, which returns the version) and keep its plan.

    The plan (which annotations to re-ask, which modules to retrain) is computed against
    the current graph before saving and shown on the next run. The widget keys in `clear`
    are reset after a successful save, so a form starts empty again.
    """
    plan = studio.plan_graph_edit(new_graph)
    if plan["diff"].is_empty:
        st.info("Nothing changed.")
        return
    try:
        version = save() if save is not None else studio.save_graph(new_graph, message)
    except GCPError as err:
        st.error(str(err))
        return
    st.session_state["concept_graph_last_plan"] = {
        "version": version, "message": message, "summary": list(plan["summary"]),
        "reannotate": list(plan["reannotate"]), "retrain": list(plan["retrain"]),
    }
    for key in clear:
        st.session_state.pop(key, None)
    st.rerun()


def _show_last_plan() -> None:
    plan = st.session_state.get("concept_graph_last_plan")
    if not plan:
        return
    with st.container(border=True):
        st.success(f"Saved graph version {plan['version']}: {plan['message']}")
        st.markdown("**Changes:** " + "; ".join(plan["summary"]))
        if plan["reannotate"]:
            st.warning("Annotations to re-ask the teacher: nodes "
                       + ", ".join(f"`{n}`" for n in plan["reannotate"])
                       + ". Their values are missing for texts already annotated.")
        else:
            st.markdown("No annotation needs to be asked again.")
        if plan["retrain"]:
            st.markdown("**Modules to retrain:** " + ", ".join(f"`{n}`" for n in plan["retrain"]))
        else:
            st.markdown("No module needs retraining.")
        if st.button("Hide", key="concept_graph_hide_plan"):
            del st.session_state["concept_graph_last_plan"]
            st.rerun()


def _table_editor(studio, graph: ConceptGraph, locked: bool) -> None:
    st.caption("Edit cells, add rows or delete rows, then apply. Values are comma-separated. "
               "Changing a name renames the node and its edges.")
    nodes = st.data_editor(
        edits.nodes_table(graph), key=f"concept_graph_nodes_{graph.content_hash}",
        num_rows="dynamic", width="stretch", hide_index=True, disabled=locked,
        column_order=edits.NODE_COLUMNS,
        column_config={
            "name": st.column_config.TextColumn("name", required=True),
            "question": st.column_config.TextColumn("question", width="large", required=True),
            "values": st.column_config.TextColumn("values", help="Comma-separated, e.g. no, yes"),
        },
    )
    edges = st.data_editor(
        edits.edges_table(graph), key=f"concept_graph_edges_{graph.content_hash}",
        num_rows="dynamic", width="stretch", hide_index=True, disabled=locked,
        column_config={
            "parent": st.column_config.SelectboxColumn("parent", options=graph.names),
            "child": st.column_config.SelectboxColumn("child", options=graph.names),
        },
    )
    if st.button("Apply table edits", key="concept_graph_apply_tables", disabled=locked):
        try:
            new_graph = edits.graph_from_tables(graph, nodes, edges)
        except GraphValidationError as err:
            st.error(str(err))
            return
        _apply(studio, new_graph, "edited the node and edge tables")


def _add_node_form(studio, graph: ConceptGraph, locked: bool) -> None:
    with st.form("concept_graph_add_form"):
        name = st.text_input("New node name", key="concept_graph_add_name",
                             help="Letters, digits and underscores, starting with a letter.")
        question = st.text_area("Question for the teacher", key="concept_graph_add_question")
        values = st.text_input("Values (comma-separated)", value="no, yes",
                               key="concept_graph_add_values")
        description = st.text_input("Description (optional)", key="concept_graph_add_description")
        parents = st.multiselect("Parents", graph.names, key="concept_graph_add_parents")
        children = st.multiselect("Children (at least one path must reach the output node)",
                                  graph.names, key="concept_graph_add_children")
        submitted = st.form_submit_button("Add node", disabled=locked, key="concept_graph_add")
    if submitted:
        try:
            new_graph = edits.add_node(graph, name=name, question=question, values=values,
                                       description=description, parents=parents,
                                       children=children)
        except GraphValidationError as err:
            st.error(str(err))
            return
        _apply(studio, new_graph, f"added node {name.strip()}", clear=ADD_FORM_KEYS)


def _edit_node_form(studio, graph: ConceptGraph, locked: bool) -> None:
    name = st.selectbox("Node to edit", graph.names, key="concept_graph_edit_node")
    node = graph.node(name)
    with st.form(f"concept_graph_edit_form_{name}"):
        new_name = st.text_input("Name", value=node.name, key=f"concept_graph_edit_name_{name}")
        question = st.text_area("Question", value=node.question,
                                key=f"concept_graph_edit_question_{name}")
        values = st.text_input("Values (comma-separated)", value=", ".join(node.values),
                               key=f"concept_graph_edit_values_{name}")
        description = st.text_input("Description", value=node.description,
                                    key=f"concept_graph_edit_description_{name}")
        save = st.form_submit_button("Save changes", disabled=locked,
                                     key="concept_graph_edit_save")
        delete = st.form_submit_button(f"Delete node {name}", key="concept_graph_edit_delete",
                                       disabled=locked or name == graph.output)
    try:
        if save:
            new_graph = edits.edit_node(graph, name, new_name=new_name, question=question,
                                        values=values, description=description)
            _apply(studio, new_graph, f"edited node {name}")
        if delete:
            _apply(studio, graph.remove_node(name), f"deleted node {name}")
    except GraphValidationError as err:
        st.error(str(err))


def _edge_forms(studio, graph: ConceptGraph, locked: bool) -> None:
    left, right = st.columns(2)
    with left.form("concept_graph_add_edge_form"):
        parent = st.selectbox("Parent", graph.names, key="concept_graph_edge_parent")
        child = st.selectbox("Child", graph.names, key="concept_graph_edge_child")
        add = st.form_submit_button("Add edge", disabled=locked, key="concept_graph_edge_add")
    with right.form("concept_graph_remove_edge_form"):
        labels = [f"{p} -> {c}" for p, c in graph.edges]
        chosen = st.selectbox("Edge", labels, key="concept_graph_edge_remove")
        remove = st.form_submit_button("Remove edge", disabled=locked or not labels,
                                       key="concept_graph_edge_remove_button")
    try:
        if add:
            _apply(studio, graph.add_edge(parent, child), f"added edge {parent} -> {child}")
        if remove and chosen:
            p, c = graph.edges[labels.index(chosen)]
            _apply(studio, graph.remove_edge(p, c), f"removed edge {p} -> {c}")
    except GraphValidationError as err:
        st.error(str(err))


def _teacher_proposal(studio, graph: ConceptGraph, locked: bool) -> None:
    st.caption("An LLM teacher can externalize how it decides the task as a concept graph. "
               "Offline teachers (recorded answers, rules) cannot.")
    if st.button("Ask the teacher to propose a graph", key="concept_graph_propose",
                 disabled=locked):
        try:
            with st.spinner("Waiting for the teacher..."):
                proposal = engine.propose_graph(studio)
        except GCPError as err:
            st.error(f"The teacher's proposal was rejected or could not be made: {err}")
            return
        st.session_state["concept_graph_proposal"] = proposal.to_dict()
    data = st.session_state.get("concept_graph_proposal")
    if not data:
        return
    proposal = ConceptGraph.from_dict(data)
    st.markdown(f"**Proposal:** {len(proposal)} nodes, {len(proposal.edges)} edges.")
    for line in diff(graph, proposal).summary() or ["identical to the current graph"]:
        st.text(line)
    st.iframe(visual.graph_html(proposal, height=400), height=420)
    if st.button("Adopt the proposal as a new version", key="concept_graph_adopt",
                 disabled=locked):
        del st.session_state["concept_graph_proposal"]
        _apply(studio, proposal, "adopted the teacher's proposal")


def _history(studio, graph: ConceptGraph, locked: bool) -> None:
    history = studio.project.graph_versions()
    if history.empty:
        st.info("No saved versions yet.")
        return
    st.dataframe(history[["version", "message", "is_current", "created_by", "created_at", "n_nodes"]],
                 hide_index=True, width="stretch")
    versions = [int(v) for v in history["version"]]
    version = st.selectbox("Version", versions, index=len(versions) - 1,
                           key="concept_graph_history_version")
    row = history.loc[history["version"] == version].iloc[0]
    chosen = studio.project.graph(version)
    parent = row["parent_version"]
    if pd.notna(parent):  # the first version has no parent
        st.markdown(f"**Changes from version {int(parent)} to {version}:**")
        for line in diff(studio.project.graph(int(parent)), chosen).summary() or ["no change"]:
            st.text(line)
    if chosen.content_hash == graph.content_hash:
        st.caption("This version is the current graph.")
        return
    st.markdown(f"**Reverting to version {version} would change:**")
    for line in diff(graph, chosen).summary():
        st.text(line)
    if st.button(f"Revert to version {version}", key="concept_graph_revert", disabled=locked):
        def revert() -> int:
            studio.revert_graph(version)
            return version

        _apply(studio, chosen, f"reverted to version {version}", save=revert)


render()
