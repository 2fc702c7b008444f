"""Tests of reading, checking, splitting and importing text tables."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from gcp.data_import import assign_splits, import_texts, read_table, validate_table
from gcp.exceptions import DataImportError
from gcp.graph import ConceptGraph
from gcp.store import Project

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "assets" / "demo"
ROWS = pd.DataFrame(
    {
        "id": ["a1", "a2", "a3", "a4", "a5"],
        "text": [
            "A joy to watch.",
            "Two hours I will never get back.",
            "NA",
            "The score soars, the script sinks.",
            "Sharp, funny and kind.",
        ],
        "label": ["fresh", "rotten", "rotten", "rotten", "fresh"],
    }
)


@pytest.fixture
def project(tmp_path: Path):
    graph = ConceptGraph.load(DEMO / "graph.json")
    with Project.create(tmp_path / "proj", graph=graph) as project:
        yield project


def write_csv(path: Path, frame: pd.DataFrame, *, sep: str = ",") -> Path:
    frame.to_csv(path, index=False, sep=sep)
    return path


def import_csv(project: Project, path: Path, **options) -> object:
    return import_texts(project, path, text_column="text", id_column="id",
                        label_column="label", **options)


# ---------------------------------------------------------------------- formats


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_read_table_formats(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"reviews{suffix}"
    if suffix == ".csv":
        write_csv(path, ROWS)
    elif suffix == ".tsv":
        write_csv(path, ROWS, sep="\t")
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in ROWS.to_dict("records")) + "\n")
    else:
        ROWS.to_parquet(path)
    table = read_table(path, text_column="text", id_column="id", label_column="label")
    assert list(table.columns) == ["row", "id", "text", "gold_label"]
    assert list(table["row"]) == [1, 2, 3, 4, 5]
    assert list(table["id"]) == list(ROWS["id"])
    assert list(table["text"]) == list(ROWS["text"])  # "NA" stays a text
    assert list(table["gold_label"]) == list(ROWS["label"])


def test_read_table_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "reviews.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(DataImportError, match=r"unsupported file type '.xlsx'.*'.csv'"):
        read_table(path, text_column="text")
    with pytest.raises(DataImportError, match="file not found: .*missing.csv"):
        read_table(tmp_path / "missing.csv", text_column="text")


def test_read_table_invalid_jsonl_lines(tmp_path: Path) -> None:
    path = tmp_path / "reviews.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "broken"\n\n[1, 2]\n')
    with pytest.raises(DataImportError, match=r"2 line\(s\) are not JSON objects:\n- line 2: "
                       r"invalid JSON .*\n- line 4: expected a JSON object, got list"):
        read_table(path, text_column="text")


def test_read_table_missing_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "reviews.csv", ROWS)
    with pytest.raises(
        DataImportError,
        match=r"'reviews.csv' has no column 'body', 'gold'; available columns: "
        r"\['id', 'text', 'label'\]",
    ):
        read_table(path, text_column="body", label_column="gold")


# ---------------------------------------------------------------------- row problems


def test_import_empty_texts(project: Project, tmp_path: Path) -> None:
    rows = ROWS.assign(text=["A joy.", "", "Fine.", "   \t ", "Great."])
    with pytest.raises(DataImportError, match=r"empty or whitespace-only text: 2 rows: 2, 4\b"):
        import_csv(project, write_csv(tmp_path / "reviews.csv", rows))


def test_import_duplicate_ids(project: Project, tmp_path: Path) -> None:
    rows = ROWS.assign(id=["a1", "a2", "a1", "a4", "a2"])
    with pytest.raises(
        DataImportError,
        match=r"duplicate id: 2 rows: 3 \('a1', same as row 1\), 5 \('a2', same as row 2\)",
    ):
        import_csv(project, write_csv(tmp_path / "reviews.csv", rows))


def test_import_duplicate_texts(project: Project, tmp_path: Path) -> None:
    rows = ROWS.assign(text=["Same.", "Other.", "Same.", "More.", "Same."])
    with pytest.raises(
        DataImportError, match=r"duplicate text: 2 rows: 3 \(same as row 1\), 5 \(same as row 1\)"
    ):
        import_csv(project, write_csv(tmp_path / "reviews.csv", rows))


def test_import_unknown_labels(project: Project, tmp_path: Path) -> None:
    rows = ROWS.assign(label=["fresh", "positive", "", "Rotten", "fresh"])
    with pytest.raises(
        DataImportError,
        match=r"label not among the task's labels \['fresh', 'rotten'\]: 2 rows: "
        r"2 \('positive'\), 4 \('Rotten'\)",
    ):
        import_csv(project, write_csv(tmp_path / "reviews.csv", rows))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_import_invalid_encoding(project: Project, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"reviews{suffix}"
    if suffix == ".csv":
        content = "id,text,label\na1,Fine.,fresh\na2,Caf\xe9 society,rotten\na3,Good.,fresh\n"
    else:
        content = "\n".join([
            '{"id": "a1", "text": "Fine.", "label": "fresh"}',
            '{"id": "a2", "text": "Caf\xe9 society", "label": "rotten"}',
            '{"id": "a3", "text": "Good.", "label": "fresh"}',
        ])
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(DataImportError, match=r"invalid UTF-8 bytes .*: 1 row: 2 \(in text\)"):
        import_csv(project, path)
    assert project.count_texts() == 0


def test_import_reports_every_problem_at_once(project: Project, tmp_path: Path) -> None:
    rows = pd.DataFrame({
        "id": ["x1", "x1", "x3", "x4"],
        "text": ["Good.", "Bad.", "", "Good."],
        "label": ["fresh", "meh", "rotten", "fresh"],
    })
    with pytest.raises(DataImportError) as caught:
        import_csv(project, write_csv(tmp_path / "reviews.csv", rows))
    message = str(caught.value)
    assert message.startswith("cannot import 'reviews.csv': found 4 kinds of problem in 4 rows")
    assert "rows are numbered from 1 at the first data row" in message
    assert "- empty or whitespace-only text: 1 row: 3" in message
    assert "- duplicate id: 1 row: 2 ('x1', same as row 1)" in message
    assert "- duplicate text: 1 row: 4 (same as row 1)" in message
    assert "- label not among the task's labels ['fresh', 'rotten']: 1 row: 2 ('meh')" in message


def test_import_caps_listed_rows(project: Project, tmp_path: Path) -> None:
    rows = pd.DataFrame({"id": [f"r{i}" for i in range(15)], "text": [""] * 15})
    with pytest.raises(
        DataImportError,
        match=r"empty or whitespace-only text: 15 rows: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 5 more",
    ):
        import_texts(project, write_csv(tmp_path / "reviews.csv", rows), text_column="text",
                     id_column="id")


def test_validate_table_counts() -> None:
    table = pd.DataFrame({"id": ["a", "", "a"], "text": ["x", "y", "z"],
                          "gold_label": [None, "fresh", "bad"]})
    report = validate_table(table, labels=("fresh", "rotten"))
    assert not report.ok
    assert report.counts == {"empty_id": 1, "duplicate_id": 1, "unknown_label": 1}
    assert validate_table(table.iloc[:1]).ok


# ---------------------------------------------------------------------- all or nothing


def test_import_failure_changes_nothing(project: Project, tmp_path: Path) -> None:
    report = import_csv(project, write_csv(tmp_path / "first.csv", ROWS))
    assert report.n_imported == 5
    before = project.texts()

    more = pd.DataFrame({"id": ["b1", "b2", "a3"], "text": ["New one.", "A joy to watch.", "x"],
                         "label": ["fresh", "fresh", "rotten"]})
    with pytest.raises(DataImportError) as caught:
        import_csv(project, write_csv(tmp_path / "second.csv", more))
    assert "text already in the project: 1 row: 2" in str(caught.value)
    assert "id already in the project: 1 row: 3 ('a3')" in str(caught.value)
    pd.testing.assert_frame_equal(project.texts(), before)


def test_import_appends_new_texts(project: Project, tmp_path: Path) -> None:
    import_csv(project, write_csv(tmp_path / "first.csv", ROWS))
    more = pd.DataFrame({"id": ["b1", "b2"], "text": ["New one.", "Another."],
                         "label": ["fresh", "rotten"]})
    report = import_csv(project, write_csv(tmp_path / "second.csv", more), test_size=0.0)
    assert report.n_imported == 2
    assert report.n_pool == 2
    texts = project.texts()
    assert list(texts["id"]) == [*ROWS["id"], "b1", "b2"]
    assert list(texts["position"]) == list(range(7))


def test_import_generated_ids(project: Project) -> None:
    frame = pd.DataFrame({"body": ["One.", "Two.", "Three."]})
    report = import_texts(project, frame, text_column="body", test_size=0.0)
    assert report.id_source == "generated"
    assert report.n_labelled == 0
    import_texts(project, pd.DataFrame({"body": ["Four."]}), text_column="body", test_size=0.0)
    assert list(project.texts()["id"]) == ["row-00001", "row-00002", "row-00003", "row-00004"]


# ---------------------------------------------------------------------- splits


def test_assign_splits_stratified_and_fixed() -> None:
    labels = ["fresh"] * 70 + ["rotten"] * 30
    splits = assign_splits(labels, test_size=0.2, seed=0)
    test = [label for label, split in zip(labels, splits) if split == "test"]
    assert len(test) == 20
    assert test.count("fresh") == 14
    assert test.count("rotten") == 6
    assert assign_splits(labels, test_size=0.2, seed=0) == splits
    assert assign_splits(labels, test_size=0.2, seed=1) != splits
    three = assign_splits(labels, test_size=0.2, validation_size=0.1, seed=0)
    assert three.count("validation") == 10
    assert three.count("test") == 20
    with pytest.raises(DataImportError, match="invalid test_size=0.7 and validation_size=0.5"):
        assign_splits(labels, test_size=0.7, validation_size=0.5)


def test_import_split_excluded_from_pool(project: Project, tmp_path: Path) -> None:
    frame = pd.DataFrame({
        "id": [f"r{i:03d}" for i in range(50)],
        "text": [f"Review number {i}." for i in range(50)],
        "label": ["fresh"] * 30 + ["rotten"] * 20,
    })
    report = import_csv(project, write_csv(tmp_path / "reviews.csv", frame))
    assert (report.n_pool, report.n_test) == (40, 10)
    test_ids = set(project.texts("test")["id"])
    assert project.texts("test")["gold_label"].value_counts().to_dict() == {"fresh": 6, "rotten": 4}
    assert test_ids.isdisjoint(project.pool_ids())
    assert test_ids.isdisjoint(project.unlabelled_ids())
    assert len(project.pool_ids()) == 40


def test_import_demo_annotations(project: Project) -> None:
    report = import_texts(project, DEMO / "annotations.csv", text_column="text", id_column="id",
                          label_column="gold_label")
    assert report.n_imported == 2400
    assert (report.n_pool, report.n_test, report.n_labelled) == (1920, 480, 2400)
    test_labels = project.texts("test")["gold_label"].value_counts().to_dict()
    assert test_labels == {"fresh": 286, "rotten": 194}  # 1,428 / 972 overall
    assert project.count_texts() == 2400
