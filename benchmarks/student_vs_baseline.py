"""Compare the GCP student with the label-only baseline on the recorded movie-review data.

Both students train on the same random labelled subsets of the demo annotations
(``assets/demo``: 2,400 review snippets with recorded LLM-teacher values for all 14 nodes)
and are scored against the critics' gold labels on one fixed 20 % test split. The teacher's
own verdict agrees with gold on 94.8 % of the rows; always predicting "fresh" scores 59.5 %.

Run from the repository root::

    python benchmarks/student_vs_baseline.py            # budgets 100 200 400 all, seeds 0 1 2

It writes ``benchmarks/results/student_vs_baseline.json`` and prints a Markdown table.
Embeddings are cached in the system temp folder, so a second run skips the encoder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gcp.encoder import TextEncoder, embed_texts  # noqa: E402
from gcp.graph import ConceptGraph, annotations_to_matrix  # noqa: E402
from gcp.student import GCPStudent, LabelOnlyStudent, StudentConfig  # noqa: E402
from gcp.training import TrainConfig, fit_student  # noqa: E402

DEMO = ROOT / "assets" / "demo"
STUDENTS = {"gcp": GCPStudent, "label_only": LabelOnlyStudent}


def load_data(cache_dir: Path) -> tuple[ConceptGraph, np.ndarray, np.ndarray, np.ndarray]:
    """Return the graph, embeddings, teacher label matrix and gold label indices."""
    graph = ConceptGraph.load(DEMO / "graph.json")
    frame = pd.read_csv(DEMO / "annotations.csv", dtype=str, keep_default_na=False)
    X = embed_texts(frame["text"].tolist(), encoder=TextEncoder(cache_dir=cache_dir))
    Y = annotations_to_matrix(graph, frame[graph.names].to_dict("records"))
    gold = np.array([graph.labels.index(v) for v in frame["gold_label"]])
    return graph, X, Y, gold


def run_one(kind: str, graph: ConceptGraph, X: np.ndarray, Y: np.ndarray, gold: np.ndarray,
            train: np.ndarray, test: np.ndarray, seed: int) -> dict[str, float]:
    """Train one student on `train` and score it on `test`."""
    student = STUDENTS[kind](graph, X.shape[1], StudentConfig(), seed=seed)
    result = fit_student(student, X[train], Y[train], config=TrainConfig(seed=seed))
    predicted = student.predict(X[test])[graph.output]
    output = graph.names.index(graph.output)
    record = {
        "gold_accuracy": float((predicted == gold[test]).mean()),
        "teacher_agreement": float((predicted == Y[test, output]).mean()),
        "seconds": result.seconds,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
    }
    if kind == "gcp":
        # Accuracy when the teacher's tone and irony are given: shows that the output
        # still depends on its concept parents.
        forced = student.intervene_proba(X[test], {
            name: Y[test, graph.names.index(name)] for name in graph.parents(graph.output)
        })[graph.output].argmax(axis=1)
        record["gold_accuracy_with_teacher_parents"] = float((forced == gold[test]).mean())
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", nargs="+", default=["100", "200", "400", "all"],
                        help="numbers of labelled training texts; 'all' uses the whole pool (1,920)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds of subsets and students")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "student_vs_baseline.json")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "gcp-benchmark-embeddings",
                        help="embedding cache folder")
    args = parser.parse_args()

    torch.set_num_threads(2)
    started = time.perf_counter()
    graph, X, Y, gold = load_data(args.cache_dir)
    order = np.random.default_rng(0).permutation(len(X))
    test, pool = order[: len(X) // 5], order[len(X) // 5:]

    runs = []
    for budget in args.budgets:
        for seed in args.seeds:
            size = len(pool) if budget == "all" else int(budget)
            train = pool if budget == "all" else np.random.default_rng(1000 + seed).choice(pool, size, replace=False)
            for kind in STUDENTS:
                record = run_one(kind, graph, X, Y, gold, train, test, seed)
                runs.append({"budget": budget, "n_train": size, "seed": seed, "student": kind, **record})
                print(f"{budget:>5} seed {seed} {kind:<10} gold {record['gold_accuracy']:.3f} "
                      f"({record['seconds']:.1f} s)", flush=True)

    frame = pd.DataFrame(runs)
    summary = (
        frame.groupby(["budget", "student"], sort=False)
        .agg(mean=("gold_accuracy", "mean"), std=("gold_accuracy", "std"), seconds=("seconds", "mean"))
        .reset_index()
    )
    print("\n| budget | student | gold accuracy (mean ± std) | seconds |\n| --- | --- | --- | --- |")
    for row in summary.itertuples():
        print(f"| {row.budget} | {row.student} | {row.mean:.3f} ± {row.std:.3f} | {row.seconds:.1f} |")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "description": "GCP student vs label-only baseline, gold accuracy on a fixed 20 % test split of assets/demo",
        "student_config": StudentConfig().to_dict(),
        "train_config": {k: v for k, v in TrainConfig().__dict__.items() if k != "seed"},
        "test_size": int(len(test)),
        "pool_size": int(len(pool)),
        "majority_accuracy": float(np.bincount(gold[test]).max() / len(test)),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "machine": platform.machine()},
        "total_seconds": time.perf_counter() - started,
        "summary": summary.to_dict(orient="records"),
        "runs": runs,
    }
    args.output.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")


if __name__ == "__main__":
    main()
