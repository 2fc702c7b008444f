"""Table definitions of the project store, at the newest schema version.

This module owns the SQLAlchemy Core tables that `gcp.store` reads and writes, the allowed
values of its enumerated columns, and the engine factory with the SQLite settings. It does
not create tables: `gcp.store.migrations` does, one versioned step at a time. The tables
`teacher_answers` and `teacher_calls` in the same database belong to
`gcp.teachers.cache.AnswerCache` and are not defined here.

Times are ISO 8601 strings in UTC, as in `AnswerCache`. JSON columns contain plain JSON
values, and every type is portable between SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gcp.exceptions import ProjectError

SPLITS = ("pool", "validation", "test")
ANNOTATION_SOURCES = ("teacher", "recorded", "rule", "human")
ROUND_STATUSES = ("pending", "approved", "annotated", "trained", "done", "cancelled")
DECISIONS = ("pending", "approved", "rejected")
TRAINING_KINDS = ("full", "targeted")

BUSY_TIMEOUT_MS = 30_000  # how long a writer waits for another writer's lock
_WRITE_OPTION = "gcp_write"  # execution option: start SQLite transactions with BEGIN IMMEDIATE

metadata = sa.MetaData()


def _one_of(column: str, values: tuple[str, ...], name: str) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{value}'" for value in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=name)


def _time_column(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(32), nullable=nullable)  # ISO 8601, UTC


schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.String(200), nullable=False),
    _time_column("applied_at"),
)

texts = sa.Table(
    "texts",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("text_hash", sa.String(64), nullable=False, unique=True),  # gcp.hashing.text_hash
    sa.Column("gold_label", sa.String(200), nullable=True),
    sa.Column("split", sa.String(16), nullable=False),
    sa.Column("position", sa.Integer, nullable=False, unique=True),  # import order, from 0
    _time_column("imported_at"),
    _one_of("split", SPLITS, "ck_texts_split"),
)

graph_versions = sa.Table(
    "graph_versions",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("hash", sa.String(64), nullable=False),  # ConceptGraph.content_hash
    sa.Column("graph", sa.JSON, nullable=False),  # ConceptGraph.to_dict()
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("parent_version", sa.Integer, sa.ForeignKey("graph_versions.version")),
    sa.Column("is_current", sa.Boolean, nullable=False, default=False),
    sa.Column("created_by", sa.String(200), nullable=True),
    _time_column("created_at"),
)

annotations = sa.Table(
    "annotations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("text_id", sa.String(200), sa.ForeignKey("texts.id"), nullable=False),
    sa.Column("node", sa.String(64), nullable=False),
    sa.Column("value", sa.String(200), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("teacher", sa.String(200), nullable=True),  # teacher name; None for human values
    sa.Column("model", sa.String(200), nullable=True),
    sa.Column("prompt_version", sa.String(64), nullable=True),
    sa.Column("annotated_by", sa.String(200), nullable=True),  # user name of a human value
    sa.Column("graph_version", sa.Integer, sa.ForeignKey("graph_versions.version")),
    sa.Column("round", sa.Integer, nullable=True),  # acquisition round, None outside rounds
    sa.Column("cost", sa.Float, nullable=False, default=0.0),  # USD
    sa.Column("superseded", sa.Boolean, nullable=False, default=False),
    sa.Column("superseded_by", sa.Integer, sa.ForeignKey("annotations.id"), nullable=True),
    _time_column("created_at"),
    _one_of("source", ANNOTATION_SOURCES, "ck_annotations_source"),
)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.JSON, nullable=True),
    _time_column("updated_at"),
)

rounds = sa.Table(
    "rounds",
    metadata,
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),  # 1, 2, ...
    sa.Column("strategy", sa.String(64), nullable=False),
    sa.Column("batch_size", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("graph_version", sa.Integer, sa.ForeignKey("graph_versions.version")),
    sa.Column("metrics", sa.JSON, nullable=True),
    sa.Column("labels_used", sa.Integer, nullable=False, default=0),
    sa.Column("money_spent", sa.Float, nullable=False, default=0.0),  # USD
    _time_column("created_at"),
    _time_column("updated_at"),
    _one_of("status", ROUND_STATUSES, "ck_rounds_status"),
)

candidates = sa.Table(
    "candidates",
    metadata,
    sa.Column("round", sa.Integer, sa.ForeignKey("rounds.number"), primary_key=True),
    sa.Column("text_id", sa.String(200), sa.ForeignKey("texts.id"), primary_key=True),
    sa.Column("rank", sa.Integer, nullable=False),  # 1 = most informative
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("breakdown", sa.JSON, nullable=True),  # per-criterion parts of the score
    sa.Column("decision", sa.String(16), nullable=False, default="pending"),
    sa.Column("decided_by", sa.String(200), nullable=True),
    _time_column("decided_at", nullable=True),
    _one_of("decision", DECISIONS, "ck_candidates_decision"),
)

training_runs = sa.Table(
    "training_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("round", sa.Integer, nullable=True),
    sa.Column("graph_version", sa.Integer, sa.ForeignKey("graph_versions.version")),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("trained_nodes", sa.JSON, nullable=False),  # list of node names
    sa.Column("checkpoint_path", sa.Text, nullable=True),  # relative to the project folder
    sa.Column("metrics", sa.JSON, nullable=True),
    sa.Column("scores", sa.JSON, nullable=True),  # node -> counterfactual impact
    sa.Column("seconds", sa.Float, nullable=False, default=0.0),
    _time_column("created_at"),
    _one_of("kind", TRAINING_KINDS, "ck_training_runs_kind"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("action", sa.String(64), nullable=False),  # e.g. correct_annotation, undo
    sa.Column("kind", sa.String(32), nullable=False),  # what the states describe
    sa.Column("target", sa.JSON, nullable=False),  # which object, e.g. {"text_id", "node"}
    sa.Column("before", sa.JSON, nullable=False),
    sa.Column("after", sa.JSON, nullable=False),
    sa.Column("edited_by", sa.String(200), nullable=True),
    sa.Column("undoes", sa.Integer, sa.ForeignKey("audit_log.id"), nullable=True),
    sa.Column("undone_by", sa.Integer, sa.ForeignKey("audit_log.id"), nullable=True),
    _time_column("created_at"),
)


def utc_now() -> str:
    """Return the current UTC time as an ISO 8601 string with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def make_engine(url: str) -> Engine:
    """Create an engine for `url`; SQLite connections get WAL and the pragmas below.

    Every new SQLite connection gets ``journal_mode=WAL``, so readers do not block the
    writer. It gets ``synchronous=NORMAL``: a committed transaction survives a crash of
    the process, but a power loss may roll back the last commits. Foreign keys are on,
    and a writer waits up to `BUSY_TIMEOUT_MS` for another writer's lock. The driver's
    own transaction handling is switched off, so SQLAlchemy's ``BEGIN`` also covers DDL
    and each migration step is atomic.
    """
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _on_sqlite_connect)
        sa.event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def _on_sqlite_connect(dbapi_connection, _connection_record) -> None:  # noqa: ANN001
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _on_sqlite_begin(connection: Connection) -> None:
    # A write transaction takes the write lock at BEGIN, so it waits for the busy timeout
    # instead of failing when it upgrades from a read after another process wrote.
    immediate = connection.get_execution_options().get(_WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """Yield a connection inside one write transaction, committed on normal exit."""
    with engine.connect() as connection:
        connection.execution_options(**{_WRITE_OPTION: True})
        with connection.begin():
            yield connection


def to_json_value(value: Any) -> Any:
    """Convert numpy scalars and arrays, and tuples, to plain JSON types.

    Raises
    ------
    ProjectError
        If a value has no JSON form (e.g. a set or an arbitrary object).
    """
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(item) for item in value]
    if hasattr(value, "tolist"):  # numpy scalar or array
        return to_json_value(value.tolist())
    raise ProjectError(f"cannot store {type(value).__name__} {value!r:.80} as JSON")


def to_frame(
    rows: list[dict[str, Any]], columns: list[str], *, optional_ints: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Build a DataFrame with `columns`; `optional_ints` become nullable ``Int64`` columns.

    Without that dtype a column of ids with some NULLs would turn into floats.
    """
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({column: "Int64" for column in optional_ints})
