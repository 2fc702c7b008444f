"""Versioned schema migrations of the project store.

This module owns `MIGRATIONS`, the ordered list of schema steps, and `migrate`, which
brings a database up to the newest version. Each step runs in its own transaction and
records its version in the ``schema_version`` table in that same transaction, so a crash
or an error leaves the database at the previous version. It does not check that the data
in the tables makes sense; `gcp.store.Project` does.

To change the schema, append a step: a function taking a `Connection`, written with
portable SQLAlchemy Core (no SQLite-only SQL), and never edit a step that has shipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gcp.exceptions import ProjectError
from gcp.store import schema

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    """One schema step: applying it moves the database from ``version - 1`` to `version`."""

    version: int  # version the database has after this step
    description: str  # one line, stored in schema_version
    apply: Callable[[Connection], None]  # runs inside the step's transaction


def _create_tables(connection: Connection) -> None:
    # NOTE: this step builds the tables from the current definitions in `schema`. Once a
    # later step alters one of these tables, copy that table's version-1 definition here.
    tables = [
        schema.texts,
        schema.graph_versions,
        schema.annotations,
        schema.settings,
        schema.rounds,
        schema.candidates,
        schema.training_runs,
        schema.audit_log,
    ]
    schema.metadata.create_all(connection, tables=tables)


_INDEXES = (
    ("ix_texts_split", "texts", ("split",)),
    ("ix_annotations_text_node", "annotations", ("text_id", "node")),
    ("ix_annotations_round", "annotations", ("round",)),
    ("ix_candidates_decision", "candidates", ("round", "decision")),
)


def _add_lookup_indexes(connection: Connection) -> None:
    for name, table, columns in _INDEXES:
        table_object = sa.Table(table, sa.MetaData(), autoload_with=connection)
        sa.Index(name, *(table_object.c[column] for column in columns)).create(connection)


MIGRATIONS: list[Migration] = [
    Migration(1, "create the project tables", _create_tables),
    Migration(2, "add indexes for annotation, split and decision lookups", _add_lookup_indexes),
]


def latest_version() -> int:
    """Return the schema version that this version of GCP Studio writes."""
    return MIGRATIONS[-1].version


def has_schema(engine: Engine) -> bool:
    """Return True if the database has a ``schema_version`` table (it is a project)."""
    return sa.inspect(engine).has_table(schema.schema_version.name)


def current_version(engine: Engine) -> int:
    """Return the schema version of the database, 0 if it has none yet."""
    if not has_schema(engine):
        return 0
    with engine.connect() as connection:
        version = connection.execute(sa.select(sa.func.max(schema.schema_version.c.version)))
        return int(version.scalar() or 0)


def migrate(engine: Engine, *, target: int | None = None) -> int:
    """Apply the pending migration steps in order, each in its own transaction.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
        Engine of the project database; an empty database gets the whole schema.
    target : int, optional
        Stop at this version instead of the newest one (for tests and tools).

    Returns
    -------
    int
        The schema version after migrating.

    Raises
    ------
    ProjectError
        If the database comes from a newer version of GCP Studio, or a step fails. A
        failing step is rolled back, so the database keeps the version before it.
    """
    newest = latest_version()
    target = newest if target is None else target
    schema.metadata.create_all(engine, tables=[schema.schema_version])
    version = current_version(engine)
    if version > newest:
        raise ProjectError(
            f"the project database has schema version {version}, but this version of "
            f"GCP Studio reads schema versions up to {newest}; upgrade GCP Studio to open it"
        )
    for step in MIGRATIONS:
        if version < step.version <= target:
            _apply(engine, step)
            version = step.version
    return version


def _apply(engine: Engine, step: Migration) -> None:
    logger.info("migrating the project schema to version %d: %s", step.version, step.description)
    try:
        with schema.write_transaction(engine) as connection:
            step.apply(connection)
            connection.execute(
                sa.insert(schema.schema_version).values(
                    version=step.version,
                    description=step.description,
                    applied_at=schema.utc_now(),
                )
            )
    except sa.exc.SQLAlchemyError as err:
        raise ProjectError(
            f"schema migration to version {step.version} ({step.description}) failed and was "
            f"rolled back; the project stays at version {step.version - 1}: {err}"
        ) from err
