"""Parsing and validation of LLM replies against a concept graph.

This module turns reply text into validated node values or a graph dict. It never coerces:
a value that is not exactly one of its node's values is an error, never a default. The
error messages are written to be quoted back to the model in a repair request and to be
shown to a person.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from gcp.graph import ConceptNode

_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n(.*?)\n?```\s*$", re.DOTALL)


class ReplyError(ValueError):
    """A reply is not valid JSON or does not match the requested nodes."""


def parse_json_object(content: str) -> dict[str, Any]:
    """Parse a reply as one JSON object, accepting a surrounding Markdown code fence.

    Raises
    ------
    ReplyError
        If the text is not JSON or not an object.
    """
    match = _FENCE.match(content)
    body = match.group(1) if match else content
    try:
        data = json.loads(body)
    except json.JSONDecodeError as err:
        raise ReplyError(
            f"the reply is not valid JSON ({err.msg} at character {err.pos})"
        ) from None
    if not isinstance(data, dict):
        raise ReplyError(f"the reply is JSON but not an object: it is a {type(data).__name__}")
    return data


def validate_values(data: dict[str, Any], nodes: Sequence[ConceptNode]) -> dict[str, str]:
    """Check that `data` has a valid value for every node and return those values.

    Keys that are not requested nodes are ignored.

    Raises
    ------
    ReplyError
        Listing every missing node and every invalid value.
    """
    problems = []
    missing = [node.name for node in nodes if node.name not in data]
    if missing:
        problems.append(f"missing key(s) {missing}")
    values: dict[str, str] = {}
    for node in nodes:
        if node.name not in data:
            continue
        value = data[node.name]
        if isinstance(value, str) and value in node.values:
            values[node.name] = value
        else:
            problems.append(
                f"invalid value {value!r} for {node.name!r}: expected one of {list(node.values)}"
            )
    if problems:
        raise ReplyError("; ".join(problems))
    return values


def proposal_to_graph_dict(
    data: dict[str, Any], *, task: str, labels: Sequence[str], output: str
) -> dict[str, Any]:
    """Convert a proposal reply into the dict that `ConceptGraph.from_dict` reads.

    The output node is added if the reply left it out; its values must be the labels.

    Raises
    ------
    ReplyError
        If the reply does not have the expected shape or the output values are not the labels.
    """
    concepts = data.get("concepts")
    edges = data.get("edges", [])
    if not isinstance(concepts, list) or not concepts:
        raise ReplyError("'concepts' must be a non-empty list of {name, question, values}")
    if not isinstance(edges, list):
        raise ReplyError("'edges' must be a list of [parent, child] pairs")
    nodes = []
    for index, concept in enumerate(concepts):
        if not isinstance(concept, dict):
            raise ReplyError(f"concept #{index} is not an object with name, question, values")
        nodes.append(
            {key: concept[key] for key in ("name", "question", "values") if key in concept}
        )
    by_name = {node.get("name"): node for node in nodes}
    if output not in by_name:
        question = f"Which label fits the text? {task}"
        nodes.append({"name": output, "question": question, "values": list(labels)})
    else:
        proposed = by_name[output].get("values")
        if not isinstance(proposed, list) or sorted(map(str, proposed)) != sorted(labels):
            raise ReplyError(
                f"the output concept {output!r} has values {proposed!r}; "
                f"they must be exactly the labels {list(labels)}"
            )
        by_name[output]["values"] = list(labels)
    return {"task": task, "output": output, "nodes": nodes, "edges": edges}
