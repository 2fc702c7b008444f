import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from gcp.cli import main

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "assets" / "demo"


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_graph_validate_exit_codes(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "graph", "validate", DEMO / "graph.json")
    assert code == 0
    assert "14 nodes" in out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({
        "output": "b",
        "nodes": [{"name": "a", "question": "A?", "values": ["no", "yes"]},
                  {"name": "b", "question": "B?", "values": ["no", "yes"]}],
        "edges": [["a", "b"], ["b", "a"]],
    }))
    code, _, err = run_cli(capsys, "graph", "validate", bad)
    assert code == 1
    assert err.startswith("error: the graph has a cycle")
    assert len(err.strip().splitlines()) == 1


def test_init_reports_bad_data(capsys, tmp_path):
    data = tmp_path / "data.csv"
    pd.DataFrame({"id": ["a", "a"], "text": ["fine", " "]}).to_csv(data, index=False)
    code, _, err = run_cli(capsys, "init", tmp_path / "p", "--data", data, "--text-column",
                           "text", "--id-column", "id", "--graph", DEMO / "graph.json")
    assert code == 1
    assert "nothing was imported" in err
    assert "duplicate id" in err
    assert "empty" in err
    assert not (tmp_path / "p").exists()


def test_missing_column_names_available_ones(capsys, tmp_path):
    code, _, err = run_cli(capsys, "init", tmp_path / "p", "--data", DEMO / "annotations.csv",
                           "--text-column", "body", "--graph", DEMO / "graph.json")
    assert code == 1
    assert "body" in err


def test_step_by_step_commands(capsys, demo_copy, tmp_path):
    code, out, _ = run_cli(capsys, "acquire", demo_copy, "--strategy", "random",
                           "--batch-size", "30", "--json")
    assert code == 0
    proposal = json.loads(out)
    assert proposal["round"] == 1
    assert len(proposal["candidates"]) == 30

    ids = [c["text_id"] for c in proposal["candidates"]]
    assert run_cli(capsys, "approve", demo_copy, "--ids", *ids[:25])[0] == 0
    assert run_cli(capsys, "approve", demo_copy, "--reject", *ids[25:])[0] == 0
    code, out, _ = run_cli(capsys, "annotate", demo_copy, "--json")
    assert code == 0
    assert json.loads(out)["answered"] == 25

    code, out, _ = run_cli(capsys, "train", demo_copy, "--json")
    assert code == 0
    assert json.loads(out)["kind"] == "full"
    code, out, _ = run_cli(capsys, "train", demo_copy, "--targeted", "--top-k", "1", "--json")
    assert code == 0
    targeted = json.loads(out)
    assert targeted["kind"] == "targeted"
    assert len(targeted["trained_nodes"]) == 1

    code, out, _ = run_cli(capsys, "evaluate", demo_copy, "--json")
    metrics = json.loads(out)
    assert code == 0
    assert {"accuracy", "teacher_agreement", "labels", "cost"} <= set(metrics)
    assert metrics["labels"] == 25
    assert 0.0 <= metrics["accuracy"] <= 1.0

    code, out, _ = run_cli(capsys, "diagnose", demo_copy, "--json")
    report = json.loads(out)
    assert code == 0
    assert len(report["node_accuracy"]) == 14
    assert report["target"] == "gold"

    bundle = tmp_path / "bundle"
    assert run_cli(capsys, "export", demo_copy, "--out", bundle)[0] == 0
    texts = tmp_path / "in.csv"
    pd.DataFrame({"id": ["rt-11970", "x1"],
                  "text": ["I hated every minute of it.", "A warm, funny, moving film."]}
                 ).to_csv(texts, index=False)
    predictions = tmp_path / "out.csv"
    code, _, err = run_cli(capsys, "predict", bundle, "--input", texts, "--text-column", "text",
                           "--id-column", "id", "--output", predictions,
                           "--fallback-threshold", "0.0")
    assert code == 0, err
    frame = pd.read_csv(predictions)
    assert list(frame.columns[:4]) == ["id", "prediction", "probability", "answered_by"]
    assert list(frame["id"]) == ["rt-11970", "x1"]
    assert set(frame["prediction"]) <= {"fresh", "rotten"}
    node_names = [n["name"] for n in json.loads((DEMO / "graph.json").read_text())["nodes"]]
    assert sorted(frame.columns[4:]) == sorted(node_names)


def test_predict_fallback_sends_unsure_rows_to_teacher(capsys, demo_copy, tmp_path):
    assert run_cli(capsys, "run", demo_copy, "--rounds", "0", "--batch-size", "20",
                   "--strategy", "random", "--auto-approve", "--quiet")[0] == 0
    bundle = tmp_path / "bundle"
    assert run_cli(capsys, "export", demo_copy, "--out", bundle)[0] == 0
    source = pd.read_csv(DEMO / "annotations.csv").head(6)
    texts = tmp_path / "in.csv"
    source[["id", "text"]].to_csv(texts, index=False)
    plain = tmp_path / "plain.csv"
    assert run_cli(capsys, "predict", bundle, "--input", texts, "--text-column", "text",
                   "--id-column", "id", "--output", plain)[0] == 0
    student = pd.read_csv(plain)
    assert set(student["answered_by"]) == {"student"}
    threshold = float(student["probability"].median())
    unsure = student["probability"] < threshold
    assert unsure.any()

    predictions = tmp_path / "out.csv"
    code, _, err = run_cli(capsys, "predict", bundle, "--input", texts, "--text-column", "text",
                           "--id-column", "id", "--output", predictions,
                           "--fallback-threshold", str(threshold))
    assert code == 0, err
    frame = pd.read_csv(predictions)
    assert list(frame["answered_by"]) == ["teacher" if u else "student" for u in unsure]
    teacher_rows = frame[unsure.to_numpy()]
    assert list(teacher_rows["prediction"]) == list(source["verdict"][unsure.to_numpy()])
    assert (teacher_rows["probability"] == 1.0).all()


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "gcp", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("init", "teacher", "acquire", "approve", "annotate", "train", "run",
                    "evaluate", "diagnose", "export", "predict"):
        assert command in result.stdout


def test_errors_exit_nonzero_with_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "evaluate", tmp_path / "nowhere")
    assert code == 1
    assert err.startswith("error: ")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("flag", ["--all", "--ids"])
def test_approve_without_round_fails(capsys, demo_copy, flag):
    argv = ["approve", demo_copy, flag] + (["x"] if flag == "--ids" else [])
    code, _, err = run_cli(capsys, *argv)
    assert code == 1
    assert "no round is open" in err
