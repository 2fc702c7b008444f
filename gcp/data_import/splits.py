"""The split of imported texts into pool, validation and test, fixed at import.

This module owns `assign_splits`: a deterministic split, stratified by gold label, in
which every label keeps its share of the held-out rows. It does not store the splits:
`gcp.store` does, and acquisition only ever draws from the pool.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gcp.exceptions import DataImportError


def assign_splits(
    labels: Sequence[str | None],
    *,
    test_size: float = 0.2,
    validation_size: float = 0.0,
    seed: int = 0,
) -> list[str]:
    """Assign each row to the pool, validation or test split, stratified by label.

    Rows are grouped by label (rows without a label form one more group). Each group is
    shuffled with ``numpy.random.default_rng(seed)`` and gives its share of the test and
    validation rows, rounded so that the totals are ``round(test_size * n)`` and
    ``round(validation_size * n)``. The same labels in the same order always give the
    same splits.

    Parameters
    ----------
    labels : sequence of str or None
        Gold label of each row, None where unknown.
    test_size, validation_size : float
        Fractions of all rows; their sum must be below 1.
    seed : int, default=0

    Returns
    -------
    list of str
        ``"pool"``, ``"validation"`` or ``"test"`` for each row.
    """
    if not (0 <= test_size < 1 and 0 <= validation_size < 1 and test_size + validation_size < 1):
        raise DataImportError(
            f"invalid test_size={test_size} and validation_size={validation_size}: each must be "
            "in [0, 1) and their sum below 1, e.g. test_size=0.2"
        )
    n = len(labels)
    groups: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault("" if label is None else str(label), []).append(index)
    rng = np.random.default_rng(seed)
    shuffled = {key: [int(i) for i in rng.permutation(groups[key])] for key in sorted(groups)}
    sizes = {key: len(members) for key, members in shuffled.items()}
    n_test = _allocate(int(np.floor(test_size * n + 0.5)), sizes)
    left = {key: sizes[key] - n_test[key] for key in sizes}
    n_validation = _allocate(int(np.floor(validation_size * n + 0.5)), left)
    split = ["pool"] * n
    for key, members in shuffled.items():
        for index in members[: n_test[key]]:
            split[index] = "test"
        for index in members[n_test[key]: n_test[key] + n_validation[key]]:
            split[index] = "validation"
    return split


def _allocate(total: int, sizes: dict[str, int]) -> dict[str, int]:
    """Split `total` over groups in proportion to `sizes` (largest remainder method)."""
    available = sum(sizes.values())
    if available == 0 or total == 0:
        return {key: 0 for key in sizes}
    quotas = {key: total * size / available for key, size in sizes.items()}
    counts = {key: int(np.floor(quota)) for key, quota in quotas.items()}
    by_remainder = sorted(sizes, key=lambda key: (-(quotas[key] - counts[key]), key))
    for key in by_remainder[: total - sum(counts.values())]:
        counts[key] += 1
    return counts
