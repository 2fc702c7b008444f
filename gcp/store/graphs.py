"""Graph versions: every saved concept graph and which one is current.

This module owns the ``graph_versions`` table. Versions are never deleted: saving adds a
version whose parent is the current one, and reverting only moves the current marker, so
the versions form a tree. Saving and reverting are audited and can be undone. Graph
validation is `gcp.graph`'s job.
"""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gcp.exceptions import ProjectError
from gcp.graph import ConceptGraph
from gcp.store import schema

GRAPH_COLUMNS = [
    "version", "hash", "message", "parent_version", "is_current", "created_by", "created_at",
    "n_nodes",
]


class GraphsMixin:
    """Graph-version methods of `gcp.store.Project`."""

    _engine: Engine
    _graphs: dict[int, ConceptGraph]  # parsed graphs by version

    def graph(self, version: int | None = None) -> ConceptGraph:
        """Return the current graph, or graph version `version`."""
        with self._engine.connect() as connection:
            if version is None:
                version = self._current_graph_version(connection)
            return self._graph_at(connection, version)

    @property
    def graph_version(self) -> int:
        """Number of the current graph version."""
        with self._engine.connect() as connection:
            return self._current_graph_version(connection)

    def save_graph(self, graph: ConceptGraph, message: str = "", *, user: str | None = None) -> int:
        """Store `graph` as the new current version and return its number.

        A graph with the same content hash as the current one (only the layout moved)
        updates the current version's positions instead of adding a version. A new
        version is audited, so `undo` makes its parent current again.
        """
        with schema.write_transaction(self._engine) as connection:
            current = self._current_graph_version(connection)
            if graph.content_hash == self._graph_at(connection, current).content_hash:
                table = schema.graph_versions
                connection.execute(
                    sa.update(table).where(table.c.version == current).values(graph=graph.to_dict())
                )
                self._graphs.pop(current, None)
                return current
            version = self._insert_graph(connection, graph, message, parent=current, user=user)
            self._record_edit(
                connection, action="save_graph", kind="graph", target={},
                before={"current_version": current}, after={"current_version": version}, user=user,
            )
        return version

    def revert_graph(self, version: int, *, user: str | None = None) -> int:
        """Make an earlier graph version current again; returns the audit log entry id.

        Raises
        ------
        ProjectError
            If the version does not exist.
        """
        with schema.write_transaction(self._engine) as connection:
            self._graph_at(connection, version)
            before = self._read_state_graph(connection, {})
            after = {"current_version": int(version)}
            self._write_state_graph(connection, {}, after)
            return self._record_edit(
                connection, action="revert_graph", kind="graph", target={},
                before=before, after=after, user=user,
            )

    def graph_versions(self) -> pd.DataFrame:
        """Return every graph version, oldest first (columns of `GRAPH_COLUMNS`)."""
        table = schema.graph_versions
        with self._engine.connect() as connection:
            rows = connection.execute(sa.select(table).order_by(table.c.version)).mappings().all()
        records = [
            {**{k: row[k] for k in GRAPH_COLUMNS[:-1]}, "n_nodes": len(row["graph"]["nodes"])}
            for row in rows
        ]
        return schema.to_frame(records, GRAPH_COLUMNS, optional_ints=("parent_version",))

    def _insert_graph(
        self, connection: Connection, graph: ConceptGraph, message: str, *,
        parent: int | None, user: str | None,
    ) -> int:
        table = schema.graph_versions
        connection.execute(sa.update(table).values(is_current=False))
        result = connection.execute(
            sa.insert(table).values(
                hash=graph.content_hash,
                graph=graph.to_dict(),
                message=str(message),
                parent_version=parent,
                is_current=True,
                created_by=user,
                created_at=schema.utc_now(),
            )
        )
        return int(result.inserted_primary_key[0])

    def _current_graph_version(self, connection: Connection) -> int:
        table = schema.graph_versions
        version = connection.execute(
            sa.select(table.c.version).where(table.c.is_current.is_(True))
        ).scalar()
        if version is None:
            raise ProjectError("the project has no current graph; the database is incomplete")
        return int(version)

    def _graph_at(self, connection: Connection, version: int) -> ConceptGraph:
        if version not in self._graphs:
            table = schema.graph_versions
            data = connection.execute(
                sa.select(table.c.graph).where(table.c.version == version)
            ).scalar()
            if data is None:
                raise ProjectError(
                    f"no graph version {version}; see graph_versions() for the saved versions"
                )
            self._graphs[version] = ConceptGraph.from_dict(data)
        return self._graphs[version]

    def _read_state_graph(self, connection: Connection, target: dict) -> dict:
        return {"current_version": self._current_graph_version(connection)}

    def _write_state_graph(self, connection: Connection, target: dict, state: dict) -> None:
        table = schema.graph_versions
        version = int(state["current_version"])
        connection.execute(sa.update(table).values(is_current=table.c.version == version))
