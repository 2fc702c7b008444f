"""Public entry point of acquisition: validate the request, run a strategy, name the texts.

This module owns `select_batch`, the strategy registry (`STRATEGIES`, `seed_strategies`,
`get_strategy`) and every check of the caller's input. It never receives the labelled or
held-out texts, so it trusts the caller to pass only unlabelled texts as the pool.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gcp.acquisition.config import AcquisitionConfig, Candidate
from gcp.acquisition.graph_aware import GraphAwareAcquisition
from gcp.acquisition.strategies import (
    BADGE,
    BALD,
    AcquisitionStrategy,
    CoreSet,
    Entropy,
    LeastConfidence,
    Margin,
    ProgressCallback,
    RandomSampling,
)
from gcp.exceptions import AcquisitionError, EmptyPoolError

logger = logging.getLogger(__name__)

_CLASSES: dict[str, type[AcquisitionStrategy]] = {
    cls.name: cls
    for cls in (
        RandomSampling,
        LeastConfidence,
        Margin,
        Entropy,
        BALD,
        CoreSet,
        BADGE,
        GraphAwareAcquisition,
    )
}

STRATEGIES: dict[str, str] = {name: cls.description for name, cls in _CLASSES.items()}
"""Strategy name -> one-line description, in display order."""

seed_strategies: tuple[str, ...] = tuple(n for n, c in _CLASSES.items() if not c.needs_student)
"""Strategies that work without a trained student: ``("random", "coreset")``."""


def get_strategy(name: str, *, config: AcquisitionConfig | None = None) -> AcquisitionStrategy:
    """Return the strategy called `name`, configured with `config`.

    Raises
    ------
    AcquisitionError
        If `name` is not a key of `STRATEGIES`. The message lists the valid names.
    """
    if name not in _CLASSES:
        raise AcquisitionError(
            f"unknown acquisition strategy {name!r}; valid strategies: {', '.join(_CLASSES)}"
        )
    return _CLASSES[name](config=config if config is not None else AcquisitionConfig())


def select_batch(
    strategy: str,
    *,
    pool_ids: Sequence[str],
    pool_embeddings: np.ndarray,
    labelled_embeddings: np.ndarray | None = None,
    batch_size: int,
    student: Any = None,
    graph: Any = None,
    node_weights: Mapping[str, float] | None = None,
    config: AcquisitionConfig | None = None,
    seed: int = 0,
    on_progress: ProgressCallback | None = None,
) -> list[Candidate]:
    """Choose the next texts to send to the teacher.

    Parameters
    ----------
    strategy : str
        A key of `STRATEGIES`.
    pool_ids : sequence of str
        Ids of the candidate texts: unlabelled and not held out for evaluation.
    pool_embeddings : ndarray of shape (n, d)
        Cached embeddings of the pool, row i for ``pool_ids[i]``.
    labelled_embeddings : ndarray of shape (m, d), optional
        Embeddings of the texts labelled so far. `coreset` and the diversity term of
        `gcp` keep away from them.
    batch_size : int
        Number of texts to choose, clipped to the pool size with a warning.
    student : GCPStudent or LabelOnlyStudent, optional
        Required by every strategy outside `seed_strategies`.
    graph : ConceptGraph, optional
        Defaults to ``student.graph``.
    node_weights : mapping of node name to float, optional
        Node criticality for `gcp`, e.g. ``criticality_weights(counterfactual_impact(...))``.
        None means `default_node_weights(graph)`.
    config : AcquisitionConfig, optional
    seed : int, default=0
        The same seed and inputs give the same batch.
    on_progress : callable, optional
        Called as ``on_progress(done, total, info)``.

    Returns
    -------
    list of Candidate
        Best first, with ``rank`` running from 1.

    Raises
    ------
    AcquisitionError
        For an unknown strategy, a missing student, a bad batch size, seed or input shape.
    EmptyPoolError
        If the pool has no text.
    """
    chosen = get_strategy(strategy, config=config)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise AcquisitionError(f"batch_size must be an integer, got {batch_size!r}")
    if batch_size < 1:
        raise AcquisitionError(f"invalid batch_size {batch_size}: choose at least 1 text")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise AcquisitionError(f"invalid seed {seed!r}: use an integer >= 0")
    ids, X = _check_pool(pool_ids, pool_embeddings)
    labelled = _check_labelled(labelled_embeddings, X.shape[1])
    if batch_size > len(ids):
        warnings.warn(
            f"batch_size {batch_size} is larger than the pool of {len(ids)} texts; "
            f"choosing all {len(ids)}",
            UserWarning,
            stacklevel=2,
        )
        batch_size = len(ids)
    if chosen.needs_student:
        if student is None:
            raise AcquisitionError(
                f"strategy {strategy!r} needs a trained student: train one first, or use a "
                f"seed strategy ({', '.join(seed_strategies)})"
            )
        graph = graph if graph is not None else getattr(student, "graph", None)
        if graph is None:
            raise AcquisitionError(f"strategy {strategy!r} needs the concept graph: pass graph=")
    selection = chosen.select(
        X,
        labelled,
        int(batch_size),
        student=student,
        graph=graph,
        node_weights=node_weights,
        seed=int(seed),
        on_progress=on_progress,
    )
    logger.info("%s chose %d of %d pool texts", strategy, len(selection.indices), len(ids))
    return [
        Candidate(text_id=ids[i], score=float(score), rank=rank, breakdown=breakdown)
        for rank, (i, score, breakdown) in enumerate(
            zip(selection.indices, selection.scores, selection.breakdowns), start=1
        )
    ]


def _check_embeddings(array: Any, argument: str) -> np.ndarray:
    X = np.asarray(array)
    if X.ndim != 2:
        raise AcquisitionError(f"{argument} must have shape (n_texts, dim), got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise AcquisitionError(f"{argument} must be real numbers, got dtype {X.dtype}")
    X = np.asarray(X, dtype=np.float32)  # no copy when the cache is already float32
    for start in range(0, X.shape[0], 8192):
        block = X[start : start + 8192]
        if not np.isfinite(block).all():
            row = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise AcquisitionError(
                f"{argument} row {row} contains NaN or infinite values; re-encode that text"
            )
    return X


def _check_pool(pool_ids: Sequence[str], pool_embeddings: Any) -> tuple[list[str], np.ndarray]:
    ids = [str(text_id) for text_id in pool_ids]
    if not ids:
        raise EmptyPoolError(
            "the pool is empty: every text is labelled or held out for evaluation; "
            "import more texts to acquire from"
        )
    X = _check_embeddings(pool_embeddings, "pool_embeddings")
    if X.shape[0] != len(ids):
        raise AcquisitionError(
            f"pool_ids has {len(ids)} ids but pool_embeddings has {X.shape[0]} rows; "
            "pass one embedding row per id"
        )
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        duplicates = sorted({i for i in ids if i in seen or seen.add(i)})
        raise AcquisitionError(f"pool_ids contains duplicates {duplicates[:5]}: ids must be unique")
    return ids, X


def _check_labelled(labelled: Any, dim: int) -> np.ndarray | None:
    if labelled is None:
        return None
    array = np.asarray(labelled)
    if array.size == 0:
        return None
    L = _check_embeddings(array, "labelled_embeddings")
    if L.shape[1] != dim:
        raise AcquisitionError(
            f"labelled_embeddings have dimension {L.shape[1]} but pool_embeddings have {dim}; "
            "encode both with the same encoder"
        )
    return L
