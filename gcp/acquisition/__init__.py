"""Acquisition strategies: which unlabelled texts to send to the teacher next.

Every strategy scores cached text embeddings (float32, shape (n, d)) and, except for the
seed strategies ``random`` and ``coreset``, the current student. Call `select_batch`,
and see `STRATEGIES` for the names. The caller passes only the pool: unlabelled texts
that are not held out for evaluation. This package never receives the other texts.

Strategies
----------
``random``            seeded uniform draw.
``least_confidence``  ``1 - max_c p(c)`` at the output node.
``margin``            ``1 - (p(top1) - p(top2))`` at the output node.
``entropy``           Shannon entropy (nats) at the output node.
``bald``              MC-dropout mutual information at the output node (T = ``mc_samples``).
``coreset``           k-center greedy on the embeddings, with labelled texts as centers.
``badge``             k-means++ seeding on ``(p - onehot(argmax p)) ⊗ f``, where f is the
                      input of the output node's head.
``gcp``               graph-aware score below.

The ``gcp`` score
-----------------
For a pool text x and each node i the student predicts, with ``k_i`` values::

    H_i(x) = H(p_i(x)) / log k_i                                   node entropy in [0, 1]
    I_i(x) = [H(mean_t p_i^t(x)) - mean_t H(p_i^t(x))] / log k_i    MC-dropout mutual information
    R(x)   = clip(mean of the `density_neighbors` largest cosine similarities
                  between x and a seeded sample of `density_sample_size` other pool texts, 0, 1)
    base(x) = sum_i w_i H_i(x) + alpha * sum_i w_i I_i(x) + beta * R(x)

By default the batch is the top ``batch_size`` texts by ``base``. With
``use_diversity=True`` it is chosen greedily instead: step t picks the unpicked text
maximising ``base(x) * (1 - s_t(x))^gamma``, where ``s_t(x)`` is the largest cosine
similarity of x to the labelled texts and the texts picked before step t, clipped to
[0, 1]. The diversity factor is off by default because it lowered test accuracy on both
tasks of the label-efficiency benchmark (docs/benchmarks.md). It favours texts far from
the labelled set, as core-set does, and core-set was among the weakest baselines there.

Node weights ``w_i`` sum to 1. Before any training, or when every impact is 0, they are
``w_i ∝ 1 / (1 + d_i)``, where ``d_i`` is the length of the shortest directed path from
node i to the output node (`default_node_weights`). The output node has d = 0 and its
parents d = 1. After a training they come from the counterfactual impacts
``delta_i = L(full) - L(do(c_i = teacher value))`` with negatives clipped to 0
(`criticality_weights`). Those impacts leave out the output node, so it keeps its
reach-based share and the concept nodes split the rest in proportion to their impacts.

Defaults (`AcquisitionConfig`): alpha = 1.0, beta = 0.25, gamma = 1.0 (with diversity on), mc_samples = 20,
density_neighbors = 10, density_sample_size = 2048. They are reasoned choices, not tuned.
Both weighted sums lie in [0, 1], so beta = 0.25 keeps the density term at most a quarter
of the largest possible uncertainty term.

Ablations: ``use_node_weights=False`` sets ``w_i = 1/N``. ``use_disagreement=False`` and
``use_representativeness=False`` drop their terms, which the breakdown reports as 0.
Without diversity (the default) the breakdown reports a diversity factor of 1.

Breakdown of each `Candidate`
-----------------------------
``gcp``: ``{"nodes": {node: w_i H_i}, "disagreement": {node: alpha w_i I_i},
"representativeness": beta R, "diversity_factor": (1 - s)^gamma}`` with
``score = diversity_factor * (sum(nodes) + sum(disagreement) + representativeness)``.
Baselines: ``{"random_draw"}``, ``{"least_confidence"}``, ``{"margin"}`` (the raw gap),
``{"entropy"}``, ``{"mutual_information", "predictive_entropy", "expected_entropy"}``,
``{"distance"}`` (coreset: Euclidean distance to the nearest center when picked) and
``{"squared_distance"}`` (badge: squared gradient-embedding distance to the nearest
earlier pick, or ``|g|²`` for the first pick).

Determinism and memory
----------------------
Ties go to a seeded permutation of the pool, so the same seed and inputs give the same
batch. The student receives the pool in chunks of ``chunk_size`` rows and MC dropout runs on
fixed blocks of ``mc_chunk_size`` rows seeded by block, so the dropout masks, and the
result, do not depend on ``chunk_size``. No ``n x n`` similarity matrix and no
``T x n x k`` array over the whole pool is built. The largest arrays are ``(n, N)``
float64 per-node terms for ``gcp`` and ``(n, h)`` output-head features for ``badge``.
"""

from gcp.acquisition.config import AcquisitionConfig, Candidate
from gcp.acquisition.graph_aware import GraphAwareAcquisition
from gcp.acquisition.selection import STRATEGIES, get_strategy, seed_strategies, select_batch
from gcp.acquisition.strategies import (
    BADGE,
    BALD,
    AcquisitionStrategy,
    CoreSet,
    Entropy,
    LeastConfidence,
    Margin,
    RandomSampling,
)
from gcp.acquisition.weights import criticality_weights, default_node_weights

__all__ = [
    "AcquisitionConfig",
    "AcquisitionStrategy",
    "BADGE",
    "BALD",
    "Candidate",
    "CoreSet",
    "Entropy",
    "GraphAwareAcquisition",
    "LeastConfidence",
    "Margin",
    "RandomSampling",
    "STRATEGIES",
    "criticality_weights",
    "default_node_weights",
    "get_strategy",
    "seed_strategies",
    "select_batch",
]
