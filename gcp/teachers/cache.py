"""Persistent answer cache and call log of the LLM teacher (SQLAlchemy Core).

An answer is keyed by (model, prompt version, node key, text hash). The node key hashes the
node's question and values but not its name, so a renamed node keeps its answers and a
changed question or value list is asked again. Each text's answers and the calls that
produced them are written in one committed transaction as soon as the text is done, so a
killed process loses only the texts still in flight. The `teacher_calls` table logs every
request (status, tokens, cost, latency, error, raw reply) for audit.

The cache creates its own tables on the engine it is given and does not manage the rest of
the database. It never stores API keys or request headers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gcp.graph import ConceptNode

logger = logging.getLogger(__name__)

_LOOKUP_CHUNK = 500  # text hashes per SELECT, below SQLite's bound-parameter limit

metadata = sa.MetaData()

teacher_calls = sa.Table(
    "teacher_calls",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("time", sa.String(32), nullable=False),  # ISO 8601, UTC
    sa.Column("teacher", sa.String(200), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("prompt_version", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # annotate, repair, propose, check
    sa.Column("status", sa.String(16), nullable=False),  # ok, invalid, refused, error
    sa.Column("input_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("output_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("cost", sa.Float, nullable=False, default=0.0),  # USD
    sa.Column("latency_s", sa.Float, nullable=False, default=0.0),
    sa.Column("text_hash", sa.String(64), nullable=True),
    sa.Column("text_id", sa.String(200), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("raw", sa.Text, nullable=True),  # reply text as received
)

teacher_answers = sa.Table(
    "teacher_answers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("prompt_version", sa.String(64), nullable=False),
    sa.Column("node_key", sa.String(32), nullable=False),
    sa.Column("text_hash", sa.String(64), nullable=False),
    sa.Column("node_name", sa.String(64), nullable=False),  # name when asked; not part of the key
    sa.Column("value", sa.String(200), nullable=False),
    sa.Column("call_id", sa.Integer, sa.ForeignKey("teacher_calls.id"), nullable=True),
    sa.Column("created", sa.String(32), nullable=False),  # ISO 8601, UTC
    sa.UniqueConstraint("model", "prompt_version", "node_key", "text_hash", name="uq_answer_key"),
    sa.Index("ix_teacher_answers_text_hash", "text_hash"),
)


def node_key(node: ConceptNode) -> str:
    """Return the cache key of a node: a hash of its question and values, not its name."""
    canonical = json.dumps([node.question, list(node.values)], ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def utc_now() -> str:
    """Return the current UTC time as an ISO 8601 string with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class CallRecord:
    """One request sent to a teacher, as stored in `teacher_calls`."""

    teacher: str  # Teacher.name
    model: str  # model name sent to the server
    prompt_version: str  # prompt template version
    kind: str  # "annotate", "repair", "propose" or "check"
    status: str  # "ok", "invalid" (reply failed validation), "refused" or "error"
    input_tokens: int = 0  # prompt tokens reported by the server
    output_tokens: int = 0  # completion tokens reported by the server
    cost: float = 0.0  # USD
    latency_s: float = 0.0  # wall time of this request
    text_hash: str | None = None  # hash of the annotated text, if any
    text_id: str | None = None  # caller's id of the text, if any
    error: str | None = None  # error message, API key removed
    raw: str | None = None  # reply text as received
    time: str = field(default_factory=utc_now)  # ISO 8601, UTC


class AnswerCache:
    """Teacher answers and the call log, stored through a SQLAlchemy engine.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
        Any engine; the tables are created if they are missing. Writes are serialized
        with a lock, so one instance can be shared by the annotation thread pool.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._write_lock = threading.Lock()
        metadata.create_all(engine)

    @classmethod
    def open(cls, path_or_url: str | Path) -> AnswerCache:
        """Open a cache in a SQLite file (WAL mode) or at a SQLAlchemy URL.

        A value containing ``://`` is a URL; anything else is a file path.
        """
        text = str(path_or_url)
        url = text if "://" in text else f"sqlite:///{Path(text)}"
        engine = sa.create_engine(url)
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        return cls(engine)

    def lookup(
        self,
        model: str,
        prompt_version: str,
        node_keys: Iterable[str],
        text_hashes: Sequence[str],
    ) -> dict[tuple[str, str], str]:
        """Return cached values as {(text_hash, node_key): value} for the given keys."""
        wanted_nodes = sorted(set(node_keys))
        unique_hashes = sorted(set(text_hashes))
        found: dict[tuple[str, str], str] = {}
        if not wanted_nodes or not unique_hashes:
            return found
        t = teacher_answers
        with self.engine.connect() as conn:
            for start in range(0, len(unique_hashes), _LOOKUP_CHUNK):
                chunk = unique_hashes[start : start + _LOOKUP_CHUNK]
                query = sa.select(t.c.text_hash, t.c.node_key, t.c.value).where(
                    t.c.model == model,
                    t.c.prompt_version == prompt_version,
                    t.c.node_key.in_(wanted_nodes),
                    t.c.text_hash.in_(chunk),
                )
                for text_hash, key, value in conn.execute(query):
                    found[(text_hash, key)] = value
        return found

    def record_text(
        self,
        *,
        model: str,
        prompt_version: str,
        text_hash: str,
        answers: Mapping[str, tuple[str, str]],
        calls: Sequence[CallRecord],
    ) -> None:
        """Store one text's calls and answers in a single committed transaction.

        Parameters
        ----------
        answers : mapping
            node key -> (node name, value); empty when the text failed.
        calls : sequence of CallRecord
            Every request made for this text; the last one produced `answers`.
        """
        now = utc_now()
        with self._write_lock, self.engine.begin() as conn:
            call_id = None
            for call in calls:
                result = conn.execute(teacher_calls.insert().values(**asdict(call)))
                call_id = result.inserted_primary_key[0]
            if not answers:
                return
            t = teacher_answers
            conn.execute(
                t.delete().where(
                    t.c.model == model,
                    t.c.prompt_version == prompt_version,
                    t.c.text_hash == text_hash,
                    t.c.node_key.in_(list(answers)),
                )
            )
            conn.execute(
                t.insert(),
                [
                    {
                        "model": model,
                        "prompt_version": prompt_version,
                        "node_key": key,
                        "text_hash": text_hash,
                        "node_name": name,
                        "value": value,
                        "call_id": call_id,
                        "created": now,
                    }
                    for key, (name, value) in answers.items()
                ],
            )

    def log_calls(self, calls: Sequence[CallRecord]) -> None:
        """Append calls that produced no cached answer (proposals, connection checks)."""
        if not calls:
            return
        with self._write_lock, self.engine.begin() as conn:
            conn.execute(teacher_calls.insert(), [asdict(call) for call in calls])

    def calls(self, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Return logged calls, newest first, as dicts of the `teacher_calls` columns."""
        query = sa.select(teacher_calls).order_by(teacher_calls.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def count_answers(self, *, model: str | None = None) -> int:
        """Return the number of cached (text, node) answers, optionally for one model."""
        query = sa.select(sa.func.count()).select_from(teacher_answers)
        if model is not None:
            query = query.where(teacher_answers.c.model == model)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def total_cost(self) -> float:
        """Return the USD spent over every logged call."""
        query = sa.select(sa.func.coalesce(sa.func.sum(teacher_calls.c.cost), 0.0))
        with self.engine.connect() as conn:
            return float(conn.execute(query).scalar_one())


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")  # ms; concurrent writers wait, not fail
    cursor.close()
