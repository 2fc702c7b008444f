"""Graph proposal by the LLM teacher: one request, validation, at most one repair.

The model is asked to externalize how it decides a task as concepts and edges. Its reply
must pass `ConceptGraph.from_dict`. An invalid graph gets one repair request that quotes
the validation error. If the second graph is invalid too, it is rejected with both errors.
Every request is logged in the answer cache's call log, but proposals are not cached.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gcp.exceptions import GraphValidationError, TeacherError
from gcp.graph import NAME_PATTERN, ConceptGraph
from gcp.teachers import prompts
from gcp.teachers.cache import CallRecord
from gcp.teachers.chat import CallError
from gcp.teachers.replies import ReplyError, parse_json_object, proposal_to_graph_dict

if TYPE_CHECKING:
    from gcp.teachers.openai_teacher import OpenAITeacher

logger = logging.getLogger(__name__)


def propose_graph(
    teacher: OpenAITeacher,
    task: str,
    labels: Sequence[str],
    examples: Sequence[str | tuple[str, str]],
    *,
    output: str,
) -> ConceptGraph:
    """Run `OpenAITeacher.propose_graph`; see its docstring."""
    labels = [str(label) for label in labels]
    if len(set(labels)) < 2 or len(set(labels)) != len(labels):
        raise TeacherError(f"give at least two distinct labels, got {labels}")
    if not NAME_PATTERN.match(output):
        raise TeacherError(f"invalid output node name {output!r}: use e.g. 'label'")
    messages = prompts.proposal_messages(
        task, labels, examples, output=output, max_concepts=teacher.config.max_concepts
    )
    calls: list[CallRecord] = []
    try:
        reply = _send(teacher, messages, calls, kind="propose")
        try:
            return _graph_from_reply(reply, task, labels, output)
        except (ReplyError, GraphValidationError) as err:
            first = err
        logger.warning("proposed graph is invalid (%s); sending one repair request", first)
        _mark_last(calls, "invalid", str(first))
        repair = prompts.repair_messages(
            messages, reply, str(first), template=prompts.PROPOSE_REPAIR
        )
        second_reply = _send(teacher, repair, calls, kind="repair")
        try:
            return _graph_from_reply(second_reply, task, labels, output)
        except (ReplyError, GraphValidationError) as second:
            _mark_last(calls, "invalid", str(second))
            raise TeacherError(
                f"the proposed graph is invalid after one repair request: {second} "
                f"(first reply: {first})"
            ) from None
    finally:
        if teacher.cache is not None:
            teacher.cache.log_calls(calls)


def _send(
    teacher: OpenAITeacher, messages: list[dict[str, str]], calls: list[CallRecord], *, kind: str
) -> str:
    base = CallRecord(
        teacher=teacher.name, model=teacher.config.model,
        prompt_version=prompts.PROPOSE_PROMPT_VERSION, kind=kind, status="ok",
    )
    try:
        reply = teacher.chat.complete(
            lambda _json_schema: messages,
            schema=prompts.proposal_schema(),
            schema_name="concept_graph",
        )
    except CallError as err:
        calls.extend(_error_records(base, err.attempt_errors))
        raise TeacherError(f"graph proposal failed: {err}") from None
    calls.extend(_error_records(base, reply.attempt_errors))
    record = dataclasses.replace(
        base,
        input_tokens=reply.input_tokens,
        output_tokens=reply.output_tokens,
        cost=teacher.cost(reply.input_tokens, reply.output_tokens),
        latency_s=reply.latency_s,
        raw=reply.content,
    )
    if reply.refusal or not reply.content:
        reason = (
            f"the model refused: {reply.refusal}" if reply.refusal
            else f"the model returned an empty reply (finish_reason {reply.finish_reason!r})"
        )
        calls.append(dataclasses.replace(record, status="refused", error=reason))
        raise TeacherError(f"graph proposal failed: {reason}")
    calls.append(record)
    return reply.content


def _graph_from_reply(reply: str, task: str, labels: list[str], output: str) -> ConceptGraph:
    data = parse_json_object(reply)
    graph_dict = proposal_to_graph_dict(data, task=task, labels=labels, output=output)
    return ConceptGraph.from_dict(graph_dict)


def _mark_last(calls: list[CallRecord], status: str, error: str) -> None:
    calls[-1] = dataclasses.replace(calls[-1], status=status, error=error)


def _error_records(
    base: CallRecord, errors: Sequence[tuple[str, float]]
) -> list[CallRecord]:
    return [
        dataclasses.replace(base, status="error", error=message, latency_s=latency)
        for message, latency in errors
    ]
