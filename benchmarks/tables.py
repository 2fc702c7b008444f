"""Print the Markdown tables of ``docs/benchmarks.md`` from the JSON results.

``python -m benchmarks tables`` prints every table whose results exist.
"""

from __future__ import annotations

import json

from benchmarks.common import RESULTS


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _pct(stat: dict, sign: str = "") -> str:
    """Format a mean and its 95 % interval in percent, or the mean alone for one seed."""
    mean = f"{100 * stat['mean']:{sign}.1f}"
    return mean if stat.get("n") == 1 else f"{mean} ± {100 * stat['ci95']:.1f}"


def _context(payload: dict) -> str:
    return (f"_Run {payload['date']}, {payload['seconds']:.0f} s, load average before "
            f"{payload['load_before']} and after {payload['load_after']}._")


def _majority_share(task: str) -> float:
    """Return the test accuracy of always predicting the most frequent gold label."""
    import numpy as np

    from benchmarks.common import demo_data, spam_data

    data = {"demo": demo_data, "spam": spam_data}[task]()
    gold = data["gold"][~data["pool"]]
    return float(np.bincount(gold).max() / len(gold))


def efficiency_tables() -> list[str]:
    out = []
    for path in sorted(RESULTS.glob("efficiency*.json")):
        payload = json.loads(path.read_text())
        res = payload["results"]
        for task, entry in res["datasets"].items():
            budgets = res["budgets"]
            out.append(f"### {task}: test accuracy against gold, % (mean ± 95 % interval)\n")
            out.append(_context(payload) + "\n")
            majority = _majority_share(task)
            out.append("| method | seeds | " + " | ".join(str(b) for b in budgets) + " | collapsed fits |")
            out.append("|---|---|" + "---|" * len(budgets) + "---|")
            for name, rows in entry["summary"].items():
                cells = " | ".join(_pct(r["accuracy"]) for r in rows)
                fits = [r for run in entry["raw"][name] for r in run]
                collapsed = sum(r["accuracy"] <= majority + 0.01 for r in fits)
                out.append(f"| {name} | {rows[0]['accuracy']['n']} | {cells} | {collapsed} of {len(fits)} |")
            out.append(f"\nA fit counts as collapsed when its accuracy is at most 1 point above always "
                       f"predicting the majority label ({100 * majority:.1f} %), counted over every budget "
                       f"and seed of the method.")
            out += [f"\n### {task}: agreement with the teacher's output label on the test texts, %\n",
                    "| method | " + " | ".join(str(b) for b in budgets) + " |",
                    "|---|" + "---|" * len(budgets)]
            for name, rows in entry["summary"].items():
                out.append(f"| {name} | " + " | ".join(_pct(r["teacher_agreement"]) for r in rows) + " |")
            out += _paired_table(task, entry, budgets)
            ceiling = entry["ceiling"]
            parts = [f"teacher {100 * ceiling['teacher']:.1f}"]
            parts += [f"{k} on the whole pool ({entry['n_pool']} texts) {_pct(v)}"
                      for k, v in ceiling.items() if k != "teacher"]
            out.append("\nCeilings: " + "; ".join(parts) + ".\n")
    return out


# Pairs of (method, reference). The first pair isolates the student, the second the graph
# shape, and the others the acquisition strategy.
PAIRS = [("gcp+random", "label_only+random"), ("flat+gcp", "gcp+gcp"), ("gcp+gcp", "gcp+random"),
         ("label_only+entropy", "label_only+random"), ("label_only+badge", "label_only+random")]


def _paired_table(task: str, entry: dict, budgets: list[int]) -> list[str]:
    """Tabulate accuracy differences between curves that share a seed, hence the same seed round."""
    from benchmarks.common import mean_ci

    raw = entry["raw"]
    pairs = PAIRS + [(name, "gcp+gcp") for name in raw if " " in name]  # ablations
    out = [f"\n### {task}: paired differences in test accuracy, points (mean ± 95 % interval over shared seeds)\n",
           "| method - reference | seeds | " + " | ".join(str(b) for b in budgets) + " |",
           "|---|---|" + "---|" * len(budgets)]
    for name, reference in pairs:
        if name not in raw or reference not in raw:
            continue
        # Ablations ran fewer seeds, and zip stops at the shorter list, so only shared seeds pair up.
        runs = list(zip(raw[name], raw[reference]))
        cells = []
        for i in range(len(budgets)):
            stat = mean_ci([a[i]["accuracy"] - b[i]["accuracy"] for a, b in runs])
            cells.append(_pct(stat, "+"))
        out.append(f"| {name} - {reference} | {len(runs)} | " + " | ".join(cells) + " |")
    return out


def _mean_seconds(tuned: dict, kind: str, labels: int, key: str) -> float:
    """Average a timing of the raw fine-tuning rows of one student at one budget over seeds."""
    values = [row[key] for run in tuned["raw"][kind] for row in run if row["labels"] == labels]
    return sum(values) / len(values)


def finetune_tables() -> list[str]:
    out = []
    for path in sorted(RESULTS.glob("finetune*.json")):
        payload = json.loads(path.read_text())
        for task, entry in payload["results"]["datasets"].items():
            tuned = entry["finetune"]
            spread = "1 seed, no interval" if tuned["seeds"] == 1 else f"mean ± 95 % interval, {tuned['seeds']} seeds"
            out += [f"### {task}: top {tuned['layers']} encoder layers fine-tuned against frozen, random labels, "
                    f"% ({spread})\n",
                    _context(payload) + "\n",
                    "| student | labels | frozen | fine-tuned | gain, points | agreement | frozen seconds | "
                    "fine-tuning seconds |",
                    "|---|---|---|---|---|---|---|---|"]
            for kind, rows in tuned["summary"].items():
                for r in rows:
                    frozen_seconds = _mean_seconds(tuned, kind, r["labels"], "frozen_seconds")
                    out.append(f"| {kind} | {r['labels']} | {_pct(r['frozen_accuracy'])} | {_pct(r['accuracy'])} | "
                               f"{_pct(r['gain'], '+')} | "
                               f"{_pct(r['teacher_agreement'])} | {frozen_seconds:.1f} | "
                               f"{r['finetune_seconds']['mean']:.0f} |")
            out.append("")
    return out


def other_tables() -> list[str]:
    return speed_tables() + teacher_table() + cascade_tables() + retrain_table() + app_table()


def speed_tables() -> list[str]:
    out = []
    speed = _load("speed")
    if speed:
        inf = speed["results"]["inference"]
        out += ["### Inference, texts per second\n", _context(speed) + "\n",
                "| batch | texts | bare encoder | encoder + student | student on cached embeddings | end to end / encoder |",
                "|---|---|---|---|---|---|"]
        for key, r in inf.items():
            out.append(f"| {key.split('_')[1]} | {r['n_texts']} | {r['encoder_texts_per_s']:.1f} | "
                       f"{r['end_to_end_texts_per_s']:.1f} | {r['cached_texts_per_s']:.0f} | "
                       f"{r['end_to_end_over_encoder']:.2f} |")
        rows = speed["results"]["acquisition"]
        pools = sorted({r["pool"] for r in rows})
        out += ["\n### Acquisition: seconds / tracemalloc peak MB / RSS peak rise MB to choose 50 texts\n",
                "| strategy | " + " | ".join(f"{p:,} texts" for p in pools) + " |",
                "|---|" + "---|" * len(pools)]
        for name in dict.fromkeys(r["strategy"] for r in rows):
            cells = []
            for p in pools:
                r = next(x for x in rows if x["strategy"] == name and x["pool"] == p)
                cells.append(f"{r['seconds']:.2f} s / {r['tracemalloc_peak_mb']:.0f} / {r['rss_peak_rise_mb']:.0f}")
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def teacher_table() -> list[str]:
    out = []
    teacher = _load("teacher")
    if teacher:
        out += ["### Teacher throughput\n", _context(teacher) + "\n",
                "| concurrency | texts | seconds | texts/s | ideal texts/s | share of ideal |", "|---|---|---|---|---|---|"]
        for r in teacher["results"]["runs"]:
            out.append(f"| {r['concurrency']} | {r['texts']} | {r['seconds']:.2f} | {r['texts_per_s']:.1f} | "
                       f"{r['ideal_texts_per_s']:.0f} | {100 * r['efficiency']:.0f} % |")
        out.append("")
    return out


def cascade_tables() -> list[str]:
    out = []
    cascade = _load("cascade")
    if cascade:
        res = cascade["results"]
        price = res["price"]
        out += ["### Cascade\n", _context(cascade) + "\n",
                f"Teacher price estimate: {price['input_tokens_per_text']:.0f} input + "
                f"{price['output_tokens_per_text']:.0f} output tokens per text on {price['model']}, "
                f"${1000 * price['usd_per_text']:.3f} per 1,000 texts.\n"]
        for budget, entry in res["students"].items():
            out += [f"Student trained on {budget} teacher labels (alone: "
                    f"{100 * entry['student_accuracy']:.1f} % accuracy).\n",
                    "| threshold | answered by student | system accuracy | student accuracy on its share | saved per 1M texts |",
                    "|---|---|---|---|---|"]
            for r in entry["thresholds"]:
                own = r.get("student_accuracy_on_its_share")
                own = "-" if own is None else f"{100 * own:.1f} %"
                saved = r["saved_share"] * price["usd_per_text"] * 1e6
                out.append(f"| {r['threshold']} | {100 * r['student_share']:.1f} % | {100 * r['accuracy']:.1f} % | "
                           f"{own} | ${saved:.0f} |")
            out.append("")
    return out


def retrain_table() -> list[str]:
    out = []
    retrain = _load("retrain")
    if retrain:
        res = retrain["results"]
        out += ["### Retraining\n", _context(retrain) + "\n",
                "| run | seconds | test accuracy after, % | change, points |", "|---|---|---|---|"]
        for name, s in res["summary"].items():
            out.append(f"| {name} | {s['seconds']['mean']:.2f} ± {s['seconds']['ci95']:.2f} | "
                       f"{_pct(s['accuracy_after'])} | {_pct(s['accuracy_change'])} |")
        out.append("")
    return out


def app_table() -> list[str]:
    out = []
    app = _load("app")
    if app and "median_seconds" in app["results"]:
        res = app["results"]
        out += ["### App render times (seconds)\n", _context(app) + "\n",
                "| page | first visit | median of repeats | over the empty page |", "|---|---|---|---|"]
        for name in res["median_seconds"]:
            out.append(f"| {name} | {res['first_visit_seconds'][name]:.2f} | {res['median_seconds'][name]:.2f} | "
                       f"{res['over_empty_seconds'][name]:.2f} |")
        out.append("")
    return out


def markdown() -> str:
    return "\n".join(efficiency_tables() + finetune_tables() + other_tables())
