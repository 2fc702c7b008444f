"""Student checkpoints and carrying weights across graph edits.

A checkpoint is a directory with ``config.json`` (format version, student kind, input width,
architecture, seed, graph hash), ``graph.json`` (the concept graph it was trained on),
``weights.safetensors`` and, after encoder fine-tuning, ``encoder_layers.safetensors``.
Nothing is pickled. This module checks that a checkpoint is complete and matches the graph
it is loaded against. It does not check that embeddings come from the same encoder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gcp.exceptions import CheckpointError, GCPError
from gcp.graph import ConceptGraph, diff
from gcp.student import GCPStudent, LabelOnlyStudent, StudentConfig

__all__ = ["CarryOver", "carry_over", "graph_differences", "load_student", "save_student"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
GRAPH_FILE = "graph.json"
WEIGHTS_FILE = "weights.safetensors"
ENCODER_FILE = "encoder_layers.safetensors"
_KINDS = {"gcp": GCPStudent, "label_only": LabelOnlyStudent}
_COSMETIC_FIELDS = {"description", "rule"}  # node fields the student never reads


@dataclass(frozen=True)
class CarryOver:
    """Report of the node modules that a student for an edited graph took from its predecessor."""

    kept: tuple[str, ...]  # nodes (new names) whose module was copied unchanged
    initialized: tuple[str, ...]  # new nodes and nodes whose values or parents changed
    renamed: tuple[tuple[str, str], ...]  # (old name, new name) among the kept nodes


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone().contiguous() for key, value in state.items()}


def save_student(student: GCPStudent | LabelOnlyStudent, directory: str | Path) -> None:
    """Write `student` to `directory`, replacing an earlier checkpoint there as a whole.

    The files are written to a temporary sibling directory first and swapped in at the end,
    so an interrupted save leaves the previous checkpoint intact.

    Raises
    ------
    CheckpointError
        If `directory` exists and contains files that are not a student checkpoint.
    """
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or (
            any(directory.iterdir()) and not (directory / CONFIG_FILE).exists())):
        raise CheckpointError(
            f"cannot save the student to {str(directory)!r}: it exists and is not a student "
            "checkpoint; choose an empty or new directory"
        )
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f".{directory.name}.saving-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    config = {
        "format_version": FORMAT_VERSION,
        "kind": student.kind,
        "input_dim": student.input_dim,
        "seed": student.seed,
        "student_config": student.config.to_dict(),
        "graph_hash": student.graph.content_hash,
        "encoder_layers": ENCODER_FILE if student.encoder_state else None,
        "encoder_info": getattr(student, "encoder_info", None),
    }
    (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    student.graph.save(staging / GRAPH_FILE)
    save_file(_tensors(student.state_dict()), str(staging / WEIGHTS_FILE))
    if student.encoder_state:
        save_file(_tensors(student.encoder_state), str(staging / ENCODER_FILE))
    retired = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    if directory.exists():
        directory.rename(retired)
    staging.rename(directory)
    shutil.rmtree(retired, ignore_errors=True)
    logger.info("saved %s student to %s", student.kind, directory)


def graph_differences(saved: ConceptGraph, graph: ConceptGraph) -> list[str]:
    """List the changes from `saved` to `graph` that make a student's weights invalid.

    Changes only to a node's description or rule are ignored because the student never reads
    them. Everything else counts: nodes, names, questions, values, parents, edges and output.
    """
    changes = diff(saved, graph)
    relevant = {
        name: fields for name, fields in changes.changed_nodes.items()
        if set(fields) - _COSMETIC_FIELDS
    }
    lines = replace(changes, changed_nodes=relevant).summary()
    if saved.output != graph.output:
        lines.append(f"output node {saved.output!r} became {graph.output!r}")
    return lines


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(
            f"{path.name} is missing in {str(path.parent)!r}: this is not a complete student checkpoint"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{str(path)!r} is not valid JSON: {err}") from err


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise CheckpointError(f"{path.name} is missing in {str(path.parent)!r}: the checkpoint is incomplete")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"cannot read {str(path)!r} as safetensors: {err}") from err


def load_student(directory: str | Path, graph: ConceptGraph | None = None) -> GCPStudent | LabelOnlyStudent:
    """Load a student saved by `save_student`.

    Parameters
    ----------
    directory : str or Path
    graph : ConceptGraph, optional
        The project's current graph. When given, the checkpoint must have been trained on the
        same graph up to descriptions and rules; the returned student then uses `graph`.

    Raises
    ------
    CheckpointError
        If files are missing or unreadable, the format version is unknown, the weights do not
        fit the architecture, or `graph` differs from the checkpoint's graph (the message lists
        the differences).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"no student checkpoint at {str(directory)!r}: the directory does not exist")
    config = _read_json(directory / CONFIG_FILE)
    version = config.get("format_version") if isinstance(config, dict) else None
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"unsupported student checkpoint format_version {version!r} in {str(directory)!r}; "
            f"this version reads {FORMAT_VERSION}: retrain the student"
        )
    kind = config.get("kind")
    if kind not in _KINDS:
        raise CheckpointError(f"unknown student kind {kind!r} in {str(directory)!r}; expected one of {sorted(_KINDS)}")
    try:
        saved_graph = ConceptGraph.from_dict(_read_json(directory / GRAPH_FILE))
        student_config = StudentConfig.from_dict(config.get("student_config", {}))
        student = _KINDS[kind](saved_graph, int(config["input_dim"]), student_config, int(config.get("seed", 0)))
    except (GCPError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"invalid student checkpoint in {str(directory)!r}: {err}") from err
    state = _read_tensors(directory / WEIGHTS_FILE)
    try:
        student.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"the weights in {str(directory)!r} do not fit the saved architecture: {err}"
        ) from err
    if config.get("encoder_layers"):
        student.encoder_state = _read_tensors(directory / str(config["encoder_layers"]))
        student.encoder_info = config.get("encoder_info")
    student.eval()
    if graph is None or graph.content_hash == saved_graph.content_hash:
        return student
    differences = graph_differences(saved_graph, graph)
    if differences:
        raise CheckpointError(
            f"the student in {str(directory)!r} was trained on a different graph: "
            + "; ".join(differences)
            + ". Retrain it, or build a student for the new graph with GCPStudent.from_previous"
        )
    rebound, _ = carry_over(student, graph)
    return rebound


def _copy_module_state(source: torch.nn.Module, target: torch.nn.Module) -> None:
    target.load_state_dict({k: v.detach().clone() for k, v in source.state_dict().items()})


def carry_over(old: GCPStudent | LabelOnlyStudent, new_graph: ConceptGraph, *,
               seed: int | None = None) -> tuple[GCPStudent | LabelOnlyStudent, CarryOver]:
    """Build a student for `new_graph` that keeps every module the edit left valid.

    A node keeps its module when it exists in both graphs (possibly renamed) and neither its
    values nor its parents changed. New nodes and nodes with changed values or parents start
    from fresh weights. Retrain the nodes from ``diff(old.graph, new_graph).retrain_nodes(new_graph)``
    afterwards, since kept nodes below a changed node now receive different inputs.

    Parameters
    ----------
    old : GCPStudent or LabelOnlyStudent
    new_graph : ConceptGraph
    seed : int, optional
        Seed of the fresh modules; defaults to the old student's seed.

    Returns
    -------
    (student, CarryOver)
    """
    changes = diff(old.graph, new_graph)
    new_to_old = {new: old_name for old_name, new in changes.renamed_nodes}
    student = type(old)(new_graph, old.input_dim, old.config, old.seed if seed is None else seed)
    student.encoder_state = old.encoder_state
    kept, fresh = [], []
    for name in student.node_names:
        fields = set(changes.changed_nodes.get(name, ()))
        old_name = new_to_old.get(name, name)
        if name in changes.added_nodes or fields & {"values", "parents"} or old_name not in old.node_names:
            fresh.append(name)
            continue
        if isinstance(student, GCPStudent):
            _copy_module_state(old.module(old_name), student.module(name))
        else:
            _copy_module_state(old, student)
        kept.append(name)
    renamed = tuple((a, b) for a, b in changes.renamed_nodes if b in kept)
    logger.info("carried %d node modules over, initialized %d (%s)", len(kept), len(fresh), ", ".join(fresh))
    return student, CarryOver(kept=tuple(kept), initialized=tuple(fresh), renamed=renamed)
