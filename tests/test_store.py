"""Tests of the project store on real SQLite files."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from gcp.exceptions import GraphValidationError, ProjectError
from gcp.graph import ConceptGraph
from gcp.store import DB_FILENAME, Project, latest_version, migrations, schema

REPO = Path(__file__).resolve().parents[1]
DEMO_GRAPH = REPO / "assets" / "demo" / "graph.json"
TEXTS = pd.DataFrame(
    {
        "id": [f"t{i}" for i in range(1, 7)],
        "text": [
            "A delight from start to finish.",
            "I hated every minute of it.",
            "The cast is wonderful but the plot drags.",
            "Dull, long and forgettable.",
            "A small miracle of a film.",
            "Not worth the ticket.",
        ],
        "gold_label": ["fresh", "rotten", "fresh", "rotten", "fresh", "rotten"],
        "split": ["pool", "pool", "pool", "pool", "test", "validation"],
    }
)


@pytest.fixture
def graph() -> ConceptGraph:
    return ConceptGraph.load(DEMO_GRAPH)


@pytest.fixture
def project(tmp_path: Path, graph: ConceptGraph):
    with Project.create(tmp_path / "proj", graph=graph) as project:
        project.add_texts(TEXTS)
        yield project


def teacher_row(text_id: str, node: str, value: str, **extra) -> dict:
    return {"text_id": text_id, "node": node, "value": value, "source": "teacher",
            "teacher": "openai", "model": "gpt-test", "prompt_version": "v1", **extra}


def sqlite_rows(path: Path, sql: str) -> list[tuple]:
    connection = sqlite3.connect(path)
    try:
        with connection:  # commits
            return connection.execute(sql).fetchall()
    finally:
        connection.close()


# ---------------------------------------------------------------------- create and open


def test_project_create_open_reopen(tmp_path: Path, graph: ConceptGraph) -> None:
    folder = tmp_path / "proj"
    with Project.create(folder, graph=graph, task="Classify reviews") as project:
        assert project.add_texts(TEXTS) == 6
        project.set_setting("budget", {"labels": 200, "money": 5.0})
    assert (folder / DB_FILENAME).is_file()
    assert (folder / "embeddings").is_dir()
    assert (folder / "checkpoints").is_dir()

    with Project.open(folder) as reopened:
        assert reopened.graph().task == "Classify reviews"
        assert reopened.graph().names == graph.names
        assert reopened.schema_version == latest_version()
        texts = reopened.texts()
        assert list(texts["id"]) == list(TEXTS["id"])
        assert list(texts["position"]) == [0, 1, 2, 3, 4, 5]
        assert texts["text_hash"].str.len().eq(64).all()
        assert reopened.get_setting("budget") == {"labels": 200, "money": 5.0}
        assert reopened.get_setting("missing", default=3) == 3


def test_project_create_rejects_existing(tmp_path: Path, graph: ConceptGraph) -> None:
    Project.create(tmp_path / "proj", graph=graph).close()
    with pytest.raises(ProjectError, match="a project already exists in .*proj"):
        Project.create(tmp_path / "proj", graph=graph)


def test_project_open_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="project folder not found: .*nowhere"):
        Project.open(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProjectError, match="not a project folder: project.db not found"):
        Project.open(tmp_path / "empty")


def test_project_open_foreign_database(tmp_path: Path) -> None:
    folder = tmp_path / "proj"
    folder.mkdir()
    sqlite_rows(folder / DB_FILENAME, "CREATE TABLE other (x INTEGER)")
    with pytest.raises(ProjectError, match="contains no GCP Studio project"):
        Project.open(folder)


def test_project_db_url(tmp_path: Path, graph: ConceptGraph) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    with Project.create(tmp_path / "proj", graph=graph, db_url=url) as project:
        project.add_texts(TEXTS)
    assert not (tmp_path / "proj" / DB_FILENAME).exists()
    with Project.open(tmp_path / "proj", db_url=url) as reopened:
        assert reopened.count_texts() == 6
    with pytest.raises(ProjectError, match="already contains a project"):
        Project.create(tmp_path / "other", graph=graph, db_url=url)


def test_project_sqlite_pragmas(project: Project) -> None:
    with project.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == schema.BUSY_TIMEOUT_MS


def test_project_engine_shared_with_answer_cache(project: Project) -> None:
    from gcp.teachers.cache import AnswerCache

    AnswerCache(project.engine)
    tables = set(sa.inspect(project.engine).get_table_names())
    assert {"teacher_answers", "teacher_calls", "texts", "annotations"} <= tables
    folder = project.folder
    project.close()
    with Project.open(folder) as reopened:
        assert reopened.count_texts() == 6


# ---------------------------------------------------------------------- migrations


def test_migrations_upgrade_older_schema(tmp_path: Path, graph: ConceptGraph) -> None:
    folder = tmp_path / "proj"
    with Project.create(folder, graph=graph) as project:
        project.add_texts(TEXTS)
        project.add_annotations([teacher_row("t1", "verdict", "fresh")])
    db = folder / DB_FILENAME
    # Turn the file into a version-1 project: drop what migration 2 added.
    for name, _, _ in migrations._INDEXES:
        sqlite_rows(db, f"DROP INDEX {name}")
    sqlite_rows(db, "DELETE FROM schema_version WHERE version = 2")
    assert sqlite_rows(db, "SELECT max(version) FROM schema_version") == [(1,)]

    with Project.open(folder) as reopened:
        assert reopened.schema_version == 2
        index_names = {ix["name"] for ix in sa.inspect(reopened.engine).get_indexes("annotations")}
        assert {"ix_annotations_text_node", "ix_annotations_round"} <= index_names
        assert reopened.count_texts() == 6
        assert list(reopened.annotations()["value"]) == ["fresh"]


def test_migrations_newer_version_raises(tmp_path: Path, graph: ConceptGraph) -> None:
    folder = tmp_path / "proj"
    Project.create(folder, graph=graph).close()
    newer = latest_version() + 1
    sqlite_rows(
        folder / DB_FILENAME,
        f"INSERT INTO schema_version VALUES ({newer}, 'from the future', '2030-01-01T00:00:00Z')",
    )
    with pytest.raises(
        ProjectError,
        match=f"schema version {newer}, but this version of GCP Studio reads schema versions "
        f"up to {latest_version()}",
    ):
        Project.open(folder)


def test_migrations_failed_step_rolls_back(
    tmp_path: Path, graph: ConceptGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "proj"
    Project.create(folder, graph=graph).close()

    def broken(connection: sa.Connection) -> None:
        sa.Table("half_done", sa.MetaData(), sa.Column("x", sa.Integer)).create(connection)
        connection.execute(sa.text("SELECT * FROM no_such_table"))

    steps = [*migrations.MIGRATIONS, migrations.Migration(3, "broken step", broken)]
    monkeypatch.setattr(migrations, "MIGRATIONS", steps)
    with pytest.raises(ProjectError, match=r"migration to version 3 \(broken step\) failed"):
        Project.open(folder)
    assert sqlite_rows(folder / DB_FILENAME, "SELECT max(version) FROM schema_version") == [(2,)]
    tables = sqlite_rows(folder / DB_FILENAME, "SELECT name FROM sqlite_master WHERE type='table'")
    assert ("half_done",) not in tables

    def add_note(connection: sa.Connection) -> None:
        connection.execute(sa.text("ALTER TABLE rounds ADD COLUMN note VARCHAR(200)"))

    steps[-1] = migrations.Migration(3, "add round notes", add_note)
    with Project.open(folder) as project:
        assert project.schema_version == 3
        columns = {c["name"] for c in sa.inspect(project.engine).get_columns("rounds")}
        assert "note" in columns


# ---------------------------------------------------------------------- settings


def test_settings_roundtrip_and_secrets(project: Project) -> None:
    teacher = {"provider": "openai", "model": "gpt-4o-mini", "api_key_env": "OPENAI_API_KEY",
               "max_tokens": 300}
    project.set_setting("teacher", teacher)
    project.set_setting("seed", np.int64(7))
    assert project.get_setting("teacher") == teacher
    assert project.settings()["seed"] == 7
    with pytest.raises(ProjectError, match=r"setting 'teacher.api_key' looks like a secret"):
        project.set_setting("teacher", {**teacher, "api_key": "abc"})
    with pytest.raises(ProjectError, match="setting 'note' looks like a secret"):
        project.set_setting("note", "sk-live-0123456789")
    assert project.get_setting("teacher") == teacher


# ---------------------------------------------------------------------- graph versions


def test_graph_versions_save_and_revert(project: Project, graph: ConceptGraph) -> None:
    edited = graph.set_question("tone", "What is the overall tone of the review?")
    version = project.save_graph(edited, "reword tone", user="ana")
    assert version == 2
    assert project.graph() == edited
    assert project.graph(1) == graph

    moved = edited.with_positions({"tone": (1.0, 2.0)})
    assert project.save_graph(moved, "layout") == 2  # same content: no new version
    assert project.graph().positions == {"tone": (1.0, 2.0)}

    edit_id = project.revert_graph(1, user="ana")
    assert project.graph_version == 1
    versions = project.graph_versions()
    assert list(versions["version"]) == [1, 2]
    assert list(versions["is_current"]) == [True, False]
    assert versions["parent_version"].iloc[1] == 1
    assert list(versions["message"]) == ["initial graph", "reword tone"]

    project.undo(edit_id)
    assert project.graph_version == 2
    with pytest.raises(ProjectError, match="no graph version 9"):
        project.revert_graph(9)


# ---------------------------------------------------------------------- annotations


def test_annotations_teacher_supersedes_teacher(project: Project) -> None:
    first = project.add_annotations([teacher_row("t1", "verdict", "rotten")])
    second = project.add_annotations([teacher_row("t1", "verdict", "fresh", prompt_version="v2")])
    everything = project.annotations(current_only=False)
    assert list(everything["id"]) == first + second
    assert list(everything["superseded"]) == [True, False]
    assert everything["superseded_by"].iloc[0] == second[0]
    current = project.annotations()
    assert list(current["value"]) == ["fresh"]
    assert current["prompt_version"].iloc[0] == "v2"


def test_annotations_human_precedence(project: Project, graph: ConceptGraph) -> None:
    project.add_annotations([teacher_row("t2", "verdict", "fresh")])
    project.correct_annotation("t2", "verdict", "rotten", "ana")
    late = project.add_annotations([teacher_row("t2", "verdict", "fresh", round=3)])

    ids, matrix = project.label_matrix(graph, ["t2"])
    column = graph.names.index("verdict")
    assert ids == ["t2"]
    assert matrix[0, column] == graph.value_index("verdict", "rotten")
    everything = project.annotations(current_only=False)
    assert len(everything) == 3  # nothing deleted
    assert list(everything["source"]) == ["teacher", "human", "teacher"]
    assert list(everything["superseded"]) == [True, False, True]
    late_row = everything[everything["id"] == late[0]].iloc[0]
    assert late_row["superseded_by"] == everything["id"].iloc[1]
    assert list(project.annotations(round=3, current_only=False)["id"]) == late


def test_annotations_text_annotation_objects(project: Project, graph: ConceptGraph) -> None:
    from gcp.teachers.base import TextAnnotation

    answer = TextAnnotation(
        text_id="t3", values={"tone": "positive", "verdict": "fresh"}, status="ok",
        source="recorded", teacher="recorded", model="annotations.csv", cost=0.02,
    )
    ids = project.add_annotations([answer])
    frame = project.annotations(text_ids=["t3"])
    assert len(ids) == 2
    assert set(frame["node"]) == {"tone", "verdict"}
    assert frame["cost"].sum() == pytest.approx(0.02)
    assert set(frame["source"]) == {"recorded"}
    assert project.spending() == {"labels": 1, "money": pytest.approx(0.02)}
    row_ids, matrix = project.label_matrix()
    assert row_ids == ["t3"]
    assert (matrix[0] >= 0).sum() == 2


def test_annotations_invalid_batch_stores_nothing(project: Project) -> None:
    good = teacher_row("t1", "verdict", "fresh")
    with pytest.raises(GraphValidationError, match="annotation 2 .*invalid value 'great'"):
        project.add_annotations([good, teacher_row("t1", "tone", "great")])
    with pytest.raises(ProjectError, match=r"unknown text ids \['t99'\]"):
        project.add_annotations([good, teacher_row("t99", "verdict", "fresh")])
    with pytest.raises(ProjectError, match="invalid source 'oracle'"):
        project.add_annotations([{**good, "source": "oracle"}])
    assert len(project.annotations(current_only=False)) == 0


def test_annotations_filters_and_unlabelled(project: Project) -> None:
    project.add_annotations([teacher_row("t1", "verdict", "fresh", round=1),
                             teacher_row("t5", "verdict", "fresh"),
                             teacher_row("t1", "tone", "positive", round=1)])
    assert list(project.annotations(split="test")["text_id"]) == ["t5"]
    assert list(project.annotations(node="tone")["text_id"]) == ["t1"]
    assert len(project.annotations(round=1)) == 2
    assert project.pool_ids() == ["t1", "t2", "t3", "t4"]
    assert project.unlabelled_ids() == ["t2", "t3", "t4"]
    assert project.labelled_ids() == ["t1", "t5"]


def test_label_matrix_stale_value_is_missing(project: Project, graph: ConceptGraph) -> None:
    project.add_annotations(
        [teacher_row("t1", "tone", "mixed"), teacher_row("t1", "verdict", "fresh")]
    )
    changed = graph.set_values("tone", ["upbeat", "downbeat", "mixed_feelings"])
    ids, matrix = project.label_matrix(changed, ["t1", "t2"])
    assert ids == ["t1", "t2"]
    assert matrix[0, changed.names.index("tone")] == -1
    assert matrix[0, changed.names.index("verdict")] == 0
    assert (matrix[1] == -1).all()


# ---------------------------------------------------------------------- audit and undo


def test_correct_annotation_undo(project: Project) -> None:
    [teacher_id] = project.add_annotations([teacher_row("t1", "verdict", "fresh")])
    edit = project.correct_annotation("t1", "verdict", "rotten", "ana")
    assert list(project.annotations()["value"]) == ["rotten"]

    undo_id = project.undo(edit)
    current = project.annotations()
    assert list(current["id"]) == [teacher_id]
    assert list(current["value"]) == ["fresh"]
    log = project.audit_log()
    assert list(log["action"]) == ["correct_annotation", "undo"]
    assert log["undone_by"].iloc[0] == undo_id
    assert log["undoes"].iloc[1] == edit
    assert log["before"].iloc[0]["values"] == ["fresh"]
    assert log["after"].iloc[0]["values"] == ["rotten"]
    assert log["edited_by"].tolist() == ["ana", "ana"]
    assert len(project.annotations(current_only=False)) == 2  # the correction is kept

    with pytest.raises(ProjectError, match=f"edit {edit} was already undone by edit {undo_id}"):
        project.undo(edit)
    project.undo(undo_id, user="ben")  # undoing the undo redoes the correction
    assert list(project.annotations()["value"]) == ["rotten"]
    assert project.audit_log()["edited_by"].iloc[-1] == "ben"


def test_undo_after_later_edit_raises(project: Project) -> None:
    project.add_annotations([teacher_row("t1", "verdict", "fresh")])
    first = project.correct_annotation("t1", "verdict", "rotten", "ana")
    second = project.correct_annotation("t1", "verdict", "fresh", "ben")
    with pytest.raises(ProjectError, match=f"cannot undo edit {first} .*undo the later edits"):
        project.undo(first)
    project.undo(second)
    project.undo(first)
    assert list(project.annotations()["source"]) == ["teacher"]
    with pytest.raises(ProjectError, match="no audit log entry with id 99"):
        project.undo(99)


def test_correct_annotation_rejects_bad_input(project: Project) -> None:
    with pytest.raises(ProjectError, match=r"unknown text ids \['nope'\]"):
        project.correct_annotation("nope", "verdict", "fresh", "ana")
    with pytest.raises(GraphValidationError, match="invalid value 'meh' for node 'verdict'"):
        project.correct_annotation("t1", "verdict", "meh", "ana")
    assert project.audit_log().empty


# ---------------------------------------------------------------------- rounds


def test_round_lifecycle_with_decisions(project: Project) -> None:
    number = project.create_round(strategy="gcp", batch_size=2, seed=3)
    assert number == 1
    with pytest.raises(ProjectError, match="round 1 is still 'pending'"):
        project.create_round(strategy="random", batch_size=2)
    with pytest.raises(ProjectError, match=r"texts \['t5'\] are in the 'test' split"):
        project.set_candidates(1, [{"text_id": "t5", "score": 0.9}])

    stored = project.set_candidates(1, pd.DataFrame({
        "text_id": ["t3", "t1", "t2"], "score": [0.9, 0.5, 0.1],
        "breakdown": [{"uncertainty": 0.6, "impact": 0.3}, {}, {}],
    }))
    assert stored == 3
    candidates = project.candidates(1)
    assert list(candidates["rank"]) == [1, 2, 3]
    assert candidates["breakdown"].iloc[0] == {"uncertainty": 0.6, "impact": 0.3}

    project.decide(1, ["t3", "t1"], True, "ana")
    reject = project.decide(1, ["t2"], False, "ana")
    assert project.round(1)["n_approved"] == 2
    assert project.round(1)["n_rejected"] == 1
    project.undo(reject)
    assert project.round(1)["n_pending"] == 1
    with pytest.raises(ProjectError, match=r"texts \['t4'\] are not candidates of round 1"):
        project.decide(1, ["t4"], True, "ana")
    with pytest.raises(ProjectError, match="already has 2 decided candidates"):
        project.set_candidates(1, [{"text_id": "t4", "score": 1.0}])

    project.update_round(1, status="approved")
    with pytest.raises(ProjectError, match="round 1 is 'approved'"):
        project.decide(1, ["t2"], True, "ana")
    with pytest.raises(ProjectError, match="cannot go from 'approved' to 'pending'"):
        project.update_round(1, status="pending")
    assert list(project.candidates(1, decision="approved")["text_id"]) == ["t3", "t1"]

    project.update_round(1, status="annotated", labels_used=2, money_spent=0.04)
    assert project.open_round()["number"] == 1  # a restarted session resumes this round
    done = project.update_round(1, status="done", metrics={"accuracy": np.float32(0.75)})
    assert done["metrics"] == {"accuracy": pytest.approx(0.75)}
    assert project.open_round() is None
    with pytest.raises(ProjectError, match="cannot go from 'done' to 'cancelled'"):
        project.update_round(1, status="cancelled")

    assert project.create_round(strategy="random", batch_size=2) == 2
    project.update_round(2, status="cancelled")
    rounds = project.rounds()
    assert list(rounds["status"]) == ["done", "cancelled"]
    assert rounds["money_spent"].iloc[0] == pytest.approx(0.04)
    assert rounds["labels_used"].iloc[0] == 2
    with pytest.raises(ProjectError, match="no round 7"):
        project.round(7)


def test_round_resume_after_reopen(project: Project) -> None:
    project.create_round(strategy="gcp", batch_size=3)
    project.set_candidates(1, [{"text_id": i, "score": 1.0} for i in ("t1", "t2", "t3")])
    project.decide(1, ["t1", "t2", "t3"], True, "ana")
    project.update_round(1, status="approved")
    project.add_annotations([teacher_row("t2", "verdict", "rotten", round=1)])
    folder = project.folder
    project.close()

    with Project.open(folder) as reopened:
        open_round = reopened.open_round()
        assert open_round["number"] == 1
        assert open_round["status"] == "approved"
        assert reopened.approved_unlabelled_ids(1) == ["t1", "t3"]


def test_training_runs_roundtrip(project: Project) -> None:
    checkpoint = project.checkpoints_dir / "round-1"
    run_id = project.record_training_run(
        trained_nodes=["tone", "verdict"], kind="targeted", checkpoint_path=checkpoint,
        metrics={"accuracy": 0.8}, scores={"tone": 0.12}, seconds=3.5, round=1,
    )
    runs = project.training_runs()
    assert list(runs["id"]) == [run_id]
    assert runs["checkpoint_path"].iloc[0] == str(checkpoint.resolve())
    assert runs["trained_nodes"].iloc[0] == ["tone", "verdict"]
    assert runs["graph_version"].iloc[0] == 1
    stored = sqlite_rows(project.folder / DB_FILENAME, "SELECT checkpoint_path FROM training_runs")
    assert stored == [("checkpoints/round-1",)]
    with pytest.raises(ProjectError, match="invalid training kind 'partial'"):
        project.record_training_run(trained_nodes=[], kind="partial")


# ---------------------------------------------------------------------- crash safety

WRITER = textwrap.dedent(
    """
    import sys
    from gcp.store import Project

    project = Project.open(sys.argv[1])
    ids = project.pool_ids()
    i = 0
    while True:
        row = {"text_id": ids[i % len(ids)], "node": "verdict",
               "value": ("fresh", "rotten")[i % 2], "source": "teacher"}
        [annotation_id] = project.add_annotations([row])
        print(annotation_id, flush=True)
        i += 1
    """
)


def test_kill_during_writes_loses_nothing(project: Project, tmp_path: Path) -> None:
    folder = project.folder
    project.close()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, str(script), str(folder)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env,
    )
    committed: list[int] = []
    deadline = time.monotonic() + 60
    try:
        while len(committed) < 300 and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            committed.append(int(line))
    finally:
        os.kill(process.pid, signal.SIGKILL)
        rest, errors = process.communicate(timeout=30)
    committed += [int(line) for line in rest.split()]
    assert process.returncode == -signal.SIGKILL, errors
    assert len(committed) >= 300, errors

    with Project.open(folder) as reopened:
        stored = reopened.annotations(current_only=False)
        assert set(committed) <= set(stored["id"])
        current = reopened.annotations()
        assert not current.duplicated(["text_id", "node"]).any()
        with reopened.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        reopened.add_annotations([teacher_row("t1", "tone", "positive")])  # still writable
