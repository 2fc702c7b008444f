"""Tests of gcp.diagnostics on the tiny literal graph with a briefly trained student."""

import numpy as np
import pytest
import torch

from gcp.diagnostics import (
    confusion_matrix,
    error_attribution,
    node_accuracy,
    normalized_entropy,
    uncertainty_matrix,
)
from gcp.exceptions import StudentError
from gcp.student import GCPStudent, LabelOnlyStudent
from gcp.training import counterfactual_impact, fit_student
from test_student import DIM, tiny_graph
from test_training import FAST, SMALL, synthetic_data

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def data():
    """Held-out texts, so the briefly trained student makes some errors on them."""
    return synthetic_data(160, seed=5)


@pytest.fixture(scope="module")
def trained():
    X, Y = synthetic_data(120, seed=4)
    student = GCPStudent(tiny_graph(), DIM, SMALL, seed=0)
    fit_student(student, X, Y, config=FAST)
    return student


def test_node_accuracy_matches_predictions(trained, data):
    X, Y = data
    Y = Y.copy()
    Y[:40, 4] = -1  # b is annotated on 120 of 160 texts
    table = node_accuracy(trained, X, Y)
    assert list(table["node"]) == tiny_graph().names
    row = table.set_index("node").loc["b"]
    predicted = trained.predict(X)["b"]
    assert row["n_labelled"] == 120
    assert row["coverage"] == pytest.approx(0.75)
    assert row["accuracy"] == pytest.approx((predicted[40:] == Y[40:, 4]).mean())
    assert row["majority"] == pytest.approx(np.bincount(Y[40:, 4]).max() / 120)
    assert row["n_values"] == 4


def test_node_accuracy_of_label_only_student(data):
    X, Y = data
    table = node_accuracy(LabelOnlyStudent(tiny_graph(), DIM, SMALL), X, Y)
    assert list(table["node"]) == ["out"]


def test_confusion_matrix_counts_labelled_texts(trained, data):
    X, Y = data
    Y = Y.copy()
    Y[:10, 2] = -1
    matrix = confusion_matrix(trained, X, Y, "c")
    assert list(matrix.index) == ["no", "yes"]
    assert list(matrix.columns) == ["no", "yes"]
    assert matrix.to_numpy().sum() == 150
    accuracy = node_accuracy(trained, X, Y).set_index("node").loc["c", "accuracy"]
    assert np.trace(matrix.to_numpy()) / 150 == pytest.approx(accuracy)
    assert matrix.loc["yes"].sum() == (Y[10:, 2] == 1).sum()


def test_confusion_matrix_rejects_missing_node(data):
    X, Y = data
    with pytest.raises(StudentError, match="does not predict node 'c'"):
        confusion_matrix(LabelOnlyStudent(tiny_graph(), DIM, SMALL), X, Y, "c")


def test_normalized_entropy_bounds():
    values = normalized_entropy(np.array([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0.0, 0.0]]))
    np.testing.assert_allclose(values, [0.0, 1.0, 0.5], atol=1e-6)


def test_uncertainty_matrix_shape_and_range(trained, data):
    X, _ = data
    ids = [f"t{i}" for i in range(len(X))]
    frame = uncertainty_matrix(trained, X, ids=ids)
    assert frame.shape == (len(X), 5)
    assert list(frame.columns) == tiny_graph().names
    assert list(frame.index[:2]) == ["t0", "t1"]
    assert ((frame >= 0) & (frame <= 1 + 1e-9)).all().all()
    probs = trained.predict_proba(X)["b"]
    np.testing.assert_allclose(frame["b"].to_numpy(), normalized_entropy(probs), rtol=1e-6)


def test_uncertainty_matrix_with_mc_dropout(trained, data):
    X, _ = data
    plain = uncertainty_matrix(trained, X)
    sampled = uncertainty_matrix(trained, X, n_samples=8, seed=1)
    assert sampled.shape == plain.shape
    assert not np.allclose(sampled.to_numpy(), plain.to_numpy())
    assert sampled.equals(uncertainty_matrix(trained, X, n_samples=8, seed=1))


def test_error_attribution_lists_fixing_interventions(trained, data):
    X, Y = data
    result = error_attribution(trained, X, Y)
    predicted = trained.predict(X)["out"]
    errors = np.flatnonzero(predicted != Y[:, 0])
    assert result.target == "teacher"
    assert result.n_errors > 0
    assert result.n_texts == len(X)
    assert result.n_errors == len(errors) == len(result.per_text)
    assert list(result.per_text["id"]) == list(errors)
    labels = tiny_graph().labels
    for row, text in zip(errors, result.per_text.itertuples()):
        for name in ("d", "c", "a", "b"):
            column = tiny_graph().names.index(name)
            fixed = trained.intervene_proba(X[row:row + 1], {name: int(Y[row, column])})["out"].argmax() == Y[row, 0]
            assert (name in text.fixed_by) == bool(fixed), (row, name)
        assert text.target == labels[Y[row, 0]]
    per_node = result.per_node.set_index("node")
    counts = {name: sum(name in fixed for fixed in result.per_text["fixed_by"]) for name in ("d", "c", "a", "b")}
    for name, count in counts.items():
        assert per_node.loc[name, "errors_fixed"] == count
        assert per_node.loc[name, "share_fixed"] == pytest.approx(count / len(errors))
    assert list(result.per_node["share_fixed"]) == sorted(result.per_node["share_fixed"], reverse=True)


def test_error_attribution_delta_matches_impact(trained, data):
    X, Y = data
    result = error_attribution(trained, X, Y)
    errors = np.asarray(result.per_text["id"], dtype=int)
    impact = counterfactual_impact(trained, X[errors], Y[errors])
    for name, delta in impact.items():
        assert result.per_node.set_index("node").loc[name, "mean_delta"] == pytest.approx(delta, rel=1e-5, abs=1e-6)


def test_error_attribution_against_gold(trained, data):
    X, Y = data
    gold = [tiny_graph().labels[v] for v in Y[:, 0]]
    gold[0] = None
    gold[1] = "pos" if gold[1] != "pos" else "neg"
    result = error_attribution(trained, X, Y, gold=gold, ids=[f"t{i}" for i in range(len(X))])
    assert result.target == "gold"
    assert result.n_texts == len(X) - 1
    labels = tiny_graph().labels
    predicted = trained.predict(X)["out"]
    expected = [f"t{i}" for i in range(1, len(X)) if predicted[i] != labels.index(gold[i])]
    assert list(result.per_text["id"]) == expected
    assert "t1" in expected or predicted[1] == labels.index(gold[1])


def test_error_attribution_rejects_unknown_gold_label(trained, data):
    X, Y = data
    gold = ["pos"] * len(X)
    gold[5] = "great"
    with pytest.raises(StudentError, match=r"gold label 'great' at row 5 is not one of the task labels \['neg', 'neu', 'pos'\]"):
        error_attribution(trained, X, Y, gold=gold)


def test_error_attribution_rejects_label_only(data):
    X, Y = data
    with pytest.raises(StudentError, match="error attribution needs concept nodes"):
        error_attribution(LabelOnlyStudent(tiny_graph(), DIM, SMALL), X, Y)
