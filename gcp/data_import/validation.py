"""Checks on imported rows, and the report that lists every problem with row numbers.

This module owns the problem kinds (invalid UTF-8, empty texts, empty, duplicate or
already stored ids and texts, labels outside the task's labels, invalid splits) and how
they are worded. Texts are compared by `gcp.hashing.text_hash`, so only exact duplicates
count. It does not read files; `gcp.data_import.readers` does.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from gcp.exceptions import DataImportError
from gcp.hashing import text_hash

SPLITS = ("pool", "validation", "test")
MAX_LISTED_ROWS = 10  # row numbers listed per problem; the rest are counted


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


@dataclass(frozen=True)
class Problem:
    """One kind of problem and the rows that have it."""

    kind: str  # e.g. "empty_text", "duplicate_id"
    description: str  # what is wrong, in words
    rows: tuple[int, ...]  # 1-based data rows (line numbers for JSONL)
    details: tuple[str, ...]  # one note per row (e.g. the offending value), or ""

    def render(self) -> str:
        """Return one line: description, count and the first `MAX_LISTED_ROWS` rows."""
        listed = [
            f"{row} ({detail})" if detail else str(row)
            for row, detail in zip(self.rows[:MAX_LISTED_ROWS], self.details)
        ]
        more = len(self.rows) - MAX_LISTED_ROWS
        rows = ", ".join(listed) + (f" and {more} more" if more > 0 else "")
        return f"{self.description}: {_plural(len(self.rows), 'row')}: {rows}"


@dataclass(frozen=True)
class ValidationReport:
    """The result of `validate_table`: every problem found, by kind."""

    n_rows: int  # rows checked
    problems: tuple[Problem, ...]  # empty if the table can be imported

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def counts(self) -> dict[str, int]:
        """Number of rows with each kind of problem."""
        return {problem.kind: len(problem.rows) for problem in self.problems}

    def message(self, source: str = "the table") -> str:
        """Return the whole report as an error message naming `source`."""
        lines = [
            f"cannot import {source}: found {_plural(len(self.problems), 'kind')} of problem "
            f"in {_plural(self.n_rows, 'row')}, so nothing was imported (rows are numbered "
            "from 1 at the first data row, after the header):"
        ]
        lines += [f"- {problem.render()}" for problem in self.problems]
        return "\n".join(lines)

    def raise_for_problems(self, source: str = "the table") -> None:
        """Raise `DataImportError` with `message` if there is any problem."""
        if self.problems:
            raise DataImportError(self.message(source))


_DESCRIPTIONS = {
    "invalid_encoding": "invalid UTF-8 bytes (save the file as UTF-8)",
    "empty_text": "empty or whitespace-only text",
    "empty_id": "empty id",
    "duplicate_id": "duplicate id",
    "existing_id": "id already in the project",
    "duplicate_text": "duplicate text",
    "existing_text": "text already in the project",
    "unknown_label": "label not among the task's labels",
    "invalid_split": f"invalid split (expected one of {list(SPLITS)})",
}


def _is_valid_utf8(value: str | None) -> bool:
    if value is None:
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: an undecodable byte of the file
        return False
    return True


def validate_table(
    df: pd.DataFrame,
    *,
    labels: Sequence[str] | None = None,
    existing_ids: Collection[str] = (),
    existing_hashes: Collection[str] = (),
) -> ValidationReport:
    """Check a table from `read_table` (or with its columns) before importing it.

    Parameters
    ----------
    df : pandas.DataFrame
        Column ``text``; optional ``id`` (checked only if present), ``gold_label``,
        ``split`` and ``row`` (row numbers for the report; default 1, 2, ...).
    labels : sequence of str, optional
        The task's labels; a gold label outside them is a problem.
    existing_ids, existing_hashes : collection of str
        Ids and `text_hash` values already in the project; repeating one is a problem.

    Returns
    -------
    ValidationReport
        Every problem found, by kind: invalid UTF-8, empty text, empty, duplicate or
        existing id, duplicate or existing text, unknown label, invalid split.

    Raises
    ------
    DataImportError
        If ``df`` has no ``text`` column.
    """
    if "text" not in df.columns:
        raise DataImportError(f"the table has no 'text' column; columns: {list(df.columns)}")
    n_rows = len(df)
    rows = list(df["row"]) if "row" in df.columns else list(range(1, n_rows + 1))
    found: dict[str, list[tuple[int, str]]] = {kind: [] for kind in _DESCRIPTIONS}
    first_id_row: dict[str, int] = {}
    first_text_row: dict[str, int] = {}
    ids = list(df["id"]) if "id" in df.columns else [None] * n_rows
    golds = list(df["gold_label"]) if "gold_label" in df.columns else [None] * n_rows
    splits = list(df["split"]) if "split" in df.columns else ["pool"] * n_rows
    for row, text, text_id, gold, split in zip(rows, df["text"], ids, golds, splits):
        text = None if _is_missing(text) else str(text)
        gold = None if _is_missing(gold) else str(gold)
        cells = (("text", text), ("id", text_id), ("label", gold))
        undecodable = [
            name for name, value in cells if isinstance(value, str) and not _is_valid_utf8(value)
        ]
        if undecodable:
            found["invalid_encoding"].append((row, "in " + ", ".join(undecodable)))
        if text is None or not text.strip():
            found["empty_text"].append((row, ""))
        elif "text" not in undecodable:
            _check_unique(text_hash(text), row, "", first_text_row, existing_hashes, found, "text")
        if "id" in df.columns:
            if _is_missing(text_id) or not str(text_id).strip():
                found["empty_id"].append((row, ""))
            elif "id" not in undecodable:
                text_id = str(text_id)
                _check_unique(text_id, row, repr(text_id), first_id_row, existing_ids, found, "id")
        if gold is not None and labels is not None and gold not in labels:
            found["unknown_label"].append((row, repr(gold)))
        if split not in SPLITS:
            found["invalid_split"].append((row, repr(split)))
    problems = tuple(
        Problem(
            kind=kind,
            description=_describe(kind, labels),
            rows=tuple(row for row, _ in entries),
            details=tuple(detail for _, detail in entries),
        )
        for kind, entries in found.items()
        if entries
    )
    return ValidationReport(n_rows=n_rows, problems=problems)


def _check_unique(
    key: str, row: int, label: str, first_row: dict[str, int], existing: Collection[str],
    found: dict[str, list[tuple[int, str]]], what: str,
) -> None:
    if key in existing:
        found[f"existing_{what}"].append((row, label))
    elif key in first_row:
        note = f"same as row {first_row[key]}"
        found[f"duplicate_{what}"].append((row, f"{label}, {note}" if label else note))
    else:
        first_row[key] = row


def _describe(kind: str, labels: Sequence[str] | None) -> str:
    if kind == "unknown_label":
        return f"label not among the task's labels {list(labels or [])}"
    return _DESCRIPTIONS[kind]
