"""Training students: early stopping, counterfactual impact and targeted retraining.

This module owns three steps. `fit_student` trains every module of a student on the joint
loss of `gcp.objective`. `counterfactual_impact` estimates how much the final loss would drop
if one node took the teacher's value. `targeted_retrain` retrains only the modules of the
nodes that cost the most and leaves every other parameter bit-identical. Labels follow the
label-matrix convention of `gcp.graph`, with the teacher's label in the output column.
Shapes and value ranges are validated by `gcp.objective.check_labels`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from gcp.exceptions import StudentError
from gcp.objective import (
    check_labels,
    evaluate,
    evaluate_tensors,
    intervention_losses,
    joint_loss,
    label_columns,
    non_output_nodes,
    random_interventions,
)
from gcp.student import GCPStudent, LabelOnlyStudent

__all__ = [
    "RetrainResult", "TrainConfig", "TrainResult", "counterfactual_impact", "evaluate",
    "fit_student", "intervention_losses", "targeted_retrain",
]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, str], None]
Student = GCPStudent | LabelOnlyStudent
_MONITORS = ("loss", "task_loss", "accuracy")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings for `fit_student` and `targeted_retrain`."""

    concept_weight: float = 1.0  # weight of the mean concept loss next to the task loss
    epochs: int = 200  # maximum passes over the training rows
    batch_size: int = 64  # rows per optimisation step
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 1e-2  # AdamW weight decay, applied only to trained parameters
    patience: int = 20  # epochs without validation improvement before stopping
    seed: int = 0  # seeds the split, the shuffling, dropout and the training interventions
    val_fraction: float = 0.2  # share of rows held out for validation when none is given
    min_val_rows: int = 10  # smaller held-out sets disable early stopping (all epochs run)
    intervention_prob: float = 0.1  # per node and row, chance of training under do(node = teacher value)
    monitor: str = "loss"  # validation metric for early stopping: loss, task_loss or accuracy
    refine_output: bool = True  # fit_student: then retrain the output node alone on the task loss
    num_threads: int | None = 1  # torch threads while training; None keeps the process setting

    def __post_init__(self) -> None:
        for name, minimum in (("epochs", 1), ("batch_size", 1), ("patience", 1), ("min_val_rows", 0)):
            _check_integer(name, getattr(self, name), minimum)
        if self.num_threads is not None:
            _check_integer("num_threads", self.num_threads, 1)
        for name in ("concept_weight", "lr", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise StudentError(f"TrainConfig.{name} must be a number >= 0, got {value!r}")
        if self.lr == 0:
            raise StudentError("TrainConfig.lr must be greater than 0, got 0")
        for name in ("val_fraction", "intervention_prob"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise StudentError(f"TrainConfig.{name} must be in [0, 1), got {value!r}")
        if self.monitor not in _MONITORS:
            raise StudentError(f"TrainConfig.monitor must be one of {list(_MONITORS)}, got {self.monitor!r}")


def _check_integer(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise StudentError(f"TrainConfig.{name} must be an integer >= {minimum}, got {value!r}")


@dataclass
class TrainResult:
    """Record of one `fit_student` call."""

    history: list[dict[str, float]]  # one dict per epoch: stage, epoch, train_loss, val_* metrics, seconds
    best_epoch: int  # 1-based epoch of the joint stage whose weights were kept
    metrics: dict[str, float]  # evaluate() on the validation rows, or on the training rows without them
    trained_nodes: list[str]  # nodes whose modules were updated
    seconds: float  # wall time of the whole call
    stopped_early: bool = False  # patience ran out before config.epochs in the joint stage
    n_train: int = 0  # rows used for gradient steps
    n_val: int = 0  # rows used for early stopping (0 = none)


@dataclass
class RetrainResult:
    """Record of one `targeted_retrain` call."""

    scores: dict[str, float]  # node -> counterfactual impact delta (output node excluded)
    chosen: list[str]  # retrained nodes, in topological order
    before: dict[str, float]  # evaluate() before retraining
    after: dict[str, float]  # evaluate() after retraining, on the same rows
    seconds: float  # wall time of the whole call
    history: list[dict[str, float]] = field(default_factory=list)  # per-epoch history
    best_epoch: int = 0  # 1-based epoch whose weights were kept; 0 = the starting weights


@contextmanager
def only_trainable(student: Student, params: list[torch.nn.Parameter]) -> Iterator[None]:
    """Turn off gradients of every parameter of `student` outside `params` while the block runs."""
    trainable = {id(p) for p in params}
    frozen = [p for p in student.parameters() if id(p) not in trainable and p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with `count` torch intra-op threads, then restore the previous count.

    The node modules are tiny, so each operation costs less than waking extra threads:
    training them on one thread was faster than on two in our measurements, and much faster
    on a busy machine. The setting is process-wide while the block runs.
    """
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ---------------------------------------------------------------------- training loop


def split_indices(n_rows: int, config: TrainConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Carve a validation split: the same (train, val) row indices for the same seed.

    Returns ``(all rows, None)`` when ``val_fraction`` of the rows would be fewer than
    ``min_val_rows`` (or than 1, or all rows); training then runs every epoch.
    """
    n_val = int(round(n_rows * config.val_fraction))
    if n_val < max(config.min_val_rows, 1) or n_val >= n_rows:
        logger.info("no validation split: %d rows held out would be too few; running all epochs", n_val)
        return np.arange(n_rows), None
    order = np.random.default_rng(config.seed).permutation(n_rows)
    return order[n_val:], order[:n_val]


def _split(x: torch.Tensor, y: torch.Tensor, X_val: Any, Y_val: Any, student: Student,
           config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    if X_val is not None or Y_val is not None:
        if X_val is None or Y_val is None:
            raise StudentError("pass both X_val and Y_val, or neither to carve a validation split")
        xv = student.check_embeddings(X_val)
        return x, y, xv, check_labels(student, Y_val, len(xv))
    train, val = split_indices(len(x), config)
    if val is None:
        return x, y, None, None
    train, val = torch.from_numpy(train), torch.from_numpy(val)
    return x[train], y[train], x[val], y[val]


def is_better(metrics: dict[str, float], best: dict[str, float] | None, monitor: str) -> bool:
    if best is None:
        return True
    if monitor == "accuracy":
        return (metrics["accuracy"], -metrics["task_loss"]) > (best["accuracy"], -best["task_loss"])
    return metrics[monitor] < best[monitor] - 1e-6


def _run_epoch(student: Student, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
               optimizer: torch.optim.Optimizer, generator: torch.Generator,
               concept_nodes: Sequence[str]) -> float:
    """Take one optimisation step per batch and return the mean training loss."""
    student.train()
    intervenable = non_output_nodes(student)
    total = 0.0
    for batch in torch.randperm(len(x), generator=generator).split(config.batch_size):
        xb, yb = x[batch], y[batch]
        do = random_interventions(student, yb, config.intervention_prob, intervenable, generator)
        loss, _, _ = joint_loss(student, student(xb, do), yb, concept_weight=config.concept_weight,
                                concept_nodes=concept_nodes)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(batch)
    return total / max(len(x), 1)


def _train(student: Student, x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor | None,
           yv: torch.Tensor | None, config: TrainConfig, params: list[torch.nn.Parameter],
           concept_nodes: Sequence[str], on_progress: ProgressCallback | None, *,
           keep_start: bool = False) -> tuple[list, int, bool]:
    """Run the optimisation loop and restore the best weights; return history, best epoch, stopped.

    With `keep_start` the starting weights compete as epoch 0, so retraining never leaves the
    student worse on the validation rows than it found it.
    """
    if not params:
        return [], 0, False
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, float]] = []
    best, best_state, best_epoch, waited = None, None, 0, 0
    if keep_start and xv is not None:
        best = evaluate_tensors(student, xv, yv, config.concept_weight, concept_nodes)
        best_state = {k: v.detach().clone() for k, v in student.state_dict().items()}
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        train_loss = _run_epoch(student, x, y, config, optimizer, generator, concept_nodes)
        record = {"stage": 1.0, "epoch": float(epoch), "train_loss": train_loss}
        if xv is not None:
            metrics = evaluate_tensors(student, xv, yv, config.concept_weight, concept_nodes)
            record.update({f"val_{k}": v for k, v in metrics.items() if k != "n"})
            if is_better(metrics, best, config.monitor):
                best, best_epoch, waited = metrics, epoch, 0
                best_state = {k: v.detach().clone() for k, v in student.state_dict().items()}
            else:
                waited += 1
        else:
            best_epoch = epoch
        record["seconds"] = time.perf_counter() - started
        history.append(record)
        if on_progress is not None:
            shown = f", val accuracy {record['val_accuracy']:.3f}" if "val_accuracy" in record else ""
            on_progress(epoch, config.epochs, f"epoch {epoch}: train loss {record['train_loss']:.4f}{shown}")
        if xv is not None and waited >= config.patience:
            logger.info("early stop after epoch %d; best epoch %d", epoch, best_epoch)
            break
    if best_state is not None:
        student.load_state_dict(best_state)
    student.eval()
    return history, best_epoch, len(history) < config.epochs


def _refine_output(student: GCPStudent, xt: torch.Tensor, yt: torch.Tensor, xv: torch.Tensor,
                   yv: torch.Tensor, config: TrainConfig) -> list[dict[str, float]]:
    """Retrain only the output node on the task loss, early-stopped on the validation task loss.

    The joint stage stops when the validation loss, mostly concept losses, stops improving,
    which need not be the best point for the output node. In tuning runs on the movie-review
    data (4 label budgets, 5 seeds each) this stage changed gold accuracy by -0.5 to +1.3
    points, +0.3 on average. The joint-stage weights do not compete as epoch 0 here: with
    that rule, gold accuracy at 400 labels fell from 0.724 to 0.706 on the same benchmark.
    """
    params = student.node_parameters(student.graph.output)
    with only_trainable(student, params):
        history, _, _ = _train(student, xt, yt, xv, yv, replace(config, monitor="task_loss"), params, [], None)
    return [record | {"stage": 2.0} for record in history]


def fit_student(student: Student, X: Any, Y: Any, *, X_val: Any = None, Y_val: Any = None,
                config: TrainConfig | None = None, on_progress: ProgressCallback | None = None) -> TrainResult:
    """Train every module of `student` on the joint loss, with early stopping.

    With ``config.refine_output`` (the default) and a validation split, a second stage then
    retrains the output node of a GCPStudent alone on the task loss (see `_refine_output`).

    Parameters
    ----------
    student : GCPStudent or LabelOnlyStudent
        Trained in place; a LabelOnlyStudent uses only the output column of `Y`.
    X : array-like of shape (n_texts, input_dim)
    Y : array-like of int, shape (n_texts, n_nodes)
        Teacher value indices, -1 where missing.
    X_val, Y_val : array-like, optional
        Validation rows for early stopping. Without them, ``config.val_fraction`` of the rows
        is held out (the same rows for the same seed).
    config : TrainConfig, optional
    on_progress : callable, optional
        Called as ``on_progress(epoch, max_epochs, info)`` after each epoch.

    Returns
    -------
    TrainResult

    Raises
    ------
    StudentError
        If the shapes or label values are invalid, or no row has any label.
    """
    config = config or TrainConfig()
    started = time.perf_counter()
    x = student.check_embeddings(X)
    y = check_labels(student, Y, len(x))
    if not (y >= 0).any():
        raise StudentError("no text has any label: annotate some texts before training the student")
    concept_nodes = non_output_nodes(student)
    with torch.random.fork_rng(devices=[]), torch_threads(config.num_threads):
        torch.manual_seed(config.seed)
        xt, yt, xv, yv = _split(x, y, X_val, Y_val, student, config)
        history, best_epoch, stopped = _train(student, xt, yt, xv, yv, config, list(student.parameters()),
                                              concept_nodes, on_progress)
        if config.refine_output and isinstance(student, GCPStudent) and xv is not None:
            history += _refine_output(student, xt, yt, xv, yv, config)
    metrics = evaluate_tensors(student, xv if xv is not None else xt, yv if yv is not None else yt,
                        config.concept_weight, concept_nodes)
    seconds = time.perf_counter() - started
    logger.info("trained %s student on %d rows in %.1f s: accuracy %.3f", student.kind, len(xt), seconds,
                metrics["accuracy"])
    return TrainResult(history=history, best_epoch=best_epoch, metrics=metrics,
                       trained_nodes=list(student.node_names), seconds=seconds, stopped_early=stopped,
                       n_train=len(xt), n_val=0 if xv is None else len(xv))


# ---------------------------------------------------------------------- counterfactual impact


def _require_gcp(student: Student, what: str) -> GCPStudent:
    if not isinstance(student, GCPStudent):
        raise StudentError(f"{what} needs concept nodes; a {type(student).__name__} has none")
    return student


def counterfactual_impact(student: GCPStudent, X: Any, Y: Any) -> dict[str, float]:
    """Estimate how much the final loss would drop if each node took the teacher's value.

    ``delta_i = L(full) - L(do(c_i = teacher value))``, the mean task cross-entropy against the
    teacher's label over the rows that have one. Rows without a teacher value for node i count
    as unchanged. A large positive delta means node i's errors cost a lot downstream. The
    output node is excluded: intervening on it would set the label itself.

    Returns
    -------
    dict of str to float
        Node -> delta, for every non-output node in graph order.
    """
    student = _require_gcp(student, "counterfactual_impact")
    x = student.check_embeddings(X)
    y = check_labels(student, Y, len(x))
    target = y[:, label_columns(student)[student.graph.output]]
    labelled = target >= 0
    if not labelled.any():
        raise StudentError(
            f"no text has a teacher label for the output node {student.graph.output!r}; "
            "counterfactual impact needs labelled texts"
        )
    nodes = non_output_nodes(student)
    full, losses, _ = intervention_losses(student, x[labelled], y[labelled], target[labelled], nodes)
    return {name: float((full - losses[name]).mean()) for name in nodes}


def targeted_retrain(student: GCPStudent, X: Any, Y: Any, *, top_k: int = 2, nodes: Sequence[str] | None = None,
                     X_val: Any = None, Y_val: Any = None, config: TrainConfig | None = None,
                     on_progress: ProgressCallback | None = None) -> RetrainResult:
    """Retrain only the modules of the nodes whose errors cost the most downstream.

    Nodes are ranked by `counterfactual_impact` on (X, Y). The chosen nodes' modules
    (transition, value embeddings, head) train on their concept loss plus the task loss,
    which back-propagates through the frozen descendants. Every other parameter stays
    bit-identical. With validation rows, the starting weights count as epoch 0, so when no
    epoch beats them on the validation loss the student is left unchanged
    (``best_epoch == 0``).

    Parameters
    ----------
    student : GCPStudent
        Retrained in place.
    X, Y : array-like
        Labelled rows, as for `fit_student`.
    top_k : int, default=2
        Number of highest-impact nodes to retrain when `nodes` is not given.
    nodes : sequence of str, optional
        Retrain exactly these nodes instead (the output node is allowed here), e.g.
        ``diff(old, new).retrain_nodes(new)`` after a graph edit.
    X_val, Y_val, config, on_progress
        As for `fit_student`; ``before`` and ``after`` are measured on the validation rows.

    Returns
    -------
    RetrainResult
    """
    student = _require_gcp(student, "targeted_retrain")
    config = config or TrainConfig()
    started = time.perf_counter()
    scores = counterfactual_impact(student, X, Y)
    if nodes is None:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise StudentError(f"top_k must be a positive integer, got {top_k!r}")
        order = student.graph.topological_order
        ranked = sorted(scores, key=lambda n: (-scores[n], order.index(n)))
        wanted = set(ranked[:top_k])
    else:
        wanted = {student.graph.node(name).name for name in nodes}
    chosen = [n for n in student.graph.topological_order if n in wanted]
    x = student.check_embeddings(X)
    y = check_labels(student, Y, len(x))
    concept_nodes = [n for n in chosen if n != student.graph.output]
    params = [p for name in chosen for p in student.node_parameters(name)]
    with torch.random.fork_rng(devices=[]), torch_threads(config.num_threads):
        torch.manual_seed(config.seed)
        xt, yt, xv, yv = _split(x, y, X_val, Y_val, student, config)
        xe, ye = (xv, yv) if xv is not None else (xt, yt)
        before = evaluate_tensors(student, xe, ye, config.concept_weight, non_output_nodes(student))
        with only_trainable(student, params):
            history, best_epoch, _ = _train(student, xt, yt, xv, yv, config, params, concept_nodes, on_progress,
                                            keep_start=True)
    after = evaluate_tensors(student, xe, ye, config.concept_weight, non_output_nodes(student))
    logger.info("retrained %s: accuracy %.3f -> %.3f", chosen, before["accuracy"], after["accuracy"])
    return RetrainResult(scores=scores, chosen=chosen, before=before, after=after,
                         seconds=time.perf_counter() - started, history=history, best_epoch=best_epoch)
