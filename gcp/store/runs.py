"""Training runs: which student was trained on what, with which result.

This module owns the ``training_runs`` table. Checkpoint paths inside the project folder
are stored relative to it, so a moved project folder still finds its checkpoints. It does
not train anything or check that a checkpoint file exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gcp.exceptions import ProjectError
from gcp.store import schema

TRAINING_COLUMNS = [
    "id", "round", "graph_version", "kind", "trained_nodes", "checkpoint_path", "metrics",
    "scores", "seconds", "created_at",
]


class TrainingRunsMixin:
    """Training-run methods of `gcp.store.Project`."""

    _engine: Engine
    folder: Path

    def record_training_run(
        self,
        *,
        trained_nodes: Sequence[str],
        kind: str = "full",
        checkpoint_path: str | Path | None = None,
        metrics: Mapping[str, Any] | None = None,
        scores: Mapping[str, float] | None = None,
        seconds: float = 0.0,
        graph_version: int | None = None,
        round: int | None = None,  # noqa: A002 - the column's name
    ) -> int:
        """Record a finished training run and return its id.

        Parameters
        ----------
        trained_nodes : sequence of str
            Nodes whose modules were trained.
        kind : {"full", "targeted"}, default="full"
        checkpoint_path : str or Path, optional
            Saved student; stored relative to the project folder when it is inside it.
        metrics, scores : mapping, optional
            JSON-serializable metrics, and node -> counterfactual impact for targeted runs.
        seconds : float, default=0.0
            Training wall time.
        graph_version : int, optional
            Graph the student mirrors; defaults to the current version.
        round : int, optional
            Acquisition round the run belongs to.

        Raises
        ------
        ProjectError
            If `kind` is not "full" or "targeted", or a value has no JSON form.
        """
        if kind not in schema.TRAINING_KINDS:
            raise ProjectError(
                f"invalid training kind {kind!r}; expected one of {list(schema.TRAINING_KINDS)}"
            )
        with schema.write_transaction(self._engine) as connection:
            result = connection.execute(
                sa.insert(schema.training_runs).values(
                    round=round,
                    graph_version=graph_version or self._current_graph_version(connection),
                    kind=kind,
                    trained_nodes=[str(node) for node in trained_nodes],
                    checkpoint_path=self._relative_path(checkpoint_path),
                    metrics=schema.to_json_value(metrics),
                    scores=schema.to_json_value(scores),
                    seconds=float(seconds),
                    created_at=schema.utc_now(),
                )
            )
            return int(result.inserted_primary_key[0])

    def training_runs(self) -> pd.DataFrame:
        """Return every training run, oldest first, with absolute checkpoint paths."""
        table = schema.training_runs
        with self._engine.connect() as connection:
            query = sa.select(table).order_by(table.c.id)
            rows = [dict(row) for row in connection.execute(query).mappings()]
        for row in rows:
            if row["checkpoint_path"] is not None:
                row["checkpoint_path"] = str(self.folder.resolve() / row["checkpoint_path"])
        return schema.to_frame(rows, TRAINING_COLUMNS, optional_ints=("round", "graph_version"))

    def _relative_path(self, path: str | Path | None) -> str | None:
        if path is None:
            return None
        path = Path(path).resolve()
        try:
            return path.relative_to(self.folder.resolve()).as_posix()
        except ValueError:
            return str(path)
