"""The `gcp` strategy: graph-aware acquisition with a per-node score breakdown.

The formula, its defaults and the breakdown keys are documented in `gcp.acquisition`.
This module streams the pool through the student, reduces each chunk to one uncertainty
and one disagreement value per text and node, and hands selection to
`gcp.acquisition.geometry`. Inputs are validated by `select_batch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from gcp.acquisition import geometry, scoring
from gcp.acquisition.strategies import (
    STREAM_DENSITY,
    STREAM_TIEBREAK,
    AcquisitionStrategy,
    Progress,
    Selection,
    mc_dropout_chunks,
    predict_chunks,
    stream_rng,
)
from gcp.acquisition.weights import resolve_node_weights


@dataclass(frozen=True)
class GraphAwareAcquisition(AcquisitionStrategy):
    """Score weighted node uncertainty, disagreement and density, then pick a diverse batch."""

    name: ClassVar[str] = "gcp"
    description: ClassVar[str] = (
        "graph-aware: uncertainty and MC-dropout disagreement at critical concept nodes, "
        "plus density, with a diverse batch"
    )

    def select(
        self,
        X,
        labelled,
        batch_size,
        *,
        student,
        graph,
        node_weights=None,
        seed=0,
        on_progress=None,
        **_,
    ):
        config, n = self.config, X.shape[0]
        available = list(student.predict_proba(X[:1]))
        weights = resolve_node_weights(
            graph, node_weights, available=available, use_node_weights=config.use_node_weights
        )
        names = list(weights)
        use_disagreement = config.use_disagreement and config.alpha > 0
        use_density = config.use_representativeness and config.beta > 0
        passes = 1 + use_disagreement + use_density  # full passes over the pool
        progress = Progress(on_progress, n * passes + batch_size * config.use_diversity)

        uncertainty = np.zeros((n, len(names)))  # column j = w_j * H_j / log k_j
        for rows, probs in predict_chunks(student, X, chunk_size=config.chunk_size):
            terms = scoring.node_uncertainty_terms(probs, weights)
            uncertainty[rows] = np.stack([terms[name] for name in names], axis=1)  # (b, N)
            progress.advance(rows.stop - rows.start, f"gcp: node uncertainty {rows.stop}/{n}")

        disagreement = np.zeros((n, len(names)))  # column j = alpha * w_j * I_j / log k_j
        if use_disagreement:
            chunks = mc_dropout_chunks(
                student, X, n_samples=config.mc_samples, block_size=config.mc_chunk_size, seed=seed
            )
            for rows, mc_probs in chunks:
                terms = scoring.node_disagreement_terms(mc_probs, weights, alpha=config.alpha)
                disagreement[rows] = np.stack([terms[name] for name in names], axis=1)  # (b, N)
                progress.advance(rows.stop - rows.start, f"gcp: MC dropout {rows.stop}/{n}")

        representativeness = np.zeros(n)
        if use_density:
            density = geometry.density(
                X,
                n_neighbors=config.density_neighbors,
                sample_size=config.density_sample_size,
                chunk_size=config.chunk_size,
                rng=stream_rng(seed, STREAM_DENSITY),
            )
            representativeness = config.beta * density
            progress.advance(n, "gcp: density")

        base = uncertainty.sum(axis=1) + disagreement.sum(axis=1) + representativeness
        tiebreak = stream_rng(seed, STREAM_TIEBREAK).permutation(n)
        if config.use_diversity:
            order, factors = geometry.greedy_diverse_selection(
                base,
                X,
                labelled,
                batch_size,
                gamma=config.gamma,
                chunk_size=config.chunk_size,
                tiebreak=tiebreak,
            )
            progress.advance(batch_size, f"gcp: chose {batch_size} diverse texts")
        else:
            order = geometry.top_k(base, batch_size, tiebreak)
            factors = np.ones(batch_size)
        breakdowns = [
            {
                "nodes": {name: float(uncertainty[i, j]) for j, name in enumerate(names)},
                "disagreement": {name: float(disagreement[i, j]) for j, name in enumerate(names)},
                "representativeness": float(representativeness[i]),
                "diversity_factor": float(factor),
            }
            for i, factor in zip(order, factors)
        ]
        return Selection(order, base[order] * factors, breakdowns)
