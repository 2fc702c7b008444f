"""Exported student bundles and prediction from them.

A bundle is a folder that runs without the project: the student checkpoint (safetensors
weights, graph.json, config.json), ``bundle.json`` with the encoder name and the teacher
config (never an API key), and, for a recorded teacher, a copy of its file. `predict`
reads a bundle and answers texts, sending the ones the student is unsure about to the
teacher when a fallback threshold is given. Building bundles from a project is
`gcp.loop.Studio.export`'s job; this module only reads and writes the folder.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gcp.encoder import EncoderConfig, TextEncoder
from gcp.exceptions import GCPError
from gcp.student import load_student
from gcp.teachers import TextItem, teacher_from_config

logger = logging.getLogger(__name__)

BUNDLE_FORMAT = 1
BUNDLE_FILE = "bundle.json"
STUDENT_DIR = "student"
ProgressCallback = Callable[[int, int, str], None]


def write_bundle(out_dir: str | Path, *, checkpoint: Path, encoder: str,
                 teacher: Mapping[str, Any] | None, project_folder: Path,
                 metrics: Mapping[str, Any] | None = None) -> Path:
    """Copy a checkpoint and the metadata `predict` needs into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(checkpoint, out / STUDENT_DIR, dirs_exist_ok=True)
    teacher = dict(teacher or {})
    if teacher.get("kind") == "recorded" and "path" in teacher:
        source = Path(teacher["path"])
        source = source if source.is_absolute() else project_folder / source
        shutil.copyfile(source, out / source.name)
        teacher["path"] = source.name
    meta = {
        "format_version": BUNDLE_FORMAT,
        "encoder": encoder,
        "teacher": teacher or None,
        "metrics": dict(metrics or {}),
    }
    (out / BUNDLE_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return out


def read_bundle(directory: str | Path) -> dict[str, Any]:
    """Read ``bundle.json``; raise GCPError naming the folder if it is not a bundle."""
    path = Path(directory) / BUNDLE_FILE
    if not path.is_file():
        raise GCPError(
            f"{str(directory)!r} is not an exported bundle (no {BUNDLE_FILE}); create one with "
            "`gcp export PROJECT --out DIR`"
        )
    meta = json.loads(path.read_text())
    if meta.get("format_version") != BUNDLE_FORMAT:
        raise GCPError(
            f"bundle format {meta.get('format_version')!r} is not supported; this version "
            f"reads format {BUNDLE_FORMAT}"
        )
    return meta


def predict(directory: str | Path, texts: Sequence[str], *, ids: Sequence[str] | None = None,
            fallback_threshold: float | None = None, api_key: str | None = None,
            on_progress: ProgressCallback | None = None) -> pd.DataFrame:
    """Predict every node for `texts` with an exported bundle.

    Parameters
    ----------
    directory : str or Path
        A folder written by `gcp export`.
    texts : sequence of str
    ids : sequence of str, optional
        Row ids, written as the first column ``id`` and used to look texts up in a
        recorded teacher.
    fallback_threshold : float, optional
        Rows whose output probability is below it are answered by the bundle's teacher
        (``answered_by = "teacher"``); the student's answer is kept when the teacher fails.
    api_key : str, optional
        Key for an OpenAI teacher; default: ``OPENAI_API_KEY``.

    Returns
    -------
    pandas.DataFrame
        One row per text in input order: ``id`` (when given), ``prediction``,
        ``probability``, ``answered_by``, then one column per node with its value.
    """
    if fallback_threshold is not None and not 0.0 <= fallback_threshold <= 1.0:
        raise GCPError(f"invalid fallback threshold {fallback_threshold}: use a value in [0, 1]")
    meta = read_bundle(directory)
    student = load_student(Path(directory) / STUDENT_DIR)
    graph = student.graph
    encoder = TextEncoder(EncoderConfig(model=meta["encoder"]))
    X = encoder.encode(list(texts), on_progress=on_progress) if len(texts) else np.zeros((0, 1))
    probs = student.predict_proba(X) if len(texts) else {n: np.zeros((0, 2)) for n in graph.names}
    frame = pd.DataFrame()
    if ids is not None:
        frame["id"] = list(ids)
    output = probs[graph.output]
    frame["prediction"] = [graph.labels[i] for i in output.argmax(axis=1)] if len(texts) else []
    frame["probability"] = output.max(axis=1) if len(texts) else []
    frame["answered_by"] = "student"
    for name in graph.topological_order:
        if name in probs:
            values = graph.node(name).values
            frame[name] = [values[i] for i in probs[name].argmax(axis=1)] if len(texts) else []
    if fallback_threshold is not None and len(texts):
        _fall_back(frame, meta, directory, texts, ids, fallback_threshold, graph, api_key)
    return frame


def _fall_back(frame: pd.DataFrame, meta: Mapping[str, Any], directory: str | Path,
               texts: Sequence[str], ids: Sequence[str] | None, threshold: float,
               graph: Any, api_key: str | None) -> None:
    unsure = np.flatnonzero(frame["probability"].to_numpy() < threshold)
    if not len(unsure):
        return
    config = dict(meta.get("teacher") or {})
    if not config:
        raise GCPError("this bundle has no teacher to fall back to; export it from a project "
                       "with a teacher, or drop --fallback-threshold")
    if config.get("kind") == "recorded":
        config["path"] = str(Path(directory) / config["path"])
    teacher = teacher_from_config(config, api_key=api_key)
    items = [TextItem(id=str(ids[i]) if ids is not None else f"row-{i + 1}", text=texts[i])
             for i in unsure]
    batch = teacher.annotate(graph, items)
    for row, answer in zip(unsure, batch.annotations):
        if answer.status != "ok":
            logger.warning("teacher failed on row %d (%s); kept the student's answer",
                           row + 1, answer.error)
            continue
        frame.loc[row, "prediction"] = answer.values[graph.output]
        frame.loc[row, "probability"] = 1.0
        frame.loc[row, "answered_by"] = "teacher"
        for name, value in answer.values.items():
            if name in frame.columns:
                frame.loc[row, name] = value
