import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fake_openai import FakeOpenAI
from gcp.exceptions import BudgetExceededError, EmptyPoolError, ProjectError
from gcp.loop import Studio

torch.set_num_threads(2)
REPO = Path(__file__).resolve().parent.parent


def copy_project(template: Path, target: Path) -> Path:
    shutil.copytree(template, target)
    return target


def test_seed_round_needs_no_student(demo_copy):
    with Studio.open(demo_copy) as studio:
        with pytest.raises(Exception, match="train"):
            studio.propose_round("entropy", 10)
        number = studio.propose_round("random", 10, seed=3)
        frame = studio.candidates(number)
    assert len(frame) == 10
    assert frame["text"].notna().all()
    assert set(frame["decision"]) == {"pending"}


def test_round_steps_by_hand(demo_copy):
    with Studio.open(demo_copy) as studio:
        number = studio.propose_round("random", 12, seed=0)
        with pytest.raises(ProjectError, match="still 'pending'"):
            studio.propose_round("random", 5)
        with pytest.raises(ProjectError, match="no approved candidates"):
            studio.annotate(number)
        ids = list(studio.candidates(number)["text_id"])
        studio.decide(number, ids[:2], approved=False)
        studio.decide(number, ids[2:], approved=True)
        summary = studio.annotate(number)
        assert summary["answered"] == 10
        assert studio.project.round(number)["status"] == "annotated"
        assert sorted(studio.labelled_pool_ids()) == sorted(ids[2:])
        result = studio.train()
        assert result["kind"] == "full"
        assert result["closed_round"] == number
        assert studio.project.round(number)["status"] == "done"
        assert result["metrics"]["accuracy"] is not None


def test_evaluation_texts_never_acquired(demo_copy):
    with Studio.open(demo_copy) as studio:
        test_ids = set(studio.project.texts("test")["id"])
        studio.annotate_evaluation_split()
        number = studio.propose_round("random", 200, seed=1)
        chosen = set(studio.candidates(number)["text_id"])
    assert len(test_ids) == 480
    assert not chosen & test_ids


def test_label_budget_stops_acquisition(demo_copy):
    with Studio.open(demo_copy) as studio:
        studio.set_budget(labels=15)
        summaries = studio.run(3, 10, "random", seed=0)
        assert studio.status()["labels"] == 15
        assert summaries[-1].stopped is not None
        with pytest.raises(BudgetExceededError, match="label budget of 15"):
            studio.propose_round("random", 5)


def test_empty_pool_raises(tmp_path):
    graph = REPO / "assets" / "demo" / "graph.json"
    with Studio.create(tmp_path / "empty", graph=graph) as studio:
        with pytest.raises(EmptyPoolError):
            studio.propose_round("random", 5)


@pytest.mark.slow
def test_demo_loop_improves_and_repeats(demo_template, tmp_path):
    results = []
    for copy in ("a", "b"):
        folder = copy_project(demo_template, tmp_path / copy)
        with Studio.open(folder) as studio:
            summaries = studio.run(3, 100, "gcp", seed=0)
        results.append([(s.labels, s.accuracy, s.teacher_agreement) for s in summaries])
    first, second = results
    assert len(first) == 4  # the seed round, then three rounds
    assert [labels for labels, _, _ in first] == [100, 200, 300, 400]
    assert first[-1][1] > first[0][1]
    assert first == second


def annotated_count(folder: Path) -> int:
    with sqlite3.connect(folder / "project.db") as db:
        return db.execute(
            "SELECT COUNT(*) FROM annotations WHERE node = 'verdict' AND round IS NOT NULL"
        ).fetchone()[0]


@pytest.mark.slow
def test_killed_run_resumes_without_repeating_answers(demo_copy):
    with FakeOpenAI(latency_s=0.15) as server:
        with Studio.open(demo_copy) as studio:
            studio.set_teacher({"kind": "openai", "model": "fake-model", "base_url": server.url,
                                "concurrency": 1})
        command = [sys.executable, "-m", "gcp", "run", str(demo_copy), "--rounds", "0",
                   "--batch-size", "40", "--strategy", "random", "--auto-approve", "--quiet"]
        env = {**os.environ, "OPENAI_API_KEY": "test-key"}
        child = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while annotated_count(demo_copy) < 10 and time.monotonic() < deadline:
            assert child.poll() is None, child.stderr.read().decode()
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        kept = annotated_count(demo_copy)
        assert 10 <= kept < 40
        requests_before = server.count
        answered_before = {r.first_user_message for r in server.requests if r.delivered}

        finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, timeout=300)
        assert finished.returncode == 0, finished.stderr.decode()

        resent = [r.first_user_message for r in server.requests[requests_before:]]
    assert annotated_count(demo_copy) == 40
    # A reply can be fully sent a moment before the kill and never committed: at most one
    # text, the one in flight, may be paid again. Every other answer must come from the store.
    assert len(answered_before & set(resent)) <= 1, "answers from before the kill were paid again"
    assert len(resent) <= 40 - kept + 1
    assert len(resent) == len(set(resent))
    with Studio.open(demo_copy) as studio:
        rounds = studio.project.rounds()
        frame = studio.project.annotations(current_only=False)
    assert list(rounds["status"]) == ["done"]
    per_node = frame.groupby(["text_id", "node"]).size()
    assert per_node.max() == 1, "an answer was stored twice"
