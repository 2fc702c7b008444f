"""Readers of the supported table formats: CSV, TSV, JSONL and Parquet.

This module owns turning a file into a table of row numbers, ids, texts and gold labels.
Every cell is read as text, and undecodable bytes are kept as lone surrogates (Python's
``surrogateescape``) so that `validate_table` can report their rows. It does not check
the rows themselves.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gcp.data_import.validation import MAX_LISTED_ROWS, _is_missing
from gcp.exceptions import DataImportError

FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".parquet": "parquet", ".pq": "parquet",
}


def read_table(
    path: str | Path,
    *,
    text_column: str,
    id_column: str | None = None,
    label_column: str | None = None,
) -> pd.DataFrame:
    """Read a CSV, TSV, JSONL or Parquet file and keep the chosen columns.

    The format comes from the file suffix (see `FORMATS`). Every cell is read as text:
    "NA" or "null" in a CSV stays a string. Invalid UTF-8 bytes do not stop the reading;
    `validate_table` reports their rows.

    Parameters
    ----------
    path : str or Path
    text_column : str
        Column with the texts.
    id_column, label_column : str, optional
        Columns with unique text ids and with gold labels (an empty cell: no label).

    Returns
    -------
    pandas.DataFrame
        Columns ``row`` (1-based data row, the line number for JSONL), ``id`` (only with
        `id_column`, stripped), ``text`` (as in the file) and ``gold_label`` (stripped,
        None where empty or without `label_column`).

    Raises
    ------
    DataImportError
        If the file is missing, has an unknown suffix, cannot be parsed, or lacks a
        requested column (the message lists the available columns).
    """
    path = Path(path)
    if not path.is_file():
        raise DataImportError(f"file not found: {str(path)!r}")
    file_format = FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise DataImportError(
            f"unsupported file type {path.suffix!r} of {path.name!r}; "
            f"use one of {sorted(FORMATS)}"
        )
    raw, rows = _READERS[file_format](path)
    return _select_columns(
        raw, rows, text_column=text_column, id_column=id_column, label_column=label_column,
        source=path.name,
    )


def _read_delimited(path: Path, separator: str) -> tuple[pd.DataFrame, list[int]]:
    try:
        raw = pd.read_csv(
            path, sep=separator, dtype=object, keep_default_na=False, na_filter=False,
            encoding="utf-8-sig", encoding_errors="surrogateescape",
        )
    except pd.errors.EmptyDataError:
        raise DataImportError(f"{path.name!r} is empty: expected a header row") from None
    except pd.errors.ParserError as err:
        raise DataImportError(f"cannot parse {path.name!r}: {err}") from None
    return raw, list(range(1, len(raw) + 1))


def _read_jsonl(path: Path) -> tuple[pd.DataFrame, list[int]]:
    records, rows, errors = [], [], []
    for line_number, line in enumerate(path.read_bytes().splitlines(), start=1):
        text = line.decode("utf-8", errors="surrogateescape").lstrip("\ufeff").strip()
        if not text:
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            errors.append(f"line {line_number}: invalid JSON ({err.msg})")
            continue
        if not isinstance(record, dict):
            kind = type(record).__name__
            errors.append(f"line {line_number}: expected a JSON object, got {kind}")
            continue
        records.append(record)
        rows.append(line_number)
    if errors:
        listed = "\n".join(f"- {error}" for error in errors[:MAX_LISTED_ROWS])
        if len(errors) > MAX_LISTED_ROWS:
            listed += f"\n- and {len(errors) - MAX_LISTED_ROWS} more"
        raise DataImportError(
            f"cannot parse {path.name!r}: {len(errors)} line(s) are not JSON objects:\n{listed}"
        )
    return pd.DataFrame(records, dtype=object), rows


def _read_parquet(path: Path) -> tuple[pd.DataFrame, list[int]]:
    try:
        raw = pd.read_parquet(path)
    except (OSError, ValueError) as err:  # pyarrow.ArrowInvalid is a ValueError
        raise DataImportError(f"cannot read {path.name!r} as Parquet: {err}") from None
    return raw.astype(object), list(range(1, len(raw) + 1))


_READERS: dict[str, Callable[[Path], tuple[pd.DataFrame, list[int]]]] = {
    "csv": lambda path: _read_delimited(path, ","),
    "tsv": lambda path: _read_delimited(path, "\t"),
    "jsonl": _read_jsonl,
    "parquet": _read_parquet,
}


def _as_text(value: Any) -> str:
    if _is_missing(value):
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    return value if isinstance(value, str) else str(value)


def _select_columns(
    raw: pd.DataFrame,
    rows: Sequence[int],
    *,
    text_column: str,
    id_column: str | None,
    label_column: str | None,
    source: str,
) -> pd.DataFrame:
    requested = [column for column in (text_column, id_column, label_column) if column is not None]
    missing = [column for column in requested if column not in raw.columns]
    if missing:
        raise DataImportError(
            f"{source!r} has no column {', '.join(repr(c) for c in missing)}; available "
            f"columns: {[str(c) for c in raw.columns]}. Choose the text, id and label "
            "columns among them"
        )
    # object dtype: pandas' default string dtype rejects the surrogates that mark bad bytes
    columns = {"row": pd.Series(list(rows), dtype="int64")}
    if id_column is not None:
        columns["id"] = pd.Series([_as_text(v).strip() for v in raw[id_column]], dtype=object)
    columns["text"] = pd.Series([_as_text(v) for v in raw[text_column]], dtype=object)
    labels = raw[label_column] if label_column is not None else [None] * len(raw)
    columns["gold_label"] = pd.Series([_as_text(v).strip() or None for v in labels], dtype=object)
    return pd.DataFrame(columns)
