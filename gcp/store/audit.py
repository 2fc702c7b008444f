"""The audit log of human edits and their undo.

This module owns the ``audit_log`` table's rows: every human edit (an annotation
correction, candidate decisions, a graph save or revert) stores the state of the object it
changed before and after the edit. `undo` writes the before-state back and records the
undo itself as a new entry, so undoing an undo redoes the edit. The mixin that owns each
kind of object reads and writes its state (`_read_state_<kind>` and `_write_state_<kind>`),
so this module does not depend on what the states contain.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gcp.exceptions import ProjectError
from gcp.store import schema

AUDIT_COLUMNS = [
    "id", "created_at", "edited_by", "action", "kind", "target", "before", "after",
    "undoes", "undone_by",
]


class AuditMixin:
    """Audit log methods of `gcp.store.Project`."""

    _engine: Engine

    def _record_edit(
        self,
        connection: Connection,
        *,
        action: str,
        kind: str,
        target: dict[str, Any],
        before: dict[str, Any],
        after: dict[str, Any],
        user: str | None,
        undoes: int | None = None,
    ) -> int:
        result = connection.execute(
            sa.insert(schema.audit_log).values(
                action=action,
                kind=kind,
                target=target,
                before=before,
                after=after,
                edited_by=user,
                undoes=undoes,
                created_at=schema.utc_now(),
            )
        )
        return int(result.inserted_primary_key[0])

    def audit_log(self) -> pd.DataFrame:
        """Return every audited human edit, oldest first.

        Returns
        -------
        pandas.DataFrame
            Columns ``id, created_at, edited_by, action, kind, target, before, after,
            undoes, undone_by``. The `before`, `after` and `target` values are dicts.
            `undoes` is the id of the entry an undo reverted, and `undone_by` is the id
            of the undo entry.
        """
        table = schema.audit_log
        with self._engine.connect() as connection:
            rows = connection.execute(sa.select(table).order_by(table.c.id)).mappings().all()
        return schema.to_frame(
            [dict(row) for row in rows], AUDIT_COLUMNS, optional_ints=("undoes", "undone_by")
        )

    def undo(self, edit_id: int, *, user: str | None = None) -> int:
        """Restore the state from before edit `edit_id` and log the undo as a new edit.

        Parameters
        ----------
        edit_id : int
            Id of an audit log entry; an undo entry can be undone too, which redoes it.
        user : str, optional
            Who undoes the edit; defaults to the author of the original edit.

        Returns
        -------
        int
            Id of the new audit log entry.

        Raises
        ------
        ProjectError
            If the entry does not exist, was already undone, or its object changed after
            the edit (undo the later edit first).
        """
        table = schema.audit_log
        with schema.write_transaction(self._engine) as connection:
            entry = connection.execute(
                sa.select(table).where(table.c.id == edit_id)
            ).mappings().first()
            if entry is None:
                raise ProjectError(f"no audit log entry with id {edit_id}")
            if entry["undone_by"] is not None:
                raise ProjectError(
                    f"edit {edit_id} was already undone by edit {entry['undone_by']}"
                )
            kind, target = entry["kind"], entry["target"]
            current = getattr(self, f"_read_state_{kind}")(connection, target)
            if _canonical(current) != _canonical(entry["after"]):
                raise ProjectError(
                    f"cannot undo edit {edit_id} ({entry['action']} on {target}): the object "
                    "changed after that edit; undo the later edits first (see audit_log())"
                )
            getattr(self, f"_write_state_{kind}")(connection, target, entry["before"])
            undo_id = self._record_edit(
                connection,
                action="undo",
                kind=kind,
                target=target,
                before=entry["after"],
                after=entry["before"],
                user=user if user is not None else entry["edited_by"],
                undoes=edit_id,
            )
            connection.execute(
                sa.update(table).where(table.c.id == edit_id).values(undone_by=undo_id)
            )
        return undo_id


def _canonical(state: Any) -> str:
    return json.dumps(state, sort_keys=True)
