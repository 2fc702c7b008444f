"""Train the student on the recorded movie-review annotations and check it against gold labels.

Uses the real all-MiniLM-L6-v2 embeddings of the 2,400 demo texts (the `demo_embeddings`
fixture) and a fixed 20 % test split. Majority class on gold labels is "fresh" (59.5 %).
"""

import copy

import numpy as np
import pytest
import torch

from gcp.diagnostics import error_attribution, node_accuracy
from gcp.graph import annotations_to_matrix
from gcp.student import GCPStudent
from gcp.training import fit_student, targeted_retrain

torch.set_num_threads(2)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def split(demo_graph, demo_frame, demo_embeddings):
    Y = annotations_to_matrix(demo_graph, demo_frame[demo_graph.names].to_dict("records"))
    gold = np.array([demo_graph.labels.index(v) for v in demo_frame["gold_label"]])
    order = np.random.default_rng(0).permutation(len(demo_frame))
    test, train = order[: len(order) // 5], order[len(order) // 5:]
    return demo_embeddings, Y, gold, train, test


@pytest.fixture(scope="module")
def trained(demo_graph, split):
    X, Y, _, train, _ = split
    student = GCPStudent(demo_graph, X.shape[1], seed=0)
    result = fit_student(student, X[train], Y[train])
    return student, result


def test_rt_student_beats_majority_on_gold(demo_graph, split, trained):
    X, _, gold, _, test = split
    student, result = trained
    majority = np.bincount(gold[test]).max() / len(test)
    accuracy = (student.predict(X[test])[demo_graph.output] == gold[test]).mean()
    assert 0.55 < majority < 0.65
    assert accuracy >= 0.70, f"gold accuracy {accuracy:.3f}, majority {majority:.3f}"
    assert result.stopped_early
    assert result.seconds < 60


def test_rt_concepts_beat_their_majority(demo_graph, split, trained):
    X, Y, _, _, test = split
    student, _ = trained
    table = node_accuracy(student, X[test], Y[test]).set_index("node")
    for name in ("positive_evidence", "negative_evidence", "tone"):
        assert table.loc[name, "accuracy"] > table.loc[name, "majority"] + 0.05, name


def test_rt_teacher_concepts_fix_output(demo_graph, split, trained):
    X, Y, _, _, test = split
    student, _ = trained
    columns = {name: j for j, name in enumerate(demo_graph.names)}
    teacher = Y[test, columns[demo_graph.output]]
    plain = (student.predict(X[test])[demo_graph.output] == teacher).mean()
    forced = student.intervene_proba(
        X[test], {"tone": Y[test, columns["tone"]], "ironic": Y[test, columns["ironic"]]}
    )[demo_graph.output].argmax(axis=1)
    assert (forced == teacher).mean() > plain + 0.1
    attribution = error_attribution(student, X[test], Y[test])
    top = attribution.per_node.iloc[0]
    assert top["node"] in {"tone", "positive_evidence", "negative_evidence"}
    assert top["share_fixed"] > 0.3


def test_rt_targeted_retrain_keeps_other_modules(demo_graph, split, trained):
    X, Y, _, train, _ = split
    student = copy.deepcopy(trained[0])
    before = {name: p.detach().clone() for name, p in student.named_parameters()}
    result = targeted_retrain(student, X[train[:600]], Y[train[:600]], top_k=2)
    chosen = {f"nodes.{demo_graph.names.index(n)}." for n in result.chosen}
    for key, value in student.named_parameters():
        if not any(key.startswith(prefix) for prefix in chosen):
            assert torch.equal(value, before[key]), key
    assert "verdict" not in result.chosen
