"""Seeded synthetic inputs of the app benchmark pages: a 100-node graph and a heatmap frame."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gcp.graph import ConceptGraph


def big_graph(n_nodes: int = 100, *, layers: int = 5, seed: int = 0) -> ConceptGraph:
    """Build a layered DAG of `n_nodes` yes/no concepts.

    Every node of layer L > 0 has 1-3 parents in layer L - 1, and every node reaches the output.
    """
    rng = np.random.default_rng(seed)
    sizes = np.full(layers, (n_nodes - 1) // layers)
    sizes[: (n_nodes - 1) % layers] += 1
    names, by_layer = [], []
    for layer, size in enumerate(sizes):
        by_layer.append([f"c{layer}_{i}" for i in range(size)])
        names += by_layer[-1]
    edges = []
    for layer in range(1, layers):
        for child in by_layer[layer]:
            k = int(rng.integers(1, 4))
            for parent in rng.choice(by_layer[layer - 1], size=min(k, len(by_layer[layer - 1])), replace=False):
                edges.append([str(parent), child])
        has_child = {e[0] for e in edges}
        for parent in by_layer[layer - 1]:
            if parent not in has_child:  # every node needs a path to the output
                edges.append([parent, str(rng.choice(by_layer[layer]))])
    edges += [[name, "label"] for name in by_layer[-1]]
    nodes = [{"name": n, "question": f"Is concept {n} present?", "values": ["no", "yes"]} for n in names]
    nodes.append({"name": "label", "question": "Which class?", "values": ["a", "b"]})
    return ConceptGraph.from_dict({"task": "synthetic", "output": "label", "nodes": nodes, "edges": edges})


def uncertainty_frame(n_texts: int = 2000, n_nodes: int = 50, *, seed: int = 0) -> pd.DataFrame:
    """Return uniform random uncertainties, texts x nodes."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.random((n_texts, n_nodes)), index=[f"t{i}" for i in range(n_texts)],
                        columns=[f"node_{j}" for j in range(n_nodes)])
