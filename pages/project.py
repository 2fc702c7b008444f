"""Project page: overview, create or open a project, import data, teacher and budget."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from gcp.exceptions import GCPError
from gcp.graph import ConceptGraph
from gcp.loop import Studio
from pages.shared import common

TEACHER_KINDS = {
    "recorded": "Recorded answers (a CSV or JSONL file of an LLM's earlier answers)",
    "rules": "Rules (keyword heuristics in the graph; free, offline)",
    "openai": "OpenAI-compatible endpoint (paid; needs OPENAI_API_KEY)",
}


def render() -> None:
    st.title("Project")
    common.job_status()
    try:
        studio = common.get_studio()
    except GCPError as err:
        st.error(f"Cannot open the project in {str(common.project_dir())!r}: {err}")
        studio = None
    if studio is not None:
        st.caption(f"Folder: {common.project_dir()}")
        _overview(studio)
    tabs = st.tabs(["Teacher and budget", "Import data", "Create or open a project"])
    with tabs[0]:
        if studio is None:
            st.info("Open or create a project first.")
        else:
            _teacher(studio)
            _budget(studio)
    with tabs[1]:
        if studio is None:
            st.info("Open or create a project first.")
        else:
            _import_data(studio)
    with tabs[2]:
        _create_or_open()


def _overview(studio) -> None:
    status = studio.status()
    cols = st.columns(5)
    budget_labels = status.get("budget_labels")
    labels_help = f"of a budget of {budget_labels}" if budget_labels else "no label budget set"
    cols[0].metric("Labels used", f"{status['labels']:,}", help=labels_help)
    budget_money = status.get("budget_money")
    cols[1].metric("Money spent", common.format_money(status["cost"]),
                   help=f"of {common.format_money(budget_money)}" if budget_money else None)
    cols[2].metric("Rounds", status["rounds"])
    cols[3].metric("Accuracy (test, gold)", common.format_share(status.get("accuracy")))
    cols[4].metric("Agreement with teacher", common.format_share(status.get("teacher_agreement")))
    st.caption(
        f"{status['texts']:,} texts: {status['pool']:,} in the pool, {status['test']:,} held "
        f"out for testing. Teacher: {status.get('teacher') or 'not set'}."
    )
    st.markdown("**Next step:** " + _next_step(status))


def _next_step(status: dict) -> str:
    if not status["texts"]:
        return "import texts in the *Import data* tab below."
    if not status.get("teacher"):
        return "choose a teacher in the *Teacher and budget* tab below."
    if not status["labels"]:
        return "open **Acquisition** and propose the first round of texts for the teacher."
    if status.get("accuracy") is None:
        return "open **Training** and train the student on the labelled texts."
    return ("check **Diagnostics** for weak concepts, then run another round in "
            "**Acquisition** or targeted retraining in **Training**.")


def _teacher(studio) -> None:
    st.subheader("Teacher")
    config = studio.teacher_config() or {}
    kinds = list(TEACHER_KINDS)
    kind = st.radio("Teacher", kinds, index=kinds.index(config.get("kind", "recorded")),
                    format_func=TEACHER_KINDS.get, key="project_teacher_kind")
    new_config: dict = {"kind": kind}
    if kind == "recorded":
        new_config["path"] = st.text_input(
            "File of recorded answers", value=str(config.get("path", "")),
            key="project_teacher_path", help="CSV or JSONL with an id column and one column per node.")
    elif kind == "openai":
        new_config["model"] = st.text_input("Model", value=config.get("model", "gpt-4o-mini"),
                                            key="project_teacher_model")
        new_config["base_url"] = st.text_input(
            "Base URL (empty for api.openai.com)", value=config.get("base_url") or "",
            key="project_teacher_base_url") or None
        if common.api_key():
            st.caption("API key: found in the environment or in Streamlit secrets.")
        else:
            st.warning("No API key: set OPENAI_API_KEY in the environment or in "
                       ".streamlit/secrets.toml. The key is never stored in the project.")
    left, right = st.columns(2)
    if left.button("Save teacher", key="project_teacher_save", disabled=common.job_running()):
        if kind == "recorded" and new_config["path"]:
            # A relative path is read from the project folder, where the recorded file is copied.
            path = Path(new_config["path"])
            if not path.is_absolute() and (studio.folder / path).is_file():
                new_config["path"] = str(studio.folder / path)
        try:
            studio.set_teacher(new_config)
        except GCPError as err:
            st.error(str(err))
        else:
            st.success(f"Teacher saved: {new_config['kind']}.")
    if right.button("Test connection", key="project_teacher_test"):
        try:
            with st.spinner("Asking the teacher..."):
                message = studio.check_teacher()
        except GCPError as err:
            st.error(f"Connection test failed: {err}")
        else:
            st.success(message)


def _budget(studio) -> None:
    st.subheader("Budget")
    status = studio.status()
    with st.form("project_budget_form"):
        labels = st.number_input("Maximum labelled texts (0 = no limit)", min_value=0, step=50,
                                 value=int(status.get("budget_labels") or 0),
                                 key="project_budget_labels")
        money = st.number_input("Maximum money in USD (0 = no limit)", min_value=0.0, step=1.0,
                                value=float(status.get("budget_money") or 0.0), format="%.2f",
                                key="project_budget_money")
        if st.form_submit_button("Save budget", key="project_budget_save"):
            try:
                studio.set_budget(labels=labels or None, money=money or None)
            except GCPError as err:
                st.error(str(err))
            else:
                st.rerun()


def _data_source(prefix: str) -> Path | None:
    """Return a data file from an upload (saved to a temporary file) or a typed path."""
    upload = st.file_uploader("Upload a CSV, TSV, JSONL or Parquet file", key=f"{prefix}_upload",
                              type=["csv", "tsv", "jsonl", "ndjson", "parquet"])
    typed = st.text_input("...or the path of a file on this machine", key=f"{prefix}_path")
    if upload is not None:
        folder = Path(tempfile.mkdtemp(prefix="gcp-upload-"))
        target = folder / Path(upload.name).name
        target.write_bytes(upload.getvalue())
        return target
    return Path(typed.strip()) if typed.strip() else None


def _columns_form(prefix: str) -> dict:
    text_column = st.text_input("Text column", value="text", key=f"{prefix}_text_column")
    id_column = st.text_input("Id column (empty: ids are generated)", value="id",
                              key=f"{prefix}_id_column")
    label_column = st.text_input("Gold label column (optional)", value="gold_label",
                                 key=f"{prefix}_label_column")
    return {"text_column": text_column.strip(), "id_column": id_column.strip() or None,
            "label_column": label_column.strip() or None}


def _import_data(studio) -> None:
    st.caption("Add texts to this project. An import stores every row or none: a file with "
               "problems is rejected with the list of rows to fix.")
    source = _data_source("project_import")
    columns = _columns_form("project_import")
    if st.button("Import", key="project_import_button",
                 disabled=source is None or common.job_running()):
        try:
            report = studio.import_data(source, **columns)
        except GCPError as err:
            st.error(str(err))
        else:
            st.session_state["project_import_report"] = (
                f"Imported {report.n_imported} texts from {report.source}: {report.n_pool} in "
                f"the pool, {report.n_test} held out for testing, {report.n_labelled} with a "
                "gold label.")
            st.rerun()
    if "project_import_report" in st.session_state:
        st.success(st.session_state.pop("project_import_report"))


def _create_or_open() -> None:
    st.subheader("Open a project")
    folder = st.text_input("Project folder", key="project_open_dir")
    if st.button("Open", key="project_open_button", disabled=not folder.strip()):
        try:
            Studio.open(folder.strip()).close()
        except GCPError as err:
            st.error(str(err))
        else:
            common.set_project_dir(folder.strip())
            st.rerun()

    st.subheader("Create a project")
    with st.container(border=True):
        target = st.text_input("New project folder", key="project_create_dir")
        graph_upload = st.file_uploader("Concept graph (JSON)", type=["json"],
                                        key="project_create_graph")
        graph_path = st.text_input("...or the path of a graph JSON file",
                                   key="project_create_graph_path")
        st.markdown("**Texts** (optional: a project can start with a graph only)")
        source = _data_source("project_create")
        columns = _columns_form("project_create")
        test_size = st.slider("Share of texts held out for testing", 0.05, 0.5, 0.2, 0.05,
                              key="project_create_test_size")
        if st.button("Create project", key="project_create_button", type="primary",
                     disabled=not target.strip()):
            try:
                if graph_upload is not None:
                    graph = ConceptGraph.from_json(graph_upload.getvalue().decode("utf-8"))
                elif graph_path.strip():
                    graph = ConceptGraph.load(graph_path.strip())
                else:
                    st.error("Give a concept graph: upload a JSON file or type its path.")
                    return
                Studio.create(target.strip(), data=source, graph=graph,
                              test_size=test_size, **columns)
            except (GCPError, UnicodeDecodeError) as err:
                st.error(str(err))
            else:
                common.set_project_dir(target.strip())
                st.rerun()


render()
