"""Export page: download the student bundle and the annotations."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import streamlit as st

from gcp.exceptions import GCPError
from pages.shared import common

FORMATS = {  # format -> (file extension, MIME type)
    "csv": ("csv", "text/csv"),
    "jsonl": ("jsonl", "application/x-ndjson"),
    "parquet": ("parquet", "application/vnd.apache.parquet"),
}


def render() -> None:
    st.title("Export")
    common.job_status()
    studio = common.open_or_stop()
    status = studio.status()
    _student_bundle(studio, status)
    _annotations(studio, status)


def _zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def _student_bundle(studio, status: dict) -> None:
    st.subheader("Student bundle")
    if status.get("accuracy") is None:
        st.info("No trained student yet: train one on the Training page, then export it here.")
        return
    st.caption("A zip with the student's weights (safetensors), its concept graph, its config, "
               "the encoder name and the teacher config (never an API key). Unzip it and "
               "predict with `gcp.bundle.predict(folder, texts)`.")
    if st.button("Prepare the bundle", key="export_prepare"):
        try:
            with tempfile.TemporaryDirectory(prefix="gcp-export-") as tmp:
                folder = studio.export(Path(tmp) / "student")
                st.session_state["export_bundle"] = _zip_folder(Path(folder))
        except GCPError as err:
            st.error(str(err))
            return
    bundle = st.session_state.get("export_bundle")
    if bundle:
        st.download_button("Download the student bundle (zip)", bundle,
                           file_name="gcp-student.zip", mime="application/zip",
                           key="export_student_download")


def _annotations(studio, status: dict) -> None:
    st.subheader("Annotations")
    if not status["labels"]:
        st.info("No annotations yet: they appear after the teacher answers a round "
                "(Acquisition page).")
        return
    cols = st.columns(len(FORMATS))
    for col, (fmt, (extension, mime)) in zip(cols, FORMATS.items()):
        try:
            data = studio.export_annotations(fmt)
        except GCPError as err:
            col.error(str(err))
            continue
        col.download_button(f"Annotations as {fmt.upper()}", data,
                            file_name=f"annotations.{extension}", mime=mime,
                            key=f"export_annotations_{fmt}")


render()
