"""Reading and checking text tables before they enter a project.

This package owns the supported file formats (`readers`: CSV, TSV, JSONL and Parquet),
the checks on imported rows (`validation`) and the evaluation split fixed at import
(`splits`). `import_texts` runs all three. It reports every problem it finds at once,
with row numbers, and an import either stores every row or none (the store adds them in
one transaction). It does not inspect the content of the texts, and it does not
import teacher annotations, because the teachers produce those.

Row numbers in messages count data rows from 1, the header not counted; for JSONL they
are line numbers. Without an id column, ids are ``row-00001``, ``row-00002``, ... numbered
by position in the project (texts already stored count first), so an import is
repeatable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from gcp.data_import.readers import FORMATS, _select_columns, read_table
from gcp.data_import.splits import assign_splits
from gcp.data_import.validation import (
    MAX_LISTED_ROWS,
    SPLITS,
    Problem,
    ValidationReport,
    validate_table,
)

if TYPE_CHECKING:
    from gcp.store import Project

logger = logging.getLogger(__name__)

__all__ = [
    "FORMATS",
    "MAX_LISTED_ROWS",
    "SPLITS",
    "ImportReport",
    "Problem",
    "ValidationReport",
    "assign_splits",
    "import_texts",
    "read_table",
    "validate_table",
]


@dataclass(frozen=True)
class ImportReport:
    """Counts of the texts that `import_texts` stored."""

    source: str  # file name, or "the DataFrame"
    n_imported: int  # texts added
    n_pool: int  # of which in the pool split (offered to acquisition)
    n_validation: int  # of which in the validation split
    n_test: int  # of which in the test split (evaluation only)
    n_labelled: int  # of which with a gold label
    id_source: str  # "column" (ids from the file) or "generated" (row-00001, ...)


def import_texts(
    project: Project,
    source: str | Path | pd.DataFrame,
    *,
    text_column: str,
    id_column: str | None = None,
    label_column: str | None = None,
    test_size: float = 0.2,
    validation_size: float = 0.0,
    seed: int = 0,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> ImportReport:
    """Read, check, split and append texts to a project, all or nothing.

    Parameters
    ----------
    project : gcp.store.Project
    source : str, Path or pandas.DataFrame
        A file (see `read_table`) or a DataFrame with the named columns.
    text_column, id_column, label_column : str
        As in `read_table`. Without `id_column`, ids are ``row-00001``, ... numbered by
        position in the project, texts already stored first.
    test_size, validation_size : float
        Fractions held out for evaluation and validation, stratified by gold label (see
        `assign_splits`). Held-out texts are never offered to acquisition. Each import
        splits its own new texts; texts already stored keep their split.
    seed : int, default=0
        Seed of the split.
    on_progress : callable, optional
        Called as ``on_progress(done, total, info)`` after each of the 3 steps.

    Returns
    -------
    ImportReport

    Raises
    ------
    DataImportError
        With every problem found (see `validate_table`); the project is unchanged.
    """
    progress = on_progress or (lambda done, total, info: None)
    if isinstance(source, pd.DataFrame):
        name = "the DataFrame"
        frame = _select_columns(
            source.reset_index(drop=True), range(1, len(source) + 1), text_column=text_column,
            id_column=id_column, label_column=label_column, source=name,
        )
    else:
        name = Path(source).name
        frame = read_table(
            source, text_column=text_column, id_column=id_column, label_column=label_column
        )
    progress(1, 3, f"read {len(frame)} rows from {name}")
    if id_column is None:
        start = project.count_texts()
        frame.insert(1, "id", [f"row-{start + i:05d}" for i in range(1, len(frame) + 1)])
    frame["split"] = assign_splits(
        list(frame["gold_label"]), test_size=test_size, validation_size=validation_size, seed=seed
    )
    progress(2, 3, f"assigned splits to {len(frame)} rows")
    n_imported = project.add_texts(frame, source=repr(name))
    progress(3, 3, f"checked and imported {n_imported} texts")
    counts = frame["split"].value_counts()
    report = ImportReport(
        source=name,
        n_imported=n_imported,
        n_pool=int(counts.get("pool", 0)),
        n_validation=int(counts.get("validation", 0)),
        n_test=int(counts.get("test", 0)),
        n_labelled=int(frame["gold_label"].notna().sum()),
        id_source="generated" if id_column is None else "column",
    )
    logger.info("imported %s: %s", name, report)
    return report
