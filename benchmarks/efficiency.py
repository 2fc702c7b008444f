"""Label efficiency: learning curves of students and acquisition strategies.

The loop is simulated in memory over cached embeddings and the teacher's label matrix
(recorded LLM answers for the demo task, rule answers for the spam task), with the real
`select_batch`, `fit_student` and `targeted_retrain`. Accuracy is measured against gold
labels on the held-out split, agreement against the teacher's output label there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from benchmarks.common import Timer, demo_data, mean_ci, spam_data

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Method:
    """One curve: a student kind, an acquisition strategy and options."""

    name: str  # curve label in the results
    student: str  # "gcp", "label_only" or "flat"
    strategy: str  # acquisition strategy after the seed round
    acquisition: dict = field(default_factory=dict)  # AcquisitionConfig switches
    targeted: bool = True  # polish the top-2 impact nodes with targeted_retrain (concept students)
    node_weights: bool = True  # pass criticality weights from counterfactual impact


BASELINES = [Method(f"label_only+{s}", "label_only", s) for s in ("random", "entropy", "bald", "coreset", "badge")]
MAIN = BASELINES + [
    Method("gcp+random", "gcp", "random"),
    Method("gcp+gcp", "gcp", "gcp"),
    Method("flat+gcp", "flat", "gcp"),
]
ABLATIONS = [
    Method("gcp+gcp -node_weights", "gcp", "gcp", {"use_node_weights": False}),
    Method("gcp+gcp -disagreement", "gcp", "gcp", {"use_disagreement": False}),
    Method("gcp+gcp +diversity", "gcp", "gcp", {"use_diversity": True}),  # off by default
    Method("gcp+gcp -representativeness", "gcp", "gcp", {"use_representativeness": False}),
    Method("gcp+gcp -targeted_retraining", "gcp", "gcp", targeted=False),
]


def flat_graph(graph):
    """Build the flat concept bottleneck: every concept a root and a direct parent of the output."""
    from gcp.graph import ConceptGraph

    data = graph.to_dict(include_positions=False)
    data["edges"] = [[n, graph.output] for n in graph.names if n != graph.output]
    return ConceptGraph.from_dict(data)


def make_student(kind: str, graph, seed: int):
    from gcp.student import GCPStudent, LabelOnlyStudent

    if kind == "label_only":
        return LabelOnlyStudent(graph, input_dim=384, seed=seed)
    return GCPStudent(flat_graph(graph) if kind == "flat" else graph, input_dim=384, seed=seed)


def train(kind: str, graph, X, Y, *, seed: int, targeted: bool, config):
    """Fit a fresh student. Concept students then retrain their top-2 impact nodes."""
    from gcp.training import counterfactual_impact, fit_student, targeted_retrain

    student = make_student(kind, graph, seed)
    fit_student(student, X, Y, config=config)
    scores = None
    if kind != "label_only":
        if targeted:
            scores = targeted_retrain(student, X, Y, top_k=2, config=config).scores
        else:
            scores = counterfactual_impact(student, X, Y)
    return student, scores


def evaluate(student, data, test) -> dict[str, float]:
    out = student.graph.output
    col = data["graph"].names.index(out)
    pred = student.predict(data["X"][test])[out]
    return {"accuracy": float((pred == data["gold"][test]).mean()),
            "teacher_agreement": float((pred == data["Y"][test, col]).mean())}


def run_curve(method: Method, data: dict, *, seed: int, budgets: list[int], config) -> list[dict]:
    """Simulate the loop for one method and seed, with one record per budget."""
    from gcp.acquisition import AcquisitionConfig, criticality_weights, select_batch

    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(data["pool"])
    test = np.flatnonzero(~data["pool"])
    labelled = list(rng.choice(pool, size=budgets[0], replace=False))
    acq = AcquisitionConfig(**method.acquisition)
    records = []
    for step, budget in enumerate(budgets):
        if step:
            rest = np.setdiff1d(pool, labelled)
            with Timer() as t_sel:
                chosen = select_batch(
                    method.strategy, pool_ids=[str(i) for i in rest], pool_embeddings=data["X"][rest],
                    labelled_embeddings=data["X"][labelled], batch_size=budget - len(labelled),
                    student=student, graph=student.graph, seed=seed * 100 + step, config=acq,
                    node_weights=weights if method.node_weights else None)
            labelled += [int(c.text_id) for c in chosen]
        idx = np.array(labelled)
        Y = data["Y"][idx]
        with Timer() as t_fit:
            # the flat graph has the same node names, so one label matrix serves every student
            student, scores = train(method.student, data["graph"], data["X"][idx], Y,
                                    seed=seed, targeted=method.targeted, config=config)
        weights = criticality_weights(scores) if scores else None
        rec = {"labels": len(labelled), "train_seconds": round(t_fit.seconds, 3), **evaluate(student, data, test)}
        if step:
            rec["select_seconds"] = round(t_sel.seconds, 3)
        records.append(rec)
    return records


def ceilings(data: dict, *, seeds: list[int], config) -> dict[str, Any]:
    """Measure each student trained on the whole pool, and the teacher's own test accuracy."""
    pool, test = np.flatnonzero(data["pool"]), np.flatnonzero(~data["pool"])
    col = data["graph"].names.index(data["graph"].output)
    out: dict[str, Any] = {"teacher": float((data["Y"][test, col] == data["gold"][test]).mean())}
    for kind in ("label_only", "gcp", "flat"):
        accs = []
        for seed in seeds:
            student, _ = train(kind, data["graph"], data["X"][pool], data["Y"][pool], seed=seed,
                               targeted=False, config=config)
            accs.append(evaluate(student, data, test)["accuracy"])
        out[kind] = mean_ci(accs)
    return out


def summarize(curves: dict[str, list[list[dict]]]) -> dict[str, list[dict]]:
    """Mean and 95 % interval per method and budget over seeds."""
    summary = {}
    for name, runs in curves.items():
        rows = []
        for i, rec in enumerate(runs[0]):
            rows.append({"labels": rec["labels"],
                         "accuracy": mean_ci([r[i]["accuracy"] for r in runs]),
                         "teacher_agreement": mean_ci([r[i]["teacher_agreement"] for r in runs]),
                         "train_seconds": mean_ci([r[i]["train_seconds"] for r in runs])})
        summary[name] = rows
    return summary


def run(*, quick: bool, seeds: int | None = None, ablation_seeds: int | None = None,
        datasets: tuple[str, ...] = ("demo", "spam"), finetune: bool = False, finetune_only: bool = False,
        finetune_options: dict | None = None, budgets: list[int] | None = None,
        on_progress: Callable[[str], None] | None = None,
        checkpoint: Callable[[dict], None] | None = None, **_: Any) -> dict[str, Any]:
    """Run the learning curves. Quick mode runs 1 seed, 2 rounds, tiny budgets, few epochs.

    `checkpoint`, if given, receives the partial result after every finished curve.
    """
    import torch

    from gcp.training import TrainConfig

    torch.set_num_threads(1)
    seeds = seeds or (1 if quick else 5)
    ablation_seeds = ablation_seeds or (1 if quick else 3)
    budgets = budgets or ([20, 40] if quick else [50, 100, 200, 400, 600])
    config = TrainConfig(epochs=5, patience=2) if quick else TrainConfig()  # the product's defaults
    methods = MAIN if not quick else [MAIN[0], MAIN[4], MAIN[6], MAIN[7]]
    ablations = ABLATIONS if not quick else ABLATIONS[:1]
    loaders = {"demo": demo_data, "spam": spam_data}
    result: dict[str, Any] = {"budgets": budgets, "seeds": seeds, "ablation_seeds": ablation_seeds,
                              "train_config": {k: v for k, v in vars(config).items() if k != "seed"},
                              "finetune": "run" if finetune or finetune_only else "skipped", "datasets": {}}
    for name in datasets:
        data = loaders[name]()
        curves: dict[str, list] = {}
        if finetune_only:
            tuned = finetune_curve(data, budgets=budgets, seeds=seeds, quick=quick, on_progress=on_progress,
                                   **(finetune_options or {}))
            result["datasets"][name] = {"finetune": tuned}
            continue
        result["datasets"][name] = {"raw": curves}
        for method in methods + ablations:
            n = ablation_seeds if method in ablations else seeds
            for seed in range(n):
                curves.setdefault(method.name, []).append(
                    run_curve(method, data, seed=seed, budgets=budgets, config=config))
                if on_progress:
                    on_progress(f"{name} {method.name} seed {seed} done")
                if checkpoint:
                    checkpoint(result)
        entry = {"n_pool": int(data["pool"].sum()), "n_test": int((~data["pool"]).sum()),
                 "raw": curves, "summary": summarize(curves),
                 "ceiling": ceilings(data, seeds=list(range(1 if quick else 3)), config=config)}
        if finetune:
            entry["finetune"] = finetune_curve(data, budgets=budgets, seeds=seeds, quick=quick,
                                               on_progress=on_progress, **(finetune_options or {}))
        result["datasets"][name] = entry
    return result


def finetune_curve(data: dict, *, budgets: list[int], seeds: int, quick: bool = False,
                   on_progress: Callable[[str], None] | None = None, layers: int = 6, encoder_lr: float = 5e-5,
                   epochs: int = 8, batch_size: int = 16) -> dict[str, Any]:
    """Measure students with the top `layers` encoder layers fine-tuned against the same students frozen.

    Labels are drawn at random (a seeded permutation of the pool, so each budget extends the
    previous one). At each budget a fresh student is first fitted on frozen embeddings and
    evaluated, then fine-tuned with `fit_student_finetune` (whose defaults are the defaults
    here) and evaluated again on test embeddings recomputed with its tuned layers. The fit
    on frozen embeddings is the warm start that `fit_student_finetune` runs by default, with
    the same validation rows, so each row pairs a frozen and a fine-tuned student on
    identical labels.
    """
    from gcp.encoder import EncoderConfig, TextEncoder
    from gcp.finetune import DEFAULT_CONFIG, encode_for_student, fit_student_finetune
    from gcp.training import TrainConfig, fit_student

    encoder = TextEncoder(EncoderConfig())
    pool, test = np.flatnonzero(data["pool"]), np.flatnonzero(~data["pool"])
    texts = data["texts"]
    test_texts = [texts[i] for i in test]
    col = data["graph"].names.index(data["graph"].output)
    gold, teacher = data["gold"][test], data["Y"][test, col]
    tune_config = (TrainConfig(epochs=1, batch_size=8, patience=1) if quick
                   else replace(DEFAULT_CONFIG, epochs=epochs, batch_size=batch_size))
    raw: dict[str, list[list[dict]]] = {}
    for seed in range(seeds):
        order = np.random.default_rng(seed).permutation(pool)
        for kind in ("gcp", "label_only"):
            rows = []
            for budget in budgets:
                idx = order[:budget]
                student = make_student(kind, data["graph"], seed)
                with Timer() as t_frozen:
                    fit_student(student, data["X"][idx], data["Y"][idx], config=TrainConfig(seed=seed))
                frozen = student.predict(data["X"][test])[data["graph"].output]
                with Timer() as t_tune:
                    fit_student_finetune(student, encoder, [texts[i] for i in idx], data["Y"][idx],
                                         layers=layers, encoder_lr=encoder_lr,
                                         config=replace(tune_config, seed=seed), warm_start=False)
                pred = student.predict(encode_for_student(student, encoder, test_texts))[data["graph"].output]
                rows.append({"labels": budget, "frozen_seconds": round(t_frozen.seconds, 2),
                             "finetune_seconds": round(t_tune.seconds, 2),
                             "frozen_accuracy": float((frozen == gold).mean()),
                             "accuracy": float((pred == gold).mean()),
                             "teacher_agreement": float((pred == teacher).mean())})
            raw.setdefault(kind, []).append(rows)
            if on_progress:
                on_progress(f"{data['name']} finetune {kind} seed {seed} done")
    summary = {}
    for kind, runs in raw.items():
        summary[kind] = [{
            "labels": rec["labels"],
            "frozen_accuracy": mean_ci([r[i]["frozen_accuracy"] for r in runs]),
            "accuracy": mean_ci([r[i]["accuracy"] for r in runs]),
            "gain": mean_ci([r[i]["accuracy"] - r[i]["frozen_accuracy"] for r in runs]),
            "teacher_agreement": mean_ci([r[i]["teacher_agreement"] for r in runs]),
            "finetune_seconds": mean_ci([r[i]["finetune_seconds"] for r in runs]),
        } for i, rec in enumerate(runs[0])]
    return {"layers": layers, "encoder_lr": encoder_lr, "epochs": tune_config.epochs,
            "batch_size": tune_config.batch_size, "patience": tune_config.patience,
            "seeds": seeds, "raw": raw, "summary": summary}
