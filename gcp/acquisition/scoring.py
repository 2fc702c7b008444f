"""Uncertainty scores over probability arrays: pure numpy, no student, no embeddings.

Every function takes predicted probabilities, ``(n, k)`` for one node or ``(T, n, k)`` for
T MC-dropout samples, and returns one float64 value per text. Rows are assumed to be
probability vectors, and nothing here checks that they sum to 1.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def entropy(probs: np.ndarray, *, normalize: bool = False) -> np.ndarray:
    """Compute the Shannon entropy (nats) of each probability vector on the last axis.

    Parameters
    ----------
    probs : ndarray of shape (..., k)
        Probabilities; zeros contribute 0.
    normalize : bool, default=False
        Divide by ``log(k)`` so the value lies in [0, 1].

    Returns
    -------
    ndarray of shape (...)
    """
    p = np.asarray(probs, dtype=np.float64)
    plogp = p * np.log(np.where(p > 0, p, 1.0))
    values = np.maximum(-plogp.sum(axis=-1), 0.0)
    if normalize:
        values = values / np.log(p.shape[-1])
    return values


def least_confidence(probs: np.ndarray) -> np.ndarray:
    """Return ``1 - max_c p(c)`` for each row of ``probs`` (n, k)."""
    p = np.asarray(probs, dtype=np.float64)
    return 1.0 - p.max(axis=-1)


def margin(probs: np.ndarray) -> np.ndarray:
    """Return the gap between the two largest probabilities of each row (small = uncertain)."""
    p = np.asarray(probs, dtype=np.float64)
    top2 = np.partition(p, p.shape[-1] - 2, axis=-1)[..., -2:]  # (n, 2), unordered pair
    return np.abs(top2[..., 1] - top2[..., 0])


def mutual_information(mc_probs: np.ndarray, *, normalize: bool = False) -> np.ndarray:
    """Compute the BALD mutual information between prediction and model parameters.

    ``I = H(mean_t p_t) - mean_t H(p_t)`` over T MC-dropout samples.

    Parameters
    ----------
    mc_probs : ndarray of shape (T, n, k)
    normalize : bool, default=False
        Divide by ``log(k)`` so the value lies in [0, 1].

    Returns
    -------
    ndarray of shape (n,)
        Clipped at 0, since rounding can make the difference slightly negative.
    """
    p = np.asarray(mc_probs, dtype=np.float64)
    predictive = entropy(p.mean(axis=0))  # (n,)
    expected = entropy(p).mean(axis=0)  # (T, n) -> (n,)
    values = np.maximum(predictive - expected, 0.0)
    if normalize:
        values = values / np.log(p.shape[-1])
    return values


def node_uncertainty_terms(
    probs: Mapping[str, np.ndarray], weights: Mapping[str, float]
) -> dict[str, np.ndarray]:
    """Compute ``w_i * H_i(x) / log(k_i)`` for every node in `weights`.

    Parameters
    ----------
    probs : mapping of node name to ndarray (n, k_i)
        Predicted probabilities of each node.
    weights : mapping of node name to float
        Node weights ``w_i``. Every name must be a key of `probs`.

    Returns
    -------
    dict of node name to ndarray (n,)
    """
    return {name: w * entropy(probs[name], normalize=True) for name, w in weights.items()}


def node_disagreement_terms(
    mc_probs: Mapping[str, np.ndarray], weights: Mapping[str, float], *, alpha: float
) -> dict[str, np.ndarray]:
    """Compute ``alpha * w_i * I_i(x) / log(k_i)`` for every node in `weights`.

    ``I_i`` is the mutual information of node i over MC-dropout samples ``(T, n, k_i)``.
    """
    return {
        name: alpha * w * mutual_information(mc_probs[name], normalize=True)
        for name, w in weights.items()
    }
