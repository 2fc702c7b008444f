"""Configuration and result types of the acquisition strategies.

This module owns `AcquisitionConfig` (every knob of every strategy, validated on
construction) and `Candidate` (one chosen text with its score breakdown). It does not
check the pool or the student, because `gcp.acquisition.selection` does.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from gcp.exceptions import AcquisitionError


@dataclass(frozen=True)
class AcquisitionConfig:
    """Options of the acquisition strategies: `gcp` reads all of them, baselines a few.

    The switches turn single terms of the `gcp` score off for ablations. The formula
    that uses each coefficient is in the docstring of `gcp.acquisition`.

    Raises
    ------
    AcquisitionError
        If a size is smaller than its minimum or a coefficient is negative or not finite.
    """

    use_node_weights: bool = True  # False: every node weighs 1/N instead of its criticality
    use_disagreement: bool = True  # False: drop the MC-dropout mutual-information term
    use_representativeness: bool = True  # False: drop the density term
    use_diversity: bool = False  # True: greedy diverse selection instead of plain top-k (see gcp.acquisition)
    alpha: float = 1.0  # coefficient of the disagreement term
    beta: float = 0.25  # coefficient of the representativeness term
    gamma: float = 1.0  # exponent of the diversity factor (1 - max cosine)^gamma
    mc_samples: int = 20  # MC-dropout forward passes for `bald` and the disagreement term
    chunk_size: int = 2048  # pool rows per student call and per similarity block
    mc_chunk_size: int = 2048  # pool rows per MC-dropout call; the dropout masks depend on it
    density_neighbors: int = 10  # k of the k-nearest-neighbour density
    density_sample_size: int = 2048  # pool texts sampled as density reference points

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "gamma"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise AcquisitionError(
                    f"invalid AcquisitionConfig.{name}={value!r}: use a finite number >= 0"
                )
        minimums = {
            "mc_samples": 2,
            "chunk_size": 1,
            "mc_chunk_size": 1,
            "density_neighbors": 1,
            "density_sample_size": 2,
        }
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise AcquisitionError(
                    f"invalid AcquisitionConfig.{name}={value!r}: use an integer >= {minimum}"
                )


@dataclass(frozen=True)
class Candidate:
    """One text chosen for the teacher, with the reason it was chosen.

    Parameters
    ----------
    text_id : str
        Id of the text, taken from ``pool_ids``.
    score : float
        Acquisition score when the text was chosen (higher means more useful). Greedy
        strategies (`coreset`, `badge`, `gcp` with diversity) score each text against the
        texts chosen before it, so scores need not decrease with rank.
    rank : int
        Position in the batch, 1 for the text chosen first.
    breakdown : dict
        JSON-serializable terms of the score. The keys depend on the strategy and are
        listed in `gcp.acquisition`.
    """

    text_id: str
    score: float
    rank: int
    breakdown: dict[str, Any] = field(default_factory=dict, compare=True, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """Return the candidate as plain JSON-serializable types."""
        return asdict(self)
