"""Helpers shared by the app pages: the open project, background jobs and small widgets.

The open project folder comes from, in order: the ``project`` query parameter (so a
browser refresh keeps the choice), the folder chosen earlier in this session, and the
demo project (`gcp.loop.demo_project`, which honours ``GCP_PROJECT_DIR``).

Long operations (proposing a round, asking the teacher, training) run as *jobs* in a
background thread with their own `Studio`, so a rerun or a browser refresh does not stop
them. The job registry lives in this module, which the Streamlit server imports once per
process, and every result is written to the project store by the engine. One job runs
per project at a time; the pages disable their action buttons while it runs.
Nothing here imports torch or openai.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from gcp.exceptions import GCPError, ProjectError
from gcp.loop import Studio, demo_project

logger = logging.getLogger(__name__)

PROJECT_PARAM = "project"  # query parameter with the open project folder
Progress = Callable[[int, int, str], None]


# ---------------------------------------------------------------------- project


def project_dir() -> Path:
    """Return the folder of the project this session works on (see the module docstring)."""
    chosen = st.query_params.get(PROJECT_PARAM) or st.session_state.get("project_dir")
    if chosen:
        return Path(chosen)
    if "demo_dir" not in st.session_state:
        with st.spinner("Preparing the demo project..."):
            st.session_state["demo_dir"] = str(demo_project())
    return Path(st.session_state["demo_dir"])


def set_project_dir(path: str | Path) -> None:
    """Make `path` the open project of this session and of its URL."""
    st.session_state["project_dir"] = str(path)
    st.query_params[PROJECT_PARAM] = str(path)
    st.session_state.pop("studio", None)


def get_studio() -> Studio:
    """Return this session's `Studio` for the open project, reopened after each finished job.

    Raises
    ------
    ProjectError
        If the folder contains no project.
    """
    path = str(project_dir())
    generation = _GENERATIONS.get(path, 0)
    cached = st.session_state.get("studio")
    if cached is not None and cached[0] == path and cached[1] == generation:
        return cached[2]
    studio = Studio.open(path, api_key=api_key())
    st.session_state["studio"] = (path, generation, studio)
    return studio


def forget_studio() -> None:
    """Drop the cached Studio so the next `get_studio` reopens it from the store."""
    st.session_state.pop("studio", None)


def api_key() -> str | None:
    """Return the OpenAI-compatible API key from the environment or Streamlit secrets."""
    key = os.environ.get("OPENAI_API_KEY")
    if key:
        return key
    try:
        return st.secrets.get("OPENAI_API_KEY")
    except FileNotFoundError:  # no secrets.toml at all
        return None


def open_or_stop() -> Studio:
    """Return the Studio, or show why the project cannot open and stop the page."""
    try:
        return get_studio()
    except GCPError as err:
        st.error(f"Cannot open the project in {str(project_dir())!r}: {err}")
        st.info("Choose another folder in the sidebar, or create a project on the Project page.")
        st.stop()
        raise  # unreachable: st.stop raises


def diagnosis(studio: Studio) -> dict[str, Any] | None:
    """Return `studio.diagnose()` cached per session until the student, graph or labels
    change, or None when there is no student for the current graph (the reason is shown)."""
    key = (str(studio.folder), len(studio.project.training_runs()), studio.project.graph_version,
           len(studio.project.annotations()), len(studio.project.audit_log()))
    cached = st.session_state.get("diagnosis")
    if cached is not None and cached[0] == key:
        return cached[1]
    student = studio.student
    if student is None or student.graph.content_hash != studio.graph.content_hash:
        report = None  # each page shows its own hint to train or retrain
    else:
        try:
            report = studio.diagnose()
        except GCPError as err:
            st.warning(f"No diagnostics: {err}")
            return None
    st.session_state["diagnosis"] = (key, report)
    return report


# ---------------------------------------------------------------------- jobs


@dataclass
class Job:
    """A long operation running in a background thread, with its progress."""

    kind: str  # "propose", "annotate", "train", ...
    label: str  # text shown next to the progress bar, e.g. "Training the student"
    project: str  # project folder
    done: int = 0  # units finished so far
    total: int = 0  # units in all (0 until the first progress report)
    info: str = ""  # last progress message
    summary: str = ""  # one-line result shown when the job ends
    result: Any = None  # value returned by the work function
    error: str | None = None  # message if the job failed
    finished: bool = False
    started: float = field(default_factory=time.time)
    thread: threading.Thread | None = field(default=None, repr=False)

    def report(self, done: int, total: int, info: str = "") -> None:
        """Record progress; this is the `on_progress` callback given to the engine."""
        self.done, self.total, self.info = int(done), int(total), str(info)

    @property
    def fraction(self) -> float:
        return min(self.done / self.total, 1.0) if self.total else 0.0


_JOBS: dict[str, Job] = {}  # project folder -> latest job
_GENERATIONS: dict[str, int] = {}  # project folder -> finished jobs, to reopen stale Studios
_LOCK = threading.Lock()


def current_job(path: str | Path | None = None) -> Job | None:
    """Return the latest job of the project (running or finished), or None."""
    return _JOBS.get(str(path if path is not None else project_dir()))


def job_running(path: str | Path | None = None) -> bool:
    job = current_job(path)
    return job is not None and not job.finished


def start_job(
    kind: str,
    label: str,
    work: Callable[[Studio, Progress], Any],
    *,
    describe: Callable[[Any], str] = lambda result: "done",
) -> Job:
    """Run ``work(studio, on_progress)`` in a background thread on a fresh Studio.

    Parameters
    ----------
    kind, label : str
        Job type and the text shown next to its progress bar.
    work : callable
        Receives its own `Studio` on the open project and the progress callback.
    describe : callable
        Turns the result into the one-line summary shown when the job ends.

    Raises
    ------
    ProjectError
        If a job is already running on this project.
    """
    path = str(project_dir())
    key = api_key()
    with _LOCK:
        running = _JOBS.get(path)
        if running is not None and not running.finished:
            raise ProjectError(
                f"{running.label} is still running on this project: wait until it finishes"
            )
        job = Job(kind=kind, label=label, project=path)
        _JOBS[path] = job

    def run() -> None:
        try:
            studio = Studio.open(path, api_key=key)
            job.result = work(studio, job.report)
            job.summary = describe(job.result)
        except GCPError as err:
            job.error = str(err)
            logger.warning("%s failed on %s: %s", kind, path, err)
        except Exception as err:  # a bug: keep the server alive and show it
            job.error = f"unexpected error: {err!r}"
            logger.exception("%s crashed on %s", kind, path)
        finally:
            with _LOCK:
                _GENERATIONS[path] = _GENERATIONS.get(path, 0) + 1
                job.finished = True
            logger.info("%s finished on %s in %.1f s", kind, path, time.time() - job.started)

    job.thread = threading.Thread(target=run, name=f"gcp-{kind}", daemon=True)
    logger.info("starting %s on %s", kind, path)
    job.thread.start()
    return job


def wait_for_job(path: str | Path, timeout: float = 300.0) -> Job | None:
    """Block until the project's job ends (used by tests and scripts); return it."""
    job = current_job(path)
    if job is not None and job.thread is not None:
        job.thread.join(timeout)
    return job


def job_status() -> None:
    """Show the project's job: a live progress bar while it runs, its outcome after."""
    job = current_job()
    if job is None:
        return
    if not job.finished:
        _live_progress(job)
        return
    if st.session_state.get("job_dismissed") == id(job):
        return
    box = st.container(border=True)
    if job.error:
        box.error(f"{job.label} failed: {job.error}")
    else:
        box.success(f"{job.label} finished: {job.summary}")
    if box.button("Dismiss", key="common_job_dismiss"):
        st.session_state["job_dismissed"] = id(job)
        st.rerun()


def _live_progress(job: Job) -> None:
    @st.fragment(run_every=1.0)
    def progress() -> None:
        if job.finished:
            st.rerun(scope="app")  # the page may show new results now
        counts = f"{job.done}/{job.total}" if job.total else "starting"
        st.progress(job.fraction, text=f"{job.label}: {counts} {job.info}".strip())
        st.caption("Actions that change the project are locked until this job ends. "
                   "You can refresh or leave the page; the job keeps running.")

    progress()


def run_job_button(
    label: str,
    *,
    key: str,
    kind: str,
    job_label: str,
    work: Callable[[Studio, Progress], Any],
    describe: Callable[[Any], str] = lambda result: "done",
    disabled: bool = False,
    help: str | None = None,
) -> bool:
    """Show a button that starts a job; locked while any job runs. Return True if started."""
    busy = job_running()
    if not st.button(label, key=key, disabled=disabled or busy, help=help, type="primary"):
        return False
    try:
        start_job(kind, job_label, work, describe=describe)
    except GCPError as err:
        st.error(str(err))
        return False
    st.rerun()
    return True  # unreachable: st.rerun raises


# ---------------------------------------------------------------------- widgets


def show_error(err: Exception) -> None:
    """Show a GCPError message as an error box."""
    st.error(str(err))


def format_money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def format_share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"
