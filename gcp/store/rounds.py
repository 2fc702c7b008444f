"""Acquisition rounds, their candidates and the decisions on them.

This module owns the ``rounds`` and ``candidates`` tables. A round
moves forward through ``pending -> approved -> annotated -> trained -> done`` (steps may
be skipped), or to ``cancelled`` from any status before ``done``. At most one round is
open (neither done nor cancelled) at a time, so an interrupted session resumes it with
`open_round`. Candidates and decisions change only while the round is pending, and they
must be pool texts: the validation and test splits are never offered for acquisition.
This module does not choose candidates; it records them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gcp.exceptions import ProjectError
from gcp.store import schema

ROUND_COLUMNS = [
    "number", "strategy", "batch_size", "status", "seed", "graph_version", "metrics",
    "labels_used", "money_spent", "created_at", "updated_at",
    "n_candidates", "n_approved", "n_rejected", "n_pending",
]
CANDIDATE_COLUMNS = [
    "round", "text_id", "rank", "score", "breakdown", "decision", "decided_by", "decided_at",
]
_OPEN_STATUSES = ("pending", "approved", "annotated", "trained")


class RoundsMixin:
    """Round and candidate methods of `gcp.store.Project`."""

    _engine: Engine

    # ------------------------------------------------------------------ rounds

    def create_round(
        self,
        *,
        strategy: str,
        batch_size: int,
        seed: int = 0,
        graph_version: int | None = None,
    ) -> int:
        """Start a pending round and return its number (1 for the first round).

        Raises
        ------
        ProjectError
            If another round is still open; finish or cancel it with `update_round`.
        """
        if int(batch_size) < 1:
            raise ProjectError(f"invalid batch_size {batch_size}: expected at least 1")
        table = schema.rounds
        with schema.write_transaction(self._engine) as connection:
            open_round = connection.execute(
                sa.select(table.c.number, table.c.status).where(table.c.status.in_(_OPEN_STATUSES))
            ).first()
            if open_round is not None:
                raise ProjectError(
                    f"round {open_round.number} is still {open_round.status!r}; finish it "
                    f"(update_round({open_round.number}, status='done')) or cancel it "
                    f"(status='cancelled') before creating a new round"
                )
            number = int(connection.execute(sa.select(sa.func.max(table.c.number))).scalar() or 0)
            now = schema.utc_now()
            connection.execute(
                sa.insert(table).values(
                    number=number + 1,
                    strategy=str(strategy),
                    batch_size=int(batch_size),
                    status="pending",
                    seed=int(seed),
                    graph_version=graph_version or self._current_graph_version(connection),
                    labels_used=0,
                    money_spent=0.0,
                    created_at=now,
                    updated_at=now,
                )
            )
        return number + 1

    def rounds(self) -> pd.DataFrame:
        """Return every round, oldest first, with counts of its candidates by decision.

        Returns
        -------
        pandas.DataFrame
            Columns ``number, strategy, batch_size, status, seed, graph_version, metrics,
            labels_used, money_spent, created_at, updated_at, n_candidates, n_approved,
            n_rejected, n_pending``.
        """
        with self._engine.connect() as connection:
            rows = [
                self._round_row(connection, row)
                for row in connection.execute(
                    sa.select(schema.rounds).order_by(schema.rounds.c.number)
                ).mappings()
            ]
        return schema.to_frame(rows, ROUND_COLUMNS, optional_ints=("graph_version",))

    def round(self, number: int) -> dict[str, Any]:
        """Return round `number` as a dict with the columns of `rounds`.

        Raises
        ------
        ProjectError
            If there is no such round.
        """
        with self._engine.connect() as connection:
            return self._round_row(connection, self._get_round(connection, number))

    def open_round(self) -> dict[str, Any] | None:
        """Return the round that is neither done nor cancelled, or None (to resume it)."""
        table = schema.rounds
        with self._engine.connect() as connection:
            row = connection.execute(
                sa.select(table).where(table.c.status.in_(_OPEN_STATUSES))
            ).mappings().first()
            return None if row is None else self._round_row(connection, row)

    def update_round(
        self,
        number: int,
        *,
        status: str | None = None,
        metrics: Mapping[str, Any] | None = None,
        labels_used: int | None = None,
        money_spent: float | None = None,
    ) -> dict[str, Any]:
        """Change a round's status, metrics or spending and return the updated round.

        Parameters
        ----------
        number : int
            The round.
        status : str, optional
            A later status than the current one, or ``"cancelled"`` before ``"done"``.
        metrics : mapping, optional
            JSON-serializable metrics; replaces the stored ones.
        labels_used, money_spent : optional
            Texts sent to the teacher and USD spent in this round; replace the stored totals.

        Raises
        ------
        ProjectError
            If the round does not exist or the status change goes backwards.
        """
        changes: dict[str, Any] = {"updated_at": schema.utc_now()}
        if metrics is not None:
            changes["metrics"] = schema.to_json_value(metrics)
        if labels_used is not None:
            changes["labels_used"] = int(labels_used)
        if money_spent is not None:
            changes["money_spent"] = float(money_spent)
        with schema.write_transaction(self._engine) as connection:
            row = self._get_round(connection, number)
            if status is not None and status != row["status"]:
                _check_transition(number, row["status"], status)
                changes["status"] = status
            connection.execute(
                sa.update(schema.rounds).where(schema.rounds.c.number == number).values(**changes)
            )
            return self._round_row(connection, self._get_round(connection, number))

    def _get_round(self, connection: Connection, number: int) -> Mapping[str, Any]:
        row = connection.execute(
            sa.select(schema.rounds).where(schema.rounds.c.number == number)
        ).mappings().first()
        if row is None:
            raise ProjectError(f"no round {number}; see rounds() for the existing rounds")
        return row

    def _round_row(self, connection: Connection, row: Mapping[str, Any]) -> dict[str, Any]:
        table = schema.candidates
        counts = dict(
            connection.execute(
                sa.select(table.c.decision, sa.func.count())
                .where(table.c.round == row["number"])
                .group_by(table.c.decision)
            ).all()
        )
        result = dict(row)
        result["n_candidates"] = sum(counts.values())
        for decision in schema.DECISIONS:
            result[f"n_{decision}"] = counts.get(decision, 0)
        return result

    # ------------------------------------------------------------------ candidates

    def set_candidates(
        self, number: int, candidates: pd.DataFrame | Iterable[Mapping[str, Any]]
    ) -> int:
        """Store the candidates proposed for a pending round, replacing undecided ones.

        Parameters
        ----------
        number : int
            A pending round without decisions yet.
        candidates : DataFrame or iterable of mapping
            With ``text_id`` and ``score``; optional ``rank`` (default: the given order,
            from 1) and ``breakdown`` (a JSON-serializable dict of score parts).

        Returns
        -------
        int
            Number of candidates stored.

        Raises
        ------
        ProjectError
            If the round is not pending or has decisions, or a text is unknown, repeated,
            or not in the pool split.
        """
        items = candidates.to_dict("records") if isinstance(candidates, pd.DataFrame) else [
            dict(item) for item in candidates
        ]
        ids = [str(item["text_id"]) for item in items]
        repeated = sorted({text_id for text_id in ids if ids.count(text_id) > 1})
        if repeated:
            raise ProjectError(f"repeated candidate text ids {repeated[:10]}")
        table = schema.candidates
        with schema.write_transaction(self._engine) as connection:
            self._check_pending(connection, number)
            decided = connection.execute(
                sa.select(sa.func.count()).where(
                    table.c.round == number, table.c.decision != "pending"
                )
            ).scalar()
            if decided:
                raise ProjectError(
                    f"round {number} already has {decided} decided candidates; cancel the round "
                    "and create a new one to propose other candidates"
                )
            self._check_pool_ids(connection, ids)
            connection.execute(sa.delete(table).where(table.c.round == number))
            rows = [
                {
                    "round": number,
                    "text_id": text_id,
                    "rank": int(item.get("rank") or position),
                    "score": float(item["score"]),
                    "breakdown": schema.to_json_value(item.get("breakdown")),
                    "decision": "pending",
                }
                for position, (text_id, item) in enumerate(zip(ids, items), start=1)
            ]
            if rows:
                connection.execute(sa.insert(table), rows)
        return len(rows)

    def candidates(self, number: int, *, decision: str | None = None) -> pd.DataFrame:
        """Return the candidates of round `number` by rank, optionally of one decision."""
        table = schema.candidates
        query = sa.select(table).where(table.c.round == number).order_by(table.c.rank)
        if decision is not None:
            query = query.where(table.c.decision == decision)
        with self._engine.connect() as connection:
            rows = [dict(row) for row in connection.execute(query).mappings()]
        return pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)

    def decide(self, number: int, text_ids: Sequence[str], approved: bool, user: str) -> int:
        """Approve or reject candidates of a pending round, and audit the decision.

        Parameters
        ----------
        number : int
            A pending round.
        text_ids : sequence of str
            Candidates of that round.
        approved : bool
            True to approve, False to reject.
        user : str
            Who decided.

        Returns
        -------
        int
            Id of the audit log entry; pass it to `undo` to restore the earlier decisions.

        Raises
        ------
        ProjectError
            If the round is not pending or a text is not one of its candidates.
        """
        ids = [str(text_id) for text_id in text_ids]
        target = {"round": int(number), "text_ids": sorted(set(ids))}
        with schema.write_transaction(self._engine) as connection:
            self._check_pending(connection, number)
            before = self._read_state_candidates(connection, target)
            unknown = sorted(set(ids) - set(before["decisions"]))
            if unknown:
                raise ProjectError(
                    f"texts {unknown[:10]} are not candidates of round {number}; "
                    "see candidates(round) for the candidates"
                )
            decision = "approved" if approved else "rejected"
            after = {
                "decisions": {
                    text_id: [decision, user, schema.utc_now()] for text_id in target["text_ids"]
                }
            }
            self._write_state_candidates(connection, target, after)
            return self._record_edit(
                connection, action="decide", kind="candidates", target=target,
                before=before, after=after, user=user,
            )

    def approved_unlabelled_ids(self, number: int, *, node: str | None = None) -> list[str]:
        """Return approved candidates of round `number` still without a value for `node`.

        These are the texts left to annotate when an interrupted round resumes; `node`
        defaults to the output node.
        """
        labelled = set(self.labelled_ids(node=node))
        approved = self.candidates(number, decision="approved")["text_id"]
        return [text_id for text_id in approved if text_id not in labelled]

    def _check_pending(self, connection: Connection, number: int) -> None:
        status = self._get_round(connection, number)["status"]
        if status != "pending":
            raise ProjectError(
                f"round {number} is {status!r}: candidates and decisions change only while "
                "a round is 'pending'"
            )

    def _read_state_candidates(self, connection: Connection, target: dict) -> dict:
        self._check_pending(connection, target["round"])
        table = schema.candidates
        rows = connection.execute(
            sa.select(table.c.text_id, table.c.decision, table.c.decided_by, table.c.decided_at)
            .where(table.c.round == target["round"], table.c.text_id.in_(target["text_ids"]))
        ).all()
        return {"decisions": {row.text_id: list(row[1:]) for row in rows}}

    def _write_state_candidates(self, connection: Connection, target: dict, state: dict) -> None:
        table = schema.candidates
        for text_id, (decision, decided_by, decided_at) in state["decisions"].items():
            connection.execute(
                sa.update(table)
                .where(table.c.round == target["round"], table.c.text_id == text_id)
                .values(decision=decision, decided_by=decided_by, decided_at=decided_at)
            )


def _check_transition(number: int, old: str, new: str) -> None:
    if new not in schema.ROUND_STATUSES:
        raise ProjectError(
            f"invalid round status {new!r}; expected one of {list(schema.ROUND_STATUSES)}"
        )
    order = schema.ROUND_STATUSES
    finished = old in ("done", "cancelled")
    backwards = new != "cancelled" and order.index(new) < order.index(old)
    if finished or backwards:
        raise ProjectError(
            f"round {number} cannot go from {old!r} to {new!r}: a round only moves forward "
            f"through {list(order[:5])} or to 'cancelled' before 'done'"
        )

