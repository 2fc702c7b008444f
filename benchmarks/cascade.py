"""Cost-cutting cascade: the student labels what it is sure of, the teacher the rest.

On the demo evaluation split, a GCP student trained on teacher labels predicts every text
whose output probability reaches the threshold. The other texts go to the teacher (here the
recorded LLM answers), as in `gcp.bundle.predict(..., fallback_threshold=...)`. We report
the share the student labels, the accuracy of the whole system against gold labels and
the money saved against sending every text to the teacher, priced with
`gcp.teachers.pricing` for gpt-4o-mini and `OpenAITeacher.estimate_cost` tokens.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.common import demo_data

THRESHOLDS = (0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def price_per_text(graph, texts: list[str], *, model: str = "gpt-4o-mini") -> dict[str, float]:
    """Estimate USD and tokens per text for the full graph on `model` (nothing is sent)."""
    from gcp.teachers import TextItem
    from gcp.teachers.openai_teacher import OpenAITeacher, OpenAITeacherConfig

    teacher = OpenAITeacher(OpenAITeacherConfig(model=model, base_url="http://127.0.0.1:9/v1"),
                            api_key="estimate-only")
    est = teacher.estimate_cost(graph, [TextItem(id=str(i), text=t) for i, t in enumerate(texts)])
    n = max(est.n_texts, 1)
    return {"model": model, "usd_per_text": est.cost / n, "input_tokens_per_text": est.input_tokens / n,
            "output_tokens_per_text": est.output_tokens / n}


def run(*, quick: bool, **_: Any) -> dict[str, Any]:
    import torch

    from gcp.student import GCPStudent
    from gcp.training import TrainConfig, fit_student

    torch.set_num_threads(1)
    data = demo_data()
    graph = data["graph"]
    pool, test = np.flatnonzero(data["pool"]), np.flatnonzero(~data["pool"])
    budgets = (60,) if quick else (200, 600, len(pool))
    config = TrainConfig(epochs=5, patience=2) if quick else TrainConfig()  # the product's defaults
    col = graph.names.index(graph.output)
    teacher = data["Y"][test, col]
    gold = data["gold"][test]
    price = price_per_text(graph, [data["texts"][i] for i in test])
    out: dict[str, Any] = {"n_test": len(test), "price": price,
                           "teacher_accuracy": float((teacher == gold).mean()), "students": {}}
    for budget in budgets:
        idx = np.random.default_rng(0).permutation(pool)[:budget]
        student = GCPStudent(graph, input_dim=384, seed=0)
        fit_student(student, data["X"][idx], data["Y"][idx], config=config)
        proba = student.predict_proba(data["X"][test])[graph.output]
        pred, sure = proba.argmax(axis=1), proba.max(axis=1)
        rows = [{"threshold": 1.0, "student_share": 0.0, "accuracy": float((teacher == gold).mean()),
                 "cost_usd": price["usd_per_text"] * len(test), "saved_share": 0.0}]
        for th in THRESHOLDS:
            mine = sure >= th
            system = np.where(mine, pred, teacher)
            rows.append({"threshold": th, "student_share": float(mine.mean()),
                         "accuracy": float((system == gold).mean()),
                         "student_accuracy_on_its_share": float((pred[mine] == gold[mine]).mean()) if mine.any() else None,
                         "cost_usd": float((~mine).sum() * price["usd_per_text"]),
                         "saved_share": float(mine.mean())})
        out["students"][str(budget)] = {"labels": budget, "student_accuracy": float((pred == gold).mean()),
                                        "thresholds": rows}
    out["saved_usd_per_million_texts"] = {
        str(b): {str(r["threshold"]): r["saved_share"] * price["usd_per_text"] * 1e6 for r in s["thresholds"]}
        for b, s in out["students"].items()}
    return out
