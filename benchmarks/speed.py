"""Speed and memory: student inference, encoder throughput, acquisition scoring at scale.

Inference is timed end to end (encoding + student) and from cached embeddings, at batch
sizes 1 and 256, next to the bare encoder. Acquisition scoring is timed for pools of random
unit vectors (1k, 10k, 100k rows of 384 dims) per strategy, with the peak of Python/numpy
allocations (tracemalloc) and the peak rise of the process RSS (sampled every 5 ms).
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from typing import Any

import numpy as np

from benchmarks.common import Timer, demo_data

STRATEGY_NAMES = ("random", "least_confidence", "margin", "entropy", "bald", "coreset", "badge", "gcp")


class PeakRSS:
    """Sample the process RSS in a thread; ``peak_mb`` is the largest rise over the start."""

    def __enter__(self) -> PeakRSS:
        import psutil

        self._proc = psutil.Process()
        self.start_rss = self._proc.memory_info().rss
        self.peak = self.start_rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)
        self.peak_mb = (self.peak - self.start_rss) / 2**20


def _throughput(fn, items: list, batch: int) -> float:
    fn(items[:batch])  # warm-up
    with Timer() as t:
        for start in range(0, len(items), batch):
            fn(items[start:start + batch])
    return len(items) / t.seconds


def inference(data: dict, *, quick: bool) -> dict[str, Any]:
    """Measure texts per second of the bare encoder, the student and both together."""
    from gcp.encoder import EncoderConfig, TextEncoder
    from gcp.student import GCPStudent
    from gcp.training import TrainConfig, fit_student

    student = GCPStudent(data["graph"], input_dim=384, seed=0)
    pool = np.flatnonzero(data["pool"])[:300]
    fit_student(student, data["X"][pool], data["Y"][pool], config=TrainConfig(epochs=3))
    encoder = TextEncoder(EncoderConfig())
    encoder.encode(data["texts"][:4])  # load the model before timing
    out: dict[str, Any] = {}
    sizes = {1: 4 if quick else 128, 256: 16 if quick else 1024}
    for batch, n in sizes.items():
        texts = data["texts"][:n]
        X = data["X"][:n]
        rows = list(range(n))
        out[f"batch_{batch}"] = {
            "n_texts": n,
            "encoder_texts_per_s": _throughput(lambda b: encoder.encode(b), texts, batch),
            "end_to_end_texts_per_s": _throughput(lambda b: student.predict_proba(encoder.encode(b)), texts, batch),
            "cached_texts_per_s": _throughput(lambda b: student.predict_proba(X[b]), rows, batch),
        }
        r = out[f"batch_{batch}"]
        r["end_to_end_over_encoder"] = r["end_to_end_texts_per_s"] / r["encoder_texts_per_s"]
    return out


def acquisition(graph, *, sizes: list[int], batch_size: int = 50) -> list[dict]:
    """Measure seconds and peak memory of `select_batch` per strategy and pool size."""
    import torch

    from gcp.acquisition import select_batch
    from gcp.student import GCPStudent

    student = GCPStudent(graph, input_dim=384, seed=0)
    student.eval()
    rows = []
    rng = np.random.default_rng(0)
    labelled = rng.standard_normal((100, 384)).astype(np.float32)
    labelled /= np.linalg.norm(labelled, axis=1, keepdims=True)
    for n in sizes:
        X = rng.standard_normal((n, 384)).astype(np.float32)
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        ids = [f"t{i}" for i in range(n)]
        for name in STRATEGY_NAMES:
            tracemalloc.start()
            with PeakRSS() as rss, Timer() as t, torch.inference_mode():
                select_batch(name, pool_ids=ids, pool_embeddings=X, labelled_embeddings=labelled,
                             batch_size=batch_size, student=student, graph=graph, seed=0)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rows.append({"strategy": name, "pool": n, "seconds": t.seconds,
                         "tracemalloc_peak_mb": peak / 2**20, "rss_peak_rise_mb": rss.peak_mb})
    return rows


def run(*, quick: bool, **_: Any) -> dict[str, Any]:
    import torch

    # One thread: on a busy 2-core machine two torch threads spin against other processes
    # and made MC dropout 3-4x slower than one thread in our runs.
    torch.set_num_threads(1)
    data = demo_data()
    sizes = [300] if quick else [1_000, 10_000, 100_000]
    return {"torch_threads": 1, "note": "tracemalloc is on while timing acquisition", "inference": inference(data, quick=quick),
            "acquisition": acquisition(data["graph"], sizes=sizes),
            "acquisition_batch_size": 50, "acquisition_labelled": 100}
