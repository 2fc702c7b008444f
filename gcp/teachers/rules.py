"""The rule teacher: node values from regex/keyword rules, labels from a label column.

A node's ``rule`` (`ConceptNode.rule`, stored in the graph JSON) has this format::

    {
        "yes": {"regex": ["\\bfree\\b"], "keywords": ["winner", "act now"]},
        "default": "no",
        "case_sensitive": false
    }

- Every key other than ``default`` and ``case_sensitive`` is one of the node's values and
  maps to conditions: ``regex`` (Python regular expressions, matched with `re.search`) and
  ``keywords`` (words or phrases matched as whole words). Either list may be absent, but
  not both.
- Values are tried in the order written; the first value with a matching condition wins.
- ``default`` (optional) is the value when nothing matches. Without it, a text that matches
  nothing fails for that node.
- ``case_sensitive`` (optional, default false) applies to both regex and keywords.

Because ``default`` and ``case_sensitive`` are reserved keys, a node value with one of these
names cannot carry conditions. The output node may instead be answered from a label column
(`RuleTeacher(labels=...)`). This module does not judge whether a rule is any good.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gcp.exceptions import GraphValidationError, TeacherError
from gcp.graph import ConceptGraph, ConceptNode
from gcp.teachers.base import (
    AnnotationBatch,
    ProgressCallback,
    Teacher,
    TextAnnotation,
    TextItem,
    check_items,
    log_failures,
    report_progress,
    requested_nodes,
)

RESERVED_KEYS = ("default", "case_sensitive")
CONDITION_KEYS = ("regex", "keywords")
RULES_VERSION = "rules-v1"


@dataclass(frozen=True)
class CompiledRule:
    """A validated node rule, ready to apply."""

    node: str  # node name
    # (value, ((reason, pattern), ...)) in rule order; the reason is shown in the raw reply
    conditions: tuple[tuple[str, tuple[tuple[str, re.Pattern[str]], ...]], ...]
    default: str | None  # value when nothing matches

    def apply(self, text: str) -> tuple[str | None, str]:
        """Return (value, reason), or (None, reason) if nothing matched and there is no default."""
        for value, patterns in self.conditions:
            for why, pattern in patterns:
                if pattern.search(text):
                    return value, why
        if self.default is not None:
            return self.default, "default"
        return None, "no condition matched and the rule has no 'default'"


def validate_rule(node: ConceptNode) -> CompiledRule:
    """Check a node's rule and compile its patterns.

    Raises
    ------
    GraphValidationError
        Naming the node and the invalid part, if the node has no rule or it is invalid.
    """
    rule = node.rule
    where = f"rule of node {node.name!r}"
    if rule is None:
        raise GraphValidationError(f"node {node.name!r} has no rule")
    if not isinstance(rule, Mapping):
        raise GraphValidationError(f"{where} must be a JSON object, got {type(rule).__name__}")
    flags = _flags(rule, where)
    default = rule.get("default")
    if default is not None and default not in node.values:
        raise GraphValidationError(
            f"{where}: default {default!r} is not one of the node's values {list(node.values)}"
        )
    conditions = []
    for value, spec in rule.items():
        if value in RESERVED_KEYS:
            continue
        if value not in node.values:
            raise GraphValidationError(
                f"{where}: key {value!r} is not one of the node's values {list(node.values)} "
                f"(other allowed keys: {list(RESERVED_KEYS)})"
            )
        conditions.append((value, _compile_conditions(spec, f"{where}, value {value!r}", flags)))
    if not conditions:
        raise GraphValidationError(
            f"{where} has no conditions: add e.g. "
            f"{{\"{node.values[-1]}\": {{\"keywords\": [...]}}}}"
        )
    return CompiledRule(node=node.name, conditions=tuple(conditions), default=default)


def _flags(rule: Mapping[str, Any], where: str) -> int:
    case_sensitive = rule.get("case_sensitive", False)
    if not isinstance(case_sensitive, bool):
        raise GraphValidationError(f"{where}: 'case_sensitive' must be true or false")
    return 0 if case_sensitive else re.IGNORECASE


def _compile_conditions(
    spec: Any, where: str, flags: int
) -> tuple[tuple[str, re.Pattern[str]], ...]:
    if not isinstance(spec, Mapping):
        raise GraphValidationError(f"{where} must be an object with 'regex' and/or 'keywords'")
    unknown = [key for key in spec if key not in CONDITION_KEYS]
    if unknown:
        raise GraphValidationError(f"{where}: unknown key(s) {unknown}; use {list(CONDITION_KEYS)}")
    patterns: list[tuple[str, re.Pattern[str]]] = []
    for key in CONDITION_KEYS:
        entries = spec.get(key, [])
        if not isinstance(entries, list) or not all(isinstance(e, str) and e for e in entries):
            raise GraphValidationError(f"{where}: {key!r} must be a list of non-empty strings")
        for entry in entries:
            if key == "regex":
                try:
                    patterns.append((f"regex {entry!r}", re.compile(entry, flags)))
                except re.error as err:
                    raise GraphValidationError(
                        f"{where}: invalid regex {entry!r}: {err}"
                    ) from None
            else:
                # \b only works next to word characters, so a keyword such as "5/5" is
                # bounded by lookarounds instead.
                pattern = rf"(?<!\w){re.escape(entry)}(?!\w)"
                patterns.append((f"keyword {entry!r}", re.compile(pattern, flags)))
    if not patterns:
        raise GraphValidationError(f"{where} has neither 'regex' nor 'keywords' entries")
    return tuple(patterns)


class RuleTeacher(Teacher):
    """A free, offline teacher that applies node rules and reads labels from a column.

    Parameters
    ----------
    labels : mapping of str to str, optional
        Text id -> label; answers the graph's output node when that node has no rule.
    name : str, default="rules"
        Display name stored with every answer.
    """

    source = "rule"

    def __init__(self, *, labels: Mapping[str, str] | None = None, name: str = "rules") -> None:
        self.labels = dict(labels) if labels is not None else None
        self.name = name

    def describe(self) -> dict[str, Any]:
        """Return ``{"kind": "rules", "name": ...}``; the labels are data and are not included."""
        return {"kind": "rules", "name": self.name}

    def annotate(
        self,
        graph: ConceptGraph,
        items: Sequence[TextItem],
        *,
        nodes: Sequence[str] | None = None,
        on_progress: ProgressCallback | None = None,
        budget: float | None = None,
    ) -> AnnotationBatch:
        """Annotate texts from node rules and the label column; see `Teacher.annotate`.

        Raises
        ------
        TeacherError
            If a requested node has neither a rule nor (for the output node) labels.
        GraphValidationError
            If a requested node's rule is invalid.
        """
        check_items(items)
        names = requested_nodes(graph, nodes)
        rules = self._rules(graph, names)
        annotations = []
        for done, item in enumerate(items, start=1):
            annotation = self._annotate_one(graph, names, rules, item)
            annotations.append(annotation)
            report_progress(on_progress, done, len(items), f"{item.id}: {annotation.status}")
        log_failures(self, annotations)
        return AnnotationBatch(annotations=annotations)

    def _rules(self, graph: ConceptGraph, names: list[str]) -> dict[str, CompiledRule]:
        rules: dict[str, CompiledRule] = {}
        missing = []
        for name in names:
            node = graph.node(name)
            if node.rule is not None:
                rules[name] = validate_rule(node)
            elif not (name == graph.output and self.labels is not None):
                missing.append(name)
        if missing:
            hint = ""
            if graph.output in missing:
                hint = (
                    f"; the output node {graph.output!r} can also come from a label column "
                    "(labels=)"
                )
            raise TeacherError(
                f"node(s) {missing} have no rule: add a rule to each (see gcp.teachers.rules), "
                f"or ask another teacher for them{hint}"
            )
        return rules

    def _annotate_one(
        self,
        graph: ConceptGraph,
        names: list[str],
        rules: dict[str, CompiledRule],
        item: TextItem,
    ) -> TextAnnotation:
        values: dict[str, str] = {}
        reasons: dict[str, str] = {}
        errors: list[str] = []
        for name in names:
            if name in rules:
                value, why = rules[name].apply(item.text)
                if value is None:
                    errors.append(f"node {name!r}: {why}")
                    continue
            else:
                value, why = self._label(graph, item, errors)
                if value is None:
                    continue
            values[name] = value
            reasons[name] = f"{value} ({why})"
        return TextAnnotation(
            text_id=item.id,
            values=values,
            status="failed" if errors else "ok",
            error="; ".join(errors) or None,
            raw=json.dumps(reasons, ensure_ascii=False),
            source="rule",
            teacher=self.name,
            model="rules",
            prompt_version=RULES_VERSION,
        )

    def _label(
        self, graph: ConceptGraph, item: TextItem, errors: list[str]
    ) -> tuple[str | None, str]:
        label = (self.labels or {}).get(item.id)
        if label is None:
            errors.append(f"text id {item.id!r} has no label in the label column")
            return None, ""
        if label not in graph.labels:
            errors.append(
                f"label {label!r} of text {item.id!r} is not one of the labels {list(graph.labels)}"
            )
            return None, ""
        return label, "label column"
