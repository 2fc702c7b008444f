"""Thread-pool dispatch of per-text teacher jobs under a money budget.

`run_jobs` submits one job per text to a thread pool, at most `concurrency` at a time. It
stops submitting when the budget is reached, the retry cap is used up or a job reports a
fatal error. Jobs never raise
for a single text's failure; they return a `JobOutcome`. This module knows nothing about
prompts, replies or storage.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from gcp.teachers.base import ProgressCallback, StoppedReason, TextAnnotation, report_progress


class BudgetMeter:
    """Thread-safe USD spending against an optional cap, with reservations for requests in flight.

    A request is sent only if the money spent, plus the estimated cost of every request in
    flight, plus its own estimate stays within the cap.
    """

    def __init__(self, cap: float | None) -> None:
        self.cap = cap  # USD, None means no cap
        self.spent = 0.0  # USD actually charged so far
        self._reserved = 0.0
        self._lock = threading.Lock()

    def try_reserve(self, estimate: float) -> bool:
        """Reserve `estimate` USD; return False (reserving nothing) if it would exceed the cap."""
        with self._lock:
            if self.cap is not None and self.spent + self._reserved + estimate > self.cap:
                return False
            self._reserved += estimate
            return True

    def settle(self, reserved: float, actual: float) -> None:
        """Replace a reservation of `reserved` USD by the `actual` cost."""
        with self._lock:
            self._reserved = max(0.0, self._reserved - reserved)
            self.spent += actual


@dataclass(frozen=True)
class Job:
    """One text to send, with the estimated cost of its first request."""

    index: int  # position in the batch
    text_id: str  # TextItem.id
    estimate: float  # USD


@dataclass(frozen=True)
class JobOutcome:
    """Result of one job: the annotation and whether the batch must stop."""

    annotation: TextAnnotation
    stop: StoppedReason | None = None  # "retry_cap" or "error" stop further sending
    error: str | None = None  # batch-level message when stop == "error"


@dataclass(frozen=True)
class RunResult:
    """Outcomes by batch index, and why sending stopped early, if it did."""

    outcomes: dict[int, JobOutcome]
    stopped_reason: StoppedReason | None
    error: str | None
    not_sent: list[Job]


def run_jobs(
    jobs: Sequence[Job],
    work: Callable[[Job], JobOutcome],
    *,
    concurrency: int,
    meter: BudgetMeter,
    on_progress: ProgressCallback | None = None,
    done_before: int = 0,
    total: int | None = None,
) -> RunResult:
    """Run `work` on each job in a pool, stopping early on budget, retry cap or fatal error.

    The caller's `work` must settle its own reservation (`meter.settle(job.estimate, cost)`).
    Progress counts continue from `done_before` up to `total`.
    """
    total = len(jobs) + done_before if total is None else total
    pending = deque(jobs)
    running: dict[Future[JobOutcome], Job] = {}
    outcomes: dict[int, JobOutcome] = {}
    stopped: StoppedReason | None = None
    error: str | None = None
    done = done_before
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="teacher") as pool:
        while pending or running:
            while pending and stopped is None and len(running) < concurrency:
                if not meter.try_reserve(pending[0].estimate):
                    stopped = "budget"
                    break
                job = pending.popleft()
                running[pool.submit(work, job)] = job
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                outcome = future.result()
                outcomes[job.index] = outcome
                if outcome.stop is not None and stopped is None:
                    stopped, error = outcome.stop, outcome.error
                done += 1
                annotation = outcome.annotation
                info = f"{job.text_id}: {annotation.status}"
                if annotation.error:
                    info += f" ({annotation.error})"
                report_progress(on_progress, done, total, info)
    return RunResult(outcomes, stopped, error, list(pending))
