"""The teacher interface: annotation results, cost estimates and the `Teacher` base class.

A teacher proposes a concept graph for a task and annotates texts with a value for each
requested node. Every `TextAnnotation` records where it came from (teacher, model, prompt
version), what it cost and the raw reply, so a person can audit it later. This module does
not talk to any server and does not store anything; see `openai_teacher`, `recorded`,
`rules` and `cache`.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from gcp.exceptions import TeacherError
from gcp.graph import ConceptGraph

Status = Literal["ok", "failed", "skipped"]
Source = Literal["teacher", "recorded", "rule"]
StoppedReason = Literal["budget", "retry_cap", "error"]
ProgressCallback = Callable[[int, int, str], None]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextItem:
    """A text to annotate and the caller's id for it."""

    id: str  # caller's id, unique within a batch
    text: str  # the text, sent to the teacher exactly as given


@dataclass(frozen=True)
class TextAnnotation:
    """The teacher's answer for one text.

    `values` contains only validated values: every entry is one of its node's values.
    With status "ok" it has every requested node. With "failed" or "skipped" it has the
    nodes already known (for example from the cache) and `error` says what went wrong.
    """

    text_id: str  # TextItem.id
    values: dict[str, str]  # node name -> value, validated against the graph
    status: Status  # "ok": all requested nodes answered; "failed"; "skipped": never sent
    error: str | None = None  # why the text failed or was skipped
    raw: str | None = None  # last raw reply (or recorded row, or matched rules) for audit
    source: Source = "teacher"  # "teacher" (LLM), "recorded" (file) or "rule"
    teacher: str = ""  # Teacher.name
    model: str = ""  # model name, file name or "rules"
    prompt_version: str = ""  # version of the prompt template the answer came from
    cost: float = 0.0  # USD spent on this text in this batch (0 for cache hits)
    input_tokens: int = 0  # prompt tokens spent on this text in this batch
    output_tokens: int = 0  # completion tokens spent on this text in this batch
    latency_s: float = 0.0  # wall time of this text's requests, retries included
    cached: bool = False  # True if every value came from the answer cache
    n_calls: int = 0  # requests sent for this text (first try, repair, retries)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict of every field."""
        return asdict(self)


@dataclass(frozen=True)
class AnnotationBatch:
    """The result of one `Teacher.annotate` call, in the order of the items."""

    annotations: list[TextAnnotation]  # one per item, same order
    n_calls: int = 0  # requests sent, repairs and retries included
    cost: float = 0.0  # USD spent by this batch
    stopped_reason: StoppedReason | None = None  # why sending stopped before the end
    error: str | None = None  # batch-level error, e.g. rejected API key or no known text
    input_tokens: int = 0  # prompt tokens spent by this batch
    output_tokens: int = 0  # completion tokens spent by this batch
    n_retries: int = 0  # retries after 429, 5xx, timeouts or connection errors

    @property
    def ok(self) -> list[TextAnnotation]:
        """Annotations with status "ok"."""
        return [a for a in self.annotations if a.status == "ok"]

    @property
    def failed(self) -> list[TextAnnotation]:
        """Annotations with status "failed"."""
        return [a for a in self.annotations if a.status == "failed"]

    @property
    def skipped(self) -> list[TextAnnotation]:
        """Annotations with status "skipped" (never sent)."""
        return [a for a in self.annotations if a.status == "skipped"]

    def values_by_id(self) -> dict[str, dict[str, str]]:
        """Return text id -> validated values for every annotation, including partial ones."""
        return {a.text_id: dict(a.values) for a in self.annotations}


@dataclass(frozen=True)
class CostEstimate:
    """An estimate of what annotating a batch will cost, made before anything is sent."""

    n_texts: int  # texts that need a request (cache hits excluded)
    input_tokens: int  # estimated prompt tokens, about 4 characters per token
    output_tokens: int  # estimated completion tokens
    cost: float  # estimated USD at the model's price
    n_cached: int = 0  # texts fully answered from the cache, so free


class Teacher(ABC):
    """Base class of every teacher.

    Subclasses set `name` (shown to people and stored with every answer) and `source`.
    """

    name: str = "teacher"
    source: Source = "teacher"

    @abstractmethod
    def annotate(
        self,
        graph: ConceptGraph,
        items: Sequence[TextItem],
        *,
        nodes: Sequence[str] | None = None,
        on_progress: ProgressCallback | None = None,
        budget: float | None = None,
    ) -> AnnotationBatch:
        """Annotate `items` with a value for each requested node.

        Parameters
        ----------
        graph : ConceptGraph
            The graph whose node questions and values are asked.
        items : sequence of TextItem
            Texts to annotate; ids must be unique.
        nodes : sequence of str, optional
            Node names to ask for. Default: every node of the graph, the output included.
            When given, exactly these nodes are asked (add ``graph.output`` to get labels).
        on_progress : callable, optional
            Called as ``on_progress(done, total, info)`` after each text.
        budget : float, optional
            Maximum USD this call may spend; texts that would exceed it are skipped.

        Returns
        -------
        AnnotationBatch
            One annotation per item; single-text failures never raise.

        Raises
        ------
        TeacherError
            If the request itself is invalid (unknown node, duplicate ids) or the teacher
            cannot answer any of the requested nodes.
        """

    def estimate_cost(
        self,
        graph: ConceptGraph,
        items: Sequence[TextItem],
        *,
        nodes: Sequence[str] | None = None,
    ) -> CostEstimate:
        """Estimate the cost of `annotate` on the same arguments. Offline teachers are free."""
        requested_nodes(graph, nodes)
        return CostEstimate(n_texts=len(items), input_tokens=0, output_tokens=0, cost=0.0)

    def propose_graph(
        self,
        task: str,
        labels: Sequence[str],
        examples: Sequence[str | tuple[str, str]],
    ) -> ConceptGraph:
        """Ask the teacher to externalize how it decides `task` as a concept graph.

        Raises
        ------
        TeacherError
            Always for offline teachers, which cannot propose graphs.
        """
        raise TeacherError(
            f"the {self.name!r} teacher ({self.source}) cannot propose a concept graph: "
            "use an LLM teacher (kind 'openai') or write the graph by hand"
        )

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Return a JSON-safe description of the configuration, without secrets."""


def requested_nodes(graph: ConceptGraph, nodes: Sequence[str] | None) -> list[str]:
    """Resolve the `nodes` argument of `annotate` to names in topological order.

    Raises
    ------
    TeacherError
        If a name is not a node of `graph` or the list is empty.
    """
    if nodes is None:
        return list(graph.topological_order)
    if isinstance(nodes, str):
        nodes = [nodes]
    unknown = [n for n in nodes if n not in graph.nodes]
    if unknown:
        raise TeacherError(f"unknown node(s) {unknown} requested; the graph has {graph.names}")
    if not nodes:
        raise TeacherError("no nodes requested: pass nodes=None to ask for every node")
    wanted = set(nodes)
    return [n for n in graph.topological_order if n in wanted]


def check_items(items: Sequence[TextItem]) -> None:
    """Raise TeacherError if an item is not a TextItem or two items share an id."""
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, TextItem):
            raise TeacherError(
                f"items must be TextItem(id, text) objects, got {type(item).__name__}"
            )
        if not isinstance(item.text, str):
            raise TeacherError(f"text of item {item.id!r} is {type(item.text).__name__}, not str")
        if item.id in seen:
            raise TeacherError(f"duplicate text id {item.id!r}: ids must be unique in a batch")
        seen.add(item.id)


def report_progress(
    on_progress: ProgressCallback | None, done: int, total: int, info: str
) -> None:
    """Call `on_progress` if it is set."""
    if on_progress is not None:
        on_progress(done, total, info)


def log_failures(teacher: Teacher, annotations: Sequence[TextAnnotation]) -> None:
    """Log one WARNING line that counts the failed texts of a batch and shows the first error."""
    failed = [a for a in annotations if a.status == "failed"]
    if failed:
        logger.warning(
            "teacher %s: %d of %d texts failed; first: text %r: %s",
            teacher.name, len(failed), len(annotations), failed[0].text_id, failed[0].error,
        )


def json_safe(config: Mapping[str, Any]) -> dict[str, Any]:
    """Round-trip `config` through JSON so tuples become lists and the result is storable."""
    return json.loads(json.dumps(dict(config)))


def teacher_from_config(
    config: Mapping[str, Any],
    *,
    cache: Any = None,
    api_key: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Teacher:
    """Build a teacher from the dict that `Teacher.describe` returns.

    Parameters
    ----------
    config : mapping
        ``{"kind": "openai" | "recorded" | "rules", ...}``; the other keys are the options
        of `OpenAITeacherConfig`, `RecordedTeacher` (``path``) or `RuleTeacher`.
    cache : AnswerCache, optional
        Answer cache for the OpenAI teacher; offline teachers ignore it.
    api_key : str, optional
        API key for the OpenAI teacher; default: the ``OPENAI_API_KEY`` variable.
    labels : mapping of str to str, optional
        Text id -> label for the rule teacher's output node.

    Raises
    ------
    TeacherError
        If the kind is unknown, an option is unknown, or the config contains a secret.
    """
    options = dict(config)
    kind = options.pop("kind", None)
    if "api_key" in options:
        raise TeacherError(
            "a teacher config must not contain 'api_key': pass the key as api_key= or set "
            "OPENAI_API_KEY, so that it is never written to the project store"
        )
    if kind == "openai":
        from gcp.teachers.openai_teacher import OpenAITeacher, OpenAITeacherConfig

        return OpenAITeacher(
            _build(OpenAITeacherConfig, options, kind), api_key=api_key, cache=cache
        )
    if kind == "recorded":
        from gcp.teachers.recorded import RecordedTeacher

        if "path" not in options:
            raise TeacherError("a 'recorded' teacher config needs 'path' (a CSV or JSONL file)")
        return _build(RecordedTeacher, options, kind)
    if kind == "rules":
        from gcp.teachers.rules import RuleTeacher

        return _build(RuleTeacher, {"labels": labels, **options}, kind)
    raise TeacherError(f"unknown teacher kind {kind!r}: use 'openai', 'recorded' or 'rules'")


def _build(factory: Callable[..., Any], options: dict[str, Any], kind: str) -> Any:
    try:
        return factory(**options)
    except TypeError as err:
        raise TeacherError(f"invalid option in the {kind!r} teacher config: {err}") from err


__all__ = [
    "AnnotationBatch",
    "CostEstimate",
    "ProgressCallback",
    "Teacher",
    "TextAnnotation",
    "TextItem",
    "check_items",
    "requested_nodes",
    "teacher_from_config",
]
