"""Teachers: the LLM that annotates texts with concept values, and its offline stand-ins.

- `OpenAITeacher`: OpenAI or any OpenAI-compatible server, with an answer cache, budget,
  retries and graph proposal.
- `RecordedTeacher`: answers read from a CSV or JSONL file of earlier teacher answers.
- `RuleTeacher`: answers from per-node regex/keyword rules and a label column.

All of them implement `Teacher`; `teacher_from_config` rebuilds one from `Teacher.describe()`.
The OpenAI teacher is imported lazily, so offline use never imports `openai`.
"""

from __future__ import annotations

from typing import Any

from gcp.teachers.base import (
    AnnotationBatch,
    CostEstimate,
    Teacher,
    TextAnnotation,
    TextItem,
    teacher_from_config,
)
from gcp.teachers.cache import AnswerCache
from gcp.teachers.recorded import RecordedTeacher
from gcp.teachers.rules import RuleTeacher, validate_rule

__all__ = [
    "AnnotationBatch",
    "AnswerCache",
    "CostEstimate",
    "OpenAITeacher",
    "OpenAITeacherConfig",
    "RecordedTeacher",
    "RuleTeacher",
    "Teacher",
    "TextAnnotation",
    "TextItem",
    "teacher_from_config",
    "validate_rule",
]


def __getattr__(name: str) -> Any:
    if name in ("OpenAITeacher", "OpenAITeacherConfig"):
        from gcp.teachers import openai_teacher

        return getattr(openai_teacher, name)
    raise AttributeError(f"module 'gcp.teachers' has no attribute {name!r}")
