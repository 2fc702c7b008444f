"""Concept graphs: the DAG of concepts a teacher uses to reach its label.

A `ConceptGraph` is an immutable, validated DAG over networkx. Every edit returns a new
graph, so a caller holding the old one keeps a consistent object when an edit is rejected.
This module owns the JSON file format, validation, editing, version hashes and diffs.
It knows nothing about annotations or students beyond `annotations_to_matrix`, which turns
value strings into the index matrix the student trains on.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from gcp.exceptions import GraphValidationError

FORMAT_VERSION = 1
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MISSING = -1  # entry of a label matrix for a node without an annotation


@dataclass(frozen=True)
class ConceptNode:
    """One concept: a question the teacher answers with one of `values`.

    Parameters
    ----------
    name : str
        Identifier: a letter or underscore, then letters, digits or underscores (64 at most).
    question : str
        What the teacher is asked about a text.
    values : tuple of str
        Ordered possible answers, at least two, for example ``("no", "yes")``.
    description : str, default=""
        Free text for people; never sent to the student.
    rule : mapping or None, default=None
        Optional heuristic for the rule teacher (format defined in `gcp.teachers.rules`).
    """

    name: str
    question: str
    values: tuple[str, ...]
    description: str = ""
    rule: Mapping[str, Any] | None = field(default=None, compare=True, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "question": self.question,
            "values": list(self.values),
        }
        if self.description:
            data["description"] = self.description
        if self.rule is not None:
            data["rule"] = dict(self.rule)
        return data


class ConceptGraph:
    """A validated concept DAG with exactly one output node.

    Build it with `from_dict`, `load` or the constructor; all three validate. The output
    node's values are the task's labels, and the output node has no children.

    Parameters
    ----------
    task : str
        Plain-language description of the classification task.
    output : str
        Name of the output node.
    nodes : sequence of ConceptNode
        Nodes in display order; this order fixes the columns of label matrices.
    edges : iterable of (str, str)
        ``(parent, child)`` pairs.
    positions : mapping of str to (float, float), optional
        Layout positions saved by the app; ignored by everything else.

    Raises
    ------
    GraphValidationError
        If the graph breaks any rule listed in `validate`.
    """

    def __init__(
        self,
        task: str,
        output: str,
        nodes: Sequence[ConceptNode],
        edges: Iterable[tuple[str, str]],
        *,
        positions: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        self.task = str(task)
        self.output = str(output)
        self._nodes_list = tuple(nodes)
        self.edges: tuple[tuple[str, str], ...] = tuple((str(p), str(c)) for p, c in edges)
        self.positions = dict(positions or {})
        self._validate_nodes()
        self.nodes: dict[str, ConceptNode] = {node.name: node for node in self._nodes_list}
        self._graph = nx.DiGraph()
        self._graph.add_nodes_from(self.nodes)
        self._graph.add_edges_from(self.edges)
        self._validate_structure()
        self.topological_order: list[str] = list(
            nx.lexicographical_topological_sort(self._graph, key=self.names.index)
        )

    # ------------------------------------------------------------------ validation

    def _validate_nodes(self) -> None:
        seen: set[str] = set()
        for node in self._nodes_list:
            if not isinstance(node.name, str) or not NAME_PATTERN.match(node.name):
                raise GraphValidationError(
                    f"invalid node name {node.name!r}: use a letter or underscore followed by "
                    "letters, digits or underscores (64 characters at most), e.g. 'praises_story'"
                )
            if node.name in seen:
                raise GraphValidationError(
                    f"duplicate node name {node.name!r}: every node needs a unique name"
                )
            seen.add(node.name)
            if not str(node.question).strip():
                raise GraphValidationError(f"node {node.name!r} has an empty question")
            values = [str(v) for v in node.values]
            if len(values) < 2:
                raise GraphValidationError(
                    f"node {node.name!r} has {len(values)} value(s) {values}: "
                    "give at least two, e.g. ['no', 'yes']"
                )
            duplicates = sorted({v for v in values if values.count(v) > 1})
            if duplicates:
                raise GraphValidationError(
                    f"node {node.name!r} has duplicate values {duplicates}: values must be unique"
                )
            if any(not v.strip() for v in values):
                raise GraphValidationError(f"node {node.name!r} has an empty value")
        if not self.output:
            raise GraphValidationError("the graph has no output node: set 'output' to a node name")
        if self.output not in seen:
            raise GraphValidationError(
                f"unknown output node {self.output!r}: it must be one of {sorted(seen)}"
            )
        for parent, child in self.edges:
            for end in (parent, child):
                if end not in seen:
                    raise GraphValidationError(
                        f"edge ({parent!r}, {child!r}) refers to unknown node {end!r}"
                    )
            if parent == child:
                raise GraphValidationError(f"edge ({parent!r}, {child!r}) is a self-loop")
        duplicate_edges = sorted({e for e in self.edges if self.edges.count(e) > 1})
        if duplicate_edges:
            raise GraphValidationError(f"duplicate edges {duplicate_edges}")

    def _validate_structure(self) -> None:
        try:
            cycle = nx.find_cycle(self._graph)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            loop = [edge[0] for edge in cycle] + [cycle[0][0]]
            raise GraphValidationError(
                "the graph has a cycle: " + " -> ".join(loop) + "; remove one of these edges"
            )
        children = list(self._graph.successors(self.output))
        if children:
            raise GraphValidationError(
                f"output node {self.output!r} has children {children}: "
                "the output node must be the last node, remove its outgoing edges"
            )
        reaching = nx.ancestors(self._graph, self.output) | {self.output}
        stranded = [name for name in self.names if name not in reaching]
        if stranded:
            raise GraphValidationError(
                f"nodes {stranded} have no path to the output node {self.output!r}: "
                "connect them with edges or remove them"
            )

    # ------------------------------------------------------------------ queries

    @property
    def names(self) -> list[str]:
        """Node names in display order; column order of label matrices."""
        return [node.name for node in self._nodes_list]

    @property
    def labels(self) -> tuple[str, ...]:
        """The task's labels: the values of the output node."""
        return self.nodes[self.output].values

    @property
    def roots(self) -> list[str]:
        """Nodes without parents; they read the text embedding."""
        return [n for n in self.names if self._graph.in_degree(n) == 0]

    def node(self, name: str) -> ConceptNode:
        """Return the node called `name`, or raise naming the known nodes."""
        try:
            return self.nodes[name]
        except KeyError:
            raise GraphValidationError(
                f"unknown node {name!r}; known nodes: {self.names}"
            ) from None

    def _ordered(self, names: Iterable[str]) -> list[str]:
        wanted = set(names)
        return [n for n in self.names if n in wanted]

    def parents(self, name: str) -> list[str]:
        self.node(name)
        return self._ordered(self._graph.predecessors(name))

    def children(self, name: str) -> list[str]:
        self.node(name)
        return self._ordered(self._graph.successors(name))

    def ancestors(self, name: str) -> list[str]:
        self.node(name)
        return self._ordered(nx.ancestors(self._graph, name))

    def descendants(self, name: str) -> list[str]:
        self.node(name)
        return self._ordered(nx.descendants(self._graph, name))

    def depth(self, name: str) -> int:
        """Length of the longest path from a root to `name` (roots have depth 0)."""
        self.node(name)
        depths: dict[str, int] = {}
        for n in self.topological_order:
            depths[n] = max((depths[p] + 1 for p in self._graph.predecessors(n)), default=0)
        return depths[name]

    def value_index(self, name: str, value: str) -> int:
        """Return the index of `value` among the values of node `name`."""
        values = self.node(name).values
        try:
            return values.index(value)
        except ValueError:
            raise GraphValidationError(
                f"invalid value {value!r} for node {name!r}: expected one of {list(values)}"
            ) from None

    def to_networkx(self) -> nx.DiGraph:
        """Return a copy of the DAG as a networkx graph with node attributes."""
        graph = nx.DiGraph()
        for node in self._nodes_list:
            graph.add_node(node.name, question=node.question, values=list(node.values))
        graph.add_edges_from(self.edges)
        return graph

    def __len__(self) -> int:
        return len(self._nodes_list)

    def __contains__(self, name: object) -> bool:
        return name in self.nodes

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConceptGraph) and self.content_hash == other.content_hash

    def __hash__(self) -> int:
        return hash(self.content_hash)

    def __repr__(self) -> str:
        return (
            f"ConceptGraph(output={self.output!r}, nodes={len(self)}, "
            f"edges={len(self.edges)}, hash={self.content_hash!r})"
        )

    # ------------------------------------------------------------------ serialization

    def to_dict(self, *, include_positions: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "task": self.task,
            "output": self.output,
            "nodes": [node.to_dict() for node in self._nodes_list],
            "edges": [list(edge) for edge in self.edges],
        }
        if include_positions and self.positions:
            data["positions"] = {k: list(v) for k, v in self.positions.items()}
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConceptGraph:
        """Build and validate a graph from its JSON form.

        Raises
        ------
        GraphValidationError
            If a field is missing or has the wrong type, or the graph is invalid.
        """
        if not isinstance(data, Mapping):
            raise GraphValidationError(
                f"a concept graph must be a JSON object, got {type(data).__name__}"
            )
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise GraphValidationError(
                f"unsupported graph format_version {version!r}; this version reads {FORMAT_VERSION}"
            )
        for key in ("output", "nodes"):
            if key not in data:
                raise GraphValidationError(f"the graph JSON is missing the {key!r} field")
        if not isinstance(data["nodes"], list):
            raise GraphValidationError("'nodes' must be a list of {name, question, values}")
        nodes = [_node_from_dict(item, index) for index, item in enumerate(data["nodes"])]
        edges = data.get("edges", [])
        if not isinstance(edges, list) or any(
            not isinstance(e, (list, tuple)) or len(e) != 2 for e in edges
        ):
            raise GraphValidationError("'edges' must be a list of [parent, child] pairs")
        positions = {
            str(k): (float(v[0]), float(v[1])) for k, v in (data.get("positions") or {}).items()
        }
        return cls(
            task=str(data.get("task", "")),
            output=str(data["output"]),
            nodes=nodes,
            edges=[(str(p), str(c)) for p, c in edges],
            positions=positions,
        )

    @classmethod
    def from_json(cls, text: str) -> ConceptGraph:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise GraphValidationError(f"the graph is not valid JSON: {err}") from err
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> ConceptGraph:
        """Read a graph JSON file and validate it."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise GraphValidationError(f"graph file not found: {str(path)!r}") from None
        except UnicodeDecodeError as err:
            raise GraphValidationError(f"graph file {str(path)!r} is not UTF-8: {err}") from err
        return cls.from_json(text)

    def save(self, path: str | Path) -> None:
        """Write the graph as JSON, atomically, so a crash never leaves half a file."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json() + "\n", encoding="utf-8")
        tmp.replace(path)

    @property
    def content_hash(self) -> str:
        """Short hash of everything but layout positions: identifies a graph version."""
        canonical = json.dumps(self.to_dict(include_positions=False), sort_keys=True)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]

    # ------------------------------------------------------------------ editing

    def _rebuild(self, **changes: Any) -> ConceptGraph:
        fields = {
            "task": self.task,
            "output": self.output,
            "nodes": self._nodes_list,
            "edges": self.edges,
            "positions": self.positions,
        }
        fields.update(changes)
        return ConceptGraph(**fields)

    def with_task(self, task: str) -> ConceptGraph:
        return self._rebuild(task=task)

    def add_node(
        self,
        node: ConceptNode,
        *,
        parents: Sequence[str] = (),
        children: Sequence[str] = (),
    ) -> ConceptGraph:
        """Return a new graph with `node` added and wired to `parents` and `children`.

        A new node needs at least one child (or a descendant path) to the output node;
        otherwise validation rejects it.
        """
        if node.name in self.nodes:
            raise GraphValidationError(
                f"duplicate node name {node.name!r}: a node with this name already exists"
            )
        edges = list(self.edges)
        edges += [(p, node.name) for p in parents]
        edges += [(node.name, c) for c in children]
        return self._rebuild(nodes=self._nodes_list + (node,), edges=edges)

    def remove_node(self, name: str) -> ConceptGraph:
        """Return a new graph without `name` and its edges. The output node cannot go."""
        self.node(name)
        if name == self.output:
            raise GraphValidationError(
                f"cannot remove the output node {name!r}; choose another output node first"
            )
        nodes = tuple(n for n in self._nodes_list if n.name != name)
        edges = [e for e in self.edges if name not in e]
        positions = {k: v for k, v in self.positions.items() if k != name}
        return self._rebuild(nodes=nodes, edges=edges, positions=positions)

    def rename_node(self, old: str, new: str) -> ConceptGraph:
        """Return a new graph with node `old` called `new`, edges included."""
        self.node(old)
        if new in self.nodes and new != old:
            raise GraphValidationError(f"cannot rename {old!r} to {new!r}: that name is taken")
        nodes = tuple(replace(n, name=new) if n.name == old else n for n in self._nodes_list)
        edges = [tuple(new if end == old else end for end in edge) for edge in self.edges]
        output = new if self.output == old else self.output
        positions = {(new if k == old else k): v for k, v in self.positions.items()}
        return self._rebuild(nodes=nodes, edges=edges, output=output, positions=positions)

    def _replace_node(self, name: str, **changes: Any) -> ConceptGraph:
        self.node(name)
        nodes = tuple(
            replace(n, **changes) if n.name == name else n for n in self._nodes_list
        )
        return self._rebuild(nodes=nodes)

    def set_question(self, name: str, question: str) -> ConceptGraph:
        return self._replace_node(name, question=question)

    def set_values(self, name: str, values: Sequence[str]) -> ConceptGraph:
        return self._replace_node(name, values=tuple(values))

    def set_description(self, name: str, description: str) -> ConceptGraph:
        return self._replace_node(name, description=description)

    def set_rule(self, name: str, rule: Mapping[str, Any] | None) -> ConceptGraph:
        return self._replace_node(name, rule=rule)

    def add_edge(self, parent: str, child: str) -> ConceptGraph:
        if (parent, child) in self.edges:
            raise GraphValidationError(f"edge ({parent!r}, {child!r}) already exists")
        return self._rebuild(edges=self.edges + ((parent, child),))

    def remove_edge(self, parent: str, child: str) -> ConceptGraph:
        if (parent, child) not in self.edges:
            raise GraphValidationError(f"edge ({parent!r}, {child!r}) does not exist")
        return self._rebuild(edges=[e for e in self.edges if e != (parent, child)])

    def with_positions(self, positions: Mapping[str, tuple[float, float]]) -> ConceptGraph:
        return self._rebuild(positions=positions)


def _node_from_dict(item: Any, index: int) -> ConceptNode:
    if not isinstance(item, Mapping):
        raise GraphValidationError(f"node #{index} must be an object with name, question, values")
    missing = [key for key in ("name", "question", "values") if key not in item]
    if missing:
        label = item.get("name", f"#{index}")
        raise GraphValidationError(f"node {label!r} is missing {missing}")
    if not isinstance(item["values"], (list, tuple)):
        raise GraphValidationError(
            f"node {item['name']!r}: 'values' must be a list of strings, got {item['values']!r}"
        )
    rule = item.get("rule")
    if rule is not None and not isinstance(rule, Mapping):
        raise GraphValidationError(f"node {item['name']!r}: 'rule' must be an object")
    return ConceptNode(
        name=item["name"],
        question=str(item["question"]),
        values=tuple(str(v) for v in item["values"]),
        description=str(item.get("description", "")),
        rule=rule,
    )


def annotations_to_matrix(
    graph: ConceptGraph, rows: Sequence[Mapping[str, str | None]]
) -> np.ndarray:
    """Turn annotation dicts into the label matrix the student trains on.

    Parameters
    ----------
    graph : ConceptGraph
    rows : sequence of mapping
        One mapping per text from node name to value; absent or None values are missing.

    Returns
    -------
    numpy.ndarray
        int64 array of shape (n_texts, n_nodes); column j is node ``graph.names[j]`` and
        each entry is a value index, or ``MISSING`` (-1).

    Raises
    ------
    GraphValidationError
        If a value is not among its node's values.
    """
    matrix = np.full((len(rows), len(graph)), MISSING, dtype=np.int64)
    for j, name in enumerate(graph.names):
        for i, row in enumerate(rows):
            value = row.get(name)
            if value is not None and value != "":
                matrix[i, j] = graph.value_index(name, str(value))
    return matrix


@dataclass(frozen=True)
class GraphDiff:
    """Differences between two graph versions, by node name in the new graph."""

    added_nodes: tuple[str, ...]
    removed_nodes: tuple[str, ...]
    renamed_nodes: tuple[tuple[str, str], ...]  # (old name, new name), content unchanged
    changed_nodes: dict[str, tuple[str, ...]]  # new name -> changed fields
    added_edges: tuple[tuple[str, str], ...]
    removed_edges: tuple[tuple[str, str], ...]

    @property
    def is_empty(self) -> bool:
        return not any(
            (self.added_nodes, self.removed_nodes, self.renamed_nodes, self.changed_nodes,
             self.added_edges, self.removed_edges)
        )

    @property
    def reannotate_nodes(self) -> tuple[str, ...]:
        """Nodes whose teacher answers must be asked again: new ones and changed questions
        or values. A rename alone keeps its answers."""
        changed = [
            name for name, fields in self.changed_nodes.items()
            if "question" in fields or "values" in fields
        ]
        return tuple(self.added_nodes) + tuple(changed)

    def retrain_nodes(self, new: ConceptGraph) -> list[str]:
        """Nodes whose modules must be retrained after the edit, in topological order.

        These are the re-annotated nodes, nodes whose parents changed, and every
        descendant of either, because their inputs changed.
        """
        touched = set(self.reannotate_nodes)
        touched |= {name for name, fields in self.changed_nodes.items() if "parents" in fields}
        touched |= {child for _, child in self.added_edges + self.removed_edges if child in new}
        for name in list(touched):
            touched |= set(new.descendants(name))
        return [n for n in new.topological_order if n in touched]

    def summary(self) -> list[str]:
        """Human-readable lines, one per change."""
        lines = [f"added node {n!r}" for n in self.added_nodes]
        lines += [f"removed node {n!r}" for n in self.removed_nodes]
        lines += [f"renamed node {a!r} to {b!r}" for a, b in self.renamed_nodes]
        lines += [
            f"changed {', '.join(fields)} of node {n!r}" for n, fields in self.changed_nodes.items()
        ]
        lines += [f"added edge {p!r} -> {c!r}" for p, c in self.added_edges]
        lines += [f"removed edge {p!r} -> {c!r}" for p, c in self.removed_edges]
        return lines


def diff(old: ConceptGraph, new: ConceptGraph) -> GraphDiff:
    """List what changed from `old` to `new`.

    A node that disappears under one name and appears under another with the same
    question and values counts as renamed, not as removed and added.
    """
    removed = [n for n in old.names if n not in new.nodes]
    added = [n for n in new.names if n not in old.nodes]
    renames: dict[str, str] = {}
    for old_name in removed:
        old_node = old.nodes[old_name]
        for new_name in added:
            new_node = new.nodes[new_name]
            if new_name in renames.values():
                continue
            if (new_node.question, new_node.values) == (old_node.question, old_node.values):
                renames[old_name] = new_name
                break
    removed = [n for n in removed if n not in renames]
    added = [n for n in added if n not in renames.values()]

    to_new = {name: name for name in old.names if name in new.nodes} | renames
    changed: dict[str, tuple[str, ...]] = {}
    for old_name, new_name in to_new.items():
        before, after = old.nodes[old_name], new.nodes[new_name]
        fields = [
            attr for attr in ("question", "values", "description", "rule")
            if getattr(before, attr) != getattr(after, attr)
        ]
        old_parents = {to_new.get(p, p) for p in old.parents(old_name)}
        if old_parents != set(new.parents(new_name)):
            fields.append("parents")
        if fields:
            changed[new_name] = tuple(fields)

    old_edges = {(to_new.get(p, p), to_new.get(c, c)) for p, c in old.edges}
    new_edges = set(new.edges)
    return GraphDiff(
        added_nodes=tuple(added),
        removed_nodes=tuple(removed),
        renamed_nodes=tuple(renames.items()),
        changed_nodes=changed,
        added_edges=tuple(e for e in new.edges if e not in old_edges),
        removed_edges=tuple(sorted(old_edges - new_edges)),
    )
