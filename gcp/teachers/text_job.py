"""Annotation of one text by the LLM teacher: request, validation, one repair, storage.

`annotate_text` runs in a worker thread. It sends the request for the nodes missing from
the cache, validates the reply against the graph, sends at most one repair request that
quotes the error, and writes the text's calls and answers to the cache in one transaction.
It never raises for a failure of this text; it returns a failed `TextAnnotation` that keeps
the raw reply and the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from gcp.graph import ConceptGraph, ConceptNode
from gcp.teachers import prompts
from gcp.teachers.base import TextItem
from gcp.teachers.batch import BudgetMeter, Job, JobOutcome
from gcp.teachers.cache import CallRecord
from gcp.teachers.chat import CallError, ChatReply, RetryBudget
from gcp.teachers.replies import ReplyError, parse_json_object, validate_values

if TYPE_CHECKING:
    from gcp.teachers.openai_teacher import OpenAITeacher

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextJob:
    """Request plan for one text: the nodes missing from the cache."""

    item: TextItem  # the text
    text_hash: str  # gcp.hashing.text_hash(item.text)
    known: dict[str, str]  # node name -> value found in the cache
    missing: list[ConceptNode]  # nodes to ask for, in topological order
    keys: dict[str, str]  # node name -> cache node key, for every requested node


@dataclass
class _Tally:
    """Calls, tokens and money spent on one text."""

    calls: list[CallRecord] = field(default_factory=list)
    cost: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0


class _Failure(Exception):
    """Internal: this text failed. A set `stop` also stops the batch from sending more."""

    def __init__(self, error: str, *, raw: str | None = None, stop: str | None = None,
                 batch_error: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.raw = raw
        self.stop = stop
        self.batch_error = batch_error


def annotate_text(
    teacher: OpenAITeacher,
    graph: ConceptGraph,
    plan: TextJob,
    job: Job,
    meter: BudgetMeter,
    retry_budget: RetryBudget,
) -> JobOutcome:
    """Ask the teacher for `plan.missing` on one text; see the module docstring."""
    run = _TextRun(teacher, graph, plan, retry_budget)
    reserved = job.estimate
    try:
        values, raw = run.first_reply()
        if values is None:
            reserved += run.reserve_repair(meter)
            values, raw = run.repair_reply()
    except _Failure as failure:
        logger.warning("teacher %s: text %r failed: %s", teacher.name, plan.item.id, failure.error)
        annotation = teacher.build_annotation(
            plan, "failed", error=failure.error, raw=failure.raw, **run.fields()
        )
        store_error = run.store({})
        meter.settle(reserved, run.tally.cost)
        stop = failure.stop or ("error" if store_error else None)
        return JobOutcome(annotation, stop=stop, error=failure.batch_error or store_error)
    meter.settle(reserved, run.tally.cost)
    store_error = run.store(values)
    annotation = teacher.build_annotation(
        plan, "ok", values={**plan.known, **values}, raw=raw, **run.fields()
    )
    return JobOutcome(annotation, stop="error" if store_error else None, error=store_error)


class _TextRun:
    """State of one text's requests."""

    def __init__(
        self,
        teacher: OpenAITeacher,
        graph: ConceptGraph,
        plan: TextJob,
        retry_budget: RetryBudget,
    ) -> None:
        self.teacher = teacher
        self.plan = plan
        self.retry_budget = retry_budget
        self.tally = _Tally()
        self.schema = prompts.annotation_schema(plan.missing)
        self.task = graph.task
        self.first: ChatReply | None = None
        self.problem = ""

    def messages(self, json_schema: bool) -> list[dict[str, str]]:
        return prompts.annotation_messages(
            self.task, self.plan.missing, self.plan.item.text, json_schema=json_schema
        )

    def first_reply(self) -> tuple[dict[str, str] | None, str | None]:
        """Send the first request; return (values, raw), or (None, raw) if a repair is due."""
        reply = self._send(self.messages, kind="annotate", context="")
        self.first = reply
        values, problem = self._check(reply, context="")
        if values is not None:
            return values, reply.content
        self.problem = problem
        logger.info(
            "invalid reply for text %r (%s); sending one repair request", self.plan.item.id, problem
        )
        return None, reply.content

    def reserve_repair(self, meter: BudgetMeter) -> float:
        """Reserve the estimated repair cost, or fail the text if the budget is reached."""
        reply_text = self.first.content if self.first is not None else ""
        chars = sum(len(m["content"]) for m in self.messages(True)) + len(reply_text or "")
        tokens = prompts.estimate_tokens(chars + len(prompts.REPAIR) + len(self.problem))
        estimate = self.teacher.cost(tokens, prompts.estimate_tokens(len(reply_text or "")))
        if not meter.try_reserve(estimate):
            raise _Failure(
                f"invalid reply ({self.problem}); no repair request sent because the budget "
                "of this batch is reached",
                raw=reply_text,
            )
        return estimate

    def repair_reply(self) -> tuple[dict[str, str], str | None]:
        """Send the repair request; return its valid values or fail the text."""
        first_raw = self.first.content if self.first is not None else ""

        def repair_messages(json_schema: bool) -> list[dict[str, str]]:
            first_messages = self.messages(json_schema)
            return prompts.repair_messages(first_messages, first_raw or "", self.problem)

        context = f"invalid reply ({self.problem}); the repair request failed: "
        reply = self._send(repair_messages, kind="repair", context=context, raw=first_raw)
        values, problem = self._check(
            reply, context=f"invalid reply ({self.problem}); the repair reply: "
        )
        if values is None:
            raise _Failure(f"invalid reply after one repair request: {problem}", raw=reply.content)
        return values, reply.content

    def _send(
        self,
        messages: Callable[[bool], list[dict[str, str]]],
        *,
        kind: str,
        context: str,
        raw: str | None = None,
    ) -> ChatReply:
        try:
            reply = self.teacher.chat.complete(
                messages,
                schema=self.schema,
                schema_name="concept_values",
                budget=self.retry_budget,
                text_id=self.plan.item.id,
            )
        except CallError as err:
            self._record_errors(err.attempt_errors, kind)
            stop = "error" if err.fatal else ("retry_cap" if err.retry_cap else None)
            raise _Failure(
                context + str(err), raw=raw, stop=stop, batch_error=str(err) if err.fatal else None
            ) from None
        self._record_errors(reply.attempt_errors, kind)
        cost = self.teacher.cost(reply.input_tokens, reply.output_tokens)
        self.tally.cost += cost
        self.tally.input_tokens += reply.input_tokens
        self.tally.output_tokens += reply.output_tokens
        self.tally.latency_s += reply.latency_s
        self.tally.calls.append(self._record(
            kind, "ok", input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
            cost=cost, latency_s=reply.latency_s, raw=reply.content,
        ))
        return reply

    def _check(self, reply: ChatReply, *, context: str) -> tuple[dict[str, str] | None, str]:
        """Validate a reply: return (values, "") or (None, problem). A refusal fails the text."""
        if reply.refusal or not reply.content:
            reason = (
                f"the model refused: {reply.refusal}" if reply.refusal
                else f"the model returned an empty reply (finish_reason {reply.finish_reason!r})"
            )
            self._mark_last("refused", reason)
            raise _Failure(context + reason, raw=reply.content or reply.refusal)
        try:
            return validate_values(parse_json_object(reply.content), self.plan.missing), ""
        except ReplyError as err:
            problem = str(err)
            if reply.finish_reason == "length":
                problem += " (the reply was cut off at the token limit)"
            self._mark_last("invalid", problem)
            return None, problem

    def store(self, values: dict[str, str]) -> str | None:
        """Write this text's calls and answers; return an error message if the write failed."""
        cache = self.teacher.cache
        if cache is None:
            return None
        answers = {self.plan.keys[name]: (name, value) for name, value in values.items()}
        try:
            cache.record_text(
                model=self.teacher.config.model,
                prompt_version=self.teacher.prompt_version,
                text_hash=self.plan.text_hash,
                answers=answers,
                calls=self.tally.calls,
            )
        except SQLAlchemyError as err:
            logger.error("could not store the answers for text %r: %s", self.plan.item.id, err)
            return f"could not write to the answer cache: {type(err).__name__}: {err.args[0]}"
        return None

    def fields(self) -> dict[str, Any]:
        """Cost fields of the text's TextAnnotation."""
        return {
            "cost": self.tally.cost,
            "input_tokens": self.tally.input_tokens,
            "output_tokens": self.tally.output_tokens,
            "latency_s": self.tally.latency_s,
            "n_calls": len(self.tally.calls),
        }

    def _record(self, kind: str, status: str, **fields: Any) -> CallRecord:
        return CallRecord(
            teacher=self.teacher.name, model=self.teacher.config.model,
            prompt_version=self.teacher.prompt_version, kind=kind, status=status,
            text_hash=self.plan.text_hash, text_id=self.plan.item.id, **fields,
        )

    def _record_errors(self, errors: tuple[tuple[str, float], ...], kind: str) -> None:
        for message, latency in errors:
            self.tally.latency_s += latency
            self.tally.calls.append(self._record(kind, "error", error=message, latency_s=latency))

    def _mark_last(self, status: str, error: str) -> None:
        self.tally.calls[-1] = replace(self.tally.calls[-1], status=status, error=error)
