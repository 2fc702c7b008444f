"""The student's objective and metrics on teacher label matrices.

This module owns label validation (`check_labels`), the joint loss (task loss on the output
node plus the mean of the masked concept losses), evaluation metrics, the random
``do(node = teacher value)`` interventions used while training, and per-row losses under
interventions. Labels follow the label-matrix convention of `gcp.graph`: ``Y[i, j]`` is the
value index of node ``graph.names[j]`` for text i, -1 when missing, and the output column
contains the teacher's label. It does not check that labels came from the graph version the
student was built for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gcp.exceptions import StudentError
from gcp.student import GCPStudent, LabelOnlyStudent, StudentOutput

__all__ = [
    "check_labels", "evaluate", "evaluate_tensors", "intervention_losses", "joint_loss", "label_columns",
    "node_loss_sums", "non_output_nodes", "random_interventions",
]

Student = GCPStudent | LabelOnlyStudent


def check_labels(student: Student, Y: Any, n_rows: int) -> torch.Tensor:
    """Validate a label matrix against the student's graph and return it as int64 tensor."""
    graph = student.graph
    array = np.asarray(Y)
    if array.ndim != 2 or array.shape != (n_rows, len(graph)):
        raise StudentError(
            f"labels must have shape (n_texts, n_nodes) = ({n_rows}, {len(graph)}) with columns "
            f"{graph.names}, got {array.shape}; build them with gcp.graph.annotations_to_matrix"
        )
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise StudentError(f"labels must be integer value indices (-1 = missing), got dtype {array.dtype}")
    for j, name in enumerate(graph.names):
        n_values = len(graph.node(name).values)
        column = array[:, j]
        bad = column[(column < -1) | (column >= n_values)]
        if bad.size:
            raise StudentError(
                f"label column {name!r} has value index {int(bad[0])} outside -1..{n_values - 1}"
            )
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))


def label_columns(student: Student) -> dict[str, int]:
    return {name: j for j, name in enumerate(student.graph.names)}


def node_loss_sums(out: StudentOutput, y: torch.Tensor, columns: dict[str, int],
                   nodes: Sequence[str]) -> dict[str, tuple[torch.Tensor, int]]:
    """Sum of cross-entropy over the annotated rows of each node, with the row count.

    Missing labels (-1) are multiplied by zero, so they add no loss and no gradient.
    """
    sums = {}
    for name in nodes:
        target = y[:, columns[name]]
        mask = target >= 0
        losses = F.cross_entropy(out.logits[name], target.clamp(min=0), reduction="none")  # (n,)
        sums[name] = ((losses * mask).sum(), int(mask.sum()))
    return sums


def joint_loss(student: Student, out: StudentOutput, y: torch.Tensor, *, concept_weight: float,
               concept_nodes: Sequence[str]) -> tuple[torch.Tensor, float, float]:
    """Task loss on the output node plus `concept_weight` times the mean concept loss.

    The concept loss averages cross-entropy over every annotated (text, node) pair of
    `concept_nodes`, so a partly annotated text trains exactly the nodes it has.

    Returns
    -------
    (loss, task_loss, concept_loss)
        The differentiable total and its two parts as floats.
    """
    columns = label_columns(student)
    output = student.graph.output
    sums = node_loss_sums(out, y, columns, [output, *concept_nodes])
    task_sum, task_count = sums.pop(output)
    task = task_sum / max(task_count, 1)
    concept_count = sum(count for _, count in sums.values())
    concept = sum((s for s, _ in sums.values()), torch.zeros(())) / max(concept_count, 1)
    return task + concept_weight * concept, float(task.detach()), float(concept.detach())


def non_output_nodes(student: Student) -> list[str]:
    return [n for n in student.node_names if n != student.graph.output]


def evaluate(student: Student, X: Any, Y: Any, *, concept_weight: float = 1.0) -> dict[str, float]:
    """Score a student against teacher labels.

    Returns
    -------
    dict
        ``loss``, ``task_loss``, ``concept_loss`` (as in `joint_loss`), ``accuracy`` (output
        node against the teacher's label, on rows that have one), ``concept_accuracy`` (over
        every annotated (text, concept node) pair; NaN without any) and ``n``.
    """
    x = student.check_embeddings(X)
    y = check_labels(student, Y, len(x))
    return evaluate_tensors(student, x, y, concept_weight, non_output_nodes(student))


def evaluate_tensors(student: Student, x: torch.Tensor, y: torch.Tensor, concept_weight: float,
              concept_nodes: Sequence[str]) -> dict[str, float]:
    was_training = student.training
    student.eval()
    try:
        with torch.no_grad():
            out = student(x)
            loss, task, concept = joint_loss(student, out, y, concept_weight=concept_weight,
                                             concept_nodes=concept_nodes)
    finally:
        student.train(was_training)
    columns = label_columns(student)
    correct = {}
    for name in [student.graph.output, *concept_nodes]:
        target = y[:, columns[name]]
        mask = target >= 0
        correct[name] = (int((out.logits[name].argmax(1) == target)[mask].sum()), int(mask.sum()))
    hits, count = correct.pop(student.graph.output)
    concept_hits = sum(h for h, _ in correct.values())
    concept_count = sum(c for _, c in correct.values())
    return {
        "loss": float(loss), "task_loss": task, "concept_loss": concept,
        "accuracy": hits / count if count else float("nan"),
        "concept_accuracy": concept_hits / concept_count if concept_count else float("nan"),
        "n": float(len(x)),
    }


def random_interventions(student: Student, y: torch.Tensor, prob: float, nodes: Sequence[str],
                          generator: torch.Generator) -> dict[str, torch.Tensor] | None:
    if prob <= 0 or not isinstance(student, GCPStudent):
        return None
    columns = label_columns(student)
    do = {}
    for name in nodes:
        target = y[:, columns[name]]
        chosen = (torch.rand(len(y), generator=generator) < prob) & (target >= 0)
        do[name] = torch.where(chosen, target, torch.full_like(target, -1))
    return do


def intervention_losses(student: GCPStudent, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor,
                        nodes: Sequence[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per-row task loss without and with ``do(node = teacher value)`` for each node.

    Rows where the node has no teacher value keep the student's own mixture, so their loss
    difference is zero. Returns (full loss (n,), node -> loss (n,), node -> predicted label (n,)).
    """
    columns = label_columns(student)
    output = student.graph.output
    safe_target = target.clamp(min=0)
    was_training = student.training
    student.eval()
    try:
        with torch.no_grad():
            full = F.cross_entropy(student(x).logits[output], safe_target, reduction="none")
            losses, predictions = {}, {}
            for name in nodes:
                logits = student(x, {name: y[:, columns[name]]}).logits[output]
                losses[name] = F.cross_entropy(logits, safe_target, reduction="none")
                predictions[name] = logits.argmax(1)
    finally:
        student.train(was_training)
    return full, losses, predictions
