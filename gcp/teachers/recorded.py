"""The recorded teacher: answers read from a file of earlier teacher answers.

The file is CSV (with a header) or JSONL (one object per line). It has an ``id`` column, a
``text`` column or both, and one column per node holding that node's value; other columns
(such as ``gold_label``) are ignored. A text is looked up by id when its id is in the file,
else by exact text. A text found by neither fails with an error naming it; nothing is
guessed, and a value that is not one of its node's values fails rather than being coerced.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gcp.exceptions import TeacherError
from gcp.graph import ConceptGraph
from gcp.teachers.base import (
    AnnotationBatch,
    ProgressCallback,
    Teacher,
    TextAnnotation,
    TextItem,
    check_items,
    log_failures,
    report_progress,
    requested_nodes,
)

Row = dict[str, Any]


class RecordedTeacher(Teacher):
    """A free, offline teacher that replays recorded answers.

    Parameters
    ----------
    path : str or Path
        CSV or JSONL file (by suffix: ``.jsonl``/``.ndjson`` is JSONL, anything else CSV).
    graph : ConceptGraph, optional
        If given, check now that the file has a column for every node of the graph.
    name : str, optional
        Display name; default ``"recorded:<file name>"``.

    Raises
    ------
    TeacherError
        If the file is missing or unreadable, has neither an ``id`` nor a ``text`` column,
        repeats an id, or lacks columns for nodes of `graph`.
    """

    source = "recorded"

    def __init__(
        self,
        path: str | Path,
        *,
        graph: ConceptGraph | None = None,
        name: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.name = name or f"recorded:{self.path.name}"
        rows, self.columns = _read_rows(self.path)
        if "id" not in self.columns and "text" not in self.columns:
            raise TeacherError(
                f"recorded file {self.path.name!r} needs an 'id' or a 'text' column; "
                f"its columns are {self.columns}"
            )
        self._by_id: dict[str, Row] = {}
        self._by_text: dict[str, list[Row]] = {}
        for line, row in enumerate(rows, start=2):
            if row.get("id") not in (None, ""):
                row_id = str(row["id"])
                if row_id in self._by_id:
                    raise TeacherError(
                        f"recorded file {self.path.name!r} repeats id {row_id!r} (row {line}); "
                        "ids must be unique"
                    )
                self._by_id[row_id] = row
            if isinstance(row.get("text"), str):
                self._by_text.setdefault(row["text"], []).append(row)
        if graph is not None:
            self.check_columns(graph.names)

    def __len__(self) -> int:
        return max(len(self._by_id), sum(len(rows) for rows in self._by_text.values()))

    def describe(self) -> dict[str, Any]:
        """Return ``{"kind": "recorded", "path": ..., "name": ...}``."""
        return {"kind": "recorded", "path": str(self.path), "name": self.name}

    def check_columns(self, names: Sequence[str]) -> None:
        """Raise TeacherError naming every node in `names` that has no column in the file."""
        missing = [name for name in names if name not in self.columns]
        if missing:
            raise TeacherError(
                f"recorded file {self.path.name!r} has no column for node(s) {missing}; "
                f"its columns are {self.columns}. Add the columns, or annotate those nodes "
                "with another teacher"
            )

    def annotate(
        self,
        graph: ConceptGraph,
        items: Sequence[TextItem],
        *,
        nodes: Sequence[str] | None = None,
        on_progress: ProgressCallback | None = None,
        budget: float | None = None,
    ) -> AnnotationBatch:
        """Look up each text's recorded values; see `Teacher.annotate`.

        A text that is not in the file gets status "failed" naming it. If no text at all is
        in the file, the batch also has an `error` saying so.

        Raises
        ------
        TeacherError
            If the file has no column for a requested node.
        """
        check_items(items)
        names = requested_nodes(graph, nodes)
        self.check_columns(names)
        annotations = []
        n_not_found = 0
        for done, item in enumerate(items, start=1):
            row, error = self._find(item, names)
            if row is None:
                n_not_found += 1
                annotation = self._annotation(item, {}, error=error, raw=None)
            else:
                values, problems = _row_values(graph, names, row)
                raw = json.dumps(row, ensure_ascii=False)
                error = "; ".join(problems) or None
                annotation = self._annotation(item, values, error=error, raw=raw)
            annotations.append(annotation)
            report_progress(on_progress, done, len(items), f"{item.id}: {annotation.status}")
        log_failures(self, annotations)
        error = None
        if items and n_not_found == len(items):
            error = (
                f"none of the {len(items)} texts is in the recorded file {self.path.name!r}: "
                "check that the file belongs to this dataset (ids or exact texts must match)"
            )
        return AnnotationBatch(annotations=annotations, error=error)

    def _find(self, item: TextItem, names: list[str]) -> tuple[Row | None, str | None]:
        if item.id in self._by_id:
            return self._by_id[item.id], None
        rows = self._by_text.get(item.text, [])
        if not rows:
            return None, (
                f"text id {item.id!r} is not in the recorded file {self.path.name!r} "
                "(looked up by id, then by exact text)"
            )
        answers = {tuple(row.get(name) for name in names) for row in rows}
        if len(answers) > 1:
            return None, (
                f"text of id {item.id!r} matches {len(rows)} rows of the recorded file "
                f"{self.path.name!r} with different values; add an 'id' column to tell them apart"
            )
        return rows[0], None

    def _annotation(
        self, item: TextItem, values: dict[str, str], *, error: str | None, raw: str | None
    ) -> TextAnnotation:
        return TextAnnotation(
            text_id=item.id,
            values=values,
            status="failed" if error else "ok",
            error=error,
            raw=raw,
            source="recorded",
            teacher=self.name,
            model=self.path.name,
            prompt_version="recorded",
        )


def _row_values(
    graph: ConceptGraph, names: list[str], row: Row
) -> tuple[dict[str, str], list[str]]:
    values: dict[str, str] = {}
    problems: list[str] = []
    for name in names:
        value = row.get(name)
        allowed = graph.node(name).values
        if value is None or value == "":
            problems.append(f"no recorded value for node {name!r}")
        elif isinstance(value, str) and value in allowed:
            values[name] = value
        else:
            problems.append(
                f"recorded value {value!r} for node {name!r} is not one of {list(allowed)}"
            )
    return values, problems


def _read_rows(path: Path) -> tuple[list[Row], list[str]]:
    try:
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            return _read_jsonl(path)
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = [dict(row) for row in reader]
            return rows, list(reader.fieldnames or [])
    except FileNotFoundError:
        raise TeacherError(f"recorded file not found: {str(path)!r}") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise TeacherError(f"cannot read recorded file {path.name!r}: {err}") from None


def _read_jsonl(path: Path) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    columns: dict[str, None] = {}
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise TeacherError(
                    f"recorded file {path.name!r}, line {number}: invalid JSON ({err.msg})"
                ) from None
            if not isinstance(row, dict):
                raise TeacherError(
                    f"recorded file {path.name!r}, line {number}: expected a JSON object"
                )
            rows.append(row)
            columns.update(dict.fromkeys(row))
    return rows, list(columns)
