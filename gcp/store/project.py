"""The `Project`: one folder with a database and the artifacts of one distillation task.

This module owns the project folder layout (``project.db``, ``embeddings/``,
``checkpoints/``), creating and opening the database (migrating an older schema) and the
settings. The other tables are handled by the mixins `Project` combines, one module per
table: texts, graphs, annotations, rounds, runs and audit. Every write runs in one
transaction, so killing the process at any point keeps every committed write and leaves
the project openable. Reading data files is `gcp.data_import`'s job.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gcp.exceptions import ProjectError
from gcp.graph import ConceptGraph
from gcp.store import migrations, schema
from gcp.store.annotations import AnnotationsMixin
from gcp.store.audit import AuditMixin
from gcp.store.graphs import GraphsMixin
from gcp.store.rounds import RoundsMixin
from gcp.store.runs import TrainingRunsMixin
from gcp.store.texts import TextsMixin

logger = logging.getLogger(__name__)

DB_FILENAME = "project.db"
EMBEDDINGS_DIR = "embeddings"
CHECKPOINTS_DIR = "checkpoints"
_SECRET_KEY = re.compile(r"(^|[._-])(api_?key|secret|password|token)$", re.IGNORECASE)


def _check_no_secrets(key: str, value: Any) -> None:
    if _SECRET_KEY.search(key) or (isinstance(value, str) and value.startswith("sk-")):
        raise ProjectError(
            f"setting {key!r} looks like a secret; the project database is not encrypted, "
            "so keep API keys in an environment variable and store only its name"
        )
    if isinstance(value, Mapping):
        for inner_key, inner_value in value.items():
            _check_no_secrets(f"{key}.{inner_key}", inner_value)


class Project(
    TextsMixin, GraphsMixin, AnnotationsMixin, RoundsMixin, TrainingRunsMixin, AuditMixin
):
    """A GCP Studio project: texts, graph versions, annotations, rounds and training runs.

    Use `Project.create` or `Project.open`, and `close` it (or use it as a context
    manager). The `engine` is shared with other stores of the same database, such as
    `gcp.teachers.cache.AnswerCache`.

    Parameters
    ----------
    folder : Path
        The project folder.
    engine : sqlalchemy.engine.Engine
        Engine of a database already migrated to the newest schema.
    """

    def __init__(self, folder: Path, engine: Engine) -> None:
        self.folder = Path(folder)
        self._engine = engine
        self._graphs: dict[int, ConceptGraph] = {}

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def create(
        cls,
        folder: str | Path,
        *,
        graph: ConceptGraph | str | Path,
        task: str | None = None,
        db_url: str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> Project:
        """Create a project in `folder` with `graph` as graph version 1.

        Parameters
        ----------
        folder : str or Path
            Created if missing; it must not hold a project already.
        graph : ConceptGraph, str or Path
            The concept graph, or the path of its JSON file.
        task : str, optional
            Task description; replaces ``graph.task`` when given.
        db_url : str, optional
            SQLAlchemy URL of the database (e.g. PostgreSQL) instead of
            ``folder/project.db``. The folder still contains the artifacts.
        settings : mapping, optional
            Initial settings (see `set_setting`).

        Raises
        ------
        ProjectError
            If the folder or database already contains a project, or a setting is a secret.
        """
        folder = Path(folder)
        if not isinstance(graph, ConceptGraph):
            graph = ConceptGraph.load(graph)
        if task is not None:
            graph = graph.with_task(task)
        for key, value in (settings or {}).items():
            _check_no_secrets(key, value)
        if db_url is None and (folder / DB_FILENAME).exists():
            raise ProjectError(
                f"a project already exists in {str(folder)!r}; open it with Project.open() "
                "or choose another folder"
            )
        folder.mkdir(parents=True, exist_ok=True)
        engine = schema.make_engine(db_url or _sqlite_url(folder))
        if migrations.has_schema(engine):
            engine.dispose()
            raise ProjectError(
                f"the database {db_url!r} already contains a project; open it with "
                "Project.open(folder, db_url=...)"
            )
        project = cls._start(folder, engine)
        with schema.write_transaction(engine) as connection:
            project._insert_graph(connection, graph, "initial graph", parent=None, user=None)
        for key, value in (settings or {}).items():
            project.set_setting(key, value)
        logger.info("created project %s (graph %s)", folder, graph.content_hash)
        return project

    @classmethod
    def open(cls, folder: str | Path, *, db_url: str | None = None) -> Project:
        """Open the project in `folder`, migrating an older schema to the newest one.

        Raises
        ------
        ProjectError
            If the folder contains no project, or its database comes from a newer version.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise ProjectError(
                f"project folder not found: {str(folder)!r}; create one with "
                "`gcp init` or Project.create(folder, graph=...)"
            )
        if db_url is None and not (folder / DB_FILENAME).is_file():
            raise ProjectError(
                f"{str(folder)!r} is not a project folder: {DB_FILENAME} not found; create one "
                "with `gcp init` or Project.create(folder, graph=...)"
            )
        engine = schema.make_engine(db_url or _sqlite_url(folder))
        if not migrations.has_schema(engine):
            engine.dispose()
            raise ProjectError(
                f"the database of {str(folder)!r} contains no GCP Studio project "
                "(no schema_version table)"
            )
        return cls._start(folder, engine)

    @classmethod
    def _start(cls, folder: Path, engine: Engine) -> Project:
        try:
            migrations.migrate(engine)
        except Exception:
            engine.dispose()
            raise
        (folder / EMBEDDINGS_DIR).mkdir(exist_ok=True)
        (folder / CHECKPOINTS_DIR).mkdir(exist_ok=True)
        return cls(folder, engine)

    def close(self) -> None:
        """Close every database connection; the object is unusable afterwards."""
        self._engine.dispose()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Project({str(self.folder)!r}, url={self._engine.url.render_as_string()!r})"

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine; other stores may create their own tables through it."""
        return self._engine

    @property
    def embeddings_dir(self) -> Path:
        """Folder of the embedding cache."""
        return self.folder / EMBEDDINGS_DIR

    @property
    def checkpoints_dir(self) -> Path:
        """Folder of saved students."""
        return self.folder / CHECKPOINTS_DIR

    @property
    def schema_version(self) -> int:
        """Schema version of the database."""
        return migrations.current_version(self._engine)

    # ------------------------------------------------------------------ settings

    def get_setting(self, key: str, default: Any = None) -> Any:
        """Return the JSON value stored under `key`, or `default` if there is none."""
        table = schema.settings
        with self._engine.connect() as connection:
            row = connection.execute(sa.select(table.c.value).where(table.c.key == key)).first()
        return default if row is None else row.value

    def set_setting(self, key: str, value: Any) -> None:
        """Store a JSON-serializable value under `key`, e.g. the teacher config or budget.

        Raises
        ------
        ProjectError
            If the key or a nested key names a secret (API key, password, token), or the
            value is an API key: the database is plain text.
        """
        _check_no_secrets(key, value)
        value = schema.to_json_value(value)
        table = schema.settings
        with schema.write_transaction(self._engine) as connection:
            exists = connection.execute(sa.select(table.c.key).where(table.c.key == key)).first()
            values = {"value": value, "updated_at": schema.utc_now()}
            if exists:
                connection.execute(sa.update(table).where(table.c.key == key).values(**values))
            else:
                connection.execute(sa.insert(table).values(key=key, **values))

    def settings(self) -> dict[str, Any]:
        """Return every setting as a dict."""
        with self._engine.connect() as connection:
            rows = connection.execute(sa.select(schema.settings.c.key, schema.settings.c.value))
            return {row.key: row.value for row in rows}


def _sqlite_url(folder: Path) -> str:
    return f"sqlite:///{(folder / DB_FILENAME).resolve()}"

