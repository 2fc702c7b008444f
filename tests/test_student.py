"""Tests of gcp.student and gcp.checkpoint on a tiny literal graph with random embeddings."""

import json

import numpy as np
import pytest
import torch

from gcp.checkpoint import CONFIG_FILE, GRAPH_FILE, WEIGHTS_FILE
from gcp.exceptions import CheckpointError, GraphValidationError, StudentError
from gcp.graph import ConceptGraph, ConceptNode, diff
from gcp.student import GCPStudent, LabelOnlyStudent, StudentConfig, load_student

torch.set_num_threads(2)

DIM = 8


def tiny_graph() -> ConceptGraph:
    """A diamond-shaped DAG listed out of topological order.

    a, b are roots; c reads a and b; d reads c and a; out reads d and b. The file order
    puts out and d first, so insertion order and topological order differ.
    """
    def node(name, values):
        return ConceptNode(name=name, question=f"What is {name}?", values=values)

    return ConceptGraph(
        task="toy task",
        output="out",
        nodes=[
            node("out", ("neg", "neu", "pos")),
            node("d", ("no", "yes")),
            node("c", ("no", "yes")),
            node("a", ("no", "yes")),
            node("b", ("low", "mid", "high", "top")),
        ],
        edges=[("a", "c"), ("b", "c"), ("c", "d"), ("a", "d"), ("d", "out"), ("b", "out")],
    )


@pytest.fixture
def graph():
    return tiny_graph()


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(32, DIM)).astype(np.float32)


@pytest.fixture
def student(graph):
    return GCPStudent(graph, DIM, StudentConfig(hidden_dim=16, embedding_dim=4), seed=3).eval()


def test_tiny_graph_order_differs(graph):
    assert graph.names == ["out", "d", "c", "a", "b"]
    assert graph.topological_order == ["a", "b", "c", "d", "out"]


def test_student_heads_have_one_output_per_value(student, graph):
    for name in graph.names:
        assert student.module(name).head.out_features == len(graph.node(name).values)
    assert student.module("c").head.out_features == 2
    assert student.module("b").head.out_features == 4
    assert student.module("out").head.out_features == 3


def test_student_input_widths_follow_parents(student):
    assert student.node_input_dim("a") == DIM
    assert student.node_input_dim("c") == 2 * 4
    assert student.node_input_dim("out") == 2 * 4 + DIM  # output_skip is on by default
    assert student.module("d").transition[0].in_features == 2 * 4


def test_student_strict_output_reads_parents(graph, X):
    config = StudentConfig(hidden_dim=16, embedding_dim=4, output_skip=False, contextual_embeddings=False)
    strict = GCPStudent(graph, DIM, config).eval()
    assert strict.node_input_dim("out") == 2 * 4
    plain = strict.predict_proba(X)
    forced = strict.intervene_proba(X, {"d": "yes", "b": "low"})
    np.testing.assert_allclose(forced["out"], np.tile(forced["out"][0], (len(X), 1)), rtol=1e-5)
    assert not np.allclose(plain["out"], forced["out"])


def test_student_root_hidden_dim(graph):
    student = GCPStudent(graph, DIM, StudentConfig(hidden_dim=16, root_hidden_dim=5, embedding_dim=4))
    assert student.module("a").head.in_features == 5
    assert student.module("c").head.in_features == 16


def test_student_runs_nodes_in_topological_order(student, X):
    calls = []
    for name in student.graph.names:
        student.module(name).register_forward_hook(lambda module, args, out, name=name: calls.append(name))
    student.predict_proba(X)
    assert calls == ["a", "b", "c", "d", "out"]


def test_student_predict_proba_shapes(student, X, graph):
    probs = student.predict_proba(X)
    assert list(probs) == graph.names
    for name, p in probs.items():
        assert p.shape == (len(X), len(graph.node(name).values))
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    predictions = student.predict(X)
    assert predictions["b"].dtype == np.int64
    np.testing.assert_array_equal(predictions["b"], probs["b"].argmax(axis=1))


def test_student_rejects_wrong_embedding_width(student):
    with pytest.raises(StudentError, match=r"embeddings must have shape \(n_texts, 8\), got \(4, 5\)"):
        student.predict_proba(np.zeros((4, 5), dtype=np.float32))


def test_student_rejects_nan_embeddings(student):
    X = np.zeros((2, DIM), dtype=np.float32)
    X[1, 3] = np.nan
    with pytest.raises(StudentError, match="NaN or infinite"):
        student.predict(X)


def test_student_intervention_changes_only_descendants(student, X):
    plain = student.predict_proba(X)
    forced = student.intervene_proba(X, {"c": "yes"})
    np.testing.assert_array_equal(forced["a"], plain["a"])
    np.testing.assert_array_equal(forced["b"], plain["b"])
    np.testing.assert_array_equal(forced["c"], np.tile([0.0, 1.0], (len(X), 1)))
    assert not np.allclose(forced["d"], plain["d"])
    assert not np.allclose(forced["out"], plain["out"])


def test_student_intervention_on_root_reaches_output(student, X):
    plain = student.predict_proba(X)
    forced = student.intervene_proba(X, {"a": 0})
    np.testing.assert_array_equal(forced["b"], plain["b"])
    for name in ("c", "d", "out"):
        assert not np.allclose(forced[name], plain[name]), name


def test_student_per_row_intervention_mixes_rows(student, X):
    rows = np.full(len(X), -1)
    rows[::2] = 1
    mixed = student.intervene_proba(X, {"c": rows})
    plain = student.predict_proba(X)
    everywhere = student.intervene_proba(X, {"c": "yes"})
    np.testing.assert_allclose(mixed["out"][::2], everywhere["out"][::2], rtol=1e-6)
    np.testing.assert_allclose(mixed["out"][1::2], plain["out"][1::2], rtol=1e-6)


def test_student_empty_intervention_is_noop(student, X):
    untouched = student.intervene_proba(X, {"d": np.full(len(X), -1)})
    plain = student.predict_proba(X)
    for name in plain:
        np.testing.assert_allclose(untouched[name], plain[name], rtol=1e-6)


def test_student_certain_node_intervention_is_noop(graph, X):
    student = GCPStudent(graph, DIM, StudentConfig(hidden_dim=16, embedding_dim=4), seed=3).eval()
    with torch.no_grad():
        student.module("c").head.bias.copy_(torch.tensor([-50.0, 50.0]))  # c predicts "yes" with p ~ 1
    plain = student.predict_proba(X)
    forced = student.intervene_proba(X, {"c": "yes"})
    np.testing.assert_allclose(forced["out"], plain["out"], atol=1e-6)


def test_student_intervention_rejects_unknown_value(student, X):
    with pytest.raises(GraphValidationError, match=r"invalid value 'maybe' for node 'c'"):
        student.intervene_proba(X, {"c": "maybe"})


def test_student_intervention_rejects_unknown_node(student, X):
    with pytest.raises(GraphValidationError, match=r"unknown node 'zz'"):
        student.intervene_proba(X, {"zz": 0})


def test_student_intervention_rejects_bad_index(student, X):
    with pytest.raises(StudentError, match=r"invalid value index 4 for node 'b': expected 0..3"):
        student.intervene_proba(X, {"b": 4})
    with pytest.raises(StudentError, match=r"indices outside -1..1"):
        student.intervene_proba(X, {"c": np.full(len(X), 2)})
    with pytest.raises(StudentError, match=r"integer array of shape \(32,\)"):
        student.intervene_proba(X, {"c": np.zeros(3, dtype=int)})


def test_student_mc_dropout_is_seeded(student, X):
    before = torch.get_rng_state()
    first = student.mc_dropout_proba(X, n_samples=5, seed=1)
    again = student.mc_dropout_proba(X, n_samples=5, seed=1)
    other = student.mc_dropout_proba(X, n_samples=5, seed=2)
    assert torch.equal(torch.get_rng_state(), before)
    assert first["out"].shape == (5, len(X), 3)
    np.testing.assert_array_equal(first["out"], again["out"])
    assert not np.array_equal(first["out"], other["out"])
    assert not np.allclose(first["out"][0], first["out"][1])
    assert not student.training


def test_student_output_features_shape(student, X):
    assert student.output_features(X).shape == (len(X), 16)


def test_student_init_depends_on_seed(graph):
    first = GCPStudent(graph, DIM, seed=1).state_dict()
    again = GCPStudent(graph, DIM, seed=1).state_dict()
    other = GCPStudent(graph, DIM, seed=2).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["nodes.0.head.weight"], other["nodes.0.head.weight"])


def test_student_config_rejects_bad_dropout():
    with pytest.raises(StudentError, match=r"StudentConfig.dropout must be in \[0, 1\), got 1.5"):
        StudentConfig(dropout=1.5)


def test_label_only_student_predicts_output_only(graph, X):
    baseline = LabelOnlyStudent(graph, DIM, StudentConfig(hidden_dim=16)).eval()
    probs = baseline.predict_proba(X)
    assert list(probs) == ["out"]
    assert probs["out"].shape == (len(X), 3)
    assert baseline.mc_dropout_proba(X, n_samples=3)["out"].shape == (3, len(X), 3)
    assert baseline.output_features(X).shape == (len(X), 16)
    with pytest.raises(StudentError, match="has no concept nodes to intervene on"):
        baseline.intervene_proba(X, {"c": "yes"})


# ---------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_keeps_predictions(student, X, tmp_path):
    student.save(tmp_path / "ckpt")
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == sorted([CONFIG_FILE, GRAPH_FILE, WEIGHTS_FILE])
    config = json.loads((tmp_path / "ckpt" / CONFIG_FILE).read_text())
    assert config["format_version"] == 1
    assert config["kind"] == "gcp"
    loaded = load_student(tmp_path / "ckpt", graph=tiny_graph())
    assert isinstance(loaded, GCPStudent)
    assert loaded.config == student.config
    for name, p in student.predict_proba(X).items():
        np.testing.assert_array_equal(loaded.predict_proba(X)[name], p)


def test_checkpoint_round_trip_label_only(graph, X, tmp_path):
    baseline = LabelOnlyStudent(graph, DIM, StudentConfig(hidden_dim=16), seed=5)
    baseline.save(tmp_path / "base")
    loaded = load_student(tmp_path / "base")
    assert isinstance(loaded, LabelOnlyStudent)
    np.testing.assert_array_equal(loaded.predict_proba(X)["out"], baseline.predict_proba(X)["out"])


def test_checkpoint_save_replaces_previous(student, graph, tmp_path):
    student.save(tmp_path / "ckpt")
    LabelOnlyStudent(graph, DIM).save(tmp_path / "ckpt")
    assert isinstance(load_student(tmp_path / "ckpt"), LabelOnlyStudent)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_checkpoint_save_refuses_foreign_directory(student, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="is not a student checkpoint"):
        student.save(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_checkpoint_load_names_graph_difference(student, graph, tmp_path):
    student.save(tmp_path / "ckpt")
    edited = graph.set_values("c", ("no", "yes", "unsure")).add_node(
        ConceptNode("e", "Is e?", ("no", "yes")), children=["out"]
    )
    with pytest.raises(CheckpointError, match=r"different graph: added node 'e'; .*changed values of node 'c'") as error:
        load_student(tmp_path / "ckpt", graph=edited)
    assert "added edge 'e' -> 'out'" in str(error.value)
    assert "GCPStudent.from_previous" in str(error.value)


def test_checkpoint_load_accepts_description_change(student, graph, X, tmp_path):
    student.save(tmp_path / "ckpt")
    edited = graph.set_description("c", "only a note for people")
    loaded = load_student(tmp_path / "ckpt", graph=edited)
    assert loaded.graph is edited
    np.testing.assert_array_equal(loaded.predict_proba(X)["out"], student.predict_proba(X)["out"])


def test_checkpoint_load_rejects_missing_weights(student, tmp_path):
    student.save(tmp_path / "ckpt")
    (tmp_path / "ckpt" / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match="weights.safetensors is missing"):
        load_student(tmp_path / "ckpt")


def test_checkpoint_load_rejects_unknown_version(student, tmp_path):
    student.save(tmp_path / "ckpt")
    path = tmp_path / "ckpt" / CONFIG_FILE
    path.write_text(json.dumps(json.loads(path.read_text()) | {"format_version": 99}))
    with pytest.raises(CheckpointError, match="unsupported student checkpoint format_version 99"):
        load_student(tmp_path / "ckpt")


def test_checkpoint_load_rejects_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="the directory does not exist"):
        load_student(tmp_path / "nothing")


# ---------------------------------------------------------------------- carry-over


def test_carry_over_keeps_unchanged_modules(student, graph):
    edited = (
        graph.rename_node("a", "a2")
        .set_values("c", ("no", "yes", "unsure"))
        .add_node(ConceptNode("e", "Is e?", ("no", "yes")), children=["out"])
    )
    new, report = GCPStudent.from_previous(student, edited)
    assert set(report.kept) == {"a2", "b", "d"}
    assert set(report.initialized) == {"c", "e", "out"}
    assert report.renamed == (("a", "a2"),)
    for old_name, new_name in [("a", "a2"), ("b", "b"), ("d", "d")]:
        old_state = student.module(old_name).state_dict()
        new_state = new.module(new_name).state_dict()
        assert all(torch.equal(old_state[k], new_state[k]) for k in old_state), new_name
    assert new.module("c").head.out_features == 3
    assert new.module("e").head.out_features == 2
    assert new.node_input_dim("out") == 3 * 4 + DIM
    assert diff(graph, edited).retrain_nodes(edited) == ["c", "d", "e", "out"]


def test_carry_over_copies_are_independent(student, graph):
    new, _ = GCPStudent.from_previous(student, graph.set_question("b", "What level is b?"))
    with torch.no_grad():
        new.module("a").head.bias.add_(1.0)
    assert not torch.equal(new.module("a").head.bias, student.module("a").head.bias)


def test_carry_over_rejects_other_student_kind(graph):
    baseline = LabelOnlyStudent(graph, DIM)
    with pytest.raises(StudentError, match="GCPStudent.from_previous needs a GCPStudent, got LabelOnlyStudent"):
        GCPStudent.from_previous(baseline, graph)
