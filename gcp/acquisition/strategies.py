"""Acquisition strategies: thin layers that feed the student's outputs to the scoring math.

Each strategy is a frozen dataclass holding an `AcquisitionConfig`, so its repr reads like
its constructor call. `select` streams the pool through the student in chunks, reduces
each chunk to a few numbers per text and node, and leaves the math to
`gcp.acquisition.scoring` and `gcp.acquisition.geometry`. Inputs are validated by
`gcp.acquisition.selection.select_batch`, not here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np

from gcp.acquisition import geometry, scoring
from gcp.acquisition.config import AcquisitionConfig
from gcp.exceptions import AcquisitionError

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, str], None]

# Independent random streams derived from the one user seed.
STREAM_TIEBREAK, STREAM_RANDOM, STREAM_DENSITY, STREAM_BADGE, STREAM_MC_DROPOUT = range(5)


def stream_rng(seed: int, stream: int) -> np.random.Generator:
    """Return the random generator of one purpose (`stream`) for `seed`."""
    return np.random.default_rng([seed, stream])


class Selection(NamedTuple):
    """Pool positions chosen by a strategy, best first, with scores and breakdowns."""

    indices: np.ndarray  # (b,) int64 positions in the pool
    scores: np.ndarray  # (b,) float64
    breakdowns: list[dict[str, Any]]  # one JSON-serializable dict per chosen text


class Progress:
    """Accumulate work done and report it to an optional ``on_progress(done, total, info)``."""

    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self.callback, self.total, self.done = callback, max(int(total), 1), 0

    def advance(self, count: int, info: str) -> None:
        self.done = min(self.done + int(count), self.total)
        if self.callback is not None:
            self.callback(self.done, self.total, info)


def predict_chunks(
    student: Any, X: np.ndarray, *, chunk_size: int
) -> Iterator[tuple[slice, dict[str, np.ndarray]]]:
    """Yield ``(rows, student.predict_proba(X[rows]))`` for consecutive chunks of the pool."""
    for start in range(0, X.shape[0], chunk_size):
        rows = slice(start, min(start + chunk_size, X.shape[0]))
        yield rows, student.predict_proba(X[rows])


def mc_dropout_chunks(
    student: Any, X: np.ndarray, *, n_samples: int, block_size: int, seed: int
) -> Iterator[tuple[slice, dict[str, np.ndarray]]]:
    """Yield ``(rows, student.mc_dropout_proba(X[rows]))`` over fixed blocks of the pool.

    Block k always covers rows ``[k * block_size, (k + 1) * block_size)`` and is seeded
    from ``(seed, k)``, so the dropout masks of a text depend on its pool position,
    `block_size` and `seed`, never on ``chunk_size``.
    """
    for block, start in enumerate(range(0, X.shape[0], block_size)):
        rows = slice(start, min(start + block_size, X.shape[0]))
        sequence = np.random.SeedSequence([seed, STREAM_MC_DROPOUT, block])
        block_seed = int(sequence.generate_state(1)[0])
        yield rows, student.mc_dropout_proba(X[rows], n_samples=n_samples, seed=block_seed)


def _require_node(probs: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    if name not in probs:
        raise AcquisitionError(
            f"the student predicts no output node {name!r} (it predicts {sorted(probs)}): "
            "use a student trained on this graph"
        )
    return probs[name]


@dataclass(frozen=True)
class AcquisitionStrategy:
    """Base of all strategies: ``select`` returns the chosen pool positions, best first."""

    config: AcquisitionConfig = field(default_factory=AcquisitionConfig)
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs_student: ClassVar[bool] = True

    def select(
        self,
        X: np.ndarray,
        labelled: np.ndarray | None,
        batch_size: int,
        *,
        student: Any = None,
        graph: Any = None,
        node_weights: Mapping[str, float] | None = None,
        seed: int = 0,
        on_progress: ProgressCallback | None = None,
    ) -> Selection:
        """Choose `batch_size` rows of `X` (validated, float32, 1 <= batch_size <= n)."""
        raise NotImplementedError


@dataclass(frozen=True)
class RandomSampling(AcquisitionStrategy):
    """Uniform random texts: each text gets a seeded draw in [0, 1), and the largest win."""

    name: ClassVar[str] = "random"
    description: ClassVar[str] = "uniformly random texts (no student needed)"
    needs_student: ClassVar[bool] = False

    def select(self, X, labelled, batch_size, *, seed=0, on_progress=None, **_):
        draws = stream_rng(seed, STREAM_RANDOM).random(X.shape[0])
        order = geometry.top_k(draws, batch_size, np.arange(X.shape[0]))
        Progress(on_progress, 1).advance(1, "random: drew the batch")
        return Selection(order, draws[order], [{"random_draw": float(draws[i])} for i in order])


@dataclass(frozen=True)
class _OutputNodeUncertainty(AcquisitionStrategy):
    """Rank texts by an uncertainty score of the output node's predicted distribution."""

    def _score(self, probs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        raise NotImplementedError

    def select(self, X, labelled, batch_size, *, student, graph, seed=0, on_progress=None, **_):
        n = X.shape[0]
        scores, terms = np.empty(n), {}
        progress = Progress(on_progress, n)
        for rows, probs in predict_chunks(student, X, chunk_size=self.config.chunk_size):
            chunk_scores, chunk_terms = self._score(_require_node(probs, graph.output))
            scores[rows] = chunk_scores
            for key, values in chunk_terms.items():
                terms.setdefault(key, np.empty(n))[rows] = values
            progress.advance(rows.stop - rows.start, f"{self.name}: scored {rows.stop}/{n} texts")
        order = geometry.top_k(scores, batch_size, stream_rng(seed, STREAM_TIEBREAK).permutation(n))
        breakdowns = [{key: float(values[i]) for key, values in terms.items()} for i in order]
        return Selection(order, scores[order], breakdowns)


@dataclass(frozen=True)
class LeastConfidence(_OutputNodeUncertainty):
    """Score ``1 - max_c p(c)`` at the output node."""

    name: ClassVar[str] = "least_confidence"
    description: ClassVar[str] = "output node: lowest probability of the predicted label"

    def _score(self, probs):
        values = scoring.least_confidence(probs)
        return values, {"least_confidence": values}


@dataclass(frozen=True)
class Margin(_OutputNodeUncertainty):
    """Score ``1 - (p(top1) - p(top2))`` at the output node."""

    name: ClassVar[str] = "margin"
    description: ClassVar[str] = "output node: smallest gap between the two likeliest labels"

    def _score(self, probs):
        values = scoring.margin(probs)
        return 1.0 - values, {"margin": values}


@dataclass(frozen=True)
class Entropy(_OutputNodeUncertainty):
    """Score the Shannon entropy (nats) of the output node's distribution."""

    name: ClassVar[str] = "entropy"
    description: ClassVar[str] = "output node: highest entropy of the predicted labels"

    def _score(self, probs):
        values = scoring.entropy(probs)
        return values, {"entropy": values}


@dataclass(frozen=True)
class BALD(AcquisitionStrategy):
    """Score the MC-dropout mutual information at the output node (Houlsby et al., 2011)."""

    name: ClassVar[str] = "bald"
    description: ClassVar[str] = "output node: MC-dropout disagreement (mutual information)"

    def select(self, X, labelled, batch_size, *, student, graph, seed=0, on_progress=None, **_):
        n, config = X.shape[0], self.config
        predictive, expected = np.empty(n), np.empty(n)
        progress = Progress(on_progress, n)
        chunks = mc_dropout_chunks(
            student, X, n_samples=config.mc_samples, block_size=config.mc_chunk_size, seed=seed
        )
        for rows, mc_probs in chunks:
            samples = _require_node(mc_probs, graph.output).astype(np.float64)  # (T, b, k)
            predictive[rows] = scoring.entropy(samples.mean(axis=0))
            expected[rows] = scoring.entropy(samples).mean(axis=0)
            progress.advance(rows.stop - rows.start, f"bald: sampled {rows.stop}/{n} texts")
        scores = np.maximum(predictive - expected, 0.0)
        order = geometry.top_k(scores, batch_size, stream_rng(seed, STREAM_TIEBREAK).permutation(n))
        breakdowns = [
            {
                "mutual_information": float(scores[i]),
                "predictive_entropy": float(predictive[i]),
                "expected_entropy": float(expected[i]),
            }
            for i in order
        ]
        return Selection(order, scores[order], breakdowns)


@dataclass(frozen=True)
class CoreSet(AcquisitionStrategy):
    """k-center greedy on the embeddings (Sener and Savarese, 2018), without a student."""

    name: ClassVar[str] = "coreset"
    description: ClassVar[str] = "k-center greedy: texts farthest from everything labelled"
    needs_student: ClassVar[bool] = False

    def select(self, X, labelled, batch_size, *, seed=0, on_progress=None, **_):
        tiebreak = stream_rng(seed, STREAM_TIEBREAK).permutation(X.shape[0])
        order, distances = geometry.k_center_greedy(
            X, labelled, batch_size, chunk_size=self.config.chunk_size, tiebreak=tiebreak
        )
        Progress(on_progress, 1).advance(1, f"coreset: chose {batch_size} texts")
        return Selection(order, distances, [{"distance": float(d)} for d in distances])


@dataclass(frozen=True)
class BADGE(AcquisitionStrategy):
    """k-means++ seeding on gradient embeddings of the output head (Ash et al., 2020)."""

    name: ClassVar[str] = "badge"
    description: ClassVar[str] = (
        "k-means++ on output-head gradient embeddings (uncertain and diverse)"
    )

    def select(self, X, labelled, batch_size, *, student, graph, seed=0, on_progress=None, **_):
        n = X.shape[0]
        progress = Progress(on_progress, 2 * n)
        probs = None
        for rows, chunk in predict_chunks(student, X, chunk_size=self.config.chunk_size):
            output = _require_node(chunk, graph.output)
            if probs is None:
                probs = np.empty((n, output.shape[1]), dtype=np.float64)
            probs[rows] = output
            progress.advance(rows.stop - rows.start, f"badge: predicted {rows.stop}/{n} texts")
        features = None
        for start in range(0, n, self.config.chunk_size):
            chunk = np.asarray(student.output_features(X[start : start + self.config.chunk_size]))
            if features is None:
                features = np.empty((n, chunk.shape[1]), dtype=np.float32)  # (n, h)
            features[start : start + len(chunk)] = chunk
            progress.advance(len(chunk), f"badge: embedded {start + len(chunk)}/{n} texts")
        order, distances = geometry.badge_kmeans_pp(
            probs,
            features,
            batch_size,
            rng=stream_rng(seed, STREAM_BADGE),
            tiebreak=stream_rng(seed, STREAM_TIEBREAK).permutation(n),
        )
        return Selection(order, distances, [{"squared_distance": float(d)} for d in distances])
