"""Diagnostics of a trained student: per-node accuracy, uncertainty and error attribution.

Every function returns plain pandas DataFrames or dataclasses of them, ready to display.
Accuracy is measured against the teacher's values in the label matrix (see `gcp.graph`);
`error_attribution` can also measure errors against gold labels. This module reads the
student only through its public inference API and `gcp.objective.intervention_losses`; it
does not train anything.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from gcp.exceptions import StudentError
from gcp.student import GCPStudent, LabelOnlyStudent
from gcp.objective import check_labels, intervention_losses

__all__ = [
    "ErrorAttribution", "confusion_matrix", "error_attribution", "node_accuracy", "normalized_entropy",
    "uncertainty_matrix",
]

logger = logging.getLogger(__name__)

Student = GCPStudent | LabelOnlyStudent


def node_accuracy(student: Student, X: Any, Y: Any) -> pd.DataFrame:
    """Compare each node's prediction with the teacher's value.

    Parameters
    ----------
    student : GCPStudent or LabelOnlyStudent
    X : array-like of shape (n_texts, input_dim)
    Y : array-like of int, shape (n_texts, n_nodes)
        Teacher value indices, -1 where missing.

    Returns
    -------
    pandas.DataFrame
        One row per predicted node, in graph order. Columns: ``node``, ``n_values``,
        ``coverage`` (share of texts with a teacher value), ``n_labelled``, ``accuracy``
        (NaN without labelled texts) and ``majority``. The last one is the accuracy of
        always predicting the teacher's most frequent value, the baseline to beat.
    """
    predictions = student.predict(X)
    y = check_labels(student, Y, len(next(iter(predictions.values())))).numpy()
    rows = []
    for name, predicted in predictions.items():
        column = y[:, student.graph.names.index(name)]
        labelled = column >= 0
        n_labelled = int(labelled.sum())
        counts = np.bincount(column[labelled], minlength=len(student.graph.node(name).values))
        rows.append({
            "node": name,
            "n_values": len(student.graph.node(name).values),
            "coverage": n_labelled / len(column) if len(column) else float("nan"),
            "n_labelled": n_labelled,
            "accuracy": float((predicted[labelled] == column[labelled]).mean()) if n_labelled else float("nan"),
            "majority": counts.max() / n_labelled if n_labelled else float("nan"),
        })
    return pd.DataFrame(rows)


def confusion_matrix(student: Student, X: Any, Y: Any, node: str) -> pd.DataFrame:
    """Count teacher value (rows) against predicted value (columns) for one node.

    Texts without a teacher value for `node` are left out. Index and columns are the node's
    value names.
    """
    values = list(student.graph.node(node).values)
    if node not in student.node_names:
        raise StudentError(f"a {type(student).__name__} does not predict node {node!r}")
    predicted = student.predict(X)[node]
    column = check_labels(student, Y, len(predicted)).numpy()[:, student.graph.names.index(node)]
    labelled = column >= 0
    counts = np.zeros((len(values), len(values)), dtype=np.int64)
    np.add.at(counts, (column[labelled], predicted[labelled]), 1)
    frame = pd.DataFrame(counts, index=pd.Index(values, name="teacher"), columns=pd.Index(values, name="student"))
    return frame


def normalized_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy of each row of `probs` divided by log(n_values): 0 = certain, 1 = uniform."""
    probs = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return -(probs * np.log(probs)).sum(axis=-1) / np.log(probs.shape[-1])


def uncertainty_matrix(student: Student, X: Any, *, n_samples: int = 0, seed: int = 0,
                       ids: Sequence[Any] | None = None) -> pd.DataFrame:
    """Normalized predictive entropy of every node for every text.

    Parameters
    ----------
    student : GCPStudent or LabelOnlyStudent
    X : array-like of shape (n_texts, input_dim)
    n_samples : int, default=0
        0 uses the deterministic prediction; T > 0 averages T MC-dropout samples first.
    seed : int, default=0
        Seed of the MC-dropout masks.
    ids : sequence, optional
        Row labels (e.g. text ids); defaults to 0..n_texts-1.

    Returns
    -------
    pandas.DataFrame
        Shape (n_texts, n_nodes), values in [0, 1], one column per predicted node.
    """
    if n_samples:
        probs = {name: p.mean(axis=0) for name, p in student.mc_dropout_proba(X, n_samples=n_samples, seed=seed).items()}
    else:
        probs = student.predict_proba(X)
    frame = pd.DataFrame({name: normalized_entropy(p) for name, p in probs.items()})
    if ids is not None:
        if len(ids) != len(frame):
            raise StudentError(f"ids has {len(ids)} entries but X has {len(frame)} rows")
        frame.index = pd.Index(list(ids))
    return frame


@dataclass
class ErrorAttribution:
    """Attribution of the student's wrong final predictions to concept nodes."""

    per_node: pd.DataFrame  # node, errors_fixed, share_fixed, mean_delta, n_intervened; sorted by share
    per_text: pd.DataFrame  # one row per error: id, predicted, target, fixed_by (list of nodes)
    n_texts: int  # texts with a target label
    n_errors: int  # texts whose final prediction differs from the target
    target: str  # "gold" or "teacher": what the errors were measured against


def _gold_indices(student: GCPStudent, gold: Sequence[Any], n_rows: int) -> np.ndarray:
    labels = list(student.graph.labels)
    if len(gold) != n_rows:
        raise StudentError(f"gold has {len(gold)} entries but X has {n_rows} rows")
    result = np.full(n_rows, -1, dtype=np.int64)
    for i, value in enumerate(gold):
        if isinstance(value, str):
            if value == "":
                continue
            if value not in labels:
                raise StudentError(f"gold label {value!r} at row {i} is not one of the task labels {labels}")
            result[i] = labels.index(value)
        elif isinstance(value, (int, np.integer)) and -1 <= value < len(labels):
            result[i] = int(value)
        elif value is None or pd.isna(value):
            continue
        else:
            raise StudentError(f"gold label {value!r} at row {i} is neither a label name nor an index 0..{len(labels) - 1}")
    return result


def error_attribution(student: GCPStudent, X: Any, Y: Any, *, gold: Sequence[Any] | None = None,
                      ids: Sequence[Any] | None = None) -> ErrorAttribution:
    """Find, for each wrong final prediction, which single-node interventions fix it.

    An error is a text whose predicted label differs from the target: the gold label when
    `gold` is given, else the teacher's label in `Y`. For every error, each non-output node
    in turn is set to the teacher's value with ``do()``. The intervention fixes the error when
    the predicted label becomes the target. Texts without a teacher value for a node cannot
    be fixed through that node.

    Parameters
    ----------
    student : GCPStudent
    X, Y : array-like
        Embeddings and teacher label matrix, as for `gcp.training.fit_student`.
    gold : sequence of str or int, optional
        Gold label per text (name or index); None, "" or -1 marks a text without one.
    ids : sequence, optional
        Text ids for ``per_text``; defaults to row positions.

    Returns
    -------
    ErrorAttribution
        ``per_node.share_fixed`` is the share of errors that the node's intervention fixes.
        ``per_node.mean_delta`` is the mean drop of the task loss on the error texts under
        that intervention, which is the counterfactual impact restricted to the errors.
    """
    if not isinstance(student, GCPStudent):
        raise StudentError(f"error attribution needs concept nodes; a {type(student).__name__} has none")
    x = student.check_embeddings(X)
    y = check_labels(student, Y, len(x))
    output_column = student.graph.names.index(student.graph.output)
    target = _gold_indices(student, gold, len(x)) if gold is not None else y[:, output_column].numpy()
    row_ids = np.asarray(list(ids) if ids is not None else range(len(x)), dtype=object)
    if len(row_ids) != len(x):
        raise StudentError(f"ids has {len(row_ids)} entries but X has {len(x)} rows")
    predicted = student.predict(x.numpy())[student.graph.output]
    errors = np.flatnonzero((target >= 0) & (predicted != target))
    nodes = [n for n in student.graph.names if n != student.graph.output]
    full, losses, fixed_predictions = intervention_losses(
        student, x[errors], y[errors], torch.from_numpy(target[errors]), nodes
    )
    labels = student.graph.labels
    fixed_by: list[list[str]] = [[] for _ in errors]
    node_rows = []
    for name in nodes:
        intervened = y[errors, student.graph.names.index(name)].numpy() >= 0
        fixes = (fixed_predictions[name].numpy() == target[errors]) & intervened
        for k in np.flatnonzero(fixes):
            fixed_by[k].append(name)
        node_rows.append({
            "node": name,
            "errors_fixed": int(fixes.sum()),
            "share_fixed": float(fixes.mean()) if len(errors) else 0.0,
            "mean_delta": float((full - losses[name]).mean()) if len(errors) else 0.0,
            "n_intervened": int(intervened.sum()),
        })
    per_node = pd.DataFrame(node_rows, columns=["node", "errors_fixed", "share_fixed", "mean_delta", "n_intervened"])
    per_node = per_node.sort_values(["share_fixed", "mean_delta"], ascending=False, kind="stable").reset_index(drop=True)
    per_text = pd.DataFrame({
        "id": row_ids[errors],
        "predicted": [labels[i] for i in predicted[errors]],
        "target": [labels[i] for i in target[errors]],
        "fixed_by": fixed_by,
    })
    return ErrorAttribution(per_node=per_node, per_text=per_text, n_texts=int((target >= 0).sum()),
                            n_errors=len(errors), target="gold" if gold is not None else "teacher")
