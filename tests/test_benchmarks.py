"""Every benchmark suite runs in quick mode and writes well-formed JSON (nothing about speed)."""

import json
import os

import pytest

from benchmarks import SUITES
from benchmarks.__main__ import main
from benchmarks.tables import _paired_table, _pct

EXPECTED_KEYS = {
    "efficiency": {"budgets", "datasets"},
    "retrain": {"summary", "raw"},
    "speed": {"inference", "acquisition"},
    "teacher": {"latency_s", "runs"},
    "app": {"median_seconds", "first_visit_seconds"},
    "cascade": {"price", "students", "teacher_accuracy"},
}


@pytest.mark.parametrize("suite", SUITES)
def test_benchmarks_suite_quick_writes_json(suite, tmp_path, capsys):
    if suite == "app" and not os.path.exists("/usr/bin/chromium"):
        pytest.skip("the app suite needs the system chromium")
    assert main([suite, "--quick", "--out", str(tmp_path)]) == 0
    path = tmp_path / f"{suite}.json"
    assert capsys.readouterr().out.strip() == str(path)
    payload = json.loads(path.read_text())
    assert payload["suite"] == suite
    assert payload["quick"] is True
    assert len(payload["load_before"]) == 3
    assert payload["machine"]["cores"] >= 1
    assert EXPECTED_KEYS[suite] <= set(payload["results"])


def test_benchmarks_efficiency_quick_curves_cover_budgets(tmp_path):
    main(["efficiency", "--quick", "--out", str(tmp_path), "--datasets", "spam"])
    results = json.loads((tmp_path / "efficiency-spam.json").read_text())["results"]
    spam = results["datasets"]["spam"]
    for name, rows in spam["summary"].items():
        assert [r["labels"] for r in rows] == results["budgets"], name
        assert all(0.0 <= r["accuracy"]["mean"] <= 1.0 for r in rows)
    assert spam["ceiling"]["teacher"] == 1.0  # the rule teacher takes the output label from gold


def test_benchmarks_unknown_suite_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_benchmarks_finetune_quick_pairs_curves(tmp_path):
    main(["efficiency", "--quick", "--finetune-only", "--out", str(tmp_path), "--datasets", "demo"])
    results = json.loads((tmp_path / "finetune-demo-top6.json").read_text())["results"]
    tuned = results["datasets"]["demo"]["finetune"]
    assert set(tuned["summary"]) == {"gcp", "label_only"}
    for rows in tuned["summary"].values():
        assert [r["labels"] for r in rows] == results["budgets"]
        for r in rows:
            assert 0.0 <= r["frozen_accuracy"]["mean"] <= 1.0
            assert 0.0 <= r["accuracy"]["mean"] <= 1.0
            assert r["gain"]["mean"] == pytest.approx(r["accuracy"]["mean"] - r["frozen_accuracy"]["mean"])


def test_tables_percent_omits_interval_for_one_seed():
    assert _pct({"mean": 0.5, "ci95": 0.0, "n": 1}) == "50.0"
    assert _pct({"mean": 0.5, "ci95": 0.02, "n": 3}) == "50.0 ± 2.0"
    assert _pct({"mean": 0.012, "ci95": 0.01, "n": 3}, "+") == "+1.2 ± 1.0"


def test_tables_paired_differences_use_shared_seeds():
    def run(*accuracies):
        return [{"accuracy": a} for a in accuracies]

    entry = {"raw": {
        "gcp+random": [run(0.6, 0.7), run(0.6, 0.8)],
        "label_only+random": [run(0.5, 0.7), run(0.5, 0.6)],
        "gcp+gcp": [run(0.6, 0.75), run(0.6, 0.85)],
        "gcp+gcp +diversity": [run(0.6, 0.65)],
    }}
    rows = _paired_table("demo", entry, [50, 100])
    assert "| gcp+random - label_only+random | 2 | +10.0 ± 0.0 | +10.0 ± 127.1 |" in rows
    assert "| gcp+gcp +diversity - gcp+gcp | 1 | +0.0 | -10.0 |" in rows
