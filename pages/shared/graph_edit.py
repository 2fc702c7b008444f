"""Graph edits for the concept graph page: build a new `ConceptGraph` from form input or
from the edited node and edge tables.

These are pure functions without Streamlit. The ones that build a graph return a new validated
graph or raise
`GraphValidationError` with the message the page shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from gcp.exceptions import GraphValidationError
from gcp.graph import ConceptGraph, ConceptNode

NODE_COLUMNS = ["name", "question", "values", "description"]
ORIGINAL = "original"  # hidden column of the node table: the name before editing
EDGE_COLUMNS = ["parent", "child"]


def split_values(text: str) -> tuple[str, ...]:
    """Split a comma-separated list of values, e.g. ``"no, yes"`` -> ``("no", "yes")``."""
    return tuple(part.strip() for part in str(text).split(",") if part.strip())


def nodes_table(graph: ConceptGraph) -> pd.DataFrame:
    """Return one row per node; the hidden `ORIGINAL` column keeps the name before edits."""
    rows = [
        {
            ORIGINAL: node.name,
            "name": node.name,
            "question": node.question,
            "values": ", ".join(node.values),
            "description": node.description,
        }
        for node in graph.nodes.values()
    ]
    return pd.DataFrame(rows, columns=[ORIGINAL, *NODE_COLUMNS])


def edges_table(graph: ConceptGraph) -> pd.DataFrame:
    return pd.DataFrame([list(edge) for edge in graph.edges], columns=EDGE_COLUMNS)


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def graph_from_tables(graph: ConceptGraph, nodes: pd.DataFrame, edges: pd.DataFrame) -> ConceptGraph:
    """Build the graph the edited tables describe.

    A row whose ``name`` differs from its `ORIGINAL` name is a rename: its edges and the
    output node follow it. A row without an original name (added in the editor) is a new
    node. A node missing from the table is deleted with its edges.

    Raises
    ------
    GraphValidationError
        If a row is incomplete or the result is not a valid concept graph.
    """
    renames: dict[str, str] = {}
    new_nodes: list[ConceptNode] = []
    for _, row in nodes.iterrows():
        name = _cell(row.get("name"))
        original = _cell(row.get(ORIGINAL))
        original = original if original in graph.nodes else ""
        if not name:
            raise GraphValidationError(
                f"a node row has no name (row {original or 'added'}): fill in the name or delete the row"
            )
        if original and original != name:
            renames[original] = name
        old = graph.nodes.get(original)
        new_nodes.append(
            ConceptNode(
                name=name,
                question=_cell(row.get("question")),
                values=split_values(_cell(row.get("values"))),
                description=_cell(row.get("description")),
                rule=old.rule if old is not None else None,
            )
        )
    kept = {node.name for node in new_nodes}
    removed = set(graph.names) - set(renames) - kept
    if graph.output in removed:
        raise GraphValidationError(
            f"cannot remove the output node {graph.output!r}; it predicts the task's label"
        )
    pairs: list[tuple[str, str]] = []
    for _, row in edges.iterrows():
        parent, child = _cell(row.get("parent")), _cell(row.get("child"))
        if not parent and not child:
            continue  # an empty row left by the editor
        if not parent or not child:
            raise GraphValidationError(
                f"edge ({parent!r}, {child!r}) is incomplete: give both a parent and a child"
            )
        parent, child = renames.get(parent, parent), renames.get(child, child)
        if parent in removed or child in removed:
            continue  # deleting a node deletes its edges
        pairs.append((parent, child))
    return ConceptGraph(
        task=graph.task,
        output=renames.get(graph.output, graph.output),
        nodes=new_nodes,
        edges=pairs,
        positions={renames.get(k, k): v for k, v in graph.positions.items() if k not in removed},
    )


def add_node(
    graph: ConceptGraph,
    *,
    name: str,
    question: str,
    values: str,
    description: str = "",
    parents: Sequence[str] = (),
    children: Sequence[str] = (),
) -> ConceptGraph:
    """Return `graph` with a new node built from form input (values comma-separated)."""
    node = ConceptNode(
        name=name.strip(),
        question=question.strip(),
        values=split_values(values),
        description=description.strip(),
    )
    return graph.add_node(node, parents=list(parents), children=list(children))


def edit_node(
    graph: ConceptGraph, name: str, *, new_name: str, question: str, values: str, description: str
) -> ConceptGraph:
    """Return `graph` with node `name` renamed and its question, values and description set."""
    new_name = new_name.strip()
    edited = graph
    if new_name != name:
        edited = edited.rename_node(name, new_name)
    node = edited.node(new_name)
    if question.strip() != node.question:
        edited = edited.set_question(new_name, question.strip())
    if split_values(values) != node.values:
        edited = edited.set_values(new_name, split_values(values))
    if description.strip() != node.description:
        edited = edited.set_description(new_name, description.strip())
    return edited
