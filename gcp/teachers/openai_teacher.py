"""The LLM teacher for OpenAI and any OpenAI-compatible server (vLLM, Ollama, llama.cpp, LM Studio).

`OpenAITeacher` annotates texts with structured output (a strict JSON schema built from the
graph, or JSON mode on servers without schema support), validates every reply against the
graph, sends one repair request for an invalid reply, and stores each text's answers in the
`AnswerCache` as soon as they arrive. It also proposes concept graphs and checks a
connection. The API key is taken from the caller or ``OPENAI_API_KEY``; it is never stored,
logged, returned by `describe` or included in an error message.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from gcp.exceptions import TeacherError
from gcp.graph import ConceptGraph
from gcp.hashing import text_hash
from gcp.teachers import prompts
from gcp.teachers.base import (
    AnnotationBatch,
    CostEstimate,
    ProgressCallback,
    Teacher,
    TextAnnotation,
    TextItem,
    check_items,
    json_safe,
    report_progress,
    requested_nodes,
)
from gcp.teachers.batch import BudgetMeter, Job, JobOutcome, run_jobs
from gcp.teachers.cache import AnswerCache, CallRecord, node_key
from gcp.teachers.chat import CallError, ChatClient, RetryBudget, RetryPolicy
from gcp.teachers.pricing import cost_usd
from gcp.teachers.proposal import propose_graph
from gcp.teachers.text_job import TextJob, annotate_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenAITeacherConfig:
    """Options of `OpenAITeacher`; everything here is safe to store (no API key)."""

    model: str = "gpt-4o-mini"  # model name sent to the server
    base_url: str | None = None  # e.g. "http://localhost:11434/v1"; None: OpenAI
    temperature: float | None = 0.0  # sampling temperature; None: not sent
    timeout_s: float = 60.0  # timeout of one request, seconds
    concurrency: int = 8  # requests in flight at once
    max_retries: int = 4  # retries of one request (429, 5xx, timeouts, connection errors)
    max_batch_retries: int = 50  # retries allowed across one annotate call
    backoff_base_s: float = 1.0  # first retry waits about this long; doubles each time
    backoff_max_s: float = 30.0  # maximum wait of one exponential backoff
    max_retry_after_s: float = 60.0  # maximum Retry-After wait honoured
    json_schema: bool = True  # ask for strict JSON schema output first
    prices: Mapping[str, tuple[float, float]] | None = None  # model -> USD per 1M in/out tokens
    budget: float | None = None  # default USD cap of one annotate call
    name: str | None = None  # display name; default "openai:<model>"
    max_concepts: int = 12  # upper bound on concepts in a proposed graph

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise TeacherError("the OpenAI teacher needs a model name, e.g. 'gpt-4o-mini'")
        positive = {"timeout_s": self.timeout_s, "concurrency": self.concurrency}
        for option, value in positive.items():
            if not isinstance(value, (int, float)) or value <= 0:
                raise TeacherError(f"invalid {option}={value!r}: it must be a positive number")
        for option in ("max_retries", "max_batch_retries", "backoff_base_s", "backoff_max_s"):
            value = getattr(self, option)
            if not isinstance(value, (int, float)) or value < 0:
                raise TeacherError(f"invalid {option}={value!r}: it must be 0 or more")
        if self.budget is not None and self.budget < 0:
            raise TeacherError(f"invalid budget={self.budget!r}: give USD >= 0 or None")
        if self.prices is not None:
            table = {str(m): (float(p[0]), float(p[1])) for m, p in dict(self.prices).items()}
            object.__setattr__(self, "prices", table)


class OpenAITeacher(Teacher):
    """An LLM teacher behind an OpenAI-compatible chat completions API.

    Parameters
    ----------
    config : OpenAITeacherConfig, optional
        Model, server and limits; default `OpenAITeacherConfig()`.
    api_key : str, optional
        API key; default: the ``OPENAI_API_KEY`` environment variable.
    cache : AnswerCache, optional
        Where answers and the call log are stored. Without it every call is paid again.

    Raises
    ------
    TeacherError
        If the config is invalid, or no key is available for OpenAI itself.
    """

    source = "teacher"

    def __init__(
        self,
        config: OpenAITeacherConfig | None = None,
        *,
        api_key: str | None = None,
        cache: AnswerCache | None = None,
    ) -> None:
        self.config = config if config is not None else OpenAITeacherConfig()
        self.cache = cache
        self.name = self.config.name or f"openai:{self.config.model}"
        self.prompt_version = prompts.ANNOTATE_PROMPT_VERSION
        cfg = self.config
        self.chat = ChatClient(
            model=cfg.model,
            api_key=api_key if api_key is not None else os.environ.get("OPENAI_API_KEY"),
            base_url=cfg.base_url,
            temperature=cfg.temperature,
            timeout_s=cfg.timeout_s,
            policy=RetryPolicy(
                max_retries=cfg.max_retries,
                backoff_base_s=cfg.backoff_base_s,
                backoff_max_s=cfg.backoff_max_s,
                max_retry_after_s=cfg.max_retry_after_s,
            ),
            json_schema=cfg.json_schema,
        )

    def describe(self) -> dict[str, Any]:
        """Return ``{"kind": "openai", **config}``; the API key is never included."""
        return json_safe({"kind": "openai", **dataclasses.asdict(self.config)})

    # ------------------------------------------------------------------ annotation

    def annotate(
        self,
        graph: ConceptGraph,
        items: Sequence[TextItem],
        *,
        nodes: Sequence[str] | None = None,
        on_progress: ProgressCallback | None = None,
        budget: float | None = None,
    ) -> AnnotationBatch:
        """Annotate texts, asking only for node values missing from the cache.

        See `Teacher.annotate`. `budget` defaults to ``config.budget``. Texts that would
        exceed it get status "skipped" and the batch has ``stopped_reason="budget"``.
        """
        check_items(items)
        names = requested_nodes(graph, nodes)
        plans = self._plan(graph, items, names)
        meter = BudgetMeter(budget if budget is not None else self.config.budget)
        results: dict[int, TextAnnotation] = {}
        jobs: list[Job] = []
        text_jobs: dict[int, TextJob] = {}
        leaders: dict[str, int] = {}  # text hash -> index of the item that is sent
        followers: dict[int, int] = {}  # index of a repeated text -> index of its leader
        for index, plan in enumerate(plans):
            if not plan.missing:
                results[index] = self.build_annotation(plan, "ok", cached=True)
            elif plan.text_hash in leaders:
                followers[index] = leaders[plan.text_hash]
            else:
                leaders[plan.text_hash] = index
                jobs.append(Job(index, plan.item.id, self._estimate_job(graph, plan).cost))
                text_jobs[index] = plan
        if results:
            report_progress(
                on_progress, len(results), len(items), f"{len(results)} answered from the cache"
            )
        retry_budget = RetryBudget(self.config.max_batch_retries)

        def work(job: Job) -> JobOutcome:
            return annotate_text(self, graph, text_jobs[job.index], job, meter, retry_budget)

        run = run_jobs(
            jobs,
            work,
            concurrency=int(self.config.concurrency),
            meter=meter,
            on_progress=on_progress,
            done_before=len(results),
            total=len(items),
        )
        results.update({index: outcome.annotation for index, outcome in run.outcomes.items()})
        reason = {
            "budget": "not sent: the budget of this batch is reached",
            "retry_cap": "not sent: this batch used all its retries",
            "error": f"not sent: {run.error}",
        }.get(run.stopped_reason or "", "not sent")
        for job in run.not_sent:
            plan = text_jobs[job.index]
            results[job.index] = self.build_annotation(plan, "skipped", error=reason)
        for index, leader in followers.items():
            # A repeated text is sent once; its copies reuse the answer at no cost.
            answer = results[leader]
            results[index] = dataclasses.replace(
                answer, text_id=items[index].id, cost=0.0, input_tokens=0, output_tokens=0,
                latency_s=0.0, n_calls=0, cached=answer.status == "ok",
            )
        annotations = [results[i] for i in range(len(items))]
        if run.not_sent or followers:
            info = reason if run.not_sent else f"{len(followers)} repeated texts reused answers"
            report_progress(on_progress, len(items), len(items), info)
        if run.stopped_reason is not None:
            logger.warning(
                "teacher %s stopped sending after %d of %d texts: %s",
                self.name, len(run.outcomes), len(jobs), run.error or run.stopped_reason,
            )
        return AnnotationBatch(
            annotations=annotations,
            n_calls=sum(a.n_calls for a in annotations),
            cost=sum(a.cost for a in annotations),
            stopped_reason=run.stopped_reason,
            error=run.error,
            input_tokens=sum(a.input_tokens for a in annotations),
            output_tokens=sum(a.output_tokens for a in annotations),
            n_retries=retry_budget.used,
        )

    def estimate_cost(
        self,
        graph: ConceptGraph,
        items: Sequence[TextItem],
        *,
        nodes: Sequence[str] | None = None,
    ) -> CostEstimate:
        """Estimate the cost of annotating `items` before anything is sent.

        Texts fully answered by the cache are free. Tokens are estimated at about
        4 characters per token for the prompt, the schema and the expected reply.
        """
        check_items(items)
        plans = self._plan(graph, items, requested_nodes(graph, nodes))
        estimates = [self._estimate_job(graph, plan) for plan in plans if plan.missing]
        return CostEstimate(
            n_texts=len(estimates),
            input_tokens=sum(e.input_tokens for e in estimates),
            output_tokens=sum(e.output_tokens for e in estimates),
            cost=sum(e.cost for e in estimates),
            n_cached=len(plans) - len(estimates),
        )

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """Return the USD cost of a request with these token counts on this teacher's model."""
        return cost_usd(self.config.model, input_tokens, output_tokens, prices=self.config.prices)

    def _plan(
        self, graph: ConceptGraph, items: Sequence[TextItem], names: list[str]
    ) -> list[TextJob]:
        keys = {name: node_key(graph.node(name)) for name in names}
        hashes = [text_hash(item.text) for item in items]
        found: dict[tuple[str, str], str] = {}
        if self.cache is not None:
            try:
                found = self.cache.lookup(
                    self.config.model, self.prompt_version, keys.values(), hashes
                )
            except SQLAlchemyError as err:
                raise TeacherError(
                    f"could not read the answer cache: {type(err).__name__}: {err.args[0]}"
                ) from err
        plans = []
        for item, digest in zip(items, hashes):
            known = {n: found[(digest, keys[n])] for n in names if (digest, keys[n]) in found}
            missing = [graph.node(n) for n in names if n not in known]
            plans.append(TextJob(item=item, text_hash=digest, known=known, missing=missing,
                                 keys=keys))
        return plans

    def _estimate_job(self, graph: ConceptGraph, plan: TextJob) -> CostEstimate:
        messages = prompts.annotation_messages(
            graph.task, plan.missing, plan.item.text, json_schema=self.chat.json_schema
        )
        prompt_chars = sum(len(m["content"]) for m in messages)
        schema_chars = len(json.dumps(prompts.annotation_schema(plan.missing)))
        input_tokens = prompts.estimate_tokens(prompt_chars + schema_chars)
        reply = {node.name: max(node.values, key=len) for node in plan.missing}
        output_tokens = prompts.estimate_tokens(len(json.dumps(reply)))
        return CostEstimate(1, input_tokens, output_tokens, self.cost(input_tokens, output_tokens))

    def build_annotation(self, plan: TextJob, status: str, **fields: Any) -> TextAnnotation:
        """Build this teacher's TextAnnotation for `plan`; `values` defaults to the cached ones."""
        return TextAnnotation(
            text_id=plan.item.id,
            values=dict(fields.pop("values", plan.known)),
            status=status,  # type: ignore[arg-type]
            source="teacher",
            teacher=self.name,
            model=self.config.model,
            prompt_version=self.prompt_version,
            **fields,
        )

    # ------------------------------------------------------------------ graph proposal

    def propose_graph(
        self,
        task: str,
        labels: Sequence[str],
        examples: Sequence[str | tuple[str, str]],
        *,
        output: str = "label",
    ) -> ConceptGraph:
        """Ask the model to externalize how it decides `task` as a concept graph.

        The reply goes through `ConceptGraph.from_dict`. An invalid graph gets one repair
        request that quotes the validation error.

        Parameters
        ----------
        task : str
            Plain-language description of the classification task.
        labels : sequence of str
            The task's labels, at least two; they become the output node's values.
        examples : sequence of str or (str, str)
            A handful of example texts, optionally with their labels.
        output : str, default="label"
            Name of the output node.

        Raises
        ------
        TeacherError
            If the request fails, the model refuses, or the graph is still invalid after
            the repair; the message lists the validation errors.
        """
        return propose_graph(self, task, labels, examples, output=output)

    # ------------------------------------------------------------------ connection check

    def check_connection(self) -> str:
        """Send a tiny request and return a short message saying the server answered.

        Raises
        ------
        TeacherError
            With the reason: rejected key, unknown model, timeout or no connection.
        """
        start = time.monotonic()
        try:
            reply = self.chat.complete(
                lambda _json_schema: prompts.connection_messages(),
                schema=None,
                max_retries=0,
            )
        except CallError as err:
            raise TeacherError(f"connection check failed: {err}") from None
        elapsed = time.monotonic() - start
        if self.cache is not None:
            self.cache.log_calls([
                CallRecord(
                    teacher=self.name, model=self.config.model, prompt_version="check",
                    kind="check", status="ok", input_tokens=reply.input_tokens,
                    output_tokens=reply.output_tokens,
                    cost=self.cost(reply.input_tokens, reply.output_tokens),
                    latency_s=reply.latency_s, raw=reply.content,
                )
            ])
        return (
            f"Connected to {self.chat.server}: model {self.config.model!r} replied "
            f"in {elapsed:.1f} s."
        )


__all__ = ["OpenAITeacher", "OpenAITeacherConfig"]
