"""Tests of gcp.training on the tiny literal graph with synthetic embeddings and labels."""

import numpy as np
import pytest
import torch

from gcp.exceptions import GraphValidationError, StudentError
from gcp.graph import ConceptNode, diff
from gcp.student import GCPStudent, LabelOnlyStudent, StudentConfig
from gcp.objective import evaluate, joint_loss
from gcp.training import TrainConfig, counterfactual_impact, fit_student, targeted_retrain
from test_student import DIM, tiny_graph

torch.set_num_threads(2)

SMALL = StudentConfig(hidden_dim=16, embedding_dim=4)
FAST = TrainConfig(epochs=15, batch_size=32, lr=1e-2, patience=5)


def synthetic_data(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings whose concepts follow simple rules along the graph of `tiny_graph`.

    a = x0 > 0, b = quartile of x1, c = a and b >= 2, d = c or not a, out = d + (b == 3).
    Columns follow tiny_graph().names: out, d, c, a, b.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, DIM)).astype(np.float32)
    a = (X[:, 0] > 0).astype(np.int64)
    b = np.digitize(X[:, 1], np.quantile(X[:, 1], [0.25, 0.5, 0.75])).astype(np.int64)
    c = (a & (b >= 2)).astype(np.int64)
    d = (c | (1 - a)).astype(np.int64)
    out = d + (b == 3)
    return X, np.stack([out, d, c, a, b], axis=1)


@pytest.fixture
def data():
    return synthetic_data()


@pytest.fixture(scope="module")
def trained_state():
    X, Y = synthetic_data()
    student = GCPStudent(tiny_graph(), DIM, SMALL, seed=0)
    fit_student(student, X, Y, config=FAST)
    return student.state_dict()


@pytest.fixture
def trained(trained_state):
    """A fresh copy of one briefly trained student, so tests may change it."""
    student = GCPStudent(tiny_graph(), DIM, SMALL, seed=0)
    student.load_state_dict(trained_state)
    return student.eval()


def parameters(student):
    return {name: p.detach().clone() for name, p in student.named_parameters()}


def test_train_config_rejects_unknown_monitor():
    with pytest.raises(StudentError, match=r"monitor must be one of \['loss', 'task_loss', 'accuracy'\], got 'f1'"):
        TrainConfig(monitor="f1")


def test_joint_loss_masks_missing_values():
    graph = tiny_graph()
    student = GCPStudent(graph, DIM, SMALL, seed=0)
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(1, DIM)).astype(np.float32))
    y = torch.tensor([[-1, -1, -1, -1, 2]])  # only node b is annotated
    out = student(x)
    loss, task, concept = joint_loss(student, out, y, concept_weight=1.0, concept_nodes=["d", "c", "a", "b"])
    expected = torch.nn.functional.cross_entropy(out.logits["b"], torch.tensor([2]))
    assert task == 0.0
    assert concept == pytest.approx(float(expected.detach()))
    loss.backward()
    for name in ("a", "c", "d", "out"):
        assert all(p.grad is None or not p.grad.any() for p in student.node_parameters(name)), name
    assert student.module("b").head.weight.grad.abs().sum() > 0


def test_joint_loss_weights_concepts():
    graph = tiny_graph()
    student = GCPStudent(graph, DIM, SMALL, seed=0)
    X, Y = synthetic_data(8)
    out = student(torch.from_numpy(X))
    y = torch.from_numpy(Y)
    nodes = ["d", "c", "a", "b"]
    full, task, concept = joint_loss(student, out, y, concept_weight=0.5, concept_nodes=nodes)
    assert float(full.detach()) == pytest.approx(task + 0.5 * concept, rel=1e-6)
    none, task_only, _ = joint_loss(student, out, y, concept_weight=0.0, concept_nodes=nodes)
    assert float(none.detach()) == pytest.approx(task_only)


def test_fit_student_learns_rules(data):
    X, Y = data
    student = GCPStudent(tiny_graph(), DIM, SMALL, seed=0)
    result = fit_student(student, X, Y, config=TrainConfig(epochs=60, batch_size=32, lr=1e-2, patience=10))
    X_test, Y_test = synthetic_data(200, seed=9)
    metrics = evaluate(student, X_test, Y_test)
    assert metrics["concept_accuracy"] > 0.85
    assert metrics["accuracy"] > 0.8
    assert result.trained_nodes == tiny_graph().names


def test_fit_student_is_deterministic(data):
    X, Y = data
    first, second = (GCPStudent(tiny_graph(), DIM, SMALL, seed=0) for _ in range(2))
    one = fit_student(first, X, Y, config=FAST)
    two = fit_student(second, X, Y, config=FAST)
    a, b = parameters(first), parameters(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["train_loss"] for h in one.history] == [h["train_loss"] for h in two.history]


def test_fit_student_seed_changes_result(data):
    X, Y = data
    first, second = (GCPStudent(tiny_graph(), DIM, SMALL, seed=0) for _ in range(2))
    fit_student(first, X, Y, config=FAST)
    fit_student(second, X, Y, config=TrainConfig(epochs=15, batch_size=32, lr=1e-2, patience=5, seed=1))
    assert not torch.equal(first.module("a").head.weight, second.module("a").head.weight)


def test_fit_student_restores_best_epoch(data):
    X, Y = data
    student = GCPStudent(tiny_graph(), DIM, SMALL, seed=0)
    config = TrainConfig(epochs=40, batch_size=16, lr=3e-2, patience=4, monitor="task_loss", refine_output=False)
    result = fit_student(student, X, Y, config=config)
    best = min(h["val_task_loss"] for h in result.history)
    assert result.history[result.best_epoch - 1]["val_task_loss"] == best
    assert result.metrics["task_loss"] == pytest.approx(best, rel=1e-6)
    assert result.n_val == 48
    assert result.n_train == 192


def test_fit_student_stops_early(data):
    X, Y = data
    student = GCPStudent(tiny_graph(), DIM, SMALL, seed=0)
    config = TrainConfig(epochs=500, batch_size=16, lr=3e-2, patience=3, refine_output=False)
    result = fit_student(student, X, Y, config=config)
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 3


def test_fit_student_refines_output_node_only(data):
    X, Y = data
    joint_only = GCPStudent(tiny_graph(), DIM, SMALL, seed=0)
    refined = GCPStudent(tiny_graph(), DIM, SMALL, seed=0)
    fit_student(joint_only, X, Y, config=TrainConfig(epochs=15, batch_size=32, lr=1e-2, patience=5, refine_output=False))
    result = fit_student(refined, X, Y, config=FAST)
    stages = [h["stage"] for h in result.history]
    assert stages[0] == 1.0
    assert stages[-1] == 2.0
    assert stages == sorted(stages)
    a, b = parameters(joint_only), parameters(refined)
    output = f"nodes.{tiny_graph().names.index('out')}."
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith(output))
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith(output))
    best_refined = min(h["val_task_loss"] for h in result.history if h["stage"] == 2.0)
    assert result.metrics["task_loss"] == pytest.approx(best_refined, rel=1e-6)


def test_fit_student_uses_given_validation(data):
    X, Y = data
    student = GCPStudent(tiny_graph(), DIM, SMALL, seed=0)
    result = fit_student(student, X[:200], Y[:200], X_val=X[200:], Y_val=Y[200:], config=FAST)
    assert (result.n_train, result.n_val) == (200, 40)
    assert result.metrics == evaluate(student, X[200:], Y[200:])


def test_fit_student_no_validation_runs_all(data):
    X, Y = data
    student = GCPStudent(tiny_graph(), DIM, SMALL, seed=0)
    result = fit_student(student, X[:20], Y[:20], config=FAST)
    assert result.n_val == 0
    assert len(result.history) == FAST.epochs


def test_fit_student_reports_progress(data):
    X, Y = data
    calls = []
    fit_student(GCPStudent(tiny_graph(), DIM, SMALL), X, Y, config=FAST,
                on_progress=lambda done, total, info: calls.append((done, total, info)))
    assert calls[0][:2] == (1, FAST.epochs)
    assert calls[0][2].startswith("epoch 1: train loss")
    assert [c[0] for c in calls] == list(range(1, len(calls) + 1))


def test_fit_student_trains_partly_annotated_rows(data):
    X, Y = data
    Y = Y.copy()
    Y[::2, 0] = -1  # half the texts lack the output label
    Y[1::2, 1:4] = -1  # the other half lack d, c and a
    student = GCPStudent(tiny_graph(), DIM, SMALL, seed=0)
    result = fit_student(student, X, Y, config=FAST)
    assert np.isfinite(result.history[-1]["train_loss"])


def test_fit_student_rejects_bad_label_shape(data):
    X, Y = data
    with pytest.raises(StudentError, match=r"labels must have shape \(n_texts, n_nodes\) = \(240, 5\)"):
        fit_student(GCPStudent(tiny_graph(), DIM, SMALL), X, Y[:, :4])


def test_fit_student_rejects_out_of_range_label(data):
    X, Y = data
    Y = Y.copy()
    Y[3, 4] = 4
    with pytest.raises(StudentError, match=r"label column 'b' has value index 4 outside -1..3"):
        fit_student(GCPStudent(tiny_graph(), DIM, SMALL), X, Y)


def test_fit_student_rejects_unlabelled_data(data):
    X, Y = data
    with pytest.raises(StudentError, match="no text has any label"):
        fit_student(GCPStudent(tiny_graph(), DIM, SMALL), X, np.full_like(Y, -1))


def test_fit_label_only_student(data):
    X, Y = data
    baseline = LabelOnlyStudent(tiny_graph(), DIM, SMALL, seed=0)
    result = fit_student(baseline, X, Y, config=FAST)
    assert result.trained_nodes == ["out"]
    assert np.isnan(result.metrics["concept_accuracy"])
    assert result.metrics["accuracy"] > 0.4


# ---------------------------------------------------------------------- counterfactual impact


def test_counterfactual_impact_matches_manual_loss(trained, data):
    X, Y = data
    scores = counterfactual_impact(trained, X, Y)
    assert list(scores) == ["d", "c", "a", "b"]
    target = torch.from_numpy(Y[:, 0])
    full = trained.predict_proba(X)["out"]
    forced = trained.intervene_proba(X, {"c": Y[:, 2]})["out"]
    rows = np.arange(len(X))
    manual = np.mean(-np.log(full[rows, target]) + np.log(forced[rows, target]))
    assert scores["c"] == pytest.approx(manual, rel=1e-3, abs=1e-5)


def test_counterfactual_impact_zero_without_values(trained, data):
    X, Y = data
    Y = Y.copy()
    Y[:, 1] = -1  # no teacher value for d
    assert counterfactual_impact(trained, X, Y)["d"] == 0.0


def test_counterfactual_impact_rejects_label_only(data):
    X, Y = data
    with pytest.raises(StudentError, match="counterfactual_impact needs concept nodes; a LabelOnlyStudent has none"):
        counterfactual_impact(LabelOnlyStudent(tiny_graph(), DIM), X, Y)


# ---------------------------------------------------------------------- targeted retraining


def damage(student, name):
    """Add noise to one node's module, as if it had been trained badly."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in student.node_parameters(name):
            p.add_(torch.randn(p.shape, generator=generator))


def test_targeted_retrain_freezes_other_modules(trained, data):
    X, Y = data
    damage(trained, "c")
    before = parameters(trained)
    result = targeted_retrain(trained, X, Y, top_k=2, config=FAST)
    after = parameters(trained)
    chosen_prefixes = {f"nodes.{tiny_graph().names.index(n)}." for n in result.chosen}
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert len(result.chosen) == 2
    assert result.best_epoch > 0
    assert result.after["loss"] < result.before["loss"]
    assert changed
    assert all(any(k.startswith(p) for p in chosen_prefixes) for k in changed)
    for key in before:
        if not any(key.startswith(p) for p in chosen_prefixes):
            assert torch.equal(before[key], after[key]), key
    assert all(p.requires_grad for p in trained.parameters())


def test_targeted_retrain_keeps_start_without_gain(trained, data):
    X, Y = data
    before = parameters(trained)
    harmful = TrainConfig(epochs=2, batch_size=32, lr=5.0, patience=5)
    result = targeted_retrain(trained, X[:200], Y[:200], top_k=2, X_val=X[200:], Y_val=Y[200:], config=harmful)
    assert result.best_epoch == 0
    assert result.after == result.before
    after = parameters(trained)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_targeted_retrain_chooses_top_impact_nodes(trained, data):
    X, Y = data
    scores = counterfactual_impact(trained, X, Y)
    result = targeted_retrain(trained, X, Y, top_k=1, config=FAST)
    assert result.scores == scores
    assert result.chosen == [max(scores, key=scores.get)]
    assert "out" not in result.scores
    assert set(result.before) == set(result.after) >= {"loss", "accuracy", "concept_accuracy"}


def test_targeted_retrain_accepts_explicit_nodes(trained, data):
    X, Y = data
    before = parameters(trained)
    result = targeted_retrain(trained, X, Y, nodes=["out", "b"], config=FAST)
    assert result.chosen == ["b", "out"]
    assert torch.equal(before["nodes.2.head.weight"], trained.module("c").head.weight)


def test_targeted_retrain_after_graph_edit(trained, data):
    X, Y = data
    graph = tiny_graph()
    edited = graph.add_node(ConceptNode("e", "Is e?", ("no", "yes")), parents=["a"], children=["d"])
    student, report = GCPStudent.from_previous(trained, edited)
    nodes = diff(graph, edited).retrain_nodes(edited)
    assert nodes == ["e", "d", "out"]
    Y_new = np.concatenate([Y, (X[:, 2:3] > 0).astype(np.int64)], axis=1)
    before = parameters(student)
    result = targeted_retrain(student, X, Y_new, nodes=nodes, config=FAST)
    assert result.chosen == ["e", "d", "out"]
    kept = [k for k in before if k.split(".")[1] in {str(edited.names.index(n)) for n in ("a", "b", "c")}]
    assert kept
    assert all(torch.equal(before[k], dict(student.named_parameters())[k]) for k in kept)
    assert set(report.kept) == {"a", "b", "c", "out"}
    assert set(report.initialized) == {"d", "e"}


def test_targeted_retrain_rejects_bad_top_k(trained, data):
    X, Y = data
    with pytest.raises(StudentError, match="top_k must be a positive integer, got 0"):
        targeted_retrain(trained, X, Y, top_k=0)


def test_targeted_retrain_rejects_unknown_node(trained, data):
    X, Y = data
    with pytest.raises(GraphValidationError, match=r"unknown node 'zz'"):
        targeted_retrain(trained, X, Y, nodes=["zz"])
