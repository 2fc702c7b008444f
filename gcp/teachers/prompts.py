"""Prompt templates of the LLM teacher, their versions and the JSON schemas sent with them.

Every template lives here. A version string is derived from the template text itself, so any
edit to a template changes the version and the answer cache never returns answers given to
an older prompt. The task description is part of the prompt but not of the cache key: a
changed task description alone reuses cached answers. This module builds messages and
schemas; it does not send them (see `chat`) or check replies (see `replies`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from gcp.graph import ConceptNode

ANNOTATE_SYSTEM = """You are an expert annotator for this classification task:
{task}

You will receive one text and a list of questions about it. Answer every question about \
that text with exactly one of its allowed values, copied exactly. Judge what the text says, \
not what it might say.
Reply with a single JSON object that maps each question's key to the chosen value, and \
nothing else."""

ANNOTATE_JSON_MODE = """

The JSON object must match this JSON schema:
{schema}"""

ANNOTATE_USER = """Questions:
{questions}

Text:
<<<
{text}
>>>"""

QUESTION_LINE = '- "{name}": {question} Allowed values: {values}.'

REPAIR = """Your reply could not be used: {error}
Reply again with only the JSON object. Give every key listed in the questions, each with \
exactly one of its allowed values."""

PROPOSE_SYSTEM = """You are an expert at a text classification task. Explain how you decide \
it by writing your decision process as a directed acyclic graph of concepts.
Each concept is a question about the text that you answer on your way to the label, with a \
short list of possible answers (values). An edge [parent, child] means that the answer to \
parent informs the answer to child.
Rules:
- A concept name is a snake_case identifier: a letter, then letters, digits or underscores, \
64 characters at most.
- Each concept has 2 to 5 values, for example ["no", "yes"].
- The output concept is named "{output}", its question asks for the label, and its values \
are exactly {labels}.
- Every concept has a path of edges to "{output}"; "{output}" has no outgoing edges; there \
are no cycles.
- Use between 3 and {max_concepts} concepts besides "{output}".
Reply with a single JSON object of the form {{"concepts": [{{"name": "...", "question": \
"...", "values": ["...", "..."]}}], "edges": [["parent", "child"]]}} and nothing else."""

PROPOSE_USER = """Task: {task}
Labels: {labels}

Example texts:
{examples}"""

PROPOSE_REPAIR = """That graph is invalid: {error}
Fix it and reply again with the complete JSON object in the same format."""

CONNECTION_CHECK = "Reply with the single word OK."


def _version(prefix: str, *templates: str) -> str:
    digest = hashlib.sha256("\x00".join(templates).encode("utf-8")).hexdigest()[:8]
    return f"{prefix}-{digest}"


ANNOTATE_PROMPT_VERSION = _version(
    "annotate-v1", ANNOTATE_SYSTEM, ANNOTATE_JSON_MODE, ANNOTATE_USER, QUESTION_LINE, REPAIR
)
PROPOSE_PROMPT_VERSION = _version("propose-v1", PROPOSE_SYSTEM, PROPOSE_USER, PROPOSE_REPAIR)

MAX_EXAMPLES = 20  # examples shown in a proposal prompt
MAX_EXAMPLE_CHARS = 500  # longer example texts are cut to this many characters


def annotation_schema(nodes: Sequence[ConceptNode]) -> dict[str, Any]:
    """Return the JSON schema of an annotation reply: one string enum per node."""
    return {
        "type": "object",
        "properties": {
            node.name: {"type": "string", "enum": list(node.values)} for node in nodes
        },
        "required": [node.name for node in nodes],
        "additionalProperties": False,
    }


def proposal_schema() -> dict[str, Any]:
    """Return the JSON schema of a graph proposal reply."""
    concept = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "question": {"type": "string"},
            "values": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "question", "values"],
        "additionalProperties": False,
    }
    edge = {"type": "array", "items": {"type": "string"}}
    return {
        "type": "object",
        "properties": {
            "concepts": {"type": "array", "items": concept},
            "edges": {"type": "array", "items": edge},
        },
        "required": ["concepts", "edges"],
        "additionalProperties": False,
    }


def response_format(schema: dict[str, Any], *, name: str, json_schema: bool) -> dict[str, Any]:
    """Return the `response_format` request field: strict JSON schema or plain JSON mode."""
    if json_schema:
        return {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": schema, "strict": True},
        }
    return {"type": "json_object"}


def annotation_messages(
    task: str, nodes: Sequence[ConceptNode], text: str, *, json_schema: bool
) -> list[dict[str, str]]:
    """Build the chat messages that ask for the values of `nodes` on one text.

    Without server-side JSON schema support (`json_schema` False) the schema is written
    into the system message instead.
    """
    system = ANNOTATE_SYSTEM.format(task=task.strip() or "(no task description)")
    if not json_schema:
        schema_text = json.dumps(annotation_schema(nodes), ensure_ascii=False)
        system += ANNOTATE_JSON_MODE.format(schema=schema_text)
    questions = "\n".join(
        QUESTION_LINE.format(
            name=node.name,
            question=node.question.strip(),
            values=", ".join(json.dumps(v, ensure_ascii=False) for v in node.values),
        )
        for node in nodes
    )
    user = ANNOTATE_USER.format(questions=questions, text=text)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def repair_messages(
    messages: list[dict[str, str]], reply: str, error: str, *, template: str = REPAIR
) -> list[dict[str, str]]:
    """Return `messages` plus the invalid reply and a request that quotes its error."""
    return messages + [
        {"role": "assistant", "content": reply},
        {"role": "user", "content": template.format(error=error)},
    ]


def proposal_messages(
    task: str,
    labels: Sequence[str],
    examples: Sequence[str | tuple[str, str]],
    *,
    output: str,
    max_concepts: int,
) -> list[dict[str, str]]:
    """Build the chat messages that ask the model to externalize its decision as a graph."""
    labels_text = json.dumps(list(labels), ensure_ascii=False)
    system = PROPOSE_SYSTEM.format(output=output, labels=labels_text, max_concepts=max_concepts)
    lines = []
    for example in list(examples)[:MAX_EXAMPLES]:
        text, label = (example, None) if isinstance(example, str) else example
        text = " ".join(str(text).split())[:MAX_EXAMPLE_CHARS]
        lines.append(f"- {text}" + (f" (label: {label})" if label is not None else ""))
    user = PROPOSE_USER.format(
        task=task.strip(), labels=labels_text, examples="\n".join(lines) or "(none given)"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def connection_messages() -> list[dict[str, str]]:
    """Build the one-message request sent by a connection check."""
    return [{"role": "user", "content": CONNECTION_CHECK}]


def estimate_tokens(n_chars: int) -> int:
    """Estimate the tokens of `n_chars` characters at about 4 characters per token.

    Four characters per token is the usual rule of thumb for English prose with OpenAI's
    tokenizers. Other languages and code need more tokens, so this is a rough estimate.
    """
    return max(1, (n_chars + 3) // 4)
