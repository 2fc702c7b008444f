"""GCP Studio web app: run with ``streamlit run app.py``.

This entry script sets the page config and logging, lets the user pick the project folder
in the sidebar, and declares the pages. The pages
are declared here with `st.navigation`, so Streamlit's automatic discovery of the
``pages/`` folder is off and page order follows the workflow. By default the app opens
the demo project (built once from ``assets/demo``, in ``$GCP_PROJECT_DIR`` if set).
The app and the pages reach the engine only through ``gcp``; they never import torch or
openai themselves.
"""

from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st

from gcp.exceptions import GCPError
from gcp.loop import Studio
from pages.shared import common

# A local file: a Material or emoji page icon makes the browser fetch it from Google's CDN.
ASSETS = Path(__file__).resolve().parent / "assets"
st.set_page_config(page_title="GCP Studio", page_icon=str(ASSETS / "icon.png"), layout="wide")

# basicConfig does nothing once the root logger has a handler, so reruns keep one handler.
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

PAGES = [
    st.Page("pages/project.py", title="Project", icon=":material/folder_open:", default=True),
    st.Page("pages/concept_graph.py", title="Concept graph", icon=":material/account_tree:"),
    st.Page("pages/acquisition.py", title="Acquisition", icon=":material/playlist_add_check:"),
    st.Page("pages/annotations.py", title="Annotations", icon=":material/edit_note:"),
    st.Page("pages/training.py", title="Training", icon=":material/model_training:"),
    st.Page("pages/diagnostics.py", title="Diagnostics", icon=":material/troubleshoot:"),
    st.Page("pages/export.py", title="Export", icon=":material/download:"),
]


def _open_typed_project() -> None:
    """Open the folder typed in the sidebar, or keep an error to show (an on_change callback)."""
    typed = st.session_state["app_project_dir"].strip()
    st.session_state.pop("app_project_error", None)
    try:
        Studio.open(typed).close()
    except GCPError as err:
        st.session_state["app_project_error"] = f"Cannot open {typed!r}: {err}"
    else:
        common.set_project_dir(typed)


def project_sidebar() -> None:
    """Show the open project folder in a text input that opens another folder on Enter."""
    current = str(common.project_dir())
    if st.session_state.get("app_project_shown") != current:
        # The project changed elsewhere (or this is the first run): show the new folder.
        st.session_state["app_project_dir"] = current
        st.session_state["app_project_shown"] = current
        st.session_state.pop("app_project_error", None)
    with st.sidebar:
        st.text_input("Project folder", key="app_project_dir", on_change=_open_typed_project,
                      help="Path of a project folder; press Enter to open it.")
        if "app_project_error" in st.session_state:
            st.error(st.session_state["app_project_error"])


navigation = st.navigation(PAGES)
project_sidebar()
navigation.run()
