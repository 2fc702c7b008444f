"""Annotations: concept values for texts from teachers, rules and people.

This module owns the ``annotations`` table. Nothing is ever deleted from it: a new value
for a (text, node) pair marks the older one as superseded. At most one annotation per
(text, node) is current, chosen by precedence: a human value beats every teacher value,
and among values of the same precedence the newest wins. A teacher value that arrives
while a human value is current is stored already superseded by it. Values are validated
against the graph version they were given for. This module does not check that an old
annotation still fits the current graph, but `label_matrix` skips those that do not.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gcp.exceptions import GraphValidationError, ProjectError
from gcp.graph import ConceptGraph, annotations_to_matrix
from gcp.store import schema

logger = logging.getLogger(__name__)

ANNOTATION_COLUMNS = [
    "id", "text_id", "node", "value", "source", "teacher", "model", "prompt_version",
    "annotated_by", "graph_version", "round", "cost", "superseded", "superseded_by",
    "created_at",
]
_ITEM_FIELDS = (
    "text_id", "node", "value", "values", "source", "teacher", "model", "prompt_version",
    "cost", "round", "graph_version", "user",
)


def _as_mapping(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return dict(item)
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
    return {name: getattr(item, name) for name in _ITEM_FIELDS if hasattr(item, name)}


def _annotation_rows(item: Any) -> list[dict[str, Any]]:
    """Expand one input item into one row per node.

    An item with a ``values`` mapping (like `gcp.teachers.base.TextAnnotation`) gives one
    row per node. Its cost is split evenly, so the rows add up to the text's cost.
    """
    data = _as_mapping(item)
    if "node" in data or not isinstance(data.get("values"), Mapping):
        return [data]
    values = {node: value for node, value in data["values"].items() if value is not None}
    share = float(data.get("cost") or 0.0) / max(len(values), 1)
    return [{**data, "node": node, "value": value, "cost": share} for node, value in values.items()]


class AnnotationsMixin:
    """Annotation methods of `gcp.store.Project`."""

    _engine: Engine

    def add_annotations(self, items: Iterable[Any]) -> list[int]:
        """Store annotations in one transaction; older values of the same node are superseded.

        Call it once per text as the teacher returns its values, so that an interrupted
        batch keeps every text finished before the interruption.

        Parameters
        ----------
        items : iterable of dict or TextAnnotation-like object
            Either one value per item, with keys ``text_id, node, value``, or one text per
            item with a ``values`` mapping from node to value. The optional keys are
            ``source`` (``"teacher"`` by default, or ``"recorded"``, ``"rule"``,
            ``"human"``), ``teacher``, ``model``, ``prompt_version``, ``cost`` in USD,
            ``round``, ``graph_version`` (the current one by default) and ``user`` for
            human values. Other keys and attributes are ignored.

        Returns
        -------
        list of int
            Ids of the stored annotations, in input order.

        Raises
        ------
        ProjectError
            If a text id is unknown or a source is invalid; nothing is stored.
        GraphValidationError
            If a node or value is not in the graph version; nothing is stored.
        """
        rows = [row for item in items for row in _annotation_rows(item)]
        ids: list[int] = []
        with schema.write_transaction(self._engine) as connection:
            self._check_text_ids(connection, [row.get("text_id") for row in rows])
            current_version = self._current_graph_version(connection)
            now = schema.utc_now()
            for index, row in enumerate(rows, start=1):
                values = self._annotation_values(connection, row, index, current_version, now)
                ids.append(self._insert_annotation(connection, values))
        return ids

    def _annotation_values(
        self, connection: Connection, row: dict[str, Any], index: int, default_version: int,
        now: str,
    ) -> dict[str, Any]:
        source = row.get("source") or "teacher"
        if source not in schema.ANNOTATION_SOURCES:
            raise ProjectError(
                f"annotation {index}: invalid source {source!r}; "
                f"expected one of {list(schema.ANNOTATION_SOURCES)}"
            )
        version = int(row.get("graph_version") or default_version)
        graph = self._graph_at(connection, version)
        node, value = row.get("node"), row.get("value")
        try:
            graph.value_index(str(node), str(value))
        except GraphValidationError as err:
            raise GraphValidationError(
                f"annotation {index} (text {row.get('text_id')!r}, graph version {version}): {err}"
            ) from None
        return {
            "text_id": str(row["text_id"]),
            "node": str(node),
            "value": str(value),
            "source": source,
            "teacher": row.get("teacher") or None,
            "model": row.get("model") or None,
            "prompt_version": row.get("prompt_version") or None,
            "annotated_by": row.get("user") or None,
            "graph_version": version,
            "round": None if row.get("round") is None else int(row["round"]),
            "cost": float(row.get("cost") or 0.0),
            "created_at": now,
        }

    def _insert_annotation(self, connection: Connection, values: dict[str, Any]) -> int:
        table = schema.annotations
        current = connection.execute(
            sa.select(table.c.id, table.c.source).where(
                table.c.text_id == values["text_id"],
                table.c.node == values["node"],
                table.c.superseded.is_(False),
            )
        ).all()
        human_ids = [row.id for row in current if row.source == "human"]
        keeps_human = values["source"] != "human" and bool(human_ids)
        result = connection.execute(
            sa.insert(table).values(
                **values,
                superseded=keeps_human,
                superseded_by=human_ids[-1] if keeps_human else None,
            )
        )
        new_id = int(result.inserted_primary_key[0])
        if not keeps_human and current:
            connection.execute(
                sa.update(table)
                .where(table.c.id.in_([row.id for row in current]))
                .values(superseded=True, superseded_by=new_id)
            )
        return new_id

    def annotations(
        self,
        *,
        round: int | None = None,  # noqa: A002 - the column's name
        node: str | None = None,
        source: str | None = None,
        split: str | None = None,
        text_ids: Sequence[str] | None = None,
        current_only: bool = True,
    ) -> pd.DataFrame:
        """Return annotations, oldest first, filtered by the given fields.

        Parameters
        ----------
        round : int, optional
            Only annotations made in this acquisition round.
        node : str, optional
            Only this node.
        source : str, optional
            Only this source: ``"teacher"``, ``"recorded"``, ``"rule"`` or ``"human"``.
        split : str, optional
            Only texts of this split: ``"pool"``, ``"validation"`` or ``"test"``.
        text_ids : sequence of str, optional
            Only these texts.
        current_only : bool, default=True
            Leave out superseded annotations.

        Returns
        -------
        pandas.DataFrame
            One row per annotation with columns ``id, text_id, node, value, source,
            teacher, model, prompt_version, annotated_by, graph_version, round, cost,
            superseded, superseded_by, created_at``.
        """
        table = schema.annotations
        query = sa.select(table).order_by(table.c.id)
        if round is not None:
            query = query.where(table.c.round == round)
        if node is not None:
            query = query.where(table.c.node == node)
        if source is not None:
            query = query.where(table.c.source == source)
        if current_only:
            query = query.where(table.c.superseded.is_(False))
        if split is not None:
            query = query.join(schema.texts, schema.texts.c.id == table.c.text_id).where(
                schema.texts.c.split == split
            )
        with self._engine.connect() as connection:
            rows = [dict(row) for row in connection.execute(query).mappings()]
        frame = schema.to_frame(
            rows, ANNOTATION_COLUMNS, optional_ints=("graph_version", "round", "superseded_by")
        )
        if text_ids is not None:
            frame = frame[frame["text_id"].isin(list(text_ids))].reset_index(drop=True)
        return frame

    def labelled_ids(self, *, node: str | None = None) -> list[str]:
        """Return ids of texts with a current value for `node` (default: the output node)."""
        node = node or self.graph().output
        table = schema.annotations
        query = (
            sa.select(schema.texts.c.id)
            .where(
                sa.exists().where(
                    table.c.text_id == schema.texts.c.id,
                    table.c.node == node,
                    table.c.superseded.is_(False),
                )
            )
            .order_by(schema.texts.c.position)
        )
        with self._engine.connect() as connection:
            return list(connection.execute(query).scalars())

    def label_matrix(
        self, graph: ConceptGraph | None = None, text_ids: Sequence[str] | None = None
    ) -> tuple[list[str], np.ndarray]:
        """Build the label matrix of the current annotations; human values take precedence.

        Parameters
        ----------
        graph : ConceptGraph, optional
            Graph giving the columns; defaults to the current graph.
        text_ids : sequence of str, optional
            Rows, in this order; defaults to every text with a current annotation, in
            import order.

        Returns
        -------
        ids : list of str
            Text id of each row.
        Y : numpy.ndarray
            int64 array of shape (len(ids), len(graph.names)) of value indices, -1 where
            a value is missing. A stored value that is not among the node's values in
            `graph` (left over from an older graph version) counts as missing.

        Raises
        ------
        ProjectError
            If a text id is unknown.
        """
        graph = graph or self.graph()
        frame = self.annotations()
        frame = frame[frame["node"].isin(graph.names)]
        if text_ids is None:
            order = {text_id: i for i, text_id in enumerate(self.texts()["id"])}
            ids = sorted(set(frame["text_id"]), key=order.__getitem__)
        else:
            ids = [str(text_id) for text_id in text_ids]
            with self._engine.connect() as connection:
                self._check_text_ids(connection, ids)
        # Human values first, then newest first: the first value per (text, node) wins.
        frame = frame.assign(is_human=frame["source"] == "human")
        frame = frame.sort_values(["is_human", "id"], ascending=[False, False])
        rows: dict[str, dict[str, str]] = {text_id: {} for text_id in ids}
        stale = 0
        for text_id, node, value in zip(frame["text_id"], frame["node"], frame["value"]):
            if text_id not in rows or node in rows[text_id]:
                continue
            if value in graph.node(node).values:
                rows[text_id][node] = value
            else:
                stale += 1
        if stale:
            logger.warning(
                "label_matrix skipped %d annotations whose value is not among their node's "
                "values in graph %s; re-annotate the changed nodes", stale, graph.content_hash,
            )
        return ids, annotations_to_matrix(graph, [rows[text_id] for text_id in ids])

    def correct_annotation(self, text_id: str, node: str, value: str, user: str) -> int:
        """Store a human value that supersedes the current one, and audit the edit.

        Parameters
        ----------
        text_id, node, value : str
            The text, the node of the current graph and one of the node's values.
        user : str
            Who made the correction.

        Returns
        -------
        int
            Id of the audit log entry; pass it to `undo` to restore the previous value.

        Raises
        ------
        ProjectError
            If the text id is unknown.
        GraphValidationError
            If the node or value is not in the current graph.
        """
        with schema.write_transaction(self._engine) as connection:
            self._check_text_ids(connection, [text_id])
            target = {"text_id": str(text_id), "node": str(node)}
            before = self._read_state_annotation(connection, target)
            row = {"text_id": text_id, "node": node, "value": value, "source": "human",
                   "user": user}
            version = self._current_graph_version(connection)
            values = self._annotation_values(connection, row, 1, version, schema.utc_now())
            self._insert_annotation(connection, values)
            after = self._read_state_annotation(connection, target)
            return self._record_edit(
                connection, action="correct_annotation", kind="annotation", target=target,
                before=before, after=after, user=user,
            )

    def _read_state_annotation(self, connection: Connection, target: dict) -> dict:
        table = schema.annotations
        rows = connection.execute(
            sa.select(table.c.id, table.c.value)
            .where(
                table.c.text_id == target["text_id"],
                table.c.node == target["node"],
                table.c.superseded.is_(False),
            )
            .order_by(table.c.id)
        ).all()
        return {"current_ids": [row.id for row in rows], "values": [row.value for row in rows]}

    def _write_state_annotation(self, connection: Connection, target: dict, state: dict) -> None:
        table = schema.annotations
        same_pair = (table.c.text_id == target["text_id"]) & (table.c.node == target["node"])
        keep = [int(i) for i in state["current_ids"]]
        connection.execute(
            sa.update(table)
            .where(same_pair, table.c.superseded.is_(False), table.c.id.not_in(keep))
            .values(superseded=True)
        )
        if keep:
            connection.execute(
                sa.update(table)
                .where(same_pair, table.c.id.in_(keep))
                .values(superseded=False, superseded_by=None)
            )

    def rename_annotation_node(self, old: str, new: str) -> int:
        """Move every annotation of node `old` to node `new` and return how many moved.

        Call it after saving a graph version that renames `old` to `new`: a rename keeps
        the question and values, so the stored values stay valid.
        """
        table = schema.annotations
        with schema.write_transaction(self._engine) as connection:
            result = connection.execute(
                sa.update(table).where(table.c.node == old).values(node=new)
            )
        logger.info("moved %d annotations from node %r to %r", result.rowcount, old, new)
        return int(result.rowcount)

    def spending(self) -> dict[str, float]:
        """Return what the teachers cost so far.

        Returns
        -------
        dict
            ``labels``: texts with at least one value from a teacher (not rules or people);
            ``money``: USD summed over every annotation, superseded ones included.
        """
        table = schema.annotations
        paid = table.c.source.in_(("teacher", "recorded"))
        with self._engine.connect() as connection:
            labels = connection.execute(
                sa.select(sa.func.count(sa.distinct(table.c.text_id))).where(paid)
            ).scalar()
            money = connection.execute(sa.select(sa.func.sum(table.c.cost))).scalar()
        return {"labels": int(labels or 0), "money": float(money or 0.0)}
