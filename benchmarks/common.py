"""Shared helpers of the benchmark suites: machine facts, timing, statistics, JSON output.

Every suite returns a JSON-serializable dict. `write_result` adds the machine, the load
average before and after the run, the command and the date, then writes it to the output
folder. Nothing here judges whether a number is good.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
T_975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}


def load_average() -> list[float]:
    """Return the 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    """Return the CPU model, core count, RAM and software versions of this machine."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram_gb = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    import torch

    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": ram_gb, "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform()}


def mean_ci(values: Sequence[float]) -> dict[str, float]:
    """Return the mean and half-width of the 95 % Student-t interval (0 for one value)."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if arr.size == 0:
        return {"mean": float("nan"), "ci95": float("nan"), "n": 0}
    if arr.size == 1:
        return {"mean": float(arr[0]), "ci95": 0.0, "n": 1}
    t = T_975.get(arr.size - 1, 1.96)
    return {"mean": float(arr.mean()), "ci95": float(t * arr.std(ddof=1) / np.sqrt(arr.size)),
            "n": int(arr.size)}


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self) -> Timer:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.seconds = time.perf_counter() - self.started


def out_dir(quick: bool, out: str | None) -> Path:
    """Return the output folder: `out`, else a temporary folder for quick runs, else the results."""
    if out:
        path = Path(out)
    elif quick:
        import tempfile

        path = Path(tempfile.mkdtemp(prefix="gcp-bench-"))
    else:
        path = RESULTS
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_result(suite: str, result: dict[str, Any], *, folder: Path, quick: bool,
                 load_before: list[float], seconds: float) -> Path:
    """Write ``<folder>/<suite>.json`` with the run's context and return its path."""
    payload = {
        "suite": suite,
        "quick": quick,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "load_before": load_before,
        "load_after": load_average(),
        "seconds": round(seconds, 2),
        "results": result,
    }
    path = folder / f"{suite}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=_json_default) + "\n")
    tmp.replace(path)
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def demo_data() -> dict[str, Any]:
    """Load the demo task in memory: graph, pool/test ids, embeddings, teacher label matrix, gold.

    The split and the embeddings come from a demo project (`gcp.loop.demo_project`) built
    once in the system temporary folder and reused, so no text is encoded.
    """
    import tempfile

    import pandas as pd

    from gcp.graph import annotations_to_matrix
    from gcp.loop import Studio, demo_project

    folder = demo_project(Path(tempfile.gettempdir()) / "gcp-bench-demo")
    with Studio.open(folder) as studio:
        graph = studio.graph
        texts = studio.project.texts()
        ids, X = studio.embeddings(list(texts["id"]))
    rows = pd.read_csv(ROOT / "assets" / "demo" / "annotations.csv", dtype=str).set_index("id")
    rows = rows.loc[ids]
    Y = annotations_to_matrix(graph, [{n: r[n] for n in graph.names} for _, r in rows.iterrows()])
    split = dict(zip(texts["id"], texts["split"]))
    return {"name": "demo", "graph": graph, "ids": ids, "X": X.astype(np.float32), "Y": Y,
            "gold": np.array([graph.value_index(graph.output, g) for g in rows["gold_label"]]),
            "texts": list(rows["text"]), "folder": folder,
            "pool": np.array([split[i] != "test" for i in ids])}


def spam_data() -> dict[str, Any]:
    """Load the spam task in memory from ``assets/spam/``: rule-teacher labels, gold, embeddings."""
    import pandas as pd

    from gcp.graph import ConceptGraph, annotations_to_matrix
    from gcp.teachers import RuleTeacher, TextItem

    folder = ROOT / "assets" / "spam"
    graph = ConceptGraph.load(folder / "graph.json")
    texts = pd.read_csv(folder / "texts.csv", dtype=str)
    cached = np.load(folder / "embeddings.npz", allow_pickle=False)
    if list(cached["ids"]) != list(texts["id"]):
        raise RuntimeError("assets/spam/embeddings.npz does not match texts.csv: rebuild both")
    teacher = RuleTeacher(labels=dict(zip(texts["id"], texts["gold_label"])))
    batch = teacher.annotate(graph, [TextItem(id=i, text=t) for i, t in zip(texts["id"], texts["text"])])
    Y = annotations_to_matrix(graph, [a.values for a in batch.annotations])
    rng = np.random.default_rng(0)
    pool = np.ones(len(texts), dtype=bool)
    pool[rng.permutation(len(texts))[: len(texts) // 5]] = False
    return {"name": "spam", "graph": graph, "ids": list(texts["id"]),
            "X": cached["X"].astype(np.float32), "Y": Y,
            "gold": np.array([graph.value_index(graph.output, g) for g in texts["gold_label"]]),
            "texts": list(texts["text"]), "pool": pool}
