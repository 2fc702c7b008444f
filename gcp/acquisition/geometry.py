"""Embedding-space computations of the strategies: pure numpy, bounded memory.

This module owns density, similarity to a set, greedy diverse selection, k-center greedy
(`coreset`) and k-means++ seeding on gradient embeddings (`badge`). Every pairwise
computation runs in blocks of at most ``chunk_size x chunk_size`` similarities, so no
``n x n`` matrix is built. Ties always go to the text with the smallest `tiebreak` value
(a seeded permutation), which makes every selection deterministic. Inputs are not
validated here, because `gcp.acquisition.selection` checks shapes and finiteness.
"""

from __future__ import annotations

import numpy as np


def row_norms(X: np.ndarray, *, chunk_size: int) -> np.ndarray:
    """Return the Euclidean norm of each row as float64, without a float64 copy of `X`."""
    norms = np.empty(X.shape[0], dtype=np.float64)
    for start in range(0, X.shape[0], chunk_size):
        block = X[start : start + chunk_size]
        norms[start : start + chunk_size] = np.sqrt(np.einsum("ij,ij->i", block, block))
    return norms


def _safe(norms: np.ndarray) -> np.ndarray:
    # A zero vector has cosine 0 with everything: its dot products are 0 whatever we divide by.
    return np.where(norms > 0, norms, 1.0)


def _cosine_block(
    x_block: np.ndarray, y_block: np.ndarray, x_scale: np.ndarray, y_scale: np.ndarray
) -> np.ndarray:
    # Scaling in place in the embeddings' dtype keeps one (chunk_x, chunk_y) float32 array.
    cos = x_block @ y_block.T  # (chunk_x, chunk_y)
    cos *= (1.0 / x_scale).astype(cos.dtype)[:, None]
    cos *= (1.0 / y_scale).astype(cos.dtype)[None, :]
    return cos


def max_cosine_similarity(
    X: np.ndarray, Y: np.ndarray | None, *, chunk_size: int, x_norms: np.ndarray | None = None
) -> np.ndarray:
    """Return, for each row of `X`, its largest cosine similarity to any row of `Y`.

    Returns ``-1`` for every row when `Y` is None or empty.
    """
    best = np.full(X.shape[0], -1.0)
    if Y is None or Y.shape[0] == 0:
        return best
    x_norms = _safe(row_norms(X, chunk_size=chunk_size) if x_norms is None else x_norms)
    y_norms = _safe(row_norms(Y, chunk_size=chunk_size))
    for ys in range(0, Y.shape[0], chunk_size):
        y_block = Y[ys : ys + chunk_size]
        y_scale = y_norms[ys : ys + chunk_size]
        for xs in range(0, X.shape[0], chunk_size):
            rows = slice(xs, xs + chunk_size)
            cos = _cosine_block(X[rows], y_block, x_norms[rows], y_scale)
            np.maximum(best[rows], cos.max(axis=1), out=best[rows])
    return best


def density(
    X: np.ndarray,
    *,
    n_neighbors: int,
    sample_size: int,
    chunk_size: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Compute the representativeness of each pool text in [0, 1].

    ``R(x)`` is the mean cosine similarity of `x` to its `n_neighbors` nearest texts
    among a random reference sample of at most `sample_size` pool texts (a text is never
    its own neighbour), clipped to [0, 1]. The sample bounds the cost at
    ``n * sample_size`` similarities. When the pool has a single text, R is 0.
    """
    n = X.shape[0]
    m = min(n, sample_size)
    k = min(n_neighbors, m - 1)
    if k < 1:
        return np.zeros(n)
    reference = np.sort(rng.choice(n, size=m, replace=False))
    position = np.full(n, -1)
    position[reference] = np.arange(m)
    x_norms = _safe(row_norms(X, chunk_size=chunk_size))
    ref = X[reference]
    ref_norms = x_norms[reference]
    values = np.empty(n)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        cos = _cosine_block(X[start:stop], ref, x_norms[start:stop], ref_norms)
        rows = np.flatnonzero(position[start:stop] >= 0)
        cos[rows, position[start:stop][rows]] = -np.inf  # exclude each text itself
        cos.partition(m - k, axis=1)
        values[start:stop] = cos[:, m - k :].mean(axis=1, dtype=np.float64)  # mean of the k largest
    return np.clip(values, 0.0, 1.0)


def argmax_tiebreak(values: np.ndarray, tiebreak: np.ndarray) -> int:
    """Return the index of the largest value. Among equal values the smallest `tiebreak` wins."""
    candidates = np.flatnonzero(values == values.max())
    return int(candidates[np.argmin(tiebreak[candidates])])


def top_k(scores: np.ndarray, k: int, tiebreak: np.ndarray) -> np.ndarray:
    """Return the indices of the `k` largest scores, best first, ties by `tiebreak`."""
    return np.lexsort((tiebreak, -scores))[:k]


def greedy_diverse_selection(
    scores: np.ndarray,
    X: np.ndarray,
    labelled: np.ndarray | None,
    batch_size: int,
    *,
    gamma: float,
    chunk_size: int,
    tiebreak: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick texts one at a time by ``score * (1 - s)^gamma``.

    ``s`` is a text's largest cosine similarity to the labelled texts and the texts
    already picked, clipped to [0, 1]. A duplicate of a chosen text gets factor 0.

    Returns
    -------
    indices : ndarray of shape (batch_size,)
        In the order of picking.
    factors : ndarray of shape (batch_size,)
        The diversity factor of each picked text when it was picked.
    """
    x_norms = row_norms(X, chunk_size=chunk_size)
    safe_norms = _safe(x_norms)
    similarity = np.clip(
        max_cosine_similarity(X, labelled, chunk_size=chunk_size, x_norms=x_norms), 0.0, 1.0
    )
    picked = np.empty(batch_size, dtype=np.int64)
    factors = np.empty(batch_size)
    available = np.ones(X.shape[0], dtype=bool)
    for step in range(batch_size):
        factor = (1.0 - similarity) ** gamma
        value = np.where(available, scores * factor, -np.inf)
        index = argmax_tiebreak(value, tiebreak)
        picked[step], factors[step] = index, factor[index]
        available[index] = False
        cos = (X @ X[index]) / (safe_norms * safe_norms[index])  # (n,)
        np.maximum(similarity, np.clip(cos, 0.0, 1.0), out=similarity)
    return picked, factors


def _squared_distances_to(X: np.ndarray, x_sq: np.ndarray, point: np.ndarray) -> np.ndarray:
    point = point.astype(np.float64)
    return np.maximum(x_sq + point @ point - 2.0 * (X @ point.astype(X.dtype)), 0.0)


def k_center_greedy(
    X: np.ndarray,
    labelled: np.ndarray | None,
    batch_size: int,
    *,
    chunk_size: int,
    tiebreak: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick texts by k-center greedy: each pick is the text farthest from all centers.

    The centers are the labelled texts and the texts already picked. Without labelled
    texts, the first pick is the text nearest to the pool mean, scored by its distance
    to that mean.

    Returns
    -------
    indices : ndarray of shape (batch_size,)
    distances : ndarray of shape (batch_size,)
        Euclidean distance of each pick to its nearest center when it was picked.
    """
    n = X.shape[0]
    x_sq = row_norms(X, chunk_size=chunk_size) ** 2
    if labelled is not None and labelled.shape[0] > 0:
        nearest = _min_squared_distances(X, x_sq, labelled, chunk_size=chunk_size)
        return _extend_k_center(X, x_sq, nearest, [], [], batch_size, tiebreak)
    mean = np.zeros(X.shape[1])
    for start in range(0, n, chunk_size):
        mean += X[start : start + chunk_size].sum(axis=0, dtype=np.float64)
    to_mean = _squared_distances_to(X, x_sq, mean / n)
    first = int(np.lexsort((tiebreak, to_mean))[0])
    nearest = _squared_distances_to(X, x_sq, X[first])
    return _extend_k_center(
        X, x_sq, nearest, [first], [np.sqrt(to_mean[first])], batch_size, tiebreak
    )


def _min_squared_distances(
    X: np.ndarray, x_sq: np.ndarray, Y: np.ndarray, *, chunk_size: int
) -> np.ndarray:
    nearest = np.full(X.shape[0], np.inf)
    y_sq = row_norms(Y, chunk_size=chunk_size) ** 2
    for ys in range(0, Y.shape[0], chunk_size):
        block = Y[ys : ys + chunk_size]
        for xs in range(0, X.shape[0], chunk_size):
            rows = slice(xs, xs + chunk_size)
            d2 = X[rows] @ block.T  # (chunk_x, chunk_y), becomes squared distances in place
            d2 *= -2.0
            d2 += x_sq[rows].astype(d2.dtype)[:, None]
            d2 += y_sq[ys : ys + chunk_size].astype(d2.dtype)[None, :]
            np.minimum(nearest[rows], d2.min(axis=1), out=nearest[rows])
    return np.maximum(nearest, 0.0)


def _extend_k_center(X, x_sq, nearest, picked, distances, batch_size, tiebreak):
    available = np.ones(X.shape[0], dtype=bool)
    available[picked] = False
    while len(picked) < batch_size:
        index = argmax_tiebreak(np.where(available, nearest, -np.inf), tiebreak)
        picked.append(index)
        distances.append(np.sqrt(nearest[index]))
        available[index] = False
        np.minimum(nearest, _squared_distances_to(X, x_sq, X[index]), out=nearest)
    return np.asarray(picked, dtype=np.int64), np.asarray(distances)


def badge_kmeans_pp(
    probs: np.ndarray,
    features: np.ndarray,
    batch_size: int,
    *,
    rng: np.random.Generator,
    tiebreak: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick texts by k-means++ seeding on BADGE gradient embeddings.

    The gradient embedding of x is ``g(x) = (p(x) - onehot(argmax p(x))) ⊗ f(x)``, the
    gradient of the cross-entropy at the predicted label with respect to the output
    head's last weight matrix. It is never built: with ``a = p - onehot``,
    ``||g(x) - g(c)||² = |a_x|²|f_x|² + |a_c|²|f_c|² - 2 (a_x·a_c)(f_x·f_c)``.
    The first pick has the largest ``|g|``. Each next pick is drawn with probability
    proportional to its squared distance to the nearest pick. When every remaining
    distance is 0, the next pick goes by `tiebreak`.

    Parameters
    ----------
    probs : ndarray of shape (n, k)
        Output-node probabilities.
    features : ndarray of shape (n, h)
        Input of the output node's head.

    Returns
    -------
    indices : ndarray of shape (batch_size,)
    squared_distances : ndarray of shape (batch_size,)
        ``|g|²`` for the first pick, then the squared distance to the nearest earlier pick.
    """
    p = np.asarray(probs, dtype=np.float64)
    a = p.copy()
    a[np.arange(p.shape[0]), p.argmax(axis=1)] -= 1.0
    a_sq = np.einsum("ij,ij->i", a, a)
    f_sq = np.einsum("ij,ij->i", features, features, dtype=np.float64)
    g_sq = a_sq * f_sq
    first = argmax_tiebreak(g_sq, tiebreak)
    picked, scores = [first], [g_sq[first]]
    available = np.ones(p.shape[0], dtype=bool)
    available[first] = False
    nearest = np.full(p.shape[0], np.inf)
    index = first
    while len(picked) < batch_size:
        cross = (a @ a[index]) * (features @ features[index]).astype(np.float64)  # (n,)
        np.minimum(nearest, np.maximum(g_sq + g_sq[index] - 2.0 * cross, 0.0), out=nearest)
        weights = np.where(available, nearest, 0.0)
        total = weights.sum()
        if total > 0:
            index = int(np.searchsorted(np.cumsum(weights), rng.random() * total, side="right"))
            # Rounding can put the draw at the very end of the cumulative sum.
            index = min(index, int(np.flatnonzero(weights)[-1]))
        else:
            index = argmax_tiebreak(np.where(available, 0.0, -np.inf), tiebreak)
        picked.append(index)
        scores.append(weights[index])
        available[index] = False
    return np.asarray(picked, dtype=np.int64), np.asarray(scores)
