"""Targeted against full retraining: wall time and accuracy after a round and a graph edit.

A round: a student trained on the first labels gets more labels; we compare training a
fresh student on all of them (full) with `targeted_retrain` of the top-k impact nodes of
the previous student (k = 1, 2, 3), same data and seeds. For a graph edit, the node ``ironic``
is added to a graph without it. We compare `GCPStudent.from_previous` plus retraining of
``diff(...).retrain_nodes`` with training the new graph from scratch.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from benchmarks.common import Timer, demo_data, mean_ci

EDIT_NODE = "ironic"  # node removed from the old graph and added back by the edit


def _accuracy(student, data, test) -> float:
    out = student.graph.output
    return float((student.predict(data["X"][test])[out] == data["gold"][test]).mean())


def _columns(Y: np.ndarray, full_graph, graph) -> np.ndarray:
    return Y[:, [full_graph.names.index(n) for n in graph.names]]


def run(*, quick: bool, seeds: int | None = None, **_: Any) -> dict[str, Any]:
    import torch

    from gcp.graph import diff
    from gcp.student import GCPStudent
    from gcp.training import TrainConfig, fit_student, targeted_retrain

    torch.set_num_threads(1)
    seeds = seeds or (1 if quick else 3)
    first, second = (30, 60) if quick else (200, 400)
    config = TrainConfig(epochs=5, patience=2) if quick else TrainConfig()  # the product's defaults
    data = demo_data()
    graph = data["graph"]
    pool, test = np.flatnonzero(data["pool"]), np.flatnonzero(~data["pool"])
    raw: dict[str, list[dict]] = {}

    def record(name: str, seconds: float, before: float, after: float, **extra: Any) -> None:
        raw.setdefault(name, []).append({"seconds": seconds, "accuracy_before": before,
                                         "accuracy_after": after, **extra})

    old_graph = graph.remove_node(EDIT_NODE)
    for seed in range(seeds):
        order = np.random.default_rng(seed).permutation(pool)
        a, b = order[:first], order[:second]
        base = GCPStudent(graph, input_dim=384, seed=seed)
        fit_student(base, data["X"][a], data["Y"][a], config=config)
        before = _accuracy(base, data, test)
        with Timer() as t:
            full = GCPStudent(graph, input_dim=384, seed=seed)
            fit_student(full, data["X"][b], data["Y"][b], config=config)
        record("full", t.seconds, before, _accuracy(full, data, test))
        for k in (1, 2, 3):
            student = copy.deepcopy(base)
            with Timer() as t:
                res = targeted_retrain(student, data["X"][b], data["Y"][b], top_k=k, config=config)
            record(f"targeted_k{k}", t.seconds, before, _accuracy(student, data, test), chosen=res.chosen)
        # graph edit: old graph without EDIT_NODE, then the node is added back
        old = GCPStudent(old_graph, input_dim=384, seed=seed)
        fit_student(old, data["X"][b], _columns(data["Y"][b], graph, old_graph), config=config)
        before_edit = _accuracy(old, data, test)
        nodes = diff(old_graph, graph).retrain_nodes(graph)
        with Timer() as t:
            carried, _ = GCPStudent.from_previous(old, graph)
            targeted_retrain(carried, data["X"][b], data["Y"][b], nodes=nodes, config=config)
        record("edit_targeted", t.seconds, before_edit, _accuracy(carried, data, test), retrained=nodes)
        with Timer() as t:
            scratch = GCPStudent(graph, input_dim=384, seed=seed)
            fit_student(scratch, data["X"][b], data["Y"][b], config=config)
        record("edit_scratch", t.seconds, before_edit, _accuracy(scratch, data, test))
    summary = {name: {"seconds": mean_ci([r["seconds"] for r in rows]),
                      "accuracy_after": mean_ci([r["accuracy_after"] for r in rows]),
                      "accuracy_change": mean_ci([r["accuracy_after"] - r["accuracy_before"] for r in rows])}
               for name, rows in raw.items()}
    return {"labels_before": first, "labels_after": second, "seeds": seeds, "edit_node": EDIT_NODE,
            "train_config": {"epochs": config.epochs, "patience": config.patience},
            "raw": raw, "summary": summary}
