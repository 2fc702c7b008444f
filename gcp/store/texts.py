"""The pool of texts and its pool / validation / test splits.

This module owns the ``texts`` table. Texts are only ever appended, in one transaction
per call, and each keeps the split it was given at import. Ids and texts are unique, and
texts are matched by `gcp.hashing.text_hash` (exact, no normalisation). Reading and
checking data files is `gcp.data_import`'s job; `add_texts` calls its `validate_table`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gcp import data_import
from gcp.exceptions import DataImportError, ProjectError
from gcp.hashing import text_hash
from gcp.store import schema

logger = logging.getLogger(__name__)

TEXT_COLUMNS = ["id", "text", "text_hash", "gold_label", "split", "position", "imported_at"]
_CHUNK = 500  # ids per IN (...) list, well under every database's parameter limit


def _chunks(items: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield list(items[start:start + _CHUNK])


def _check_split(split: str) -> str:
    if split not in schema.SPLITS:
        raise ProjectError(f"invalid split {split!r}; expected one of {list(schema.SPLITS)}")
    return split


class TextsMixin:
    """Text methods of `gcp.store.Project`."""

    _engine: Engine

    def add_texts(self, df: pd.DataFrame, *, source: str = "the table") -> int:
        """Append texts in one transaction; a problem in any row stores nothing.

        Parameters
        ----------
        df : pandas.DataFrame
            Columns ``id`` and ``text``; optional ``gold_label``, ``split`` (``"pool"``,
            ``"validation"`` or ``"test"``; default ``"pool"``) and ``row`` (row numbers
            used in error messages). `gcp.data_import.import_texts` builds this from a file.
        source : str, default="the table"
            Name of the data in error messages.

        Returns
        -------
        int
            Number of texts added.

        Raises
        ------
        DataImportError
            Listing every empty text, duplicate or already stored id or text, and label
            outside the current graph's labels, with row numbers.
        """
        if "id" not in df.columns or "text" not in df.columns:
            raise DataImportError(
                f"add_texts needs 'id' and 'text' columns, got {list(df.columns)}; "
                "gcp.data_import.import_texts reads files and makes ids"
            )
        frame = df.copy()
        if "split" not in frame:
            frame["split"] = "pool"
        if "gold_label" not in frame:
            frame["gold_label"] = None
        with schema.write_transaction(self._engine) as connection:
            existing = connection.execute(sa.select(schema.texts.c.id, schema.texts.c.text_hash))
            existing_ids, existing_hashes = set(), set()
            for row in existing:
                existing_ids.add(row.id)
                existing_hashes.add(row.text_hash)
            labels = self._graph_at(connection, self._current_graph_version(connection)).labels
            report = data_import.validate_table(
                frame, labels=labels, existing_ids=existing_ids, existing_hashes=existing_hashes,
            )
            report.raise_for_problems(source)
            start = connection.execute(sa.select(sa.func.max(schema.texts.c.position))).scalar()
            start = -1 if start is None else int(start)
            now = schema.utc_now()
            rows = [
                {
                    "id": str(record["id"]),
                    "text": record["text"],
                    "text_hash": text_hash(record["text"]),
                    "gold_label": record["gold_label"] if pd.notna(record["gold_label"]) else None,
                    "split": record["split"],
                    "position": start + offset,
                    "imported_at": now,
                }
                for offset, record in enumerate(frame.to_dict("records"), start=1)
            ]
            if rows:
                connection.execute(sa.insert(schema.texts), rows)
        logger.info("added %d texts from %s", len(rows), source)
        return len(rows)

    def texts(self, split: str | None = None, *, ids: Sequence[str] | None = None) -> pd.DataFrame:
        """Return texts in import order, optionally of one split or with the given ids.

        Returns
        -------
        pandas.DataFrame
            Columns ``id, text, text_hash, gold_label, split, position, imported_at``.
        """
        table = schema.texts
        query = sa.select(table).order_by(table.c.position)
        if split is not None:
            query = query.where(table.c.split == _check_split(split))
        with self._engine.connect() as connection:
            if ids is None:
                rows = [dict(row) for row in connection.execute(query).mappings()]
            else:
                rows = [
                    dict(row)
                    for chunk in _chunks([str(i) for i in ids])
                    for row in connection.execute(query.where(table.c.id.in_(chunk))).mappings()
                ]
                rows.sort(key=lambda row: row["position"])
        return pd.DataFrame(rows, columns=TEXT_COLUMNS)

    def count_texts(self, split: str | None = None) -> int:
        """Return the number of texts, optionally of one split."""
        query = sa.select(sa.func.count()).select_from(schema.texts)
        if split is not None:
            query = query.where(schema.texts.c.split == _check_split(split))
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar() or 0)

    def pool_ids(self) -> list[str]:
        """Return ids of the pool split, in import order: the texts acquisition may pick.

        The validation and test splits are never part of the pool.
        """
        return list(self.texts("pool")["id"])

    def unlabelled_ids(self, *, node: str | None = None) -> list[str]:
        """Return pool ids without a current value for `node` (default: the output node)."""
        labelled = set(self.labelled_ids(node=node))
        return [text_id for text_id in self.pool_ids() if text_id not in labelled]

    def _check_text_ids(self, connection: Connection, ids: Sequence[Any]) -> None:
        self._missing_or_wrong_split(connection, ids, split=None)

    def _check_pool_ids(self, connection: Connection, ids: Sequence[str]) -> None:
        self._missing_or_wrong_split(connection, ids, split="pool")

    def _missing_or_wrong_split(
        self, connection: Connection, ids: Sequence[Any], *, split: str | None
    ) -> None:
        requested = sorted({str(i) for i in ids if i is not None})
        if any(i is None for i in ids):
            raise ProjectError("an annotation or candidate has no text_id")
        table = schema.texts
        found: dict[str, str] = {}
        for chunk in _chunks(requested):
            query = sa.select(table.c.id, table.c.split).where(table.c.id.in_(chunk))
            rows = connection.execute(query)
            found.update({row.id: row.split for row in rows})
        unknown = [i for i in requested if i not in found]
        if unknown:
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise ProjectError(f"unknown text ids {unknown[:10]}{more}; add the texts first")
        outside = [i for i in requested if split is not None and found[i] != split]
        if outside:
            raise ProjectError(
                f"texts {outside[:10]} are in the {found[outside[0]]!r} split; only pool texts "
                "can be acquisition candidates"
            )
