"""The project store: texts, graph versions, annotations, rounds and training runs.

A project is a folder with a SQLite database (``project.db``) and its artifacts
(``embeddings/`` and ``checkpoints/``). A SQLAlchemy URL can put the database on
PostgreSQL instead. `Project` is the only entry point; the submodules split its methods
by table. Reading data files belongs to `gcp.data_import`.
"""

from gcp.store.migrations import latest_version
from gcp.store.project import CHECKPOINTS_DIR, DB_FILENAME, EMBEDDINGS_DIR, Project
from gcp.store.schema import ANNOTATION_SOURCES, DECISIONS, ROUND_STATUSES, SPLITS

__all__ = [
    "ANNOTATION_SOURCES",
    "CHECKPOINTS_DIR",
    "DB_FILENAME",
    "DECISIONS",
    "EMBEDDINGS_DIR",
    "ROUND_STATUSES",
    "SPLITS",
    "Project",
    "latest_version",
]
