"""Optional fine-tuning of the top encoder layers jointly with a student.

A frozen sentence encoder caps how well any student can do. `fit_student_finetune` trains
the top N transformer layers of a copy of the encoder together with the student's modules.
It reads texts instead of cached embeddings. The tuned layers end up in
``student.encoder_state``, which the checkpoint saves as ``encoder_layers.safetensors``.
Embeddings of a tuned student must be recomputed with `encoder_for_student` or
`encode_for_student`; the embedding cache of the frozen encoder does not apply to them.

Only BERT-style models whose layers sit in ``model.encoder.layer`` are supported (such as
all-MiniLM-L6-v2). The caller's encoder is never modified.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gcp.encoder import TextEncoder
from gcp.exceptions import EncoderError, StudentError
from gcp.objective import check_labels, evaluate_tensors, joint_loss, non_output_nodes, random_interventions
from gcp.student import GCPStudent, LabelOnlyStudent
from gcp.training import TrainConfig, TrainResult, fit_student, is_better, split_indices

__all__ = ["FinetuneResult", "encode_for_student", "encoder_for_student", "fit_student_finetune"]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, str], None]
Student = GCPStudent | LabelOnlyStudent
DEFAULT_CONFIG = TrainConfig(epochs=8, batch_size=16, lr=1e-3, patience=2)


@dataclass
class FinetuneResult:
    """Record of one `fit_student_finetune` call."""

    history: list[dict[str, float]]  # one dict per epoch, as in TrainResult
    best_epoch: int  # 1-based epoch whose weights were kept
    metrics: dict[str, float]  # evaluation on the validation texts (training texts without them)
    tuned_layers: list[int]  # indices of the fine-tuned transformer layers
    seconds: float  # wall time of the whole call
    encoder: TextEncoder  # encoder copy with the tuned layers, in eval mode, for new embeddings
    warm_start: TrainResult | None = None  # the fit on frozen embeddings that came first, if any


def _layers(encoder: TextEncoder) -> torch.nn.ModuleList:
    layers = getattr(getattr(encoder.model, "encoder", None), "layer", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise EncoderError(
            f"cannot fine-tune {encoder.model_id!r}: fine-tuning needs a BERT-style model with "
            "model.encoder.layer; use the default all-MiniLM-L6-v2 or train on frozen embeddings"
        )
    return layers


def _layer_prefixes(indices: Sequence[int]) -> tuple[str, ...]:
    return tuple(f"encoder.layer.{i}." for i in indices)


def _tuned_state(model: torch.nn.Module, indices: Sequence[int]) -> dict[str, torch.Tensor]:
    prefixes = _layer_prefixes(indices)
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(prefixes)}


def encoder_for_student(student: Student, encoder: TextEncoder) -> TextEncoder:
    """Return the encoder whose embeddings `student` expects.

    That is `encoder` itself for a student trained on frozen embeddings, and otherwise a new
    copy of `encoder` with the student's tuned layers loaded (the model loads again, about
    2 s for all-MiniLM-L6-v2).

    Raises
    ------
    EncoderError
        If the student was tuned on another encoder model.
    """
    if not student.encoder_state:
        return encoder
    info = student.encoder_info or {}
    if info.get("model_id") not in (None, encoder.model_id):
        raise EncoderError(
            f"the student's tuned layers belong to encoder {info.get('model_id')!r}, not {encoder.model_id!r}; "
            "load the student with the encoder it was trained with"
        )
    tuned = TextEncoder(encoder.config)
    result = tuned.model.load_state_dict(student.encoder_state, strict=False)
    if result.unexpected_keys:
        raise EncoderError(
            f"the student's tuned encoder layers do not fit {encoder.model_id!r}: unexpected keys "
            f"{result.unexpected_keys[:3]}"
        )
    tuned.model.eval()
    return tuned


def encode_for_student(student: Student, encoder: TextEncoder, texts: Sequence[str], *,
                       on_progress: ProgressCallback | None = None) -> np.ndarray:
    """Embed `texts` the way `student` expects (with its tuned layers, if any)."""
    return encoder_for_student(student, encoder).encode(texts, on_progress=on_progress)


def _embed(encoder: TextEncoder, texts: Sequence[str]) -> torch.Tensor:
    """Embed texts without gradients, in eval mode, keeping row order."""
    return torch.from_numpy(encoder.encode(list(texts)))


def fit_student_finetune(student: Student, encoder: TextEncoder, texts: Sequence[str], Y: Any, *,
                         layers: int | None = None, encoder_lr: float = 5e-5, texts_val: Sequence[str] | None = None,
                         Y_val: Any = None, config: TrainConfig | None = None, warm_start: bool = True,
                         on_progress: ProgressCallback | None = None) -> FinetuneResult:
    """Train `student` and the top `layers` encoder layers together on raw texts.

    Parameters
    ----------
    student : GCPStudent or LabelOnlyStudent
        Trained in place; afterwards ``student.encoder_state`` contains the tuned layers.
    encoder : TextEncoder
        The frozen encoder the student's input width comes from; it is copied, not changed.
    texts : sequence of str
    Y : array-like of int, shape (len(texts), n_nodes)
        Teacher value indices, -1 where missing.
    layers : int, optional
        Number of top transformer layers to tune; all of them by default (all-MiniLM-L6-v2
        has 6). With these defaults a GCP student on 600 demo labels gained 2.8 points over
        the frozen encoder (docs/benchmarks.md). Tuning only the top 2 layers at 2e-5 for 4
        epochs gained nothing in single-seed runs at 200 and 600 demo labels.
    encoder_lr : float, default=5e-5
        Learning rate of the tuned layers; the student's modules use ``config.lr``.
    texts_val, Y_val : optional
        Validation texts for early stopping; without them ``config.val_fraction`` is held out.
    config : TrainConfig, optional
        Defaults to 8 epochs, batch size 16, patience 2, since every epoch runs the encoder.
        ``config.num_threads`` and ``config.refine_output`` are ignored, because the encoder
        gains from every thread torch has and each extra stage would run the encoder again.
    warm_start : bool, default=True
        First fit the student alone on frozen embeddings of the same texts (`fit_student`
        with its default settings and the same validation texts), then tune both. Without
        it, a fresh student's heads get only the few epochs of the joint stage and can end
        below a student trained on frozen embeddings.
    on_progress : callable, optional
        Called as ``on_progress(epoch, max_epochs, info)`` after each epoch.

    Returns
    -------
    FinetuneResult
    """
    config = config or DEFAULT_CONFIG
    started = time.perf_counter()
    texts = list(texts)
    if any(not isinstance(t, str) for t in texts):
        raise StudentError("texts must be strings")
    y = check_labels(student, Y, len(texts))
    tuned = TextEncoder(encoder.config)
    stack = _layers(tuned)
    if layers is None:
        layers = len(stack)
    if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= len(stack):
        raise StudentError(f"layers must be an integer in 1..{len(stack)}, got {layers!r}")
    if tuned.dim != student.input_dim:
        raise StudentError(f"the encoder gives {tuned.dim}-d embeddings but the student expects {student.input_dim}")
    indices = list(range(len(stack) - layers, len(stack)))
    for p in tuned.model.parameters():
        p.requires_grad_(False)
    encoder_params = [p for i in indices for p in stack[i].parameters()]
    for p in encoder_params:
        p.requires_grad_(True)

    if texts_val is not None:
        texts_train, y_train = texts, y
        texts_val = list(texts_val)
        y_val = check_labels(student, Y_val, len(texts_val))
    else:
        train_rows, val_rows = split_indices(len(texts), config)
        texts_train, y_train = [texts[i] for i in train_rows], y[torch.from_numpy(train_rows)]
        texts_val = None if val_rows is None else [texts[i] for i in val_rows]
        y_val = None if val_rows is None else y[torch.from_numpy(val_rows)]

    warm = None
    if warm_start:
        warm = fit_student(student, _embed(tuned, texts_train).numpy(), y_train.numpy(),
                           X_val=None if texts_val is None else _embed(tuned, texts_val).numpy(),
                           Y_val=None if y_val is None else y_val.numpy(),
                           config=TrainConfig(seed=config.seed, val_fraction=0.0))
    concepts = non_output_nodes(student)
    optimizer = torch.optim.AdamW([
        {"params": list(student.parameters()), "lr": config.lr},
        {"params": encoder_params, "lr": encoder_lr},
    ], weight_decay=config.weight_decay)
    history: list[dict[str, float]] = []
    best, best_student, best_layers, best_epoch, waited = None, None, None, 0, 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        for epoch in range(1, config.epochs + 1):
            epoch_started = time.perf_counter()
            student.train()
            tuned.model.train()
            total = 0.0
            for batch in torch.randperm(len(texts_train), generator=generator).split(config.batch_size):
                x = tuned.forward_pooled(tuned.encode_tokens([texts_train[i] for i in batch]))  # (b, dim)
                do = random_interventions(student, y_train[batch], config.intervention_prob, concepts, generator)
                loss, _, _ = joint_loss(student, student(x, do), y_train[batch],
                                        concept_weight=config.concept_weight, concept_nodes=concepts)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(batch)
            record = {"epoch": float(epoch), "train_loss": total / max(len(texts_train), 1)}
            if texts_val is not None:
                metrics = evaluate_tensors(student, _embed(tuned, texts_val), y_val,
                                           config.concept_weight, concepts)
                record.update({f"val_{k}": v for k, v in metrics.items() if k != "n"})
                if is_better(metrics, best, config.monitor):
                    best, best_epoch, waited = metrics, epoch, 0
                    best_student = {k: v.detach().clone() for k, v in student.state_dict().items()}
                    best_layers = _tuned_state(tuned.model, indices)
                else:
                    waited += 1
            else:
                best_epoch = epoch
            record["seconds"] = time.perf_counter() - epoch_started
            history.append(record)
            if on_progress is not None:
                on_progress(epoch, config.epochs, f"epoch {epoch}: train loss {record['train_loss']:.4f}")
            if texts_val is not None and waited >= config.patience:
                break
    if best_student is not None:
        student.load_state_dict(best_student)
        tuned.model.load_state_dict(best_layers, strict=False)
    for p in encoder_params:
        p.requires_grad_(False)
    tuned.model.eval()
    student.eval()
    student.encoder_state = _tuned_state(tuned.model, indices)
    student.encoder_info = {"model_id": encoder.model_id, "layers": indices, "n_layers": len(stack)}
    eval_texts, eval_y = (texts_val, y_val) if texts_val is not None else (texts_train, y_train)
    metrics = evaluate_tensors(student, _embed(tuned, eval_texts), eval_y,
                               config.concept_weight, concepts)
    seconds = time.perf_counter() - started
    logger.info("fine-tuned encoder layers %s with the %s student in %.1f s", indices, student.kind, seconds)
    return FinetuneResult(history=history, best_epoch=best_epoch, metrics=metrics, tuned_layers=indices,
                          seconds=seconds, encoder=tuned, warm_start=warm)
