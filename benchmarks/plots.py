"""Draw the PNG figures of ``docs/img/`` from the JSON results in ``benchmarks/results/``.

Only results that exist are drawn; a missing suite is skipped. Needs matplotlib.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.common import RESULTS, ROOT

IMG = ROOT / "docs" / "img"


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _efficiency_tasks() -> dict[str, dict]:
    tasks: dict[str, dict] = {}
    for path in sorted(RESULTS.glob("efficiency*.json")):
        payload = json.loads(path.read_text())
        for name, entry in payload["results"]["datasets"].items():
            tasks[name] = {**entry, "load": payload["load_before"], "seeds": payload["results"]["seeds"],
                           "ablation_seeds": payload["results"]["ablation_seeds"]}
    return tasks


def _curves(ax, summary: dict, names: list[str]) -> None:
    for name in names:
        if name not in summary:
            continue
        rows = summary[name]
        x = [r["labels"] for r in rows]
        m = [r["accuracy"]["mean"] for r in rows]
        h = [r["accuracy"]["ci95"] for r in rows]
        style = "-" if name.startswith(("gcp", "flat")) else "--"
        line, = ax.plot(x, m, style, marker="o", ms=3, label=name)
        ax.fill_between(x, [a - b for a, b in zip(m, h)], [a + b for a, b in zip(m, h)],
                        color=line.get_color(), alpha=0.12)


def draw_all() -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    IMG.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, name: str) -> None:
        path = IMG / name
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    for task, entry in _efficiency_tasks().items():
        summary = entry["summary"]
        main = [n for n in summary if " " not in n]  # ablation names contain " -<term>"
        ablations = ["gcp+gcp"] + [n for n in summary if " " in n]
        for kind, names in (("curves", main), ("ablations", ablations)):
            fig, ax = plt.subplots(figsize=(7.5, 4.5))
            _curves(ax, summary, names)
            ceiling = entry.get("ceiling", {})
            if "teacher" in ceiling:
                ax.axhline(ceiling["teacher"], color="k", lw=1, ls=":", label="teacher")
            if "gcp" in ceiling:
                ax.axhline(ceiling["gcp"]["mean"], color="grey", lw=1, ls="-.", label="GCP, whole pool")
            ax.set_xlabel("teacher labels")
            ax.set_ylabel("test accuracy (gold)")
            # Collapsed fits make some intervals reach far below the means, so clip the axis.
            lowest = min(r["accuracy"]["mean"] for n in names if n in summary for r in summary[n])
            ax.set_ylim(max(0.4, lowest - 0.05), 1.0)
            seeds = entry["seeds"] if kind == "curves" else f"{entry['ablation_seeds']}-{entry['seeds']}"
            ax.set_title(f"{task}: {kind} (mean and 95 % interval, {seeds} seeds)")
            ax.legend(fontsize=7, ncol=2)
            ax.grid(alpha=0.3)
            save(fig, f"efficiency_{task}_{kind}.png")

    for path in sorted(RESULTS.glob("finetune*.json")):
        for task, entry in json.loads(path.read_text())["results"]["datasets"].items():
            tuned = entry["finetune"]
            fig, ax = plt.subplots(figsize=(6.5, 4.2))
            for kind, rows in tuned["summary"].items():
                x = [r["labels"] for r in rows]
                for key, style in (("frozen_accuracy", "--"), ("accuracy", "-")):
                    m = [r[key]["mean"] for r in rows]
                    h = [r[key]["ci95"] for r in rows]
                    label = f"{kind}, {'frozen' if key == 'frozen_accuracy' else 'fine-tuned'}"
                    line, = ax.plot(x, m, style, marker="o", ms=3, label=label)
                    ax.fill_between(x, [a - b for a, b in zip(m, h)], [a + b for a, b in zip(m, h)],
                                    color=line.get_color(), alpha=0.12)
            ax.set_xlabel("teacher labels (random)")
            ax.set_ylabel("test accuracy (gold)")
            ax.set_title(f"{task}: top {tuned['layers']} encoder layers fine-tuned ({tuned['seeds']} seeds)")
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
            save(fig, f"finetune_{task}.png")

    speed = _load("speed")
    if speed:
        rows = speed["results"]["acquisition"]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name in dict.fromkeys(r["strategy"] for r in rows):
            pts = [(r["pool"], r["seconds"]) for r in rows if r["strategy"] == name]
            ax.loglog(*zip(*pts), marker="o", label=name)
        ax.set_xlabel("pool size (texts)")
        ax.set_ylabel("seconds to choose 50 texts")
        ax.set_title(f"acquisition scoring time (load {speed['load_before'][0]})")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both")
        save(fig, "speed_acquisition.png")

    teacher = _load("teacher")
    if teacher:
        runs = teacher["results"]["runs"]
        fig, ax = plt.subplots(figsize=(5.5, 4))
        c = [r["concurrency"] for r in runs]
        ax.plot(c, [r["ideal_texts_per_s"] for r in runs], "k:", marker="o", label="ideal c / latency")
        ax.plot(c, [r["texts_per_s"] for r in runs], marker="o", label="OpenAITeacher")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrency")
        ax.set_ylabel("texts per second")
        ax.set_title(f"teacher throughput, latency {teacher['results']['latency_s']} s")
        ax.legend()
        ax.grid(alpha=0.3, which="both")
        save(fig, "teacher_throughput.png")

    cascade = _load("cascade")
    if cascade:
        res = cascade["results"]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for budget, entry in res["students"].items():
            rows = [r for r in entry["thresholds"] if r["threshold"] < 1.0]
            th = [r["threshold"] for r in rows]
            line, = ax.plot(th, [r["accuracy"] for r in rows], marker="o", label=f"system accuracy, {budget} labels")
            ax.plot(th, [r["student_share"] for r in rows], ls="--", color=line.get_color(),
                    label=f"share answered by student, {budget} labels")
        ax.axhline(res["teacher_accuracy"], color="k", ls=":", lw=1, label="teacher alone")
        ax.set_xlabel("fallback threshold")
        ax.set_ylim(0, 1.02)
        ax.set_title("cascade on the demo test split")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        save(fig, "cascade.png")

    retrain = _load("retrain")
    if retrain:
        summary = retrain["results"]["summary"]
        names = list(summary)
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.8))
        a1.bar(names, [summary[n]["seconds"]["mean"] for n in names],
               yerr=[summary[n]["seconds"]["ci95"] for n in names])
        a1.set_ylabel("wall seconds")
        a2.bar(names, [summary[n]["accuracy_after"]["mean"] for n in names],
               yerr=[summary[n]["accuracy_after"]["ci95"] for n in names])
        a2.set_ylabel("test accuracy after")
        a2.set_ylim(0.5, 1.0)
        for ax in (a1, a2):
            ax.tick_params(axis="x", rotation=35, labelsize=7)
        fig.suptitle(f"retraining after a round / a graph edit (load {retrain['load_before'][0]})")
        save(fig, "retrain.png")
    return written
